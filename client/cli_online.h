/* cli_online.h — the online subcommands of `judgeq` (generate, stats,
 * ping, and bench's load run): they talk to a running judgeqd through
 * libjudgeq instead of loading a model.
 *
 * The socket comes from, in order: `judgeq --socket PATH COMMAND` (parsed
 * by main), the command's own --socket, $JUDGEQ_SOCKET, and the packaged
 * default /run/judgeq/judgeqd.sock (bench takes only the first two: a load
 * run is never started on a daemon nobody named). A connection failure exits 1 with a
 * message naming the socket path.
 */
#ifndef JQ_CLI_ONLINE_H
#define JQ_CLI_ONLINE_H

#include "cli.h"
#include "judgeq.h"

/* Set by main from the global --socket option (NULL when absent). */
extern const char *jq_cli_socket;

/* The socket path the rules above choose. */
const char *jq_cli_socket_path(void);
/* Connects (waiting up to 5 s for a backlog slot) and sets the per-call
 * inactivity timeout (< 0: none); exit 1 naming the socket on failure. */
judgeq_conn *jq_cli_connect(const jq_cmd_info *cmd, int timeout_ms);
/* Exit 1 with "judgeq CMD: what: <library message>". */
noreturn void jq_cli_fail_conn(const jq_cmd_info *cmd, judgeq_conn *c,
                                const char *what);

int jq_cmd_generate(int argc, char **argv);
int jq_cmd_stats(int argc, char **argv);
int jq_cmd_ping(int argc, char **argv);

#endif

/* cli_online.c — see cli_online.h. */
#include "cli_online.h"

#include <stdlib.h>

const char *jq_cli_socket;

const char *jq_cli_socket_path(void)
{
    if (jq_cli_socket)
        return jq_cli_socket;
    const char *env = getenv("JUDGEQ_SOCKET");
    return env && *env ? env : JUDGEQ_DEFAULT_SOCKET;
}

noreturn void jq_cli_fail_conn(const jq_cmd_info *cmd, judgeq_conn *c,
                                const char *what)
{
    char msg[512];
    judgeq_errmsg_copy(c, msg, sizeof msg);
    jq_cli_fail(cmd, "%s: %s", what, msg);
}

judgeq_conn *jq_cli_connect(const jq_cmd_info *cmd, int timeout_ms)
{
    const char *path = jq_cli_socket_path();
    judgeq_conn *c;
    if (judgeq_connect(path, 5000, &c) != JUDGEQ_OK) {
        if (!c)
            jq_cli_fail(cmd, "cannot connect to %s: out of memory", path);
        /* the library's message names the path and the cause */
        jq_cli_fail(cmd, "%s", judgeq_errmsg(c));
    }
    judgeq_set_timeout(c, timeout_ms);
    return c;
}

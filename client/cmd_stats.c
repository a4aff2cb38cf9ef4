/* cmd_stats.c — `judgeq --socket PATH stats`: the daemon's Stats reply as
 * one JSON object (field names as in proto/judgeq.proto's StatsReply). */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_online.h"

static const jq_cmd_info stats_info = {
    "stats",
    "usage: judgeq [--socket PATH] stats [--socket PATH] [--timeout MS]\n"
    "\n"
    "Prints the statistics of a running judgeqd as one JSON object: sessions,\n"
    "connections, memory_used, memory_budget, requests, errors, uptime_s,\n"
    "shared_prefix_bytes, rss_bytes and open_fds of the daemon process (null\n"
    "when it does not report them), pools (node, cpuset, threads, sessions,\n"
    "busy_ms).\n"
    "\n"
    "      --socket PATH    the daemon's socket (default: $JUDGEQ_SOCKET or\n"
    "                       " JUDGEQ_DEFAULT_SOCKET ")\n"
    "      --timeout MS     give up when the daemon is silent for MS ms\n"
    "                       (default 10000)\n"
    "  -h, --help           this help\n",
};

enum { OPT_SOCKET = 256, OPT_TIMEOUT };

int jq_cmd_stats(int argc, char **argv)
{
    const jq_cmd_info *I = &stats_info;
    static const struct option longopts[] = {
        {"socket", required_argument, 0, OPT_SOCKET},
        {"timeout", required_argument, 0, OPT_TIMEOUT},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int timeout_ms = 10000;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_SOCKET: jq_cli_socket = optarg; break;
        case OPT_TIMEOUT:
            timeout_ms = (int)jq_cli_int(I, "--timeout", optarg, 1, INT32_MAX);
            break;
        case 'h': jq_cli_help(I);
        default:
            jq_cli_bad_option(I, c, argv);
        }
    }
    if (optind < argc)
        jq_cli_usage_error(I, "unexpected argument '%s'", argv[optind]);

    judgeq_conn *conn = jq_cli_connect(I, timeout_ms);
    judgeq_stats st;
    if (judgeq_get_stats(conn, &st) != JUDGEQ_OK)
        jq_cli_fail_conn(I, conn, "stats failed");
    json_t *root = json_object();
    json_object_set_new(root, "socket", json_string(jq_cli_socket_path()));
    json_object_set_new(root, "sessions", json_integer(st.sessions));
    json_object_set_new(root, "connections", json_integer(st.connections));
    json_object_set_new(root, "memory_used", json_integer((json_int_t)st.memory_used));
    json_object_set_new(root, "memory_budget", json_integer((json_int_t)st.memory_budget));
    json_object_set_new(root, "requests", json_integer((json_int_t)st.requests));
    json_object_set_new(root, "errors", json_integer((json_int_t)st.errors));
    json_object_set_new(root, "uptime_s", json_real(st.uptime_s));
    json_object_set_new(root, "shared_prefix_bytes",
                        json_integer((json_int_t)st.shared_prefix_bytes));
    /* null when the daemon did not report its process */
    json_object_set_new(root, "rss_bytes",
                        st.rss_bytes ? json_integer((json_int_t)st.rss_bytes) : json_null());
    json_object_set_new(root, "open_fds",
                        st.open_fds ? json_integer(st.open_fds) : json_null());
    json_t *pools = json_array();
    for (size_t i = 0; i < st.n_pools; i++) {
        const judgeq_pool_stats *p = &st.pools[i];
        json_t *o = json_object();
        json_object_set_new(o, "node", json_integer(p->node));
        /* a daemon's string is not trusted to be UTF-8 */
        size_t n;
        char *cpuset = jq_utf8_sanitize(p->cpuset, strlen(p->cpuset), &n);
        json_object_set_new(o, "cpuset", json_stringn(cpuset ? cpuset : "", cpuset ? n : 0));
        free(cpuset);
        json_object_set_new(o, "threads", json_integer(p->threads));
        json_object_set_new(o, "sessions", json_integer(p->sessions));
        json_object_set_new(o, "busy_ms", json_integer((json_int_t)p->busy_ms));
        json_array_append_new(pools, o);
    }
    json_object_set_new(root, "pools", pools);
    char *s = json_dumps(root, JSON_COMPACT);
    if (s)
        puts(s);
    free(s);
    json_decref(root);
    judgeq_stats_free(&st);
    judgeq_close(conn);
    return JQ_EXIT_OK;
}

/* cmd_ping.c — `judgeq --socket PATH ping [--count N]`: round-trip latency
 * of the daemon's loop thread (Ping never reaches a worker, so this is the
 * cost of framing, protobuf and two context switches). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "cli_online.h"

static const jq_cmd_info ping_info = {
    "ping",
    "usage: judgeq [--socket PATH] ping [--count N] [--socket PATH] [--timeout MS]\n"
    "\n"
    "Sends N Pings one after another on one connection and prints the median\n"
    "and 99th percentile round trip:\n"
    "  ping PATH: N round trips, p50 X us, p99 Y us, min Z us, max W us\n"
    "\n"
    "  -c, --count N        round trips (default 10)\n"
    "      --socket PATH    the daemon's socket (default: $JUDGEQ_SOCKET or\n"
    "                       " JUDGEQ_DEFAULT_SOCKET ")\n"
    "      --timeout MS     fail when a Pong takes longer than MS ms\n"
    "                       (default 10000)\n"
    "  -h, --help           this help\n",
};

enum { OPT_SOCKET = 256, OPT_TIMEOUT };

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n). */
static double percentile(const double *v, size_t n, double p)
{
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

int jq_cmd_ping(int argc, char **argv)
{
    const jq_cmd_info *I = &ping_info;
    static const struct option longopts[] = {
        {"count", required_argument, 0, 'c'},
        {"socket", required_argument, 0, OPT_SOCKET},
        {"timeout", required_argument, 0, OPT_TIMEOUT},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    long long count = 10;
    int timeout_ms = 10000;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': count = jq_cli_int(I, "--count", optarg, 1, 10000000); break;
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

    double *rtt = malloc((size_t)count * sizeof *rtt);
    if (!rtt)
        jq_cli_fail(I, "out of memory for %lld samples", count);
    judgeq_conn *conn = jq_cli_connect(I, timeout_ms);
    for (long long i = 0; i < count; i++)
        if (judgeq_ping(conn, &rtt[i]) != JUDGEQ_OK)
            jq_cli_fail_conn(I, conn, "ping failed");
    qsort(rtt, (size_t)count, sizeof *rtt, cmp_double);
    printf("ping %s: %lld round trips, p50 %.1f us, p99 %.1f us, min %.1f us, "
           "max %.1f us\n",
           jq_cli_socket_path(), count, percentile(rtt, (size_t)count, 50),
           percentile(rtt, (size_t)count, 99), rtt[0], rtt[count - 1]);
    judgeq_close(conn);
    free(rtt);
    return JQ_EXIT_OK;
}

/* test_client_pkg.c — what a user and a packager see of the client side:
 * the online commands' exit codes (2 usage, 1 connection failure naming
 * the socket), `make install DESTDIR=... PREFIX=/usr` (the files, a program
 * built against the installed header and pkg-config file, the library's
 * exports and dependencies), and the systemd units (`systemd-analyze
 * verify`, and `systemd-analyze security` exposure at most 2.0).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static char *sh(const char *cmd, int *rc, char **err)
{
    return jqt_run(cmd, rc, err);
}

/* Runs judgeq with args; returns the exit status, stderr in *err. */
static int judgeq(const char *args, char **err)
{
    char *cmd = jqt_fmt("'%s' %s", jqt_judgeq_bin(), args);
    int rc;
    char *out = sh(cmd, &rc, err);
    free(out);
    free(cmd);
    return rc;
}

static void test_online_usage_errors(void **state)
{
    (void)state;
    const char *cases[] = {
        "generate",                                  /* no prompt */
        "--socket /nonexistent generate -p a -f b",  /* both -p and -f */
        "--socket /nonexistent generate -p a --evict snapkv", /* no budget */
        "--socket /nonexistent generate -p a --evict bogus --budget 4",
        "--socket /nonexistent generate -p a --soft x.gguf",  /* not judgeq */
        "--socket /nonexistent generate -p a -n -1",
        "--socket /nonexistent generate -p a --temp x",
        "--socket /nonexistent generate -p a --pool-kernel 4",
        "--socket /nonexistent generate -p a extra",
        "--socket /nonexistent generate -p a -m model.gguf",
        "--socket /nonexistent stats --bogus",
        "--socket /nonexistent stats extra",
        "--socket /nonexistent stats --timeout 0",
        "--socket /nonexistent ping --count 0",
        "--socket /nonexistent ping --count x",
        "--socket /nonexistent ping -c",
        "--socket",                                  /* no path */
        "--socket= ping",
        "--socket /nonexistent run -m x -p y",       /* offline command */
        "--socket /nonexistent",                     /* no command */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *err;
        int rc = judgeq(cases[i], &err);
        if (rc != 2)
            fail_msg("judgeq %s: exit %d, want 2 (stderr: %s)", cases[i], rc, err);
        assert_true(strlen(err) > 0);
        free(err);
    }
    /* --help is not an error */
    const char *help[] = {"generate --help", "stats --help", "ping --help"};
    for (size_t i = 0; i < 3; i++) {
        char *err;
        assert_int_equal(judgeq(help[i], &err), 0);
        free(err);
    }
}

static void test_connection_failure_names_socket(void **state)
{
    (void)state;
    char *sock = jqt_fmt("%s/absent.sock", jqt_tmpdir());
    const char *fmts[] = {
        "--socket '%s' generate -p hello",
        "--socket '%s' stats",
        "--socket '%s' ping --count 3",
        "stats --socket '%s'",
    };
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        char *args = jqt_fmt(fmts[i], sock);
        char *err;
        int rc = judgeq(args, &err);
        if (rc != 1 || !strstr(err, sock))
            fail_msg("judgeq %s: exit %d, stderr '%s' (want 1 naming %s)", args,
                     rc, err, sock);
        free(err);
        free(args);
    }
    /* $JUDGEQ_SOCKET is the fallback */
    char *cmd = jqt_fmt("JUDGEQ_SOCKET='%s' '%s' ping", sock, jqt_judgeq_bin());
    int rc;
    char *err;
    free(sh(cmd, &rc, &err));
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, sock));
    free(err);
    free(cmd);
    free(sock);
}

static void test_make_install(void **state)
{
    (void)state;
    const char *root = getenv("JUDGEQ_ROOT");
    char *dest = jqt_fmt("%s/install-%d", jqt_tmpdir(), (int)getpid());
    char *barg = jqt_make_build_arg();
    /* the outer make's jobserver must not leak into this one */
    char *cmd = jqt_fmt("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s "
                        "--no-print-directory -C '%s' install %s DESTDIR='%s' "
                        "PREFIX=/usr 2>&1",
                        root, barg, dest);
    int rc;
    char *out = sh(cmd, &rc, NULL);
    if (rc != 0)
        fail_msg("%s: exit %d\n%s", cmd, rc, out);
    free(out);
    free(cmd);

    const char *files[] = {
        "usr/bin/judgeq",
        "usr/lib/libjudgeq.so.0",
        "usr/lib/libjudgeq.so",
        "usr/include/judgeq.h",
        "usr/include/judgeq_kv_layout.h",
        "usr/lib/pkgconfig/judgeq.pc",
        "usr/lib/systemd/system/judgeqd.service",
        "usr/lib/systemd/system/judgeqd.socket",
        "usr/lib/sysusers.d/judgeq.conf",
        "usr/lib/tmpfiles.d/judgeqd.conf",
        "usr/share/man/man1/judgeq.1",
        "usr/share/man/man8/judgeqd.8",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = jqt_fmt("%s/%s", dest, files[i]);
        struct stat st;
        if (stat(p, &st) != 0)
            fail_msg("make install did not install %s", files[i]);
        free(p);
    }
    char *p = jqt_fmt("%s/usr/lib/libjudgeq.so", dest);
    char link[64] = {0};
    assert_true(readlink(p, link, sizeof link - 1) > 0);
    assert_string_equal(link, "libjudgeq.so.0");
    free(p);
    /* judgeqd is installed when it is built */
    char *built = jqt_fmt("%s/bin/judgeqd", getenv("JUDGEQ_BUILD"));
    char *inst = jqt_fmt("%s/usr/bin/judgeqd", dest);
    assert_int_equal(access(built, X_OK) == 0, access(inst, X_OK) == 0);
    free(built);
    free(inst);

    /* the unit runs the installed daemon */
    p = jqt_fmt("%s/usr/lib/systemd/system/judgeqd.service", dest);
    char *unit = jqt_read_file(p, NULL);
    assert_non_null(strstr(unit, "\nExecStart=/usr/bin/judgeqd --model ${JUDGEQD_MODEL}"));
    free(unit);
    free(p);
    p = jqt_fmt("%s/usr/lib/pkgconfig/judgeq.pc", dest);
    char *pc = jqt_read_file(p, NULL);
    assert_non_null(strstr(pc, "libdir=/usr/lib\n"));
    assert_non_null(strstr(pc, "Version: 0.1.0\n"));
    free(pc);
    free(p);

    /* a program built with only what was installed, through pkg-config;
     * the header is strict C17 and pedantic-clean */
    char *src = jqt_fmt("%s/use.c", dest);
    FILE *f = fopen(src, "w");
    assert_non_null(f);
    fputs("#include <judgeq.h>\n#include <stdio.h>\n#include <string.h>\n"
          "int main(void) {\n"
          "  judgeq_conn *c;\n"
          "  int rc = judgeq_connect(\"/nonexistent/x.sock\", 10, &c);\n"
          "  printf(\"%s %d\\n\", judgeq_status_name(rc),\n"
          "         strstr(judgeq_errmsg(c), \"x.sock\") != NULL);\n"
          "  judgeq_close(c);\n"
          "  return sizeof(judgeq_kv_layout_header) != 64;\n}\n",
          f);
    fclose(f);
    /* a sanitizer build of the library needs its runtime loaded first */
    const char *san = strstr(getenv("JUDGEQ_BUILD"), "asan")
                          ? "-fsanitize=address,undefined"
                          : "";
    cmd = jqt_fmt("export PKG_CONFIG_PATH='%s/usr/lib/pkgconfig' "
                  "PKG_CONFIG_SYSROOT_DIR='%s'; "
                  "cc -std=c17 -Wall -Wextra -Werror -pedantic %s -o '%s/use' '%s' "
                  "$(pkg-config --cflags --libs judgeq) 2>'%s/cc.log' || "
                  "{ cat '%s/cc.log'; exit 1; }; "
                  "LD_LIBRARY_PATH='%s/usr/lib' '%s/use'",
                  dest, dest, san, dest, src, dest, dest, dest, dest);
    out = sh(cmd, &rc, NULL);
    if (rc != 0)
        fail_msg("%s: exit %d\n%s", cmd, rc, out);
    assert_string_equal(out, "UNAVAILABLE 1\n");
    free(out);
    free(cmd);
    free(src);

    /* exports: the judgeq_ API only; needs: libc and protobuf-c only */
    cmd = jqt_fmt("nm -D --defined-only '%s/usr/lib/libjudgeq.so.0' | "
                  "awk '{print $3}' | grep -v '^judgeq_[a-z]' | grep -v '^LIBJUDGEQ_0$'; "
                  "readelf -d '%s/usr/lib/libjudgeq.so.0' | sed -n "
                  "'s/.*(NEEDED).*\\[\\(.*\\)\\]/\\1/p' | "
                  "grep -v -e '^libc\\.so' -e '^libprotobuf-c\\.so' -e '^libasan' "
                  "-e '^libubsan' -e '^libm\\.so' -e '^libstdc'; true",
                  dest, dest);
    out = sh(cmd, &rc, NULL);
    assert_int_equal(rc, 0);
    if (out[0])
        fail_msg("libjudgeq.so exports or needs more than it should:\n%s", out);
    free(out);
    free(cmd);

    cmd = jqt_fmt("rm -rf '%s'", dest);
    free(sh(cmd, &rc, NULL));
    free(cmd);
    free(barg);
    free(dest);
}

/* systemd-analyze is part of Debian's systemd package; the suite runs
 * where it is installed, and says so loudly where it is not. */
static bool have_systemd_analyze(void)
{
    int rc;
    free(sh("command -v systemd-analyze", &rc, NULL));
    if (rc != 0)
        fprintf(stderr, "SKIPPED: systemd-analyze is not installed (apt-get "
                        "install systemd); the units were not checked\n");
    return rc == 0;
}

/* Copies the units into a fresh directory with ExecStart pointing at a
 * binary that exists (verify requires it): the built judgeqd, or judgeq
 * while the daemon is not built yet (verify does not run it). */
static char *units_copy(void)
{
    const char *root = getenv("JUDGEQ_ROOT");
    char *dir = jqt_fmt("%s/units-%d", jqt_tmpdir(), (int)getpid());
    char *daemon = jqt_fmt("%s/bin/judgeqd", getenv("JUDGEQ_BUILD"));
    const char *exe = access(daemon, X_OK) == 0 ? daemon : jqt_judgeq_bin();
    char *cmd = jqt_fmt("mkdir -p '%s' && sed 's|/usr/local/bin/judgeqd|%s|' "
                        "'%s/systemd/judgeqd.service' > '%s/judgeqd.service' && "
                        "cp '%s/systemd/judgeqd.socket' '%s/'",
                        dir, exe, root, dir, root, dir);
    int rc;
    free(sh(cmd, &rc, NULL));
    assert_int_equal(rc, 0);
    free(cmd);
    free(daemon);
    return dir;
}

static void test_units_verify(void **state)
{
    (void)state;
    if (!have_systemd_analyze())
        skip();
    char *dir = units_copy();
    char *cmd = jqt_fmt("cd '%s' && systemd-analyze verify --man=no "
                        "judgeqd.service judgeqd.socket",
                        dir);
    int rc;
    char *err;
    char *out = sh(cmd, &rc, &err);
    if (rc != 0 || strstr(err, "judgeqd"))
        fail_msg("systemd-analyze verify: exit %d\n%s%s", rc, out, err);
    free(out);
    free(err);
    free(cmd);
    free(dir);
}

static void test_units_security(void **state)
{
    (void)state;
    if (!have_systemd_analyze())
        skip();
    char *dir = units_copy();
    char *cmd = jqt_fmt("systemd-analyze security --offline=true "
                        "--no-pager '%s/judgeqd.service' 2>&1",
                        dir);
    int rc;
    char *out = sh(cmd, &rc, NULL);
    const char *line = strstr(out, "Overall exposure level for judgeqd.service:");
    if (!line)
        fail_msg("no exposure line in:\n%s", out);
    double exposure = -1;
    assert_int_equal(sscanf(strchr(line, ':') + 1, "%lf", &exposure), 1);
    fprintf(stderr, "judgeqd.service exposure %.1f\n", exposure);
    if (exposure > 2.0)
        fail_msg("exposure %.1f > 2.0:\n%s", exposure, out);
    /* the settings the issue names, each present */
    char *p = jqt_fmt("%s/judgeqd.service", dir);
    char *unit = jqt_read_file(p, NULL);
    const char *must[] = {
        "\nType=notify\n", "\nDynamicUser=yes\n", "\nEnvironmentFile=-/etc/default/judgeqd\n",
        "\nRestart=on-failure\n", "\nWatchdogSec=30s\n", "\nNoNewPrivileges=yes\n",
        "\nProtectSystem=strict\n", "\nProtectHome=yes\n", "\nPrivateTmp=yes\n",
        "\nPrivateDevices=yes\n", "\nPrivateNetwork=yes\n",
        "\nRestrictAddressFamilies=AF_UNIX\n", "\nMemoryDenyWriteExecute=yes\n",
        "\nSystemCallFilter=@system-service\n", "\nCapabilityBoundingSet=\n",
    };
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        if (!strstr(unit, must[i]))
            fail_msg("judgeqd.service lacks %s", must[i] + 1);
    free(unit);
    free(p);
    p = jqt_fmt("%s/judgeqd.socket", dir);
    char *sock = jqt_read_file(p, NULL);
    assert_non_null(strstr(sock, "\nListenStream=/run/judgeq/judgeqd.sock\n"));
    assert_non_null(strstr(sock, "\nSocketMode=0660\n"));
    assert_non_null(strstr(sock, "\nSocketGroup=judgeq\n"));
    free(sock);
    free(p);
    free(out);
    free(cmd);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_online_usage_errors),
        cmocka_unit_test(test_connection_failure_names_socket),
        cmocka_unit_test(test_make_install),
        cmocka_unit_test(test_units_verify),
        cmocka_unit_test(test_units_security),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

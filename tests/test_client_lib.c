/* test_client_lib.c — libjudgeq against an in-process fake daemon.
 *
 * A server thread on the other end of a socketpair answers with scripted
 * frames: well-formed replies (every request type round-trips through the
 * real protobuf encoding), a sealed memfd with a KV layout, and the hostile
 * cases (unsealed or writable memfds, too many fds, an fd in the middle of
 * a frame, garbage, a huge length prefix, a close in the middle of a frame,
 * a reply to a request never sent). Each must end the call with a clean
 * error code, no crash, and no descriptor left open: every test counts
 * /proc/self/fd before and after (client and fake server share the
 * process, so a leak on either side shows).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "daemon_harness.h"
#include "judgeq.h"
#include "judgeq.pb-c.h"

/* ------------------------------------------------------------ helpers */

static int count_fds(void)
{
    int n = jqt_proc_fd_count(getpid());
    assert_true(n >= 0);
    return n;
}

typedef enum {
    FAKE_NORMAL,          /* answers every request correctly */
    FAKE_EXPORT_UNSEALED, /* ExportKV with a memfd without seals */
    FAKE_EXPORT_WRITABLE, /* sealed against resizing, not writing */
    FAKE_EXPORT_NO_FD,
    FAKE_EXPORT_BAD_LAYOUT, /* sealed, but a head reaches past the end */
    FAKE_THREE_FDS,       /* more fds than the control buffer: MSG_CTRUNC */
    FAKE_TWO_FDS,
    FAKE_FD_MID_FRAME,    /* fd attached to the body, not the first byte */
    FAKE_GARBAGE,         /* a frame that is not a Response */
    FAKE_HUGE_LENGTH,     /* length prefix 0xfffffff0 */
    FAKE_CLOSE_MID_FRAME, /* half a frame, then close */
    FAKE_WRONG_ID,        /* a reply to a request never sent */
    FAKE_ERROR,           /* NOT_FOUND with a message (and a control char) */
    FAKE_STALE_FIRST,     /* a stale reply, then the right one */
    FAKE_SILENT_ONCE,     /* first request unanswered until the second */
    FAKE_WRONG_BODY,      /* Pong to a Hello */
} fake_mode;

typedef struct {
    int fd;
    fake_mode mode;
    pthread_t thread;
    int n_requests;
    int generate_tokens;
    Judgeq__Request *held; /* FAKE_SILENT_ONCE: the unanswered request */
} fake;

static void send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return; /* the client went away: fine for the hostile cases */
        p += n;
        len -= (size_t)n;
    }
}

/* Sends bytes with fds attached to the first byte (the protocol's rule). */
static void send_with_fds(int fd, const void *buf, size_t len, const int *fds,
                          int nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } ctrl;
    memset(&ctrl, 0, sizeof ctrl);
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds) {
        msg.msg_control = ctrl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n > 0 && (size_t)n < len)
        send_all(fd, (const uint8_t *)buf + n, len - (size_t)n);
}

static uint8_t *frame_of(const Judgeq__Response *r, size_t *len)
{
    size_t n = judgeq__response__get_packed_size(r);
    uint8_t *buf = malloc(4 + n);
    buf[0] = (uint8_t)n;
    buf[1] = (uint8_t)(n >> 8);
    buf[2] = (uint8_t)(n >> 16);
    buf[3] = (uint8_t)(n >> 24);
    judgeq__response__pack(r, buf + 4);
    *len = 4 + n;
    return buf;
}

static void send_response(int fd, const Judgeq__Response *r, int memfd)
{
    size_t len;
    uint8_t *buf = frame_of(r, &len);
    send_with_fds(fd, buf, len, &memfd, memfd >= 0 ? 1 : 0);
    free(buf);
}

static Judgeq__Request *read_request(int fd)
{
    uint8_t hdr[4];
    size_t got = 0;
    while (got < 4) {
        ssize_t n = recv(fd, hdr + got, 4 - got, 0);
        if (n <= 0)
            return NULL;
        got += (size_t)n;
    }
    uint32_t len = hdr[0] | hdr[1] << 8 | hdr[2] << 16 | (uint32_t)hdr[3] << 24;
    uint8_t *body = malloc(len ? len : 1);
    got = 0;
    while (got < len) {
        ssize_t n = recv(fd, body + got, len - got, 0);
        if (n <= 0) {
            free(body);
            return NULL;
        }
        got += (size_t)n;
    }
    Judgeq__Request *r = judgeq__request__unpack(NULL, len, body);
    free(body);
    return r;
}

/* The KV the fake exports: 2 layers x 2 KV heads x head_dim 4, F32, head
 * (l, h) holds l*2+h+1 entries; key element j of entry i of head (l, h) is
 * 1000*l + 100*h + 10*i + j, the value its negation, the position 3*i+h. */
enum { KV_LAYERS = 2, KV_HEADS = 2, KV_DIM = 4 };

static float key_of(uint32_t l, uint32_t h, uint32_t i, uint32_t j)
{
    return (float)(1000 * l + 100 * h + 10 * i + j);
}

static int make_kv_memfd(unsigned seals, bool bad_layout, Judgeq__KvLayout *desc,
                         Judgeq__KvHeadLayout *heads, Judgeq__KvHeadLayout **head_ptrs)
{
    int fd = memfd_create("judgeq-test-kv", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(fd >= 0);
    uint64_t table = judgeq_kv_align(sizeof(judgeq_kv_layout_header));
    uint64_t off = judgeq_kv_align(table + KV_LAYERS * KV_HEADS * sizeof(judgeq_kv_head_entry));
    judgeq_kv_head_entry ent[KV_LAYERS * KV_HEADS];
    for (uint32_t l = 0; l < KV_LAYERS; l++)
        for (uint32_t h = 0; h < KV_HEADS; h++) {
            judgeq_kv_head_entry *e = &ent[l * KV_HEADS + h];
            uint32_t len = l * KV_HEADS + h + 1;
            *e = (judgeq_kv_head_entry){.layer = l, .kv_head = h, .length = len};
            e->keys_offset = off;
            off = judgeq_kv_align(off + len * KV_DIM * 4);
            e->values_offset = off;
            off = judgeq_kv_align(off + len * KV_DIM * 4);
            e->positions_offset = off;
            off = judgeq_kv_align(off + len * 4);
        }
    uint64_t total = off;
    if (bad_layout)
        ent[3].length = 1u << 30; /* reaches far past the end */
    assert_int_equal(ftruncate(fd, (off_t)total), 0);
    uint8_t *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(m != MAP_FAILED);
    judgeq_kv_layout_header hdr = {
        .magic = JUDGEQ_KV_LAYOUT_MAGIC,
        .version = JUDGEQ_KV_LAYOUT_VERSION,
        .header_bytes = sizeof hdr,
        .entry_bytes = sizeof(judgeq_kv_head_entry),
        .n_layer = KV_LAYERS,
        .n_head_kv = KV_HEADS,
        .head_dim = KV_DIM,
        .elem_type = JUDGEQ_KV_F32,
        .total_bytes = total,
        .table_offset = table,
        .session_id = 7,
    };
    memcpy(m, &hdr, sizeof hdr);
    memcpy(m + table, ent, sizeof ent);
    for (uint32_t k = 0; k < KV_LAYERS * KV_HEADS && !bad_layout; k++) {
        const judgeq_kv_head_entry *e = &ent[k];
        float *keys = (float *)(m + e->keys_offset);
        float *vals = (float *)(m + e->values_offset);
        int32_t *pos = (int32_t *)(m + e->positions_offset);
        for (uint32_t i = 0; i < e->length; i++) {
            pos[i] = (int32_t)(3 * i + e->kv_head);
            for (uint32_t j = 0; j < KV_DIM; j++) {
                keys[i * KV_DIM + j] = key_of(e->layer, e->kv_head, i, j);
                vals[i * KV_DIM + j] = -key_of(e->layer, e->kv_head, i, j);
            }
        }
    }
    munmap(m, total);
    if (seals)
        assert_int_equal(fcntl(fd, F_ADD_SEALS, seals), 0);
    if (desc) {
        desc->has_version = desc->has_n_layer = desc->has_n_head_kv = 1;
        desc->has_head_dim = desc->has_kv_type = desc->has_total_bytes = 1;
        desc->version = JUDGEQ_KV_LAYOUT_VERSION;
        desc->n_layer = KV_LAYERS;
        desc->n_head_kv = KV_HEADS;
        desc->head_dim = KV_DIM;
        desc->kv_type = JUDGEQ__KV_TYPE__KV_F32;
        desc->total_bytes = total;
        desc->n_heads = KV_LAYERS * KV_HEADS;
        desc->heads = head_ptrs;
        for (size_t k = 0; k < KV_LAYERS * KV_HEADS; k++) {
            Judgeq__KvHeadLayout *h = &heads[k];
            h->has_layer = h->has_kv_head = h->has_length = 1;
            h->has_keys_offset = h->has_values_offset = h->has_positions_offset = 1;
            h->layer = ent[k].layer;
            h->kv_head = ent[k].kv_head;
            h->length = ent[k].length;
            h->keys_offset = ent[k].keys_offset;
            h->values_offset = ent[k].values_offset;
            h->positions_offset = ent[k].positions_offset;
            head_ptrs[k] = h;
        }
    }
    return fd;
}

static void reply_export(fake *f, uint64_t id)
{
    Judgeq__KvLayout desc = JUDGEQ__KV_LAYOUT__INIT;
    Judgeq__KvHeadLayout heads[KV_LAYERS * KV_HEADS];
    Judgeq__KvHeadLayout *ptrs[KV_LAYERS * KV_HEADS];
    for (size_t k = 0; k < KV_LAYERS * KV_HEADS; k++)
        heads[k] = (Judgeq__KvHeadLayout)JUDGEQ__KV_HEAD_LAYOUT__INIT;
    unsigned all = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
    unsigned seals = f->mode == FAKE_EXPORT_UNSEALED   ? 0
                     : f->mode == FAKE_EXPORT_WRITABLE ? F_SEAL_SHRINK | F_SEAL_GROW
                                                       : all;
    int memfd = make_kv_memfd(seals, f->mode == FAKE_EXPORT_BAD_LAYOUT, &desc, heads, ptrs);
    Judgeq__ExportKVReply x = JUDGEQ__EXPORT_KVREPLY__INIT;
    x.layout = &desc;
    Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
    r.has_id = 1;
    r.id = id;
    r.body_case = JUDGEQ__RESPONSE__BODY_EXPORT_KV;
    r.export_kv = &x;
    send_response(f->fd, &r, f->mode == FAKE_EXPORT_NO_FD ? -1 : memfd);
    close(memfd); /* the daemon's copy; the client holds its own now */
}

/* The correct answer to req. */
static void answer(fake *f, const Judgeq__Request *req)
{
    Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
    r.has_id = 1;
    r.id = req->id;
    Judgeq__Pong pong = JUDGEQ__PONG__INIT;
    Judgeq__HelloReply hello = JUDGEQ__HELLO_REPLY__INIT;
    Judgeq__ModelInfo model = JUDGEQ__MODEL_INFO__INIT;
    char *caps[] = {"fork", "export_kv"};
    Judgeq__CreateSessionReply cs = JUDGEQ__CREATE_SESSION_REPLY__INIT;
    Judgeq__PrefillReply pf = JUDGEQ__PREFILL_REPLY__INIT;
    uint32_t kept[4] = {3, 4, 5, 6};
    int32_t ids[3] = {1, 42, 43};
    Judgeq__TokenizeReply tk = JUDGEQ__TOKENIZE_REPLY__INIT;
    Judgeq__DetokenizeReply dt = JUDGEQ__DETOKENIZE_REPLY__INIT;
    Judgeq__StatsReply st = JUDGEQ__STATS_REPLY__INIT;
    Judgeq__PoolStats pool = JUDGEQ__POOL_STATS__INIT;
    Judgeq__PoolStats *pools[1] = {&pool};
    Judgeq__ForkReply fk = JUDGEQ__FORK_REPLY__INIT;
    Judgeq__Empty empty = JUDGEQ__EMPTY__INIT;
    switch (req->body_case) {
    case JUDGEQ__REQUEST__BODY_PING:
        r.body_case = JUDGEQ__RESPONSE__BODY_PONG;
        pong.has_nonce = 1;
        pong.nonce = req->ping->nonce;
        r.pong = &pong;
        break;
    case JUDGEQ__REQUEST__BODY_HELLO:
        r.body_case = JUDGEQ__RESPONSE__BODY_HELLO;
        hello.has_protocol_version = 1;
        hello.protocol_version = req->hello->protocol_version;
        hello.server_version = "fake 0";
        model.architecture = "llama";
        model.has_n_layer = model.has_n_head_kv = model.has_bos = 1;
        model.n_layer = 2;
        model.n_head_kv = 2;
        model.bos = 1;
        hello.model = &model;
        hello.n_capabilities = 2;
        hello.capabilities = caps;
        r.hello = &hello;
        break;
    case JUDGEQ__REQUEST__BODY_CREATE_SESSION:
        r.body_case = JUDGEQ__RESPONSE__BODY_CREATE_SESSION;
        cs.has_session_id = cs.has_numa_node = 1;
        /* echoes max_context so the test sees the request's encoding */
        cs.session_id = 1000 + req->create_session->max_context;
        cs.numa_node = req->create_session->kv_type;
        r.create_session = &cs;
        break;
    case JUDGEQ__REQUEST__BODY_PREFILL: {
        const Judgeq__Prefill *p = req->prefill;
        r.body_case = JUDGEQ__RESPONSE__BODY_PREFILL;
        pf.has_prompt_tokens = pf.has_n_layer = pf.has_n_head_kv = 1;
        pf.prompt_tokens = p->text ? 3 : (uint32_t)p->n_tokens;
        pf.n_prompt_token_ids = 3;
        pf.prompt_token_ids = ids;
        pf.n_layer = 2;
        pf.n_head_kv = 2;
        pf.n_kept = 4;
        pf.kept = kept;
        /* encode what the fake saw, for the test to check */
        pf.has_kv_bytes_full = pf.has_kv_bytes_kept = 1;
        pf.kv_bytes_full = p->eviction ? p->eviction->budget : 0;
        pf.kv_bytes_kept = p->eviction && p->eviction->has_window ? 1 : 0;
        pf.has_prefill_ms = 1;
        pf.prefill_ms = p->eviction && p->eviction->soft_path ? 2.5 : 1.5;
        r.prefill = &pf;
        break;
    }
    case JUDGEQ__REQUEST__BODY_GENERATE: {
        const Judgeq__Generate *g = req->generate;
        for (uint32_t i = 0; i < g->max_tokens; i++) {
            Judgeq__GenerateChunk ch = JUDGEQ__GENERATE_CHUNK__INIT;
            char piece[16];
            snprintf(piece, sizeof piece, " t%u", i);
            ch.has_token = ch.has_piece = ch.has_logprob = ch.has_index = 1;
            ch.token = 100 + (int32_t)i;
            ch.piece.data = (uint8_t *)piece;
            ch.piece.len = strlen(piece);
            ch.logprob = -0.5f * (float)i;
            ch.index = i;
            Judgeq__Response c = JUDGEQ__RESPONSE__INIT;
            c.has_id = c.has_done = 1;
            c.id = req->id;
            c.done = 0;
            c.body_case = JUDGEQ__RESPONSE__BODY_CHUNK;
            c.chunk = &ch;
            send_response(f->fd, &c, -1);
        }
        Judgeq__GenerateDone d = JUDGEQ__GENERATE_DONE__INIT;
        d.has_n_tokens = d.has_decode_ms = 1;
        d.n_tokens = g->max_tokens;
        d.stop_reason = "length";
        d.decode_ms = 3.25;
        r.body_case = JUDGEQ__RESPONSE__BODY_GENERATE_DONE;
        r.generate_done = &d;
        send_response(f->fd, &r, -1);
        return;
    }
    case JUDGEQ__REQUEST__BODY_TOKENIZE:
        r.body_case = JUDGEQ__RESPONSE__BODY_TOKENIZE;
        tk.n_tokens = req->tokenize->add_bos ? 3 : 2;
        tk.tokens = req->tokenize->add_bos ? ids : ids + 1;
        r.tokenize = &tk;
        break;
    case JUDGEQ__REQUEST__BODY_DETOKENIZE:
        r.body_case = JUDGEQ__RESPONSE__BODY_DETOKENIZE;
        dt.has_text = 1;
        dt.text.data = (uint8_t *)"ab\0c"; /* bytes may hold NUL */
        dt.text.len = 4;
        r.detokenize = &dt;
        break;
    case JUDGEQ__REQUEST__BODY_STATS:
        r.body_case = JUDGEQ__RESPONSE__BODY_STATS;
        st.has_sessions = 1;
        st.sessions = 3;
        st.has_rss_bytes = st.has_open_fds = 1;
        st.rss_bytes = 123456789;
        st.open_fds = 17;
        pool.has_threads = 1;
        pool.threads = 8;
        pool.cpuset = "0-7";
        st.n_pools = 1;
        st.pools = pools;
        r.stats = &st;
        break;
    case JUDGEQ__REQUEST__BODY_FORK:
        r.body_case = JUDGEQ__RESPONSE__BODY_FORK;
        fk.has_session_id = 1;
        fk.session_id = req->fork->session_id + 1;
        r.fork = &fk;
        break;
    case JUDGEQ__REQUEST__BODY_CLOSE_SESSION:
        r.body_case = JUDGEQ__RESPONSE__BODY_CLOSED;
        r.closed = &empty;
        break;
    case JUDGEQ__REQUEST__BODY_EXPORT_KV:
        reply_export(f, req->id);
        return;
    default:
        r.has_code = 1;
        r.code = JUDGEQ__ERROR_CODE__INVALID_ARGUMENT;
        r.message = "unknown request";
        break;
    }
    send_response(f->fd, &r, -1);
}

static void *fake_main(void *arg)
{
    fake *f = arg;
    Judgeq__Request *req;
    while ((req = read_request(f->fd))) {
        f->n_requests++;
        uint8_t junk[16];
        memset(junk, 0xff, sizeof junk);
        int pair[2] = {-1, -1};
        switch (f->mode) {
        case FAKE_THREE_FDS:
        case FAKE_TWO_FDS: {
            assert_int_equal(pipe2(pair, O_CLOEXEC), 0);
            int fds[3] = {pair[0], pair[1], pair[0]};
            Judgeq__Pong pong = JUDGEQ__PONG__INIT;
            Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
            r.has_id = 1;
            r.id = req->id;
            r.body_case = JUDGEQ__RESPONSE__BODY_PONG;
            r.pong = &pong;
            size_t len;
            uint8_t *buf = frame_of(&r, &len);
            send_with_fds(f->fd, buf, len, fds, f->mode == FAKE_THREE_FDS ? 3 : 2);
            free(buf);
            close(pair[0]);
            close(pair[1]);
            break;
        }
        case FAKE_FD_MID_FRAME: {
            assert_int_equal(pipe2(pair, O_CLOEXEC), 0);
            Judgeq__Pong pong = JUDGEQ__PONG__INIT;
            Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
            r.has_id = 1;
            r.id = req->id;
            r.body_case = JUDGEQ__RESPONSE__BODY_PONG;
            r.pong = &pong;
            size_t len;
            uint8_t *buf = frame_of(&r, &len);
            send_all(f->fd, buf, 4);
            usleep(20000); /* let the client read the header alone */
            send_with_fds(f->fd, buf + 4, len - 4, pair, 1);
            free(buf);
            close(pair[0]);
            close(pair[1]);
            break;
        }
        case FAKE_GARBAGE: {
            uint8_t frame[4 + sizeof junk] = {sizeof junk, 0, 0, 0};
            memcpy(frame + 4, junk, sizeof junk);
            send_all(f->fd, frame, sizeof frame);
            break;
        }
        case FAKE_HUGE_LENGTH: {
            uint8_t frame[8] = {0xf0, 0xff, 0xff, 0xff, 1, 2, 3, 4};
            send_all(f->fd, frame, sizeof frame);
            break;
        }
        case FAKE_CLOSE_MID_FRAME: {
            uint8_t frame[4 + 10] = {100, 0, 0, 0};
            send_all(f->fd, frame, sizeof frame);
            shutdown(f->fd, SHUT_WR);
            break;
        }
        case FAKE_WRONG_ID:
            req->id += 5;
            answer(f, req);
            break;
        case FAKE_ERROR: {
            Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
            r.has_id = r.has_code = 1;
            r.id = req->id;
            r.code = JUDGEQ__ERROR_CODE__NOT_FOUND;
            r.message = "no session 77\x1b[2J";
            send_response(f->fd, &r, -1);
            break;
        }
        case FAKE_STALE_FIRST: {
            uint64_t id = req->id;
            req->id = id - 1;
            answer(f, req); /* a reply the client no longer waits for */
            req->id = id;
            answer(f, req);
            break;
        }
        case FAKE_SILENT_ONCE:
            if (!f->held) {
                f->held = req;
                continue; /* answered late, before the next request */
            }
            answer(f, f->held);
            judgeq__request__free_unpacked(f->held, NULL);
            f->held = NULL;
            answer(f, req);
            break;
        case FAKE_WRONG_BODY:
            if (req->body_case == JUDGEQ__REQUEST__BODY_HELLO) {
                Judgeq__Pong pong = JUDGEQ__PONG__INIT;
                Judgeq__Response r = JUDGEQ__RESPONSE__INIT;
                r.has_id = 1;
                r.id = req->id;
                r.body_case = JUDGEQ__RESPONSE__BODY_PONG;
                r.pong = &pong;
                send_response(f->fd, &r, -1);
            } else {
                answer(f, req);
            }
            break;
        default:
            answer(f, req);
            break;
        }
        judgeq__request__free_unpacked(req, NULL);
    }
    if (f->held)
        judgeq__request__free_unpacked(f->held, NULL);
    close(f->fd);
    return NULL;
}

/* Starts a fake in `mode` and a client handle connected to it. */
static judgeq_conn *start(fake *f, fake_mode mode)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    *f = (fake){.fd = sv[1], .mode = mode};
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
    judgeq_conn *c;
    assert_int_equal(judgeq_connect_fd(sv[0], &c), JUDGEQ_OK);
    judgeq_set_timeout(c, 5000); /* a hung test fails instead of hanging */
    return c;
}

static void stop(fake *f, judgeq_conn *c)
{
    judgeq_close(c); /* EOF ends the fake's loop */
    pthread_join(f->thread, NULL);
}

/* ------------------------------------------------------------- tests */

static void test_round_trips(void **state)
{
    (void)state;
    int fds0 = count_fds();
    fake f;
    judgeq_conn *c = start(&f, FAKE_NORMAL);

    double rtt = -1;
    assert_int_equal(judgeq_ping(c, &rtt), JUDGEQ_OK);
    assert_true(rtt > 0);
    assert_string_equal(judgeq_errmsg(c), "");

    judgeq_server_info info;
    assert_int_equal(judgeq_hello(c, "test", &info), JUDGEQ_OK);
    assert_int_equal(info.protocol_version, JUDGEQ_PROTOCOL_VERSION);
    assert_string_equal(info.server_version, "fake 0");
    assert_string_equal(info.model.architecture, "llama");
    assert_string_equal(info.model.path, "");
    assert_int_equal(info.model.bos, 1);
    assert_int_equal(info.model.eos, -1);
    assert_int_equal(info.n_capabilities, 2);
    assert_string_equal(info.capabilities[1], "export_kv");
    judgeq_server_info_free(&info);
    judgeq_server_info_free(&info); /* idempotent */

    uint64_t sid;
    uint32_t node;
    judgeq_session_opts so = {.max_context = 77, .kv_type = JUDGEQ_KV_TYPE_F16};
    assert_int_equal(judgeq_session_create(c, &so, &sid, &node), JUDGEQ_OK);
    assert_int_equal(sid, 1077);
    assert_int_equal(node, 1);

    judgeq_eviction ev;
    judgeq_eviction_init(&ev);
    ev.policy = JUDGEQ_POLICY_SNAPKV;
    ev.budget = 64;
    judgeq_prefill_input in = {.text = "hello world", .eviction = &ev};
    judgeq_prefill_result pr;
    assert_int_equal(judgeq_prefill(c, sid, &in, &pr), JUDGEQ_OK);
    assert_int_equal(pr.prompt_tokens, 3);
    assert_int_equal(pr.n_prompt_token_ids, 3);
    assert_int_equal(pr.prompt_token_ids[1], 42);
    assert_int_equal(pr.n_kept, 4);
    assert_int_equal(pr.kept[3], 6);
    assert_int_equal(pr.kv_bytes_full, 64); /* budget arrived */
    assert_int_equal(pr.kv_bytes_kept, 0);  /* window -1: absent */
    assert_true(pr.prefill_ms == 1.5);
    judgeq_prefill_result_free(&pr);

    ev.window = 8;
    ev.soft_path = "/tmp/soft.gguf";
    int32_t toks[5] = {1, 2, 3, 4, 5};
    in = (judgeq_prefill_input){.tokens = toks, .n_tokens = 5, .eviction = &ev};
    assert_int_equal(judgeq_prefill(c, sid, &in, &pr), JUDGEQ_OK);
    assert_int_equal(pr.prompt_tokens, 5);
    assert_int_equal(pr.kv_bytes_kept, 1);
    assert_true(pr.prefill_ms == 2.5);
    judgeq_prefill_result_free(&pr);

    int32_t *ids;
    size_t n;
    assert_int_equal(judgeq_tokenize(c, "x", false, &ids, &n), JUDGEQ_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 42);
    free(ids);
    char *text;
    size_t tl;
    assert_int_equal(judgeq_detokenize(c, toks, 5, &text, &tl), JUDGEQ_OK);
    assert_int_equal(tl, 4);
    assert_memory_equal(text, "ab\0c", 5);
    free(text);

    judgeq_stats st;
    assert_int_equal(judgeq_get_stats(c, &st), JUDGEQ_OK);
    assert_int_equal(st.sessions, 3);
    assert_int_equal(st.rss_bytes, 123456789);
    assert_int_equal(st.open_fds, 17);
    assert_int_equal(st.n_pools, 1);
    assert_string_equal(st.pools[0].cpuset, "0-7");
    assert_int_equal(st.pools[0].threads, 8);
    judgeq_stats_free(&st);

    uint64_t child;
    assert_int_equal(judgeq_fork(c, sid, &child), JUDGEQ_OK);
    assert_int_equal(child, sid + 1);
    assert_int_equal(judgeq_session_close(c, child), JUDGEQ_OK);

    stop(&f, c);
    assert_int_equal(count_fds(), fds0);
}

typedef struct {
    int n;
    int stop_after;
    char text[256];
    float logprob_sum;
} gen_sink;

static int on_token(void *user, const judgeq_token *t)
{
    gen_sink *s = user;
    assert_int_equal(t->index, (uint32_t)s->n);
    assert_int_equal(t->id, 100 + s->n);
    assert_int_equal(strlen(t->piece), t->piece_len);
    strncat(s->text, t->piece, sizeof s->text - strlen(s->text) - 1);
    s->logprob_sum += t->logprob;
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

static void test_generate_stream(void **state)
{
    (void)state;
    int fds0 = count_fds();
    fake f;
    judgeq_conn *c = start(&f, FAKE_NORMAL);
    judgeq_generate_opts go;
    judgeq_generate_opts_init(&go);
    go.max_tokens = 5;
    gen_sink s = {0};
    judgeq_generate_result gr;
    assert_int_equal(judgeq_generate(c, 1, &go, on_token, &s, &gr), JUDGEQ_OK);
    assert_int_equal(s.n, 5);
    assert_string_equal(s.text, " t0 t1 t2 t3 t4");
    assert_true(s.logprob_sum == -5.0f);
    assert_int_equal(gr.n_tokens, 5);
    assert_string_equal(gr.stop_reason, "length");
    assert_true(gr.decode_ms == 3.25);

    /* a callback that stops early: CANCELLED, and the rest of that stream
     * is dropped as stale by the next call */
    gen_sink s2 = {.stop_after = 2};
    go.max_tokens = 50;
    assert_int_equal(judgeq_generate(c, 1, &go, on_token, &s2, &gr),
                     JUDGEQ_ERR_CANCELLED);
    assert_int_equal(s2.n, 2);
    assert_non_null(strstr(judgeq_errmsg(c), "callback"));
    assert_int_equal(judgeq_ping(c, NULL), JUDGEQ_OK);

    /* no callback at all */
    go.max_tokens = 3;
    assert_int_equal(judgeq_generate(c, 1, &go, NULL, NULL, &gr), JUDGEQ_OK);
    assert_int_equal(gr.n_tokens, 3);
    stop(&f, c);
    assert_int_equal(count_fds(), fds0);
}

/* A token callback calling back into its own handle gets BUSY, not a
 * deadlock. */
static int reenter(void *user, const judgeq_token *t)
{
    (void)t;
    judgeq_conn *c = user;
    assert_int_equal(judgeq_ping(c, NULL), JUDGEQ_ERR_BUSY);
    return 0;
}

static void test_reentry_is_busy(void **state)
{
    (void)state;
    fake f;
    judgeq_conn *c = start(&f, FAKE_NORMAL);
    judgeq_generate_opts go;
    judgeq_generate_opts_init(&go);
    go.max_tokens = 2;
    assert_int_equal(judgeq_generate(c, 1, &go, reenter, c, NULL), JUDGEQ_OK);
    stop(&f, c);
}

static void check_kv_mapping(const judgeq_kv_mapping *m)
{
    assert_int_equal(m->header->n_layer, KV_LAYERS);
    for (uint32_t l = 0; l < KV_LAYERS; l++)
        for (uint32_t h = 0; h < KV_HEADS; h++) {
            const judgeq_kv_head_entry *e = judgeq_kv_head(m, l, h);
            assert_non_null(e);
            assert_int_equal(e->length, l * KV_HEADS + h + 1);
            const float *k = judgeq_kv_keys(m, l, h);
            const float *v = judgeq_kv_values(m, l, h);
            const int32_t *p = judgeq_kv_positions(m, l, h);
            for (uint32_t i = 0; i < e->length; i++) {
                assert_int_equal(p[i], (int32_t)(3 * i + h));
                for (uint32_t j = 0; j < KV_DIM; j++) {
                    assert_true(k[i * KV_DIM + j] == key_of(l, h, i, j));
                    assert_true(v[i * KV_DIM + j] == -key_of(l, h, i, j));
                }
            }
        }
    assert_null(judgeq_kv_head(m, KV_LAYERS, 0));
    assert_null(judgeq_kv_keys(m, 0, KV_HEADS));
}

static void test_export_kv_sealed(void **state)
{
    (void)state;
    int fds0 = count_fds();
    fake f;
    judgeq_conn *c = start(&f, FAKE_NORMAL);
    int fd = -1;
    judgeq_kv_export x;
    assert_int_equal(judgeq_export_kv(c, 7, &fd, &x), JUDGEQ_OK);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC); /* MSG_CMSG_CLOEXEC */
    assert_int_equal(x.n_heads, KV_LAYERS * KV_HEADS);
    char err[256];
    assert_int_equal(judgeq_kv_check_seals(fd, err, sizeof err), JUDGEQ_OK);
    judgeq_kv_mapping m;
    assert_int_equal(judgeq_kv_map(fd, &x, &m, err, sizeof err), JUDGEQ_OK);
    /* the mapping outlives the fd */
    close(fd);
    check_kv_mapping(&m);

    /* writing through the mapping faults (it is PROT_READ, and a
     * write-sealed memfd cannot be made writable) */
    assert_int_not_equal(mprotect((void *)m.base, m.size, PROT_READ | PROT_WRITE), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        ((volatile uint8_t *)m.base)[0] = 1;
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* a reply layout that disagrees with the header is refused */
    x.heads[2].length++;
    assert_int_equal(judgeq_export_kv(c, 7, &fd, NULL), JUDGEQ_OK);
    judgeq_kv_mapping m2;
    assert_int_equal(judgeq_kv_map(fd, &x, &m2, err, sizeof err), JUDGEQ_ERR_BAD_FD);
    assert_non_null(strstr(err, "differs"));
    assert_null(m2.base);
    close(fd);

    judgeq_kv_unmap(&m);
    judgeq_kv_export_free(&x);
    stop(&f, c);
    assert_int_equal(count_fds(), fds0);
}

static void test_export_kv_refused(void **state)
{
    (void)state;
    const struct {
        fake_mode mode;
        int code;
        const char *msg;
    } cases[] = {
        {FAKE_EXPORT_UNSEALED, JUDGEQ_ERR_BAD_FD, "F_SEAL_WRITE"},
        {FAKE_EXPORT_WRITABLE, JUDGEQ_ERR_BAD_FD, "F_SEAL_WRITE"},
        {FAKE_EXPORT_NO_FD, JUDGEQ_ERR_PROTOCOL, "without a file descriptor"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fds0 = count_fds();
        fake f;
        judgeq_conn *c = start(&f, cases[i].mode);
        int fd = 12345;
        assert_int_equal(judgeq_export_kv(c, 7, &fd, NULL), cases[i].code);
        assert_int_equal(fd, -1);
        assert_non_null(strstr(judgeq_errmsg(c), cases[i].msg));
        /* a refused fd is not a broken stream */
        assert_int_equal(judgeq_ping(c, NULL), JUDGEQ_OK);
        stop(&f, c);
        assert_int_equal(count_fds(), fds0);
    }

    /* sealed, but the table lies about a length: the mapper refuses */
    int fds0 = count_fds();
    fake f;
    judgeq_conn *c = start(&f, FAKE_EXPORT_BAD_LAYOUT);
    int fd;
    assert_int_equal(judgeq_export_kv(c, 7, &fd, NULL), JUDGEQ_OK);
    judgeq_kv_mapping m;
    char err[256];
    assert_int_equal(judgeq_kv_map(fd, NULL, &m, err, sizeof err), JUDGEQ_ERR_BAD_FD);
    assert_non_null(strstr(err, "reach past"));
    close(fd);

    /* a plain file or pipe is no memfd */
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(judgeq_kv_map(p[0], NULL, &m, err, sizeof err), JUDGEQ_ERR_BAD_FD);
    close(p[0]);
    close(p[1]);
    stop(&f, c);
    assert_int_equal(count_fds(), fds0);
}

/* Each hostile reply ends the call with the expected code and message,
 * marks the handle broken where the stream cannot be trusted, and leaks
 * nothing. */
static void test_hostile_replies(void **state)
{
    (void)state;
    const struct {
        fake_mode mode;
        int code;
        const char *msg;
        bool broken;
    } cases[] = {
        {FAKE_THREE_FDS, JUDGEQ_ERR_PROTOCOL, "truncated", true},
        {FAKE_TWO_FDS, JUDGEQ_ERR_PROTOCOL, "file descriptor", true},
        {FAKE_FD_MID_FRAME, JUDGEQ_ERR_PROTOCOL, "not at the start of a frame", true},
        {FAKE_GARBAGE, JUDGEQ_ERR_PROTOCOL, "not a Response", true},
        {FAKE_HUGE_LENGTH, JUDGEQ_ERR_PROTOCOL, "exceeds the limit", true},
        {FAKE_CLOSE_MID_FRAME, JUDGEQ_ERR_CLOSED, "middle of a frame", true},
        {FAKE_WRONG_ID, JUDGEQ_ERR_PROTOCOL, "never sent", true},
        {FAKE_ERROR, JUDGEQ_ERR_NOT_FOUND, "no session 77?[2J", false},
        {FAKE_WRONG_BODY, JUDGEQ_ERR_PROTOCOL, "reply body", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fds0 = count_fds();
        fake f;
        judgeq_conn *c = start(&f, cases[i].mode);
        int rc = cases[i].mode == FAKE_WRONG_BODY ? judgeq_hello(c, NULL, NULL)
                                                  : judgeq_ping(c, NULL);
        if (rc != cases[i].code || !strstr(judgeq_errmsg(c), cases[i].msg))
            fail_msg("case %zu: got %s '%s', want %s '%s'", i,
                     judgeq_status_name(rc), judgeq_errmsg(c),
                     judgeq_status_name(cases[i].code), cases[i].msg);
        char copy[512];
        assert_int_equal(judgeq_errmsg_copy(c, copy, sizeof copy), rc);
        assert_string_equal(copy, judgeq_errmsg(c));
        int next = judgeq_ping(c, NULL);
        if (cases[i].broken) {
            assert_int_equal(next, JUDGEQ_ERR_CLOSED);
            assert_int_equal(judgeq_fd(c), -1);
        } else {
            /* the connection still answers: the error fake errs again */
            assert_int_equal(next, cases[i].mode == FAKE_ERROR ? cases[i].code
                                                               : JUDGEQ_OK);
        }
        stop(&f, c);
        if (count_fds() != fds0)
            fail_msg("case %zu leaked %d fds", i, count_fds() - fds0);
    }
}

static void test_stale_and_timeout(void **state)
{
    (void)state;
    int fds0 = count_fds();
    fake f;
    judgeq_conn *c = start(&f, FAKE_STALE_FIRST);
    for (int i = 0; i < 3; i++)
        assert_int_equal(judgeq_ping(c, NULL), JUDGEQ_OK);
    stop(&f, c);

    /* the first request goes unanswered: TIMEOUT, the handle stays
     * usable, and the late reply is discarded when it comes */
    c = start(&f, FAKE_SILENT_ONCE);
    judgeq_set_timeout(c, 50);
    assert_int_equal(judgeq_ping(c, NULL), JUDGEQ_ERR_TIMEOUT);
    assert_non_null(strstr(judgeq_errmsg(c), "50 ms"));
    judgeq_set_timeout(c, 5000);
    assert_int_equal(judgeq_ping(c, NULL), JUDGEQ_OK);
    assert_int_equal(f.n_requests, 2);
    stop(&f, c);
    assert_int_equal(count_fds(), fds0);
}

static void test_small_max_frame(void **state)
{
    (void)state;
    fake f;
    judgeq_conn *c = start(&f, FAKE_NORMAL);
    judgeq_set_max_frame(c, 64);
    judgeq_generate_opts go;
    judgeq_generate_opts_init(&go);
    go.max_tokens = 1;
    judgeq_stats st;
    assert_int_equal(judgeq_get_stats(c, &st), JUDGEQ_OK); /* < 64 bytes */
    judgeq_stats_free(&st);
    judgeq_server_info info;
    judgeq_set_max_frame(c, 0); /* clamped to 64 */
    assert_int_equal(judgeq_hello(c, "a-rather-long-client-name", &info), JUDGEQ_OK);
    judgeq_server_info_free(&info);
    stop(&f, c);
}

static void test_connect_errors(void **state)
{
    (void)state;
    int fds0 = count_fds();
    judgeq_conn *c;
    char *path = jqt_fmt("%s/no-such.sock", jqt_tmpdir());
    assert_int_equal(judgeq_connect(path, 100, &c), JUDGEQ_ERR_UNAVAILABLE);
    assert_non_null(c);
    assert_non_null(strstr(judgeq_errmsg(c), path));
    assert_int_equal(judgeq_ping(c, NULL), JUDGEQ_ERR_CLOSED);
    judgeq_close(c);
    free(path);

    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    assert_int_equal(judgeq_connect(longp, 100, &c), JUDGEQ_ERR_ARG);
    judgeq_close(c);

    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(judgeq_connect_fd(p[0], &c), JUDGEQ_ERR_ARG); /* owns p[0] */
    judgeq_close(c);
    close(p[1]);

    /* a real listening socket in the file system */
    char *sp = jqt_fmt("%s/ok.sock", jqt_tmpdir());
    int ls = jqt_unix_listen(sp, SOCK_STREAM);
    assert_int_equal(judgeq_connect(sp, 100, &c), JUDGEQ_OK);
    assert_true(judgeq_fd(c) >= 0);
    assert_true(fcntl(judgeq_fd(c), F_GETFD) & FD_CLOEXEC);
    judgeq_close(c);
    close(ls);
    unlink(sp);
    free(sp);

    judgeq_close(NULL);
    assert_int_equal(judgeq_ping(NULL, NULL), JUDGEQ_ERR_ARG);
    assert_string_equal(judgeq_status_name(JUDGEQ_ERR_PERMISSION_DENIED),
                        "PERMISSION_DENIED");
    assert_string_equal(judgeq_status_name(99), "UNKNOWN");
    assert_int_equal(count_fds(), fds0);
}

/* Several threads share one handle: the lock serializes their calls. */
static void *pinger(void *arg)
{
    judgeq_conn *c = arg;
    for (int i = 0; i < 200; i++)
        if (judgeq_ping(c, NULL) != JUDGEQ_OK)
            return (void *)1;
    return NULL;
}

static void test_threads_share_handle(void **state)
{
    (void)state;
    fake f;
    judgeq_conn *c = start(&f, FAKE_NORMAL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, pinger, c), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        assert_null(r);
    }
    assert_int_equal(f.n_requests, 800);
    stop(&f, c);
}

/* Random bytes from the "daemon" never crash the client. */
static void *spew(void *arg)
{
    int *a = arg;
    jqt_rng r;
    jqt_rng_seed(&r, (uint64_t)a[1]);
    uint8_t buf[512];
    size_t n = 4 + jqt_rng_u64(&r) % (sizeof buf - 4);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)jqt_rng_u64(&r);
    if (a[1] % 2) { /* a plausible length prefix, then junk */
        uint32_t len = (uint32_t)(n - 4);
        memcpy(buf, &len, 4);
    }
    send_all(a[0], buf, n);
    close(a[0]);
    return NULL;
}

static void test_random_bytes(void **state)
{
    (void)state;
    int fds0 = count_fds();
    for (int seed = 1; seed <= 64; seed++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        int arg[2] = {sv[1], seed};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, spew, arg), 0);
        judgeq_conn *c;
        assert_int_equal(judgeq_connect_fd(sv[0], &c), JUDGEQ_OK);
        judgeq_set_timeout(c, 2000);
        judgeq_stats st;
        int rc = judgeq_get_stats(c, &st);
        assert_int_not_equal(rc, JUDGEQ_OK);
        assert_true(rc == JUDGEQ_ERR_PROTOCOL || rc == JUDGEQ_ERR_CLOSED ||
                    rc > 0 || rc == JUDGEQ_ERR_IO);
        judgeq_stats_free(&st);
        pthread_join(t, NULL);
        judgeq_close(c);
    }
    assert_int_equal(count_fds(), fds0);
}

/* ------------------------------------------- the CLI against the fake */

typedef struct {
    int listen_fd;
    int n_conns;
} fake_listener;

static void *listener_main(void *arg)
{
    fake_listener *l = arg;
    for (int i = 0; i < l->n_conns; i++) {
        int fd = accept4(l->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            break;
        fake f = {.fd = fd, .mode = FAKE_NORMAL};
        fake_main(&f); /* serves until the client closes; closes fd */
    }
    return NULL;
}

/* `judgeq --socket P generate --json` prints the fields of `run --json`
 * (the contract), filled from the daemon's replies; stats and ping talk
 * the protocol too. */
static void test_cli_against_fake(void **state)
{
    (void)state;
    char *sock = jqt_fmt("%s/fake-%d.sock", jqt_tmpdir(), (int)getpid());
    int ls = jqt_unix_listen(sock, SOCK_STREAM);
    fake_listener l = {.listen_fd = ls, .n_conns = 4};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, listener_main, &l), 0);

    char *cmd = jqt_fmt("'%s' --socket '%s' generate -p hello -n 3 --seed 5 "
                        "--evict snapkv --budget 64 --json",
                        jqt_judgeq_bin(), sock);
    json_t *online = jqt_run_json(cmd);
    free(cmd);
    cmd = jqt_fmt("'%s' run -m '%s' -p hello -n 3 --seed 5 --evict snapkv "
                  "--budget 64 --json",
                  jqt_judgeq_bin(), jqt_model_path("stories260K.gguf"));
    json_t *offline = jqt_run_json(cmd);
    free(cmd);
    const char *key;
    json_t *v;
    json_object_foreach(offline, key, v) {
        json_t *o = json_object_get(online, key);
        if (!o)
            fail_msg("generate --json lacks run's field '%s'", key);
        if (json_typeof(o) != json_typeof(v) &&
            !(json_is_number(o) && json_is_number(v)))
            fail_msg("field '%s' has another JSON type online", key);
    }
    assert_int_equal(json_object_size(online), json_object_size(offline));
    /* the values came from the fake's replies */
    assert_int_equal(json_array_size(json_object_get(online, "tokens")), 3);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(online, "tokens"), 2)), 102);
    assert_string_equal(json_string_value(json_object_get(online, "text")), " t0 t1 t2");
    assert_string_equal(json_string_value(json_object_get(online, "policy")), "snapkv");
    assert_int_equal(json_integer_value(json_object_get(online, "threads")), 8);
    assert_int_equal(json_integer_value(json_object_get(online, "seed")), 5);
    assert_int_equal(json_array_size(json_object_get(online, "kept")), 2);
    json_decref(online);
    json_decref(offline);

    /* streamed text, no JSON */
    int rc;
    cmd = jqt_fmt("JUDGEQ_SOCKET='%s' '%s' generate -p hi -n 2", sock, jqt_judgeq_bin());
    char *out = jqt_run(cmd, &rc, NULL);
    assert_int_equal(rc, 0);
    assert_string_equal(out, " t0 t1\n");
    free(out);
    free(cmd);

    cmd = jqt_fmt("'%s' stats --socket '%s'", jqt_judgeq_bin(), sock);
    json_t *st = jqt_run_json(cmd);
    assert_int_equal(json_integer_value(json_object_get(st, "sessions")), 3);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(st, "pools"), 0), "cpuset")),
                        "0-7");
    json_decref(st);
    free(cmd);

    cmd = jqt_fmt("'%s' --socket '%s' ping --count 50", jqt_judgeq_bin(), sock);
    out = jqt_run(cmd, &rc, NULL);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "50 round trips, p50 "));
    assert_non_null(strstr(out, " us, p99 "));
    free(out);
    free(cmd);

    pthread_join(t, NULL);
    close(ls);
    unlink(sock);
    free(sock);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_generate_stream),
        cmocka_unit_test(test_reentry_is_busy),
        cmocka_unit_test(test_export_kv_sealed),
        cmocka_unit_test(test_export_kv_refused),
        cmocka_unit_test(test_hostile_replies),
        cmocka_unit_test(test_stale_and_timeout),
        cmocka_unit_test(test_small_max_frame),
        cmocka_unit_test(test_connect_errors),
        cmocka_unit_test(test_threads_share_handle),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_cli_against_fake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

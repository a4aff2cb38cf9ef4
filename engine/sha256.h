/* sha256.h — SHA-256 (FIPS 180-4), for recording exactly which model and
 * soft-token files an evaluation ran on (run.json). Unlike jq_hash64, the
 * digest is the one `sha256sum` prints, so a reader can check a file
 * against a published checksum without judgeq. */
#ifndef JQ_SHA256_H
#define JQ_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define JQ_SHA256_BYTES 32
/* 64 lowercase hex digits and a NUL */
#define JQ_SHA256_HEX 65

typedef struct {
    uint32_t h[8];      /* chaining state */
    uint64_t n_bytes;   /* message length so far */
    uint8_t buf[64];    /* a partial block */
    size_t n_buf;       /* bytes used in buf */
} jq_sha256_ctx;

void jq_sha256_init(jq_sha256_ctx *c);
void jq_sha256_update(jq_sha256_ctx *c, const void *data, size_t len);
/* Writes the 32-byte digest; c must be initialised again before reuse. */
void jq_sha256_final(jq_sha256_ctx *c, uint8_t out[JQ_SHA256_BYTES]);

/* One-shot digest of data[0..len) as lowercase hex. */
void jq_sha256_hex(const void *data, size_t len, char hex[JQ_SHA256_HEX]);
/* Digest of a whole file as lowercase hex, read in blocks (models are
 * GBs; it is never loaded whole). 0, or -1 with a message naming the
 * file. */
int jq_sha256_file(const char *path, char hex[JQ_SHA256_HEX], char *err,
                   size_t errlen);

#endif

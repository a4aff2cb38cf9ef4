/* paths.h — which files a client may make the daemon open (--allow-path).
 *
 * The protocol lets a client name a file for the daemon to read (today one:
 * Prefill.eviction.soft_path). The daemon runs as another user than its
 * clients and may read what they cannot, so a client path is opened only
 * when the file it leads to lies under one of the administrator's
 * --allow-path prefixes. Without a prefix no client path is opened at all.
 *
 * Prefixes are canonicalised with realpath(3) at start. A client's path is
 * judged by the name the kernel gives the file it actually reached, after
 * every "..", "." and symbolic link: no spelling and no link can step out
 * of a prefix, and no other process can swap a link in between the check
 * and the read (the check is made on the open descriptor, which the reader
 * then uses). Prefixes match whole path components: /srv/soft allows
 * /srv/soft and /srv/soft/a.gguf, never /srv/softer/a.gguf.
 */
#ifndef JQ_DAEMON_PATHS_H
#define JQ_DAEMON_PATHS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "options.h"

typedef struct {
    char *prefix[JQ_STR_LIST_MAX]; /* canonical, absolute, no trailing / */
    size_t n;
} jq_allow_list;

/* Canonicalises the --allow-path values. Each must exist (a directory or
 * a file). 0, or -1 with err naming the value at fault. */
int jq_allow_list_init(jq_allow_list *a, const jq_str_list *prefixes,
                       char *err, size_t errlen);
void jq_allow_list_free(jq_allow_list *a);

/* Whether the canonical absolute path lies under the canonical prefix,
 * comparing whole components ("/" is under "/" and holds everything). */
bool jq_path_under(const char *path, const char *prefix);

/* Opens a client's path when a prefix allows the regular file it leads
 * to. field names the request field in messages ("prefill.eviction.
 * soft_path"). Returns an O_PATH descriptor (close-on-exec) of the file,
 * which the reader reopens for reading as /proc/self/fd/N, and its size in
 * *size; or -1 with *err: PERMISSION_DENIED (no prefix allows it, or it
 * cannot be reached), NOT_FOUND (nothing there) or INVALID_ARGUMENT (not
 * absolute, or not a regular file). Opening with O_PATH reads nothing and
 * has no side effects: a FIFO does not block and a device is not opened. */
int jq_allow_open(const jq_allow_list *a, const char *field, const char *path,
                  uint64_t *size, jq_wire_error *err);

#endif

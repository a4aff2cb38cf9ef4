/* load_error.h — the one line judgeqd prints when its model or soft-token
 * file cannot be loaded at start (what `systemctl status` and the journal
 * show, so an administrator can act without reading code).
 *
 * The engine's messages name the file, often twice ("m.gguf: gguf: m.gguf:
 * header: ..."); the line names the option and the file once, then the
 * problem: "cannot load --model m.gguf: header: metadata key count
 * truncated (file offset 16, file size 20)".
 */
#ifndef JQ_DAEMON_LOAD_ERROR_H
#define JQ_DAEMON_LOAD_ERROR_H

#include <stdbool.h>
#include <stddef.h>

/* Writes the line into out (always NUL-terminated, no line breaks):
 * option is "model" or "soft", path the file as given, err the loader's
 * message. */
void jq_load_error(char *out, size_t size, const char *option,
                   const char *path, const char *err);

#endif

/* cli_model.c — model loading and tokenization shared by the offline
 * subcommands. */
#include <stdlib.h>

#include "cli.h"
#include "model.h"
#include "thread_pool.h"

struct jq_model *jq_cli_load_model(const jq_cmd_info *cmd, const char *path)
{
    char err[1024];
    jq_model *m = jq_model_load(path, err, sizeof err);
    if (!m)
        jq_cli_fail(cmd, "%s", err);
    return m;
}

int32_t *jq_cli_tokenize(const jq_cmd_info *cmd, const struct jq_model *m,
                         const char *text, size_t len, bool no_bos, size_t *n)
{
    char err[512];
    int32_t *ids = NULL;
    bool bos = !no_bos && jq_vocab_add_bos(m->vocab);
    if (jq_tokenize(m->vocab, text, len, bos, &ids, n, err, sizeof err) != 0)
        jq_cli_fail(cmd, "cannot tokenize the prompt: %s", err);
    return ids;
}

int jq_cli_default_threads(void)
{
    return jq_available_cpus();
}

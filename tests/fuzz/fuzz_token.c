/* fuzz_token.c - token files and Authorization headers.
 *
 * The first byte picks the target: a token file (written to a private temp
 * file, mode 0600, then loaded), or a header value, whose token is then
 * verified against an empty store.  Neither may crash or leak, and no error
 * message may carry what looked like a token. */
#include "config.h"

#include <assert.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "token.h"

static char path[64];

/* The longest run of characters a token is made of: token.c shows any run
 * of 40 or more as <redacted>, whatever field it came from. */
static size_t longest_token_run(const char *s)
{
    size_t best = 0, run = 0;

    for (; *s; s++) {
        bool tokch = (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
                     (*s >= '0' && *s <= '9') || *s == '_' || *s == '-';

        run = tokch ? run + 1 : 0;
        if (run > best)
            best = run;
    }
    return best;
}

static void cleanup(void)
{
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mcpgw_token_info info;
    mcpgw_tokens *t = NULL;
    char err[512];
    int fd;

    if (!path[0]) {
        snprintf(path, sizeof(path), "/tmp/fuzz_token.%d.json", (int)getpid());
        atexit(cleanup);
    }
    if (size == 0)
        return 0;
    if (data[0] & 1) {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert(fd >= 0);
        assert(write(fd, data + 1, size - 1) == (ssize_t)(size - 1));
        close(fd);
        if (mcpgw_tokens_load(path, &t, err, sizeof(err)) == 0) {
            for (size_t i = 0; mcpgw_tokens_get(t, i, &info); i++)
                assert(info.name && info.prefix);
            mcpgw_tokens_free(t);
        } else {
            assert(longest_token_run(err) < 40);
        }
    } else {
        char *value = malloc(size);
        const char *tok;
        size_t len;

        memcpy(value, data + 1, size - 1);
        value[size - 1] = '\0';
        tok = mcpgw_token_from_header(value, &len);
        if (tok) {
            assert(mcpgw_tokens_load("/nonexistent/tokens.json", &t, err, sizeof(err)) == 0);
            assert(mcpgw_tokens_verify(t, tok, len, time(NULL), &info) == MCPGW_EAUTH);
            mcpgw_tokens_free(t);
        }
        free(value);
    }
    return 0;
}

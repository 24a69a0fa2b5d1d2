/* fuzz_stdio.c - an MCP server's stdout, split into reads of fuzzed sizes.
 *
 * Lines come out whole whatever the split, an oversized one is reported
 * (never buffered past the cap), and every line goes through the JSON-RPC
 * shape classifier and, when oversized, the tail id recovery. */
#include "config.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "framer.h"
#include "jsonrpc.h"

#define MAX_LINE 512

static void drain(struct mcpgw__framer *f, json_tokener *tok)
{
    char *line;
    size_t len;
    int kind;

    while ((kind = mcpgw__framer_next(f, &line, &len)) != MCPGW__FRAME_NONE) {
        struct mcpgw__rpc m;
        uint64_t id;

        if (kind == MCPGW__FRAME_OVERSIZE) {
            assert(len <= MCPGW__FRAMER_TAIL && mcpgw__framer_skipped(f) > MAX_LINE);
            mcpgw__rpc_tail_id(line, len, &id);
            continue;
        }
        assert(len <= MAX_LINE && memchr(line, '\n', len) == NULL);
        if (mcpgw__rpc_parse(tok, line, len, &m) == 0) {
            if (m.kind == MCPGW__RPC_RESPONSE)
                mcpgw__rpc_id_ours(m.id, &id);
            mcpgw__rpc_release(&m);
        }
    }
    assert(f->cap <= MAX_LINE + 1 + MCPGW__FRAMER_CHUNK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_tokener *tok = json_tokener_new_ex(16);
    struct mcpgw__framer f;
    size_t off = 0, step;

    if (size < 1) {
        json_tokener_free(tok);
        return 0;
    }
    step = (size_t)data[0] % 64 + 1;    /* the read size */
    data++;
    size--;
    mcpgw__framer_init(&f, MAX_LINE);
    while (off < size) {
        size_t n = size - off < step ? size - off : step;

        assert(mcpgw__framer_feed(&f, (const char *)data + off, n) == 0);
        drain(&f, tok);
        off += n;
    }
    mcpgw__framer_release(&f);
    json_tokener_free(tok);
    return 0;
}

/* fuzz_stdio.c - an MCP server's stdout, split into reads of fuzzed sizes.
 *
 * Lines come out whole whatever the split, an oversized one is reported
 * (never buffered past the cap), and every line goes through the JSON-RPC
 * shape classifier and, when oversized, the tail id recovery.  The codec's
 * member scan (the hub's path for results taken as text) is checked against
 * json-c: whatever it calls valid and plain, json-c parses, and every member
 * it finds is what json-c finds there, value for value. */
#include "config.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "framer.h"
#include "jsonrpc.h"

#define MAX_LINE 512

/* s (len bytes) as one JSON value, or NULL.  The text is copied with its
 * NUL and that is parsed too: json-c cannot end a bare number at the end
 * of its input ("5" waits for more digits). */
static json_object *parse_all(json_tokener *tok, const char *s, size_t len)
{
    char *copy = malloc(len + 1);
    json_object *o;

    assert(copy);
    memcpy(copy, s, len);
    copy[len] = '\0';
    json_tokener_reset(tok);
    o = json_tokener_parse_ex(tok, copy, (int)len + 1);
    if (o && json_tokener_get_parse_end(tok) < len) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_reset(tok);
    free(copy);
    return o;
}

static void scan_agrees(json_tokener *tok, const char *line, size_t len)
{
    static const char *const keys[] = { "jsonrpc", "id", "result", "error", "method" };
    struct mcpgw_codec_span sp[5];
    json_object *root, *want, *got;

    if (mcpgw_codec_scan_members(line, len, 15, keys, 5, sp) != 0)
        return;
    root = parse_all(tok, line, len);
    assert(root && json_object_is_type(root, json_type_object));
    for (size_t k = 0; k < 5; k++) {
        bool present = json_object_object_get_ex(root, keys[k], &want);

        assert(present == (sp[k].len > 0));
        if (!present)
            continue;
        got = parse_all(tok, line + sp[k].off, sp[k].len);
        assert(got || !want);
        assert(json_object_equal(got, want));
        json_object_put(got);
    }
    json_object_put(root);
}

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
        scan_agrees(tok, line, len);
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

    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);   /* as the hub's */

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

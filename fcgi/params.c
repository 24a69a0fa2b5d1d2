/* params.c - the FastCGI request head check (params.h). */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "limits.h"
#include "params.h"

/* libfcgi answers FCGI_GET_VALUES (ProcessManagementRecord) by reading
 * its pairs with the params reader (whatever a length claims is
 * allocated) and by sprintf-ing each name it knows into a 64-byte stack
 * buffer that holds three: four known names overflow it.  So a
 * FCGI_GET_VALUES record passes only with at most three pairs that lie
 * wholly inside it. */
#define GET_VALUES_PAIRS_MAX 3

static bool get_values_ok(const unsigned char *c, size_t clen)
{
    size_t i = 0, pairs = 0;

    while (i < clen) {
        uint32_t len[2];

        for (int k = 0; k < 2; k++) {
            if (i >= clen)
                return false;
            if (!(c[i] & 0x80)) {
                len[k] = c[i++];
            } else {
                if (clen - i < 4)
                    return false;
                len[k] = (uint32_t)(c[i] & 0x7f) << 24 | (uint32_t)c[i + 1] << 16 |
                         (uint32_t)c[i + 2] << 8 | c[i + 3];
                i += 4;
            }
        }
        if (len[0] > clen - i || len[1] > clen - i - len[0] || ++pairs > GET_VALUES_PAIRS_MAX)
            return false;
        i += (size_t)len[0] + len[1];
    }
    return true;
}

enum fcgi_head fcgi_params_check(const unsigned char *p, size_t n, struct fcgi_head_info *info)
{
    struct fcgi_head_info dummy;
    size_t off = 0, nlb = 0;
    unsigned char lb[4];
    uint32_t name_len = 0;
    uint64_t skip = 0;
    bool value_next = false;

    if (!info)
        info = &dummy;
    memset(info, 0, sizeof(*info));
    while (n - off >= FCGI_HEADER_LEN) {
        unsigned type = p[off + 1], id = (unsigned)p[off + 2] << 8 | p[off + 3];
        size_t clen = (size_t)p[off + 4] << 8 | p[off + 5], plen = p[off + 6];
        const unsigned char *c = p + off + FCGI_HEADER_LEN;

        if (p[off] != FCGI_VERSION_1)
            return FCGI_HEAD_BAD;
        if (n - off - FCGI_HEADER_LEN < clen + plen)
            return FCGI_HEAD_MORE;
        off += FCGI_HEADER_LEN + clen + plen;
        if (id == 0) {
            /* A management record: libfcgi answers FCGI_GET_VALUES.  Any
             * other type it answers with FCGI_UNKNOWN_TYPE, leaking the
             * params it allocated first (24 bytes a record, found by
             * tests/fuzz/fuzz_fcgi_params) and reading the record's content
             * as the request's own bytes; no web server sends one. */
            if (type != FCGI_T_GET_VALUES || !get_values_ok(c, clen))
                return FCGI_HEAD_BAD;
            continue;
        }
        if (!info->req_id) {
            /* Only a responder: libfcgi would answer another role and read
             * the next request's head on its own. */
            if (type != FCGI_T_BEGIN_REQUEST || clen != 8 ||
                ((unsigned)c[0] << 8 | c[1]) != FCGI_ROLE_RESPONDER)
                return FCGI_HEAD_BAD;
            info->req_id = id;
            continue;
        }
        /* No multiplexing, no FCGI_STDIN or abort before the params end. */
        if (id != info->req_id || type != FCGI_T_PARAMS)
            return FCGI_HEAD_BAD;
        if (clen == 0) {
            /* libfcgi does not skip the padding of this empty record: it
             * reads it as the next record's header, one of request id 0
             * it then answers (and leaks 48 bytes for; found by
             * tests/fuzz/fuzz_fcgi_params).  No web server pads it. */
            if (nlb != 0 || skip != 0 || value_next || plen != 0)
                return FCGI_HEAD_BAD;
            info->end = off;
            return FCGI_HEAD_OK;
        }
        for (size_t i = 0; i < clen;) {
            uint32_t len;

            if (skip) {
                size_t k = skip < clen - i ? (size_t)skip : clen - i;

                i += k;
                skip -= k;
                continue;
            }
            lb[nlb++] = c[i++];
            if (nlb == 1 && !(lb[0] & 0x80))
                len = lb[0];
            else if (nlb == 4)
                len = (uint32_t)(lb[0] & 0x7f) << 24 | (uint32_t)lb[1] << 16 |
                      (uint32_t)lb[2] << 8 | lb[3];
            else
                continue;
            nlb = 0;
            /* Refused on the length itself, before any byte it claims is
             * awaited: libfcgi would allocate it. */
            if (len > MCPGW_FCGI_HEAD_BYTES_MAX)
                return FCGI_HEAD_TOO_LARGE;
            if (!value_next) {
                name_len = len;
                value_next = true;
                continue;
            }
            value_next = false;
            info->bytes += (size_t)name_len + len;
            if (++info->pairs > MCPGW_FCGI_PARAMS_MAX || info->bytes > MCPGW_FCGI_HEAD_BYTES_MAX)
                return FCGI_HEAD_TOO_LARGE;
            skip = (uint64_t)name_len + len;
        }
    }
    return FCGI_HEAD_MORE;
}

const char *fcgi_head_name(enum fcgi_head h)
{
    switch (h) {
    case FCGI_HEAD_MORE: return "more";
    case FCGI_HEAD_OK: return "ok";
    case FCGI_HEAD_TOO_LARGE: return "too large";
    case FCGI_HEAD_BAD: return "malformed";
    }
    return "?";
}

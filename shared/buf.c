#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"

void mcpgw_buf_init(struct mcpgw_buf *b, size_t max)
{
    b->ptr = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

void mcpgw_buf_release(struct mcpgw_buf *b)
{
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

void mcpgw_buf_reset(struct mcpgw_buf *b)
{
    b->len = 0;
    if (b->ptr)
        b->ptr[0] = '\0';
}

int mcpgw_buf_reserve(struct mcpgw_buf *b, size_t n)
{
    size_t need, ncap;
    char *p;

    if (n > b->max || b->len > b->max - n)
        return MCPGW_ETOOBIG;
    need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    ncap = b->cap ? b->cap : 64;
    while (ncap < need)
        ncap = ncap > ((size_t)-1) / 2 ? need : ncap * 2;
    /* The ceiling is on len; capacity may exceed max+1 only by rounding. */
    if (ncap > b->max + 1 && need <= b->max + 1)
        ncap = b->max + 1;
    p = realloc(b->ptr, ncap);
    if (!p)
        return -ENOMEM;
    b->ptr = p;
    b->cap = ncap;
    return 0;
}

/* mcpgw_buf_add() when the bytes do not fit yet. */
int mcpgw__buf_add_grow(struct mcpgw_buf *b, const void *p, size_t n)
{
    int rc = mcpgw_buf_reserve(b, n);

    if (rc < 0)
        return rc;
    if (n)
        memcpy(b->ptr + b->len, p, n);
    b->len += n;
    b->ptr[b->len] = '\0';
    return 0;
}

/* Digits of v, sign first, ending at end: where they start. */
static char *dec(char *end, uint64_t v, bool minus)
{
    do
        *--end = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    if (minus)
        *--end = '-';
    return end;
}

int mcpgw_buf_add_u64(struct mcpgw_buf *b, uint64_t v)
{
    char t[21], *p = dec(t + sizeof(t), v, false);

    return mcpgw_buf_add(b, p, (size_t)(t + sizeof(t) - p));
}

int mcpgw_buf_add_i64(struct mcpgw_buf *b, int64_t v)
{
    /* -(v + 1) + 1: no overflow for INT64_MIN. */
    char t[21], *p = dec(t + sizeof(t), v < 0 ? (uint64_t)-(v + 1) + 1 : (uint64_t)v, v < 0);

    return mcpgw_buf_add(b, p, (size_t)(t + sizeof(t) - p));
}

int mcpgw_buf_printf(struct mcpgw_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n, rc;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    rc = mcpgw_buf_reserve(b, (size_t)n);
    if (rc < 0)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void mcpgw_buf_consume(struct mcpgw_buf *b, size_t n)
{
    if (n >= b->len) {
        mcpgw_buf_reset(b);
        return;
    }
    memmove(b->ptr, b->ptr + n, b->len - n);
    b->len -= n;
    b->ptr[b->len] = '\0';
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len;
    unsigned int cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int mcpgw_buf_add_json_str(struct mcpgw_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t mark = b->len, i = 0, run;
    int rc;

    if ((rc = mcpgw_buf_addc(b, '"')) < 0)
        goto fail;
    while (i < n) {
        /* Copy plain runs in one go: this is the hot path. */
        for (run = i; run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' &&
             p[run] != '\\'; run++)
            ;
        if (run > i && (rc = mcpgw_buf_add(b, p + i, run - i)) < 0)
            goto fail;
        i = run;
        if (i >= n)
            break;
        if (p[i] == '"' || p[i] == '\\') {
            char e[2] = { '\\', (char)p[i] };

            rc = mcpgw_buf_add(b, e, 2);
            i++;
        } else if (p[i] < 0x20) {
            char e[6] = { '\\', 'u', '0', '0', hex[p[i] >> 4], hex[p[i] & 15] };

            if (p[i] == '\n')
                rc = mcpgw_buf_add(b, MCPGW_STRLIT("\\n"));
            else if (p[i] == '\r')
                rc = mcpgw_buf_add(b, MCPGW_STRLIT("\\r"));
            else if (p[i] == '\t')
                rc = mcpgw_buf_add(b, MCPGW_STRLIT("\\t"));
            else
                rc = mcpgw_buf_add(b, e, 6);
            i++;
        } else {
            size_t len = utf8_seq(p + i, n - i);

            if (len == 0) {
                rc = mcpgw_buf_add(b, MCPGW_STRLIT("\xef\xbf\xbd"));
                i++;
            } else if (len == 3 && p[i] == 0xe2 && p[i + 1] == 0x80 &&
                       (p[i + 2] == 0xa8 || p[i + 2] == 0xa9)) {
                rc = mcpgw_buf_add(b, p[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
                i += 3;
            } else {
                rc = mcpgw_buf_add(b, p + i, len);
                i += len;
            }
        }
        if (rc < 0)
            goto fail;
    }
    if ((rc = mcpgw_buf_addc(b, '"')) < 0)
        goto fail;
    return 0;
fail:
    b->len = mark;
    if (b->ptr)
        b->ptr[mark] = '\0';
    return rc;
}

/* buf.h - a growing byte buffer with a ceiling (curl's dynbuf idea).
 *
 * Invariant: ptr is NULL or holds len bytes followed by a NUL (so text can be
 * handed to C APIs), len < cap, len <= max.  Growing past max is an error
 * (MCPGW_ETOOBIG), never an out-of-memory surprise.
 */
#ifndef MCPGW_BUF_H
#define MCPGW_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct mcpgw_buf {
    char *ptr;
    size_t len, cap, max;
};

#define MCPGW_STRLIT(s) (s), (sizeof(s) - 1)

void mcpgw_buf_init(struct mcpgw_buf *b, size_t max);      /* cannot fail */
void mcpgw_buf_release(struct mcpgw_buf *b);               /* frees ptr, not b */
void mcpgw_buf_reset(struct mcpgw_buf *b);                 /* len = 0, keeps memory */

/* Append n bytes.  0, -ENOMEM, or MCPGW_ETOOBIG (buffer unchanged).
 * Inline when the bytes fit: the codecs append a few bytes at a time, many
 * times per message.  Fitting is enough, as cap <= max + 1 (buf.c). */
int mcpgw__buf_add_grow(struct mcpgw_buf *b, const void *p, size_t n);
static inline int mcpgw_buf_add(struct mcpgw_buf *b, const void *p, size_t n)
{
    if (n < b->cap - b->len) {
        if (n)                  /* p may be NULL then */
            memcpy(b->ptr + b->len, p, n);
        b->len += n;
        b->ptr[b->len] = '\0';
        return 0;
    }
    return mcpgw__buf_add_grow(b, p, n);
}
static inline int mcpgw_buf_adds(struct mcpgw_buf *b, const char *s)
{
    return mcpgw_buf_add(b, s, strlen(s));
}
static inline int mcpgw_buf_addc(struct mcpgw_buf *b, char c)
{
    return mcpgw_buf_add(b, &c, 1);
}
/* Decimal text of v (what printf's %" PRIu64 " / %" PRId64 " give, without its cost). */
int mcpgw_buf_add_u64(struct mcpgw_buf *b, uint64_t v);
int mcpgw_buf_add_i64(struct mcpgw_buf *b, int64_t v);
/* printf-style append; same errors.  Formats with %s of NULL are a bug. */
int mcpgw_buf_printf(struct mcpgw_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append s (n bytes) as a JSON string literal, quotes included: '"' and '\\'
 * and control characters escaped, U+2028/U+2029 escaped (JavaScript reads
 * them as line breaks), and each byte of invalid UTF-8 replaced by U+FFFD,
 * so the output is always valid JSON in valid UTF-8 whatever s holds.
 * Same errors as mcpgw_buf_add; on error b is unchanged. */
int mcpgw_buf_add_json_str(struct mcpgw_buf *b, const char *s, size_t n);

/* Make room for at least n more bytes without changing len. */
int mcpgw_buf_reserve(struct mcpgw_buf *b, size_t n);

/* Drop the first n bytes (n <= len), moving the rest to the front. */
void mcpgw_buf_consume(struct mcpgw_buf *b, size_t n);

#endif

/* token.c - bearer tokens: generation, the hash file, constant-time checks.
 *
 * The format and the file are described in token.h.  Two rules shape this
 * file: a token (or its hash) never leaves it except through the caller's
 * out buffer of mcpgw_tokens_add(), and every way a presented token can fail
 * ends in the same MCPGW_EAUTH.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/limits.h>     /* PATH_MAX; <limits.h> is ours under -Ishared */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "buf.h"
#include "err.h"
#include "limits.h"
#include "log.h"
#include "statefile.h"
#include "token.h"

/* mcpgw_ + 43 base64url chars (32 bytes, no padding) + _ + 8 hex of CRC32 */
#define TAG "mcpgw_"
#define TAG_LEN 6
#define SECRET_BYTES 32
#define SECRET_CHARS 43
#define BODY_LEN (TAG_LEN + SECRET_CHARS)       /* what the CRC covers */
#define CRC_CHARS 8
#define TOKEN_LEN (BODY_LEN + 1 + CRC_CHARS)
#define PREFIX_LEN 12
#define HASH_LEN 32
#define HASH_HEX (2 * HASH_LEN)

/* A value echoed into a message is cut here: enough to recognise it, short
 * enough that the message stays one readable line. */
#define QUOTE_CHARS 48
#define QUOTE_BUF (QUOTE_CHARS + 4)
/* A run this long of [A-Za-z0-9_-] is treated as a secret in messages: a
 * whole token (58), its secret part (43) and a hex hash (64) all qualify,
 * while ordinary names and scopes rarely do. */
#define SECRET_RUN 40

/* Read the file in pieces of this size (the ceiling is the file limit). */

struct entry {
    char *name;
    char **scopes;              /* NULL-terminated, nscopes entries */
    size_t nscopes;
    unsigned char hash[HASH_LEN];
    char prefix[PREFIX_LEN + 1];
    time_t created, expires;
    bool revoked;
};

struct mcpgw_tokens {
    struct entry *v;
    size_t n;
};

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* ---- character classes (ASCII only: the locale must not matter) ---- */

static bool is_alnum(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_b64url(unsigned char c)
{
    return is_alnum(c) || c == '-' || c == '_';
}

static bool is_ident(unsigned char c)
{
    return is_alnum(c) || c == '_' || c == '.' || c == '-';
}

static bool is_name_char(unsigned char c)
{
    return is_ident(c) || c == '@';
}

static int lower_hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool name_valid(const char *s, size_t n)
{
    size_t i;

    if (n < 1 || n > MCPGW_TOKEN_NAME_MAX)
        return false;
    for (i = 0; i < n; i++)
        if (!is_name_char((unsigned char)s[i]))
            return false;
    return true;
}

/* One side of a scope: "*" or 1..max identifier characters. */
static bool scope_part_valid(const char *s, size_t n, size_t max)
{
    size_t i;

    if (n == 1 && s[0] == '*')
        return true;
    if (n < 1 || n > max)
        return false;
    for (i = 0; i < n; i++)
        if (!is_ident((unsigned char)s[i]))
            return false;
    return true;
}

/* Length-carrying so a JSON string with an embedded NUL cannot pass. */
static bool scope_valid_n(const char *s, size_t n)
{
    const char *colon;

    if (n == 1 && s[0] == '*')
        return true;
    colon = memchr(s, ':', n);
    if (!colon)
        return false;
    return scope_part_valid(s, (size_t)(colon - s), MCPGW_SERVER_ID_MAX) &&
           scope_part_valid(colon + 1, n - (size_t)(colon - s) - 1, MCPGW_TOOL_NAME_MAX);
}

bool mcpgw_token_scope_valid(const char *scope)
{
    return scope && scope_valid_n(scope, strlen(scope));
}

static bool prefix_valid(const char *s, size_t n)
{
    size_t i;

    if (n > PREFIX_LEN)
        return false;
    for (i = 0; i < n; i++)
        if (!is_b64url((unsigned char)s[i]))
            return false;
    return true;
}

/* ---- messages ---- */

static bool secret_like(const char *s, size_t n)
{
    size_t i, run = 0;

    for (i = 0; i < n; i++) {
        if (!is_b64url((unsigned char)s[i]))
            run = 0;
        else if (++run >= SECRET_RUN)
            return true;
    }
    return false;
}

/* Make s (n bytes) safe to echo: printable ASCII, cut, one line.  Something
 * shaped like a token or a hash is replaced whole, because operators do
 * paste tokens where names belong.  Returns out. */
static const char *quote(char out[QUOTE_BUF], const char *s, size_t n)
{
    size_t i, k = n < QUOTE_CHARS ? n : QUOTE_CHARS;

    if (secret_like(s, n)) {
        snprintf(out, QUOTE_BUF, "<redacted>");
        return out;
    }
    for (i = 0; i < k; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c < 0x20 || c >= 0x7f || c == '\'') ? '?' : (char)c;
    }
    if (k < n) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
    return out;
}

#define NAME_RULE "expected 1 to %d of A-Za-z0-9_.@-"

/* ---- token text ---- */

/* CRC-32 as in zlib (reflected 0xEDB88320); bitwise, because 49 bytes per
 * check do not justify a table, and there is no shared state to race on. */
static uint32_t crc32_ieee(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint32_t c = 0xffffffffu;
    int k;

    while (n--) {
        c ^= *s++;
        for (k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

/* Encode n bytes without padding; out has room for (4n+2)/3 chars (no NUL
 * is written).  Shared with ticket.c through token.h. */
size_t mcpgw__b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t i, o = 0;

    for (i = 0; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
        out[o++] = b64url_alphabet[v >> 6 & 63];
        out[o++] = b64url_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
        out[o++] = b64url_alphabet[v >> 6 & 63];
    }
    return o;
}

/* Shape and checksum only; says nothing about whether the token exists. */
static bool token_shape_ok(const char *t, size_t len)
{
    uint32_t crc = 0;
    size_t i;

    if (!t || len != TOKEN_LEN || memcmp(t, TAG, TAG_LEN) != 0)
        return false;
    for (i = TAG_LEN; i < BODY_LEN; i++)
        if (!is_b64url((unsigned char)t[i]))
            return false;
    if (t[BODY_LEN] != '_')
        return false;
    for (i = BODY_LEN + 1; i < TOKEN_LEN; i++) {
        int v = lower_hex_val((unsigned char)t[i]);
        if (v < 0)
            return false;
        crc = crc << 4 | (uint32_t)v;
    }
    return crc == crc32_ieee(t, BODY_LEN);
}

/* A token fits the name rules (58 chars of the name set).  One pasted as a
 * name must not be stored in clear, so add and revoke refuse it. */
static bool contains_token(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i + TOKEN_LEN <= n; i++)
        if (token_shape_ok(s + i, TOKEN_LEN))
            return true;
    return false;
}

static int sha256(const void *p, size_t n, unsigned char out[HASH_LEN])
{
    unsigned int outl = 0;

    if (EVP_Digest(p, n, out, &outl, EVP_sha256(), NULL) != 1 || outl != HASH_LEN)
        return -EIO;
    return 0;
}

/* ---- the store ---- */

static void entry_release(struct entry *e)
{
    size_t i;

    free(e->name);
    if (e->scopes) {
        for (i = 0; i < e->nscopes; i++)
            free(e->scopes[i]);
        free(e->scopes);
    }
    memset(e, 0, sizeof(*e));
}

void mcpgw_tokens_free(mcpgw_tokens *t)
{
    size_t i;

    if (!t)
        return;
    for (i = 0; i < t->n; i++)
        entry_release(&t->v[i]);
    free(t->v);
    free(t);
}

static void fill_info(const struct entry *e, struct mcpgw_token_info *info)
{
    info->name = e->name;
    info->scopes = (const char *const *)e->scopes;
    info->nscopes = e->nscopes;
    info->created = e->created;
    info->expires = e->expires;
    info->revoked = e->revoked;
    info->prefix = e->prefix;
}

bool mcpgw_tokens_get(const mcpgw_tokens *t, size_t i, struct mcpgw_token_info *info)
{
    if (!t || !info || i >= t->n)
        return false;
    fill_info(&t->v[i], info);
    return true;
}

int mcpgw_tokens_verify(const mcpgw_tokens *t, const char *token, size_t len,
                        time_t now, struct mcpgw_token_info *info)
{
    unsigned char h[HASH_LEN];
    const struct entry *e;
    size_t i, found = SIZE_MAX;

    if (info)
        memset(info, 0, sizeof(*info));
    if (!t || !info || !token_shape_ok(token, len))
        return MCPGW_EAUTH;
    if (sha256(token, len, h) < 0)
        return MCPGW_EAUTH;
    /* Every stored hash is compared, and the hit is picked with a mask
     * rather than a branch or a break, so the time taken does not say
     * where in the list (or whether) the token is. */
    for (i = 0; i < t->n; i++) {
        size_t hit = (size_t)0 - (size_t)(CRYPTO_memcmp(h, t->v[i].hash, HASH_LEN) == 0);
        found = (found & ~hit) | (i & hit);
    }
    OPENSSL_cleanse(h, sizeof(h));
    if (found == SIZE_MAX)
        return MCPGW_EAUTH;
    e = &t->v[found];
    /* expires is the first second at which the token no longer works */
    if (e->revoked || (e->expires != 0 && now >= e->expires))
        return MCPGW_EAUTH;
    fill_info(e, info);
    return 0;
}

static bool part_match(const char *pat, size_t plen, const char *s)
{
    if (plen == 1 && pat[0] == '*')
        return true;
    return strlen(s) == plen && memcmp(pat, s, plen) == 0;
}

bool mcpgw_token_allows(const struct mcpgw_token_info *info, const char *server, const char *tool)
{
    size_t i;

    if (!info || !info->scopes || info->revoked || !server || !*server || (tool && !*tool))
        return false;
    for (i = 0; i < info->nscopes && info->scopes[i]; i++) {
        const char *sc = info->scopes[i], *colon;

        if (strcmp(sc, "*") == 0)
            return true;
        colon = strchr(sc, ':');
        if (!colon || !part_match(sc, (size_t)(colon - sc), server))
            continue;
        if (!tool || part_match(colon + 1, strlen(colon + 1), tool))
            return true;
    }
    return false;
}

const char *mcpgw_token_from_header(const char *value, size_t *len)
{
    static const char scheme[] = "bearer";
    const char *p, *end, *q;
    size_t i;

    if (len)
        *len = 0;
    if (!value || !len)
        return NULL;
    p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    for (i = 0; i < sizeof(scheme) - 1; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)scheme[i])
            return NULL;
    }
    p += sizeof(scheme) - 1;
    if (*p != ' ')
        return NULL;
    while (*p == ' ')
        p++;
    end = p + strlen(p);
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        end--;
    if (end == p)
        return NULL;
    /* RFC 6750's b64token has no spaces or controls; "Bearer a b" is not a
     * token with a space in it but a malformed header. */
    for (q = p; q < end; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
            return NULL;
    *len = (size_t)(end - p);
    return p;
}

/* ---- loading ---- */

/* Where a load's message goes; every message starts with the file name,
 * then the key path (tokens[2].scopes[0]). */
struct ctx {
    const char *path;
    char *err;
    size_t errlen;
};

static int bad(const struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(const struct ctx *c, const char *fmt, ...)
{
    char what[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    mcpgw_errmsg(c->err, c->errlen, "%s: %s", c->path, what);
    return MCPGW_ECONFIG;
}

static int parse_string(const struct ctx *c, size_t i, const char *key, json_object *v,
                        const char **s, size_t *n)
{
    if (!json_object_is_type(v, json_type_string))
        return bad(c, "tokens[%zu].%s: expected a string", i, key);
    *s = json_object_get_string(v);
    *n = (size_t)json_object_get_string_len(v);
    return 0;
}

static int parse_time(const struct ctx *c, size_t i, const char *key, json_object *v, time_t *out)
{
    int64_t x;

    if (!json_object_is_type(v, json_type_int))
        return bad(c, "tokens[%zu].%s: expected a non-negative integer", i, key);
    x = json_object_get_int64(v);
    /* json-c clamps what does not fit; the unsigned view tells us */
    if (x < 0 || (uint64_t)x != json_object_get_uint64(v))
        return bad(c, "tokens[%zu].%s: expected a non-negative integer", i, key);
    *out = (time_t)x;
    return 0;
}

static int parse_scopes(const struct ctx *c, size_t i, json_object *v, struct entry *e)
{
    char q[QUOTE_BUF];
    size_t k, n;

    if (!json_object_is_type(v, json_type_array))
        return bad(c, "tokens[%zu].scopes: expected an array", i);
    n = json_object_array_length(v);
    if (n < 1 || n > MCPGW_TOKEN_SCOPES_MAX)
        return bad(c, "tokens[%zu].scopes: expected 1 to %d scopes", i, MCPGW_TOKEN_SCOPES_MAX);
    e->scopes = calloc(n + 1, sizeof(*e->scopes));
    if (!e->scopes)
        return -ENOMEM;
    for (k = 0; k < n; k++) {
        json_object *s = json_object_array_get_idx(v, k);
        const char *str;
        size_t len;

        if (!json_object_is_type(s, json_type_string))
            return bad(c, "tokens[%zu].scopes[%zu]: expected a string", i, k);
        str = json_object_get_string(s);
        len = (size_t)json_object_get_string_len(s);
        if (!scope_valid_n(str, len))
            return bad(c, "tokens[%zu].scopes[%zu]: invalid scope '%s'", i, k, quote(q, str, len));
        e->scopes[k] = strndup(str, len);
        if (!e->scopes[k])
            return -ENOMEM;
        e->nscopes = k + 1;
    }
    return 0;
}

/* Fill e from tokens[i]; on error e holds what was set (entry_release). */
static int parse_entry(const struct ctx *c, size_t i, json_object *obj, struct entry *e)
{
    static const char *const known[] = { "name", "sha256", "prefix", "created", "expires",
                                         "revoked", "scopes" };
    json_object *v;
    char q[QUOTE_BUF];
    const char *s = NULL;
    size_t n = 0, k;
    int rc;

    if (!json_object_is_type(obj, json_type_object))
        return bad(c, "tokens[%zu]: expected an object", i);
    json_object_object_foreach(obj, key, val) {
        (void)val;
        for (k = 0; k < sizeof(known) / sizeof(known[0]); k++)
            if (strcmp(key, known[k]) == 0)
                break;
        if (k == sizeof(known) / sizeof(known[0]))
            return bad(c, "tokens[%zu].%s: unknown key", i, quote(q, key, strlen(key)));
    }

    /* get_ex, not a NULL check: a key present with null is a type error,
     * not a missing key */
    if (!json_object_object_get_ex(obj, "name", &v))
        return bad(c, "tokens[%zu].name: missing", i);
    if ((rc = parse_string(c, i, "name", v, &s, &n)) < 0)
        return rc;
    if (!name_valid(s, n))
        return bad(c, "tokens[%zu].name: invalid name '%s': " NAME_RULE, i, quote(q, s, n),
                   MCPGW_TOKEN_NAME_MAX);
    e->name = strndup(s, n);
    if (!e->name)
        return -ENOMEM;

    /* The hash is never echoed, not even a malformed one: it may be a
     * token pasted into the wrong field. */
    if (!json_object_object_get_ex(obj, "sha256", &v))
        return bad(c, "tokens[%zu].sha256: missing", i);
    if ((rc = parse_string(c, i, "sha256", v, &s, &n)) < 0)
        return rc;
    if (n != HASH_HEX)
        return bad(c, "tokens[%zu].sha256: expected %d lowercase hex digits", i, HASH_HEX);
    for (k = 0; k < HASH_LEN; k++) {
        int hi = lower_hex_val((unsigned char)s[2 * k]), lo = lower_hex_val((unsigned char)s[2 * k + 1]);
        if (hi < 0 || lo < 0)
            return bad(c, "tokens[%zu].sha256: expected %d lowercase hex digits", i, HASH_HEX);
        e->hash[k] = (unsigned char)(hi << 4 | lo);
    }

    if (json_object_object_get_ex(obj, "prefix", &v)) {
        if ((rc = parse_string(c, i, "prefix", v, &s, &n)) < 0)
            return rc;
        if (!prefix_valid(s, n))
            return bad(c, "tokens[%zu].prefix: expected at most %d of A-Za-z0-9_-", i, PREFIX_LEN);
        memcpy(e->prefix, s, n);
        e->prefix[n] = '\0';
    }
    if (json_object_object_get_ex(obj, "created", &v) &&
        (rc = parse_time(c, i, "created", v, &e->created)) < 0)
        return rc;
    if (json_object_object_get_ex(obj, "expires", &v) &&
        (rc = parse_time(c, i, "expires", v, &e->expires)) < 0)
        return rc;
    if (json_object_object_get_ex(obj, "revoked", &v)) {
        if (!json_object_is_type(v, json_type_boolean))
            return bad(c, "tokens[%zu].revoked: expected true or false", i);
        e->revoked = json_object_get_boolean(v);
    }

    if (!json_object_object_get_ex(obj, "scopes", &v))
        return bad(c, "tokens[%zu].scopes: missing", i);
    return parse_scopes(c, i, v, e);
}

/* Ties are broken by position so that a message about duplicates always
 * names the same two entries. */
static int cmp_hash(const void *a, const void *b)
{
    const struct entry *x = *(const struct entry *const *)a, *y = *(const struct entry *const *)b;
    int r = memcmp(x->hash, y->hash, HASH_LEN);

    return r ? r : (x > y) - (x < y);
}

static int cmp_name(const void *a, const void *b)
{
    const struct entry *x = *(const struct entry *const *)a, *y = *(const struct entry *const *)b;
    int r = strcmp(x->name, y->name);

    return r ? r : (x > y) - (x < y);
}

/* Two entries with one hash would make verify ambiguous; two active entries
 * with one name would make revoke ambiguous.  Sorting keeps a full store
 * (MCPGW_TOKENS_MAX) cheap to load. */
static int check_duplicates(const struct ctx *c, const mcpgw_tokens *t)
{
    struct entry **idx;
    char q[QUOTE_BUF];
    size_t i, m = 0, first = SIZE_MAX, second = 0;
    int rc = 0;

    if (t->n < 2)
        return 0;
    idx = malloc(t->n * sizeof(*idx));
    if (!idx)
        return -ENOMEM;
    for (i = 0; i < t->n; i++)
        idx[i] = &t->v[i];
    qsort(idx, t->n, sizeof(*idx), cmp_hash);
    for (i = 1; i < t->n; i++) {
        if (memcmp(idx[i - 1]->hash, idx[i]->hash, HASH_LEN) == 0) {
            size_t a = (size_t)(idx[i - 1] - t->v), b = (size_t)(idx[i] - t->v);
            if (b < second || first == SIZE_MAX) {
                first = a;
                second = b;
            }
        }
    }
    if (first != SIZE_MAX) {
        rc = bad(c, "tokens[%zu].sha256: same hash as tokens[%zu]", second, first);
        goto out;
    }

    for (i = 0; i < t->n; i++)
        if (!t->v[i].revoked)
            idx[m++] = &t->v[i];
    qsort(idx, m, sizeof(*idx), cmp_name);
    for (i = 1; i < m; i++) {
        if (strcmp(idx[i - 1]->name, idx[i]->name) == 0) {
            size_t a = (size_t)(idx[i - 1] - t->v), b = (size_t)(idx[i] - t->v);
            if (b < second || first == SIZE_MAX) {
                first = a;
                second = b;
            }
        }
    }
    if (first != SIZE_MAX) {
        const char *name = t->v[second].name;
        rc = bad(c, "tokens[%zu].name: another active token is named '%s'", second,
                 quote(q, name, strlen(name)));
    }
out:
    free(idx);
    return rc;
}

static int parse_store(const struct ctx *c, const char *text, size_t len, mcpgw_tokens *t)
{
    json_tokener *tok;
    json_object *root = NULL, *arr;
    enum json_tokener_error jerr;
    char q[QUOTE_BUF];
    size_t i, n, end;
    int rc;

    tok = json_tokener_new_ex(MCPGW_JSON_DEPTH_DEFAULT);
    if (!tok)
        return -ENOMEM;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    root = json_tokener_parse_ex(tok, text, (int)len);
    jerr = json_tokener_get_error(tok);
    end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root) {
        if (jerr == json_tokener_continue || jerr == json_tokener_success)
            return bad(c, "invalid JSON: unexpected end of file");
        return bad(c, "invalid JSON at byte %zu: %s", end, json_tokener_error_desc(jerr));
    }
    /* json-c's strict mode already refuses trailing characters; this keeps
     * "one object and nothing else" true whatever the library version. */
    for (i = end; i < len; i++) {
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != '\r') {
            rc = bad(c, "invalid JSON at byte %zu: trailing data", i);
            goto out;
        }
    }
    if (!json_object_is_type(root, json_type_object)) {
        rc = bad(c, "expected an object {\"tokens\":[...]}");
        goto out;
    }
    {
        json_object_object_foreach(root, key, val) {
            (void)val;
            if (strcmp(key, "tokens") != 0) {
                rc = bad(c, "%s: unknown key", quote(q, key, strlen(key)));
                goto out;
            }
        }
    }
    if (!json_object_object_get_ex(root, "tokens", &arr)) {
        rc = bad(c, "tokens: missing");
        goto out;
    }
    if (!json_object_is_type(arr, json_type_array)) {
        rc = bad(c, "tokens: expected an array");
        goto out;
    }
    n = json_object_array_length(arr);
    if (n > MCPGW_TOKENS_MAX) {
        rc = bad(c, "tokens: more than %d tokens", MCPGW_TOKENS_MAX);
        goto out;
    }
    if (n) {
        t->v = calloc(n, sizeof(*t->v));
        if (!t->v) {
            rc = -ENOMEM;
            goto out;
        }
    }
    for (i = 0; i < n; i++) {
        /* counted first so that a half-filled entry is released too */
        t->n = i + 1;
        rc = parse_entry(c, i, json_object_array_get_idx(arr, i), &t->v[i]);
        if (rc < 0)
            goto out;
    }
    rc = check_duplicates(c, t);
out:
    json_object_put(root);
    return rc;
}

/* Load path into a new store.  st (optional) gets the file's stat and
 * *exists whether there was a file at all. */
static int load(const char *path, mcpgw_tokens **out, struct stat *st, bool *exists,
                char *err, size_t errlen)
{
    struct ctx c = { path, err, errlen };
    struct mcpgw_buf b;
    struct stat sb;
    mcpgw_tokens *t;
    int rc;

    *out = NULL;
    if (exists)
        *exists = false;
    mcpgw_buf_init(&b, MCPGW_TOKEN_FILE_BYTES_MAX);
    if (!path) {
        mcpgw_errmsg(err, errlen, "no token file given");
        return -EINVAL;
    }
    t = calloc(1, sizeof(*t));
    if (!t) {
        mcpgw_errmsg(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    rc = mcpgw_statefile_read(path, MCPGW_TOKEN_FILE_BYTES_MAX, &b, &sb, err, errlen);
    if (rc == -ENOENT) {
        /* a fresh install has no file yet: no tokens, not an error */
        rc = 0;
        goto done;
    }
    if (rc < 0)
        goto fail;
    if (exists)
        *exists = true;
    if (st)
        *st = sb;
    /* Zero bytes (e.g. `install -m 600 /dev/null tokens.json`) is an
     * empty store; anything else must be the full object. */
    if (b.len == 0)
        goto done;
    rc = parse_store(&c, b.ptr, b.len, t);
    if (rc == -ENOMEM)
        mcpgw_errmsg(err, errlen, "%s: out of memory", path);
    if (rc < 0)
        goto fail;
done:
    mcpgw_buf_release(&b);
    *out = t;
    return 0;
fail:
    mcpgw_buf_release(&b);
    mcpgw_tokens_free(t);
    return rc;
}

int mcpgw_tokens_load(const char *path, mcpgw_tokens **out, char *err, size_t errlen)
{
    mcpgw_tokens *t = NULL;
    int rc;

    if (!out)
        return -EINVAL;
    rc = load(path, &t, NULL, NULL, err, errlen);
    *out = t;
    return rc;
}

/* ---- writing ---- */

/* The strings written come from validated character sets (name, prefix,
 * scopes) that contain neither '"' nor '\\', so none needs escaping. */
static int serialize(const mcpgw_tokens *t, struct mcpgw_buf *b)
{
    char hex[HASH_HEX + 1];
    size_t i, k;
    int rc;

    if ((rc = mcpgw_buf_add(b, MCPGW_STRLIT("{\"tokens\":["))) < 0)
        return rc;
    for (i = 0; i < t->n; i++) {
        const struct entry *e = &t->v[i];

        for (k = 0; k < HASH_LEN; k++) {
            hex[2 * k] = "0123456789abcdef"[e->hash[k] >> 4];
            hex[2 * k + 1] = "0123456789abcdef"[e->hash[k] & 15];
        }
        hex[HASH_HEX] = '\0';
        rc = mcpgw_buf_printf(b, "%s\n  {\"name\":\"%s\",\"sha256\":\"%s\",\"prefix\":\"%s\","
                              "\"created\":%jd,\"expires\":%jd,\"revoked\":%s,\"scopes\":[",
                              i ? "," : "", e->name, hex, e->prefix, (intmax_t)e->created,
                              (intmax_t)e->expires, e->revoked ? "true" : "false");
        if (rc < 0)
            return rc;
        for (k = 0; k < e->nscopes; k++)
            if ((rc = mcpgw_buf_printf(b, "%s\"%s\"", k ? "," : "", e->scopes[k])) < 0)
                return rc;
        if ((rc = mcpgw_buf_add(b, MCPGW_STRLIT("]}"))) < 0)
            return rc;
    }
    return mcpgw_buf_add(b, t->n ? "\n]}\n" : "]}\n", t->n ? 4 : 3);
}

/* Replace path with t (statefile.h: temp file, fsync, rename). */
static int store_write(const char *path, const mcpgw_tokens *t, const struct stat *old,
                       char *err, size_t errlen)
{
    struct mcpgw_buf b;
    int rc;

    mcpgw_buf_init(&b, MCPGW_TOKEN_FILE_BYTES_MAX);
    rc = serialize(t, &b);
    if (rc == MCPGW_ETOOBIG)
        mcpgw_errmsg(err, errlen, "%s: would grow past %u bytes", path, MCPGW_TOKEN_FILE_BYTES_MAX);
    else if (rc < 0)
        mcpgw_errmsg(err, errlen, "%s: out of memory", path);
    else
        rc = mcpgw_statefile_replace(path, b.ptr, b.len, old, "token", err, errlen);
    mcpgw_buf_release(&b);
    return rc;
}

static int dup_scopes(struct entry *e, const char *const *scopes, size_t n)
{
    size_t k;

    e->scopes = calloc(n + 1, sizeof(*e->scopes));
    if (!e->scopes)
        return -ENOMEM;
    for (k = 0; k < n; k++) {
        e->scopes[k] = strdup(scopes[k]);
        if (!e->scopes[k])
            return -ENOMEM;
        e->nscopes = k + 1;
    }
    return 0;
}

/* A fresh token in tok (TOKEN_LEN + NUL) and its hash. */
static int token_generate(char tok[TOKEN_LEN + 1], unsigned char hash[HASH_LEN])
{
    unsigned char secret[SECRET_BYTES];
    int rc = 0;

    if (RAND_bytes(secret, sizeof(secret)) != 1) {
        rc = -EIO;
        goto out;
    }
    memcpy(tok, TAG, TAG_LEN);
    mcpgw__b64url_encode(secret, sizeof(secret), tok + TAG_LEN);
    tok[BODY_LEN] = '_';
    snprintf(tok + BODY_LEN + 1, CRC_CHARS + 1, "%08" PRIx32, crc32_ieee(tok, BODY_LEN));
    rc = sha256(tok, TOKEN_LEN, hash);
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc;
}

/* The name add and revoke act on: valid, and not a pasted token (which
 * must never end up in the file or a message).  0 or -EINVAL. */
static int check_name(const char *name, char *err, size_t errlen)
{
    char q[QUOTE_BUF];

    if (!name || !name_valid(name, strlen(name))) {
        mcpgw_errmsg(err, errlen, "invalid name '%s': " NAME_RULE, name ? quote(q, name, strlen(name)) : "",
            MCPGW_TOKEN_NAME_MAX);
        return -EINVAL;
    }
    if (contains_token(name, strlen(name))) {
        mcpgw_errmsg(err, errlen, "invalid name: that is a token, not a name");
        return -EINVAL;
    }
    return 0;
}

int mcpgw_tokens_add(const char *path, const char *name, const char *const *scopes,
                     size_t nscopes, time_t expires, char *out, size_t outlen,
                     char *err, size_t errlen)
{
    char tok[TOKEN_LEN + 1], q[QUOTE_BUF];
    struct entry e;
    struct stat st;
    mcpgw_tokens *t = NULL;
    bool exists = false;
    size_t i, replace = SIZE_MAX;
    int lockfd = -1, rc;

    memset(&e, 0, sizeof(e));
    memset(tok, 0, sizeof(tok));
    if (out && outlen)
        out[0] = '\0';
    if (!path) {
        mcpgw_errmsg(err, errlen, "no token file given");
        return -EINVAL;
    }
    if ((rc = check_name(name, err, errlen)) < 0)
        return rc;
    if (!scopes || nscopes < 1) {
        mcpgw_errmsg(err, errlen, "a token needs at least one scope");
        return -EINVAL;
    }
    if (nscopes > MCPGW_TOKEN_SCOPES_MAX) {
        mcpgw_errmsg(err, errlen, "more than %d scopes", MCPGW_TOKEN_SCOPES_MAX);
        return -EINVAL;
    }
    for (i = 0; i < nscopes; i++) {
        if (!mcpgw_token_scope_valid(scopes[i])) {
            mcpgw_errmsg(err, errlen, "invalid scope '%s'",
                scopes[i] ? quote(q, scopes[i], strlen(scopes[i])) : "");
            return -EINVAL;
        }
    }
    if (expires < 0 || (expires != 0 && expires <= time(NULL))) {
        mcpgw_errmsg(err, errlen, "expiry time is in the past");
        return -EINVAL;
    }
    if (!out || outlen < TOKEN_LEN + 1) {
        mcpgw_errmsg(err, errlen, "token buffer too small");
        return -EINVAL;
    }

    lockfd = mcpgw_statefile_lock(path, err, errlen);
    if (lockfd < 0)
        return lockfd;
    /* Re-read under the lock: what another writer just added is kept. */
    rc = load(path, &t, &st, &exists, err, errlen);
    if (rc < 0)
        goto out;
    for (i = 0; i < t->n; i++) {
        if (strcmp(t->v[i].name, name) != 0)
            continue;
        if (!t->v[i].revoked) {
            mcpgw_errmsg(err, errlen, "%s: token '%s' already exists", path, quote(q, name, strlen(name)));
            rc = MCPGW_EEXIST;
            goto out;
        }
        if (replace == SIZE_MAX)
            replace = i;
    }
    if (replace == SIZE_MAX && t->n >= MCPGW_TOKENS_MAX) {
        mcpgw_errmsg(err, errlen, "%s: already holds %d tokens", path, MCPGW_TOKENS_MAX);
        rc = MCPGW_ETOOBIG;
        goto out;
    }

    e.name = strdup(name);
    if (!e.name || dup_scopes(&e, scopes, nscopes) < 0) {
        mcpgw_errmsg(err, errlen, "%s: out of memory", path);
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = token_generate(tok, e.hash)) < 0) {
        mcpgw_errmsg(err, errlen, "%s: cannot generate a token", path);
        goto out;
    }
    memcpy(e.prefix, tok, PREFIX_LEN);
    e.prefix[PREFIX_LEN] = '\0';
    e.created = time(NULL);
    e.expires = expires;

    if (replace != SIZE_MAX) {
        size_t j = 0;
        /* The new token takes the revoked one's place; any further revoked
         * entries of that name (a hand-edited file) go, so a name has one
         * entry. */
        entry_release(&t->v[replace]);
        t->v[replace] = e;
        for (i = 0; i < t->n; i++) {
            if (i != replace && strcmp(t->v[i].name, name) == 0) {
                entry_release(&t->v[i]);
                continue;
            }
            t->v[j++] = t->v[i];
        }
        t->n = j;
    } else {
        struct entry *v = realloc(t->v, (t->n + 1) * sizeof(*v));
        if (!v) {
            mcpgw_errmsg(err, errlen, "%s: out of memory", path);
            rc = -ENOMEM;
            goto out;
        }
        t->v = v;
        t->v[t->n++] = e;
    }
    memset(&e, 0, sizeof(e));       /* now owned by t */

    rc = store_write(path, t, exists ? &st : NULL, err, errlen);
    if (rc < 0)
        goto out;
    memcpy(out, tok, TOKEN_LEN + 1);
    mcpgw_log_info("token", "added token '%s'", quote(q, name, strlen(name)));
out:
    OPENSSL_cleanse(tok, sizeof(tok));
    entry_release(&e);
    mcpgw_tokens_free(t);
    close(lockfd);
    return rc;
}

int mcpgw_tokens_revoke(const char *path, const char *name, char *err, size_t errlen)
{
    char q[QUOTE_BUF];
    struct stat st;
    mcpgw_tokens *t = NULL;
    bool exists = false;
    size_t i;
    int lockfd, rc;

    if (!path) {
        mcpgw_errmsg(err, errlen, "no token file given");
        return -EINVAL;
    }
    if ((rc = check_name(name, err, errlen)) < 0)
        return rc;
    lockfd = mcpgw_statefile_lock(path, err, errlen);
    if (lockfd < 0)
        return lockfd;
    rc = load(path, &t, &st, &exists, err, errlen);
    if (rc < 0)
        goto out;
    for (i = 0; i < t->n; i++)
        if (!t->v[i].revoked && strcmp(t->v[i].name, name) == 0)
            break;
    if (i == t->n) {
        mcpgw_errmsg(err, errlen, "%s: no active token named '%s'", path, quote(q, name, strlen(name)));
        rc = MCPGW_ENOTFOUND;
        goto out;
    }
    /* Kept, not removed, so `token list` shows what was revoked and when
     * it was created. */
    t->v[i].revoked = true;
    rc = store_write(path, t, exists ? &st : NULL, err, errlen);
    if (rc < 0)
        goto out;
    mcpgw_log_info("token", "revoked token '%s'", quote(q, name, strlen(name)));
out:
    mcpgw_tokens_free(t);
    close(lockfd);
    return rc;
}

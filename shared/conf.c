#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
/* PATH_MAX: the system <limits.h> is shadowed by shared/limits.h under
 * -Ishared, so take it from the kernel header glibc's comes from. */
#include <linux/limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "buf.h"
#include "conf.h"
#include "err.h"
#include "limits.h"
#include "log.h"
#include "origin.h"
#include "peer.h"

/* The build passes both; a hand compile of this file alone still works. */
#ifndef SYSCONFDIR
#define SYSCONFDIR "/usr/local/etc"
#endif
#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR "/usr/local/var"
#endif

#define DEFAULT_PATH SYSCONFDIR "/mcpgw/gateway.json"
#define DEFAULT_LISTEN "127.0.0.1:3000"
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A user's string shown in a message is cut here, so one long value cannot
 * make a long message. */
#define SHOW_MAX 60
#define KEYPATH_MAX 512

struct ctx {
    const char *name;           /* what messages call the file */
    const char *dir;            /* absolute; relative paths resolve here */
    char *err;
    size_t errlen;
    char path[KEYPATH_MAX];     /* key path of the value being checked */
    size_t plen;
};

/* ---- messages ------------------------------------------------------------ */

/* Copy at most max bytes of s into dst for a one-line message: quotes,
 * backslashes and control bytes are escaped, so a key or value holding a
 * newline cannot forge a second line, and a cut never splits a UTF-8
 * sequence (json-c has already checked the text is valid UTF-8). */
static void esc(char *dst, size_t dstlen, const char *s, size_t len, size_t max)
{
    size_t o = 0;
    bool cut = false;

    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
            len--;
        cut = true;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        char tmp[8];
        size_t n;

        if (ch == '"' || ch == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)ch;
            n = 2;
        } else if (ch == '\n') {
            memcpy(tmp, "\\n", 2);
            n = 2;
        } else if (ch == '\t') {
            memcpy(tmp, "\\t", 2);
            n = 2;
        } else if (ch < 0x20 || ch == 0x7f) {
            n = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", ch);
        } else {
            tmp[0] = (char)ch;
            n = 1;
        }
        /* Room for this piece, a possible "..." and the NUL. */
        if (o + n + 4 > dstlen) {
            cut = true;
            break;
        }
        memcpy(dst + o, tmp, n);
        o += n;
    }
    if (cut && o + 4 <= dstlen) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    if (dstlen)
        dst[o] = '\0';
}

/* "s" quoted and escaped; buf needs room for 6 bytes per shown byte. */
static const char *quote(char *buf, size_t n, const char *s, size_t len)
{
    buf[0] = '"';
    esc(buf + 1, n - 2, s, len, SHOW_MAX);
    size_t l = strlen(buf);
    buf[l] = '"';
    buf[l + 1] = '\0';
    return buf;
}

#define SHOWBUF (SHOW_MAX * 6 + 8)

/* A JSON value as a message shows it after "got": scalars as written,
 * containers by kind. */
static const char *describe(json_object *v, char *buf, size_t n)
{
    const char *s;

    switch (json_object_get_type(v)) {
    case json_type_null:
        return "null";
    case json_type_boolean:
        return json_object_get_boolean(v) ? "true" : "false";
    case json_type_int:
    case json_type_double:
        s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
        esc(buf, n, s, strlen(s), SHOW_MAX);
        return buf;
    case json_type_string:
        return quote(buf, n, json_object_get_string(v), (size_t)json_object_get_string_len(v));
    case json_type_array:
        return "an array";
    case json_type_object:
        return "an object";
    }
    return "a value";
}

static int vfail(struct ctx *c, int rc, const char *where, const char *fmt, va_list ap)
{
    char name[PATH_MAX + 64], msg[1024];

    if (!c->err || c->errlen == 0)
        return rc;
    esc(name, sizeof(name), c->name, strlen(c->name), PATH_MAX);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (where && *where)
        snprintf(c->err, c->errlen, "%s: %s: %s", name, where, msg);
    else
        snprintf(c->err, c->errlen, "%s: %s", name, msg);
    return rc;
}

/* "<file>: <key.path>: <msg>" (just "<file>: <msg>" at the top level). */
__attribute__((format(printf, 2, 3)))
static int fail(struct ctx *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfail(c, MCPGW_ECONFIG, c->path, fmt, ap);
    va_end(ap);
    return MCPGW_ECONFIG;
}

/* A failure that is not the file's fault: rc is -errno. */
__attribute__((format(printf, 3, 4)))
static int fail_sys(struct ctx *c, int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfail(c, rc, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

static int oom(struct ctx *c)
{
    return fail_sys(c, -ENOMEM, "out of memory");
}

/* Line and column (1-based, counting characters, not bytes) of offset off. */
static void line_col(const char *t, size_t off, size_t *line, size_t *col)
{
    size_t ls = 0;

    *line = 1;
    for (size_t i = 0; i < off; i++)
        if (t[i] == '\n') {
            (*line)++;
            ls = i + 1;
        }
    *col = 1;
    for (size_t i = ls; i < off; i++)
        if (((unsigned char)t[i] & 0xc0) != 0x80)
            (*col)++;
}

/* "<file>: line L, column C: <msg>" for a problem in the JSON text. */
__attribute__((format(printf, 4, 5)))
static int fail_at(struct ctx *c, const char *t, size_t off, const char *fmt, ...)
{
    char where[64];
    size_t line, col;
    va_list ap;

    line_col(t, off, &line, &col);
    snprintf(where, sizeof(where), "line %zu, column %zu", line, col);
    va_start(ap, fmt);
    vfail(c, MCPGW_ECONFIG, where, fmt, ap);
    va_end(ap);
    return MCPGW_ECONFIG;
}

static size_t path_push(struct ctx *c, const char *key)
{
    size_t mark = c->plen;
    char seg[64 * 6 + 8];
    int n;

    esc(seg, sizeof(seg), key, strlen(key), 64);
    n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "%s%s",
                 c->plen ? "." : "", seg);
    if (n > 0)
        c->plen += (size_t)n < sizeof(c->path) - c->plen ? (size_t)n
                                                          : sizeof(c->path) - c->plen - 1;
    return mark;
}

static size_t path_index(struct ctx *c, size_t i)
{
    size_t mark = c->plen;
    int n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "[%zu]", i);

    if (n > 0)
        c->plen += (size_t)n < sizeof(c->path) - c->plen ? (size_t)n
                                                          : sizeof(c->path) - c->plen - 1;
    return mark;
}

static void path_pop(struct ctx *c, size_t mark)
{
    c->plen = mark;
    c->path[mark] = '\0';
}

/* ---- "did you mean" ------------------------------------------------------ */

static char lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* Optimal string alignment distance, case-folded; keys are short, longer
 * strings are not compared at all. */
#define SUGGEST_LEN_MAX 64
static int distance(const char *a, const char *b)
{
    int row[3][SUGGEST_LEN_MAX + 1];
    size_t la = strlen(a), lb = strlen(b);

    if (la > SUGGEST_LEN_MAX || lb > SUGGEST_LEN_MAX)
        return SUGGEST_LEN_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int *cur = row[i % 3], *prev = row[(i - 1) % 3], *prev2 = row[(i + 1) % 3];

        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int cost = lower(a[i - 1]) != lower(b[j - 1]);
            int d = prev[j] + 1;

            if (cur[j - 1] + 1 < d)
                d = cur[j - 1] + 1;
            if (prev[j - 1] + cost < d)
                d = prev[j - 1] + cost;
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
                lower(a[i - 2]) == lower(b[j - 1]) && prev2[j - 2] + 1 < d)
                d = prev2[j - 2] + 1;
            cur[j] = d;
        }
    }
    return row[la % 3][lb];
}

/* The known key one or two edits away from key, if there is one.  A match
 * must also be less than half the candidate, or "x" would suggest "cwd". */
static const char *suggest(const char *key, const char *const *known)
{
    const char *best = NULL;
    int bestd = 3;

    for (size_t i = 0; known[i]; i++) {
        int d = distance(key, known[i]);

        if (d == 0)
            d = 1;      /* differs only in case */
        if (d < bestd && (size_t)d * 2 < strlen(known[i])) {
            best = known[i];
            bestd = d;
        }
    }
    return best;
}

/* ---- typed values -------------------------------------------------------- */

static bool in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

/* Every key of obj must be in known; "$comment" is allowed anywhere. */
static int check_keys(struct ctx *c, json_object *obj, const char *const *known)
{
    json_object_object_foreach(obj, key, val) {
        const char *hint;
        int rc;

        (void)val;
        if (strcmp(key, "$comment") == 0 || in_list(key, known))
            continue;
        path_push(c, key);
        hint = suggest(key, known);
        rc = hint ? fail(c, "unknown key, did you mean '%s'?", hint) : fail(c, "unknown key");
        return rc;      /* the message is written; the path need not be popped */
    }
    return 0;
}

static int want_object(struct ctx *c, json_object *v)
{
    char show[SHOWBUF];

    if (json_object_is_type(v, json_type_object))
        return 0;
    return fail(c, "expected an object, got %s", describe(v, show, sizeof(show)));
}

static int want_array(struct ctx *c, json_object *v, const char *of)
{
    char show[SHOWBUF];

    if (json_object_is_type(v, json_type_array))
        return 0;
    return fail(c, "expected an array of %s, got %s", of, describe(v, show, sizeof(show)));
}

/* A string without NUL bytes: json-c keeps "\u0000" inside a string, and
 * every consumer of these values is a C string API. */
static int get_str(struct ctx *c, json_object *v, bool nonempty, const char **out)
{
    char show[SHOWBUF];
    const char *s;
    size_t len;

    if (!json_object_is_type(v, json_type_string))
        return fail(c, "expected a string, got %s", describe(v, show, sizeof(show)));
    s = json_object_get_string(v);
    len = (size_t)json_object_get_string_len(v);
    if (strlen(s) != len)
        return fail(c, "contains a NUL byte (\\u0000)");
    if (nonempty && len == 0)
        return fail(c, "expected a non-empty string");
    *out = s;
    return 0;
}

static int get_bool(struct ctx *c, json_object *v, bool *out)
{
    char show[SHOWBUF];

    if (!json_object_is_type(v, json_type_boolean))
        return fail(c, "expected true or false, got %s", describe(v, show, sizeof(show)));
    *out = json_object_get_boolean(v);
    return 0;
}

/* An integer in [min, max].  A whole number written as 6e4 or 60000.0 is
 * accepted: JSON has one number type. */
static int get_int(struct ctx *c, json_object *v, long long min, long long max, long long *out)
{
    char show[SHOWBUF];
    long long x;

    if (json_object_is_type(v, json_type_int)) {
        /* A value above INT64_MAX arrives as a saturated uint64. */
        x = (long long)json_object_get_int64(v);
        if (x > max)
            goto above;
        if (x < min)
            goto range;
        *out = x;
        return 0;
    }
    if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);

        if (isnan(d))
            goto range;
        if (d > (double)max)
            goto above;
        if (d < (double)min || (double)(long long)d != d)
            goto range;
        *out = (long long)d;
        return 0;
    }
range:
    return fail(c, "expected an integer from %lld to %lld, got %s", min, max,
                describe(v, show, sizeof(show)));
above:
    return fail(c, "%s is above the hard cap of %lld", describe(v, show, sizeof(show)), max);
}

/* Optional integer member key of obj into *out (unchanged when absent). */
static int field_ll(struct ctx *c, json_object *obj, const char *key,
                    long long min, long long max, long long *out)
{
    json_object *v;
    size_t mark;
    int rc;

    if (!json_object_object_get_ex(obj, key, &v))
        return 0;
    mark = path_push(c, key);
    rc = get_int(c, v, min, max, out);
    path_pop(c, mark);
    return rc;
}

/* The same for an int (min and max within int's range). */
static int field_int(struct ctx *c, json_object *obj, const char *key,
                     long long min, long long max, int *out)
{
    long long x = *out;
    int rc = field_ll(c, obj, key, min, max, &x);

    if (rc == 0)
        *out = (int)x;
    return rc;
}

static int field_bool(struct ctx *c, json_object *obj, const char *key, bool *out)
{
    json_object *v;
    size_t mark;
    int rc;

    if (!json_object_object_get_ex(obj, key, &v))
        return 0;
    mark = path_push(c, key);
    rc = get_bool(c, v, out);
    path_pop(c, mark);
    return rc;
}

/* ---- paths --------------------------------------------------------------- */

/* dir/p (p absolute: p alone), tidied: "//" and "/./" collapse and a trailing
 * "/" goes.  ".." stays as written: only the kernel can resolve it correctly
 * when a component is a symlink.  0, -ENOMEM or MCPGW_ETOOBIG. */
static int path_join(const char *dir, const char *p, char **out)
{
    struct mcpgw_buf b;
    const char *s, *e;
    int rc = 0;

    mcpgw_buf_init(&b, PATH_MAX - 1);
    if (p[0] != '/')
        rc = mcpgw_buf_adds(&b, dir);
    if (rc == 0)
        rc = mcpgw_buf_addc(&b, '/');
    if (rc == 0)
        rc = mcpgw_buf_adds(&b, p);
    if (rc < 0)
        goto fail;
    /* Rewrite in place: the tidy form is never longer. */
    {
        char *o = b.ptr;

        for (s = b.ptr; *s; s = e) {
            while (*s == '/')
                s++;
            for (e = s; *e && *e != '/'; e++)
                ;
            if (e == s || (e - s == 1 && s[0] == '.'))
                continue;
            *o++ = '/';
            memmove(o, s, (size_t)(e - s));
            o += e - s;
        }
        if (o == b.ptr)
            *o++ = '/';
        *o = '\0';
    }
    *out = b.ptr;
    return 0;
fail:
    mcpgw_buf_release(&b);
    return rc;
}

/* The directory part of a tidy absolute path: "/a/b" -> "/a", "/b" -> "/". */
static char *dir_of(const char *abs)
{
    const char *slash = strrchr(abs, '/');
    size_t n = slash && slash != abs ? (size_t)(slash - abs) : 1;

    return strndup(abs, n);
}

/* A path value: relative ones resolve against the config file's directory. */
static int get_path(struct ctx *c, json_object *v, char **out)
{
    const char *s = NULL;
    char *abs;
    int rc;

    rc = get_str(c, v, true, &s);
    if (rc < 0)
        return rc;
    rc = path_join(c->dir, s, &abs);
    if (rc == MCPGW_ETOOBIG)
        return fail(c, "path is longer than %d bytes", PATH_MAX - 1);
    if (rc < 0)
        return oom(c);
    free(*out);
    *out = abs;
    return 0;
}

static int field_path(struct ctx *c, json_object *obj, const char *key, char **out)
{
    json_object *v;
    size_t mark;
    int rc;

    if (!json_object_object_get_ex(obj, key, &v))
        return 0;
    mark = path_push(c, key);
    rc = get_path(c, v, out);
    path_pop(c, mark);
    return rc;
}

static int cwd_join(struct ctx *c, const char *p, char **out)
{
    char cwd[PATH_MAX];
    int rc;

    if (p[0] != '/' && !getcwd(cwd, sizeof(cwd)))
        return fail_sys(c, -errno, "cannot get the current directory: %s", strerror(errno));
    rc = path_join(p[0] == '/' ? "/" : cwd, p, out);
    if (rc == MCPGW_ETOOBIG)
        return fail_sys(c, -ENAMETOOLONG, "path is longer than %d bytes", PATH_MAX - 1);
    if (rc < 0)
        return oom(c);
    return 0;
}

/* ---- string lists -------------------------------------------------------- */

static void strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* Check callback for one element of a string list; may replace the copy. */
typedef int (*elem_check)(struct ctx *c, const char *s, char **copy);

/* An array of strings ("an array of <of>"), at most max of them (0: no cap
 * beyond the file size; "too many <many>"), optionally non-empty and no two
 * alike, into a NULL-terminated copy. */
static int get_strv(struct ctx *c, json_object *v, const char *of, const char *many, size_t max,
                    bool nonempty, bool unique, elem_check check, char ***out, size_t *nout)
{
    size_t n, i;
    char **vec;
    int rc;

    rc = want_array(c, v, of);
    if (rc < 0)
        return rc;
    n = json_object_array_length(v);
    if (max && n > max)
        return fail(c, "too many %s (%zu, the limit is %zu)", many, n, max);
    vec = calloc(n + 1, sizeof(*vec));
    if (!vec)
        return oom(c);
    for (i = 0; i < n; i++) {
        size_t mark = path_index(c, i);
        const char *s = NULL;

        rc = get_str(c, json_object_array_get_idx(v, i), nonempty, &s);
        if (rc < 0)
            goto fail;
        vec[i] = strdup(s);
        if (!vec[i]) {
            rc = oom(c);
            goto fail;
        }
        if (check) {
            rc = check(c, s, &vec[i]);
            if (rc < 0)
                goto fail;
        }
        if (unique)
            for (size_t j = 0; j < i; j++)
                if (strcmp(vec[j], vec[i]) == 0) {
                    char show[SHOWBUF];

                    rc = fail(c, "duplicate of [%zu] %s", j,
                              quote(show, sizeof(show), vec[i], strlen(vec[i])));
                    goto fail;
                }
        path_pop(c, mark);
    }
    strv_free(*out);
    *out = vec;
    *nout = n;
    return 0;
fail:
    strv_free(vec);
    return rc;
}

/* ---- addresses and origins ----------------------------------------------- */

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static bool is_alnum(char ch)
{
    return is_alpha(ch) || is_digit(ch);
}

/* "1".."65535", digits only, over exactly len bytes. */
static bool valid_port(const char *s, size_t len)
{
    unsigned long v = 0;

    if (len == 0 || len > 5)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

/* An IPv4 address or a DNS name (RFC 1123 labels).  Digits-and-dots must be
 * a real IPv4 address, so "1.2.3" is not taken as a name. */
static bool valid_host(const char *s, size_t len)
{
    char tmp[256];
    bool numeric = true;
    size_t label = 0;

    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_digit(s[i]) && s[i] != '.')
            numeric = false;
    if (numeric) {
        struct in_addr a;

        memcpy(tmp, s, len);
        tmp[len] = '\0';
        return inet_pton(AF_INET, tmp, &a) == 1;
    }
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if (is_alnum(s[i]) || (s[i] == '-' && label > 0)) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

static bool valid_ipv6(const char *s, size_t len)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    struct in6_addr a;

    if (len == 0 || len >= sizeof(tmp))
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return inet_pton(AF_INET6, tmp, &a) == 1;
}

static int check_listen(struct ctx *c, const char *s, char **copy)
{
    char show[SHOWBUF];
    const char *port, *colon;
    size_t len = strlen(s);

    (void)copy;
    quote(show, sizeof(show), s, len);
    if (s[0] == '/') {
        size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;

        if (len > max)
            return fail(c, "unix socket path is longer than %zu bytes", max);
        if (s[len - 1] == '/')
            return fail(c, "expected a unix socket path, got a directory %s", show);
        return 0;
    }
    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (!close || close[1] != ':')
            goto syntax;
        if (!valid_ipv6(s + 1, (size_t)(close - s - 1)))
            return fail(c, "invalid IPv6 address in %s", show);
        port = close + 2;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            goto syntax;
        if (memchr(s, ':', (size_t)(colon - s)))
            return fail(c, "an IPv6 address needs brackets, e.g. \"[::1]:3000\", got %s", show);
        if (colon == s)
            return fail(c, "missing host in %s (0.0.0.0 or [::] listens on every interface)",
                        show);
        if (!valid_host(s, (size_t)(colon - s)))
            return fail(c, "invalid host name in %s", show);
        port = colon + 1;
    }
    if (!valid_port(port, strlen(port)))
        return fail(c, "invalid port in %s: expected 1 to 65535", show);
    return 0;
syntax:
    return fail(c, "expected \"HOST:PORT\", \"[IPV6]:PORT\" or an absolute unix socket path, "
                "got %s", show);
}

/* An Origin header value as browsers send it (RFC 6454 section 6.1):
 * scheme://host[:port], no path.  Stored as a browser serializes it, with
 * scheme and host in lower case and a default port dropped, so a plain
 * string compare with the request's Origin is right. */
static int check_origin(struct ctx *c, const char *s, char **copy)
{
    char show[SHOWBUF];
    const char *sep, *host, *hend, *rest;
    size_t plen = 0;
    const char *port = NULL;

    quote(show, sizeof(show), s, strlen(s));
    if (strcmp(s, "*") == 0 || strchr(s, '*'))
        return fail(c, "a wildcard origin is not allowed: list each origin");
    sep = strstr(s, "://");
    if (!sep || sep == s || !is_alpha(s[0]))
        goto syntax;
    for (const char *p = s; p < sep; p++)
        if (!is_alnum(*p) && *p != '+' && *p != '-' && *p != '.')
            goto syntax;
    host = sep + 3;
    if (host[0] == '[') {
        hend = strchr(host, ']');
        if (!hend || !valid_ipv6(host + 1, (size_t)(hend - host - 1)))
            goto syntax;
        hend++;
    } else {
        hend = host + strcspn(host, ":/?#");
        if (!valid_host(host, (size_t)(hend - host)))
            goto syntax;
    }
    rest = hend;
    if (*rest == ':') {
        port = rest + 1;
        plen = strcspn(port, "/?#");
        if (!valid_port(port, plen))
            return fail(c, "invalid port in %s: expected 1 to 65535", show);
        rest = port + plen;
    }
    if (*rest == '/' || *rest == '?' || *rest == '#')
        return fail(c, "an origin has no path, query or trailing '/', got %s", show);
    if (*rest)
        goto syntax;
    /* Checked above with precise messages; the normal form is origin.c's,
     * the one request-time checks compare against, never longer than s. */
    if (mcpgw_origin_normalize(s, *copy, strlen(s) + 1) < 0)
        goto syntax;
    return 0;
syntax:
    return fail(c, "expected an origin \"scheme://host[:port]\", got %s", show);
}

/* ---- servers ------------------------------------------------------------- */

static bool valid_server_id(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > MCPGW_SERVER_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return false;
    return true;
}

static bool valid_env_name(const char *s)
{
    if (!is_alpha(s[0]) && s[0] != '_')
        return false;
    for (size_t i = 1; s[i]; i++)
        if (!is_alnum(s[i]) && s[i] != '_')
            return false;
    return true;
}

static const char *const server_keys[] = {
    "command", "args", "env", "cwd", "type", "callTimeoutMs", "startTimeoutMs",
    "maxInFlight", "restart", "tools", "enabled", "user", "resourceLimits", NULL
};
static const char *const rlimit_keys[] = {
    "openFiles", "memoryBytes", "processes", "cpuSeconds", NULL
};
static const char *const restart_keys[] = {
    "policy", "initialDelayMs", "maxDelayMs", "resetAfterMs", NULL
};

static int parse_env(struct ctx *c, json_object *v, struct mcpgw_conf_server *s)
{
    size_t n, i = 0;
    int rc;

    rc = want_object(c, v);
    if (rc < 0)
        return rc;
    n = (size_t)json_object_object_length(v);
    if (n > MCPGW_ENV_MAX)
        return fail(c, "too many variables (%zu, the limit is %d)", n, MCPGW_ENV_MAX);
    s->env = calloc(n ? n : 1, sizeof(*s->env));
    if (!s->env)
        return oom(c);
    s->nenv = n;
    json_object_object_foreach(v, name, val) {
        char show[SHOWBUF];
        const char *value = NULL;
        size_t mark;

        if (!valid_env_name(name))
            return fail(c, "invalid variable name %s: expected letters, digits and '_', "
                        "not starting with a digit", quote(show, sizeof(show), name, strlen(name)));
        mark = path_push(c, name);
        rc = get_str(c, val, false, &value);
        if (rc < 0)
            return rc;
        path_pop(c, mark);
        s->env[i].name = strdup(name);
        s->env[i].value = strdup(value);
        if (!s->env[i].name || !s->env[i].value)
            return oom(c);
        i++;
    }
    return 0;
}

static int parse_restart(struct ctx *c, json_object *v, struct mcpgw_conf_server *s)
{
    json_object *p;
    int rc;

    rc = want_object(c, v);
    if (rc == 0)
        rc = check_keys(c, v, restart_keys);
    if (rc < 0)
        return rc;
    if (json_object_object_get_ex(v, "policy", &p)) {
        size_t mark = path_push(c, "policy");
        char show[SHOWBUF];
        const char *str = NULL;

        rc = get_str(c, p, false, &str);
        if (rc < 0)
            return rc;
        if (strcmp(str, "on-failure") == 0)
            s->restart_policy = MCPGW_RESTART_ON_FAILURE;
        else if (strcmp(str, "always") == 0)
            s->restart_policy = MCPGW_RESTART_ALWAYS;
        else if (strcmp(str, "never") == 0)
            s->restart_policy = MCPGW_RESTART_NEVER;
        else
            return fail(c, "expected one of \"on-failure\", \"always\", \"never\", got %s",
                        describe(p, show, sizeof(show)));
        path_pop(c, mark);
    }
    rc = field_int(c, v, "initialDelayMs", MCPGW_RESTART_DELAY_MIN, MCPGW_RESTART_DELAY_MAX,
                   &s->restart_initial_ms);
    if (rc == 0)
        rc = field_int(c, v, "maxDelayMs", MCPGW_RESTART_DELAY_MIN, MCPGW_RESTART_DELAY_MAX,
                       &s->restart_max_ms);
    if (rc == 0)
        rc = field_int(c, v, "resetAfterMs", MCPGW_RESTART_DELAY_MIN, MCPGW_RESTART_DELAY_MAX,
                       &s->restart_reset_ms);
    if (rc < 0)
        return rc;
    if (s->restart_initial_ms > s->restart_max_ms)
        return fail(c, "initialDelayMs (%d) is greater than maxDelayMs (%d)",
                    s->restart_initial_ms, s->restart_max_ms);
    return 0;
}

static int parse_rlimits(struct ctx *c, json_object *v, struct mcpgw_conf_server *s)
{
    int rc;

    rc = want_object(c, v);
    if (rc == 0)
        rc = check_keys(c, v, rlimit_keys);
    if (rc == 0)
        rc = field_ll(c, v, "openFiles", MCPGW_RLIMIT_FILES_MIN, MCPGW_RLIMIT_FILES_MAX,
                      &s->max_open_files);
    if (rc == 0)
        rc = field_ll(c, v, "memoryBytes", MCPGW_RLIMIT_MEMORY_MIN, MCPGW_RLIMIT_MEMORY_MAX,
                      &s->max_memory_bytes);
    if (rc == 0)
        rc = field_ll(c, v, "processes", MCPGW_RLIMIT_PROCS_MIN, MCPGW_RLIMIT_PROCS_MAX,
                      &s->max_processes);
    if (rc == 0)
        rc = field_ll(c, v, "cpuSeconds", MCPGW_RLIMIT_CPU_MIN, MCPGW_RLIMIT_CPU_MAX,
                      &s->max_cpu_seconds);
    return rc;
}

/* A POSIX portable user name (the shadow-utils rule): [a-z_][a-z0-9_-]*
 * with an optional final '$'.  Whether it exists is checked at spawn: the
 * config may be checked on another host. */
static bool valid_user_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > MCPGW_USER_NAME_MAX || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              s[i] == '-' || (s[i] == '$' && i == n - 1)))
            return false;
    return true;
}

static int parse_server(struct ctx *c, const char *id, json_object *v,
                        struct mcpgw_conf_server *s)
{
    char show[SHOWBUF];
    json_object *f;
    const char *str = NULL;
    size_t mark;
    int rc;

    s->call_timeout_ms = MCPGW_CALL_TIMEOUT_DEFAULT;
    s->start_timeout_ms = MCPGW_START_TIMEOUT_DEFAULT;
    s->max_inflight = MCPGW_SERVER_INFLIGHT_DEFAULT;
    s->restart_policy = MCPGW_RESTART_ON_FAILURE;
    s->restart_initial_ms = MCPGW_RESTART_INITIAL_DEFAULT;
    s->restart_max_ms = MCPGW_RESTART_MAX_DEFAULT;
    s->restart_reset_ms = MCPGW_RESTART_RESET_DEFAULT;
    s->enabled = true;
    s->id = strdup(id);
    if (!s->id)
        return oom(c);

    rc = want_object(c, v);
    if (rc < 0)
        return rc;
    /* A block pasted from a desktop client may describe a remote server;
     * say so plainly rather than "unknown key 'url'". */
    if (json_object_object_get_ex(v, "type", &f)) {
        mark = path_push(c, "type");
        rc = get_str(c, f, false, &str);
        if (rc < 0)
            return rc;
        if (strcmp(str, "stdio") != 0)
            return fail(c, "only stdio servers are supported, got %s",
                        describe(f, show, sizeof(show)));
        path_pop(c, mark);
    }
    if (json_object_object_get_ex(v, "url", &f)) {
        path_push(c, "url");
        return fail(c, "only stdio servers are supported: give a command instead of a url");
    }
    rc = check_keys(c, v, server_keys);
    if (rc < 0)
        return rc;

    if (!json_object_object_get_ex(v, "command", &f))
        return fail(c, "missing required key 'command'");
    mark = path_push(c, "command");
    rc = get_str(c, f, true, &str);
    if (rc < 0)
        return rc;
    path_pop(c, mark);
    s->command = strdup(str);
    if (!s->command)
        return oom(c);

    if (json_object_object_get_ex(v, "args", &f)) {
        mark = path_push(c, "args");
        rc = get_strv(c, f, "strings", "arguments", MCPGW_ARGS_MAX, false, false, NULL,
                      &s->args, &s->nargs);
        if (rc < 0)
            return rc;
        path_pop(c, mark);
    } else {
        s->args = calloc(1, sizeof(*s->args));
        if (!s->args)
            return oom(c);
    }
    if (json_object_object_get_ex(v, "env", &f)) {
        mark = path_push(c, "env");
        rc = parse_env(c, f, s);
        if (rc < 0)
            return rc;
        path_pop(c, mark);
    }
    rc = field_path(c, v, "cwd", &s->cwd);
    if (rc == 0)
        rc = field_int(c, v, "callTimeoutMs", MCPGW_CALL_TIMEOUT_MIN, MCPGW_CALL_TIMEOUT_MAX,
                       &s->call_timeout_ms);
    if (rc == 0)
        rc = field_int(c, v, "startTimeoutMs", MCPGW_START_TIMEOUT_MIN, MCPGW_START_TIMEOUT_MAX,
                       &s->start_timeout_ms);
    if (rc == 0)
        rc = field_int(c, v, "maxInFlight", 1, MCPGW_SERVER_INFLIGHT_MAX, &s->max_inflight);
    if (rc < 0)
        return rc;
    if (json_object_object_get_ex(v, "restart", &f)) {
        mark = path_push(c, "restart");
        rc = parse_restart(c, f, s);
        if (rc < 0)
            return rc;
        path_pop(c, mark);
    }
    if (json_object_object_get_ex(v, "user", &f)) {
        mark = path_push(c, "user");
        rc = get_str(c, f, true, &str);
        if (rc < 0)
            return rc;
        if (!valid_user_name(str))
            return fail(c, "expected a user name (a-z 0-9 _ -, up to %d), got %s",
                        MCPGW_USER_NAME_MAX, describe(f, show, sizeof(show)));
        path_pop(c, mark);
        s->user = strdup(str);
        if (!s->user)
            return oom(c);
    }
    if (json_object_object_get_ex(v, "resourceLimits", &f)) {
        mark = path_push(c, "resourceLimits");
        rc = parse_rlimits(c, f, s);
        if (rc < 0)
            return rc;
        path_pop(c, mark);
    }
    if (json_object_object_get_ex(v, "tools", &f)) {
        mark = path_push(c, "tools");
        rc = get_strv(c, f, "tool names", "tool names", 0, true, true, NULL, &s->tools,
                      &s->ntools);
        if (rc < 0)
            return rc;
        path_pop(c, mark);
    }
    return field_bool(c, v, "enabled", &s->enabled);
}

static int parse_servers(struct ctx *c, json_object *v, struct mcpgw_conf *conf)
{
    size_t n = 0, i = 0;
    int rc;

    rc = want_object(c, v);
    if (rc < 0)
        return rc;
    json_object_object_foreach(v, key, val) {
        char show[SHOWBUF];

        (void)val;
        if (strcmp(key, "$comment") == 0)
            continue;
        if (!valid_server_id(key))
            return fail(c, "invalid server id %s: expected 1 to %d of A-Z a-z 0-9 _ . -",
                        quote(show, sizeof(show), key, strlen(key)), MCPGW_SERVER_ID_MAX);
        n++;
    }
    if (n > MCPGW_SERVERS_MAX)
        return fail(c, "too many servers (%zu, the limit is %d)", n, MCPGW_SERVERS_MAX);
    if (n == 0)
        return 0;
    conf->servers = calloc(n, sizeof(*conf->servers));
    if (!conf->servers)
        return oom(c);
    conf->nservers = n;
    /* json-c keeps members in insertion order, so servers keep file order. */
    json_object_object_foreach(v, id, sv) {
        size_t mark;

        if (strcmp(id, "$comment") == 0)
            continue;
        mark = path_push(c, id);
        rc = parse_server(c, id, sv, &conf->servers[i++]);
        if (rc < 0)
            return rc;
        path_pop(c, mark);
    }
    return 0;
}

/* ---- gateway ------------------------------------------------------------- */

static const char *const top_keys[] = { "gateway", "mcpServers", "$schema", NULL };
static const char *const gateway_keys[] = {
    "listen", "tokenFile", "requireAuth", "log", "allowedOrigins", "limits", "stateDir",
    "ticketTtlMs", "maxServerProcesses", "events", "sse", "fcgi", "websocket", "tokenLimits",
    "trustedProxies", "toolPinning", NULL
};
static const char *const events_keys[] = {
    "backend", "dir", "redis", "maxEvents", "maxAgeMs", "maxBytes", "includeParams", NULL
};
static const char *const redis_keys[] = { "host", "port", "key", NULL };
static const char *const sse_keys[] = { "maxStreamMs", "retryMs", "maxStreams", NULL };
static const char *const fcgi_keys[] = { "threads", NULL };
static const char *const websocket_keys[] = {
    "pingIntervalMs", "maxMissedPongs", "maxFragments", "outputHighBytes", "outputMaxBytes",
    "maxAuthFailures", "restThreads", NULL
};
static const char *const token_limits_keys[] = {
    "maxConcurrentCalls", "callsPerSecond", "burst", NULL
};
static const char *const log_keys[] = { "file", "level", "syslog", NULL };
static const char *const limits_keys[] = {
    "maxMessageBytes", "maxJsonDepth", "maxConnections", "maxConnectionsPerIp",
    "maxInFlightPerConnection", "heartbeatIntervalMs", "handshakeTimeoutMs", "idleTimeoutMs",
    NULL
};

static int check_trusted_proxy(struct ctx *c, const char *s, char **copy)
{
    struct mcpgw_netblock b;
    char show[SHOWBUF], why[160];

    (void)copy;
    if (mcpgw_peer_parse_block(s, &b, why, sizeof(why)) < 0)
        return fail(c, "%s, got %s", why, quote(show, sizeof(show), s, strlen(s)));
    return 0;
}

/* gateway.trustedProxies: checked as strings (precise messages, no
 * duplicates), kept as blocks.  Never NULL once set, even when empty: an
 * empty list trusts no proxy, an absent one gets the default. */
static int parse_trusted_proxies(struct ctx *c, json_object *v, struct mcpgw_conf *conf)
{
    char **strs = NULL;
    size_t n = 0;
    int rc;

    rc = get_strv(c, v, "addresses", "addresses", MCPGW_TRUSTED_PROXIES_MAX, true, true,
                  check_trusted_proxy, &strs, &n);
    if (rc < 0)
        return rc;
    free(conf->trusted_proxies);
    conf->trusted_proxies = calloc(n + 1, sizeof(*conf->trusted_proxies));
    conf->ntrusted_proxies = 0;
    if (!conf->trusted_proxies) {
        strv_free(strs);
        return oom(c);
    }
    for (size_t i = 0; i < n; i++)
        mcpgw_peer_parse_block(strs[i], &conf->trusted_proxies[i], NULL, 0);
    conf->ntrusted_proxies = n;
    strv_free(strs);
    return 0;
}

static int parse_log(struct ctx *c, json_object *v, struct mcpgw_conf *conf)
{
    json_object *f;
    int rc;

    rc = want_object(c, v);
    if (rc == 0)
        rc = check_keys(c, v, log_keys);
    if (rc == 0)
        rc = field_path(c, v, "file", &conf->log_file);
    if (rc < 0)
        return rc;
    if (json_object_object_get_ex(v, "level", &f)) {
        size_t mark = path_push(c, "level");
        char show[SHOWBUF];
        const char *str = NULL;

        rc = get_str(c, f, false, &str);
        if (rc < 0)
            return rc;
        conf->log_level = mcpgw_log_level_parse(str);
        if (conf->log_level < 0)
            return fail(c, "expected one of \"error\", \"warn\", \"info\", \"debug\", got %s",
                        describe(f, show, sizeof(show)));
        path_pop(c, mark);
    }
    return field_bool(c, v, "syslog", &conf->log_syslog);
}

static int parse_limits(struct ctx *c, json_object *v, struct mcpgw_conf_limits *l)
{
    int msg = (int)l->max_message_bytes;
    int rc;

    rc = want_object(c, v);
    if (rc == 0)
        rc = check_keys(c, v, limits_keys);
    if (rc == 0)
        rc = field_int(c, v, "maxMessageBytes", MCPGW_MESSAGE_BYTES_MIN, MCPGW_MESSAGE_BYTES_MAX,
                       &msg);
    if (rc == 0)
        rc = field_int(c, v, "maxJsonDepth", MCPGW_JSON_DEPTH_MIN, MCPGW_JSON_DEPTH_MAX,
                       &l->max_json_depth);
    if (rc == 0)
        rc = field_int(c, v, "maxConnections", 1, MCPGW_CONNECTIONS_MAX, &l->max_connections);
    if (rc == 0)
        rc = field_int(c, v, "maxConnectionsPerIp", 1, MCPGW_CONNECTIONS_MAX,
                       &l->max_connections_per_ip);
    if (rc == 0)
        rc = field_int(c, v, "maxInFlightPerConnection", 1, MCPGW_CONN_INFLIGHT_MAX,
                       &l->max_inflight_per_conn);
    if (rc == 0)
        rc = field_int(c, v, "heartbeatIntervalMs", MCPGW_HEARTBEAT_MIN, MCPGW_HEARTBEAT_MAX,
                       &l->heartbeat_ms);
    if (rc == 0)
        rc = field_int(c, v, "handshakeTimeoutMs", MCPGW_TIMEOUT_MIN, MCPGW_TIMEOUT_MAX,
                       &l->handshake_timeout_ms);
    if (rc == 0)
        rc = field_int(c, v, "idleTimeoutMs", MCPGW_TIMEOUT_MIN, MCPGW_TIMEOUT_MAX,
                       &l->idle_timeout_ms);
    l->max_message_bytes = (size_t)msg;
    return rc;
}

/* Optional non-empty string member key of obj, copied into *out. */
static int field_str(struct ctx *c, json_object *obj, const char *key, char **out)
{
    json_object *v;
    const char *str = NULL;
    size_t mark;
    int rc;

    if (!json_object_object_get_ex(obj, key, &v))
        return 0;
    mark = path_push(c, key);
    rc = get_str(c, v, true, &str);
    if (rc == 0) {
        free(*out);
        if (!(*out = strdup(str)))
            return oom(c);
    }
    path_pop(c, mark);
    return rc;
}

/* Runs parse(c, member, arg) for an optional object member, with the key
 * path kept right for its messages. */
static int section(struct ctx *c, json_object *obj, const char *key, const char *const *known,
                   int (*parse)(struct ctx *c, json_object *v, void *arg), void *arg)
{
    json_object *v;
    size_t mark;
    int rc;

    if (!json_object_object_get_ex(obj, key, &v))
        return 0;
    mark = path_push(c, key);
    rc = want_object(c, v);
    if (rc == 0)
        rc = check_keys(c, v, known);
    if (rc == 0)
        rc = parse(c, v, arg);
    if (rc == 0)
        path_pop(c, mark);
    return rc;
}

static int parse_redis(struct ctx *c, json_object *v, void *arg)
{
    struct mcpgw_conf_events *e = arg;
    int rc = field_str(c, v, "host", &e->redis_host);

    if (rc == 0)
        rc = field_int(c, v, "port", 1, 65535, &e->redis_port);
    if (rc == 0)
        rc = field_str(c, v, "key", &e->redis_key);
    return rc;
}

static int parse_events(struct ctx *c, json_object *v, void *arg)
{
    struct mcpgw_conf_events *e = arg;
    int bytes = (int)e->max_bytes;
    json_object *f;
    int rc;

    if (json_object_object_get_ex(v, "backend", &f)) {
        size_t mark = path_push(c, "backend");
        char show[SHOWBUF];
        const char *str = NULL;

        if ((rc = get_str(c, f, false, &str)) < 0)
            return rc;
        if (strcmp(str, "file") == 0)
            e->backend = MCPGW_EVENTS_FILE;
        else if (strcmp(str, "redis") == 0)
            e->backend = MCPGW_EVENTS_REDIS;
        else
            return fail(c, "expected one of \"file\", \"redis\", got %s",
                        describe(f, show, sizeof(show)));
        path_pop(c, mark);
    }
    rc = field_path(c, v, "dir", &e->dir);
    if (rc == 0)
        rc = section(c, v, "redis", redis_keys, parse_redis, e);
    if (rc == 0)
        rc = field_int(c, v, "maxEvents", 1, MCPGW_EVENTS_COUNT_MAX, &e->max_events);
    if (rc == 0)
        rc = field_int(c, v, "maxAgeMs", 1000, MCPGW_EVENTS_AGE_MAX, &e->max_age_ms);
    if (rc == 0)
        rc = field_int(c, v, "maxBytes", MCPGW_EVENTS_BYTES_MIN, MCPGW_EVENTS_BYTES_MAX, &bytes);
    if (rc == 0)
        rc = field_bool(c, v, "includeParams", &e->include_params);
    e->max_bytes = (size_t)bytes;
    return rc;
}

static int parse_sse(struct ctx *c, json_object *v, void *arg)
{
    struct mcpgw_conf_sse *s = arg;
    int rc = field_int(c, v, "maxStreamMs", MCPGW_SSE_STREAM_MIN, MCPGW_SSE_STREAM_MAX,
                       &s->max_stream_ms);

    if (rc == 0)
        rc = field_int(c, v, "retryMs", MCPGW_SSE_RETRY_MIN, MCPGW_SSE_RETRY_MAX, &s->retry_ms);
    if (rc == 0)
        rc = field_int(c, v, "maxStreams", 1, MCPGW_SSE_STREAMS_MAX, &s->max_streams);
    return rc;
}

static int parse_fcgi(struct ctx *c, json_object *v, void *arg)
{
    return field_int(c, v, "threads", 1, MCPGW_FCGI_THREADS_MAX, arg);
}

static int parse_websocket(struct ctx *c, json_object *v, void *arg)
{
    struct mcpgw_conf_websocket *w = arg;
    int high = (int)w->outq_high_bytes, max = (int)w->outq_max_bytes;
    int rc = field_int(c, v, "pingIntervalMs", MCPGW_WS_PING_MIN, MCPGW_WS_PING_MAX,
                       &w->ping_interval_ms);

    if (rc == 0)
        rc = field_int(c, v, "maxMissedPongs", 1, MCPGW_WS_MISSED_PONGS_MAX, &w->max_missed_pongs);
    if (rc == 0)
        rc = field_int(c, v, "maxFragments", 1, MCPGW_WS_FRAGMENTS_MAX, &w->max_fragments);
    if (rc == 0)
        rc = field_int(c, v, "outputHighBytes", MCPGW_WS_OUTQ_MIN, MCPGW_WS_OUTQ_MAX_MAX, &high);
    if (rc == 0)
        rc = field_int(c, v, "outputMaxBytes", MCPGW_WS_OUTQ_MIN, MCPGW_WS_OUTQ_MAX_MAX, &max);
    if (rc == 0)
        rc = field_int(c, v, "maxAuthFailures", 1, MCPGW_WS_AUTH_FAILURES_MAX,
                       &w->max_auth_failures);
    if (rc == 0)
        rc = field_int(c, v, "restThreads", 1, MCPGW_WSD_REST_THREADS_MAX, &w->rest_threads);
    if (rc == 0 && high > max)
        rc = fail(c, "outputHighBytes (%d) must not exceed outputMaxBytes (%d)", high, max);
    w->outq_high_bytes = (size_t)high;
    w->outq_max_bytes = (size_t)max;
    return rc;
}

static int parse_token_limits(struct ctx *c, json_object *v, void *arg)
{
    struct mcpgw_conf_token_limits *t = arg;
    int rc = field_int(c, v, "maxConcurrentCalls", 1, MCPGW_TOKEN_CONCURRENT_MAX,
                       &t->max_concurrent);

    if (rc == 0)
        rc = field_int(c, v, "callsPerSecond", 1, MCPGW_TOKEN_RATE_MAX, &t->per_second);
    if (rc == 0)
        rc = field_int(c, v, "burst", 1, MCPGW_TOKEN_RATE_MAX, &t->burst);
    return rc;
}

static int parse_gateway(struct ctx *c, json_object *v, struct mcpgw_conf *conf)
{
    json_object *f;
    size_t mark;
    int rc;

    rc = want_object(c, v);
    if (rc == 0)
        rc = check_keys(c, v, gateway_keys);
    if (rc < 0)
        return rc;
    if (json_object_object_get_ex(v, "listen", &f)) {
        mark = path_push(c, "listen");
        rc = get_strv(c, f, "addresses", "addresses", 0, true, true, check_listen, &conf->listen,
                      &conf->nlisten);
        if (rc == 0 && conf->nlisten == 0)
            rc = fail(c, "expected at least one address");
        if (rc < 0)
            return rc;
        path_pop(c, mark);
    }
    rc = field_path(c, v, "tokenFile", &conf->token_file);
    if (rc == 0)
        rc = field_bool(c, v, "requireAuth", &conf->require_auth);
    if (rc < 0)
        return rc;
    if (json_object_object_get_ex(v, "toolPinning", &f)) {
        static const char *const modes[] = { "off", "warn", "enforce" };
        const char *str = NULL;
        char show[SHOWBUF];
        size_t i;

        mark = path_push(c, "toolPinning");
        rc = get_str(c, f, false, &str);
        if (rc < 0)
            return rc;
        for (i = 0; i < 3 && strcmp(str, modes[i]) != 0; i++)
            ;
        if (i == 3)
            return fail(c, "expected one of \"off\", \"warn\", \"enforce\", got %s",
                        describe(f, show, sizeof(show)));
        conf->tool_pinning = (enum mcpgw_tool_pinning)i;
        path_pop(c, mark);
    }
    if (json_object_object_get_ex(v, "log", &f)) {
        mark = path_push(c, "log");
        rc = parse_log(c, f, conf);
        if (rc < 0)
            return rc;
        path_pop(c, mark);
    }
    if (json_object_object_get_ex(v, "allowedOrigins", &f)) {
        mark = path_push(c, "allowedOrigins");
        rc = get_strv(c, f, "origins", "origins", MCPGW_ORIGINS_MAX, true, true, check_origin,
                      &conf->allowed_origins, &conf->norigins);
        if (rc < 0)
            return rc;
        path_pop(c, mark);
    }
    if (json_object_object_get_ex(v, "trustedProxies", &f)) {
        mark = path_push(c, "trustedProxies");
        rc = parse_trusted_proxies(c, f, conf);
        if (rc < 0)
            return rc;
        path_pop(c, mark);
    }
    if (json_object_object_get_ex(v, "limits", &f)) {
        mark = path_push(c, "limits");
        rc = parse_limits(c, f, &conf->limits);
        if (rc < 0)
            return rc;
        path_pop(c, mark);
    }
    rc = field_path(c, v, "stateDir", &conf->state_dir);
    if (rc == 0)
        rc = field_int(c, v, "ticketTtlMs", MCPGW_TICKET_TTL_MIN, MCPGW_TICKET_TTL_MAX,
                       &conf->ticket_ttl_ms);
    if (rc == 0)
        rc = field_int(c, v, "maxServerProcesses", 1, MCPGW_SERVER_PROCS_MAX,
                       &conf->max_server_processes);
    if (rc == 0)
        rc = section(c, v, "events", events_keys, parse_events, &conf->events);
    if (rc == 0)
        rc = section(c, v, "sse", sse_keys, parse_sse, &conf->sse);
    if (rc == 0)
        rc = section(c, v, "fcgi", fcgi_keys, parse_fcgi, &conf->fcgi_threads);
    if (rc == 0)
        rc = section(c, v, "websocket", websocket_keys, parse_websocket, &conf->websocket);
    if (rc == 0)
        rc = section(c, v, "tokenLimits", token_limits_keys, parse_token_limits,
                     &conf->token_limits);
    return rc;
}

/* ---- the JSON text ------------------------------------------------------- */

struct span {
    const char *p;
    size_t len;
};

static int span_cmp(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int d = memcmp(x->p, y->p, n);

    if (d)
        return d;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->p < y->p ? -1 : x->p > y->p;
}

/* json-c lets a repeated key silently replace the first: report the first
 * repeat in the file instead.  Keys compare as written. */
static int check_dups(struct ctx *c, const char *t, struct span *k, size_t n)
{
    const char *first = NULL;

    if (n < 2)
        return 0;
    qsort(k, n, sizeof(*k), span_cmp);
    for (size_t i = 1; i < n; i++)
        if (k[i].len == k[i - 1].len && memcmp(k[i].p, k[i - 1].p, k[i].len) == 0 &&
            (!first || k[i].p < first))
            first = k[i].p;
    if (first) {
        char show[SHOWBUF];
        size_t len = 0;

        for (size_t i = 0; i < n; i++)
            if (k[i].p == first)
                len = k[i].len;
        return fail_at(c, t, (size_t)(first - 1 - t), "duplicate key %s",
                       quote(show, sizeof(show), first, len));
    }
    return 0;
}

static bool is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* A second pass over text json-c has accepted, for what its strict mode
 * still lets through: single-quoted strings, raw control characters in
 * strings, NaN/Infinity, numbers like "1.", "\u0000" in a key (json-c cuts
 * the key there) and repeated keys. */
static int strict_scan(struct ctx *c, const char *t, size_t n)
{
    size_t frames[MCPGW_JSON_DEPTH_DEFAULT + 2];
    struct span *keys = NULL;
    size_t nkeys = 0, cap = 0, depth = 0, i = 0;
    int rc = 0;

    while (i < n) {
        char ch = t[i];

        if (ch == '{' || ch == '[') {
            if (depth == ARRAY_SIZE(frames)) {
                rc = fail_at(c, t, i, "nesting deeper than %d levels", MCPGW_JSON_DEPTH_DEFAULT);
                goto out;
            }
            frames[depth++] = ch == '{' ? nkeys : SIZE_MAX;
            i++;
        } else if (ch == '}' || ch == ']') {
            if (depth > 0 && frames[--depth] != SIZE_MAX) {
                /* An empty object has no keys to compare (and keys may
                 * still be NULL: NULL + 0 is undefined in C). */
                if (nkeys > frames[depth]) {
                    rc = check_dups(c, t, keys + frames[depth], nkeys - frames[depth]);
                    if (rc < 0)
                        goto out;
                }
                nkeys = frames[depth];
            }
            i++;
        } else if (ch == '"') {
            size_t start = ++i;
            bool nul = false;

            for (; i < n && t[i] != '"'; i++) {
                if ((unsigned char)t[i] < 0x20) {
                    rc = fail_at(c, t, i, "control character in a string "
                                 "(write it as an escape such as \\n)");
                    goto out;
                }
                if (t[i] == '\\' && i + 1 < n) {
                    if (i + 5 < n && t[i + 1] == 'u' && memcmp(t + i + 2, "0000", 4) == 0)
                        nul = true;
                    i++;
                }
            }
            size_t end = i++, j = i;

            while (j < n && is_ws(t[j]))
                j++;
            if (j < n && t[j] == ':' && depth > 0 && frames[depth - 1] != SIZE_MAX) {
                if (nul) {
                    rc = fail_at(c, t, start - 1, "a key contains a NUL byte (\\u0000)");
                    goto out;
                }
                if (nkeys == cap) {
                    size_t ncap = cap ? cap * 2 : 64;
                    struct span *k = realloc(keys, ncap * sizeof(*k));

                    if (!k) {
                        rc = oom(c);
                        goto out;
                    }
                    keys = k;
                    cap = ncap;
                }
                keys[nkeys].p = t + start;
                keys[nkeys++].len = end - start;
            }
        } else if (ch == '\'') {
            rc = fail_at(c, t, i, "strings need double quotes");
            goto out;
        } else if (ch == '-' || is_digit(ch)) {
            size_t s0 = i;

            if (t[i] == '-')
                i++;
            if (i < n && t[i] == '0') {
                i++;
            } else if (i < n && is_digit(t[i])) {
                while (i < n && is_digit(t[i]))
                    i++;
            } else {
                goto badnum;
            }
            if (i < n && t[i] == '.') {
                if (++i >= n || !is_digit(t[i]))
                    goto badnum;
                while (i < n && is_digit(t[i]))
                    i++;
            }
            if (i < n && (t[i] == 'e' || t[i] == 'E')) {
                if (++i < n && (t[i] == '+' || t[i] == '-'))
                    i++;
                if (i >= n || !is_digit(t[i]))
                    goto badnum;
                while (i < n && is_digit(t[i]))
                    i++;
            }
            continue;
badnum:
            rc = fail_at(c, t, s0, "invalid number");
            goto out;
        } else if (is_alpha(ch)) {
            size_t s0 = i;

            while (i < n && is_alnum(t[i]))
                i++;
            if (!((i - s0 == 4 && (memcmp(t + s0, "true", 4) == 0 ||
                                   memcmp(t + s0, "null", 4) == 0)) ||
                  (i - s0 == 5 && memcmp(t + s0, "false", 5) == 0))) {
                char show[SHOWBUF];

                esc(show, sizeof(show), t + s0, i - s0, SHOW_MAX);
                rc = fail_at(c, t, s0, "unexpected '%s' (JSON has no NaN or Infinity)", show);
                goto out;
            }
        } else {
            i++;
        }
    }
out:
    free(keys);
    return rc;
}

static int parse_json(struct ctx *c, const char *t, size_t n, json_object **out)
{
    struct json_tokener *tok;
    enum json_tokener_error jerr;
    json_object *root;
    size_t off;
    const char *nul;
    int rc;

    nul = memchr(t, '\0', n);
    if (nul)
        return fail_at(c, t, (size_t)(nul - t), "NUL byte in the file");
    tok = json_tokener_new_ex(MCPGW_JSON_DEPTH_DEFAULT);
    if (!tok)
        return oom(c);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    root = json_tokener_parse_ex(tok, t, (int)n);
    jerr = json_tokener_get_error(tok);
    off = json_tokener_get_parse_end(tok);
    if (!root && jerr == json_tokener_continue) {
        /* A NUL is json-c's end of input: it ends a trailing number or
         * reports the text as cut short. */
        root = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        off = n;
    }
    json_tokener_free(tok);
    if (!root) {
        if (jerr == json_tokener_success)
            return fail(c, "expected an object at the top level, got null");
        if (jerr == json_tokener_error_depth)
            return fail_at(c, t, off, "nesting deeper than %d levels", MCPGW_JSON_DEPTH_DEFAULT);
        if (jerr == json_tokener_error_parse_eof)
            return fail_at(c, t, n, "unexpected end of file");
        return fail_at(c, t, off > n ? n : off, "%s", json_tokener_error_desc(jerr));
    }
    for (; off < n; off++)
        if (!is_ws(t[off])) {
            json_object_put(root);
            return fail_at(c, t, off, "unexpected character");
        }
    rc = strict_scan(c, t, n);
    if (rc < 0) {
        json_object_put(root);
        return rc;
    }
    *out = root;
    return 0;
}

/* ---- entry points -------------------------------------------------------- */

static int parse_into(struct ctx *c, struct mcpgw_conf *conf, const char *text, size_t len)
{
    json_object *root = NULL, *v;
    int rc;

    if (len > MCPGW_CONFIG_BYTES_MAX)
        return fail(c, "file too big (%zu bytes, the limit is %u)", len,
                    MCPGW_CONFIG_BYTES_MAX);
    /* RFC 8259 section 8.1: a parser may ignore a byte order mark. */
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
        text += 3;
        len -= 3;
    }
    rc = parse_json(c, text, len, &root);
    if (rc < 0)
        return rc;

    conf->require_auth = true;
    conf->log_level = MCPGW_LOG_INFO;
    conf->limits.max_message_bytes = MCPGW_MESSAGE_BYTES_DEFAULT;
    conf->limits.max_json_depth = MCPGW_JSON_DEPTH_DEFAULT;
    conf->limits.max_connections = MCPGW_CONNECTIONS_DEFAULT;
    conf->limits.max_connections_per_ip = MCPGW_CONNECTIONS_PER_IP_DEFAULT;
    conf->limits.max_inflight_per_conn = MCPGW_CONN_INFLIGHT_DEFAULT;
    conf->limits.heartbeat_ms = MCPGW_HEARTBEAT_DEFAULT;
    conf->limits.handshake_timeout_ms = MCPGW_HANDSHAKE_TIMEOUT_DEFAULT;
    conf->limits.idle_timeout_ms = MCPGW_IDLE_TIMEOUT_DEFAULT;
    conf->ticket_ttl_ms = MCPGW_TICKET_TTL_DEFAULT;
    conf->max_server_processes = MCPGW_SERVER_PROCS_DEFAULT;
    conf->fcgi_threads = MCPGW_FCGI_THREADS_DEFAULT;
    conf->events.redis_port = 6379;
    conf->events.max_events = MCPGW_EVENTS_COUNT_DEFAULT;
    conf->events.max_age_ms = MCPGW_EVENTS_AGE_DEFAULT;
    conf->events.max_bytes = MCPGW_EVENTS_BYTES_DEFAULT;
    conf->sse.max_stream_ms = MCPGW_SSE_STREAM_DEFAULT;
    conf->sse.retry_ms = MCPGW_SSE_RETRY_DEFAULT;
    conf->sse.max_streams = MCPGW_SSE_STREAMS_DEFAULT;
    conf->websocket.ping_interval_ms = MCPGW_WS_PING_DEFAULT;
    conf->websocket.max_missed_pongs = MCPGW_WS_MISSED_PONGS_DEFAULT;
    conf->websocket.max_fragments = MCPGW_WS_FRAGMENTS_DEFAULT;
    conf->websocket.outq_high_bytes = MCPGW_WS_OUTQ_HIGH_DEFAULT;
    conf->websocket.outq_max_bytes = MCPGW_WS_OUTQ_MAX_DEFAULT;
    conf->websocket.max_auth_failures = MCPGW_WS_AUTH_FAILURES_DEFAULT;
    conf->websocket.rest_threads = MCPGW_WSD_REST_THREADS_DEFAULT;
    conf->token_limits.max_concurrent = MCPGW_TOKEN_CONCURRENT_DEFAULT;
    conf->token_limits.per_second = MCPGW_TOKEN_RATE_DEFAULT;
    conf->token_limits.burst = MCPGW_TOKEN_BURST_DEFAULT;

    if (!json_object_is_type(root, json_type_object)) {
        char show[SHOWBUF];

        rc = fail(c, "expected an object at the top level, got %s",
                  describe(root, show, sizeof(show)));
        goto out;
    }
    rc = check_keys(c, root, top_keys);
    if (rc < 0)
        goto out;
    if (json_object_object_get_ex(root, "gateway", &v)) {
        size_t mark = path_push(c, "gateway");

        rc = parse_gateway(c, v, conf);
        if (rc < 0)
            goto out;
        path_pop(c, mark);
    }
    if (json_object_object_get_ex(root, "mcpServers", &v)) {
        size_t mark = path_push(c, "mcpServers");

        rc = parse_servers(c, v, conf);
        if (rc < 0)
            goto out;
        path_pop(c, mark);
    }

    if (!conf->listen) {
        conf->listen = calloc(2, sizeof(*conf->listen));
        if (!conf->listen || !(conf->listen[0] = strdup(DEFAULT_LISTEN))) {
            rc = oom(c);
            goto out;
        }
        conf->nlisten = 1;
    }
    if (!conf->trusted_proxies) {
        /* Loopback and unix sockets: the web server on this host
         * (docs/security.md, "Clients behind a proxy"). */
        static const char *const local[] = { "127.0.0.0/8", "::1", "unix" };

        conf->trusted_proxies = calloc(3, sizeof(*conf->trusted_proxies));
        if (!conf->trusted_proxies) {
            rc = oom(c);
            goto out;
        }
        for (size_t i = 0; i < 3; i++)
            mcpgw_peer_parse_block(local[i], &conf->trusted_proxies[i], NULL, 0);
        conf->ntrusted_proxies = 3;
    }
    if (!conf->token_file && path_join(conf->dir, "tokens.json", &conf->token_file) < 0) {
        rc = fail(c, "default tokenFile: path is longer than %d bytes", PATH_MAX - 1);
        goto out;
    }
    if (!conf->log_file && path_join(conf->dir, "logs/gateway.log", &conf->log_file) < 0) {
        rc = fail(c, "default log.file: path is longer than %d bytes", PATH_MAX - 1);
        goto out;
    }
    if (!conf->state_dir && !(conf->state_dir = strdup(LOCALSTATEDIR "/lib/mcpgw"))) {
        rc = oom(c);
        goto out;
    }
    if (!conf->events.dir && path_join(conf->state_dir, "events", &conf->events.dir) < 0) {
        rc = fail(c, "default events.dir: path is longer than %d bytes", PATH_MAX - 1);
        goto out;
    }
    if ((!conf->events.redis_host && !(conf->events.redis_host = strdup("127.0.0.1"))) ||
        (!conf->events.redis_key && !(conf->events.redis_key = strdup("mcpgw:events")))) {
        rc = oom(c);
        goto out;
    }
out:
    json_object_put(root);
    return rc;
}

static void clear_err(char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
}

int mcpgw_conf_parse(const char *text, size_t len, const char *name, const char *dir,
                     struct mcpgw_conf **out, char *err, size_t errlen)
{
    struct ctx c = { .name = name ? name : "config", .err = err, .errlen = errlen };
    struct mcpgw_conf *conf;
    const char *base;
    int rc;

    *out = NULL;
    clear_err(err, errlen);
    conf = calloc(1, sizeof(*conf));
    if (!conf)
        return oom(&c);
    rc = cwd_join(&c, dir ? dir : ".", &conf->dir);
    if (rc < 0)
        goto fail;
    base = strrchr(c.name, '/');
    base = base ? base + 1 : c.name;
    rc = c.name[0] == '/' ? cwd_join(&c, c.name, &conf->path)
                          : path_join(conf->dir, *base ? base : "config", &conf->path);
    if (rc == MCPGW_ETOOBIG) {
        rc = fail_sys(&c, -ENAMETOOLONG, "path is longer than %d bytes", PATH_MAX - 1);
        goto fail;
    }
    if (rc < 0) {
        rc = rc == -ENOMEM ? oom(&c) : rc;
        goto fail;
    }
    c.dir = conf->dir;
    rc = parse_into(&c, conf, text, len);
    if (rc < 0)
        goto fail;
    *out = conf;
    return 0;
fail:
    mcpgw_conf_free(conf);
    return rc;
}

/* Read at most MCPGW_CONFIG_BYTES_MAX + 1 bytes: one more than allowed is
 * enough to say "too big", whatever fstat said (the file may grow). */
static int read_all(struct ctx *c, int fd, struct mcpgw_buf *b)
{
    char chunk[16384];

    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        int rc;

        if (r == 0)
            return 0;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return fail_sys(c, -errno, "cannot read: %s", strerror(errno));
        }
        rc = mcpgw_buf_add(b, chunk, (size_t)r);
        if (rc == MCPGW_ETOOBIG)
            return fail_sys(c, MCPGW_ECONFIG, "file too big (more than %u bytes)",
                            MCPGW_CONFIG_BYTES_MAX);
        if (rc < 0)
            return oom(c);
    }
}

int mcpgw_conf_load(const char *path, struct mcpgw_conf **out, char *err, size_t errlen)
{
    struct ctx c = { .err = err, .errlen = errlen };
    struct mcpgw_conf *conf = NULL;
    struct mcpgw_buf text;
    struct stat st;
    int fd = -1, rc;

    *out = NULL;
    clear_err(err, errlen);
    mcpgw_buf_init(&text, MCPGW_CONFIG_BYTES_MAX);
    if (!path) {
        path = getenv("MCPGW_CONFIG");
        if (!path || !*path)
            path = DEFAULT_PATH;
    }
    c.name = path;
    /* O_NONBLOCK: opening a FIFO must not hang; it is refused below. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd == -1) {
        rc = fail_sys(&c, -errno, "cannot open: %s", strerror(errno));
        goto fail;
    }
    if (fstat(fd, &st) == -1) {
        rc = fail_sys(&c, -errno, "cannot stat: %s", strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = fail_sys(&c, MCPGW_ECONFIG, "not a regular file");
        goto fail;
    }
    /* The file names commands the gateway runs: whoever can write it can
     * run code as the gateway's user. */
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        rc = fail_sys(&c, MCPGW_ECONFIG, "refusing a group- or world-writable config file "
                      "(mode %04o): run chmod go-w on it", (unsigned)(st.st_mode & 07777));
        goto fail;
    }
    if (st.st_size > (off_t)MCPGW_CONFIG_BYTES_MAX) {
        rc = fail_sys(&c, MCPGW_ECONFIG, "file too big (%lld bytes, the limit is %u)",
                      (long long)st.st_size, MCPGW_CONFIG_BYTES_MAX);
        goto fail;
    }
    rc = read_all(&c, fd, &text);
    if (rc < 0)
        goto fail;
    close(fd);
    fd = -1;

    conf = calloc(1, sizeof(*conf));
    if (!conf) {
        rc = oom(&c);
        goto fail;
    }
    rc = cwd_join(&c, path, &conf->path);
    if (rc < 0)
        goto fail;
    conf->dir = dir_of(conf->path);
    if (!conf->dir) {
        rc = oom(&c);
        goto fail;
    }
    c.dir = conf->dir;
    rc = parse_into(&c, conf, text.ptr ? text.ptr : "", text.len);
    if (rc < 0)
        goto fail;
    mcpgw_buf_release(&text);
    *out = conf;
    return 0;
fail:
    if (fd != -1)
        close(fd);
    mcpgw_buf_release(&text);
    mcpgw_conf_free(conf);
    return rc;
}

static void server_release(struct mcpgw_conf_server *s)
{
    free(s->id);
    free(s->command);
    strv_free(s->args);
    for (size_t i = 0; i < s->nenv; i++) {
        free(s->env[i].name);
        free(s->env[i].value);
    }
    free(s->env);
    free(s->cwd);
    free(s->user);
    strv_free(s->tools);
}

void mcpgw_conf_free(struct mcpgw_conf *conf)
{
    if (!conf)
        return;
    for (size_t i = 0; i < conf->nservers; i++)
        server_release(&conf->servers[i]);
    free(conf->servers);
    free(conf->path);
    free(conf->dir);
    strv_free(conf->listen);
    free(conf->token_file);
    free(conf->log_file);
    strv_free(conf->allowed_origins);
    free(conf->trusted_proxies);
    free(conf->state_dir);
    free(conf->events.dir);
    free(conf->events.redis_host);
    free(conf->events.redis_key);
    free(conf);
}

const struct mcpgw_conf_server *mcpgw_conf_server(const struct mcpgw_conf *conf, const char *id)
{
    if (!conf || !id)
        return NULL;
    for (size_t i = 0; i < conf->nservers; i++)
        if (strcmp(conf->servers[i].id, id) == 0)
            return &conf->servers[i];
    return NULL;
}

bool mcpgw_conf_tool_allowed(const struct mcpgw_conf_server *s, const char *tool)
{
    if (!s || !tool)
        return false;
    if (!s->tools)
        return true;
    for (size_t i = 0; i < s->ntools; i++)
        if (strcmp(s->tools[i], tool) == 0)
            return true;
    return false;
}

const char *mcpgw_conf_default_path(void)
{
    return DEFAULT_PATH;
}

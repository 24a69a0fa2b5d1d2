/* check_token.c - bearer tokens: format, file, verification, scopes, locking.
 *
 * Every test gets its own temporary directory holding tokens.json, so tests
 * can create, chmod and break the file freely.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "err.h"
#include "limits.h"
#include "log.h"
#include "token.h"

#define TOKEN_LEN 58
#define TOKBUF 64
/* 64 hex digits that are not the hash of anything we generate */
#define HASH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HASH_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

/* Known vectors made outside this code (Python: base64.urlsafe_b64encode,
 * zlib.crc32, hashlib.sha256), so format, CRC polynomial and hashing are
 * checked against independent implementations. */
#define VEC1 "mcpgw_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_36554212"
#define VEC1_SHA "a4d16fd01420fc63ac3144e9bd18df1e583348788017c41432edc7ab8b4ce175"
#define VEC2 "mcpgw_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8_d5d4f7fd"
#define VEC2_SHA "f9c596f53f14c21380eb4519e403ce90a4bab976f0db2d2017df819de9a88402"

static char dir[128], path[192];
static char err[1024];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/check_token.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/tokens.json", dir);
    err[0] = '\0';
    umask(022);
}

static void rm_tree(const char *d)
{
    DIR *dp = opendir(d);
    struct dirent *de;
    char p[512];

    if (!dp)
        return;
    while ((de = readdir(dp))) {
        struct stat st;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", d, de->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(dp);
    rmdir(d);
}

static void teardown(void)
{
    mcpgw_log_set_sink(NULL, NULL);
    rm_tree(dir);
}

/* ---- helpers ---- */

static void write_file(const char *p, const char *text, size_t len, mode_t mode)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    ck_assert_int_ne(fd, -1);
    ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
    ck_assert_int_eq(fchmod(fd, mode), 0);
    ck_assert_int_eq(close(fd), 0);
}

static void write_text(const char *text)
{
    write_file(path, text, strlen(text), 0600);
}

static char *read_text(const char *p)
{
    FILE *f = fopen(p, "rb");
    char *s;
    long n;

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    rewind(f);
    s = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static mode_t file_mode(const char *p)
{
    struct stat st;

    ck_assert_int_eq(stat(p, &st), 0);
    return st.st_mode & 07777;
}

static bool file_exists(const char *p)
{
    struct stat st;

    return lstat(p, &st) == 0;
}

static void add_ok(const char *name, const char *scope, char tok[TOKBUF])
{
    const char *scopes[] = { scope };
    int rc = mcpgw_tokens_add(path, name, scopes, 1, 0, tok, TOKBUF, err, sizeof(err));

    ck_assert_msg(rc == 0, "add '%s': %d %s", name, rc, err);
    ck_assert_uint_eq(strlen(tok), TOKEN_LEN);
}

static mcpgw_tokens *load_ok(void)
{
    mcpgw_tokens *t = NULL;
    int rc = mcpgw_tokens_load(path, &t, err, sizeof(err));

    ck_assert_msg(rc == 0, "load: %d %s", rc, err);
    ck_assert_ptr_nonnull(t);
    return t;
}

static size_t count(const mcpgw_tokens *t)
{
    struct mcpgw_token_info info;
    size_t n = 0;

    while (mcpgw_tokens_get(t, n, &info))
        n++;
    return n;
}

static int verify_str(const mcpgw_tokens *t, const char *tok)
{
    struct mcpgw_token_info info;

    return mcpgw_tokens_verify(t, tok, strlen(tok), time(NULL), &info);
}

/* An independent CRC-32 (the zlib one), to build tokens whose checksum is
 * right but something else is wrong. */
static uint32_t test_crc32(const char *p, size_t n)
{
    uint32_t c = 0xffffffffu;

    for (size_t i = 0; i < n; i++) {
        c ^= (unsigned char)p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return ~c;
}

/* Rewrite tok's CRC to match its (possibly altered) first 49 chars. */
static void fix_crc(char *tok)
{
    char hex[9];

    snprintf(hex, sizeof(hex), "%08x", test_crc32(tok, 49));
    memcpy(tok + 50, hex, 8);
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* A different character from the same class as tok[pos], so the changed
 * token keeps its shape. */
static char neighbour(const char *tok, int pos)
{
    char c = tok[pos];

    if (pos >= 6 && pos < 49)
        return b64url[(strchr(b64url, c) - b64url + 1) % 64];
    if (pos >= 50)
        return "0123456789abcdef"[(strchr("0123456789abcdef", c) - "0123456789abcdef" + 1) % 16];
    return c == '_' ? '-' : (char)(c ^ 1);
}

/* tmpl with every "@@" replaced by tok. */
static void subst(char *out, size_t outlen, const char *tmpl, const char *tok)
{
    size_t o = 0, n = strlen(tok);

    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '@' && p[1] == '@') {
            ck_assert_uint_lt(o + n, outlen);
            memcpy(out + o, tok, n);
            o += n;
            p++;
            continue;
        }
        ck_assert_uint_lt(o + 1, outlen);
        out[o++] = *p;
    }
    out[o] = '\0';
}

static void sha256_hex(const char *s, char out[65])
{
    unsigned char h[32];
    unsigned int n = 0;

    ck_assert_int_eq(EVP_Digest(s, strlen(s), h, &n, EVP_sha256(), NULL), 1);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static void expect_msg(const char *tail)
{
    char want[1024];

    snprintf(want, sizeof(want), "%s: %s", path, tail);
    ck_assert_str_eq(err, want);
}

/* ---- format and the happy path ---- */

START_TEST(test_crc32_helper_is_zlib)
{
    ck_assert_uint_eq(test_crc32("123456789", 9), 0xcbf43926u);
    ck_assert_uint_eq(test_crc32(VEC1, 49), 0x36554212u);
}
END_TEST

START_TEST(test_externally_made_token_verifies)
{
    mcpgw_tokens *t;
    struct mcpgw_token_info info;

    write_text("{\"tokens\":[{\"name\":\"ext\",\"sha256\":\"" VEC1_SHA "\",\"scopes\":[\"*\"]}]}");
    t = load_ok();
    ck_assert_int_eq(mcpgw_tokens_verify(t, VEC1, strlen(VEC1), time(NULL), &info), 0);
    ck_assert_str_eq(info.name, "ext");
    ck_assert_str_eq(info.prefix, "");
    ck_assert_int_eq(info.created, 0);
    ck_assert_int_eq(info.expires, 0);
    ck_assert(!info.revoked);
    /* well formed, correct CRC, but not in the store */
    ck_assert_int_eq(verify_str(t, VEC2), MCPGW_EAUTH);
    mcpgw_tokens_free(t);
}
END_TEST

START_TEST(test_add_then_load_then_verify)
{
    const char *scopes[] = { "memory:*", "everything:echo" };
    char tok[TOKBUF];
    mcpgw_tokens *t;
    struct mcpgw_token_info info;
    time_t before = time(NULL), after;

    ck_assert_int_eq(mcpgw_tokens_add(path, "ci", scopes, 2, 0, tok, sizeof(tok), err, sizeof(err)), 0);
    after = time(NULL);
    ck_assert_uint_eq(strlen(tok), TOKEN_LEN);
    ck_assert_mem_eq(tok, "mcpgw_", 6);
    ck_assert_int_eq(tok[49], '_');
    for (int i = 6; i < 49; i++)
        ck_assert_ptr_nonnull(strchr(b64url, tok[i]));
    for (int i = 50; i < 58; i++)
        ck_assert_ptr_nonnull(strchr("0123456789abcdef", tok[i]));
    ck_assert_uint_eq(strtoul(tok + 50, NULL, 16), test_crc32(tok, 49));

    t = load_ok();
    ck_assert_int_eq(mcpgw_tokens_verify(t, tok, TOKEN_LEN, time(NULL), &info), 0);
    ck_assert_str_eq(info.name, "ci");
    ck_assert_uint_eq(info.nscopes, 2);
    ck_assert_str_eq(info.scopes[0], "memory:*");
    ck_assert_str_eq(info.scopes[1], "everything:echo");
    ck_assert_ptr_null(info.scopes[2]);
    ck_assert_int_eq(info.expires, 0);
    ck_assert(!info.revoked);
    ck_assert(info.created >= before && info.created <= after);
    ck_assert_uint_eq(strlen(info.prefix), 12);
    ck_assert_mem_eq(info.prefix, tok, 12);

    ck_assert(mcpgw_tokens_get(t, 0, &info));
    ck_assert_str_eq(info.name, "ci");
    ck_assert(!mcpgw_tokens_get(t, 1, &info));
    mcpgw_tokens_free(t);
}
END_TEST

START_TEST(test_file_holds_hash_prefix_and_fields)
{
    char tok[TOKBUF], hex[65];
    char *text;
    json_object *root, *arr, *e, *v;

    add_ok("ci", "memory:*", tok);
    sha256_hex(tok, hex);
    text = read_text(path);
    root = json_tokener_parse(text);
    ck_assert_ptr_nonnull(root);
    ck_assert(json_object_object_get_ex(root, "tokens", &arr));
    ck_assert_uint_eq(json_object_array_length(arr), 1);
    e = json_object_array_get_idx(arr, 0);
    ck_assert_int_eq(json_object_object_length(e), 7);
    ck_assert(json_object_object_get_ex(e, "sha256", &v));
    ck_assert_str_eq(json_object_get_string(v), hex);
    ck_assert(json_object_object_get_ex(e, "prefix", &v));
    ck_assert_uint_eq(json_object_get_string_len(v), 12);
    ck_assert_mem_eq(json_object_get_string(v), tok, 12);
    ck_assert(json_object_object_get_ex(e, "created", &v) && json_object_is_type(v, json_type_int));
    ck_assert(json_object_object_get_ex(e, "expires", &v) && json_object_get_int64(v) == 0);
    ck_assert(json_object_object_get_ex(e, "revoked", &v) && !json_object_get_boolean(v));
    ck_assert(json_object_object_get_ex(e, "scopes", &v));
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(v, 0)), "memory:*");
    json_object_put(root);
    free(text);
}
END_TEST

START_TEST(test_listing_keeps_file_order)
{
    char tok[TOKBUF];
    struct mcpgw_token_info info;
    mcpgw_tokens *t;

    add_ok("a", "*", tok);
    add_ok("b", "x:y", tok);
    add_ok("c", "*:echo", tok);
    t = load_ok();
    ck_assert(mcpgw_tokens_get(t, 0, &info) && strcmp(info.name, "a") == 0);
    ck_assert(mcpgw_tokens_get(t, 1, &info) && strcmp(info.name, "b") == 0);
    ck_assert(mcpgw_tokens_get(t, 2, &info) && strcmp(info.name, "c") == 0);
    ck_assert(!mcpgw_tokens_get(t, 3, &info));
    mcpgw_tokens_free(t);
}
END_TEST

/* ---- rejection: all the same MCPGW_EAUTH ---- */

/* _i is the position changed: first byte, every middle byte, last byte. */
START_TEST(test_any_changed_char_fails)
{
    char tok[TOKBUF], bad[TOKBUF];
    mcpgw_tokens *t;

    add_ok("ci", "*", tok);
    t = load_ok();
    ck_assert_int_eq(verify_str(t, tok), 0);

    memcpy(bad, tok, sizeof(bad));
    bad[_i] = neighbour(tok, _i);
    ck_assert_int_eq(verify_str(t, bad), MCPGW_EAUTH);
    /* and with the checksum made right again, so only the hash can say no */
    if (_i >= 6 && _i < 49) {
        fix_crc(bad);
        ck_assert_int_eq(verify_str(t, bad), MCPGW_EAUTH);
    }
    memcpy(bad, tok, sizeof(bad));
    bad[_i] = (char)(tok[_i] ^ 0x20);
    ck_assert_int_eq(verify_str(t, bad), MCPGW_EAUTH);
    mcpgw_tokens_free(t);
}
END_TEST

START_TEST(test_valid_crc_unknown_secret_fails)
{
    const char *other = "other.json";
    char tok[TOKBUF], foreign[TOKBUF], made[TOKBUF], otherpath[256];
    const char *scopes[] = { "*" };
    mcpgw_tokens *t;

    add_ok("ci", "*", tok);
    /* a real token from a different store */
    snprintf(otherpath, sizeof(otherpath), "%s/%s", dir, other);
    ck_assert_int_eq(mcpgw_tokens_add(otherpath, "ci", scopes, 1, 0, foreign, sizeof(foreign),
                                      err, sizeof(err)), 0);
    /* and one built by hand with a correct checksum */
    memcpy(made, tok, sizeof(made));
    memcpy(made + 6, "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ", 43);
    fix_crc(made);

    t = load_ok();
    ck_assert_int_eq(verify_str(t, foreign), MCPGW_EAUTH);
    ck_assert_int_eq(verify_str(t, made), MCPGW_EAUTH);
    ck_assert_int_eq(verify_str(t, VEC1), MCPGW_EAUTH);
    ck_assert_int_eq(verify_str(t, tok), 0);
    mcpgw_tokens_free(t);
}
END_TEST

START_TEST(test_malformed_tokens_fail)
{
    char tok[TOKBUF], b[TOKBUF + 8], hex[65];
    char text[512];
    struct mcpgw_token_info info;
    mcpgw_tokens *t;
    struct {
        const char *what;
        char s[TOKBUF + 8];
        size_t len;
    } rows[16];
    size_t n = 0;

    add_ok("ci", "*", tok);
    /* VEC2's CRC has letters, so an upper-case variant exists */
    sha256_hex(tok, hex);
    snprintf(text, sizeof(text),
             "{\"tokens\":[{\"name\":\"ci\",\"sha256\":\"%s\",\"scopes\":[\"*\"]},"
             "{\"name\":\"v2\",\"sha256\":\"" VEC2_SHA "\",\"scopes\":[\"*\"]}]}", hex);
    write_text(text);
    t = load_ok();
    ck_assert_int_eq(verify_str(t, tok), 0);
    ck_assert_int_eq(verify_str(t, VEC2), 0);

#define ROW(w, str, l) do { rows[n].what = (w); memcpy(rows[n].s, (str), (l)); rows[n].len = (l); n++; } while (0)
    ROW("empty", "", 0);
    ROW("scheme only", "Bearer", 6);
    ROW("short prefix", "mcpgw", 5);
    memcpy(b, tok, TOKEN_LEN);
    memcpy(b, "mcpgx_", 6);
    fix_crc(b);
    ROW("wrong prefix", b, TOKEN_LEN);
    memcpy(b, tok, TOKEN_LEN);
    memcpy(b, "MCPGW_", 6);
    fix_crc(b);
    ROW("upper-case prefix", b, TOKEN_LEN);
    ROW("short", tok, TOKEN_LEN - 1);
    memcpy(b, tok, TOKEN_LEN);
    b[TOKEN_LEN] = '0';
    ROW("long", b, TOKEN_LEN + 1);
    memcpy(b, tok, TOKEN_LEN);
    b[10] = '+';
    fix_crc(b);
    ROW("bad base64 char with good crc", b, TOKEN_LEN);
    memcpy(b, tok, TOKEN_LEN);
    b[48] = '=';
    fix_crc(b);
    ROW("padding char with good crc", b, TOKEN_LEN);
    memcpy(b, tok, TOKEN_LEN);
    b[57] = b[57] == '0' ? '1' : '0';
    ROW("bad crc", b, TOKEN_LEN);
    memcpy(b, tok, TOKEN_LEN);
    memcpy(b + 50, "zzzzzzzz", 8);
    ROW("crc not hex", b, TOKEN_LEN);
    ROW("upper-case crc", "mcpgw_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8_D5D4F7FD", TOKEN_LEN);
    ROW("wrong separator", "mcpgw_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8-d5d4f7fd", TOKEN_LEN);
    memcpy(b, tok, TOKEN_LEN);
    b[20] = '\0';
    ROW("embedded NUL", b, TOKEN_LEN);
    memcpy(b, tok, TOKEN_LEN);
    b[TOKEN_LEN] = '\0';
    ROW("trailing NUL counted in len", b, TOKEN_LEN + 1);
    b[0] = ' ';
    memcpy(b + 1, tok, TOKEN_LEN);
    ROW("leading space", b, TOKEN_LEN + 1);
#undef ROW

    for (size_t i = 0; i < n; i++)
        ck_assert_msg(mcpgw_tokens_verify(t, rows[i].s, rows[i].len, time(NULL), &info) == MCPGW_EAUTH,
                      "%s: accepted", rows[i].what);
    ck_assert_int_eq(mcpgw_tokens_verify(t, NULL, TOKEN_LEN, time(NULL), &info), MCPGW_EAUTH);
    ck_assert_ptr_null(info.name);
    mcpgw_tokens_free(t);
}
END_TEST

START_TEST(test_revoked_fails_the_same_way)
{
    char tok[TOKBUF], keep[TOKBUF];
    struct mcpgw_token_info info;
    mcpgw_tokens *t;

    add_ok("ci", "*", tok);
    add_ok("keep", "*", keep);
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "ci", err, sizeof(err)), 0);
    t = load_ok();
    ck_assert_int_eq(verify_str(t, tok), MCPGW_EAUTH);
    ck_assert_int_eq(verify_str(t, keep), 0);
    /* still listed, marked revoked */
    ck_assert_uint_eq(count(t), 2);
    ck_assert(mcpgw_tokens_get(t, 0, &info));
    ck_assert_str_eq(info.name, "ci");
    ck_assert(info.revoked);
    ck_assert(!mcpgw_token_allows(&info, "x", NULL));
    mcpgw_tokens_free(t);
}
END_TEST

START_TEST(test_expired_fails_the_same_way)
{
    const char *scopes[] = { "*" };
    char tok[TOKBUF];
    struct mcpgw_token_info info;
    time_t exp = time(NULL) + 100;
    mcpgw_tokens *t;

    ck_assert_int_eq(mcpgw_tokens_add(path, "ci", scopes, 1, exp, tok, sizeof(tok), err, sizeof(err)), 0);
    t = load_ok();
    ck_assert_int_eq(mcpgw_tokens_verify(t, tok, TOKEN_LEN, exp - 1, &info), 0);
    ck_assert_int_eq(info.expires, exp);
    ck_assert_int_eq(mcpgw_tokens_verify(t, tok, TOKEN_LEN, exp, &info), MCPGW_EAUTH);
    ck_assert_int_eq(mcpgw_tokens_verify(t, tok, TOKEN_LEN, exp + 86400, &info), MCPGW_EAUTH);
    mcpgw_tokens_free(t);
}
END_TEST

/* ---- writes ---- */

START_TEST(test_file_mode_is_0600_after_writes)
{
    char tok[TOKBUF], lock[256];

    umask(0);                   /* nothing taken away: we must not widen */
    add_ok("a", "*", tok);
    ck_assert_uint_eq(file_mode(path), 0600);
    snprintf(lock, sizeof(lock), "%s.lock", path);
    ck_assert_uint_eq(file_mode(lock), 0600);
    ck_assert_int_eq(chmod(path, 0400), 0);
    add_ok("b", "*", tok);
    ck_assert_uint_eq(file_mode(path), 0600);
    umask(0277);                /* would leave 0400 if we relied on open's mode */
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "a", err, sizeof(err)), 0);
    ck_assert_uint_eq(file_mode(path), 0600);
}
END_TEST

START_TEST(test_no_temp_file_left_behind)
{
    char tok[TOKBUF];
    DIR *dp;
    struct dirent *de;
    int n = 0;

    add_ok("a", "*", tok);
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "a", err, sizeof(err)), 0);
    dp = opendir(dir);
    ck_assert_ptr_nonnull(dp);
    while ((de = readdir(dp))) {
        if (de->d_name[0] == '.')
            continue;
        ck_assert_msg(strcmp(de->d_name, "tokens.json") == 0 || strcmp(de->d_name, "tokens.json.lock") == 0,
                      "stray file %s", de->d_name);
        n++;
    }
    closedir(dp);
    ck_assert_int_eq(n, 2);
}
END_TEST

static const mode_t writable_modes[] = { 0620, 0602, 0666, 0660 };

START_TEST(test_group_or_world_writable_file_refused)
{
    static char sentinel;
    char tok[TOKBUF], want[80];
    char *before, *after;
    mcpgw_tokens *t = (mcpgw_tokens *)(void *)&sentinel;    /* must be reset to NULL */
    const char *scopes[] = { "*" };

    add_ok("a", "*", tok);
    ck_assert_int_eq(chmod(path, writable_modes[_i]), 0);
    ck_assert_int_eq(mcpgw_tokens_load(path, &t, err, sizeof(err)), MCPGW_ECONFIG);
    ck_assert_ptr_null(t);
    snprintf(want, sizeof(want), "refusing a group- or world-writable file (mode %04o); run chmod 600",
             (unsigned)writable_modes[_i]);
    expect_msg(want);

    /* writers refuse it too and leave it exactly as it was */
    before = read_text(path);
    ck_assert_int_eq(mcpgw_tokens_add(path, "b", scopes, 1, 0, tok, sizeof(tok), err, sizeof(err)),
                     MCPGW_ECONFIG);
    expect_msg(want);
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "a", err, sizeof(err)), MCPGW_ECONFIG);
    after = read_text(path);
    ck_assert_str_eq(before, after);
    ck_assert_uint_eq(file_mode(path), writable_modes[_i]);
    free(before);
    free(after);
}
END_TEST

START_TEST(test_duplicate_add_is_eexist)
{
    const char *scopes[] = { "*" };
    char tok[TOKBUF], tok2[TOKBUF] = "unchanged";
    mcpgw_tokens *t;

    add_ok("ci", "*", tok);
    ck_assert_int_eq(mcpgw_tokens_add(path, "ci", scopes, 1, 0, tok2, sizeof(tok2), err, sizeof(err)),
                     MCPGW_EEXIST);
    expect_msg("token 'ci' already exists");
    ck_assert_str_eq(tok2, "");         /* no token handed out */
    t = load_ok();
    ck_assert_uint_eq(count(t), 1);
    ck_assert_int_eq(verify_str(t, tok), 0);
    mcpgw_tokens_free(t);
}
END_TEST

START_TEST(test_revoke_unknown_is_enotfound)
{
    char tok[TOKBUF];

    /* no file at all: nothing to revoke, and no file is created */
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "nobody", err, sizeof(err)), MCPGW_ENOTFOUND);
    expect_msg("no active token named 'nobody'");
    ck_assert(!file_exists(path));

    add_ok("ci", "*", tok);
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "nobody", err, sizeof(err)), MCPGW_ENOTFOUND);
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "ci", err, sizeof(err)), 0);
    /* already revoked counts as not found */
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "ci", err, sizeof(err)), MCPGW_ENOTFOUND);
    expect_msg("no active token named 'ci'");
}
END_TEST

START_TEST(test_add_after_revoke_replaces_entry)
{
    char old[TOKBUF], tok[TOKBUF], other[TOKBUF];
    struct mcpgw_token_info info;
    mcpgw_tokens *t;

    add_ok("first", "*", other);
    add_ok("ci", "a:b", old);
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "ci", err, sizeof(err)), 0);
    add_ok("ci", "c:d", tok);
    t = load_ok();
    ck_assert_uint_eq(count(t), 2);
    ck_assert(mcpgw_tokens_get(t, 1, &info));     /* took the old entry's place */
    ck_assert_str_eq(info.name, "ci");
    ck_assert(!info.revoked);
    ck_assert_str_eq(info.scopes[0], "c:d");
    ck_assert_int_eq(verify_str(t, old), MCPGW_EAUTH);
    ck_assert_int_eq(verify_str(t, tok), 0);
    ck_assert_int_eq(verify_str(t, other), 0);
    mcpgw_tokens_free(t);
}
END_TEST

START_TEST(test_add_drops_extra_revoked_entries_of_the_name)
{
    char tok[TOKBUF];
    struct mcpgw_token_info info;
    mcpgw_tokens *t;

    write_text("{\"tokens\":["
               "{\"name\":\"ci\",\"sha256\":\"" HASH_A "\",\"revoked\":true,\"scopes\":[\"*\"]},"
               "{\"name\":\"keep\",\"sha256\":\"" VEC1_SHA "\",\"scopes\":[\"*\"]},"
               "{\"name\":\"ci\",\"sha256\":\"" HASH_B "\",\"revoked\":true,\"scopes\":[\"*\"]}]}");
    add_ok("ci", "*", tok);
    t = load_ok();
    ck_assert_uint_eq(count(t), 2);
    ck_assert(mcpgw_tokens_get(t, 0, &info) && strcmp(info.name, "ci") == 0 && !info.revoked);
    ck_assert(mcpgw_tokens_get(t, 1, &info) && strcmp(info.name, "keep") == 0);
    ck_assert_int_eq(verify_str(t, tok), 0);
    ck_assert_int_eq(verify_str(t, VEC1), 0);
    mcpgw_tokens_free(t);
}
END_TEST

START_TEST(test_add_rejects_bad_arguments)
{
    static const char *const one[] = { "*" };
    static const char *const bad_scope[] = { "*", "memory" };
    static const char *many[MCPGW_TOKEN_SCOPES_MAX + 1];
    char name65[MCPGW_TOKEN_NAME_MAX + 2], name65_msg[160], tok[TOKBUF], lock[256];
    struct {
        const char *name;
        const char *const *scopes;
        size_t nscopes;
        time_t expires;
        size_t outlen;
        const char *msg;
    } rows[] = {
        { "", one, 1, 0, TOKBUF, "invalid name '': expected 1 to 64 of A-Za-z0-9_.@-" },
        { NULL, one, 1, 0, TOKBUF, "invalid name '': expected 1 to 64 of A-Za-z0-9_.@-" },
        { "a b", one, 1, 0, TOKBUF, "invalid name 'a b': expected 1 to 64 of A-Za-z0-9_.@-" },
        { "a/b", one, 1, 0, TOKBUF, "invalid name 'a/b': expected 1 to 64 of A-Za-z0-9_.@-" },
        { "x\n", one, 1, 0, TOKBUF, "invalid name 'x?': expected 1 to 64 of A-Za-z0-9_.@-" },
        { name65, one, 1, 0, TOKBUF, name65_msg },
        { VEC1, one, 1, 0, TOKBUF, "invalid name: that is a token, not a name" },
        { "ci", one, 0, 0, TOKBUF, "a token needs at least one scope" },
        { "ci", NULL, 1, 0, TOKBUF, "a token needs at least one scope" },
        { "ci", bad_scope, 2, 0, TOKBUF, "invalid scope 'memory'" },
        { "ci", many, MCPGW_TOKEN_SCOPES_MAX + 1, 0, TOKBUF, "more than 64 scopes" },
        { "ci", one, 1, 1, TOKBUF, "expiry time is in the past" },
        { "ci", one, 1, -5, TOKBUF, "expiry time is in the past" },
        { "ci", one, 1, 0, TOKEN_LEN, "token buffer too small" },
    };

    for (size_t i = 0; i <= MCPGW_TOKEN_SCOPES_MAX; i++)
        many[i] = "*";
    memset(name65, 'a', MCPGW_TOKEN_NAME_MAX + 1);
    name65[39] = '.';           /* keep it from looking like a secret */
    name65[MCPGW_TOKEN_NAME_MAX + 1] = '\0';
    /* echoed cut to 48 characters */
    snprintf(name65_msg, sizeof(name65_msg), "invalid name '%.48s...': expected 1 to 64 of A-Za-z0-9_.@-", name65);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int rc = mcpgw_tokens_add(path, rows[i].name, rows[i].scopes, rows[i].nscopes,
                                  rows[i].expires, tok, rows[i].outlen, err, sizeof(err));
        ck_assert_msg(rc == -EINVAL, "row %zu: rc %d", i, rc);
        ck_assert_msg(strcmp(err, rows[i].msg) == 0, "row %zu: '%s'", i, err);
    }
    /* arguments are checked before anything touches the disk */
    snprintf(lock, sizeof(lock), "%s.lock", path);
    ck_assert(!file_exists(path));
    ck_assert(!file_exists(lock));
    /* the same name rules for revoke */
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "a b", err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(mcpgw_tokens_revoke(path, VEC1, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "invalid name: that is a token, not a name");
}
END_TEST

START_TEST(test_missing_parent_directory_is_an_error)
{
    const char *scopes[] = { "*" };
    char tok[TOKBUF], p[256], want[400];
    mcpgw_tokens *t;

    snprintf(p, sizeof(p), "%s/nope/tokens.json", dir);
    ck_assert_int_eq(mcpgw_tokens_add(p, "ci", scopes, 1, 0, tok, sizeof(tok), err, sizeof(err)), -ENOENT);
    snprintf(want, sizeof(want), "%s.lock: cannot open: No such file or directory", p);
    ck_assert_str_eq(err, want);
    /* loading the same path is simply an empty store */
    ck_assert_int_eq(mcpgw_tokens_load(p, &t, err, sizeof(err)), 0);
    ck_assert_uint_eq(count(t), 0);
    mcpgw_tokens_free(t);
}
END_TEST

START_TEST(test_hand_written_minimal_entry_and_prefix_rules)
{
    mcpgw_tokens *t;
    struct mcpgw_token_info info;

    write_text("{\"tokens\":[{\"name\":\"a.b@c-d_e\",\"sha256\":\"" VEC1_SHA "\","
               "\"prefix\":\"mcpgw_AAAAAA\",\"created\":1764118923,\"expires\":0,"
               "\"revoked\":false,\"scopes\":[\"*:*\"]}]}\n\n");
    t = load_ok();
    ck_assert_int_eq(verify_str(t, VEC1), 0);
    ck_assert(mcpgw_tokens_get(t, 0, &info));
    ck_assert_str_eq(info.name, "a.b@c-d_e");
    ck_assert_str_eq(info.prefix, "mcpgw_AAAAAA");
    ck_assert_int_eq(info.created, 1764118923);
    mcpgw_tokens_free(t);
}
END_TEST

/* ---- loading ---- */

START_TEST(test_missing_or_empty_file_is_empty_store)
{
    mcpgw_tokens *t;
    struct mcpgw_token_info info;

    t = load_ok();
    ck_assert_uint_eq(count(t), 0);
    ck_assert_int_eq(verify_str(t, VEC1), MCPGW_EAUTH);
    ck_assert(!mcpgw_tokens_get(t, 0, &info));
    mcpgw_tokens_free(t);

    write_text("");
    t = load_ok();
    ck_assert_uint_eq(count(t), 0);
    mcpgw_tokens_free(t);

    write_text("{\"tokens\":[]}");
    t = load_ok();
    ck_assert_uint_eq(count(t), 0);
    mcpgw_tokens_free(t);
}
END_TEST

#define ENTRY(extra) "{\"name\":\"ci\",\"sha256\":\"" HASH_A "\",\"scopes\":[\"*\"]" extra "}"

static const struct bad_file {
    const char *text;
    size_t len;                 /* 0: strlen */
    const char *msg;            /* after "<path>: " */
    bool prefix_only;           /* json-c's own wording follows */
} bad_files[] = {
    { "[]", 0, "expected an object {\"tokens\":[...]}", false },
    { "\"tokens\"", 0, "expected an object {\"tokens\":[...]}", false },
    { "{}", 0, "tokens: missing", false },
    { "{\"tokens\":[],\"extra\":1}", 0, "extra: unknown key", false },
    { "{\"Tokens\":[]}", 0, "Tokens: unknown key", false },
    { "{\"tokens\":{}}", 0, "tokens: expected an array", false },
    { "{\"tokens\":null}", 0, "tokens: expected an array", false },
    { "{\"tokens\":[1]}", 0, "tokens[0]: expected an object", false },
    { "{\"tokens\":[" ENTRY(",\"bogus\":1") "]}", 0, "tokens[0].bogus: unknown key", false },
    { "{\"tokens\":[" ENTRY(",\"last_used\":0") "]}", 0, "tokens[0].last_used: unknown key", false },
    { "{\"tokens\":[{\"sha256\":\"" HASH_A "\",\"scopes\":[\"*\"]}]}", 0, "tokens[0].name: missing", false },
    { "{\"tokens\":[{\"name\":5,\"sha256\":\"" HASH_A "\",\"scopes\":[\"*\"]}]}", 0,
      "tokens[0].name: expected a string", false },
    { "{\"tokens\":[{\"name\":\"a b\",\"sha256\":\"" HASH_A "\",\"scopes\":[\"*\"]}]}", 0,
      "tokens[0].name: invalid name 'a b': expected 1 to 64 of A-Za-z0-9_.@-", false },
    { "{\"tokens\":[{\"name\":\"\",\"sha256\":\"" HASH_A "\",\"scopes\":[\"*\"]}]}", 0,
      "tokens[0].name: invalid name '': expected 1 to 64 of A-Za-z0-9_.@-", false },
    { "{\"tokens\":[{\"name\":\"a\\u0000b\",\"sha256\":\"" HASH_A "\",\"scopes\":[\"*\"]}]}", 0,
      "tokens[0].name: invalid name 'a?b': expected 1 to 64 of A-Za-z0-9_.@-", false },
    { "{\"tokens\":[{\"name\":\"ci\",\"scopes\":[\"*\"]}]}", 0, "tokens[0].sha256: missing", false },
    { "{\"tokens\":[{\"name\":\"ci\",\"sha256\":1,\"scopes\":[\"*\"]}]}", 0,
      "tokens[0].sha256: expected a string", false },
    { "{\"tokens\":[{\"name\":\"ci\",\"sha256\":\"" "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
      "\",\"scopes\":[\"*\"]}]}", 0, "tokens[0].sha256: expected 64 lowercase hex digits", false },
    { "{\"tokens\":[{\"name\":\"ci\",\"sha256\":\"" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "\",\"scopes\":[\"*\"]}]}", 0, "tokens[0].sha256: expected 64 lowercase hex digits", false },
    { "{\"tokens\":[{\"name\":\"ci\",\"sha256\":\"" "gaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "\",\"scopes\":[\"*\"]}]}", 0, "tokens[0].sha256: expected 64 lowercase hex digits", false },
    { "{\"tokens\":[{\"name\":\"ci\",\"sha256\":\"" VEC1 "\",\"scopes\":[\"*\"]}]}", 0,
      "tokens[0].sha256: expected 64 lowercase hex digits", false },
    { "{\"tokens\":[{\"name\":\"ci\",\"sha256\":\"" HASH_A "\"}]}", 0, "tokens[0].scopes: missing", false },
    { "{\"tokens\":[{\"name\":\"ci\",\"sha256\":\"" HASH_A "\",\"scopes\":\"*\"}]}", 0,
      "tokens[0].scopes: expected an array", false },
    { "{\"tokens\":[{\"name\":\"ci\",\"sha256\":\"" HASH_A "\",\"scopes\":[]}]}", 0,
      "tokens[0].scopes: expected 1 to 64 scopes", false },
    { "{\"tokens\":[{\"name\":\"ci\",\"sha256\":\"" HASH_A "\",\"scopes\":[\"memory\"]}]}", 0,
      "tokens[0].scopes[0]: invalid scope 'memory'", false },
    { "{\"tokens\":[{\"name\":\"ci\",\"sha256\":\"" HASH_A "\",\"scopes\":[\"*\",1]}]}", 0,
      "tokens[0].scopes[1]: expected a string", false },
    { "{\"tokens\":[" ENTRY(",\"created\":\"x\"") "]}", 0, "tokens[0].created: expected a non-negative integer", false },
    { "{\"tokens\":[" ENTRY(",\"created\":1.5") "]}", 0, "tokens[0].created: expected a non-negative integer", false },
    { "{\"tokens\":[" ENTRY(",\"expires\":-1") "]}", 0, "tokens[0].expires: expected a non-negative integer", false },
    { "{\"tokens\":[" ENTRY(",\"expires\":null") "]}", 0, "tokens[0].expires: expected a non-negative integer", false },
    { "{\"tokens\":[" ENTRY(",\"expires\":NaN") "]}", 0, "tokens[0].expires: expected a non-negative integer", false },
    { "{\"tokens\":[" ENTRY(",\"expires\":1e400") "]}", 0, "tokens[0].expires: expected a non-negative integer", false },
    { "{\"tokens\":[" ENTRY(",\"created\":99999999999999999999") "]}", 0,
      "tokens[0].created: expected a non-negative integer", false },
    { "{\"tokens\":[" ENTRY(",\"created\":9223372036854775808") "]}", 0,
      "tokens[0].created: expected a non-negative integer", false },
    { "{\"tokens\":[{\"name\":null,\"sha256\":\"" HASH_A "\",\"scopes\":[\"*\"]}]}", 0,
      "tokens[0].name: expected a string", false },
    { "{\"tokens\":[" ENTRY(",\"revoked\":null") "]}", 0, "tokens[0].revoked: expected true or false", false },
    { "{\"tokens\":[" ENTRY(",\"revoked\":\"no\"") "]}", 0, "tokens[0].revoked: expected true or false", false },
    { "{\"tokens\":[" ENTRY(",\"revoked\":0") "]}", 0, "tokens[0].revoked: expected true or false", false },
    { "{\"tokens\":[" ENTRY(",\"prefix\":\"mcpgw_AbCdEfG\"") "]}", 0,
      "tokens[0].prefix: expected at most 12 of A-Za-z0-9_-", false },
    { "{\"tokens\":[" ENTRY(",\"prefix\":\"a b\"") "]}", 0, "tokens[0].prefix: expected at most 12 of A-Za-z0-9_-", false },
    { "{\"tokens\":[" ENTRY(",\"prefix\":7") "]}", 0, "tokens[0].prefix: expected a string", false },
    /* the example from the design notes, entry 2 */
    { "{\"tokens\":["
      "{\"name\":\"a\",\"sha256\":\"" HASH_A "\",\"scopes\":[\"*\"]},"
      "{\"name\":\"b\",\"sha256\":\"" HASH_B "\",\"scopes\":[\"x:y\"]},"
      "{\"name\":\"c\",\"sha256\":\"" VEC1_SHA "\",\"scopes\":[\"memory\"]}]}", 0,
      "tokens[2].scopes[0]: invalid scope 'memory'", false },
    { "{\"tokens\":["
      "{\"name\":\"a\",\"sha256\":\"" HASH_A "\",\"scopes\":[\"*\"]},"
      "{\"name\":\"b\",\"sha256\":\"" HASH_A "\",\"revoked\":true,\"scopes\":[\"*\"]}]}", 0,
      "tokens[1].sha256: same hash as tokens[0]", false },
    { "{\"tokens\":["
      "{\"name\":\"ci\",\"sha256\":\"" HASH_A "\",\"scopes\":[\"*\"]},"
      "{\"name\":\"x\",\"sha256\":\"" VEC1_SHA "\",\"scopes\":[\"*\"]},"
      "{\"name\":\"ci\",\"sha256\":\"" HASH_B "\",\"scopes\":[\"*\"]}]}", 0,
      "tokens[2].name: another active token is named 'ci'", false },
    { "{\"tokens\":[]} x", 0, "invalid JSON at byte 14: ", true },
    { "{\"tokens\":[]}{}", 0, "invalid JSON at byte 13: ", true },
    { "{\"tokens\":[", 0, "invalid JSON: unexpected end of file", false },
    { "   ", 0, "invalid JSON: unexpected end of file", false },
    { "{\"tokens\":[]\0}", 14, "contains a NUL byte", false },
    { "{\"tokens\":[],}", 0, "invalid JSON at byte ", true },
    { "{/* c */\"tokens\":[]}", 0, "invalid JSON at byte 1: ", true },
    { "{\"tokens\":[" ENTRY(",\"created\":01") "]}", 0, "invalid JSON at byte ", true },
    { "{\"tokens\":[{\"name\":\"\xc3\x28\",\"sha256\":\"" HASH_A "\",\"scopes\":[\"*\"]}]}", 0,
      "invalid JSON at byte ", true },
};

START_TEST(test_bad_token_files)
{
    static char sentinel;
    const struct bad_file *b = &bad_files[_i];
    mcpgw_tokens *t = (mcpgw_tokens *)(void *)&sentinel;
    char want[1024];

    write_file(path, b->text, b->len ? b->len : strlen(b->text), 0600);
    ck_assert_int_eq(mcpgw_tokens_load(path, &t, err, sizeof(err)), MCPGW_ECONFIG);
    ck_assert_ptr_null(t);
    snprintf(want, sizeof(want), "%s: %s", path, b->msg);
    if (b->prefix_only)
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "got '%s'", err);
    else
        ck_assert_str_eq(err, want);
    ck_assert_ptr_null(strchr(err, '\n'));
    ck_assert_ptr_null(strstr(err, HASH_A));
    ck_assert_ptr_null(strstr(err, VEC1));
}
END_TEST

START_TEST(test_file_size_cap)
{
    const char *obj = "{\"tokens\":[]}";
    size_t n = MCPGW_TOKEN_FILE_BYTES_MAX;
    char *big = malloc(n + 2);
    mcpgw_tokens *t;
    char want[128];

    ck_assert_ptr_nonnull(big);
    /* exactly at the cap: fine */
    memset(big, ' ', n + 1);
    memcpy(big, obj, strlen(obj));
    write_file(path, big, n, 0600);
    t = load_ok();
    mcpgw_tokens_free(t);
    /* one byte more: refused before parsing */
    write_file(path, big, n + 1, 0600);
    ck_assert_int_eq(mcpgw_tokens_load(path, &t, err, sizeof(err)), MCPGW_ECONFIG);
    snprintf(want, sizeof(want), "larger than %u bytes", MCPGW_TOKEN_FILE_BYTES_MAX);
    expect_msg(want);
    free(big);
}
END_TEST

/* A file of n hand-made entries with distinct hashes. */
static void write_many(size_t n)
{
    size_t cap = 64 + n * 160, len = 0;
    char *s = malloc(cap);

    ck_assert_ptr_nonnull(s);
    len += (size_t)snprintf(s + len, cap - len, "{\"tokens\":[");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len,
                                "%s{\"name\":\"t%zu\",\"sha256\":\"%064zx\",\"scopes\":[\"*\"]}",
                                i ? "," : "", i, i + 1);
    len += (size_t)snprintf(s + len, cap - len, "]}");
    ck_assert_uint_lt(len, cap);
    write_file(path, s, len, 0600);
    free(s);
}

START_TEST(test_token_count_cap)
{
    const char *scopes[] = { "*" };
    char tok[TOKBUF], want[128];
    mcpgw_tokens *t;

    write_many(MCPGW_TOKENS_MAX);
    t = load_ok();
    ck_assert_uint_eq(count(t), MCPGW_TOKENS_MAX);
    mcpgw_tokens_free(t);
    ck_assert_int_eq(mcpgw_tokens_add(path, "one-more", scopes, 1, 0, tok, sizeof(tok), err, sizeof(err)),
                     MCPGW_ETOOBIG);
    snprintf(want, sizeof(want), "already holds %d tokens", MCPGW_TOKENS_MAX);
    expect_msg(want);
    /* replacing a revoked name does not grow the file, so it is allowed */
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "t7", err, sizeof(err)), 0);
    add_ok("t7", "*", tok);

    write_many(MCPGW_TOKENS_MAX + 1);
    ck_assert_int_eq(mcpgw_tokens_load(path, &t, err, sizeof(err)), MCPGW_ECONFIG);
    snprintf(want, sizeof(want), "tokens: more than %d tokens", MCPGW_TOKENS_MAX);
    expect_msg(want);
}
END_TEST

START_TEST(test_not_a_regular_file)
{
    mcpgw_tokens *t;

    ck_assert_int_eq(mkdir(path, 0700), 0);
    ck_assert_int_eq(mcpgw_tokens_load(path, &t, err, sizeof(err)), MCPGW_ECONFIG);
    expect_msg("not a regular file");
}
END_TEST

START_TEST(test_open_failure_reports_errno)
{
    mcpgw_tokens *t;
    char p[256], want[320];

    /* a path through a regular file: fails the same way for root */
    write_text("{\"tokens\":[]}");
    snprintf(p, sizeof(p), "%s/x.json", path);
    ck_assert_int_eq(mcpgw_tokens_load(p, &t, err, sizeof(err)), -ENOTDIR);
    snprintf(want, sizeof(want), "%s: cannot open: Not a directory", p);
    ck_assert_str_eq(err, want);
}
END_TEST

/* ---- scopes and headers ---- */

static const char *const sc_mixed[] = { "memory:*", "everything:echo", NULL };
static const char *const sc_all[] = { "*", NULL };
static const char *const sc_all_echo[] = { "*:echo", NULL };
static const char *const sc_star_star[] = { "*:*", NULL };

static const struct {
    const char *const *scopes;
    const char *server, *tool;
    bool allowed;
} allow_rows[] = {
    { sc_mixed, "memory", "read_graph", true },
    { sc_mixed, "memory", "create_entities", true },
    { sc_mixed, "memory", NULL, true },
    { sc_mixed, "everything", "echo", true },
    { sc_mixed, "everything", NULL, true },
    { sc_mixed, "everything", "add", false },
    { sc_mixed, "everything", "Echo", false },
    { sc_mixed, "everything", "echo2", false },
    { sc_mixed, "everything", "ech", false },
    { sc_mixed, "Memory", "read_graph", false },
    { sc_mixed, "memoryx", "read_graph", false },
    { sc_mixed, "memor", NULL, false },
    { sc_mixed, "other", NULL, false },
    { sc_mixed, "other", "echo", false },
    { sc_mixed, "", NULL, false },
    { sc_mixed, "memory", "", false },
    { sc_mixed, NULL, "echo", false },
    { sc_all, "memory", "read_graph", true },
    { sc_all, "anything", NULL, true },
    { sc_star_star, "anything", "x", true },
    { sc_star_star, "anything", NULL, true },
    { sc_all_echo, "a", "echo", true },
    { sc_all_echo, "b", "echo", true },
    { sc_all_echo, "a", "add", false },
    { sc_all_echo, "a", NULL, true },
};

START_TEST(test_scope_matching)
{
    struct mcpgw_token_info info;
    size_t n = 0;

    memset(&info, 0, sizeof(info));
    info.name = "t";
    info.scopes = allow_rows[_i].scopes;
    while (info.scopes[n])
        n++;
    info.nscopes = n;
    ck_assert_msg(mcpgw_token_allows(&info, allow_rows[_i].server, allow_rows[_i].tool) == allow_rows[_i].allowed,
                  "%s on %s:%s", info.scopes[0], allow_rows[_i].server ? allow_rows[_i].server : "(null)",
                  allow_rows[_i].tool ? allow_rows[_i].tool : "(null)");
    ck_assert(!mcpgw_token_allows(NULL, "memory", NULL));
}
END_TEST

START_TEST(test_scope_syntax)
{
    char server64[80], server65[80], tool128[160], tool129[160];
    const char *valid[] = { "*", "*:*", "memory:*", "*:echo", "everything:echo",
                            "a.b-c_d:e.f-g_h", "A9:Z0", server64, tool128 };
    const char *invalid[] = { "", "memory", ":", "memory:", ":tool", "*:", ":*", "a b:c",
                              "mem:to ol", "mem:a:b", "**:x", "x:**", "*x:y", "x:e*", "server/1:tool",
                              "mem:tool\n", "mem:t\xc3\xb6l", "mem@x:y", " *", "* ", "*:*:*",
                              server65, tool129 };

    memset(server64, 'a', 64);
    snprintf(server64 + 64, sizeof(server64) - 64, ":x");
    memset(server65, 'a', 65);
    snprintf(server65 + 65, sizeof(server65) - 65, ":x");
    snprintf(tool128, sizeof(tool128), "x:");
    memset(tool128 + 2, 't', 128);
    tool128[130] = '\0';
    snprintf(tool129, sizeof(tool129), "x:");
    memset(tool129 + 2, 't', 129);
    tool129[131] = '\0';
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        ck_assert_msg(mcpgw_token_scope_valid(valid[i]), "'%s' refused", valid[i]);
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
        ck_assert_msg(!mcpgw_token_scope_valid(invalid[i]), "'%s' accepted", invalid[i]);
    ck_assert(!mcpgw_token_scope_valid(NULL));
}
END_TEST

static const struct {
    const char *value;
    const char *token;          /* NULL: no token */
} header_rows[] = {
    { "Bearer abc", "abc" },
    { "bearer abc", "abc" },
    { "BEARER abc", "abc" },
    { "BeArEr abc", "abc" },
    { "Bearer     abc", "abc" },
    { "Bearer abc   ", "abc" },
    { "Bearer abc \t\r\n", "abc" },
    { "  Bearer abc", "abc" },
    { "Bearer " VEC1, VEC1 },
    { "Bearer a.b-c_d~e+f/g==", "a.b-c_d~e+f/g==" },
    { "Bearer", NULL },
    { "Bearer ", NULL },
    { "Bearer     ", NULL },
    { "Bearer \t", NULL },
    { "Bearerabc", NULL },
    { "Bearer\tabc", NULL },
    { "Bearer a b", NULL },
    { "Bearer a\x01", NULL },
    { "Basic YWxhZGRpbjpvcGVuc2VzYW1l", NULL },
    { "Token abc", NULL },
    { "Bear abc", NULL },
    { "abc", NULL },
    { "", NULL },
};

START_TEST(test_header_parsing)
{
    size_t len = 99;
    const char *p = mcpgw_token_from_header(header_rows[_i].value, &len);

    if (!header_rows[_i].token) {
        ck_assert_msg(p == NULL, "'%s' gave a token", header_rows[_i].value);
        ck_assert_uint_eq(len, 0);
        return;
    }
    ck_assert_msg(p != NULL, "'%s' gave no token", header_rows[_i].value);
    ck_assert_uint_eq(len, strlen(header_rows[_i].token));
    ck_assert_mem_eq(p, header_rows[_i].token, len);
    /* a pointer into the value, not a copy */
    ck_assert(p >= header_rows[_i].value && p < header_rows[_i].value + strlen(header_rows[_i].value));
}
END_TEST

START_TEST(test_header_null_inputs)
{
    size_t len = 5;

    ck_assert_ptr_null(mcpgw_token_from_header(NULL, &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_null(mcpgw_token_from_header("Bearer abc", NULL));
}
END_TEST

START_TEST(test_null_safety)
{
    struct mcpgw_token_info info;

    mcpgw_tokens_free(NULL);
    ck_assert_int_eq(mcpgw_tokens_verify(NULL, VEC1, TOKEN_LEN, time(NULL), &info), MCPGW_EAUTH);
    ck_assert(!mcpgw_tokens_get(NULL, 0, &info));
    ck_assert_int_eq(mcpgw_tokens_load(path, NULL, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(mcpgw_tokens_revoke(NULL, "x", err, sizeof(err)), -EINVAL);
    /* no room for a message is fine too */
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "x", NULL, 0), MCPGW_ENOTFOUND);
}
END_TEST

/* ---- concurrency ---- */

#define PROCS 8
#define PER_PROC 10

START_TEST(test_concurrent_adds_lose_nothing)
{
    int gate[2];
    pid_t pids[PROCS];
    mcpgw_tokens *t;
    struct mcpgw_token_info info;
    char name[32], outp[256];

    ck_assert_int_eq(pipe(gate), 0);
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        ck_assert_int_ne(pids[p], -1);
        if (pids[p] == 0) {
            const char *scopes[] = { "*" };
            char tok[TOKBUF], e[512], c;
            FILE *f;

            close(gate[1]);
            /* everyone starts when the parent closes the gate */
            if (read(gate[0], &c, 1) != 0)
                _exit(2);
            snprintf(outp, sizeof(outp), "%s/out.%d", dir, p);
            f = fopen(outp, "w");
            if (!f)
                _exit(3);
            for (int k = 0; k < PER_PROC; k++) {
                snprintf(name, sizeof(name), "p%d-%d", p, k);
                if (mcpgw_tokens_add(path, name, scopes, 1, 0, tok, sizeof(tok), e, sizeof(e)) != 0)
                    _exit(4);
                fprintf(f, "%s %s\n", name, tok);
            }
            _exit(fclose(f) == 0 ? 0 : 5);
        }
    }
    close(gate[0]);
    close(gate[1]);
    for (int p = 0; p < PROCS; p++) {
        int status;
        ck_assert_int_eq(waitpid(pids[p], &status, 0), pids[p]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: status %d", p, status);
    }

    t = load_ok();
    ck_assert_uint_eq(count(t), PROCS * PER_PROC);
    for (int p = 0; p < PROCS; p++) {
        FILE *f;
        char tok[TOKBUF];

        snprintf(outp, sizeof(outp), "%s/out.%d", dir, p);
        f = fopen(outp, "r");
        ck_assert_ptr_nonnull(f);
        for (int k = 0; k < PER_PROC; k++) {
            char want[32];
            ck_assert_int_eq(fscanf(f, "%31s %63s", name, tok), 2);
            snprintf(want, sizeof(want), "p%d-%d", p, k);
            ck_assert_str_eq(name, want);
            ck_assert_int_eq(mcpgw_tokens_verify(t, tok, strlen(tok), time(NULL), &info), 0);
            ck_assert_str_eq(info.name, want);
        }
        fclose(f);
    }
    mcpgw_tokens_free(t);
}
END_TEST

#define THREADS 4

struct verify_job {
    const mcpgw_tokens *t;
    const char *good[3];
    const char *bad;
    int iterations;
    int failures;
};

static void *verify_thread(void *arg)
{
    struct verify_job *j = arg;
    struct mcpgw_token_info info;

    for (int i = 0; i < j->iterations; i++) {
        for (int k = 0; k < 3; k++)
            if (mcpgw_tokens_verify(j->t, j->good[k], TOKEN_LEN, time(NULL), &info) != 0 ||
                !mcpgw_token_allows(&info, "memory", "read"))
                j->failures++;
        if (mcpgw_tokens_verify(j->t, j->bad, TOKEN_LEN, time(NULL), &info) != MCPGW_EAUTH)
            j->failures++;
    }
    return NULL;
}

START_TEST(test_store_shared_by_threads)
{
    char a[TOKBUF], b[TOKBUF], c[TOKBUF];
    struct verify_job jobs[THREADS];
    pthread_t th[THREADS];
    mcpgw_tokens *t;

    add_ok("a", "*", a);
    add_ok("b", "memory:*", b);
    add_ok("c", "memory:read", c);
    t = load_ok();
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (struct verify_job){ t, { a, b, c }, VEC1, 300, 0 };
        ck_assert_int_eq(pthread_create(&th[i], NULL, verify_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_int_eq(jobs[i].failures, 0);
    }
    mcpgw_tokens_free(t);
}
END_TEST

/* ---- the canary: a token never shows up where it should not ---- */

struct sink_buf {
    char text[16384];
    size_t len;
};

static void collect(void *ud, int level, const char *line, size_t len)
{
    struct sink_buf *s = ud;

    if (s->len + len + 1 < sizeof(s->text)) {
        memcpy(s->text + s->len, line, len);
        s->len += len;
        s->text[s->len++] = '\n';
        s->text[s->len] = '\0';
    }
}

static void absent(const char *hay, const char *tok, const char *where)
{
    char secret[44];

    memcpy(secret, tok + 6, 43);
    secret[43] = '\0';
    ck_assert_msg(strstr(hay, tok) == NULL, "token found in %s", where);
    ck_assert_msg(strstr(hay, secret) == NULL, "token secret found in %s", where);
}

START_TEST(test_canary_never_leaks)
{
    static struct sink_buf logs, msgs;
    const char *scopes[] = { "*" };
    char tok[TOKBUF], other[TOKBUF], scratch[TOKBUF], hex[65], bad[1024], brokenpath[256], lock[256];
    mcpgw_tokens *t;
    char *text;
    struct mcpgw_token_info info;
    const char *broken[] = {
        "{\"tokens\":[],\"@@\":1}",
        "{\"tokens\":[{\"name\":\"ci\",\"sha256\":\"" HASH_A "\",\"scopes\":[\"*\"],\"@@\":1}]}",
        "{\"tokens\":[{\"name\":\"@@!\",\"sha256\":\"" HASH_A "\",\"scopes\":[\"*\"]}]}",
        "{\"tokens\":[{\"name\":\"ci\",\"sha256\":\"@@\",\"scopes\":[\"*\"]}]}",
        "{\"tokens\":[{\"name\":\"ci\",\"sha256\":\"" HASH_A "\",\"scopes\":[\"@@\"]}]}",
        "{\"tokens\":[{\"name\":\"ci\",\"sha256\":\"" HASH_A "\",\"scopes\":[\"x:@@!\"]}]}",
        "{\"tokens\":[{\"name\":\"ci\",\"sha256\":\"" HASH_A "\",\"prefix\":\"@@\",\"scopes\":[\"*\"]}]}",
        "{\"tokens\":[{\"name\":\"@@\",\"sha256\":\"" HASH_A "\",\"scopes\":[\"*\"]},"
        "{\"name\":\"@@\",\"sha256\":\"" HASH_B "\",\"scopes\":[\"*\"]}]}",
        "{\"tokens\":[\"@@\"",
    };

#define KEEP_MSG() do { snprintf(msgs.text + msgs.len, sizeof(msgs.text) - msgs.len, "%s\n", err); \
                        msgs.len += strlen(msgs.text + msgs.len); } while (0)
    memset(&logs, 0, sizeof(logs));
    memset(&msgs, 0, sizeof(msgs));
    mcpgw_log_set_level(MCPGW_LOG_DEBUG);
    mcpgw_log_set_sink(collect, &logs);

    add_ok("canary", "*", tok);
    add_ok("other", "*", other);
    ck_assert_int_eq(mcpgw_tokens_add(path, "canary", scopes, 1, 0, scratch, sizeof(scratch), err, sizeof(err)),
                     MCPGW_EEXIST);
    KEEP_MSG();
    ck_assert_int_eq(mcpgw_tokens_add(path, tok, scopes, 1, 0, scratch, sizeof(scratch), err, sizeof(err)), -EINVAL);
    KEEP_MSG();
    ck_assert_int_eq(mcpgw_tokens_revoke(path, tok, err, sizeof(err)), -EINVAL);
    KEEP_MSG();
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "canary", err, sizeof(err)), 0);
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "canary", err, sizeof(err)), MCPGW_ENOTFOUND);
    KEEP_MSG();

    /* broken files that carry the token in every field we might echo */
    snprintf(brokenpath, sizeof(brokenpath), "%s/broken.json", dir);
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        subst(bad, sizeof(bad), broken[i], tok);
        write_file(brokenpath, bad, strlen(bad), 0600);
        ck_assert_int_eq(mcpgw_tokens_load(brokenpath, &t, err, sizeof(err)), MCPGW_ECONFIG);
        absent(err, tok, bad);
        KEEP_MSG();
    }
    absent(msgs.text, tok, "error messages");
    absent(msgs.text, other, "error messages");
    ck_assert_ptr_nonnull(strstr(msgs.text, "<redacted>"));

    /* the log saw the events, by name only */
    ck_assert_ptr_nonnull(strstr(logs.text, "added token 'canary'"));
    ck_assert_ptr_nonnull(strstr(logs.text, "revoked token 'canary'"));
    absent(logs.text, tok, "log lines");

    /* the file has the hash and the 12-char prefix, nothing more */
    sha256_hex(tok, hex);
    text = read_text(path);
    absent(text, tok, "token file");
    ck_assert_ptr_nonnull(strstr(text, hex));
    free(text);
    snprintf(lock, sizeof(lock), "%s.lock", path);
    ck_assert_int_eq(file_mode(lock), 0600);
    text = read_text(lock);
    absent(text, tok, "lock file");
    free(text);

    /* what a listing shows */
    t = load_ok();
    for (size_t i = 0; mcpgw_tokens_get(t, i, &info); i++) {
        ck_assert_uint_le(strlen(info.prefix), 12);
        absent(info.name, tok, "names");
    }
    mcpgw_tokens_free(t);
#undef KEEP_MSG
}
END_TEST

static Suite *token_suite(void)
{
    Suite *s = suite_create("token");
    TCase *tc;

    tc = tcase_create("format");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_crc32_helper_is_zlib);
    tcase_add_test(tc, test_externally_made_token_verifies);
    tcase_add_test(tc, test_add_then_load_then_verify);
    tcase_add_test(tc, test_file_holds_hash_prefix_and_fields);
    tcase_add_test(tc, test_listing_keeps_file_order);
    suite_add_tcase(s, tc);

    tc = tcase_create("reject");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_any_changed_char_fails, 0, TOKEN_LEN);
    tcase_add_test(tc, test_valid_crc_unknown_secret_fails);
    tcase_add_test(tc, test_malformed_tokens_fail);
    tcase_add_test(tc, test_revoked_fails_the_same_way);
    tcase_add_test(tc, test_expired_fails_the_same_way);
    suite_add_tcase(s, tc);

    tc = tcase_create("write");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_file_mode_is_0600_after_writes);
    tcase_add_test(tc, test_no_temp_file_left_behind);
    tcase_add_loop_test(tc, test_group_or_world_writable_file_refused, 0,
                        sizeof(writable_modes) / sizeof(writable_modes[0]));
    tcase_add_test(tc, test_duplicate_add_is_eexist);
    tcase_add_test(tc, test_revoke_unknown_is_enotfound);
    tcase_add_test(tc, test_add_after_revoke_replaces_entry);
    tcase_add_test(tc, test_add_drops_extra_revoked_entries_of_the_name);
    tcase_add_test(tc, test_add_rejects_bad_arguments);
    tcase_add_test(tc, test_missing_parent_directory_is_an_error);
    tcase_add_test(tc, test_hand_written_minimal_entry_and_prefix_rules);
    suite_add_tcase(s, tc);

    tc = tcase_create("load");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_missing_or_empty_file_is_empty_store);
    tcase_add_loop_test(tc, test_bad_token_files, 0, sizeof(bad_files) / sizeof(bad_files[0]));
    tcase_add_test(tc, test_file_size_cap);
    tcase_add_test(tc, test_token_count_cap);
    tcase_add_test(tc, test_not_a_regular_file);
    tcase_add_test(tc, test_open_failure_reports_errno);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("scope");
    tcase_add_loop_test(tc, test_scope_matching, 0, sizeof(allow_rows) / sizeof(allow_rows[0]));
    tcase_add_test(tc, test_scope_syntax);
    tcase_add_loop_test(tc, test_header_parsing, 0, sizeof(header_rows) / sizeof(header_rows[0]));
    tcase_add_test(tc, test_header_null_inputs);
    suite_add_tcase(s, tc);

    tc = tcase_create("safety");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_null_safety);
    tcase_add_test(tc, test_concurrent_adds_lose_nothing);
    tcase_add_test(tc, test_store_shared_by_threads);
    tcase_add_test(tc, test_canary_never_leaks);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(token_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

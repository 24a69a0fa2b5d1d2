/* ticket.c - single-use browser tickets as files under <stateDir>/tickets.
 *
 * A ticket file is named by the hex SHA-256 of the ticket and holds
 *   {"name":"ci","scopes":["memory:*"],"expires":1764118983}
 * Its mtime is set to the expiry time, so the sweep on issue needs a stat,
 * not a read, per file.  Files are written to a temporary name and renamed,
 * so a redeemer never sees half a ticket.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "buf.h"
#include "err.h"
#include "limits.h"
#include "ticket.h"

#define TAG "mcpgwt_"
#define TAG_LEN 7
#define SECRET_BYTES 32
#define HASH_HEX 64
#define FILE_MAX 16384              /* name + 64 scopes of <= 200 bytes fits */

static bool shape_ok(const char *t, size_t len)
{
    if (len != MCPGW_TICKET_LEN || memcmp(t, TAG, TAG_LEN) != 0)
        return false;
    for (size_t i = TAG_LEN; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* <stateDir>/tickets[/<sha256 hex of ticket>] into out. */
static int ticket_path(const struct mcpgw_conf *conf, const char *ticket, size_t len,
                       char *out, size_t outlen)
{
    unsigned char h[32];
    unsigned hl = 0;
    char hex[HASH_HEX + 1];
    int n;

    if (!ticket) {
        n = snprintf(out, outlen, "%s/tickets", conf->state_dir);
        return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
    }
    if (EVP_Digest(ticket, len, h, &hl, EVP_sha256(), NULL) != 1 || hl != sizeof(h))
        return -EIO;
    for (size_t i = 0; i < sizeof(h); i++)
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    n = snprintf(out, outlen, "%s/tickets/%s", conf->state_dir, hex);
    return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

static bool hex_name(const char *s)
{
    size_t i;

    for (i = 0; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == HASH_HEX;
}

/* Remove expired ticket files (mtime = expiry) and stale temporaries. */
static void sweep(const char *dir, time_t now)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d))) {
        struct stat st;
        bool tmp = strncmp(de->d_name, ".tmp.", 5) == 0;

        if (!tmp && !hex_name(de->d_name))
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        /* A temporary older than the longest TTL is a crashed writer's. */
        if ((!tmp && st.st_mtime <= now) ||
            (tmp && st.st_ctime + MCPGW_TICKET_TTL_MAX / 1000 < now))
            unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

static int mkdirs(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);

    if (n >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int mcpgw_ticket_issue(const struct mcpgw_conf *conf, const struct mcpgw_token_info *who,
                       char *out, size_t outlen, char *err, size_t errlen)
{
    unsigned char secret[SECRET_BYTES];
    char ticket[MCPGW_TICKET_LEN + 1], dir[4096], path[4200], tmp[4200];
    struct mcpgw_buf b;
    struct timespec times[2];
    struct timespec ts;
    time_t now, expires;
    int fd = -1, rc;

    clock_gettime(CLOCK_REALTIME, &ts);
    now = ts.tv_sec;
    mcpgw_buf_init(&b, FILE_MAX);
    if (!conf || !who || !who->name || !out || outlen <= MCPGW_TICKET_LEN) {
        mcpgw_errmsg(err, errlen, "invalid arguments");
        rc = -EINVAL;
        goto out;
    }
    /* Whole seconds on disk, and valid while expires > time(NULL): round
     * the exact expiry up, so a ticket lives at least its TTL.  Counting
     * from the second it was issued in could leave it a few ms. */
    expires = (time_t)(((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
                        conf->ticket_ttl_ms + 999) / 1000);
    if (RAND_bytes(secret, sizeof(secret)) != 1) {
        mcpgw_errmsg(err, errlen, "cannot get random bytes");
        rc = -EIO;
        goto out;
    }
    memcpy(ticket, TAG, TAG_LEN);
    ticket[TAG_LEN + mcpgw__b64url_encode(secret, sizeof(secret), ticket + TAG_LEN)] = '\0';
    OPENSSL_cleanse(secret, sizeof(secret));
    if ((rc = ticket_path(conf, NULL, 0, dir, sizeof(dir))) < 0 ||
        (rc = ticket_path(conf, ticket, MCPGW_TICKET_LEN, path, sizeof(path))) < 0) {
        mcpgw_errmsg(err, errlen, "ticket directory path too long");
        goto out;
    }
    if ((rc = mkdirs(dir)) < 0) {
        mcpgw_errmsg(err, errlen, "cannot create '%s': %s", dir, strerror(-rc));
        goto out;
    }
    sweep(dir, now);
    rc = mcpgw_buf_adds(&b, "{\"name\":");
    if (rc == 0)
        rc = mcpgw_buf_add_json_str(&b, who->name, strlen(who->name));
    if (rc == 0)
        rc = mcpgw_buf_adds(&b, ",\"scopes\":[");
    for (size_t i = 0; rc == 0 && i < who->nscopes && who->scopes && who->scopes[i]; i++) {
        if (i)
            rc = mcpgw_buf_addc(&b, ',');
        if (rc == 0)
            rc = mcpgw_buf_add_json_str(&b, who->scopes[i], strlen(who->scopes[i]));
    }
    if (rc == 0)
        rc = mcpgw_buf_printf(&b, "],\"expires\":%lld}\n", (long long)expires);
    if (rc < 0) {
        mcpgw_errmsg(err, errlen, "ticket too large");
        goto out;
    }
    snprintf(tmp, sizeof(tmp), "%s/.tmp.%.16s", dir, path + strlen(dir) + 1);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = -errno;
        mcpgw_errmsg(err, errlen, "cannot create a ticket in '%s': %s", dir, strerror(errno));
        goto out;
    }
    times[0].tv_sec = times[1].tv_sec = expires;
    times[0].tv_nsec = times[1].tv_nsec = 0;
    if ((rc = write_all(fd, b.ptr, b.len)) < 0 || (futimens(fd, times) < 0 && (rc = -errno)) ||
        (close(fd) < 0 && (rc = -errno))) {
        if (fd >= 0)
            close(fd);
        fd = -1;
        unlink(tmp);
        mcpgw_errmsg(err, errlen, "cannot write a ticket in '%s': %s", dir, strerror(-rc));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        rc = -errno;
        unlink(tmp);
        mcpgw_errmsg(err, errlen, "cannot store a ticket in '%s': %s", dir, strerror(-rc));
        goto out;
    }
    memcpy(out, ticket, MCPGW_TICKET_LEN + 1);
    rc = 0;
out:
    OPENSSL_cleanse(ticket, sizeof(ticket));
    mcpgw_buf_release(&b);
    return rc;
}

void mcpgw_ticket_info_release(struct mcpgw_ticket_info *info)
{
    if (!info)
        return;
    free(info->name);
    if (info->scopes)
        for (size_t i = 0; i < info->nscopes; i++)
            free(info->scopes[i]);
    free(info->scopes);
    memset(info, 0, sizeof(*info));
}

static int parse_info(const char *text, size_t len, struct mcpgw_ticket_info *info)
{
    json_tokener *tok = json_tokener_new_ex(8);
    json_object *root = NULL, *v, *arr;
    int rc = MCPGW_EAUTH;
    size_t n;

    if (!tok)
        return -ENOMEM;
    root = json_tokener_parse_ex(tok, text, (int)len);
    json_tokener_free(tok);
    if (!root || !json_object_is_type(root, json_type_object))
        goto out;
    if (!json_object_object_get_ex(root, "name", &v) || !json_object_is_type(v, json_type_string) ||
        !json_object_object_get_ex(root, "scopes", &arr) ||
        !json_object_is_type(arr, json_type_array) ||
        !json_object_object_get_ex(root, "expires", &v) || !json_object_is_type(v, json_type_int))
        goto out;
    info->expires = (time_t)json_object_get_int64(v);
    json_object_object_get_ex(root, "name", &v);
    n = json_object_array_length(arr);
    if (n > MCPGW_TOKEN_SCOPES_MAX)
        goto out;
    if (!(info->name = strdup(json_object_get_string(v))) ||
        !(info->scopes = calloc(n + 1, sizeof(char *)))) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(arr, i);

        if (!json_object_is_type(s, json_type_string))
            goto out;
        if (!(info->scopes[i] = strdup(json_object_get_string(s)))) {
            rc = -ENOMEM;
            goto out;
        }
        info->nscopes = i + 1;
    }
    rc = 0;
out:
    json_object_put(root);
    if (rc < 0)
        mcpgw_ticket_info_release(info);
    return rc;
}

int mcpgw_ticket_redeem(const struct mcpgw_conf *conf, const char *ticket, size_t len,
                        struct mcpgw_ticket_info *info)
{
    char path[4200], buf[FILE_MAX];
    size_t got = 0;
    int fd, rc;

    if (info)
        memset(info, 0, sizeof(*info));
    if (!conf || !ticket || !info || !shape_ok(ticket, len))
        return MCPGW_EAUTH;
    if ((rc = ticket_path(conf, ticket, len, path, sizeof(path))) < 0)
        return rc;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT || errno == ELOOP ? MCPGW_EAUTH : -errno;
    /* Whoever unlinks the name owns the ticket: a second redeemer, in this
     * process or another, finds the name gone. */
    if (unlink(path) < 0) {
        rc = errno == ENOENT ? MCPGW_EAUTH : -errno;
        close(fd);
        return rc;
    }
    for (;;) {
        ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            close(fd);
            return rc;
        }
        if (n == 0 || got + (size_t)n >= sizeof(buf) - 1) {
            got += (size_t)n;
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    rc = parse_info(buf, got, info);
    if (rc == 0 && info->expires <= time(NULL)) {
        mcpgw_ticket_info_release(info);
        rc = MCPGW_EAUTH;
    }
    return rc;
}

void mcpgw_ticket_as_token(const struct mcpgw_ticket_info *info, struct mcpgw_token_info *out)
{
    memset(out, 0, sizeof(*out));
    out->name = info->name;
    out->scopes = (const char *const *)info->scopes;
    out->nscopes = info->nscopes;
    out->expires = info->expires;
    out->prefix = "mcpgwt_";
}

/* pins.c - tool-definition pinning (pins.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "buf.h"
#include "err.h"
#include "limits.h"
#include "log.h"
#include "pins.h"
#include "statefile.h"

#define COMPONENT "pins"
#define HEX_LEN 64

struct mcpgw_pins {
    char *path;
    pthread_mutex_t mu;
    json_object *servers;       /* the file's "servers" object, or NULL before a load */
    struct stat st;             /* of the file loaded; st_ino 0: there was none */
};

const char *mcpgw_pin_verdict_name(enum mcpgw_pin_verdict v)
{
    switch (v) {
    case MCPGW_PIN_MATCH: return "match";
    case MCPGW_PIN_NEW: return "new";
    case MCPGW_PIN_CHANGED: return "changed";
    }
    return "unknown";
}

/* ---- the canonical form and its hash -------------------------------------- */

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int canon(struct mcpgw_buf *b, json_object *v, int depth)
{
    int rc = 0;

    if (depth > MCPGW_JSON_DEPTH_MAX)
        return -EINVAL;
    switch (json_object_get_type(v)) {
    case json_type_null:
        return mcpgw_buf_add(b, MCPGW_STRLIT("null"));
    case json_type_boolean:
        return json_object_get_boolean(v) ? mcpgw_buf_add(b, MCPGW_STRLIT("true"))
                                          : mcpgw_buf_add(b, MCPGW_STRLIT("false"));
    case json_type_int:
    case json_type_double: {
        size_t n;
        const char *s = json_object_to_json_string_length(v, JSON_C_TO_STRING_PLAIN, &n);

        return s ? mcpgw_buf_add(b, s, n) : -ENOMEM;
    }
    case json_type_string:
        return mcpgw_buf_add_json_str(b, json_object_get_string(v),
                                      (size_t)json_object_get_string_len(v));
    case json_type_array: {
        size_t n = json_object_array_length(v);

        rc = mcpgw_buf_addc(b, '[');
        for (size_t i = 0; rc == 0 && i < n; i++) {
            if (i)
                rc = mcpgw_buf_addc(b, ',');
            if (rc == 0)
                rc = canon(b, json_object_array_get_idx(v, i), depth + 1);
        }
        return rc ? rc : mcpgw_buf_addc(b, ']');
    }
    case json_type_object: {
        size_t n = (size_t)json_object_object_length(v), i = 0;
        const char **keys = calloc(n ? n : 1, sizeof(*keys));

        if (!keys)
            return -ENOMEM;
        json_object_object_foreach(v, k, val) {
            (void)val;
            keys[i++] = k;
        }
        qsort(keys, n, sizeof(*keys), cmp_key);
        rc = mcpgw_buf_addc(b, '{');
        for (i = 0; rc == 0 && i < n; i++) {
            json_object *m = NULL;

            if (i)
                rc = mcpgw_buf_addc(b, ',');
            if (rc == 0)
                rc = mcpgw_buf_add_json_str(b, keys[i], strlen(keys[i]));
            if (rc == 0)
                rc = mcpgw_buf_addc(b, ':');
            json_object_object_get_ex(v, keys[i], &m);
            if (rc == 0)
                rc = canon(b, m, depth + 1);
        }
        free(keys);
        return rc ? rc : mcpgw_buf_addc(b, '}');
    }
    }
    return -EINVAL;
}

int mcpgw_pins_hash(json_object *tool, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    struct mcpgw_buf b;
    int rc;

    if (!json_object_is_type(tool, json_type_object))
        return -EINVAL;
    mcpgw_buf_init(&b, MCPGW_MESSAGE_BYTES_MAX);
    rc = canon(&b, tool, 0);
    if (rc == 0 && EVP_Digest(b.ptr, b.len, md, &mdlen, EVP_sha256(), NULL) != 1)
        rc = -ENOMEM;
    if (rc == 0) {
        for (unsigned int i = 0; i < mdlen && i < HEX_LEN / 2; i++) {
            hex[2 * i] = "0123456789abcdef"[md[i] >> 4];
            hex[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
        }
        hex[HEX_LEN] = '\0';
    }
    mcpgw_buf_release(&b);
    return rc;
}

/* ---- the file ------------------------------------------------------------- */

static bool hex_ok(json_object *v)
{
    const char *s;

    if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) != HEX_LEN)
        return false;
    s = json_object_get_string(v);
    for (int i = 0; i < HEX_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* Read path into a new "servers" object (an empty one when there is no
 * file).  st gets the file's stat (zeroed when there is none). */
static int load(const char *path, json_object **servers, struct stat *st, char *err, size_t errlen)
{
    struct mcpgw_buf b;
    json_tokener *tok = NULL;
    json_object *doc = NULL, *sv = NULL;
    int rc;

    *servers = NULL;
    memset(st, 0, sizeof(*st));
    mcpgw_buf_init(&b, MCPGW_PINS_FILE_BYTES_MAX);
    rc = mcpgw_statefile_read(path, MCPGW_PINS_FILE_BYTES_MAX, &b, st, err, errlen);
    if (rc == -ENOENT || (rc == 0 && b.len == 0)) {
        *servers = json_object_new_object();
        rc = *servers ? 0 : -ENOMEM;
        goto out;
    }
    if (rc < 0)
        goto out;
    rc = MCPGW_ECONFIG;
    tok = json_tokener_new_ex(MCPGW_JSON_DEPTH_DEFAULT);
    if (!tok) {
        rc = -ENOMEM;
        goto out;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    doc = json_tokener_parse_ex(tok, b.ptr, (int)b.len);
    if (!doc || json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) != b.len) {
        mcpgw_errmsg(err, errlen, "%s: not valid JSON", path);
        goto out;
    }
    if (!json_object_is_type(doc, json_type_object) ||
        !json_object_object_get_ex(doc, "servers", &sv) ||
        !json_object_is_type(sv, json_type_object)) {
        mcpgw_errmsg(err, errlen, "%s: expected {\"servers\": {...}}", path);
        goto out;
    }
    json_object_object_foreach(sv, server, tools) {
        if (!json_object_is_type(tools, json_type_object)) {
            mcpgw_errmsg(err, errlen, "%s: servers.%.64s: expected an object of tool hashes", path, server);
            goto out;
        }
        json_object_object_foreach(tools, tool, h) {
            if (!hex_ok(h)) {
                mcpgw_errmsg(err, errlen, "%s: servers.%.64s.%.128s: expected %d lower case hex digits",
                    path, server, tool, HEX_LEN);
                goto out;
            }
        }
    }
    *servers = json_object_get(sv);
    rc = 0;
out:
    json_object_put(doc);
    if (tok)
        json_tokener_free(tok);
    mcpgw_buf_release(&b);
    return rc;
}

/* Pin tools of server into servers (all, or the nnames named).  *changed
 * counts pins that differ from before. */
static int pin_into(json_object *servers, const char *server, json_object *tools,
                    const char *const *names, size_t nnames, size_t *changed,
                    char *err, size_t errlen)
{
    json_object *entry = NULL;
    size_t n = json_object_array_length(tools);
    int rc;

    *changed = 0;
    for (size_t k = 0; k < nnames; k++) {
        bool found = false;

        for (size_t i = 0; i < n && !found; i++) {
            json_object *nm;

            found = json_object_object_get_ex(json_object_array_get_idx(tools, i), "name", &nm) &&
                    json_object_is_type(nm, json_type_string) &&
                    strcmp(json_object_get_string(nm), names[k]) == 0;
        }
        if (!found) {
            mcpgw_errmsg(err, errlen, "server '%s' has no tool '%.128s'", server, names[k]);
            return -ENOENT;
        }
    }
    if (!json_object_object_get_ex(servers, server, &entry)) {
        entry = json_object_new_object();
        if (!entry || json_object_object_add(servers, server, entry) < 0) {
            json_object_put(entry);
            return -ENOMEM;
        }
    }
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tools, i), *nm, *old;
        const char *name;
        char hex[HEX_LEN + 1];
        bool wanted = nnames == 0;

        if (!json_object_object_get_ex(t, "name", &nm) || !json_object_is_type(nm, json_type_string))
            continue;
        name = json_object_get_string(nm);
        for (size_t k = 0; k < nnames && !wanted; k++)
            wanted = strcmp(names[k], name) == 0;
        if (!wanted)
            continue;
        if ((rc = mcpgw_pins_hash(t, hex)) < 0) {
            mcpgw_errmsg(err, errlen, "server '%s' tool '%.128s': cannot hash its definition: %s", server,
                name, mcpgw_strerror(rc));
            return rc;
        }
        if (json_object_object_get_ex(entry, name, &old) &&
            strcmp(json_object_get_string(old), hex) == 0)
            continue;
        if (json_object_object_add(entry, name, json_object_new_string(hex)) < 0)
            return -ENOMEM;
        (*changed)++;
    }
    return 0;
}

/* Under the file's lock: load, pin, write.  *after (if not NULL) gets the
 * new "servers" object and *st its file's stat. */
static int approve_locked(const char *path, const char *server, json_object *tools,
                          const char *const *names, size_t nnames, size_t *napproved,
                          json_object **after, struct stat *st, char *err, size_t errlen)
{
    json_object *servers = NULL, *doc = NULL;
    struct stat old;
    size_t changed = 0, len;
    const char *text;
    int lock, rc;

    if (!json_object_is_type(tools, json_type_array)) {
        mcpgw_errmsg(err, errlen, "server '%s': no tool list to approve", server);
        return -EINVAL;
    }
    lock = mcpgw_statefile_lock(path, err, errlen);
    if (lock < 0)
        return lock;
    rc = load(path, &servers, &old, err, errlen);
    if (rc == 0)
        rc = pin_into(servers, server, tools, names, nnames, &changed, err, errlen);
    if (rc < 0)
        goto out;
    doc = json_object_new_object();
    if (!doc || json_object_object_add(doc, "servers", json_object_get(servers)) < 0) {
        rc = -ENOMEM;
        goto out;
    }
    text = json_object_to_json_string_length(doc, JSON_C_TO_STRING_PRETTY |
                                             JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (!text) {
        rc = -ENOMEM;
        goto out;
    }
    if (len + 1 > MCPGW_PINS_FILE_BYTES_MAX) {
        mcpgw_errmsg(err, errlen, "%s: would grow past %u bytes", path, MCPGW_PINS_FILE_BYTES_MAX);
        rc = MCPGW_ETOOBIG;
        goto out;
    }
    {
        /* A trailing newline, for people who cat it. */
        char *t = malloc(len + 1);

        if (!t) {
            rc = -ENOMEM;
            goto out;
        }
        memcpy(t, text, len);
        t[len] = '\n';
        rc = mcpgw_statefile_replace(path, t, len + 1, old.st_ino ? &old : NULL, COMPONENT,
                                     err, errlen);
        free(t);
    }
    if (rc == 0 && st && stat(path, st) < 0)
        memset(st, 0, sizeof(*st));
    if (rc == 0 && after)
        *after = json_object_get(servers);
    if (rc == 0 && napproved)
        *napproved = changed;
out:
    if (rc == -ENOMEM)
        mcpgw_errmsg(err, errlen, "%s: out of memory", path);
    json_object_put(doc);
    json_object_put(servers);
    close(lock);
    return rc;
}

int mcpgw_pins_approve(const char *path, const char *server, json_object *tools,
                       const char *const *names, size_t nnames, size_t *napproved,
                       char *err, size_t errlen)
{
    if (napproved)
        *napproved = 0;
    if (!path || !server || (nnames && !names)) {
        mcpgw_errmsg(err, errlen, "no pins file or server given");
        return -EINVAL;
    }
    return approve_locked(path, server, tools, names, nnames, napproved, NULL, NULL, err, errlen);
}

/* ---- the handle ------------------------------------------------------------ */

int mcpgw_pins_open(const char *path, mcpgw_pins **out)
{
    mcpgw_pins *p = calloc(1, sizeof(*p));

    *out = NULL;
    if (!p || !path || !(p->path = strdup(path))) {
        free(p);
        return path ? -ENOMEM : -EINVAL;
    }
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return 0;
}

void mcpgw_pins_free(mcpgw_pins *p)
{
    if (!p)
        return;
    json_object_put(p->servers);
    pthread_mutex_destroy(&p->mu);
    free(p->path);
    free(p);
}

const char *mcpgw_pins_path(const mcpgw_pins *p)
{
    return p->path;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Load the file again if another process (or approve) changed it. */
static int refresh(mcpgw_pins *p, char *err, size_t errlen)
{
    struct stat now;
    json_object *servers;
    int rc;

    if (stat(p->path, &now) < 0)
        memset(&now, 0, sizeof(now));
    if (p->servers && same_file(&now, &p->st))
        return 0;
    rc = load(p->path, &servers, &now, err, errlen);
    if (rc < 0)
        return rc;
    json_object_put(p->servers);
    p->servers = servers;
    p->st = now;
    return 0;
}

int mcpgw_pins_check(mcpgw_pins *p, const char *server, json_object *tools,
                     enum mcpgw_pin_verdict *verdicts, bool *first_use, char *err, size_t errlen)
{
    json_object *entry;
    size_t n;
    int rc;

    if (first_use)
        *first_use = false;
    if (!p || !server || !json_object_is_type(tools, json_type_array))
        return -EINVAL;
    n = json_object_array_length(tools);
    pthread_mutex_lock(&p->mu);
    rc = refresh(p, err, errlen);
    if (rc < 0)
        goto out;
    if (!json_object_object_get_ex(p->servers, server, &entry)) {
        json_object *after = NULL;
        struct stat st;

        /* First use.  Another process may pin the same server at the same
         * moment: approve re-reads under the lock, and whichever pins
         * second writes the same hashes. */
        rc = approve_locked(p->path, server, tools, NULL, 0, NULL, &after, &st, err, errlen);
        if (rc < 0)
            goto out;
        json_object_put(p->servers);
        p->servers = after;
        p->st = st;
        for (size_t i = 0; i < n; i++)
            verdicts[i] = MCPGW_PIN_MATCH;
        if (first_use)
            *first_use = true;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tools, i), *nm, *pin;
        char hex[HEX_LEN + 1];

        verdicts[i] = MCPGW_PIN_NEW;
        if (!json_object_object_get_ex(t, "name", &nm) || !json_object_is_type(nm, json_type_string) ||
            !json_object_object_get_ex(entry, json_object_get_string(nm), &pin))
            continue;
        if (mcpgw_pins_hash(t, hex) < 0)
            continue;
        verdicts[i] = strcmp(json_object_get_string(pin), hex) == 0 ? MCPGW_PIN_MATCH
                                                                   : MCPGW_PIN_CHANGED;
    }
out:
    pthread_mutex_unlock(&p->mu);
    return rc;
}

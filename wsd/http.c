/* http.c - libmicrohttpd on the loop: handshakes, upgrades, accounting.
 *
 * Why "external" mode and not MHD's own threads: see main.c's top comment.
 * In short, MHD_run() runs on our loop thread, so every callback below does
 * too, and an upgraded socket is ours the moment the upgrade handler runs.
 *
 * Connection limits are ours, not MHD's: MHD's own limits only close a
 * socket at accept, which tells a client nothing.  We count every HTTP
 * connection (upgraded ones included, until they are released) in the
 * connection notification, and refuse over-limit handshakes with a 503 that
 * says which limit.  MHD's limits are set MCPGW_CONN_REFUSE_SLACK higher, as
 * a backstop against a flood that would not even wait for our answer (the
 * per-IP one is accept_policy(): behind a trusted proxy a connection is
 * counted as the client its X-Forwarded-For names, shared/peer.h).
 *
 * The accept is ours too (MHD_USE_NO_LISTEN_SOCKET + MHD_add_connection),
 * for the open-file limit.  MHD 0.9.75's own accept, on EMFILE, either stops
 * accepting until one of its connections closes - leaving new clients in the
 * backlog with no answer - or, with no connection of its own open, retries
 * on every turn: a busy loop.  Here a socket that lands in the top
 * MCPGW_FD_HEADROOM descriptors gets a 503 (the headroom is for spawning MCP
 * servers and reopening files), and on EMFILE itself a reserve descriptor is
 * given up for one accept so that the client gets a 503 rather than silence
 * (libuv's and nginx's trick); if even that fails, accepting pauses for
 * MCPGW_ACCEPT_PAUSE ms.  No path retries without a new connection waiting.
 *
 * MHD's connection timeout is an idle timeout: a client that sends one byte
 * of its head every few seconds (slow-loris) would hold its connection, and
 * its slot in the per-IP count, forever.  Each connection therefore has a
 * deadline, limits.handshakeTimeoutMs after accept: a head not complete by
 * then gets a 408 and is closed, a handshake answered but not upgraded is
 * just closed.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/evp.h>

#include "codec.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "rest.h"
#include "routes.h"
#include "session.h"
#include "peer.h"
#include "ticket.h"

#define C WSD_COMPONENT

struct wsd_http {
    struct wsd *d;
    struct MHD_Daemon *mhd;
    struct wsd_watch watch;     /* MHD's epoll fd */
    struct wsd_defer kick;      /* run MHD once more at the end of the turn */
    int listen_fd;
    struct wsd_watch listen_w;  /* listen_fd: our accept, not MHD's */
    struct mcpgw__timer accept_pause;   /* accepting again after EMFILE */
    int reserve_fd;             /* /dev/null, given up to refuse at EMFILE */
    int fd_mark;                /* sockets at or above it get a 503 */
    unsigned long fd_refused;   /* refused since the last admitted one */
    bool accept_paused;         /* logged; cleared by the next accept */
    bool had_timeout;
    char name[128];
    char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* One MHD connection, from accept to close (MHD's "socket context"). */
struct conn {
    struct wsd_http *h;
    struct wsd_peer peer;
    bool per_ip;                /* counted in d->ips, as peer.addr */
    bool proxied;               /* the TCP peer is a trusted proxy: see place() */
    char tcp[64];               /* the TCP peer's address, or "unix" */
    struct wsd_ident ident;     /* what the handshake authenticated */
    struct MHD_UpgradeResponseHandle *urh;
    struct MHD_Connection *c;
    struct mcpgw__timer deadline;   /* handshakeTimeoutMs after accept */
    bool asked;                 /* the head was complete: on_request ran */
};

/* -- connections per IP ----------------------------------------------------------- */

#define IPTAB_BUCKETS 1024

struct ipent {
    struct ipent *next;
    unsigned n;
    char addr[64];
};

struct wsd_iptab {
    struct ipent *b[IPTAB_BUCKETS];
};

int wsd_iptab_new(struct wsd_iptab **out)
{
    return (*out = calloc(1, sizeof(**out))) ? 0 : -ENOMEM;
}

void wsd_iptab_free(struct wsd_iptab *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < IPTAB_BUCKETS; i++) {
        struct ipent *e, *next;

        for (e = t->b[i]; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(t);
}

unsigned wsd_iptab_add(struct wsd_iptab *t, const char *addr, int delta)
{
    uint32_t h = 2166136261u;
    struct ipent **pp, *e;

    for (const char *p = addr; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    for (pp = &t->b[h % IPTAB_BUCKETS]; (e = *pp); pp = &e->next)
        if (strcmp(e->addr, addr) == 0)
            break;
    if (!e) {
        if (delta <= 0 || !(e = calloc(1, sizeof(*e))))
            return 0;       /* out of memory: this address goes uncounted */
        snprintf(e->addr, sizeof(e->addr), "%s", addr);
        e->next = t->b[h % IPTAB_BUCKETS];
        t->b[h % IPTAB_BUCKETS] = e;
        pp = &t->b[h % IPTAB_BUCKETS];
    }
    if (delta < 0 && e->n <= (unsigned)-delta) {
        *pp = e->next;
        free(e);
        return 0;
    }
    e->n = (unsigned)((int)e->n + delta);
    return e->n;
}

/* -- Origin -------------------------------------------------------------------------- */

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* "host[:port]" or "[v6][:port]" at s (n bytes): host (brackets kept),
 * lowercased, and the port or 0 if none. */
static bool split_hostport(const char *s, size_t n, char *host, size_t hostlen, unsigned *port)
{
    const char *end = s + n, *colon = NULL;
    size_t hn;

    *port = 0;
    if (n == 0)
        return false;
    if (*s == '[') {
        const char *rb = memchr(s, ']', n);

        if (!rb)
            return false;
        if (rb + 1 < end) {
            if (rb[1] != ':')
                return false;
            colon = rb + 1;
        }
        hn = (size_t)(rb + 1 - s);
    } else {
        colon = memchr(s, ':', n);
        hn = colon ? (size_t)(colon - s) : n;
    }
    if (colon) {
        unsigned long v = 0;
        const char *p = colon + 1;

        if (p == end || end - p > 5)
            return false;
        for (; p < end; p++) {
            if (*p < '0' || *p > '9')
                return false;
            v = v * 10 + (unsigned long)(*p - '0');
        }
        if (v == 0 || v > 65535)
            return false;
        *port = (unsigned)v;
    }
    if (hn == 0 || hn >= hostlen)
        return false;
    for (size_t i = 0; i < hn; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == '/' || s[i] == '@' || s[i] == '?' ||
            s[i] == '#' || (unsigned char)s[i] >= 0x7f)
            return false;
    memcpy(host, s, hn);
    host[hn] = '\0';
    lower(host);
    return true;
}

struct origin {
    char scheme[8];
    char host[256];
    unsigned port;              /* effective: the scheme's default when absent */
    bool port_given;
};

static bool parse_origin(const char *o, struct origin *out)
{
    const char *sep = strstr(o, "://");
    size_t sn;

    if (!sep)
        return false;
    sn = (size_t)(sep - o);
    if (sn == 0 || sn >= sizeof(out->scheme))
        return false;
    memcpy(out->scheme, o, sn);
    out->scheme[sn] = '\0';
    lower(out->scheme);
    if (strcmp(out->scheme, "http") != 0 && strcmp(out->scheme, "https") != 0)
        return false;
    if (!split_hostport(sep + 3, strlen(sep + 3), out->host, sizeof(out->host), &out->port))
        return false;
    out->port_given = out->port != 0;
    if (!out->port)
        out->port = strcmp(out->scheme, "https") == 0 ? 443 : 80;
    return true;
}

static bool ip_literal(const char *host, bool *loopback)
{
    unsigned char a[16];
    char v6[64];
    size_t n = strlen(host);

    if (inet_pton(AF_INET, host, a) == 1) {
        *loopback = a[0] == 127;
        return true;
    }
    if (n > 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(v6)) {
        memcpy(v6, host + 1, n - 2);
        v6[n - 2] = '\0';
        if (inet_pton(AF_INET6, v6, a) == 1) {
            static const unsigned char one[16] = { [15] = 1 };

            *loopback = memcmp(a, one, 16) == 0;
            return true;
        }
    }
    *loopback = false;
    return false;
}

bool wsd_origin_allowed(const struct mcpgw_conf *conf, const char *origin, const char *host)
{
    struct origin o;
    char norm[300], hh[256];
    unsigned hport;
    bool loop_ip;

    if (!origin)
        return true;            /* not a browser: Origin protects browsers only */
    if (!parse_origin(origin, &o))
        return false;           /* "null", file://, junk */
    if (conf->allowed_origins) {
        int defport = strcmp(o.scheme, "https") == 0 ? 443 : 80;

        if ((int)o.port == defport)
            snprintf(norm, sizeof(norm), "%s://%s", o.scheme, o.host);
        else
            snprintf(norm, sizeof(norm), "%s://%s:%u", o.scheme, o.host, o.port);
        for (size_t i = 0; i < conf->norigins; i++)
            if (strcmp(conf->allowed_origins[i], norm) == 0)
                return true;
        return false;
    }
    if (strcmp(o.host, "localhost") == 0 || (ip_literal(o.host, &loop_ip) && loop_ip))
        return true;
    /* Same origin: the page came from the address the client connects to.
     * Only for IP literals: a DNS name can be rebound to our address by
     * whoever owns it (DNS rebinding), so named origins must be listed. */
    if (!host || !split_hostport(host, strlen(host), hh, sizeof(hh), &hport))
        return false;
    if (!ip_literal(o.host, &loop_ip) || strcmp(o.host, hh) != 0)
        return false;
    return (hport ? hport : (strcmp(o.scheme, "https") == 0 ? 443u : 80u)) == o.port;
}

/* -- the handshake ------------------------------------------------------------------- */

bool wsd_ws_accept(const char *key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char buf[24 + sizeof(guid)];

    if (!key || strlen(key) != 24 || key[22] != '=' || key[23] != '=')
        return false;
    for (int i = 0; i < 22; i++) {
        char c = key[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return false;
    }
    memcpy(buf, key, 24);
    memcpy(buf + 24, guid, sizeof(guid) - 1);
    if (EVP_Digest(buf, 24 + sizeof(guid) - 1, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return false;
    EVP_EncodeBlock((unsigned char *)out, md, 20);
    return true;
}

/* Whether a comma-separated header value lists token (case-insensitive). */
static bool has_token(const char *value, const char *token)
{
    size_t tn = strlen(token);

    while (value && *value) {
        const char *end;
        size_t n;

        while (*value == ' ' || *value == '\t' || *value == ',')
            value++;
        end = value;
        while (*end && *end != ',')
            end++;
        n = (size_t)(end - value);
        while (n && (value[n - 1] == ' ' || value[n - 1] == '\t'))
            n--;
        if (n == tn && strncasecmp(value, token, n) == 0)
            return true;
        value = end;
    }
    return false;
}

static void copy_printable(char *dst, size_t dstlen, const char *src)
{
    size_t i = 0;

    for (; src && *src && i + 1 < dstlen; src++)
        dst[i++] = (unsigned char)*src >= 0x20 && (unsigned char)*src < 0x7f && *src != '\'' ?
                   *src : '?';
    dst[i] = '\0';
}

/* A JSON error answer; hdrs are name/value pairs ending with NULL. */
static enum MHD_Result reply(struct MHD_Connection *c, struct conn *cn, unsigned status,
                             const char *code, const char *const *hdrs, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static enum MHD_Result reply(struct MHD_Connection *c, struct conn *cn, unsigned status,
                             const char *code, const char *const *hdrs, const char *fmt, ...)
{
    struct mcpgw_buf b;
    struct MHD_Response *r;
    enum MHD_Result ok;
    char text[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    mcpgw_log_info(C, "refused a WebSocket handshake from %s (HTTP %u): %s",
                   cn ? cn->peer.addr : "?", status, text);
    mcpgw_buf_init(&b, 4096);
    if (mcpgw_buf_adds(&b, "{\"error\":") < 0 || mcpgw_buf_add_json_str(&b, text, strlen(text)) < 0 ||
        mcpgw_buf_printf(&b, ",\"code\":\"%s\"}\n", code) < 0) {
        mcpgw_buf_release(&b);
        return MHD_NO;
    }
    r = MHD_create_response_from_buffer(b.len, b.ptr, MHD_RESPMEM_MUST_COPY);
    mcpgw_buf_release(&b);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    for (; hdrs && hdrs[0]; hdrs += 2)
        MHD_add_response_header(r, hdrs[0], hdrs[1]);
    ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

/* The session is done with the socket.  In external mode, libmicrohttpd
 * 0.9.75 neither signals its ITC for this nor reports a zero timeout, so
 * the connection would wait for the next unrelated MHD_run() to be closed:
 * run it ourselves at the end of the turn. */
static void release_urh(void *ud)
{
    struct conn *cn = ud;
    struct wsd_http *h = cn->h;

    MHD_upgrade_action(cn->urh, MHD_UPGRADE_ACTION_CLOSE);
    wsd_loop_defer(h->d->loop, &h->kick);
}

static void on_kick(struct wsd_defer *dfr)
{
    struct wsd_http *h = (struct wsd_http *)((char *)dfr - offsetof(struct wsd_http, kick));

    MHD_run(h->mhd);
}

static void on_upgrade(void *cls, struct MHD_Connection *connection, void *con_cls,
                       const char *extra_in, size_t extra_in_size, MHD_socket sock,
                       struct MHD_UpgradeResponseHandle *urh)
{
    struct wsd_http *h = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn *cn = ci ? ci->socket_context : NULL;
    int rc;

    if (!cn) {
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        wsd_loop_defer(h->d->loop, &h->kick);
        return;
    }
    cn->urh = urh;
    wsd_loop_timer_stop(h->d->loop, &cn->deadline);
    rc = wsd_session_start(h->d, sock, extra_in, extra_in_size, &cn->peer, &cn->ident,
                           release_urh, cn);
    if (rc < 0) {
        mcpgw_log_error(C, "cannot start a session for %s: %s", cn->peer.addr, mcpgw_strerror(rc));
        release_urh(cn);
    }
}

/* -- clients behind trusted proxies ---------------------------------------------- */

/* The TCP peer as peer.h's canonical text (IPv4-mapped is IPv4), or "unix". */
static void sockaddr_text(const struct sockaddr *sa, char *out, size_t outlen)
{
    char raw[INET6_ADDRSTRLEN] = "unix";

    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, raw, sizeof(raw));
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, raw, sizeof(raw));
    mcpgw_peer_client(NULL, 0, raw, NULL, 0, out, outlen);
}

/* X-Forwarded-For lines, the nearest XFF_LINES of them (peer.h reads from
 * the last line back, and stops long before a client's own lines). */
#define XFF_LINES 8

struct xff {
    const char *v[XFF_LINES];
    size_t n;
};

static enum MHD_Result collect_xff(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    struct xff *x = cls;

    (void)kind;
    if (!key || !value || strcasecmp(key, "X-Forwarded-For") != 0)
        return MHD_YES;
    if (x->n == XFF_LINES) {
        memmove(x->v, x->v + 1, (XFF_LINES - 1) * sizeof(x->v[0]));
        x->n--;
    }
    x->v[x->n++] = value;
    return MHD_YES;
}

/* A request through a trusted proxy: count and log it as the client the
 * proxy names.  Per request, not per connection: a proxy may send several
 * clients' requests over one kept-alive connection. */
static void place(struct wsd_http *h, struct conn *cn, struct MHD_Connection *c)
{
    const struct mcpgw_conf *conf = h->d->conf;
    struct xff x = { .n = 0 };
    char addr[sizeof(cn->peer.addr)];
    enum mcpgw_peer_via via;

    MHD_get_connection_values(c, MHD_HEADER_KIND, collect_xff, &x);
    via = mcpgw_peer_client(conf->trusted_proxies, conf->ntrusted_proxies, cn->tcp, x.v, x.n,
                            addr, sizeof(addr));
    if (via == MCPGW_PEER_MALFORMED)
        mcpgw_log_info(C, "unreadable X-Forwarded-For from trusted proxy %s: counting the "
                       "request as the proxy's", cn->tcp);
    snprintf(cn->peer.via, sizeof(cn->peer.via), "%s",
             via == MCPGW_PEER_FORWARDED ? cn->tcp : "");
    if (cn->per_ip && strcmp(addr, cn->peer.addr) == 0)
        return;
    if (cn->per_ip)
        wsd_iptab_add(h->d->ips, cn->peer.addr, -1);
    snprintf(cn->peer.addr, sizeof(cn->peer.addr), "%s", addr);
    cn->per_ip = strcmp(addr, "unix") != 0;
    if (cn->per_ip)
        wsd_iptab_add(h->d->ips, addr, +1);
}

/* A trusted proxy's connection between requests (kept alive after one that
 * was not upgraded) belongs to no client: a refused handshake must not
 * leave its client counted on a connection the proxy keeps for others. */
static void unplace(struct wsd_http *h, struct conn *cn)
{
    if (cn->per_ip)
        wsd_iptab_add(h->d->ips, cn->peer.addr, -1);
    cn->per_ip = false;
    snprintf(cn->peer.addr, sizeof(cn->peer.addr), "%s", cn->tcp);
    cn->peer.via[0] = '\0';
}

/* MHD's per-IP limit would count a proxy's connections as one client's:
 * this is the same backstop, MCPGW_CONN_REFUSE_SLACK above our own limit,
 * for peers that are not trusted proxies (whose clients are counted per
 * request, in place()). */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *sa, socklen_t len)
{
    struct wsd_http *h = cls;
    const struct mcpgw_conf *conf = h->d->conf;
    char addr[64];

    (void)len;
    sockaddr_text(sa, addr, sizeof(addr));
    if (strcmp(addr, "unix") == 0 ||
        mcpgw_peer_trusted(conf->trusted_proxies, conf->ntrusted_proxies, addr))
        return MHD_YES;
    return wsd_iptab_add(h->d->ips, addr, 0) >=
           (unsigned)(conf->limits.max_connections_per_ip + MCPGW_CONN_REFUSE_SLACK) ?
           MHD_NO : MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    static const char *const need_upgrade[] = {
        MHD_HTTP_HEADER_UPGRADE, "websocket", "Sec-WebSocket-Version", "13", NULL
    };
    /* Every 401 the same, and the same as the REST routes' (routes.h). */
    static const char *const www_auth[] = { MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                            MCPGW_ROUTES_401_CHALLENGE, NULL };
    static const char *const allow_get[] = { MHD_HTTP_HEADER_ALLOW, "GET", NULL };
    static const char *const retry[] = { MHD_HTTP_HEADER_RETRY_AFTER, "1", NULL };
    struct wsd_http *h = cls;
    struct wsd *d = h->d;
    const struct mcpgw_conf *conf = d->conf;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn *cn = ci ? ci->socket_context : NULL;
    const char *v, *key, *authz, *ticket;
    struct MHD_Response *r;
    char accept[29];
    unsigned n;
    enum MHD_Result ok;

    if (!cn)
        return MHD_NO;
    cn->asked = true;
    if (cn->proxied)
        place(h, cn, c);
    v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_USER_AGENT);
    if (v && *v)
        copy_printable(cn->peer.user_agent, sizeof(cn->peer.user_agent), v);
    /* /api/v1: the URI callback gave the request a context; the shared
     * routes serve it on a worker (rest.h).  It is no handshake and may be
     * a long stream: the handshake deadline is off until it completes. */
    if (*con_cls) {
        wsd_loop_timer_stop(d->loop, &cn->deadline);
        return wsd_rest_access(*con_cls, c, method, upload_data, upload_data_size,
                               cn->peer.addr);
    }
    if (strcmp(url, "/ws") != 0)
        return reply(c, cn, MHD_HTTP_NOT_FOUND, MCPGW_CODE_BAD_REQUEST, NULL,
                     "nothing here: the WebSocket endpoint is /ws");
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
        return reply(c, cn, MHD_HTTP_METHOD_NOT_ALLOWED, MCPGW_CODE_BAD_REQUEST, allow_get,
                     "a WebSocket handshake is a GET, not %.16s", method);
    /* RFC 6455 4.1: the handshake has no body.  Bytes after its head would
     * become the first WebSocket frames here while a proxy in front took
     * them for a body (RFC 9112 6.1: the request smuggling shape). */
    v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) ||
        (v && strcmp(v, "0") != 0))
        return reply(c, cn, MHD_HTTP_BAD_REQUEST, MCPGW_CODE_BAD_REQUEST, NULL,
                     "a WebSocket handshake has no body (no Content-Length, no "
                     "Transfer-Encoding)");
    if (d->draining)
        return reply(c, cn, MHD_HTTP_SERVICE_UNAVAILABLE, MCPGW_CODE_SERVER_UNAVAILABLE, retry,
                     "gateway is shutting down");
    if (d->conns > (unsigned)conf->limits.max_connections)
        return reply(c, cn, MHD_HTTP_SERVICE_UNAVAILABLE, MCPGW_CODE_RATE_LIMITED, retry,
                     "too many connections (the limit is %d)", conf->limits.max_connections);
    if (cn->per_ip && (n = wsd_iptab_add(d->ips, cn->peer.addr, 0)) >
        (unsigned)conf->limits.max_connections_per_ip)
        return reply(c, cn, MHD_HTTP_SERVICE_UNAVAILABLE, MCPGW_CODE_RATE_LIMITED, retry,
                     "too many connections from %s (the limit is %d)", cn->peer.addr,
                     conf->limits.max_connections_per_ip);
    if ((ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD)) &&
        ci->connect_fd >= h->fd_mark) {
        if (h->fd_refused++ == 0)
            mcpgw_log_warn(C, "near the open-file limit on %s: refusing new connections "
                           "with 503", h->name);
        return reply(c, cn, MHD_HTTP_SERVICE_UNAVAILABLE, MCPGW_CODE_SERVER_UNAVAILABLE, retry,
                     "gateway is out of file descriptors: try again later");
    }
    if (h->fd_refused) {
        mcpgw_log_info(C, "accepting connections on %s again after refusing %lu for want of "
                       "file descriptors", h->name, h->fd_refused);
        h->fd_refused = 0;
    }
    if (strcmp(version, MHD_HTTP_VERSION_1_1) != 0)
        return reply(c, cn, MHD_HTTP_BAD_REQUEST, MCPGW_CODE_BAD_REQUEST, NULL,
                     "a WebSocket handshake needs HTTP/1.1");
    if (!has_token(MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_UPGRADE),
                   "websocket") ||
        !has_token(MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONNECTION),
                   "upgrade"))
        return reply(c, cn, MHD_HTTP_UPGRADE_REQUIRED, MCPGW_CODE_BAD_REQUEST, need_upgrade,
                     "this endpoint speaks WebSocket only: send Upgrade: websocket");
    v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Version");
    if (!v || strcmp(v, "13") != 0)
        return reply(c, cn, MHD_HTTP_UPGRADE_REQUIRED, MCPGW_CODE_BAD_REQUEST, need_upgrade,
                     "unsupported WebSocket version: only 13 (RFC 6455) is spoken");
    key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Key");
    if (!wsd_ws_accept(key, accept))
        return reply(c, cn, MHD_HTTP_BAD_REQUEST, MCPGW_CODE_BAD_REQUEST, NULL,
                     "Sec-WebSocket-Key must be the base64 of 16 bytes");
    /* RFC 6750: tokens in URLs end up in logs.  The value is not looked at. */
    if (MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "access_token") ||
        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token"))
        return reply(c, cn, MHD_HTTP_BAD_REQUEST, MCPGW_CODE_BAD_REQUEST, NULL,
                     "tokens are not accepted in URLs: use an Authorization header, an auth "
                     "message, or a ticket");
    v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ORIGIN);
    if (!wsd_origin_allowed(conf, v, MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                                   MHD_HTTP_HEADER_HOST))) {
        char shown[120];

        copy_printable(shown, sizeof(shown), v);
        return reply(c, cn, MHD_HTTP_FORBIDDEN, MCPGW_CODE_FORBIDDEN, NULL,
                     "origin '%s' is not allowed (gateway.allowedOrigins)", shown);
    }
    authz = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    ticket = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "ticket");
    if (authz && ticket)
        return reply(c, cn, MHD_HTTP_BAD_REQUEST, MCPGW_CODE_BAD_REQUEST, NULL,
                     "send either an Authorization header or a ticket, not both");
    wsd_ident_release(&cn->ident);
    if (authz) {
        struct mcpgw_token_info info;
        size_t tlen;
        const char *tok = mcpgw_token_from_header(authz, &tlen);

        if (!tok || tlen > MCPGW_TOKEN_BYTES_MAX ||
            mcpgw_tokens_verify(d->tokens, tok, tlen, time(NULL), &info) < 0)
            return reply(c, cn, MHD_HTTP_UNAUTHORIZED, MCPGW_CODE_AUTH_REQUIRED, www_auth,
                         "%s", MCPGW_ROUTES_401_TEXT);
        if (wsd_ident_from_token(&cn->ident, &info, WSD_AUTH_HEADER) < 0)
            return MHD_NO;
    } else if (ticket) {
        struct mcpgw_ticket_info ti;
        struct mcpgw_token_info info;
        int rc = mcpgw_ticket_redeem(conf, ticket, strlen(ticket), &ti);

        if (rc == MCPGW_EAUTH)
            return reply(c, cn, MHD_HTTP_UNAUTHORIZED, MCPGW_CODE_AUTH_REQUIRED, www_auth,
                         "%s", MCPGW_ROUTES_401_TEXT);
        if (rc < 0) {
            mcpgw_log_error(C, "cannot redeem a ticket: %s", mcpgw_strerror(rc));
            return reply(c, cn, MHD_HTTP_INTERNAL_SERVER_ERROR, MCPGW_CODE_INTERNAL, NULL,
                         "cannot redeem the ticket");
        }
        mcpgw_ticket_as_token(&ti, &info);
        info.prefix = "";
        info.created = 0;
        info.expires = 0;       /* the ticket's expiry is not the session's */
        rc = wsd_ident_from_token(&cn->ident, &info, WSD_AUTH_TICKET);
        mcpgw_ticket_info_release(&ti);
        if (rc < 0)
            return MHD_NO;
    }
    r = MHD_create_response_for_upgrade(on_upgrade, h);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_UPGRADE, "websocket");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "Upgrade");
    MHD_add_response_header(r, "Sec-WebSocket-Accept", accept);
    ok = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, r);
    MHD_destroy_response(r);
    return ok;
}

/* An answer written straight to a socket that MHD has not answered on (its
 * head is incomplete) or does not know (refused at accept).  Best effort: the
 * socket is non-blocking and the answer small. */
static void raw_answer(int fd, const char *status, const char *extra, const char *code,
                       const char *text)
{
    char body[256], msg[768];
    int bn, n;

    bn = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"code\":\"%s\"}\n", text, code);
    if (bn < 0 || (size_t)bn >= sizeof(body))
        return;
    n = snprintf(msg, sizeof(msg),
                 "HTTP/1.1 %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
                 "Cache-Control: no-store\r\n%sContent-Length: %d\r\n\r\n%s",
                 status, extra, bn, body);
    if (n > 0 && (size_t)n < sizeof(msg))
        (void)send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* limits.handshakeTimeoutMs after accept and not upgraded.  shutdown(), not
 * close(): the socket is MHD's, which sees the end of the stream on its next
 * read and closes the connection through its usual path (notifications
 * included). */
static void on_deadline(struct mcpgw__timer *t)
{
    struct conn *cn = (struct conn *)((char *)t - offsetof(struct conn, deadline));
    struct wsd_http *h = cn->h;
    int ms = h->d->conf->limits.handshake_timeout_ms;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(cn->c, MHD_CONNECTION_INFO_CONNECTION_FD);
    char text[96];

    if (!ci || cn->urh)
        return;
    if (!cn->asked) {
        snprintf(text, sizeof(text), "no complete request head within %d ms", ms);
        raw_answer(ci->connect_fd, "408 Request Timeout", "", MCPGW_CODE_TIMEOUT, text);
        mcpgw_log_info(C, "closing a connection from %s: %s", cn->peer.addr, text);
    } else {
        mcpgw_log_info(C, "closing a connection from %s: no WebSocket upgrade within %d ms",
                       cn->peer.addr, ms);
    }
    shutdown(ci->connect_fd, SHUT_RDWR);
    wsd_loop_defer(h->d->loop, &h->kick);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct wsd_http *h = cls;
    struct wsd *d = h->d;
    struct conn *cn;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *sa = ci ? ci->client_addr : NULL;

        if (!(cn = calloc(1, sizeof(*cn)))) {
            *socket_context = NULL;
            return;
        }
        cn->h = h;
        cn->c = c;
        mcpgw__timer_init(&cn->deadline, on_deadline);
        /* Out of memory for the timer: MHD's idle timeout still applies. */
        wsd_loop_timer(d->loop, &cn->deadline,
                       mcpgw__mono_ms() + d->conf->limits.handshake_timeout_ms);
        sockaddr_text(sa, cn->tcp, sizeof(cn->tcp));
        snprintf(cn->peer.addr, sizeof(cn->peer.addr), "%s", cn->tcp);
        /* A trusted proxy's connection is counted as the client each of
         * its requests names (place()), never as the proxy. */
        cn->proxied = mcpgw_peer_trusted(d->conf->trusted_proxies, d->conf->ntrusted_proxies,
                                         cn->tcp);
        cn->per_ip = !cn->proxied && strcmp(cn->tcp, "unix") != 0;
        snprintf(cn->peer.user_agent, sizeof(cn->peer.user_agent), "-");
        if (cn->per_ip)
            wsd_iptab_add(d->ips, cn->peer.addr, +1);
        d->conns++;
        *socket_context = cn;
        return;
    }
    if (!(cn = *socket_context))
        return;
    wsd_loop_timer_stop(d->loop, &cn->deadline);
    if (cn->per_ip)
        wsd_iptab_add(d->ips, cn->peer.addr, -1);
    d->conns--;
    wsd_ident_release(&cn->ident);
    free(cn);
    *socket_context = NULL;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct wsd_http *h = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn *cn = ci ? ci->socket_context : NULL;

    if (cn && cn->proxied && !cn->urh)
        unplace(h, cn);
    if (*con_cls) {
        wsd_rest_completed(*con_cls);
        *con_cls = NULL;
        /* Kept alive: the next request's head has the handshake deadline. */
        if (cn && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) {
            cn->asked = false;
            wsd_loop_timer(h->d->loop, &cn->deadline,
                           mcpgw__mono_ms() + h->d->conf->limits.handshake_timeout_ms);
        }
    }
    if (toe != MHD_REQUEST_TERMINATED_TIMEOUT_REACHED)
        return;
    mcpgw_log_info(C, "handshake from %s timed out",
                   ci && ci->socket_context ? ((struct conn *)ci->socket_context)->peer.addr : "?");
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    size_t n;

    vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    mcpgw_log_info(C, "libmicrohttpd: %s", line);
}

/* Every request's URI as sent, before MHD decodes it: an /api/v1 one gets
 * its context (the routes want the raw path and query), which MHD hands to
 * each access handler call and to on_completed. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    struct wsd_http *h = cls;

    (void)c;
    return wsd_rest_req_new(h->d->rest, uri);
}

static void on_mhd(struct wsd_watch *w, uint32_t events)
{
    struct wsd_http *h = (struct wsd_http *)((char *)w - offsetof(struct wsd_http, watch));

    MHD_run(h->mhd);
}

/* -- accepting ----------------------------------------------------------------------- */

static void pause_accepting(struct wsd_http *h)
{
    wsd_loop_unwatch(h->d->loop, &h->listen_w);
    if (wsd_loop_timer(h->d->loop, &h->accept_pause, mcpgw__mono_ms() + MCPGW_ACCEPT_PAUSE) < 0)
        mcpgw_log_error(C, "cannot time the accept pause on %s: no longer accepting", h->name);
}

static void on_accept_pause(struct mcpgw__timer *t)
{
    struct wsd_http *h = (struct wsd_http *)((char *)t - offsetof(struct wsd_http, accept_pause));

    if (h->listen_fd < 0)
        return;
    if (h->reserve_fd < 0)
        h->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (wsd_loop_watch(h->d->loop, &h->listen_w, h->listen_fd, EPOLLIN) < 0)
        pause_accepting(h);
}

/* EMFILE/ENFILE: give up the reserve descriptor for one accept and refuse
 * that connection with a 503.  1: one refused; 0: none was waiting after
 * all; -1: cannot (pause accepting). */
static int refuse_at_limit(struct wsd_http *h, int err)
{
    char drain[4096];
    int fd;

    if (h->reserve_fd < 0)
        return -1;
    close(h->reserve_fd);
    fd = accept4(h->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
        if (h->fd_refused++ == 0)
            mcpgw_log_warn(C, "out of file descriptors on %s (%s): refusing new connections "
                           "with 503", h->name, strerror(err));
        raw_answer(fd, "503 Service Unavailable", "Retry-After: 1\r\n",
                   MCPGW_CODE_SERVER_UNAVAILABLE,
                   "gateway is out of file descriptors: try again later");
        /* Read what the client sent before closing: closing with unread
         * bytes sends a reset, which can destroy the answer in flight. */
        shutdown(fd, SHUT_WR);
        (void)recv(fd, drain, sizeof(drain), MSG_DONTWAIT);
        close(fd);
    }
    h->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (h->reserve_fd < 0)
        return -1;
    return fd >= 0 ? 1 : 0;
}

static void on_listen(struct wsd_watch *w, uint32_t events)
{
    struct wsd_http *h = (struct wsd_http *)((char *)w - offsetof(struct wsd_http, listen_w));
    bool added = false;

    for (int i = 0; i < MCPGW_ACCEPT_BATCH && h->listen_fd >= 0; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(h->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int e = errno;

        if (fd < 0) {
            if (e == EAGAIN || e == EWOULDBLOCK)
                break;
            /* accept(2): a connection that failed before we took it, or a
             * network error for it alone; the next one may be fine. */
            if (e == EINTR || e == ECONNABORTED || e == EPROTO || e == ENETDOWN ||
                e == ENOPROTOOPT || e == EHOSTDOWN || e == ENONET || e == EHOSTUNREACH ||
                e == EOPNOTSUPP || e == ENETUNREACH || e == EPERM)
                continue;
            if ((e == EMFILE || e == ENFILE) && refuse_at_limit(h, e) >= 0)
                continue;
            if (!h->accept_paused)
                mcpgw_log_error(C, "cannot accept on %s: %s: pausing accepting for %d ms",
                                h->name, strerror(e), MCPGW_ACCEPT_PAUSE);
            h->accept_paused = true;
            pause_accepting(h);
            break;
        }
        h->accept_paused = false;
        /* On failure MHD closes the socket itself (its own connection
         * limits, the backstop above ours, or out of memory). */
        if (MHD_add_connection(h->mhd, fd, (struct sockaddr *)&ss, sl) == MHD_YES)
            added = true;
    }
    if (added)
        wsd_loop_defer(h->d->loop, &h->kick);
}

int wsd_http_start(struct wsd *d, int listen_fd, const char *name, struct wsd_http **out,
                   char *err, size_t errlen)
{
    const struct mcpgw_conf *conf = d->conf;
    struct wsd_http *h = calloc(1, sizeof(*h));
    const union MHD_DaemonInfo *di;
    struct sockaddr_un sun;
    socklen_t slen = sizeof(sun);
    unsigned timeout_s = (unsigned)((conf->limits.handshake_timeout_ms + 999) / 1000);
    struct rlimit rl;
    int rc;

    if (!h)
        return -ENOMEM;
    h->d = d;
    h->listen_fd = listen_fd;
    h->reserve_fd = -1;
    h->fd_mark = INT_MAX;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)INT_MAX)
        h->fd_mark = (int)rl.rlim_cur - MCPGW_FD_HEADROOM;
    wsd_watch_init(&h->watch, on_mhd);
    wsd_watch_init(&h->listen_w, on_listen);
    mcpgw__timer_init(&h->accept_pause, on_accept_pause);
    wsd_defer_init(&h->kick, on_kick);
    snprintf(h->name, sizeof(h->name), "%s", name);
    if (getsockname(listen_fd, (struct sockaddr *)&sun, &slen) == 0 && sun.sun_family == AF_UNIX)
        snprintf(h->unix_path, sizeof(h->unix_path), "%s", sun.sun_path);
    h->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_UPGRADE | MHD_USE_ITC | MHD_USE_ERROR_LOG |
            MHD_USE_NO_LISTEN_SOCKET | MHD_ALLOW_SUSPEND_RESUME, 0, accept_policy, h,
        on_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, h,
        MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(conf->limits.max_connections + MCPGW_CONN_REFUSE_SLACK),
        MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MCPGW_HTTP_CONN_MEMORY,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
        MHD_OPTION_STRICT_FOR_CLIENT, 1,
        MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1,
        MHD_OPTION_END);
    if (!h->mhd) {
        snprintf(err, errlen, "cannot start the HTTP server on %s", name);
        free(h);
        return MCPGW_ECONFIG;
    }
    di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!di || (rc = wsd_loop_watch(d->loop, &h->watch, di->epoll_fd, EPOLLIN)) < 0) {
        snprintf(err, errlen, "cannot watch the HTTP server's epoll fd");
        MHD_stop_daemon(h->mhd);
        free(h);
        return -EINVAL;
    }
    if ((rc = wsd_loop_watch(d->loop, &h->listen_w, listen_fd, EPOLLIN)) < 0) {
        snprintf(err, errlen, "cannot watch the listen socket on %s: %s", name,
                 mcpgw_strerror(rc));
        wsd_loop_unwatch(d->loop, &h->watch);
        MHD_stop_daemon(h->mhd);
        free(h);
        return rc;
    }
    h->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    *out = h;
    return 0;
}

int wsd_http_timeout(struct wsd_http *h)
{
    MHD_UNSIGNED_LONG_LONG t;

    h->had_timeout = MHD_get_timeout(h->mhd, &t) == MHD_YES;
    if (!h->had_timeout)
        return -1;
    return t > 3600000 ? 3600000 : (int)t;
}

void wsd_http_kick(struct wsd_http *h)
{
    wsd_loop_defer(h->d->loop, &h->kick);
}

void wsd_http_after_turn(struct wsd_http *h)
{
    if (h->had_timeout)
        MHD_run(h->mhd);
}

void wsd_http_quiesce(struct wsd_http *h)
{
    if (h->listen_fd < 0)
        return;
    wsd_loop_unwatch(h->d->loop, &h->listen_w);
    wsd_loop_timer_stop(h->d->loop, &h->accept_pause);
    close(h->listen_fd);
    h->listen_fd = -1;
    if (h->unix_path[0])
        unlink(h->unix_path);
    mcpgw_log_info(C, "stopped listening on %s", h->name);
}

void wsd_http_free(struct wsd_http *h)
{
    if (!h)
        return;
    wsd_http_quiesce(h);
    wsd_loop_unwatch(h->d->loop, &h->watch);
    wsd_loop_undefer(h->d->loop, &h->kick);
    /* Connections the REST workers resumed last leave MHD's suspended list
     * only in MHD_run(); stopping with one still there is an MHD_PANIC. */
    MHD_run(h->mhd);
    MHD_stop_daemon(h->mhd);
    if (h->reserve_fd >= 0)
        close(h->reserve_fd);
    free(h);
}

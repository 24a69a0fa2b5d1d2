/* wsd.h - mcpgw-wsd's shared state: one per process, loop thread only.
 *
 * main.c owns it; http.c (libmicrohttpd: handshakes, upgrades, connection
 * accounting), session.c (the typed protocol on each upgraded socket) and
 * rest.c (the /api/v1 routes) work on it.  Nothing here is thread-safe:
 * every callback that touches it runs on the loop thread (libmicrohttpd
 * runs in "external" epoll mode on that thread too; see main.c).  The REST
 * workers never touch it: they see only their own request (rest.h).
 */
#ifndef MCPGW_WSD_H
#define MCPGW_WSD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "conf.h"
#include "hub.h"
#include "limits.h"
#include "loop.h"
#include "quota.h"
#include "token.h"

#define WSD_COMPONENT "websocket"

/* Who a connection is.  Owned copies: a token store's entries live only
 * until the store is reloaded, connections live longer. */
enum wsd_auth_via {
    WSD_AUTH_NONE = 0,
    WSD_AUTH_HEADER,            /* Authorization: Bearer on the upgrade */
    WSD_AUTH_TICKET,            /* ?ticket= on the upgrade */
    WSD_AUTH_MESSAGE            /* an auth message */
};

struct wsd_ident {
    enum wsd_auth_via via;
    char *name;                 /* token name; NULL when not authenticated */
    char **scopes;              /* NULL-terminated */
    size_t nscopes;
    /* Which stored token it was (to find it again after a reload): its
     * display prefix and creation time; tickets carry only the name. */
    char prefix[24];
    time_t created;
    time_t expires;             /* 0: never */
};

/* Where a connection comes from, for limits and logs.  Behind a trusted
 * proxy (gateway.trustedProxies), addr is the client it forwarded for
 * (shared/peer.h) and via the proxy's own address. */
struct wsd_peer {
    char addr[64];              /* IP address as text, or "unix" */
    char via[64];               /* the trusted proxy; "" when direct */
    char user_agent[MCPGW_USER_AGENT_MAX + 1];  /* printable ASCII, cut */
};

struct wsd_session;
struct wsd_http;
struct wsd_publisher;
struct wsd_rest;

struct wsd {
    struct wsd_loop *loop;
    mcpgw_hub *hub;
    /* The hub's config (mcpgw_hub_conf), followed after each SIGHUP: the
     * hub keeps the configs it replaced, so none of them is freed early. */
    const struct mcpgw_conf *conf;
    mcpgw_tokens *tokens;
    mcpgw_quota *quota;         /* per-token limits, shared with the other gateway processes */
    struct wsd_publisher *publisher;    /* to the event stream; NULL: none */
    /* The /api/v1 routes on worker threads (rest.h: thread-safe inside);
     * NULL: not served (404 like any other path). */
    struct wsd_rest *rest;
    struct mcpgw_buf out;       /* scratch for encoding one message */
    struct wsd_defer *hub_kick; /* run a hub turn at the end of this one */

    struct wsd_session *sessions;   /* every upgraded connection */
    unsigned nsessions;
    unsigned conns;             /* HTTP connections incl. upgraded ones */
    struct wsd_iptab *ips;      /* connections per IP address */

    bool draining;              /* SIGTERM: no new calls or connections */
    bool closing;               /* every client is being closed */
    uint64_t next_client;       /* for client ids */
};

/* -- identities (session.c) -------------------------------------------------------- */

void wsd_ident_release(struct wsd_ident *id);       /* frees, zeroes; NULL-safe */
/* Copy a verified token's identity.  0 or -ENOMEM (id then unchanged). */
int wsd_ident_from_token(struct wsd_ident *id, const struct mcpgw_token_info *info,
                         enum wsd_auth_via via);
/* The identity as a token_info for mcpgw_token_allows(); borrows from id. */
void wsd_ident_as_token(const struct wsd_ident *id, struct mcpgw_token_info *out);

/* -- per-IP accounting (http.c) ---------------------------------------------------- */

struct wsd_iptab;
int wsd_iptab_new(struct wsd_iptab **out);
void wsd_iptab_free(struct wsd_iptab *t);
/* Adjust the count for addr by delta (+1/-1); returns the new count. */
unsigned wsd_iptab_add(struct wsd_iptab *t, const char *addr, int delta);

#endif

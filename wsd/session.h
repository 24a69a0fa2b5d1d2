/* session.h - the typed real-time protocol on one upgraded connection.
 *
 * A session owns its WebSocket (ws.h) and speaks docs/protocol.md on it,
 * every message through the codec (codec.h): status on connect, auth,
 * ping/pong, tool_call with tool_progress and one tool_response or error
 * per call, cancel, list_servers and list_tools.  Calls go to the daemon's
 * one hub; a connection may have up to limits.maxInFlightPerConnection of
 * them in flight, keyed by the client's id (its JSON text, so "7" and 7 are
 * different calls), answered in whatever order they finish.  When the
 * connection ends, its calls are cancelled upstream and nothing more is
 * sent.
 *
 * Loop thread only.
 */
#ifndef MCPGW_WSD_SESSION_H
#define MCPGW_WSD_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "wsd.h"

/* Start a session on the upgraded socket fd.  extra: bytes read past the
 * upgrade request (copied).  ident: what the handshake authenticated;
 * moved into the session on success (left zeroed), untouched on failure.
 * release(release_ud) is called once when the socket is no longer used and
 * must let it go (MHD_upgrade_action(CLOSE)); it is not called on failure.
 * 0, or -errno (then the caller still owns fd and must release it). */
int wsd_session_start(struct wsd *d, int fd, const char *extra, size_t extra_len,
                      const struct wsd_peer *peer, struct wsd_ident *ident,
                      void (*release)(void *release_ud), void *release_ud);

/* Tool calls in flight over all sessions. */
unsigned wsd_sessions_inflight(const struct wsd *d);

/* Cancel every call in flight (upstream too); each client gets an error
 * with code "cancelled" and the text why. */
void wsd_sessions_cancel_calls(struct wsd *d, const char *why);

/* Start closing every session with code and reason. */
void wsd_sessions_close(struct wsd *d, uint16_t code, const char *reason);

/* Check every authenticated session against d->tokens (after a reload) and
 * the clock: a connection whose token is gone, revoked or expired is closed
 * with 1008.  Scopes are refreshed from the store. */
void wsd_sessions_recheck(struct wsd *d);

/* Close (1008) the sessions whose token has expired by now (a cheap sweep
 * for the once-a-second tick; the store is not consulted). */
void wsd_sessions_expire(struct wsd *d, time_t now);

#endif

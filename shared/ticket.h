/* ticket.h - short-lived, single-use tickets for browsers.
 *
 * A browser cannot put an Authorization header on a WebSocket or an
 * EventSource, and a long-lived token must never sit in a URL (RFC 6750:
 * URLs end up in logs).  So an authenticated REST call (POST /api/v1/tickets)
 * trades the token for a ticket that is good once, for gateway.ticketTtlMs,
 * and carries the token's name and scopes; /ws?ticket= and
 * /api/v1/events?ticket= redeem it.
 *
 * Tickets must work across processes (issued by mcpgw-fcgi, redeemed by
 * mcpgw-wsd), so they live as files under <stateDir>/tickets/, named by the
 * SHA-256 of the ticket (the ticket itself is never stored), created mode
 * 0600.  Redeeming unlinks the file first and reads it after: of two
 * processes racing for one ticket exactly one wins.  Expired files are swept
 * on issue.
 *
 * Ticket text: "mcpgwt_" + 43 chars base64url of 32 random bytes.
 */
#ifndef MCPGW_TICKET_H
#define MCPGW_TICKET_H

#include <stddef.h>
#include <time.h>

#include "conf.h"
#include "token.h"

#define MCPGW_TICKET_LEN 50         /* strlen of a ticket */

/* What a redeemed ticket stands for: an owned copy of the issuing token's
 * name and scopes.  Release with mcpgw_ticket_info_release(). */
struct mcpgw_ticket_info {
    char *name;
    char **scopes;              /* NULL-terminated */
    size_t nscopes;
    time_t expires;             /* when the ticket (not the token) expires */
};

/* Issue a ticket for the verified identity who.  out gets the ticket,
 * NUL-terminated (outlen > MCPGW_TICKET_LEN).  0, or -errno with a message
 * in err (never containing a token or ticket). */
int mcpgw_ticket_issue(const struct mcpgw_conf *conf, const struct mcpgw_token_info *who,
                       char *out, size_t outlen, char *err, size_t errlen);

/* Redeem a ticket (len bytes).  0 and *info filled; MCPGW_EAUTH for a
 * malformed, unknown, used or expired ticket (all alike); -errno on I/O
 * failure. */
int mcpgw_ticket_redeem(const struct mcpgw_conf *conf, const char *ticket, size_t len,
                        struct mcpgw_ticket_info *info);

void mcpgw_ticket_info_release(struct mcpgw_ticket_info *info);

/* As a token_info for mcpgw_token_allows(); borrows from info. */
void mcpgw_ticket_as_token(const struct mcpgw_ticket_info *info, struct mcpgw_token_info *out);

#endif

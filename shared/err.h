/* err.h - the one error vocabulary of libmcpgw.
 *
 * Functions return 0 (or a count) on success and a negative code on failure:
 * -errno for system failures, MCPGW_E* (all below -1000) for our own.  The
 * library never prints and never aborts; detail goes through the logger.
 */
#ifndef MCPGW_ERR_H
#define MCPGW_ERR_H

#include <stddef.h>

enum {
    MCPGW_EBASE = -1000,
    MCPGW_ETOOBIG = -1001,          /* over a configured size limit */
    MCPGW_EPARSE = -1002,           /* not JSON, too deep, wrong shape */
    MCPGW_ETIMEDOUT = -1003,        /* call timed out (cancel was sent) */
    MCPGW_ECANCELED = -1004,        /* caller cancelled the call */
    MCPGW_ESERVERGONE = -1005,      /* server exited or was restarted mid-call */
    MCPGW_EUNAVAIL = -1006,         /* server backing off, disabled or failed to start */
    MCPGW_EUNKNOWNSERVER = -1007,   /* no such server in the config */
    MCPGW_EUNKNOWNTOOL = -1008,     /* server does not offer (or config hides) the tool */
    MCPGW_ERPC = -1009,             /* server answered with a JSON-RPC error */
    MCPGW_EBUSY = -1010,            /* in-flight or queue limit reached */
    MCPGW_ESHUTDOWN = -1011,        /* hub is stopping */
    MCPGW_ECONFIG = -1012,          /* invalid configuration */
    MCPGW_EAUTH = -1013,            /* token missing, unknown, revoked or expired */
    MCPGW_EFORBIDDEN = -1014,       /* token valid but scope does not allow it */
    MCPGW_EPROTO = -1015,           /* peer broke the protocol */
    MCPGW_EEXIST = -1016,           /* name already in use */
    MCPGW_ENOTFOUND = -1017,        /* named thing does not exist */
    MCPGW_ELAST = -1018
};

/* Static text for rc; never NULL.  Thread-safe. */
const char *mcpgw_strerror(int rc);

/* The protocol error code (docs/protocol.md) that best describes rc, e.g.
 * "timeout" for MCPGW_ETIMEDOUT; "internal" for anything unexpected. */
const char *mcpgw_err_code(int rc);

/* Write a one-line message into the (err, errlen) out-parameter that many
 * functions here take: NUL-terminated, cut to fit; nothing when err is NULL
 * or errlen 0. */
void mcpgw_errmsg(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

static const char *const texts[] = {
    [-(MCPGW_ETOOBIG - MCPGW_EBASE)] = "message too large",
    [-(MCPGW_EPARSE - MCPGW_EBASE)] = "malformed message",
    [-(MCPGW_ETIMEDOUT - MCPGW_EBASE)] = "call timed out",
    [-(MCPGW_ECANCELED - MCPGW_EBASE)] = "call cancelled",
    [-(MCPGW_ESERVERGONE - MCPGW_EBASE)] = "server exited during the call",
    [-(MCPGW_EUNAVAIL - MCPGW_EBASE)] = "server unavailable",
    [-(MCPGW_EUNKNOWNSERVER - MCPGW_EBASE)] = "unknown server",
    [-(MCPGW_EUNKNOWNTOOL - MCPGW_EBASE)] = "unknown tool",
    [-(MCPGW_ERPC - MCPGW_EBASE)] = "server returned an error",
    [-(MCPGW_EBUSY - MCPGW_EBASE)] = "too many calls in flight",
    [-(MCPGW_ESHUTDOWN - MCPGW_EBASE)] = "gateway is shutting down",
    [-(MCPGW_ECONFIG - MCPGW_EBASE)] = "invalid configuration",
    [-(MCPGW_EAUTH - MCPGW_EBASE)] = "authentication failed",
    [-(MCPGW_EFORBIDDEN - MCPGW_EBASE)] = "not allowed for this token",
    [-(MCPGW_EPROTO - MCPGW_EBASE)] = "protocol violation",
    [-(MCPGW_EEXIST - MCPGW_EBASE)] = "already exists",
    [-(MCPGW_ENOTFOUND - MCPGW_EBASE)] = "not found",
};

const char *mcpgw_strerror(int rc)
{
    if (rc >= 0)
        return "success";
    if (rc > MCPGW_EBASE)
        return strerror(-rc);   /* glibc's is thread-safe for valid errnos */
    if (rc > MCPGW_ELAST && texts[-(rc - MCPGW_EBASE)])
        return texts[-(rc - MCPGW_EBASE)];
    return "unknown error";
}

const char *mcpgw_err_code(int rc)
{
    switch (rc) {
    case MCPGW_ETOOBIG: return "too_large";
    case MCPGW_EPARSE: return "bad_request";
    case MCPGW_ETIMEDOUT: return "timeout";
    case MCPGW_ECANCELED: return "cancelled";
    case MCPGW_ESERVERGONE:
    case MCPGW_EPROTO:
    case MCPGW_EUNAVAIL:
    case MCPGW_ESHUTDOWN: return "server_unavailable";
    case MCPGW_EUNKNOWNSERVER: return "unknown_server";
    case MCPGW_EUNKNOWNTOOL: return "unknown_tool";
    case MCPGW_ERPC: return "tool_error";
    case MCPGW_EBUSY: return "rate_limited";
    case MCPGW_EAUTH: return "auth_failed";
    case MCPGW_EFORBIDDEN: return "forbidden";
    default: return "internal";
    }
}

void mcpgw_errmsg(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

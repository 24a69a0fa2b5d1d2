/* http.h - the transport-neutral view of one HTTP request and its response.
 *
 * The /api/v1 routes (routes.h) run on top of this and nothing else, so the
 * FastCGI responder, the CGI program and mcpgw-wsd's standalone mode serve
 * exactly the same routes: each front end fills a mcpgw_http_request from
 * its own representation (FastCGI params, CGI environment, MHD connection)
 * and implements the three calls of a mcpgw_http_writer.
 *
 * Header names passed to the lookup callback are lower case
 * ("authorization", "last-event-id"); an adapter maps them to its own form
 * (FastCGI/CGI: HTTP_AUTHORIZATION, CONTENT_TYPE).
 *
 * Response headers built here never contain CR, LF or NUL: anything
 * variable (tool names, messages) goes in the JSON body, escaped, never in a
 * header (response splitting, CVE-2024-42516 class).
 */
#ifndef MCPGW_HTTP_H
#define MCPGW_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

/* One request, borrowed by the routes for the duration of the handling call. */
struct mcpgw_http_request {
    const char *method;         /* "GET", "POST", ... */
    const char *path;           /* raw path, no query ("/api/v1/servers"); percent-encoded as sent */
    const char *query;          /* raw query without '?', or "" */
    /* Header value by lower-case name, or NULL; the value lives at least as
     * long as the request. */
    const char *(*header)(void *ud, const char *lname);
    void *header_ud;
    /* The body: content_length bytes (-1 unknown), read on demand with
     * read_body (returns bytes read, 0 at the end, < 0 on error).  read_body
     * NULL means no body. */
    long long content_length;
    ssize_t (*read_body)(void *ud, char *buf, size_t len);
    void *body_ud;
    const char *remote_addr;    /* for logs; may be NULL */
};

/* One response header line.  name and value must not contain CR/LF/NUL. */
struct mcpgw_http_header {
    const char *name, *value;
};

/* What a front end implements.  Every call returns 0 or < 0; < 0 from any
 * of them means the client is gone (or the connection broke): the route
 * stops and returns.  begin is called once, before any write. */
struct mcpgw_http_writer {
    int (*begin)(void *ud, int status, const struct mcpgw_http_header *h, size_t n);
    int (*write)(void *ud, const char *p, size_t n);
    int (*flush)(void *ud);
    void *ud;
    /* A descriptor that reports POLLHUP/POLLERR (and, when hangup_events
     * has POLLRDHUP, a read-side hang-up) once the client or the web server
     * in front is gone, polled by long streams between writes; -1 if the
     * front end has none.  FastCGI: the connection, POLLRDHUP (the web
     * server closes it when its client goes).  CGI: stdout, 0 (under
     * mod_cgid stdin and stdout are one socket, and the end of the request
     * body half-closes it). */
    int hangup_fd;
    short hangup_events;
};

/* "OK", "Not Found", ...; "Unknown" for codes not used here. */
const char *mcpgw_http_reason(int status);

/* Whether s may be a header value we send: printable ASCII and tabs only. */
bool mcpgw_http_header_value_ok(const char *s);

/* Look up a request header (NULL if absent or the request has no lookup). */
const char *mcpgw_http_header(const struct mcpgw_http_request *req, const char *lname);

/* The value of the first name=value in a query string, percent-decoded
 * ('+' is a space), into out (outlen bytes, NUL-terminated).  Returns its
 * length, -1 if name is absent, MCPGW_ETOOBIG if it does not fit, or
 * MCPGW_EPARSE for a bad %-escape or a decoded NUL. */
int mcpgw_http_query_get(const char *query, const char *name, char *out, size_t outlen);

/* Percent-decode a path into out (outlen bytes).  Refuses (MCPGW_EPARSE) a
 * decoded NUL, a '/' that was encoded, "." or ".." segments and "//";
 * MCPGW_ETOOBIG if it does not fit.  Returns the decoded length. */
int mcpgw_http_path_decode(const char *path, char *out, size_t outlen);

/* Whether a media-type header value (Content-Type) is type/subtype,
 * ignoring case and parameters ("application/json; charset=utf-8"). */
bool mcpgw_http_media_is(const char *value, const char *type);

/* Whether an Accept header lists type (with q > 0). */
bool mcpgw_http_accepts(const char *accept, const char *type);

/* Read the whole body into b (whose max is the size cap).  0, MCPGW_ETOOBIG
 * (more than b->max bytes: content_length says so, or the reads do),
 * -EIO when the body could not be read, -ENOMEM. */
int mcpgw_http_read_body(const struct mcpgw_http_request *req, struct mcpgw_buf *b);

/* Send a whole response: begin with status, the headers h[0..n) plus
 * Content-Type and Content-Length, then body.  0 or < 0 (client gone). */
int mcpgw_http_respond(const struct mcpgw_http_writer *w, int status, const char *content_type,
                       const struct mcpgw_http_header *h, size_t n, const char *body, size_t len);

/* Format the CGI/FastCGI response head ("Status: 200 OK\r\n", each header,
 * "\r\n") into out.  Headers with CR/LF/NUL are refused (-EINVAL) rather
 * than sent.  0, -EINVAL, MCPGW_ETOOBIG, -ENOMEM. */
int mcpgw_http_cgi_head(struct mcpgw_buf *out, int status, const struct mcpgw_http_header *h,
                        size_t n);

/* ---- CGI and FastCGI front ends ------------------------------------------ */

/* A request described by CGI meta-variables (RFC 3875), which FastCGI
 * params are too.  get(ud, "REQUEST_METHOD") returns a variable or NULL. */
struct mcpgw_http_cgi {
    const char *(*get)(void *ud, const char *name);
    void *ud;
    char path[2048];
};

/* The CGI name of a header: "last-event-id" -> "HTTP_LAST_EVENT_ID",
 * "content-type" -> "CONTENT_TYPE".  0, or MCPGW_ETOOBIG. */
int mcpgw_http_cgi_name(const char *lname, char *out, size_t outlen);

/* Fill req (all but read_body/body_ud) from c.  The path comes from
 * REQUEST_URI (what the client asked for, before any rewrite), else
 * SCRIPT_NAME + PATH_INFO; the query from QUERY_STRING.  req borrows c.
 * 0; MCPGW_EPARSE if CONTENT_LENGTH is present but not a number (answer
 * 400); MCPGW_ETOOBIG if the path is longer than c->path. */
int mcpgw_http_cgi_request(struct mcpgw_http_cgi *c, struct mcpgw_http_request *req);

#endif

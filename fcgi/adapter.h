/* adapter.h - one FastCGI request as the routes' request and writer.
 *
 * Threads: an adapter belongs to the thread serving the request; libfcgi's
 * streams are not shared.
 */
#ifndef MCPGW_FCGI_ADAPTER_H
#define MCPGW_FCGI_ADAPTER_H

#include <fcgiapp.h>

#include "buf.h"
#include "http.h"
#include "routes.h"

struct fcgi_adapter {
    FCGX_Request *rq;
    struct mcpgw_http_cgi cgi;
    struct mcpgw_http_request req;
    struct mcpgw_http_writer w;
    struct mcpgw_buf head;
    bool began;
    long long body_read;        /* FCGI_STDIN bytes the route has read */
};

/* Look at the head of the next request on the connection fd - its
 * FCGI_BEGIN_REQUEST and the whole PARAMS stream - without consuming it,
 * before libfcgi reads it: libfcgi allocates whatever a name or value
 * length claims.  True: the head is a responder request within
 * MCPGW_FCGI_HEAD_BYTES_MAX and MCPGW_FCGI_PARAMS_MAX, and FCGX_Accept_r
 * may read it.  False: the connection is done with - the request was
 * answered 431 (too large), or the head was malformed, never completed
 * within MCPGW_FCGI_HEAD_TIMEOUT, or stop_fd became readable - and the
 * caller closes fd.  Blocks; fd stays in blocking mode. */
bool fcgi_head_ok(int fd, int stop_fd);

/* Serve the request rq (accepted by FCGX_Accept_r) with the routes.
 * Answers 400 by itself for a request the routes cannot be given (bad
 * CONTENT_LENGTH, over-long path).  Does not finish the request. */
void fcgi_serve(mcpgw_routes *rt, FCGX_Request *rq);

/* Whether rq asks for an event stream. */
bool fcgi_is_stream(FCGX_Request *rq);

/* Finish rq without libfcgi's close (which select()s on the descriptor and
 * so aborts for descriptors >= FD_SETSIZE under _FORTIFY_SOURCE): ends the
 * FastCGI request, frees libfcgi's buffers, and - unless the web server
 * asked to keep the connection and it is healthy - closes it.  Returns
 * true if the connection was kept (rq->ipcFd stays open for the next
 * request). */
bool fcgi_finish(FCGX_Request *rq);

#endif

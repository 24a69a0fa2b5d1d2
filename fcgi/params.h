/* params.h - the FastCGI request head, checked before libfcgi reads it.
 *
 * libfcgi 2.4.2 allocates whatever a FastCGI name-value pair claims as its
 * length (up to 2^31 - 1 bytes) and counts params in an int that can wrap
 * (CVE-2025-23016).  mcpgw-fcgi therefore peeks at the records of each new
 * request - its FCGI_BEGIN_REQUEST and the whole FCGI_PARAMS stream - and
 * lets libfcgi read them only once this check says the head is a single
 * responder request of at most MCPGW_FCGI_PARAMS_MAX pairs and
 * MCPGW_FCGI_HEAD_BYTES_MAX bytes of names and values (fcgi_head_ok() in
 * adapter.c does the socket side; this file is the pure part, shared with
 * tests/check_fcgi_params.c and the fuzz target tests/fuzz/fuzz_fcgi_params.c).
 *
 * The check is incremental in the simplest way: it is given everything
 * received so far, from the first byte of the request, and says whether
 * more is needed.  Its verdict for a prefix is FCGI_HEAD_MORE or the
 * verdict for the whole; once a prefix decides, every longer one decides
 * the same (the first decisive record decides).
 *
 * Records (FastCGI 1.0, section 3.3): version 1, type, request id (16 bits,
 * big-endian), content length (16 bits), padding length, reserved; then
 * content and padding.  Name and value lengths in FCGI_PARAMS (section 3.4)
 * are one byte below 0x80, else four bytes with the top bit set; a length
 * may be split across records, as may names and values.
 */
#ifndef MCPGW_FCGI_PARAMS_H
#define MCPGW_FCGI_PARAMS_H

#include <stddef.h>

#define FCGI_VERSION_1 1
#define FCGI_T_BEGIN_REQUEST 1
#define FCGI_T_ABORT_REQUEST 2
#define FCGI_T_END_REQUEST 3
#define FCGI_T_PARAMS 4
#define FCGI_T_STDIN 5
#define FCGI_T_STDOUT 6
#define FCGI_T_STDERR 7
#define FCGI_T_GET_VALUES 9
#define FCGI_ROLE_RESPONDER 1
#define FCGI_HEADER_LEN 8

enum fcgi_head {
    FCGI_HEAD_MORE,             /* no verdict yet: read more */
    FCGI_HEAD_OK,               /* a complete head within the limits */
    FCGI_HEAD_TOO_LARGE,        /* a length, the pair count or the byte total is over a limit */
    FCGI_HEAD_BAD               /* not a responder request, multiplexed, or malformed */
};

/* What the check learnt; filled whatever the verdict. */
struct fcgi_head_info {
    unsigned req_id;            /* the request's id once its FCGI_BEGIN_REQUEST was seen, else 0 */
    size_t pairs;               /* name-value pairs whose two lengths were read */
    size_t bytes;               /* the bytes those lengths claim */
    size_t end;                 /* FCGI_HEAD_OK: bytes up to and including the empty
                                 * FCGI_PARAMS record (what libfcgi reads before the body) */
};

/* Check the records in p[0..n), which start at the first byte of a
 * request.  FCGI_GET_VALUES records (request id 0) before or between the
 * head's records are left to libfcgi, which answers them - unless their
 * pairs do not lie wholly inside them or number more than three (libfcgi
 * would allocate what the lengths claim, and overflow a stack buffer
 * answering four names: see params.c).  Any other record for id 0 makes
 * the head FCGI_HEAD_BAD (libfcgi leaks memory answering it).  The head
 * is FCGI_HEAD_BAD when a record's version is not 1, the first record of
 * the request is not an FCGI_BEGIN_REQUEST for the responder role with an
 * 8-byte body, a later one is for another request id or of another type
 * than FCGI_PARAMS (so no body and no abort before the params end), or the
 * empty FCGI_PARAMS record ends the stream inside a length, a name or a
 * value.  info may be NULL. */
enum fcgi_head fcgi_params_check(const unsigned char *p, size_t n, struct fcgi_head_info *info);

/* "more", "ok", "too large", "malformed". */
const char *fcgi_head_name(enum fcgi_head h);

#endif

/* log.h - one logger for every program and the library.
 *
 * One line per event: ISO-8601 UTC time with ms, level, component, message:
 *   2026-11-26T01:02:03.456Z INFO  dispatch: server 'memory' ready (9 tools)
 * Components in use: websocket, sse, fcgi, dispatch, config, token, cli,
 * server:<id> (an MCP server's stderr).  Messages follow git's style:
 * lowercase, no full stop, the subject quoted.  Never log a token or a
 * request body at info level.
 *
 * Until a program calls mcpgw_log_open() or sets a sink, nothing is written:
 * the library never prints on its own.  Every call is thread-safe; a line is
 * written with one write(2) on an O_APPEND fd, so lines from many processes
 * sharing the file do not interleave.
 */
#ifndef MCPGW_LOG_H
#define MCPGW_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum mcpgw_log_level {
    MCPGW_LOG_ERROR = 0,
    MCPGW_LOG_WARN = 1,
    MCPGW_LOG_INFO = 2,
    MCPGW_LOG_DEBUG = 3
};

/* A sink gets the finished line (no trailing newline) and its length. */
typedef void (*mcpgw_log_sink)(void *ud, int level, const char *line, size_t len);

/* Open (creating, mode 0640, and creating the parent directory) path for
 * appending.  path NULL: no file.  to_stderr: also copy lines at or above
 * stderr_level to stderr.  Returns 0 or -errno (then nothing changes). */
int mcpgw_log_open(const char *path, int level, bool to_stderr, int stderr_level);
/* Reopen the same path (after rotation, on SIGHUP).  0 or -errno. */
int mcpgw_log_reopen(void);
void mcpgw_log_close(void);
void mcpgw_log_set_level(int level);
/* An extra sink, e.g. a test collecting lines; NULL removes it. */
void mcpgw_log_set_sink(mcpgw_log_sink sink, void *ud);

bool mcpgw_log_enabled(int level);
void mcpgw_log(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "error", "warn", "info", "debug" -> level; -1 if unknown. */
int mcpgw_log_level_parse(const char *s);

#define mcpgw_log_error(c, ...) mcpgw_log(MCPGW_LOG_ERROR, c, __VA_ARGS__)
#define mcpgw_log_warn(c, ...)  mcpgw_log(MCPGW_LOG_WARN, c, __VA_ARGS__)
#define mcpgw_log_info(c, ...)  mcpgw_log(MCPGW_LOG_INFO, c, __VA_ARGS__)
#define mcpgw_log_debug(c, ...) do { if (mcpgw_log_enabled(MCPGW_LOG_DEBUG)) \
        mcpgw_log(MCPGW_LOG_DEBUG, c, __VA_ARGS__); } while (0)

#endif

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "limits.h"
#include "log.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;
static char *log_path;
static volatile int log_level = MCPGW_LOG_INFO;
static bool copy_stderr;
static int copy_stderr_level = MCPGW_LOG_WARN;
static mcpgw_log_sink extra_sink;
static void *extra_ud;

static const char *const level_names[] = { "ERROR", "WARN ", "INFO ", "DEBUG" };

static int mkdir_parent(const char *path)
{
    char *dir = strdup(path), *slash;
    int rc = 0;

    if (!dir)
        return -ENOMEM;
    slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0750) == -1 && errno != EEXIST)
            rc = -errno;
    }
    free(dir);
    return rc;
}

static int open_file(const char *path)
{
    int fd, rc;

    rc = mkdir_parent(path);
    if (rc < 0)
        return rc;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    return fd == -1 ? -errno : fd;
}

int mcpgw_log_open(const char *path, int level, bool to_stderr, int stderr_level)
{
    int fd = -1;
    char *p = NULL;

    if (path) {
        p = strdup(path);
        if (!p)
            return -ENOMEM;
        fd = open_file(path);
        if (fd < 0) {
            free(p);
            return fd;
        }
    }
    pthread_mutex_lock(&lock);
    if (log_fd != -1)
        close(log_fd);
    free(log_path);
    log_fd = fd;
    log_path = p;
    log_level = level;
    copy_stderr = to_stderr;
    copy_stderr_level = stderr_level;
    pthread_mutex_unlock(&lock);
    return 0;
}

int mcpgw_log_reopen(void)
{
    int fd, rc = 0;

    pthread_mutex_lock(&lock);
    if (log_path) {
        fd = open_file(log_path);
        if (fd < 0) {
            rc = fd;
        } else {
            close(log_fd);
            log_fd = fd;
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

void mcpgw_log_close(void)
{
    pthread_mutex_lock(&lock);
    if (log_fd != -1)
        close(log_fd);
    log_fd = -1;
    free(log_path);
    log_path = NULL;
    copy_stderr = false;
    pthread_mutex_unlock(&lock);
}

void mcpgw_log_set_level(int level)
{
    log_level = level;
}

void mcpgw_log_set_sink(mcpgw_log_sink sink, void *ud)
{
    pthread_mutex_lock(&lock);
    extra_sink = sink;
    extra_ud = ud;
    pthread_mutex_unlock(&lock);
}

bool mcpgw_log_enabled(int level)
{
    return level <= log_level;
}

int mcpgw_log_level_parse(const char *s)
{
    static const char *const names[] = { "error", "warn", "info", "debug" };

    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* Control characters in a message (a server's stderr, a tool name) would
 * let one event forge another log line; they are shown as '?'. */
static void scrub(char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            s[i] = '?';
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

void mcpgw_log(int level, const char *component, const char *fmt, ...)
{
    char line[MCPGW_LOG_LINE_MAX + 2];
    struct timespec ts;
    struct tm tm;
    size_t off, msg_off;
    int n;
    va_list ap;

    if (level > log_level || level < 0)
        return;
    if (log_fd == -1 && !copy_stderr && !extra_sink)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    off = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line + off, sizeof(line) - off, ".%03ldZ %s %s: ",
                 ts.tv_nsec / 1000000, level_names[level], component);
    off += (size_t)n;
    msg_off = off;
    va_start(ap, fmt);
    n = vsnprintf(line + off, MCPGW_LOG_LINE_MAX - off, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= MCPGW_LOG_LINE_MAX - off) {
        off = MCPGW_LOG_LINE_MAX - 1;
        memcpy(line + off - 5, "[...]", 5);
    } else {
        off += (size_t)n;
    }
    scrub(line + msg_off, off - msg_off);

    pthread_mutex_lock(&lock);
    if (extra_sink)
        extra_sink(extra_ud, level, line, off);
    line[off] = '\n';
    if (log_fd != -1)
        write_all(log_fd, line, off + 1);
    if (copy_stderr && level <= copy_stderr_level)
        write_all(STDERR_FILENO, line, off + 1);
    pthread_mutex_unlock(&lock);
}

/* bench_rest_client - REST tool-call load: N keep-alive HTTP/1.1 clients.
 *
 *   bench_rest_client --port P [--host 127.0.0.1] [--clients 64] [--seconds 10]
 *                     [--token T] [--server everything] [--tool echo]
 *
 * Each client thread holds one keep-alive connection and sends
 * POST /api/v1/tools/call {"serverId","toolName":"echo","params":{"message":…}}
 * back to back, reading each response by its Content-Length (or to the end
 * of a chunked body).  Prints one line:
 *   calls/s=N ok=N failed=N p50_ms=X p99_ms=Y clients=N seconds=S
 * A call counts as ok on status 200 with "success":true.  Used by
 * bench/bench_rest.sh; not a test.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LAT_MAX 2000000

static const char *host = "127.0.0.1", *token = "", *server = "everything", *tool = "echo";
static int port, clients = 64, seconds = 10;
static atomic_bool stop;
static atomic_long ok_calls, failed_calls;
static uint32_t *lat_us;            /* latencies of ok calls */
static atomic_long nlat;

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int connect_to(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

    if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Read one response into buf (cap bytes); returns the status, or -1 when
 * the connection broke; *success is whether the body said so; *keep is
 * whether the connection may be reused. */
static int read_response(int fd, char *buf, size_t cap, size_t *have, bool *success, bool *keep)
{
    size_t len = *have;
    char *hend;
    long clen = -1;
    int status;

    for (;;) {
        buf[len] = '\0';
        if ((hend = strstr(buf, "\r\n\r\n")))
            break;
        if (len + 1 >= cap)
            return -1;
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r <= 0)
            return -1;
        len += (size_t)r;
    }
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    *keep = true;
    for (char *l = strstr(buf, "\r\n") + 2; l < hend; l = strstr(l, "\r\n") + 2) {
        if (strncasecmp(l, "Content-Length:", 15) == 0)
            clen = strtol(l + 15, NULL, 10);
        else if (strncasecmp(l, "Connection: close", 17) == 0)
            *keep = false;
        else if (strncasecmp(l, "Transfer-Encoding: chunked", 26) == 0)
            clen = -2;
    }
    size_t body = (size_t)(hend + 4 - buf);
    if (clen == -2) {
        /* Chunked: read until the terminating "0\r\n\r\n". */
        while (!strstr(buf + body, "\r\n0\r\n\r\n") && strncmp(buf + body, "0\r\n\r\n", 5) != 0) {
            if (len + 1 >= cap)
                return -1;
            ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
            if (r <= 0)
                return -1;
            len += (size_t)r;
            buf[len] = '\0';
        }
        *success = strstr(buf + body, "\"success\":true") != NULL;
        *have = 0;
        return status;
    }
    if (clen < 0)
        return -1;
    while (len < body + (size_t)clen) {
        if (len + 1 >= cap)
            return -1;
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r <= 0)
            return -1;
        len += (size_t)r;
    }
    buf[len] = '\0';
    *success = strstr(buf + body, "\"success\":true") != NULL;
    /* Anything past this response belongs to the next one. */
    memmove(buf, buf + body + clen, len - body - (size_t)clen);
    *have = len - body - (size_t)clen;
    return status;
}

static void *client_main(void *arg)
{
    long id = (long)arg, i = 0;
    char req[2048], body[256], buf[65536];
    size_t have = 0;
    int fd = -1;

    while (!atomic_load(&stop)) {
        bool success = false, keep = true;
        int n, status;
        int64_t t0;

        if (fd < 0 && (fd = connect_to()) < 0) {
            atomic_fetch_add(&failed_calls, 1);
            usleep(10000);
            continue;
        }
        n = snprintf(body, sizeof(body), "{\"serverId\":\"%s\",\"toolName\":\"%s\","
                     "\"params\":{\"message\":\"bench %ld.%ld\"}}", server, tool, id, i++);
        n = snprintf(req, sizeof(req), "POST /api/v1/tools/call HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\n\r\n%s", host, port, token, n, body);
        t0 = now_us();
        if (!send_all(fd, req, (size_t)n) ||
            (status = read_response(fd, buf, sizeof(buf), &have, &success, &keep)) < 0) {
            close(fd);
            fd = -1;
            have = 0;
            atomic_fetch_add(&failed_calls, 1);
            continue;
        }
        if (status == 200 && success) {
            long k = atomic_fetch_add(&nlat, 1);

            atomic_fetch_add(&ok_calls, 1);
            if (k < LAT_MAX)
                lat_us[k] = (uint32_t)(now_us() - t0);
        } else {
            atomic_fetch_add(&failed_calls, 1);
        }
        if (!keep) {
            close(fd);
            fd = -1;
            have = 0;
        }
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "host", required_argument, NULL, 'H' }, { "port", required_argument, NULL, 'p' },
        { "clients", required_argument, NULL, 'c' }, { "seconds", required_argument, NULL, 's' },
        { "token", required_argument, NULL, 't' }, { "server", required_argument, NULL, 'S' },
        { "tool", required_argument, NULL, 'T' }, { NULL, 0, NULL, 0 }
    };
    pthread_t *th;
    int opt;
    long n;
    int64_t t0, t1;

    while ((opt = getopt_long(argc, argv, "H:p:c:s:t:S:T:", opts, NULL)) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'c': clients = atoi(optarg); break;
        case 's': seconds = atoi(optarg); break;
        case 't': token = optarg; break;
        case 'S': server = optarg; break;
        case 'T': tool = optarg; break;
        default:
            fprintf(stderr, "usage: bench_rest_client --port P [--host H] [--clients N] "
                    "[--seconds S] [--token T] [--server ID] [--tool NAME]\n");
            return 64;
        }
    }
    if (port <= 0 || clients <= 0 || seconds <= 0) {
        fprintf(stderr, "bench_rest_client: --port, --clients and --seconds must be positive\n");
        return 64;
    }
    lat_us = calloc(LAT_MAX, sizeof(*lat_us));
    th = calloc((size_t)clients, sizeof(*th));
    if (!lat_us || !th)
        return 1;
    t0 = now_us();
    for (long i = 0; i < clients; i++)
        pthread_create(&th[i], NULL, client_main, (void *)i);
    sleep((unsigned)seconds);
    atomic_store(&stop, true);
    t1 = now_us();
    for (int i = 0; i < clients; i++)
        pthread_join(th[i], NULL);
    n = atomic_load(&nlat);
    if (n > LAT_MAX)
        n = LAT_MAX;
    qsort(lat_us, (size_t)n, sizeof(*lat_us), cmp_u32);
    printf("calls/s=%.0f ok=%ld failed=%ld p50_ms=%.2f p99_ms=%.2f clients=%d seconds=%d\n",
           (double)atomic_load(&ok_calls) * 1e6 / (double)(t1 - t0), atomic_load(&ok_calls),
           atomic_load(&failed_calls), n ? lat_us[n / 2] / 1000.0 : 0.0,
           n ? lat_us[(size_t)((double)n * 0.99)] / 1000.0 : 0.0, clients, seconds);
    free(th);
    free(lat_us);
    return atomic_load(&ok_calls) > 0 ? 0 : 1;
}

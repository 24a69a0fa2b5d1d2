/* limits.h - every hard cap and default of the gateway, in one place.
 *
 * A config file may lower a limit but never raise it past its hard cap
 * (MCPGW_*_MAX).  Tests include this header, so a limit and the test that
 * proves it cannot drift apart.  All sizes are bytes, all times ms.
 */
#ifndef MCPGW_LIMITS_H
#define MCPGW_LIMITS_H

/* One JSON message: a WebSocket message, a REST body, one line an MCP server
 * writes on stdout.  The SDK's stdio transport dies silently on a line over
 * 10 MiB (mcp-stdio-facts §2), so what we write must stay under that too. */
#define MCPGW_MESSAGE_BYTES_DEFAULT   (4u * 1024 * 1024)
#define MCPGW_MESSAGE_BYTES_MAX       (64u * 1024 * 1024)
#define MCPGW_MESSAGE_BYTES_MIN       1024u
#define MCPGW_STDIO_WRITE_BYTES_MAX   (10u * 1024 * 1024 - 1024)

/* Nesting depth handed to json_tokener_new_ex(). */
#define MCPGW_JSON_DEPTH_DEFAULT      64
#define MCPGW_JSON_DEPTH_MAX          256
#define MCPGW_JSON_DEPTH_MIN          4

/* Per MCP server. */
#define MCPGW_SERVER_INFLIGHT_DEFAULT 256
#define MCPGW_SERVER_INFLIGHT_MAX     4096
#define MCPGW_CALL_TIMEOUT_DEFAULT    60000
#define MCPGW_CALL_TIMEOUT_MIN        100
#define MCPGW_CALL_TIMEOUT_MAX        3600000
#define MCPGW_START_TIMEOUT_DEFAULT   30000
#define MCPGW_START_TIMEOUT_MIN       100
#define MCPGW_START_TIMEOUT_MAX       600000
/* Restart back-off: delay doubles from initial up to max, with +-20% jitter,
 * and resets once the server has run this long without a failure. */
#define MCPGW_RESTART_INITIAL_DEFAULT 1000
#define MCPGW_RESTART_MAX_DEFAULT     300000
#define MCPGW_RESTART_DELAY_MIN       10
#define MCPGW_RESTART_DELAY_MAX       3600000
#define MCPGW_RESTART_RESET_DEFAULT   600000
/* Shutdown: close stdin, wait, SIGTERM the group, wait, SIGKILL. */
#define MCPGW_STOP_STDIN_GRACE        2000
#define MCPGW_STOP_TERM_GRACE         2000
/* A server whose settings a reload changed (mcpgw_hub_reload): calls in
 * flight on its old process may finish for this long (as long as wsd's
 * SIGTERM grace) before they fail and that process is stopped. */
#define MCPGW_RELOAD_GRACE            10000
/* Live MCP server processes on the whole host, across every gateway process
 * (slots.h): mod_fcgid may start many FastCGI processes, each with a hub. */
#define MCPGW_SERVER_PROCS_DEFAULT    64
#define MCPGW_SERVER_PROCS_MAX        4096
/* After a call times out, the server is pinged; one that does not answer
 * within this (or its callTimeoutMs, if shorter) is restarted: a server
 * that stopped reading would otherwise hold every later call until its
 * own timeout. */
#define MCPGW_PING_TIMEOUT            5000
/* Output bytes queued towards one server's stdin before calls get EBUSY. */
#define MCPGW_SERVER_OUTQ_MAX         (16u * 1024 * 1024)
/* Garbage lines from a server tolerated within the window before restart. */
#define MCPGW_GARBAGE_LINES_MAX       3
#define MCPGW_GARBAGE_WINDOW          60000
/* stderr of a server: one log line is cut at this length, and at most this
 * many lines per second reach the log (the rest are counted). */
#define MCPGW_STDERR_LINE_MAX         2048
#define MCPGW_STDERR_LINES_PER_SEC    50
/* tools/list pages followed before giving up on a server's nextCursor loop. */
#define MCPGW_TOOLS_PAGES_MAX         64

/* Configuration. */
#define MCPGW_SERVERS_MAX             256
#define MCPGW_SERVER_ID_MAX           64
/* An MCP tool name: 1..128 of [A-Za-z0-9_.-] (MCP spec, tool names). */
#define MCPGW_TOOL_NAME_MAX           128
#define MCPGW_ARGS_MAX                256
#define MCPGW_ENV_MAX                 128
/* mcpServers.<id>.user: a POSIX account name; the supplementary groups a
 * child gets (more are refused rather than silently dropped). */
#define MCPGW_USER_NAME_MAX           32
#define MCPGW_SPAWN_GROUPS_MAX        64
/* mcpServers.<id>.resourceLimits.  Floors keep a typo from starving a
 * server outright (node alone needs ~40 MB of data and ~20 fds). */
#define MCPGW_RLIMIT_FILES_MIN        32
#define MCPGW_RLIMIT_FILES_MAX        1048576
#define MCPGW_RLIMIT_MEMORY_MIN       (64LL << 20)
#define MCPGW_RLIMIT_MEMORY_MAX       (1LL << 46)
#define MCPGW_RLIMIT_PROCS_MIN        1
#define MCPGW_RLIMIT_PROCS_MAX        4194304
#define MCPGW_RLIMIT_CPU_MIN          1
#define MCPGW_RLIMIT_CPU_MAX          31536000
#define MCPGW_CONFIG_BYTES_MAX        (1u * 1024 * 1024)
#define MCPGW_ORIGINS_MAX             64

/* Connections (front ends). */
#define MCPGW_CONNECTIONS_DEFAULT     10000
#define MCPGW_CONNECTIONS_MAX         100000
#define MCPGW_CONNECTIONS_PER_IP_DEFAULT 256
#define MCPGW_CONN_INFLIGHT_DEFAULT   64
#define MCPGW_CONN_INFLIGHT_MAX       1024
#define MCPGW_HEARTBEAT_DEFAULT       15000
#define MCPGW_HEARTBEAT_MIN           1000
#define MCPGW_HEARTBEAT_MAX           300000
#define MCPGW_HANDSHAKE_TIMEOUT_DEFAULT 10000
#define MCPGW_IDLE_TIMEOUT_DEFAULT    120000
#define MCPGW_TIMEOUT_MIN             100
#define MCPGW_TIMEOUT_MAX             3600000
/* A client's call id ("id" of a protocol message, codec.h): a string of
 * 1..this many bytes (or an integer). */
#define MCPGW_CALL_ID_MAX             128

/* WebSocket (wsd).  A silent peer is pinged every interval and dropped
 * after this many unanswered pings; a client's output queue stops its
 * reads over the high mark and closes it (1008) over the max. */
#define MCPGW_WS_PING_DEFAULT         30000
#define MCPGW_WS_PING_MIN             1000
#define MCPGW_WS_PING_MAX             600000
#define MCPGW_WS_MISSED_PONGS_DEFAULT 2
#define MCPGW_WS_MISSED_PONGS_MAX     10
#define MCPGW_WS_FRAGMENTS_DEFAULT    1024
#define MCPGW_WS_FRAGMENTS_MAX        65536
#define MCPGW_WS_OUTQ_HIGH_DEFAULT    (256u * 1024)
#define MCPGW_WS_OUTQ_MAX_DEFAULT     (1024u * 1024)
#define MCPGW_WS_OUTQ_MAX_MAX         (64u * 1024 * 1024)
#define MCPGW_WS_OUTQ_MIN             (16u * 1024)
#define MCPGW_WS_AUTH_FAILURES_DEFAULT 5
#define MCPGW_WS_AUTH_FAILURES_MAX    100
/* A paused client is read again once its queue is below this (the low mark). */
#define MCPGW_WS_OUTQ_LOW(high)       ((high) / 2)
/* Bytes read from and written to one client per loop turn (redis's 64 KiB
 * write budget), so one busy client cannot starve the others. */
#define MCPGW_WS_READ_BUDGET          (64u * 1024)
#define MCPGW_WS_WRITE_BUDGET         (64u * 1024)
/* Control frames (pongs) the frame library may queue for one client in one
 * turn before we stop reading it for that turn (ping floods). */
#define MCPGW_WS_QUEUED_FRAMES_MAX    256
/* After our close frame is out: how long the peer has to answer it (or hang
 * up) before the TCP connection is dropped. */
#define MCPGW_WS_CLOSE_TIMEOUT        5000
/* A WebSocket idle this long at a frame boundary gives back its frame
 * parser (wslay's context: about 9 KiB of fixed buffers), made again when
 * the next byte arrives or a message leaves. */
#define MCPGW_WS_PARK_AFTER           1000
/* Events waiting for wsd's publisher thread; past this the event store is
 * too far behind and further events are dropped (and counted). */
#define MCPGW_WS_EVENT_QUEUE_MAX      8192
/* ... and of their text (an event is at most MCPGW_EVENT_BYTES_MAX). */
#define MCPGW_WS_EVENT_QUEUE_BYTES    (16u * 1024 * 1024)
/* SIGTERM: how long calls in flight may still finish before they are
 * cancelled and every client is closed with 1001. */
#define MCPGW_WS_SHUTDOWN_GRACE       10000
/* wsd's HTTP side: memory for one request's head and our answer
 * (libmicrohttpd's MHD_OPTION_CONNECTION_MEMORY_LIMIT; a bigger head gets
 * 431).  MHD keeps, and touches, all of it for every upgraded connection
 * until the socket is released, so it is sized for a WebSocket handshake
 * (MHD reads into half of it: heads up to about 4 KiB), not for large
 * cookies or REST bodies.  Connections past
 * maxConnections or maxConnectionsPerIp still get a 503 saying why, up to
 * this many more, after which they are closed at accept; a User-Agent kept
 * for the logs is cut at this length. */
#define MCPGW_HTTP_CONN_MEMORY        (8u * 1024)
#define MCPGW_CONN_REFUSE_SLACK       64
#define MCPGW_USER_AGENT_MAX          200
/* wsd near the open-file limit (RLIMIT_NOFILE): a new connection whose
 * socket lands in the top MCPGW_FD_HEADROOM descriptors is refused with a
 * 503, so that spawning an MCP server (pipes, an errno pipe, a pidfd) and
 * reopening the log, token or event files still find descriptors.  At
 * EMFILE itself the refusal goes out through a reserve descriptor; if that
 * cannot be had back, accepting pauses this long.  At most
 * MCPGW_ACCEPT_BATCH connections are accepted per loop turn. */
#define MCPGW_FD_HEADROOM             32
#define MCPGW_ACCEPT_PAUSE            250
#define MCPGW_ACCEPT_BATCH            64

/* SSE streams.  A response ends itself (with a retry: hint) before
 * mod_fcgid's FcgidBusyTimeout (300 s) would kill it; EventSource then
 * reconnects and resumes with Last-Event-ID. */
#define MCPGW_SSE_STREAM_DEFAULT      240000
#define MCPGW_SSE_STREAM_MIN          1000
#define MCPGW_SSE_STREAM_MAX          86400000
#define MCPGW_SSE_RETRY_DEFAULT       2000
#define MCPGW_SSE_RETRY_MIN           100
#define MCPGW_SSE_RETRY_MAX           600000
#define MCPGW_SSE_STREAMS_DEFAULT     256
#define MCPGW_SSE_STREAMS_MAX         100000

/* FastCGI responder threads (each blocks on one request or stream). */
#define MCPGW_FCGI_THREADS_DEFAULT    16
#define MCPGW_FCGI_THREADS_MAX        1024
/* mcpgw-wsd's /api/v1 routes (standalone mode): REST requests run on a pool
 * of websocket.restThreads threads; at most BACKLOG per thread wait for
 * one, and past that a request gets 503 at once.  Event streams get a
 * thread each (small stack), up to sse.maxStreams.  A response's output
 * waits for the client in a queue of at most OUTQ bytes: a route that
 * writes faster blocks (its thread, not the loop). */
#define MCPGW_WSD_REST_THREADS_DEFAULT 16
#define MCPGW_WSD_REST_THREADS_MAX    1024
#define MCPGW_WSD_REST_BACKLOG        8
#define MCPGW_WSD_REST_OUTQ           (256u * 1024)
/* The head of a FastCGI request - FCGI_BEGIN_REQUEST and the PARAMS
 * stream, record framing included - is looked at before libfcgi reads it:
 * libfcgi allocates whatever a name or value length claims (up to 2 GiB,
 * and its sum overflows: CVE-2025-23016 is only half fixed).  A head over
 * these bytes or pairs is answered 431; one that takes longer than the
 * timeout to arrive is dropped.  Web servers send a few KiB (Apache's own
 * default caps request headers at 100 fields). */
#define MCPGW_FCGI_HEAD_BYTES_MAX     (64u * 1024)
#define MCPGW_FCGI_PARAMS_MAX         512
#define MCPGW_FCGI_HEAD_TIMEOUT       10000

/* Browser tickets (single use; a WebSocket/EventSource cannot send headers). */
#define MCPGW_TICKET_TTL_DEFAULT      60000
#define MCPGW_TICKET_TTL_MIN          1000
#define MCPGW_TICKET_TTL_MAX          600000

/* Event store retention (count, age, bytes). */
#define MCPGW_EVENTS_COUNT_DEFAULT    100000
#define MCPGW_EVENTS_COUNT_MAX        10000000
#define MCPGW_EVENTS_AGE_DEFAULT      86400000
#define MCPGW_EVENTS_AGE_MAX          604800000
#define MCPGW_EVENTS_BYTES_DEFAULT    (64u * 1024 * 1024)
#define MCPGW_EVENTS_BYTES_MIN        (64u * 1024)
#define MCPGW_EVENTS_BYTES_MAX        (1024u * 1024 * 1024)
/* One event's JSON text.  A tool_call event whose params would make it
 * larger is published without them ("paramsTruncated":true); any other
 * event over this is dropped and counted. */
#define MCPGW_EVENT_BYTES_MAX         (32u * 1024)
/* Publishing waits at most this long for the event store (the embedded
 * store's lock, the Redis connection and its answer); past it the event is
 * dropped and counted, and until the store answers again further events
 * wait at most 1 ms (file) or are dropped at once (Redis).  The lock is
 * held for microseconds: this bound is met only by a holder that is
 * stopped, or starved of CPU on an overloaded machine. */
#define MCPGW_EVENTS_PUBLISH_WAIT     200
/* An embedded-store reader that has seen the end looks at its file again
 * after this long even without a wake-up (inotify), so a wake-up lost for
 * any reason delays events by at most this, never until the next one. */
#define MCPGW_EVENTS_RECHECK_MS       1000
/* Most bytes of records one append writes with one pwrite (more records
 * go out in further writes under the same lock). */
#define MCPGW_EVENTS_WRITE_BATCH      (256u * 1024)
/* Redis backend: connecting, and the first and longest retry delays after
 * a failure. */
#define MCPGW_EVENTS_REDIS_CONNECT_TIMEOUT 200
#define MCPGW_EVENTS_RETRY_MIN        100
#define MCPGW_EVENTS_RETRY_MAX        5000

/* Tokens. */
#define MCPGW_TOKENS_MAX              4096
#define MCPGW_TOKEN_NAME_MAX          64
#define MCPGW_TOKEN_SCOPES_MAX        64
#define MCPGW_TOKEN_FILE_BYTES_MAX    (4u * 1024 * 1024)
/* <stateDir>/tool-pins.json: a 64-hex hash per tool of every server. */
#define MCPGW_PINS_FILE_BYTES_MAX     (4u * 1024 * 1024)
/* A presented token (auth message, header) longer than this is refused
 * without hashing it. */
#define MCPGW_TOKEN_BYTES_MAX         512

/* Per-token limits on tool calls (quota.h), host-wide: calls in flight, and
 * a rate (calls per second, with a burst).  Far above what one person's
 * agent does; they bound what one leaked or runaway token can take. */
#define MCPGW_TOKEN_CONCURRENT_DEFAULT 256
#define MCPGW_TOKEN_CONCURRENT_MAX    100000
#define MCPGW_TOKEN_RATE_DEFAULT      500
#define MCPGW_TOKEN_BURST_DEFAULT     1000
#define MCPGW_TOKEN_RATE_MAX          1000000
/* The quota table: entries (tokens calling at the same time; an idle one is
 * reused) and gateway processes sharing it (each owns a row of counters;
 * a process past this many keeps a table of its own). */
#define MCPGW_QUOTA_KEYS              MCPGW_TOKENS_MAX
#define MCPGW_QUOTA_PROCS             64

/* Clients behind reverse proxies (peer.h): at most this many
 * gateway.trustedProxies entries; X-Forwarded-For entries read from the
 * right (past them the leftmost read is the client); bytes of one entry
 * (an IPv6 address with brackets and a port is 47); bytes of the headers
 * examined before the header is taken as malformed. */
#define MCPGW_TRUSTED_PROXIES_MAX     64
#define MCPGW_FORWARDED_HOPS_MAX      16
#define MCPGW_FORWARDED_ENTRY_MAX     64
#define MCPGW_FORWARDED_SCAN_MAX      2048

/* Logging: one line is cut here (with a marker), so a huge value cannot
 * make a huge log line. */
#define MCPGW_LOG_LINE_MAX            4096

#endif

/* check_peer.c - the client's address behind trusted reverse proxies
 * (shared/peer.c).
 *
 * Proves: trustedProxies entries parse as addresses, blocks and "unix",
 * with host bits and prefix lengths checked; membership is by prefix, an
 * IPv4-mapped IPv6 address is the IPv4 address; an untrusted peer's
 * X-Forwarded-For is ignored whatever it says; behind a trusted peer the
 * list is read from the right and the first untrusted entry is the client,
 * so what a client writes into the header itself is never believed; several
 * header lines are one list; every trusted chain ends at its leftmost
 * entry or after MCPGW_FORWARDED_HOPS_MAX; ports, brackets and empty list
 * elements are understood; anything malformed, over-long or past the scan
 * bound falls back to the TCP peer; a unix-socket peer is trusted only
 * when listed; the answer is always NUL-terminated within outlen; and on
 * 20,000 pseudo-random client headers, the entry the proxy appends decides.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "limits.h"
#include "peer.h"

static struct mcpgw_netblock blocks[8];
static size_t nblocks;

static void trust(const char *const *list)
{
    char err[200];

    nblocks = 0;
    for (; *list; list++) {
        ck_assert_msg(mcpgw_peer_parse_block(*list, &blocks[nblocks], err, sizeof(err)) == 0,
                      "%s: %s", *list, err);
        nblocks++;
    }
}

/* The client for peer and the header lines (NULL-terminated). */
static enum mcpgw_peer_via client(const char *peer, const char *const *lines, char *out)
{
    size_t n = 0;

    while (lines && lines[n])
        n++;
    return mcpgw_peer_client(blocks, nblocks, peer, lines, n, out, MCPGW_PEER_ADDR_LEN);
}

#define XFF(...) ((const char *const[]){ __VA_ARGS__, NULL })

static const char *const proxy_only[] = { "127.0.0.1", NULL };
static const char *const local_default[] = { "127.0.0.0/8", "::1", "unix", NULL };

START_TEST(blocks_parse_and_refuse_with_reasons)
{
    struct mcpgw_netblock b;
    char err[200];
    uint8_t a[16];

    ck_assert_int_eq(mcpgw_peer_parse_block("10.0.0.0/8", &b, err, sizeof(err)), 0);
    ck_assert_uint_eq(b.bits, 104);
    ck_assert(!b.unix_socket);
    ck_assert_int_eq(mcpgw_peer_parse_block("2001:db8::/32", &b, err, sizeof(err)), 0);
    ck_assert_uint_eq(b.bits, 32);
    ck_assert_int_eq(mcpgw_peer_parse_block("192.0.2.7", &b, err, sizeof(err)), 0);
    ck_assert_uint_eq(b.bits, 128);
    ck_assert_int_eq(mcpgw_peer_parse_block("0.0.0.0/0", &b, err, sizeof(err)), 0);
    ck_assert_uint_eq(b.bits, 96);
    ck_assert_int_eq(mcpgw_peer_parse_block("::/0", &b, err, sizeof(err)), 0);
    ck_assert_uint_eq(b.bits, 0);
    ck_assert_int_eq(mcpgw_peer_parse_block("unix", &b, err, sizeof(err)), 0);
    ck_assert(b.unix_socket);

    ck_assert_int_eq(mcpgw_peer_parse_block("10.0.0.1/8", &b, err, sizeof(err)), MCPGW_ECONFIG);
    ck_assert_str_eq(err, "address bits are set after the 8-bit prefix (the block is "
                     "\"10.0.0.0/8\")");
    ck_assert_int_eq(mcpgw_peer_parse_block("2001:db8::1/32", &b, err, sizeof(err)),
                     MCPGW_ECONFIG);
    ck_assert_str_eq(err, "address bits are set after the 32-bit prefix (the block is "
                     "\"2001:db8::/32\")");
    ck_assert_int_eq(mcpgw_peer_parse_block("10.0.0.0/33", &b, err, sizeof(err)), MCPGW_ECONFIG);
    ck_assert_str_eq(err, "the prefix length after '/' must be 0 to 32");
    ck_assert_int_eq(mcpgw_peer_parse_block("::/129", &b, err, sizeof(err)), MCPGW_ECONFIG);
    ck_assert_str_eq(err, "the prefix length after '/' must be 0 to 128");
    ck_assert_int_eq(mcpgw_peer_parse_block("10.0.0.0/", &b, err, sizeof(err)), MCPGW_ECONFIG);
    ck_assert_int_eq(mcpgw_peer_parse_block("10.0.0.0/+8", &b, err, sizeof(err)), MCPGW_ECONFIG);
    ck_assert_int_eq(mcpgw_peer_parse_block("10.0.0.0/0008", &b, err, sizeof(err)),
                     MCPGW_ECONFIG);
    const char *const junk[] = { "localhost", "", "10.0.0", "10.0.0.0.0", "[::1]", "::1%lo",
                                 "127.0.0.1:80", "UNIX", " 127.0.0.1", "1.2.3.4/8/8" };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        ck_assert_msg(mcpgw_peer_parse_block(junk[i], &b, err, sizeof(err)) == MCPGW_ECONFIG,
                      "'%s' accepted", junk[i]);
        ck_assert_msg(err[0] != '\0', "no reason for '%s'", junk[i]);
    }
    /* No error buffer: still refused, nothing written. */
    ck_assert_int_eq(mcpgw_peer_parse_block("nope", &b, NULL, 0), MCPGW_ECONFIG);

    ck_assert(mcpgw_peer_parse_addr("192.0.2.1", 9, a));
    ck_assert_uint_eq(a[10], 0xff);
    ck_assert_uint_eq(a[12], 192);
    ck_assert(!mcpgw_peer_parse_addr("192.0.2.1", 8, a));     /* "192.0.2." */
    ck_assert(!mcpgw_peer_parse_addr("", 0, a));
}
END_TEST

START_TEST(membership_is_by_prefix_and_mapped_is_ipv4)
{
    static const char *const list[] = { "10.1.0.0/16", "2001:db8:ab00::/40", NULL };
    uint8_t a[16];

    trust(list);
#define IN(s) (mcpgw_peer_parse_addr(s, strlen(s), a) && mcpgw_peer_in(blocks, nblocks, a))
    ck_assert(IN("10.1.0.0"));
    ck_assert(IN("10.1.255.255"));
    ck_assert(!IN("10.2.0.0"));
    ck_assert(!IN("10.0.255.255"));
    ck_assert(IN("::ffff:10.1.2.3"));
    ck_assert(IN("2001:db8:abff:ffff::1"));
    ck_assert(!IN("2001:db8:ac00::"));
    ck_assert(!IN("::1"));
#undef IN
    /* No list, nothing trusted; unix blocks hold no IP address. */
    ck_assert(mcpgw_peer_parse_addr("10.1.0.1", 8, a));
    ck_assert(!mcpgw_peer_in(blocks, 0, a));
    trust((const char *const[]){ "unix", NULL });
    ck_assert(!mcpgw_peer_in(blocks, nblocks, a));
}
END_TEST

START_TEST(an_untrusted_peer_is_the_client_whatever_it_sends)
{
    char out[MCPGW_PEER_ADDR_LEN];

    trust(proxy_only);
    ck_assert_int_eq(client("203.0.113.9", XFF("198.51.100.1"), out), MCPGW_PEER_DIRECT);
    ck_assert_str_eq(out, "203.0.113.9");
    ck_assert_int_eq(client("127.0.0.2", XFF("127.0.0.9, 10.0.0.1"), out), MCPGW_PEER_DIRECT);
    ck_assert_str_eq(out, "127.0.0.2");
    ck_assert_int_eq(client("203.0.113.9", XFF("garbage"), out), MCPGW_PEER_DIRECT);
    ck_assert_str_eq(out, "203.0.113.9");
    /* Nothing is trusted: not even loopback. */
    nblocks = 0;
    ck_assert_int_eq(client("127.0.0.1", XFF("198.51.100.1"), out), MCPGW_PEER_DIRECT);
    ck_assert_str_eq(out, "127.0.0.1");
    /* The peer's own text is canonical: mapped IPv4 is IPv4. */
    ck_assert_int_eq(client("::ffff:192.0.2.5", NULL, out), MCPGW_PEER_DIRECT);
    ck_assert_str_eq(out, "192.0.2.5");
    ck_assert_int_eq(client("2001:DB8:0:0::1", NULL, out), MCPGW_PEER_DIRECT);
    ck_assert_str_eq(out, "2001:db8::1");
}
END_TEST

START_TEST(behind_a_trusted_peer_the_rightmost_untrusted_entry_wins)
{
    char out[MCPGW_PEER_ADDR_LEN];

    trust(proxy_only);
    /* What Apache and lighttpd send: the client's list, then their peer. */
    ck_assert_int_eq(client("127.0.0.1", XFF("198.51.100.7"), out), MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "198.51.100.7");
    ck_assert_int_eq(client("127.0.0.1", XFF("10.9.9.9, 198.51.100.7"), out),
                     MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "198.51.100.7");
    /* A client claiming to be a trusted proxy's client changes nothing. */
    ck_assert_int_eq(client("127.0.0.1", XFF("127.0.0.1, 1.2.3.4, 198.51.100.7"), out),
                     MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "198.51.100.7");
    /* Junk left of the client's address is never read. */
    ck_assert_int_eq(client("127.0.0.1", XFF("unknown, <script>, 198.51.100.7"), out),
                     MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "198.51.100.7");
    /* Chained trusted proxies: walk past each of them. */
    trust((const char *const[]){ "127.0.0.1", "10.0.0.0/8", NULL });
    ck_assert_int_eq(client("127.0.0.1", XFF("6.6.6.6, 192.0.2.44, 10.1.1.1, 10.2.2.2"), out),
                     MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "192.0.2.44");
    /* Several header lines are one list, the last line nearest. */
    ck_assert_int_eq(client("127.0.0.1", XFF("6.6.6.6, 192.0.2.44", "10.1.1.1", "10.2.2.2"), out),
                     MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "192.0.2.44");
    ck_assert_int_eq(client("127.0.0.1", XFF("192.0.2.44", "6.6.6.6"), out), MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "6.6.6.6");
    /* Every entry trusted: the leftmost is the client. */
    ck_assert_int_eq(client("127.0.0.1", XFF("10.3.3.3, 10.1.1.1"), out), MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "10.3.3.3");
    /* IPv6 peers and entries, mapped addresses. */
    trust(local_default);
    ck_assert_int_eq(client("::1", XFF("2001:db8::7"), out), MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "2001:db8::7");
    ck_assert_int_eq(client("::ffff:127.0.0.1", XFF("::ffff:198.51.100.3"), out),
                     MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "198.51.100.3");
}
END_TEST

START_TEST(ports_brackets_whitespace_and_empty_elements)
{
    char out[MCPGW_PEER_ADDR_LEN];

    trust(proxy_only);
    ck_assert_int_eq(client("127.0.0.1", XFF("198.51.100.7:51234"), out), MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "198.51.100.7");
    ck_assert_int_eq(client("127.0.0.1", XFF("[2001:db8::5]:443"), out), MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "2001:db8::5");
    ck_assert_int_eq(client("127.0.0.1", XFF("[2001:db8::5]"), out), MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "2001:db8::5");
    ck_assert_int_eq(client("127.0.0.1", XFF(" \t198.51.100.7 \t, ,127.0.0.1,, "), out),
                     MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "198.51.100.7");
    /* Only empty elements: as if there were no header. */
    ck_assert_int_eq(client("127.0.0.1", XFF(" , ,", ""), out), MCPGW_PEER_DIRECT);
    ck_assert_str_eq(out, "127.0.0.1");
    ck_assert_int_eq(client("127.0.0.1", NULL, out), MCPGW_PEER_DIRECT);
    ck_assert_str_eq(out, "127.0.0.1");
}
END_TEST

START_TEST(malformed_where_it_is_read_means_the_peer)
{
    static const char *const bad[] = {
        "unknown", "_hidden", "proxy.example", "198.51.100.7:", "198.51.100.7:65536",
        "198.51.100.7:80:80", "[198.51.100.7]", "[2001:db8::1", "[2001:db8::1]x", "[]",
        "2001:db8::1:443x", "1.2.3", "1.2.3.4.5", "fe80::1%eth0", "198.51.100.7 x",
        "198.51.100.7;", "\"198.51.100.7\"",
    };
    char out[MCPGW_PEER_ADDR_LEN], line[200];

    trust(proxy_only);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(client("127.0.0.1", XFF(bad[i]), out) == MCPGW_PEER_MALFORMED,
                      "'%s' was read as an address", bad[i]);
        ck_assert_str_eq(out, "127.0.0.1");
        /* Behind the trusted hop's entry it is read too... */
        snprintf(line, sizeof(line), "%s, 127.0.0.1", bad[i]);
        ck_assert_int_eq(client("127.0.0.1", XFF(line), out), MCPGW_PEER_MALFORMED);
        ck_assert_str_eq(out, "127.0.0.1");
        /* ...but never left of an untrusted one. */
        snprintf(line, sizeof(line), "%s, 192.0.2.1", bad[i]);
        ck_assert_int_eq(client("127.0.0.1", XFF(line), out), MCPGW_PEER_FORWARDED);
        ck_assert_str_eq(out, "192.0.2.1");
    }
}
END_TEST

START_TEST(bounded_hops_entry_length_and_scan)
{
    char out[MCPGW_PEER_ADDR_LEN], want[32], *line;
    size_t cap = 64 * 1024, n = 0;

    trust((const char *const[]){ "10.0.0.0/8", "127.0.0.1", NULL });
    /* A chain of trusted hops: the walk stops after the cap, at the entry
     * it read last. */
    line = malloc(cap);
    ck_assert_ptr_nonnull(line);
    n += (size_t)snprintf(line + n, cap - n, "192.0.2.1");
    for (int i = MCPGW_FORWARDED_HOPS_MAX + 4; i > 0; i--)
        n += (size_t)snprintf(line + n, cap - n, ", 10.0.0.%d", i);
    ck_assert_int_eq(client("127.0.0.1", XFF(line), out), MCPGW_PEER_FORWARDED);
    snprintf(want, sizeof(want), "10.0.0.%d", MCPGW_FORWARDED_HOPS_MAX);
    ck_assert_str_eq(out, want);
    /* An entry over the per-entry cap is malformed, even if mostly space. */
    memset(line, '0', MCPGW_FORWARDED_ENTRY_MAX + 1);
    memcpy(line, "192.0.2.1:", 10);
    line[MCPGW_FORWARDED_ENTRY_MAX + 1] = '\0';
    ck_assert_int_eq(client("127.0.0.1", XFF(line), out), MCPGW_PEER_MALFORMED);
    /* A huge run of empty elements or spaces stops at the scan bound. */
    memset(line, ',', cap - 1);
    line[cap - 1] = '\0';
    memcpy(line, "192.0.2.1", 9);
    ck_assert_int_eq(client("127.0.0.1", XFF(line), out), MCPGW_PEER_MALFORMED);
    ck_assert_str_eq(out, "127.0.0.1");
    memset(line, ' ', cap - 1);
    memcpy(line, "192.0.2.1,", 10);
    ck_assert_int_eq(client("127.0.0.1", XFF(line), out), MCPGW_PEER_MALFORMED);
    /* Within the bound, the same shape is fine. */
    memset(line, ' ', MCPGW_FORWARDED_SCAN_MAX / 2);
    memcpy(line, "192.0.2.1,", 10);
    line[MCPGW_FORWARDED_SCAN_MAX / 2] = '\0';
    ck_assert_int_eq(client("127.0.0.1", XFF(line), out), MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "192.0.2.1");
    free(line);
}
END_TEST

START_TEST(unix_socket_peers_are_trusted_only_when_listed)
{
    char out[MCPGW_PEER_ADDR_LEN];

    trust(proxy_only);
    ck_assert_int_eq(client("unix", XFF("198.51.100.7"), out), MCPGW_PEER_DIRECT);
    ck_assert_str_eq(out, "unix");
    trust(local_default);
    ck_assert_int_eq(client("unix", XFF("198.51.100.7"), out), MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "198.51.100.7");
    ck_assert_int_eq(client("unix", NULL, out), MCPGW_PEER_DIRECT);
    ck_assert_str_eq(out, "unix");
    ck_assert_int_eq(client("unix", XFF("junk"), out), MCPGW_PEER_MALFORMED);
    ck_assert_str_eq(out, "unix");
    ck_assert(mcpgw_peer_trusted(blocks, nblocks, "unix"));
    ck_assert(mcpgw_peer_trusted(blocks, nblocks, "127.0.0.5"));
    ck_assert(mcpgw_peer_trusted(blocks, nblocks, "::ffff:127.0.0.5"));
    ck_assert(!mcpgw_peer_trusted(blocks, nblocks, "192.0.2.1"));
    ck_assert(!mcpgw_peer_trusted(blocks, nblocks, "localhost"));
    ck_assert(!mcpgw_peer_trusted(blocks, nblocks, NULL));
    trust(proxy_only);
    ck_assert(!mcpgw_peer_trusted(blocks, nblocks, "unix"));
    /* Not an address, not "unix": copied, never trusted. */
    ck_assert_int_eq(client(NULL, XFF("198.51.100.7"), out), MCPGW_PEER_DIRECT);
    ck_assert_str_eq(out, "?");
}
END_TEST

START_TEST(the_answer_fits_outlen)
{
    char out[8];

    trust(proxy_only);
    memset(out, 'x', sizeof(out));
    ck_assert_int_eq(mcpgw_peer_client(blocks, nblocks, "127.0.0.1",
                                       XFF("2001:db8:1234:5678:9abc:def0:1234:5678"), 1, out,
                                       sizeof(out)),
                     MCPGW_PEER_FORWARDED);
    ck_assert_str_eq(out, "2001:db");
}
END_TEST

/* Whatever a client writes into its own X-Forwarded-For, the entry its
 * trusted proxy appends decides; and on any input the answer is one of
 * the three, NUL-terminated, and an address or the peer.  20,000
 * pseudo-random headers (fixed seed: a failure reproduces). */
START_TEST(random_client_headers_never_decide)
{
    static const char alphabet[] = "0123456789abcdef.:[], \t";
    char client_part[400], line[520], out[MCPGW_PEER_ADDR_LEN];
    uint32_t seed = 12345;
    uint8_t a[16];

    trust(local_default);
    for (int iter = 0; iter < 20000; iter++) {
        size_t n;

        seed = seed * 1103515245u + 12345u;
        n = (seed >> 16) % (sizeof(client_part) - 1);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            /* Mostly the alphabet of addresses and lists, sometimes any byte. */
            client_part[i] = (seed >> 24) < 240 ?
                             alphabet[(seed >> 16) % (sizeof(alphabet) - 1)] :
                             (char)(1 + (seed >> 16) % 255);
        }
        client_part[n] = '\0';

        /* The header as the client sent it, read from a trusted peer. */
        enum mcpgw_peer_via v = client("127.0.0.1", XFF(client_part), out);
        ck_assert(v == MCPGW_PEER_DIRECT || v == MCPGW_PEER_FORWARDED || v == MCPGW_PEER_MALFORMED);
        ck_assert_uint_lt(strlen(out), MCPGW_PEER_ADDR_LEN);
        if (v == MCPGW_PEER_FORWARDED)
            ck_assert_msg(mcpgw_peer_parse_addr(out, strlen(out), a), "'%s' from '%s'", out,
                          client_part);
        else
            ck_assert_str_eq(out, "127.0.0.1");
        /* From an untrusted peer: always the peer. */
        ck_assert_int_eq(client("192.0.2.200", XFF(client_part), out), MCPGW_PEER_DIRECT);
        ck_assert_str_eq(out, "192.0.2.200");
        /* With the proxy's own entry appended, as Apache and lighttpd do:
         * that entry, whatever came before it. */
        snprintf(line, sizeof(line), "%s, 198.51.100.77", client_part);
        ck_assert_msg(client("127.0.0.1", XFF(line), out) == MCPGW_PEER_FORWARDED, "'%s'", line);
        ck_assert_str_eq(out, "198.51.100.77");
        /* Or as a header line of its own after the client's. */
        ck_assert_int_eq(client("127.0.0.1", XFF(client_part, "198.51.100.77"), out),
                         MCPGW_PEER_FORWARDED);
        ck_assert_str_eq(out, "198.51.100.77");
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("peer");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, blocks_parse_and_refuse_with_reasons);
    tcase_add_test(tc, membership_is_by_prefix_and_mapped_is_ipv4);
    tcase_add_test(tc, an_untrusted_peer_is_the_client_whatever_it_sends);
    tcase_add_test(tc, behind_a_trusted_peer_the_rightmost_untrusted_entry_wins);
    tcase_add_test(tc, ports_brackets_whitespace_and_empty_elements);
    tcase_add_test(tc, malformed_where_it_is_read_means_the_peer);
    tcase_add_test(tc, bounded_hops_entry_length_and_scan);
    tcase_add_test(tc, unix_socket_peers_are_trusted_only_when_listed);
    tcase_add_test(tc, the_answer_fits_outlen);
    tcase_add_test(tc, random_client_headers_never_decide);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

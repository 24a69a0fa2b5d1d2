/* wsd_events - print the event stream's retained events, for wsd's tests.
 *
 *   wsd_events CONFIG
 *
 * Opens the configured store (gateway.events) with the library's reader,
 * from the start of what is retained, and prints each event's JSON on a
 * line of its own until none is left.  Exit 1 with a message on failure.
 */
#include "config.h"

#include <stdio.h>

#include "conf.h"
#include "events.h"

int main(int argc, char **argv)
{
    struct mcpgw_conf *conf = NULL;
    mcpgw_events *ev = NULL;
    mcpgw_events_reader *r = NULL;
    struct mcpgw_event e;
    char err[512];
    int rc = 1, n;

    if (argc != 2) {
        fprintf(stderr, "usage: wsd_events CONFIG\n");
        return 64;
    }
    if (mcpgw_conf_load(argv[1], &conf, err, sizeof(err)) < 0 ||
        mcpgw_events_open(conf, &ev, err, sizeof(err)) < 0) {
        fprintf(stderr, "wsd_events: %s\n", err);
        goto out;
    }
    /* "0" sorts before every id the embedded store hands out. */
    if (mcpgw_events_reader_open(ev, "0", &r) < 0) {
        fprintf(stderr, "wsd_events: cannot open a reader\n");
        goto out;
    }
    while ((n = mcpgw_events_read(r, &e, 200)) == 1)
        printf("%.*s\n", (int)e.json_len, e.json);
    if (n < 0) {
        fprintf(stderr, "wsd_events: read failed\n");
        goto out;
    }
    rc = 0;
out:
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
    mcpgw_conf_free(conf);
    return rc;
}

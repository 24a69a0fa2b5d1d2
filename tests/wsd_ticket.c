/* wsd_ticket - issue a browser ticket for a stored token, for wsd's tests.
 *
 *   wsd_ticket CONFIG TOKEN-NAME
 *
 * Prints one ticket (mcpgwt_...) for the active token named TOKEN-NAME in
 * the config's token file, through mcpgw_ticket_issue() - what POST
 * /api/v1/tickets does after verifying the caller's token - so the tests
 * of /ws?ticket= need no web server.  Exit 1 with a message on failure.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "ticket.h"
#include "token.h"

int main(int argc, char **argv)
{
    struct mcpgw_conf *conf = NULL;
    mcpgw_tokens *tokens = NULL;
    struct mcpgw_token_info info;
    char err[512], ticket[MCPGW_TICKET_LEN + 1];
    bool found = false;
    int rc = 1;

    if (argc != 3) {
        fprintf(stderr, "usage: wsd_ticket CONFIG TOKEN-NAME\n");
        return 64;
    }
    if (mcpgw_conf_load(argv[1], &conf, err, sizeof(err)) < 0 ||
        mcpgw_tokens_load(conf->token_file, &tokens, err, sizeof(err)) < 0) {
        fprintf(stderr, "wsd_ticket: %s\n", err);
        goto out;
    }
    for (size_t i = 0; mcpgw_tokens_get(tokens, i, &info); i++) {
        if (strcmp(info.name, argv[2]) == 0 && !info.revoked &&
            (!info.expires || info.expires > time(NULL))) {
            found = true;
            break;
        }
    }
    if (!found) {
        fprintf(stderr, "wsd_ticket: no active token named '%s'\n", argv[2]);
        goto out;
    }
    if (mcpgw_ticket_issue(conf, &info, ticket, sizeof(ticket), err, sizeof(err)) < 0) {
        fprintf(stderr, "wsd_ticket: %s\n", err);
        goto out;
    }
    printf("%s\n", ticket);
    rc = 0;
out:
    mcpgw_tokens_free(tokens);
    mcpgw_conf_free(conf);
    return rc;
}

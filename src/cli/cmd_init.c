/*
 * cmd_init.c - custos init --data DIR [--schema FILE] [--policy FILE] [--origin NAME]
 *
 * Prints what it created, the admin secret (once), and the admin token alone
 * on the last line of stdout, so scripts can take it with `tail -n1`.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cli/cli.h"

#include "custos/banned.h"

static const char help[] =
    "usage: custos init --data DIR [--schema FILE] [--policy FILE] [--origin NAME]\n"
    "\n"
    "Create a new vault in DIR (made 0700; an existing vault is never overwritten):\n"
    "a random 256-bit master key and the ledger's Ed25519 key in DIR/keys (0600),\n"
    "the databases, and an 'admin' principal.  Prints the admin secret (shown once)\n"
    "and, alone on the last line, a first admin token (valid 15 minutes).\n"
    "\n"
    "  --schema FILE   field schema (docs/schema.md); default: the built-in schema\n"
    "  --policy FILE   roles and purposes (docs/policy.md), added to the built-in ones\n"
    "  --origin NAME   ledger origin / checkpoint key name; default custos.local/<random>\n";

static enum custos_err slurp(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *b;
    size_t n;

    *out = NULL;
    if (!f)
        return custos_err_set(CUSTOS_ERR_IO, "cannot read %s", path);
    b = malloc((1 << 20) + 1);
    if (!b) {
        fclose(f);
        return CUSTOS_ERR_NOMEM;
    }
    n = fread(b, 1, (1 << 20) + 1, f);
    fclose(f);
    if (n > (1 << 20)) {
        free(b);
        return custos_err_set(CUSTOS_ERR_TOOBIG, "%s is larger than 1 MiB", path);
    }
    b[n] = '\0';
    *out = b;
    *len = n;
    return CUSTOS_OK;
}

int cmd_init(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, NULL, 'd'},
                                         {"schema", required_argument, NULL, 's'},
                                         {"policy", required_argument, NULL, 'p'},
                                         {"origin", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *dir = NULL, *schema = NULL, *policy = NULL, *origin = NULL;
    char *stext = NULL, *ptext = NULL, secret[CUSTOS_SECRET_LEN + 1], token[CUSTOS_TOKEN_LEN + 1];
    size_t slen = 0, plen = 0;
    enum custos_err rc;
    int c, ret = 1;

    optind = 1;
    opterr = 0; /* one line of our own instead of getopt's */
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 's': schema = optarg; break;
        case 'p': policy = optarg; break;
        case 'o': origin = optarg; break;
        case 'h': fputs(help, stdout); return 0;
        default: return cli_bad_option("init", argv);
        }
    }
    if (!dir)
        return cli_usage("init", "--data DIR is required");
    if (optind < argc)
        return cli_usage("init", "unexpected argument");
    if ((schema && (rc = slurp(schema, &stext, &slen))) || (policy && (rc = slurp(policy, &ptext, &plen)))) {
        ret = cli_fail(rc);
        goto done;
    }
    rc = custos_vault_init(dir, stext, slen, ptext, plen, origin, secret, token);
    if (rc) {
        ret = cli_fail(rc);
        goto done;
    }
    printf("initialised vault in %s\n", dir);
    printf("admin principal: admin (kind staff, role admin)\n");
    printf("admin secret (shown once, keep it safe): %s\n", secret);
    printf("admin token (expires in 15 minutes):\n%s\n", token);
    ret = 0;
done:
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(token, sizeof(token));
    free(stext);
    free(ptext);
    return ret;
}

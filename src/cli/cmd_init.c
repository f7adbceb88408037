/*
 * cmd_init.c - custos init --data DIR [--schema FILE] [--policy FILE] [--origin NAME]
 *
 * Prints what it created, the admin secret (once), and the admin token alone
 * on the last line of stdout, so scripts can take it with `tail -n1`.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* The whole of a --schema or --policy file (at most 1 MiB), NUL-terminated; 1 after a message. */
static int slurp(const char *opt, const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat sb;
    char *b;
    size_t n;
    int err;

    *out = NULL;
    if (!f)
        return cli_error(1, "cannot read %s %.200s: %s", opt, path, strerror(errno));
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return cli_error(1, "cannot read %s %.200s: %s", opt, path, strerror(EISDIR));
    }
    b = malloc((1 << 20) + 1);
    if (!b) {
        fclose(f);
        return cli_error(1, "out of memory");
    }
    n = fread(b, 1, (1 << 20) + 1, f);
    err = ferror(f) ? errno : 0;
    fclose(f);
    if (err || n > (1 << 20)) {
        free(b);
        return err ? cli_error(1, "cannot read %s %.200s: %s", opt, path, strerror(err))
                   : cli_error(1, "%s %.200s is larger than 1 MiB", opt, path);
    }
    b[n] = '\0';
    *out = b;
    *len = n;
    return 0;
}

int cmd_init(int argc, char **argv)
{
    const char *dir, *schema, *policy, *origin;
    const struct cli_opt opts[] = {{"data", &dir, NULL},     {"schema", &schema, NULL}, {"policy", &policy, NULL},
                                   {"origin", &origin, NULL}, {NULL, NULL, NULL}};
    char *stext = NULL, *ptext = NULL, secret[CUSTOS_SECRET_LEN + 1], token[CUSTOS_TOKEN_LEN + 1];
    size_t slen = 0, plen = 0;
    enum custos_err rc;
    int ret = 1;

    if ((ret = cli_options(argc, argv, "init", help, opts)))
        return ret;
    ret = 1;
    if (!dir)
        return cli_usage("init", "--data DIR is required");
    if (optind < argc)
        return cli_usage("init", "unexpected argument");
    if ((schema && slurp("--schema", schema, &stext, &slen)) || (policy && slurp("--policy", policy, &ptext, &plen)))
        goto done;
    rc = custos_vault_init(dir, stext, slen, ptext, plen, origin, secret, token);
    if (rc) {
        ret = cli_fail(rc);
        goto done;
    }
    printf("initialised vault in %s\n", dir);
    printf("admin principal: admin (kind staff, role admin)\n");
    printf("admin secret (shown once, keep it safe): %s\n", secret);
    printf("admin secret expires in %d days (custos principal list shows when); rotate it before:\n"
           "  POST /v1/principals/admin/rotate, or custos principal rotate --data %s --id admin\n",
           CUSTOS_SECRET_TTL_DAYS, dir);
    printf("admin token (expires in 15 minutes):\n%s\n", token);
    ret = 0;
done:
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(token, sizeof(token));
    free(stext);
    free(ptext);
    return ret;
}

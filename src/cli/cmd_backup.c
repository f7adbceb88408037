/*
 * cmd_backup.c - custos backup, custos restore, custos receipt verify.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#include "custos/banned.h"

static const char backup_help[] =
    "usage: custos backup --data DIR --out FILE\n"
    "\n"
    "Write a consistent copy of the vault's data plane (sealed records, blind index, links) to a\n"
    "new FILE, while the server runs or not.  It holds no key: it is readable only together with\n"
    "the vault's keys, and an erased subject's values in it stay unreadable forever.\n";

static const char restore_help[] =
    "usage: custos restore --data DIR --in FILE\n"
    "\n"
    "Replace the vault's data plane with a backup of the same vault (server stopped), then\n"
    "re-apply every erasure made since the backup: erased subjects stay erased.\n";

static const char receipt_help[] =
    "usage: custos receipt verify FILE --data DIR\n"
    "\n"
    "Check an erasure receipt (the JSON DELETE /v1/subjects/{id} returned): its Ed25519 signature\n"
    "under the vault's ledger key and that the ledger entry it names records that erasure.\n"
    "Exit 0 when valid, 1 otherwise.\n";

struct args {
    const char *dir, *out, *in;
};

static int parse(int argc, char **argv, const char *cmd, const char *help, struct args *a)
{
    const struct cli_opt opts[] = {{"data", &a->dir}, {"out", &a->out}, {"in", &a->in}, {NULL, NULL}};
    int r = cli_options(argc, argv, cmd, help, opts);

    if (!r && !a->dir)
        return cli_usage(cmd, "--data DIR is required");
    return r;
}

int cmd_backup(int argc, char **argv)
{
    struct args a;
    enum custos_err rc;
    int r;

    if ((r = parse(argc, argv, "backup", backup_help, &a)))
        return r;
    if (!a.out || optind < argc)
        return cli_usage("backup", "--out FILE is required");
    if ((rc = custos_backup(a.dir, a.out)))
        return cli_fail(rc);
    printf("backup written to %s (data plane only; no keys)\n", a.out);
    return 0;
}

int cmd_restore(int argc, char **argv)
{
    struct args a;
    uint64_t n = 0;
    enum custos_err rc;
    int r;

    if ((r = parse(argc, argv, "restore", restore_help, &a)))
        return r;
    if (!a.in || optind < argc)
        return cli_usage("restore", "--in FILE is required");
    if ((rc = custos_restore(a.dir, a.in, &n)))
        return cli_fail(rc);
    printf("restored %s into %s; %llu erasure(s) made since the backup re-applied\n", a.in, a.dir,
           (unsigned long long)n);
    return 0;
}

int cmd_receipt(int argc, char **argv)
{
    struct args a;
    char what[256], *text = NULL;
    size_t len;
    FILE *f;
    enum custos_err rc;
    int r;

    if (argc < 2 || cli_wants_help(argc, argv)) {
        fputs(receipt_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "verify") != 0)
        return cli_usage("receipt", "expected 'verify'");
    if ((r = parse(argc - 1, argv + 1, "receipt", receipt_help, &a)))
        return r;
    if (optind != argc - 2)
        return cli_usage("receipt", "give exactly one receipt file");
    f = fopen(argv[optind + 1], "rb");
    if (!f) {
        fprintf(stderr, "custos: cannot read %s\n", argv[optind + 1]);
        return 1;
    }
    text = malloc(65537);
    len = text ? fread(text, 1, 65537, f) : 0;
    fclose(f);
    if (!text || len > 65536) {
        free(text);
        fprintf(stderr, "custos: receipt file is too large\n");
        return 1;
    }
    rc = custos_receipt_verify(a.dir, text, len, what, sizeof(what));
    free(text);
    if (rc) {
        printf("INVALID: %s\n", what);
        fprintf(stderr, "custos: receipt is not valid\n");
        return 1;
    }
    printf("%s\n", what);
    return 0;
}

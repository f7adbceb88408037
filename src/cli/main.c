/*
 * main.c - the custos binary: subcommand table and dispatch.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "cli/cli.h"

#include "custos/banned.h"

static const struct cli_cmd commands[] = {
    {"init", cmd_init, "create a new vault in a data directory"},
    {"serve", cmd_serve, "serve the HTTP API"},
    {"import", cmd_import, "bulk-load subjects from a JSON-lines file"},
    {"principal", cmd_principal, "add or disable principals (add, disable)"},
    {"token", cmd_token, "issue or revoke tokens (issue, revoke)"},
    {"keys", cmd_keys, "master key management (rotate)"},
    {"ledger", cmd_ledger, "the access ledger (verify, export, key, witness)"},
    {"backup", cmd_backup, "consistent online copy of the data plane (no keys)"},
    {"restore", cmd_restore, "restore a backup; erasures made since stay applied"},
    {"receipt", cmd_receipt, "verify an erasure receipt (verify)"},
};

static void usage(FILE *f)
{
    size_t i;

    fprintf(f, "usage: custos <command> [options]\n\ncommands:\n");
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'custos <command> --help' describes a command; docs/cli.md has them all.\n");
}

int cli_fail(enum custos_err rc)
{
    fprintf(stderr, "custos: %s\n", custos_err_msg(rc));
    return 1;
}

int cli_usage(const char *cmd, const char *msg)
{
    fprintf(stderr, "custos: %s (see 'custos %s --help')\n", msg, cmd);
    return EXIT_USAGE;
}

int cli_bad_option(const char *cmd, char **argv)
{
    char msg[160];
    const char *opt = optind > 0 ? argv[optind - 1] : "?";

    if (strncmp(opt, "--", 2) == 0 || !optopt)
        snprintf(msg, sizeof(msg), "option '%.60s' is unknown or needs an argument", opt);
    else
        snprintf(msg, sizeof(msg), "option '-%c' is unknown or needs an argument", optopt);
    return cli_usage(cmd, msg);
}

int cli_options(int argc, char **argv, const char *cmd, const char *help, const struct cli_opt *opts)
{
    struct option lo[17];
    size_t n = 0, i;
    int c;

    for (i = 0; opts[i].name && n < 15; i++) {
        *opts[i].value = NULL;
        lo[n++] = (struct option){opts[i].name, required_argument, NULL, 256 + (int)i};
    }
    lo[n++] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n] = (struct option){NULL, 0, NULL, 0};
    optind = 1;
    opterr = 0; /* one line of our own instead of getopt's */
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (c == 'h') {
            fputs(help, stdout);
            exit(0);
        }
        if (c < 256)
            return cli_bad_option(cmd, argv);
        *opts[c - 256].value = optarg;
    }
    return 0;
}

int cli_wants_help(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}

enum custos_err cli_open(const char *dir, struct custos_vault **v)
{
    struct custos_vault_opts o;

    uint64_t torn = 0;
    enum custos_err rc;

    memset(&o, 0, sizeof(o));
    o.dir = dir;
    if ((rc = custos_vault_open(&o, v)))
        return rc;
    if (custos_vault_ledger_recovered(*v, &torn)) {
        if (torn)
            fprintf(stderr, "custos: the ledger was not closed cleanly: recovered, %llu bytes of a torn, "
                            "never acknowledged tail dropped (recorded as a ledger.recover event)\n",
                    (unsigned long long)torn);
        else
            fprintf(stderr, "custos: the ledger was not closed cleanly: recovered, nothing lost (recorded as a "
                            "ledger.recover event)\n");
    }
    return CUSTOS_OK;
}

int main(int argc, char **argv)
{
    size_t i;

    umask(077); /* everything custos creates is for its owner only */
    if (sodium_init() < 0) {
        fprintf(stderr, "custos: libsodium failed to initialise\n");
        return 1;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("custos 0.1.0\n");
        return 0;
    }
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "custos: unknown command '%.40s' (see 'custos --help')\n", argv[1]);
    return EXIT_USAGE;
}

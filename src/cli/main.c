/*
 * main.c - the custos binary: subcommand table and dispatch.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cli/cli.h"

#include "custos/banned.h"

static const struct cli_cmd commands[] = {
    {"init", cmd_init, "create a new vault in a data directory"},
    {"serve", cmd_serve, "serve the HTTP API"},
    {"import", cmd_import, "bulk-load subjects from a JSON-lines file"},
    {"principal", cmd_principal, "add, disable, rotate or list principals (add, disable, rotate, list)"},
    {"token", cmd_token, "issue or revoke tokens (issue, revoke)"},
    {"keys", cmd_keys, "master key management (rotate)"},
    {"ledger", cmd_ledger, "the access ledger (verify, export, key, witness, rebuild)"},
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

/*
 * Every message line the CLI writes to stderr goes through here: it echoes arguments and file
 * names, so it is made valid UTF-8 without control characters (an argument holding "\n" must
 * not print a line of its own) and is cut to fit one line.
 */
static void say(const char *msg)
{
    char line[640];

    snprintf(line, sizeof(line), "%s", msg);
    custos_text_oneline(line);
    fprintf(stderr, "custos: %s\n", line);
}

int cli_error(int ret, const char *fmt, ...)
{
    char msg[640];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    say(msg);
    return ret;
}

int cli_fail(enum custos_err rc)
{
    say(custos_err_msg(rc));
    return 1;
}

int cli_count(const char *cmd, const char *name, const char *val, long lo, long hi, unsigned *out)
{
    char *end, msg[96];
    long t;

    errno = 0;
    t = strtol(val, &end, 10);
    /* digits only: strtol would also take leading spaces and a sign */
    if (errno || *end || end == val || val[0] < '0' || val[0] > '9' || t < lo || t > hi) {
        snprintf(msg, sizeof(msg), "--%s must be %ld..%ld", name, lo, hi);
        return cli_usage(cmd, msg);
    }
    *out = (unsigned)t;
    return 0;
}

int cli_usage(const char *cmd, const char *msg)
{
    return cli_error(EXIT_USAGE, "%s (see 'custos %s --help')", msg, cmd);
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

int cli_text_ok(const char *s, size_t max)
{
    char copy[CLI_TEXT_MAX + 1];
    size_t len = strlen(s), i;

    if (len > max || len > CLI_TEXT_MAX)
        return 0;
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    memcpy(copy, s, len + 1);
    custos_utf8_scrub(copy); /* it replaces what is not UTF-8: a copy that changed was not */
    return memcmp(copy, s, len) == 0;
}

int cli_options(int argc, char **argv, const char *cmd, const char *help, const struct cli_opt *opts)
{
    struct option lo[CLI_OPTS_MAX + 2];
    unsigned char seen[CLI_OPTS_MAX];
    size_t n = 0, i;
    int c;

    for (i = 0; opts[i].name && n < CLI_OPTS_MAX; i++) {
        if (opts[i].value)
            *opts[i].value = NULL;
        if (opts[i].flag)
            *opts[i].flag = 0;
        lo[n++] = (struct option){opts[i].name, opts[i].value ? required_argument : no_argument, NULL, 256 + (int)i};
    }
    lo[n++] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n] = (struct option){NULL, 0, NULL, 0};
    memset(seen, 0, sizeof(seen));
    optind = 1;
    opterr = 0; /* one line of our own instead of getopt's */
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        char msg[160];

        if (c == 'h') {
            fputs(help, stdout);
            exit(0);
        }
        if (c < 256)
            return cli_bad_option(cmd, argv);
        i = (size_t)(c - 256);
        /* the second of two values would silently win: --data A --data B is a mistake to point out */
        if (seen[i]++) {
            snprintf(msg, sizeof(msg), "option '--%s' is given twice", opts[i].name);
            return cli_usage(cmd, msg);
        }
        if (opts[i].flag) {
            *opts[i].flag = 1;
            continue;
        }
        /* no option of custos means anything empty ("--data ''" would name the current directory) */
        if (!*optarg) {
            snprintf(msg, sizeof(msg), "option '--%s' needs a value, not an empty string", opts[i].name);
            return cli_usage(cmd, msg);
        }
        *opts[i].value = optarg;
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

void cli_ledger_notices(int recovered, uint64_t torn, uint64_t missing)
{
    if (recovered) {
        if (torn)
            cli_error(0, "the ledger was not closed cleanly: recovered, %llu bytes of a torn, never "
                         "acknowledged tail dropped (recorded as a ledger.recover event)",
                      (unsigned long long)torn);
        else
            cli_error(0, "the ledger was not closed cleanly: recovered, nothing lost (recorded as a "
                         "ledger.recover event)");
    }
    if (missing)
        cli_error(0, "the ledger holds at least %llu entries fewer than this vault last recorded: rolled "
                     "back or replaced by an older copy (recorded as a ledger.rollback event)",
                  (unsigned long long)missing);
}

enum custos_err cli_open(const char *dir, struct custos_vault **v)
{
    struct custos_vault_opts o;

    uint64_t torn = 0;
    enum custos_err rc;
    int recovered;

    memset(&o, 0, sizeof(o));
    o.dir = dir;
    if ((rc = custos_vault_open(&o, v)))
        return rc;
    recovered = custos_vault_ledger_recovered(*v, &torn); /* sets torn: not in the call's arguments */
    cli_ledger_notices(recovered, torn, custos_vault_ledger_missing(*v));
    return CUSTOS_OK;
}

/*
 * stdout's buffer.  init, principal add and rotate, and token issue print a secret or a token;
 * the buffer libc would give stdout keeps the last of them when the program exits, and is freed
 * there without a wipe.  This one is custos's own: from sodium_malloc (locked in memory, left
 * out of core dumps), flushed and wiped at exit by out_close, whatever the path (main returning,
 * or exit() as --help does).  A flush that fails there is reported as "write error on standard
 * output" and the exit status becomes 1: a secret shown once and never written must not look
 * like a success.  Commands that flush stdout themselves and report the failure (ledger export,
 * principal list) leave nothing for it to flush and so see no second message.
 */
static char *out_buf; /* BUFSIZ bytes */

static void out_close(void)
{
    int failed = fflush(stdout) != 0;

    /* not freed: stdout points into it until libc's own exit handling, which finds nothing
       left to write (after a failed flush the process ends here) */
    sodium_memzero(out_buf, BUFSIZ);
    if (failed) {
        say("write error on standard output");
        _exit(1);
    }
}

/* Give stdout its buffer, before any output: line-buffered on a terminal, fully buffered
   otherwise, as libc's default.  0, or -1 (out of memory) with stdout left as it was. */
static int out_open(void)
{
    if (!(out_buf = sodium_malloc(BUFSIZ)))
        return -1;
    /* the handler first: from setvbuf on, stdout's last bytes are in out_buf */
    if (atexit(out_close) != 0) {
        sodium_free(out_buf);
        return -1;
    }
    return setvbuf(stdout, out_buf, isatty(STDOUT_FILENO) ? _IOLBF : _IOFBF, BUFSIZ) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    size_t i;

    umask(077); /* everything custos creates is for its owner only */
    if (sodium_init() < 0) {
        fprintf(stderr, "custos: libsodium failed to initialise\n");
        return 1;
    }
    if (out_open() != 0) {
        fprintf(stderr, "custos: cannot set up standard output: out of memory\n");
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
    return cli_error(EXIT_USAGE, "unknown command '%.40s' (see 'custos --help')", argv[1]);
}

/*
 * cli.h - the custos command line: one function per subcommand (cmd_*.c;
 * related ones share a file), registered in the table in main.c.  Commands print results to stdout, one-line errors to
 * stderr ("custos: <message>"), and exit 0 on success, 1 when the operation
 * failed, 2 on a usage error.
 */
#ifndef CUSTOS_CLI_H
#define CUSTOS_CLI_H

#include <unistd.h> /* optind */

#include "custos/err.h"
#include "custos/vault.h"

#define EXIT_USAGE 2

struct cli_cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

int cmd_init(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_principal(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_ledger(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_receipt(int argc, char **argv);

/* Print "custos: <msg>" for a core error and return 1. */
int cli_fail(enum custos_err rc);
/* Print "custos: <msg>" and return EXIT_USAGE (with a hint to --help). */
int cli_usage(const char *cmd, const char *msg);
/* Print "custos: <formatted message>" and return ret.  Every stderr line of the CLI goes through
   it or the two above: the line is made valid UTF-8 without control characters (messages echo
   arguments) and cut to one line of at most 640 bytes; cap echoed arguments ("%.200s") so that
   the end of the message survives. */
int cli_error(int ret, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 when s is at most max (at most CLI_TEXT_MAX) bytes of valid UTF-8 without control
   characters, else 0. */
#define CLI_TEXT_MAX 4096
int cli_text_ok(const char *s, size_t max);

#define CLI_OPTS_MAX 15

/* One option of a subcommand: --NAME VALUE (value set) or the flag --NAME (flag set). */
struct cli_opt {
    const char *name;
    const char **value;
    int *flag;
};

/*
 * Parse the options of a subcommand (argv[0] is the subcommand): each --NAME VALUE of opts
 * (NULL-terminated table, at most CLI_OPTS_MAX) sets *value, each flag --NAME sets *flag to 1;
 * --help prints `help` and exits 0.  Values not given are left NULL (flags 0).  Usage errors (exit
 * EXIT_USAGE, one line): an option not in opts, one without its value, one given twice, an empty
 * value.  Returns 0 or EXIT_USAGE; optind is then the first argument that is not an option.
 */
int cli_options(int argc, char **argv, const char *cmd, const char *help, const struct cli_opt *opts);

/* Parse the value of --NAME as a decimal count in lo..hi into *out: 0, or a usage error of cmd
   ("--NAME must be lo..hi", exit EXIT_USAGE) for anything else. */
int cli_count(const char *cmd, const char *name, const char *val, long lo, long hi, unsigned *out);

/* Usage error for the option getopt_long just refused (unknown, or missing its argument). */
int cli_bad_option(const char *cmd, char **argv);
/* Open the vault in dir as the local operator; print the ledger notices below. */
enum custos_err cli_open(const char *dir, struct custos_vault **v);
/* Tell the operator (stderr, one line each) that opening the vault recovered the ledger after an
   unclean stop (torn: bytes of a never-acknowledged tail dropped) or found it rolled back. */
void cli_ledger_notices(int recovered, uint64_t torn, uint64_t missing);
/* Is argv asking for help? */
int cli_wants_help(int argc, char **argv);

#endif

/*
 * cmd_backup.c - custos backup, custos restore, custos receipt verify.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "custos/note.h"

#include "custos/banned.h"

static const char backup_help[] =
    "usage: custos backup --data DIR --out FILE\n"
    "\n"
    "Write a consistent copy of the vault's data plane (sealed records and links) to a new FILE,\n"
    "while the server runs or not.  It holds no key and no blind index (restore rebuilds it): it\n"
    "is readable only together with the vault's keys, and an erased subject's values in it stay\n"
    "unreadable forever.\n";

static const char restore_help[] =
    "usage: custos restore --data DIR --in FILE\n"
    "\n"
    "Replace the vault's data plane with a backup of the same vault (server stopped), then\n"
    "re-apply every erasure made since the backup: erased subjects stay erased.\n";

static const char receipt_help[] =
    "usage: custos receipt verify FILE --data DIR\n"
    "       custos receipt verify FILE --vkey VKEY\n"
    "\n"
    "Check an erasure receipt (the JSON DELETE /v1/subjects/{id} returned): its Ed25519 signature\n"
    "under the vault's ledger key and that the ledger entry it names records that erasure.\n"
    "With --vkey (the key `custos ledger key` prints, as published by the vault's operator)\n"
    "instead of --data, the signature alone, without the vault: for the customer or a regulator.\n"
    "Exit 0 when valid, 1 otherwise.\n";

struct args {
    const char *dir, *file;
};

/* --data DIR and, when `fileopt` is not NULL, --FILEOPT FILE: any other option is refused. */
static int parse(int argc, char **argv, const char *cmd, const char *help, const char *fileopt, struct args *a)
{
    const struct cli_opt opts[] = {{"data", &a->dir, NULL}, {fileopt, &a->file, NULL}, {NULL, NULL, NULL}};
    int r;

    a->file = NULL;
    r = cli_options(argc, argv, cmd, help, opts);
    if (!r && !a->dir)
        return cli_usage(cmd, "--data DIR is required");
    return r;
}

/* FILE for reading, or NULL after a message.  A directory is refused (fopen takes one; reading it
   then fails), and with regular_only anything but a regular file (a backup: SQLite reads it by
   offset), which is opened without waiting (a FIFO with no writer would hang the open: red-team
   finding).  Without it a pipe is read like any file (a receipt from /dev/stdin). */
static FILE *open_input(const char *path, int regular_only)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | (regular_only ? O_NONBLOCK : 0));
    struct stat sb;
    FILE *f;

    if (fd < 0) {
        cli_error(1, "cannot read %.200s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &sb) == 0 && (S_ISDIR(sb.st_mode) || (regular_only && !S_ISREG(sb.st_mode)))) {
        close(fd);
        if (S_ISDIR(sb.st_mode))
            cli_error(1, "cannot read %.200s: %s", path, strerror(EISDIR));
        else
            cli_error(1, "cannot read %.200s: not a regular file", path);
        return NULL;
    }
    if (!(f = fdopen(fd, "rb"))) {
        cli_error(1, "cannot read %.200s: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

int cmd_backup(int argc, char **argv)
{
    struct args a;
    enum custos_err rc;
    int r;

    if ((r = parse(argc, argv, "backup", backup_help, "out", &a)))
        return r;
    if (!a.file)
        return cli_usage("backup", "--out FILE is required");
    if (optind < argc)
        return cli_usage("backup", "unexpected argument");
    if ((rc = custos_backup(a.dir, a.file)))
        return cli_fail(rc);
    printf("backup written to %s (data plane only; no keys)\n", a.file);
    return 0;
}

int cmd_restore(int argc, char **argv)
{
    struct args a;
    struct custos_restore_report rep;
    enum custos_err rc;
    FILE *f;
    int r;

    if ((r = parse(argc, argv, "restore", restore_help, "in", &a)))
        return r;
    if (!a.file)
        return cli_usage("restore", "--in FILE is required");
    if (optind < argc)
        return cli_usage("restore", "unexpected argument");
    /* "is not a custos backup" would hide that FILE is missing or unreadable */
    if (!(f = open_input(a.file, 1)))
        return 1;
    fclose(f);
    if ((rc = custos_restore(a.dir, a.file, &rep)))
        return cli_fail(rc);
    cli_ledger_notices(rep.ledger_recovered, rep.torn_bytes, rep.ledger_missing);
    printf("restored %s into %s; %llu erasure(s) made since the backup re-applied\n", a.file, a.dir,
           (unsigned long long)rep.reapplied);
    return 0;
}

int cmd_receipt(int argc, char **argv)
{
    struct custos_note_verifier v;
    const char *vkey = NULL;
    struct args a;
    char what[512], *text = NULL; /* a vkey name may be 255 bytes */
    size_t len;
    FILE *f;
    enum custos_err rc;
    int r, err;

    if (argc < 2 || cli_wants_help(argc, argv)) {
        fputs(receipt_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "verify") != 0)
        return cli_usage("receipt", "expected 'verify'");
    {
        const struct cli_opt opts[] = {{"data", &a.dir, NULL}, {"vkey", &vkey, NULL}, {NULL, NULL, NULL}};

        a.dir = NULL;
        if ((r = cli_options(argc - 1, argv + 1, "receipt", receipt_help, opts)))
            return r;
    }
    if (!a.dir == !vkey)
        return cli_usage("receipt", "give either --data DIR or --vkey VKEY");
    if (vkey && custos_note_vkey_parse(&v, vkey) != CUSTOS_OK)
        return cli_usage("receipt", "--vkey is not a valid Ed25519 verifier key");
    if (optind != argc - 2)
        return cli_usage("receipt", "give exactly one receipt file");
    if (!argv[optind + 1][0])
        return cli_usage("receipt", "the receipt file name is empty");
    if (!(f = open_input(argv[optind + 1], 0)))
        return 1;
    text = malloc(65537);
    len = text ? fread(text, 1, 65537, f) : 0;
    err = ferror(f) ? errno : 0;
    fclose(f);
    if (!text || err || len > 65536) {
        free(text);
        return !text ? cli_error(1, "out of memory")
               : err ? cli_error(1, "cannot read %.200s: %s", argv[optind + 1], strerror(err))
                     : cli_error(1, "receipt file is too large");
    }
    rc = vkey ? custos_receipt_verify_key(&v, text, len, what, sizeof(what))
              : custos_receipt_verify(a.dir, text, len, what, sizeof(what));
    free(text);
    if (rc == CUSTOS_ERR_INVALID || rc == CUSTOS_ERR_TOOBIG || rc == CUSTOS_ERR_CRYPTO) {
        printf("INVALID: %s\n", what);
        return cli_error(1, "receipt is not valid");
    }
    if (rc) /* the vault or its ledger could not be read: nothing is known about the receipt */
        return cli_error(1, "cannot check the receipt: %s", custos_err_msg(rc));
    printf("%s\n", what);
    return 0;
}

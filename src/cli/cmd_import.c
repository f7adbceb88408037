/*
 * cmd_import.c - custos import --data DIR FILE.jsonl [--threads N] [--resume | --restart]
 *
 * Progress bar on stderr when it is a terminal; rejected lines reported by
 * number and reason (never content).  Exit 0 when every line was imported,
 * 1 when some were rejected or the import failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

#include "custos/banned.h"

static const char help[] =
    "usage: custos import --data DIR FILE.jsonl [--threads N] [--resume | --restart]\n"
    "\n"
    "Bulk-load subjects, one JSON customer object per line ('-' reads stdin).  Invalid lines\n"
    "are reported by line number and skipped.  The server must not be running (the vault's\n"
    "directory lock); to load through a running server use POST /v1/subjects.\n"
    "\n"
    "After an import that did not finish (killed, a crash, a full disk), a new one is refused\n"
    "until you choose:\n"
    "  --resume   the same input again: the lines already stored are read and checked, not\n"
    "             stored twice, and the import goes on after them\n"
    "  --restart  forget the interrupted import and import FILE from its first line\n";

struct ui {
    int tty;
    uint64_t total;
    struct timespec t0;
    unsigned long bad_shown;
};

static double elapsed(const struct ui *u)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - u->t0.tv_sec) + (double)(t.tv_nsec - u->t0.tv_nsec) / 1e9;
}

static void progress(void *ctx, const struct custos_import_stats *s)
{
    struct ui *u = ctx;
    double secs = elapsed(u), rate = secs > 0 ? (double)s->imported / secs : 0;

    if (!u->tty)
        return;
    if (u->total) {
        int pct = (int)(s->bytes_read * 100 / u->total), i;

        fputs("\r[", stderr);
        for (i = 0; i < 30; i++)
            fputc(i < pct * 30 / 100 ? '#' : '.', stderr);
        fprintf(stderr, "] %3d%% %llu imported, %llu rejected, %.0f/s ", pct, (unsigned long long)s->imported,
                (unsigned long long)s->rejected, rate);
    } else
        fprintf(stderr, "\r%llu imported, %llu rejected, %.0f/s ", (unsigned long long)s->imported,
                (unsigned long long)s->rejected, rate);
    fflush(stderr);
}

static void bad(void *ctx, uint64_t line, const char *reason)
{
    struct ui *u = ctx;

    if (u->bad_shown++ < 100)
        fprintf(stderr, "%sline %llu rejected: %s\n", u->tty ? "\r" : "", (unsigned long long)line, reason);
    else if (u->bad_shown == 101)
        fprintf(stderr, "(further rejected lines not shown)\n");
}

int cmd_import(int argc, char **argv)
{
    const char *dir, *file, *nthreads;
    int resume = 0, restart = 0;
    const struct cli_opt opts[] = {{"data", &dir, NULL},      {"threads", &nthreads, NULL}, {"resume", NULL, &resume},
                                   {"restart", NULL, &restart}, {NULL, NULL, NULL}};
    struct custos_import_stats st;
    struct custos_caller sys;
    struct custos_vault *v = NULL;
    struct ui u;
    struct stat sb;
    unsigned threads = 0, flags;
    enum custos_err rc;
    int fd, r;
    long nproc;
    char msg[512];

    if ((r = cli_options(argc, argv, "import", help, opts)))
        return r;
    if (nthreads && (r = cli_count("import", "threads", nthreads, 1, 16, &threads)))
        return r;
    if (!dir)
        return cli_usage("import", "--data DIR is required");
    if (resume && restart)
        return cli_usage("import", "--resume and --restart exclude each other");
    if (optind != argc - 1)
        return cli_usage("import", "give exactly one input file");
    file = argv[optind];
    if (!*file) /* like an empty option value: a script's unset variable, not a file name */
        return cli_usage("import", "the input file name is empty");
    fd = strcmp(file, "-") == 0 ? 0 : open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_error(1, "cannot open %.200s: %s", file, strerror(errno));
    /* found before the vault is opened: nothing to read is not worth a ledger entry */
    if (fstat(fd, &sb) != 0)
        memset(&sb, 0, sizeof(sb));
    if (S_ISDIR(sb.st_mode)) {
        if (fd)
            close(fd);
        return cli_error(1, "cannot read %.200s: %s", file, strerror(EISDIR));
    }
    if (!threads) {
        nproc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nproc <= 0 ? 2 : nproc > 16 ? 16 : (unsigned)nproc;
    }
    memset(&u, 0, sizeof(u));
    u.tty = isatty(2);
    if (S_ISREG(sb.st_mode))
        u.total = (uint64_t)sb.st_size;
    clock_gettime(CLOCK_MONOTONIC, &u.t0);
    if ((rc = cli_open(dir, &v))) {
        if (fd)
            close(fd);
        return cli_fail(rc);
    }
    custos_caller_system(&sys);
    flags = (resume ? CUSTOS_IMPORT_RESUME : 0) | (restart ? CUSTOS_IMPORT_RESTART : 0);
    rc = custos_import(v, &sys, fd, threads, flags, progress, bad, &u, &st);
    if (rc) /* before closing the vault, which may set messages of its own */
        snprintf(msg, sizeof(msg), "%s", custos_err_msg(rc));
    if (fd)
        close(fd);
    custos_vault_free(v);
    if (u.tty)
        fputc('\n', stderr);
    if (rc && st.already)
        return cli_error(1, "%s (--restart imports it again, as new subjects)", msg);
    if (rc && st.interrupted)
        return cli_error(1, "%s (custos import --data DIR --resume FILE, or --restart to import FILE from its "
                             "first line)", msg);
    if (rc)
        return cli_error(1, "%s", msg);
    if (resume)
        printf("resumed after line %llu (%llu subjects imported before): ", (unsigned long long)st.skipped,
               (unsigned long long)st.imported_before);
    printf("imported %llu subjects (%llu lines, %llu rejected) in %.1f s\n", (unsigned long long)st.imported,
           (unsigned long long)st.lines, (unsigned long long)st.rejected, elapsed(&u));
    return st.rejected ? 1 : 0;
}

/*
 * cmd_serve.c - custos serve --data DIR [--listen HOST:PORT] [--tls-cert F --tls-key F]
 *               [--insecure] [--port-file F] [--threads N] [--webhook-allow-loopback]
 *
 * Stops cleanly on SIGTERM or SIGINT: stops accepting, finishes requests in
 * flight, signs a final ledger checkpoint, wipes keys.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli/cli.h"
#include "server/server.h"

#include "custos/banned.h"

static const char help[] =
    "usage: custos serve --data DIR [--listen HOST:PORT] [--tls-cert FILE --tls-key FILE]\n"
    "                    [--insecure] [--port-file FILE] [--threads N] [--webhook-allow-loopback]\n"
    "\n"
    "Serve the HTTP API (docs/api.md) on HOST:PORT (default 127.0.0.1:8420).\n"
    "A non-loopback address needs TLS (--tls-cert/--tls-key, PEM) unless --insecure.\n"
    "Port 0 picks a free port; --port-file writes the port chosen.  SIGTERM stops it cleanly.\n"
    "--threads N: HTTP worker threads, 1..64 (default: one per CPU, 2..16).\n"
    "--webhook-allow-loopback: also deliver erasure notices to 127.0.0.0/8 and ::1 (development,\n"
    "tests); link-local, multicast, broadcast and unspecified addresses are never allowed.\n";

/* read by the server's threads too: an atomic, not a volatile sig_atomic_t (which is for one
   thread and its handlers only); lock-free, so the handler may store to it */
static atomic_int stop_flag;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "a signal handler needs a lock-free atomic int");

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop_flag, 1);
}

int cmd_serve(int argc, char **argv)
{
    struct custos_server_opts so;
    struct custos_webhook_opts wo;
    const char *dir, *threads;
    const struct cli_opt opts[] = {{"data", &dir, NULL},
                                   {"listen", &so.listen, NULL},
                                   {"tls-cert", &so.tls_cert, NULL},
                                   {"tls-key", &so.tls_key, NULL},
                                   {"insecure", NULL, &so.insecure},
                                   {"port-file", &so.port_file, NULL},
                                   {"threads", &threads, NULL},
                                   {"webhook-allow-loopback", NULL, &wo.allow_loopback},
                                   {NULL, NULL, NULL}};
    struct custos_vault *v = NULL;
    struct sigaction sa;
    enum custos_err rc;
    int r, made_port_file = 0;

    memset(&so, 0, sizeof(so));
    memset(&wo, 0, sizeof(wo));
    if ((r = cli_options(argc, argv, "serve", help, opts)))
        return r;
    if (threads && (r = cli_count("serve", "threads", threads, 1, 64, &so.threads)))
        return r;
    if (!dir)
        return cli_usage("serve", "--data DIR is required");
    if (optind < argc)
        return cli_usage("serve", "unexpected argument");
    if (so.port_file) {
        /* the server writes it once it listens, and cannot report a failure then: a script
           waiting for the file would wait forever.  Create it now, and fail before starting. */
        int fd = open(so.port_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

        if (fd >= 0)
            made_port_file = 1; /* removed again if the server does not start */
        else if (errno == EEXIST)
            fd = open(so.port_file, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            return cli_error(1, "cannot write --port-file %.200s: %s", so.port_file, strerror(errno));
        close(fd);
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    {
        /* a serving process holds decrypted values in its heap: no core file may carry them */
        struct rlimit none = {0, 0};

        setrlimit(RLIMIT_CORE, &none);
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    if (!(rc = cli_open(dir, &v))) {
        custos_webhook_configure(&wo);
        rc = custos_server_run(v, &so, &stop_flag);
        custos_vault_free(v);
    }
    if (rc) {
        r = cli_fail(rc);
        if (made_port_file)
            unlink(so.port_file);
        return r;
    }
    fprintf(stderr, "custos: stopped\n");
    return 0;
}

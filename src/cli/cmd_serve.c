/*
 * cmd_serve.c - custos serve --data DIR [--listen HOST:PORT] [--tls-cert F --tls-key F]
 *               [--insecure] [--port-file F] [--threads N] [--webhook-allow-loopback]
 *
 * Stops cleanly on SIGTERM or SIGINT: stops accepting, finishes requests in
 * flight, signs a final ledger checkpoint, wipes keys.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

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
    "tests); link-local, multicast and unspecified addresses are never allowed.\n";

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

int cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, NULL, 'd'},
                                         {"listen", required_argument, NULL, 'l'},
                                         {"tls-cert", required_argument, NULL, 'c'},
                                         {"tls-key", required_argument, NULL, 'k'},
                                         {"insecure", no_argument, NULL, 'i'},
                                         {"port-file", required_argument, NULL, 'p'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"webhook-allow-loopback", no_argument, NULL, 'W'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct custos_server_opts so;
    struct custos_webhook_opts wo;
    struct custos_vault *v = NULL;
    struct sigaction sa;
    const char *dir = NULL;
    enum custos_err rc;
    int c;

    memset(&so, 0, sizeof(so));
    memset(&wo, 0, sizeof(wo));
    optind = 1;
    opterr = 0; /* one line of our own instead of getopt's */
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'l': so.listen = optarg; break;
        case 'c': so.tls_cert = optarg; break;
        case 'k': so.tls_key = optarg; break;
        case 'i': so.insecure = 1; break;
        case 'p': so.port_file = optarg; break;
        case 't': {
            char *end;
            long t = strtol(optarg, &end, 10);

            if (*end || end == optarg || t < 1 || t > 64)
                return cli_usage("serve", "--threads must be 1..64");
            so.threads = (unsigned)t;
            break;
        }
        case 'W': wo.allow_loopback = 1; break;
        case 'h': fputs(help, stdout); return 0;
        default: return cli_bad_option("serve", argv);
        }
    }
    if (!dir)
        return cli_usage("serve", "--data DIR is required");
    if (optind < argc)
        return cli_usage("serve", "unexpected argument");
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
    if ((rc = cli_open(dir, &v)))
        return cli_fail(rc);
    custos_webhook_configure(&wo);
    rc = custos_server_run(v, &so, &stop_flag);
    custos_vault_free(v);
    if (rc)
        return cli_fail(rc);
    fprintf(stderr, "custos: stopped\n");
    return 0;
}

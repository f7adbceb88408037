/*
 * webhook.c - delivers subject.erased notices from the core's durable
 * outbox to linked services (libcurl), while the server runs.
 *
 * One thread: take the notices due (custos_outbox_next), POST each as JSON
 * with a Custos-Signature header (Ed25519 by the ledger key, base64), and
 * report the answer (custos_outbox_done), which marks a 2xx delivered and
 * schedules anything else for a retry with backoff.  No redirects, no proxy,
 * a 10 s timeout, the receiver's body discarded.
 *
 * Address policy (against server-side request forgery: whoever may register
 * a link chooses the URL): every address libcurl is about to connect to is
 * checked in its open-socket callback, after name resolution, so a name
 * that resolves (or re-resolves) to a forbidden address is refused too.
 * Refused always: unspecified (0.0.0.0/8, ::), link-local (169.254/16,
 * fe80::/10: cloud metadata lives there), multicast, 240/4 and broadcast,
 * and those same addresses in IPv4-mapped, IPv4-compatible and NAT64 form.
 * Loopback (127/8, ::1) is refused unless the operator allows it
 * (custos_webhook_configure, `custos serve --webhook-allow-loopback`).
 * Private networks (RFC 1918, ULA fc00::/7) are allowed: linked services
 * usually live there.
 *
 * What an attempt reports (custos_outbox_done, shown by GET .../erasure) is
 * a fixed class, never libcurl's text: "refused: address not allowed",
 * "name not resolved", "connect failed", "timeout", "tls failed",
 * "transfer failed", or "http NNN" for a non-2xx answer.  So the status
 * route is no port scanner, and no address or error detail leaks.
 *
 * Must never: block an erasure (it only reads the outbox), follow a
 * redirect, connect to a refused address, put anything but the notice in
 * the request, log or report a URL.
 */
#include "server/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "custos/banned.h"

#define BATCH 16

struct webhook {
    struct custos_vault *v;
    volatile sig_atomic_t *stop;
    pthread_t th;
    int running;
    int allow_loopback;
};

static struct webhook hook;

/* What one transfer saw of the addresses it tried (the open-socket callback's data). */
struct attempt {
    int refused; /* addresses refused by the policy */
    int allowed; /* addresses a socket was opened for */
};

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* 1 when the IPv4 address (network byte order) may not be connected to. */
static int v4_refused(const uint8_t a[4], int allow_loopback)
{
    if (a[0] == 127)
        return !allow_loopback;
    return a[0] == 0 ||                   /* "this network", 0.0.0.0 */
           (a[0] == 169 && a[1] == 254) || /* link-local, cloud metadata */
           a[0] >= 224;                   /* multicast 224/4, reserved 240/4, broadcast */
}

static int v6_refused(const uint8_t a[16], int allow_loopback)
{
    static const uint8_t zero[16], mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff},
                                   nat64[12] = {0, 0x64, 0xff, 0x9b};

    if (memcmp(a, zero, 15) == 0 && (a[15] == 0 || a[15] == 1))
        return a[15] == 0 || !allow_loopback; /* ::, ::1 */
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, zero, 12) == 0 || memcmp(a, nat64, 12) == 0)
        return v4_refused(a + 12, allow_loopback); /* ::ffff:a.b.c.d, ::a.b.c.d, 64:ff9b::a.b.c.d */
    return (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) || /* fe80::/10 link-local */
           a[0] == 0xff;                              /* ff00::/8 multicast */
}

/* libcurl's open-socket callback: the one place every connection starts, resolved address in hand. */
static curl_socket_t open_checked(void *ud, curlsocktype purpose, struct curl_sockaddr *sa)
{
    struct attempt *at = ud;
    int refused = 1;

    if (purpose == CURLSOCKTYPE_IPCXN && sa->family == AF_INET &&
        sa->addrlen >= (unsigned)sizeof(struct sockaddr_in))
        refused = v4_refused((const uint8_t *)&((const struct sockaddr_in *)&sa->addr)->sin_addr,
                             hook.allow_loopback);
    else if (purpose == CURLSOCKTYPE_IPCXN && sa->family == AF_INET6 &&
             sa->addrlen >= (unsigned)sizeof(struct sockaddr_in6))
        refused = v6_refused(((const struct sockaddr_in6 *)&sa->addr)->sin6_addr.s6_addr, hook.allow_loopback);
    if (refused) {
        at->refused++;
        return CURL_SOCKET_BAD;
    }
    at->allowed++;
    return socket(sa->family, sa->socktype | SOCK_CLOEXEC, sa->protocol);
}

/* The class of a failed attempt: fixed words, never libcurl's text (which names addresses and ports). */
static const char *failure_class(CURLcode cc, const struct attempt *at)
{
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
        return at->refused && !at->allowed ? "refused: address not allowed" : "connect failed";
    case CURLE_COULDNT_RESOLVE_HOST: return "name not resolved";
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS: return "tls failed";
    default: return "transfer failed";
    }
}

static void deliver(struct custos_vault *v, const struct custos_delivery *d)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct attempt at = {0, 0};
    char sig[160], what[32];
    long status = 0;
    CURLcode cc = CURLE_FAILED_INIT;

    if (c) {
        snprintf(sig, sizeof(sig), "Custos-Signature: ed25519=%s", d->signature);
        h = curl_slist_append(h, "Content-Type: application/json");
        h = curl_slist_append(h, sig);
        curl_easy_setopt(c, CURLOPT_URL, d->url);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, d->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)d->body_len);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_PROXY, ""); /* no proxy from the environment: the check sees the receiver */
        curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_checked);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &at);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
        cc = curl_easy_perform(c);
        if (cc == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
    }
    if (cc == CURLE_OK)
        snprintf(what, sizeof(what), "http %ld", status);
    custos_outbox_done(v, d, cc == CURLE_OK ? (int)status : 0, cc == CURLE_OK ? what : failure_class(cc, &at));
}

static void *run(void *arg)
{
    struct webhook *w = arg;
    static struct custos_delivery batch[BATCH];
    struct timespec pause = {0, 250 * 1000 * 1000};

    while (!*w->stop) {
        size_t n = 0, i;

        if (custos_outbox_next(w->v, batch, BATCH, &n) != CUSTOS_OK)
            n = 0;
        for (i = 0; i < n && !*w->stop; i++)
            deliver(w->v, &batch[i]);
        if (n < BATCH)
            nanosleep(&pause, NULL);
    }
    return NULL;
}

void custos_webhook_configure(const struct custos_webhook_opts *o)
{
    hook.allow_loopback = o && o->allow_loopback;
}

enum custos_err custos_webhook_start(struct custos_vault *v, volatile sig_atomic_t *stop)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    hook.v = v;
    hook.stop = stop;
    if (pthread_create(&hook.th, NULL, run, &hook) != 0)
        return custos_err_set(CUSTOS_ERR_INTERNAL, "cannot start the webhook thread");
    hook.running = 1;
    return CUSTOS_OK;
}

void custos_webhook_stop(void)
{
    if (hook.running)
        pthread_join(hook.th, NULL);
    hook.running = 0;
    curl_global_cleanup();
}

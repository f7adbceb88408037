/*
 * webhook.c - delivers subject.erased notices from the core's durable
 * outbox to linked services (libcurl), while the server runs.
 *
 * One thread, many transfers (a libcurl multi handle): take the notices due
 * (custos_outbox_next, which hands out at most CUSTOS_OUTBOX_PER_HOST per
 * receiving host, and names each notice's host), POST each as JSON with a
 * Custos-Signature header (Ed25519 by the ledger key, base64), and report
 * each answer as it comes (custos_outbox_done), which marks a 2xx delivered
 * and schedules anything else for a retry with backoff.  At most INFLIGHT
 * transfers at once, at most CUSTOS_OUTBOX_PER_HOST to one host, each free
 * slot to the host with the fewest going, so a receiver that hangs holds
 * that many slots for one timeout and nothing else, and receivers that hang
 * lose their slots to the others as their timeouts free them: the others'
 * notices go out meanwhile.  The
 * outbox is polled every POLL_MS and as soon as a transfer ends.  No
 * redirects, no proxy, 3 s to connect and 10 s in all, the receiver's body
 * discarded.
 *
 * At least once: the outbox rows are the truth.  A notice in flight is
 * still due in the outbox (custos_outbox_next sees it again and it is
 * skipped here by id); only custos_outbox_done changes it.  On stop, the
 * transfers in flight are abandoned unrecorded and go out again after the
 * next start.
 *
 * Address policy (against server-side request forgery: whoever may register
 * a link chooses the URL): every address libcurl is about to connect to is
 * checked in its open-socket callback, after name resolution, so a name
 * that resolves (or re-resolves) to a forbidden address is refused too.
 * Refused always: unspecified (0.0.0.0/8, ::), link-local (169.254/16,
 * fe80::/10: cloud metadata lives there), multicast, 240/4 and broadcast,
 * and those same addresses in IPv4-mapped, IPv4-compatible, SIIT, NAT64 and
 * 6to4 form, and the local-use NAT64 prefix 64:ff9b:1::/48 and Teredo
 * (2001::/32) whole.
 * Loopback (127/8, ::1) is refused unless the operator allows it
 * (custos_webhook_configure, `custos serve --webhook-allow-loopback`).
 * Private networks (RFC 1918, ULA fc00::/7) are allowed: linked services
 * usually live there.
 *
 * What an attempt reports (custos_outbox_done, shown by GET .../erasure) is
 * a fixed class, never libcurl's text: "refused: address not allowed",
 * "name not resolved", "connect failed", "timeout", "tls failed",
 * "transfer failed", or "http NNN" for a non-2xx answer: no address or error
 * detail leaks.  The classes still tell "something answered" from "nothing
 * did", so whoever may register links can probe the private networks the
 * policy allows (docs/security.md says so).
 *
 * Must never: block an erasure (it only reads the outbox), follow a
 * redirect, connect to a refused address, put anything but the notice in
 * the request, log or report a URL, mark a notice delivered without a 2xx,
 * let one receiver take every transfer slot.
 */
#include "server/server.h"
#include "core/thread.h"

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

#define INFLIGHT 16 /* transfers at once */
#define FETCH 64    /* notices asked of the outbox per poll */
#define POLL_MS 250

struct webhook {
    struct custos_vault *v;
    atomic_int *stop;
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

/* One transfer in flight. */
struct slot {
    int used;
    CURL *c;
    struct curl_slist *h;
    struct attempt at;
    struct custos_delivery d; /* the URL and body libcurl reads come from here */
    char host[256];
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
           (a[0] == 100 && a[1] == 100 && a[2] == 100 && a[3] == 200) || /* a cloud's metadata in 100.64/10 */
           a[0] >= 224;                   /* multicast 224/4, reserved 240/4, broadcast */
}

static int v6_refused(const uint8_t a[16], int allow_loopback)
{
    static const uint8_t zero[16], mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff},
                                   siit[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0},
                                   nat64[12] = {0, 0x64, 0xff, 0x9b}, nat64_local[6] = {0, 0x64, 0xff, 0x9b, 0, 1},
                                   /* fd00:ec2::254, a cloud's metadata service in the ULA range */
                                   ec2[16] = {0xfd, 0, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54};

    if (memcmp(a, zero, 15) == 0 && (a[15] == 0 || a[15] == 1))
        return a[15] == 0 || !allow_loopback; /* ::, ::1 */
    /* ::ffff:a.b.c.d, ::a.b.c.d, ::ffff:0:a.b.c.d (SIIT), 64:ff9b::a.b.c.d (NAT64) */
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, zero, 12) == 0 || memcmp(a, siit, 12) == 0 ||
        memcmp(a, nat64, 12) == 0)
        return v4_refused(a + 12, allow_loopback);
    if (a[0] == 0x20 && a[1] == 0x02) /* 2002:aabb:ccdd::/48, 6to4: a.b.c.d behind a relay */
        return v4_refused(a + 2, allow_loopback);
    if (memcmp(a, nat64_local, 6) == 0) /* 64:ff9b:1::/48, local NAT64: where it puts the IPv4 */
        return 1;                       /* address depends on a prefix length not known here */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) /* 2001::/32, Teredo: a tunnel to an */
        return 1;                                               /* IPv4 host, no receiver's address */
    return (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) || /* fe80::/10 link-local */
           a[0] == 0xff ||                            /* ff00::/8 multicast */
           memcmp(a, ec2, 16) == 0;
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

struct pool {
    CURLM *m;
    struct slot slot[INFLIGHT];
    unsigned used;
};

/* The transfers going to the notice's host, or CUSTOS_OUTBOX_PER_HOST when the notice itself is in
   flight (it may not start either way). */
static unsigned host_load(const struct pool *p, const struct custos_delivery *d)
{
    unsigned i, same = 0;

    for (i = 0; i < INFLIGHT; i++) {
        if (!p->slot[i].used)
            continue;
        if (p->slot[i].d.id == d->id)
            return CUSTOS_OUTBOX_PER_HOST;
        same += strcmp(p->slot[i].host, d->host) == 0;
    }
    return same;
}

/* Start one transfer in a free slot (the caller checked there is one). */
static void start(struct webhook *w, struct pool *p, const struct custos_delivery *d, const char *host)
{
    struct slot *s;
    char sig[160];
    unsigned i;

    for (i = 0; i < INFLIGHT && p->slot[i].used; i++)
        ;
    if (i == INFLIGHT)
        return;
    s = &p->slot[i];
    memset(&s->at, 0, sizeof(s->at));
    s->d = *d;
    snprintf(s->host, sizeof(s->host), "%s", host);
    s->h = NULL;
    snprintf(sig, sizeof(sig), "Custos-Signature: ed25519=%s", s->d.signature);
    if (!(s->c = curl_easy_init()) || !(s->h = curl_slist_append(NULL, "Content-Type: application/json")) ||
        !curl_slist_append(s->h, sig)) {
        curl_slist_free_all(s->h);
        curl_easy_cleanup(s->c);
        custos_outbox_done(w->v, d, 0, "transfer failed");
        return;
    }
    curl_easy_setopt(s->c, CURLOPT_URL, s->d.url);
    curl_easy_setopt(s->c, CURLOPT_POSTFIELDS, s->d.body);
    curl_easy_setopt(s->c, CURLOPT_POSTFIELDSIZE, (long)s->d.body_len);
    curl_easy_setopt(s->c, CURLOPT_HTTPHEADER, s->h);
    curl_easy_setopt(s->c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(s->c, CURLOPT_CONNECTTIMEOUT, 3L);
    curl_easy_setopt(s->c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(s->c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(s->c, CURLOPT_PROXY, ""); /* no proxy from the environment: the check sees the receiver */
    curl_easy_setopt(s->c, CURLOPT_OPENSOCKETFUNCTION, open_checked);
    curl_easy_setopt(s->c, CURLOPT_OPENSOCKETDATA, &s->at);
    curl_easy_setopt(s->c, CURLOPT_NOSIGNAL, 1L);
    /* a delivery still resolving its host name at shutdown is dropped (it stays due in the
       outbox) without joining the resolver thread, which can take the resolver's whole timeout */
#if CURL_AT_LEAST_VERSION(7, 87, 0)
    curl_easy_setopt(s->c, CURLOPT_QUICK_EXIT, 1L);
#endif
    curl_easy_setopt(s->c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(s->c, CURLOPT_PRIVATE, s);
    if (curl_multi_add_handle(p->m, s->c) != CURLM_OK) {
        curl_slist_free_all(s->h);
        curl_easy_cleanup(s->c);
        custos_outbox_done(w->v, d, 0, "transfer failed");
        return;
    }
    s->used = 1;
    p->used++;
}

static void release(struct pool *p, struct slot *s)
{
    curl_multi_remove_handle(p->m, s->c);
    curl_easy_cleanup(s->c);
    curl_slist_free_all(s->h);
    s->c = NULL;
    s->h = NULL;
    s->used = 0;
    p->used--;
}

/* A transfer ended: record the attempt, free the slot. */
static void finish(struct webhook *w, struct pool *p, struct slot *s, CURLcode cc)
{
    char what[32];
    long status = 0;

    if (cc == CURLE_OK) {
        curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &status);
        snprintf(what, sizeof(what), "http %ld", status);
    }
    custos_outbox_done(w->v, &s->d, cc == CURLE_OK ? (int)status : 0,
                       cc == CURLE_OK ? what : failure_class(cc, &s->at));
    release(p, s);
}

/*
 * Take the due notices and start those that may go now: each free slot to a notice of the host
 * with the fewest transfers going (the earliest due among equals).  In due order alone, four
 * receivers that hang, whose old notices come first, took back every slot their timeouts freed,
 * and every other receiver waited for their whole backlog (review finding).
 */
static void fill(struct webhook *w, struct pool *p)
{
    static struct custos_delivery batch[FETCH];
    static unsigned char taken[FETCH];
    size_t n = 0, i, best;
    unsigned load, least;

    if (custos_outbox_next(w->v, batch, FETCH, &n) != CUSTOS_OK)
        return;
    memset(taken, 0, sizeof(taken));
    while (p->used < INFLIGHT) {
        best = n;
        least = CUSTOS_OUTBOX_PER_HOST;
        for (i = 0; i < n; i++)
            if (!taken[i] && (load = host_load(p, &batch[i])) < least) {
                least = load;
                best = i;
            }
        if (best == n)
            break;
        taken[best] = 1;
        start(w, p, &batch[best], batch[best].host);
    }
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *run(void *arg)
{
    struct webhook *w = arg;
    static struct pool p;
    int64_t last = 0;
    int ended = 1, running = 0;
    unsigned i;

    memset(&p, 0, sizeof(p));
    if (!(p.m = curl_multi_init()))
        return NULL;
    while (!atomic_load(w->stop)) {
        CURLMsg *msg;
        int left;

        if (p.used < INFLIGHT && (ended || mono_ms() - last >= POLL_MS)) {
            fill(w, &p);
            last = mono_ms();
            ended = 0;
        }
        curl_multi_perform(p.m, &running);
        while ((msg = curl_multi_info_read(p.m, &left)))
            if (msg->msg == CURLMSG_DONE) {
                struct slot *s = NULL;

                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
                finish(w, &p, s, msg->data.result);
                ended = 1;
            }
        if (!ended)
            curl_multi_poll(p.m, NULL, 0, 100, NULL);
    }
    /* in flight at stop: not recorded, so still due at the next start */
    for (i = 0; i < INFLIGHT; i++)
        if (p.slot[i].used)
            release(&p, &p.slot[i]);
    curl_multi_cleanup(p.m);
    return NULL;
}

void custos_webhook_configure(const struct custos_webhook_opts *o)
{
    hook.allow_loopback = o && o->allow_loopback;
}

enum custos_err custos_webhook_start(struct custos_vault *v, atomic_int *stop)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    hook.v = v;
    hook.stop = stop;
    if (custos_thread_create(&hook.th, run, &hook) != 0)
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

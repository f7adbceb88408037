/*
 * test_api_leaving.c - leaving over HTTP (issue 4) and TLS: one DELETE with
 * the customer's own token, webhook notices delivered to linked services
 * with retries (a receiver that fails first still gets it), their
 * signature, the erasure status route, export; the webhook address policy
 * (loopback, link-local and the like refused unless allowed; errors reported
 * as fixed classes); a receiver that hangs does not hold up the others; and
 * the server over HTTPS.
 *
 * The linked service is a small libmicrohttpd receiver in this process, on
 * 127.0.0.1: tests that deliver to it serve with --webhook-allow-loopback
 * (setup_loopback), the others with the defaults.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <sodium.h>

#include "custos/note.h"
#include "harness.h"

/* ---- a linked service ---------------------------------------------------------------------- */

struct receiver {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    int fail_first;     /* answer 503 to this many requests first */
    int requests;
    char body[1024];    /* the last accepted notice */
    char signature[160];
};

struct upload {
    char buf[1024];
    size_t n;
};

static enum MHD_Result on_req(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *data, size_t *size, void **ptr)
{
    struct receiver *rv = cls;
    struct upload *u = *ptr;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    unsigned status;

    (void)url;
    (void)version;
    if (!u) {
        *ptr = u = calloc(1, sizeof(*u));
        return u ? MHD_YES : MHD_NO;
    }
    if (*size) {
        size_t n = *size < sizeof(u->buf) - 1 - u->n ? *size : sizeof(u->buf) - 1 - u->n;

        memcpy(u->buf + u->n, data, n);
        u->n += n;
        *size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&rv->mu);
    rv->requests++;
    status = rv->requests <= rv->fail_first ? 503 : 204;
    if (status == 204 && strcmp(method, "POST") == 0) {
        const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Custos-Signature");

        snprintf(rv->body, sizeof(rv->body), "%.*s", (int)u->n, u->buf);
        snprintf(rv->signature, sizeof(rv->signature), "%s", sig ? sig : "");
    }
    pthread_mutex_unlock(&rv->mu);
    resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void on_done(void *cls, struct MHD_Connection *c, void **ptr, enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    free(*ptr);
    *ptr = NULL;
}

static void receiver_start(struct receiver *rv, int fail_first)
{
    const union MHD_DaemonInfo *info;

    memset(rv, 0, sizeof(*rv));
    pthread_mutex_init(&rv->mu, NULL);
    rv->fail_first = fail_first;
    rv->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_req, rv, MHD_OPTION_NOTIFY_COMPLETED,
                             on_done, NULL, MHD_OPTION_END);
    assert_non_null(rv->d);
    info = MHD_get_daemon_info(rv->d, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    rv->port = info->port;
}

static void receiver_stop(struct receiver *rv)
{
    MHD_stop_daemon(rv->d);
    pthread_mutex_destroy(&rv->mu);
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* ---- a server allowed to deliver to loopback ------------------------------------------------ */

/* The standard fixture, restarted with --webhook-allow-loopback (tokens survive a restart). */
static int setup_loopback(void **state)
{
    int rc = cz_setup_std(state);

    if (rc)
        return rc;
    cz_server_stop(*state);
    ((struct cz_server *)*state)->serve_flag = "--webhook-allow-loopback";
    cz_server_start(*state);
    return 0;
}

/* Poll the erasure status until `link` reaches `state` (or time out). */
static json_t *wait_link_state(struct cz_server *s, const char *id, const char *token, const char *link,
                               const char *state, int seconds)
{
    int i;

    for (i = 0; i < seconds * 10; i++) {
        const struct cz_resp *r = cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s/erasure", id), token, NULL);
        json_t *links = cz_get(r->json, "links");
        size_t k;

        cz_expect(r, 200);
        for (k = 0; k < json_array_size(links); k++) {
            json_t *l = json_array_get(links, k);

            if (strcmp(cz_str(l, "link"), link) == 0 && strcmp(cz_str(l, "state"), state) == 0)
                return l;
        }
        nap_ms(100);
    }
    fail_msg("link %s never reached state %s", link, state);
    return NULL;
}

static void test_one_call_erasure_notifies_links(void **state)
{
    struct cz_server *s = *state;
    struct receiver membership, payments;
    struct custos_note_verifier v;
    const struct cz_resp *r;
    const char *id, *cust, *sig64;
    uint8_t sig[64];
    size_t siglen = 0;
    json_t *l, *notice;

    receiver_start(&membership, 0);
    receiver_start(&payments, 2); /* down for the first two attempts */
    id = cz_create_subject(s, s->svc.token, "{\"name\":\"김민지\",\"email\":\"minji@example.com\"}");
    cz_expect(cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/membership", id), s->svc.token,
                     cz_fmt(s, "{\"webhook\":\"http://127.0.0.1:%d/erased\"}", membership.port)),
              200);
    cz_expect(cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/payments", id), s->svc.token,
                     cz_fmt(s, "{\"webhook\":\"http://127.0.0.1:%d/erased\"}", payments.port)),
              200);
    /* a customer cannot register links; bad names and URLs are refused */
    cust = cz_mint(s, id);
    cz_expect_error(cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/other", id), cust,
                           "{\"webhook\":\"http://127.0.0.1:1/x\"}"),
                    403, "forbidden");
    cz_expect_error(cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/other", id), s->svc.token,
                           "{\"webhook\":\"file:///etc/passwd\"}"),
                    400, "bad_request");
    r = cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s/erasure", id), cust, NULL);
    cz_expect(r, 200);
    assert_string_equal(cz_str(r->json, "state"), "active");
    assert_int_equal(json_array_size(cz_get(r->json, "links")), 2);
    /* the export is everything held, links included */
    r = cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s/export", id), cust, NULL);
    cz_expect(r, 200);
    assert_string_equal(cz_str(r->json, "fields.name"), "김민지");
    assert_int_equal(json_array_size(cz_get(r->json, "links")), 2);

    /* leaving is one request, with the customer's own token; it does not wait for anyone */
    r = cz_req(s, "DELETE", cz_fmt(s, "/v1/subjects/%s", id), cust, NULL);
    cz_expect(r, 200);
    assert_string_equal(cz_str(r->json, "subject"), id);
    cz_expect_error(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=account", id), s->svc.token, NULL), 410,
                    "gone");

    l = wait_link_state(s, id, s->svc.token, "membership", "delivered", 10);
    assert_int_equal(json_integer_value(json_object_get(l, "attempts")), 1);
    /* the one that was down gets it once it is back (backoff 1 s, 2 s) */
    l = wait_link_state(s, id, s->svc.token, "payments", "delivered", 20);
    assert_int_equal(json_integer_value(json_object_get(l, "attempts")), 3);

    /* the notice names the subject, the link and the time, nothing personal, and is signed */
    pthread_mutex_lock(&membership.mu);
    notice = json_loads(membership.body, 0, NULL);
    assert_non_null(notice);
    assert_string_equal(json_string_value(json_object_get(notice, "event")), "subject.erased");
    assert_string_equal(json_string_value(json_object_get(notice, "subject")), id);
    assert_string_equal(json_string_value(json_object_get(notice, "link")), "membership");
    assert_string_equal(json_string_value(json_object_get(notice, "erased_at")), cz_str(r->json, "erased_at"));
    assert_null(strstr(membership.body, "minji"));
    assert_int_equal(strncmp(membership.signature, "ed25519=", 8), 0);
    sig64 = membership.signature + 8;
    assert_int_equal(sodium_base642bin(sig, sizeof(sig), sig64, strlen(sig64), NULL, &siglen, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(siglen, 64);
    assert_int_equal(custos_note_vkey_parse(&v, s->vkey), CUSTOS_OK);
    assert_int_equal(crypto_sign_verify_detached(sig, (const uint8_t *)membership.body, strlen(membership.body),
                                                 v.pubkey),
                     0);
    pthread_mutex_unlock(&membership.mu);
    json_decref(notice);
    /* each delivery is in the ledger */
    assert_non_null(cz_find_event(cz_ledger_entries(s), "action", "link.notify", "subject", id, "target", "payments",
                                  NULL));
    receiver_stop(&membership);
    receiver_stop(&payments);
}

/* Poll the erasure status until every link has been tried at least once; the links array. */
static json_t *wait_all_tried(struct cz_server *s, const char *id, size_t nlinks, int seconds)
{
    int i;

    for (i = 0; i < seconds * 10; i++) {
        const struct cz_resp *r = cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s/erasure", id), s->svc.token, NULL);
        json_t *links = cz_get(r->json, "links");
        size_t k, tried = 0;

        cz_expect(r, 200);
        for (k = 0; k < json_array_size(links); k++)
            tried += json_integer_value(json_object_get(json_array_get(links, k), "attempts")) >= 1;
        if (json_array_size(links) == nlinks && tried == nlinks)
            return links;
        nap_ms(100);
    }
    fail_msg("not every link of %s was tried within %d s", id, seconds);
    return NULL;
}

static const char *link_error(json_t *links, const char *name)
{
    size_t k;

    for (k = 0; k < json_array_size(links); k++) {
        json_t *l = json_array_get(links, k);

        if (strcmp(cz_str(l, "link"), name) == 0)
            return cz_str(l, "last_error");
    }
    fail_msg("no link %s", name);
    return NULL;
}

static void test_pending_delivery_is_visible(void **state)
{
    struct cz_server *s = *state;
    const char *id = cz_create_subject(s, s->svc.token, "{\"name\":\"이서준\"}");
    json_t *links, *l;

    /* a receiver that never answers: the erasure is done, the notice stays pending and says why,
       as a fixed class (not libcurl's text, which names the address and port); link-local stays
       refused even when loopback is allowed */
    cz_expect(cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/gone", id), s->svc.token,
                     "{\"webhook\":\"http://127.0.0.1:9/never\"}"),
              200);
    cz_expect(cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/metadata", id), s->svc.token,
                     "{\"webhook\":\"http://169.254.169.254/latest/meta-data/\"}"),
              200);
    cz_expect(cz_req(s, "DELETE", cz_fmt(s, "/v1/subjects/%s", id), s->svc.token, NULL), 200);
    links = wait_all_tried(s, id, 2, 20);
    l = json_array_get(links, 0);
    assert_string_equal(cz_str(l, "link"), "gone");
    assert_string_equal(cz_str(l, "state"), "pending");
    assert_int_equal(json_integer_value(json_object_get(l, "last_status")), 0);
    assert_string_equal(cz_str(l, "last_error"), "connect failed");
    assert_non_null(cz_str(l, "next_attempt_at"));
    assert_string_equal(link_error(links, "metadata"), "refused: address not allowed");
}

/* Without --webhook-allow-loopback, a link cannot make custos connect to loopback, link-local,
   unspecified, multicast or broadcast addresses, however the URL spells them; a private-network
   address is still tried. */
static void test_webhook_address_policy(void **state)
{
    static const char *const refused[][3] = {
        {"lo", "http://127.0.0.1:", "/erased"},
        {"lo-other", "http://127.1.2.3:", "/erased"},
        {"lo-decimal", "http://2130706433:", "/erased"},
        {"lo-name", "http://localhost:", "/erased"},
        {"lo6", "http://[::1]:", "/erased"},
        {"lo-mapped", "http://[::ffff:127.0.0.1]:", "/erased"},
        {"metadata", "http://169.254.169.254:", "/latest/meta-data/"},
        {"metadata-mapped", "http://[::ffff:169.254.169.254]:", "/"},
        /* translated forms (red-team finding: passed) */
        {"metadata-siit", "http://[::ffff:0:169.254.169.254]:", "/"},
        {"lo-6to4", "http://[2002:7f00:1::]:", "/"},
        {"nat64-local", "http://[64:ff9b:1::a9fe:a9fe]:", "/"},
        {"teredo", "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]:", "/"},
        {"linklocal6", "http://[fe80::1]:", "/"},
        {"unspecified", "http://0.0.0.0:", "/erased"},
        {"unspecified6", "http://[::]:", "/erased"},
        {"multicast", "http://224.0.0.1:", "/"},
        {"broadcast", "http://255.255.255.255:", "/"},
    };
    struct cz_server *s = *state;
    struct receiver rv;
    const char *id;
    json_t *links;
    size_t i, n = sizeof(refused) / sizeof(refused[0]);

    receiver_start(&rv, 0);
    id = cz_create_subject(s, s->svc.token, "{\"name\":\"박지훈\"}");
    for (i = 0; i < n; i++)
        cz_expect(cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/%s", id, refused[i][0]), s->svc.token,
                         cz_fmt(s, "{\"webhook\":\"%s%d%s\"}", refused[i][1], rv.port, refused[i][2])),
                  200);
    /* RFC 1918 stays allowed: linked services live on the private network (nothing answers here) */
    cz_expect(cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/private", id), s->svc.token,
                     "{\"webhook\":\"http://10.255.255.1:9/erased\"}"),
              200);
    cz_expect(cz_req(s, "DELETE", cz_fmt(s, "/v1/subjects/%s", id), s->svc.token, NULL), 200);
    links = wait_all_tried(s, id, n + 1, 30);
    for (i = 0; i < n; i++) {
        const char *e = link_error(links, refused[i][0]);

        if (!e || strcmp(e, "refused: address not allowed") != 0)
            fail_msg("link %s: last_error %s", refused[i][0], e ? e : "(none)");
    }
    assert_non_null(link_error(links, "private"));
    assert_string_not_equal(link_error(links, "private"), "refused: address not allowed");
    for (i = 0; i < json_array_size(links); i++)
        assert_string_equal(cz_str(json_array_get(links, i), "state"), "pending");
    /* nothing reached the receiver */
    pthread_mutex_lock(&rv.mu);
    assert_int_equal(rv.requests, 0);
    pthread_mutex_unlock(&rv.mu);
    receiver_stop(&rv);
}

/* A receiver that hangs on 127.0.0.`last`: it listens, the kernel completes connections, nobody
   ever answers. */
static int hanging_start_at(int last, int *port)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK - 1 + (uint32_t)last);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 128), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static int hanging_start(int *port)
{
    return hanging_start_at(1, port);
}

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Review finding: 17 notices to a receiver that hangs held up a fast receiver's notice for
   160 s (one thread, serial, 10 s each).  Now the fast one goes out within a few seconds. */
/* The export shows a link's name and where its notices go, but only the webhook's origin: the
   user info, path and query may hold the service's credential for its own receiver, which the
   customer must not get (the service that registered it gets the whole URL back). */
static void test_export_shows_webhook_origin_only(void **state)
{
    struct cz_server *s = *state;
    const char *id = cz_create_subject(s, s->svc.token, "{\"name\":\"김민지\"}");
    const char *url = "https://svc:s3cret@hooks.example.com:8443/k/T0KEN?sig=abc#x";
    const struct cz_resp *r;
    json_t *l;

    r = cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/membership", id), s->svc.token,
               cz_fmt(s, "{\"webhook\":\"%s\"}", url));
    cz_expect(r, 200);
    assert_string_equal(cz_str(r->json, "webhook"), url);
    r = cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s/export", id), cz_mint(s, id), NULL);
    cz_expect(r, 200);
    assert_int_equal(json_array_size(cz_get(r->json, "links")), 1);
    l = json_array_get(cz_get(r->json, "links"), 0);
    assert_string_equal(cz_str(l, "name"), "membership");
    assert_string_equal(cz_str(l, "webhook"), "https://hooks.example.com:8443");
    assert_null(strstr(r->body, "s3cret"));
    assert_null(strstr(r->body, "T0KEN"));
}

/* RFC 3986 3.1: the scheme is case-insensitive; a webhook is answered, kept (the export shows it)
   and delivered with it lowercase, and a scheme other than http(s) is refused in any case. */
static void test_webhook_scheme_any_case(void **state)
{
    struct cz_server *s = *state;
    const char *id = cz_create_subject(s, s->svc.token, "{\"name\":\"김민지\"}"), *bad;
    const struct cz_resp *r;

    r = cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/crm", id), s->svc.token,
               "{\"webhook\":\"HTTPS://Example.COM/hook\"}");
    cz_expect(r, 200);
    assert_string_equal(cz_str(r->json, "webhook"), "https://Example.COM/hook");
    r = cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s/export", id), cz_mint(s, id), NULL);
    cz_expect(r, 200);
    assert_string_equal(cz_str(json_array_get(cz_get(r->json, "links"), 0), "webhook"), "https://Example.COM");
    bad = "webhook must be an http:// or https:// URL with a host, of at most 2048 bytes";
    r = cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/other", id), s->svc.token, "{\"webhook\":\"ftp://x\"}");
    cz_expect_error(r, 400, "bad_request");
    assert_string_equal(cz_str(r->json, "error.message"), bad);
    r = cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/other", id), s->svc.token, "{\"webhook\":\"FTP://x\"}");
    cz_expect_error(r, 400, "bad_request");
    assert_string_equal(cz_str(r->json, "error.message"), bad);
}

static void test_hanging_receiver_does_not_hold_up_others(void **state)
{
    struct cz_server *s = *state;
    struct receiver fast;
    const char *slow_ids[17], *id;
    double t0, took;
    int hport, hfd = hanging_start(&hport);
    size_t i;

    receiver_start(&fast, 0);
    for (i = 0; i < 17; i++) {
        slow_ids[i] = cz_create_subject(s, s->svc.token, "{\"name\":\"최유진\"}");
        cz_expect(cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/membership", slow_ids[i]), s->svc.token,
                         cz_fmt(s, "{\"webhook\":\"http://127.0.0.1:%d/erased\"}", hport)),
                  200);
        cz_expect(cz_req(s, "DELETE", cz_fmt(s, "/v1/subjects/%s", slow_ids[i]), s->svc.token, NULL), 200);
    }
    id = cz_create_subject(s, s->svc.token, "{\"name\":\"정하늘\"}");
    cz_expect(cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/payments", id), s->svc.token,
                     cz_fmt(s, "{\"webhook\":\"http://localhost:%d/erased\"}", fast.port)),
              200);
    nap_ms(500); /* the slow receiver's notices are in flight by now */
    t0 = mono_s();
    cz_expect(cz_req(s, "DELETE", cz_fmt(s, "/v1/subjects/%s", id), s->svc.token, NULL), 200);
    wait_link_state(s, id, s->svc.token, "payments", "delivered", 5);
    took = mono_s() - t0;
    if (took > 3.0)
        fail_msg("the fast receiver's notice took %.1f s", took);
    pthread_mutex_lock(&fast.mu);
    assert_int_equal(fast.requests, 1);
    pthread_mutex_unlock(&fast.mu);
    /* the hanging receiver's notices are not lost: still pending, to be retried */
    for (i = 0; i < 17; i++) {
        const struct cz_resp *r =
            cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s/erasure", slow_ids[i]), s->svc.token, NULL);

        cz_expect(r, 200);
        assert_string_equal(cz_str(json_array_get(cz_get(r->json, "links"), 0), "state"), "pending");
    }
    close(hfd);
    receiver_stop(&fast);
}

/*
 * Four receivers that hang, on four hosts, take all 16 delivery slots with 4 notices each and
 * have more waiting, due before a fast receiver's notice.  When their timeouts free the slots,
 * the fast receiver gets one (each free slot goes to the host with the fewest deliveries going):
 * its notice goes out after one timeout (10 s), not after their whole backlog (review finding:
 * in due order they took back every slot their timeouts freed).
 */
static void test_hanging_receivers_yield_freed_slots(void **state)
{
    struct cz_server *s = *state;
    struct receiver fast;
    const char *id;
    double t0, took;
    int hport[4], hfd[4];
    size_t h, i;

    for (h = 0; h < 4; h++)
        hfd[h] = hanging_start_at((int)h + 1, &hport[h]);
    receiver_start(&fast, 0);
    for (h = 0; h < 4; h++)
        for (i = 0; i < 9; i++) {
            id = cz_create_subject(s, s->svc.token, "{\"name\":\"최유진\"}");
            cz_expect(cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/membership", id), s->svc.token,
                             cz_fmt(s, "{\"webhook\":\"http://127.0.0.%zu:%d/erased\"}", h + 1, hport[h])),
                      200);
            cz_expect(cz_req(s, "DELETE", cz_fmt(s, "/v1/subjects/%s", id), s->svc.token, NULL), 200);
        }
    id = cz_create_subject(s, s->svc.token, "{\"name\":\"정하늘\"}");
    cz_expect(cz_req(s, "PUT", cz_fmt(s, "/v1/subjects/%s/links/payments", id), s->svc.token,
                     cz_fmt(s, "{\"webhook\":\"http://localhost:%d/erased\"}", fast.port)),
              200);
    nap_ms(500); /* the 16 slots are the hanging receivers' by now */
    t0 = mono_s();
    cz_expect(cz_req(s, "DELETE", cz_fmt(s, "/v1/subjects/%s", id), s->svc.token, NULL), 200);
    wait_link_state(s, id, s->svc.token, "payments", "delivered", 16);
    took = mono_s() - t0;
    if (took > 15.0) /* one 10 s timeout, then the first slot freed; in due order: 20 s and more */
        fail_msg("the fast receiver's notice took %.1f s", took);
    for (h = 0; h < 4; h++)
        close(hfd[h]);
    receiver_stop(&fast);
}

/* ---- TLS ----------------------------------------------------------------------------------- */

static int tls_setup(void **state)
{
    struct cz_server *s = cz_server_init();
    char cmd[2048];

    snprintf(s->tls_cert, sizeof(s->tls_cert), "%s/cert.pem", s->root);
    snprintf(s->tls_key, sizeof(s->tls_key), "%s/key.pem", s->root);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 -keyout '%s' -out '%s' >/dev/null 2>&1",
             s->tls_key, s->tls_cert);
    if (system(cmd) != 0) {
        cz_server_free(s);
        fail_msg("openssl could not make a test certificate");
    }
    cz_server_start(s);
    *state = s;
    return 0;
}

static void test_tls(void **state)
{
    struct cz_server *s = *state;
    const struct cz_resp *r;
    CURL *c;
    char url[128];
    long code = 0;

    assert_int_equal(strncmp(s->base, "https://", 8), 0);
    r = cz_req(s, "GET", "/v1/health", NULL, NULL);
    cz_expect(r, 200);
    r = cz_req(s, "POST", "/v1/principals", s->admin_token, "{\"id\":\"svc\",\"kind\":\"service\",\"roles\":[\"service\"]}");
    cz_expect(r, 201);
    /* plain HTTP to the TLS port gets no API answer */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/health", s->port);
    c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    assert_int_not_equal(code, 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_call_erasure_notifies_links, setup_loopback, cz_teardown),
        cmocka_unit_test_setup_teardown(test_pending_delivery_is_visible, setup_loopback, cz_teardown),
        cmocka_unit_test_setup_teardown(test_webhook_address_policy, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_export_shows_webhook_origin_only, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_webhook_scheme_any_case, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_hanging_receiver_does_not_hold_up_others, setup_loopback,
                                        cz_teardown),
        cmocka_unit_test_setup_teardown(test_hanging_receivers_yield_freed_slots, setup_loopback,
                                        cz_teardown),
        cmocka_unit_test_setup_teardown(test_tls, tls_setup, cz_teardown),
    };

    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_server_held.c - the HTTP front end in process, on 127.0.0.1 and a free port, with a
 * ledger whose I/O fails on cue: no response leaves before its audit event is durable, and when
 * the ledger cannot make it durable the held response becomes a 503, never the answer it held.
 *
 * The request used is a failed authentication (a token that was never issued): it needs no
 * principal, and its audit event is what must reach the ledger before the 401 may go.
 */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_util.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "custos/err.h"
#include "custos/ledger.h"
#include "custos/vault.h"
#include "server/server.h"
#include "custos/banned.h"

/*
 * realloc, as the front end's own code calls it (linked with -Wl,--wrap=realloc): counts the
 * blocks handed to it that hold `watched`.  Growing such a block with realloc may leave a copy
 * of it in freed memory, which nobody wipes.
 */
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
static const char *watched;
static atomic_int watched_left;

void *__wrap_realloc(void *p, size_t n)
{
    if (p && watched && memmem(p, malloc_usable_size(p), watched, strlen(watched)))
        atomic_fetch_add(&watched_left, 1);
    return __real_realloc(p, n);
}

struct fx {
    char dir[256];
    char port_file[300];
    struct custos_vault *v;
    pthread_t thread;
    atomic_int stop;
    enum custos_err served;
    atomic_int fail_fsync; /* every ledger fsync fails from now on */
    atomic_int fsyncs;
    atomic_int slow_fsync; /* the next ledger fsync blocks until this is 0 again */
    atomic_int in_fsync;   /* a ledger fsync is blocked on slow_fsync */
    unsigned port;
};

static int fault(void *ctx, const char *op)
{
    struct fx *f = ctx;

    if (strcmp(op, "fsync") != 0)
        return 0;
    atomic_fetch_add(&f->fsyncs, 1);
    if (atomic_load(&f->slow_fsync)) {
        struct timespec nap = {0, 1000 * 1000};

        atomic_store(&f->in_fsync, 1);
        while (atomic_load(&f->slow_fsync))
            nanosleep(&nap, NULL);
        atomic_store(&f->in_fsync, 0);
    }
    return atomic_load(&f->fail_fsync);
}

static void *serve(void *arg)
{
    struct fx *f = arg;
    struct custos_server_opts o;

    memset(&o, 0, sizeof(o));
    o.listen = "127.0.0.1:0";
    o.port_file = f->port_file;
    o.threads = 2;
    f->served = custos_server_run(f->v, &o, &f->stop);
    return NULL;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char secret[CUSTOS_SECRET_LEN + 1], token[CUSTOS_TOKEN_LEN + 1];
    struct custos_vault_opts o;
    struct timespec nap = {0, 5 * 1000 * 1000};
    FILE *pf;

    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/custos-server-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->port_file, sizeof(f->port_file), "%s.port", f->dir);
    rm_rf(f->dir); /* init makes it */
    if (custos_vault_init(f->dir, NULL, 0, NULL, 0, "test.example/server", secret, token))
        return -1;
    memset(&o, 0, sizeof(o));
    o.dir = f->dir;
    o.ledger_fault = fault;
    o.ledger_fault_ctx = f;
    if (custos_vault_open(&o, &f->v))
        return -1;
    if (pthread_create(&f->thread, NULL, serve, f))
        return -1;
    for (int i = 0; i < 2000 && !f->port; i++) {
        nanosleep(&nap, NULL);
        if ((pf = fopen(f->port_file, "r")) != NULL) {
            if (fscanf(pf, "%u", &f->port) != 1)
                f->port = 0;
            fclose(pf);
        }
    }
    *state = f;
    return f->port ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    custos_vault_free(f->v);
    rm_rf(f->dir);
    unlink(f->port_file);
    free(f);
    return 0;
}

static size_t collect(char *p, size_t size, size_t n, void *ctx)
{
    char *body = ctx;
    size_t have = strlen(body), add = size * n;

    if (have + add < 4096) {
        memcpy(body + have, p, add);
        body[have + add] = '\0';
    }
    return size * n;
}

/* GET path with a bearer token; returns the status, the body in `body` (4 KiB). */
static long get(struct fx *f, const char *path, const char *token, char *body)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[256], auth[160];
    long status = 0;

    body[0] = '\0';
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", f->port, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    h = curl_slist_append(h, auth);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static const char never_issued[] = "cus_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

static void test_held_until_durable_then_503(void **state)
{
    struct fx *f = *state;
    char body[4096];
    uint64_t before, after;

    /* a durable ledger: the failed authentication is recorded, then answered */
    before = custos_ledger_size(custos_vault_ledger(f->v));
    assert_int_equal(get(f, "/v1/subjects/00000000000000000000000000000000?purpose=account", never_issued, body), 401);
    after = custos_ledger_size(custos_vault_ledger(f->v));
    assert_true(after > before); /* durable before the 401 was sent */
    assert_true(atomic_load(&f->fsyncs) > 0);

    /* the ledger cannot sync any more: the response held for it becomes a 503 */
    atomic_store(&f->fail_fsync, 1);
    assert_int_equal(get(f, "/v1/subjects/00000000000000000000000000000000?purpose=account", never_issued, body), 503);
    assert_non_null(strstr(body, "\"code\":\"unavailable\""));
    assert_null(strstr(body, "unauthenticated")); /* not the answer it held */
    /* and so is every later audited request; the health check, which records nothing, still answers */
    assert_int_equal(get(f, "/v1/subjects/00000000000000000000000000000000?purpose=account", never_issued, body), 503);
    assert_int_equal(get(f, "/v1/health", "", body), 200);
    assert_int_equal(custos_ledger_size(custos_vault_ledger(f->v)), after);
}

struct bg_get {
    struct fx *f;
    long status;
    char body[4096];
};

static void *bg_get_main(void *arg)
{
    struct bg_get *g = arg;

    g->status = get(g->f, "/v1/subjects/00000000000000000000000000000000?purpose=account", never_issued, g->body);
    return NULL;
}

/* SIGTERM while a response is held: the server stops accepting, and the held response still goes
   out, whole, once its event is durable (within the 20 s grace), not a closed connection. */
static void test_stop_sends_held_response(void **state)
{
    struct fx *f = *state;
    struct timespec nap = {0, 1000 * 1000}, settle = {0, 400 * 1000 * 1000};
    struct bg_get g;
    pthread_t t;

    memset(&g, 0, sizeof(g));
    g.f = f;
    atomic_store(&f->slow_fsync, 1);
    assert_int_equal(pthread_create(&t, NULL, bg_get_main, &g), 0);
    for (int i = 0; i < 10000 && !atomic_load(&f->in_fsync); i++)
        nanosleep(&nap, NULL);
    assert_true(atomic_load(&f->in_fsync)); /* the request's event is being synced: its 401 is held */
    atomic_store(&f->stop, 1);                             /* SIGTERM */
    nanosleep(&settle, NULL);                /* the server notices (within 200 ms) and stops accepting */
    atomic_store(&f->slow_fsync, 0);         /* durable now */
    pthread_join(t, NULL);
    assert_int_equal(g.status, 401);
    assert_non_null(strstr(g.body, "\"code\":\"unauthenticated\""));
}

/* Send the head and the body of a request in two writes apart; the answer's status line in out. */
static void send_split(struct fx *f, const char *head, const char *body, size_t split, char *out, size_t cap)
{
    struct sockaddr_in a;
    struct timespec nap = {0, 100 * 1000 * 1000};
    size_t have = 0;
    ssize_t n;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)f->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_true(send(fd, head, strlen(head), MSG_NOSIGNAL) == (ssize_t)strlen(head));
    assert_true(send(fd, body, split, MSG_NOSIGNAL) == (ssize_t)split);
    nanosleep(&nap, NULL); /* the server reads the first part alone */
    assert_true(send(fd, body + split, strlen(body) - split, MSG_NOSIGNAL) == (ssize_t)(strlen(body) - split));
    while (have + 1 < cap && (n = recv(fd, out + have, cap - 1 - have, 0)) > 0)
        have += (size_t)n;
    out[have] = '\0';
    close(fd);
}

/* A body that arrives in parts is kept without leaving a copy of its first part behind in freed
   memory (review finding: it grew by realloc; this one holds a principal secret). */
static void test_body_in_parts_leaves_no_copy(void **state)
{
    struct fx *f = *state;
    static const char body[] = "{\"principal\":\"nobody\",\"secret\":\"cps_LEFTBEHINDxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}";
    char head[256], out[4096];

    snprintf(head, sizeof(head),
             "POST /v1/auth/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n",
             strlen(body));
    watched = "cps_LEFTBEHIND";
    atomic_store(&watched_left, 0);
    send_split(f, head, body, 60, out, sizeof(out)); /* the first part holds the marker */
    watched = NULL;
    assert_non_null(strstr(out, "HTTP/1.1 401")); /* the whole body was read: no such principal */
    assert_int_equal(atomic_load(&watched_left), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_held_until_durable_then_503, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_sends_held_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_in_parts_leaves_no_copy, setup, teardown),
    };

    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

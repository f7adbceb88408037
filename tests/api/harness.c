/*
 * harness.c - the API test fixture: a real vault served by the real binary
 * on 127.0.0.1, a free port chosen by the kernel, driven with libcurl.
 * See harness.h for the lifecycle and ownership rules.
 *
 * Must never: use a fixed port, sleep longer than one poll interval, leave a
 * server process or a temp directory behind when a test passes.
 */
#define _XOPEN_SOURCE 700 /* nftw flags */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "custos/banned.h"

#define POLL_NS (5 * 1000 * 1000)
#define START_TIMEOUT_MS 60000
#define STOP_TIMEOUT_MS 60000
#define BODY_CAP (16u << 20)

static void release(struct cz_server *s);
static void reap_pending(void);

/*
 * cmocka runs no teardown when a setup fails, so a fixture under construction
 * is parked here and cleaned up by the next setup or at exit.
 */
static struct cz_server *pending;

struct cz_keep {
    struct cz_keep *next;
    void *mem;
    json_t *json;
};

/* ---- small utilities --------------------------------------------------------------------- */

static void nap(void)
{
    struct timespec ts = {0, POLL_NS};

    nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void *keep_mem(struct cz_server *s, void *p)
{
    struct cz_keep *k = calloc(1, sizeof(*k));

    assert_non_null(p);
    assert_non_null(k);
    k->mem = p;
    k->next = s->kept;
    s->kept = k;
    return p;
}

json_t *cz_keep_json(struct cz_server *s, json_t *j)
{
    struct cz_keep *k = calloc(1, sizeof(*k));

    assert_non_null(k);
    k->json = j;
    k->next = s->kept;
    s->kept = k;
    return j;
}

const char *cz_fmt(struct cz_server *s, const char *fmt, ...)
{
    va_list ap;
    int n;
    char *p;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    p = malloc((size_t)n + 1);
    assert_non_null(p);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return keep_mem(s, p);
}

const char *cz_esc(struct cz_server *s, const char *v)
{
    char *e = curl_easy_escape(NULL, v, (int)strlen(v));
    const char *out;

    assert_non_null(e);
    out = cz_fmt(s, "%s", e);
    curl_free(e);
    return out;
}

void cz_last_line(const char *text, char *out, size_t cap)
{
    const char *end = text + strlen(text), *start;

    while (end > text && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    start = end;
    while (start > text && start[-1] != '\n')
        start--;
    snprintf(out, cap, "%.*s", (int)(end - start), start);
}

static void print_log(const struct cz_server *s)
{
    FILE *f = fopen(s->log, "r");
    char line[1024];

    if (!f)
        return;
    fprintf(stderr, "---- server log %s ----\n", s->log);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fprintf(stderr, "---- end of server log ----\n");
    fclose(f);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* ---- the CLI ----------------------------------------------------------------------------- */

static int run_argv(struct cz_server *s, char *out, size_t cap, char *const argv[])
{
    int pfd[2], status = 0;
    pid_t pid;
    size_t got = 0;

    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int lfd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0600);

        dup2(pfd[1], 1);
        if (lfd >= 0)
            dup2(lfd, 2);
        close(pfd[0]);
        close(pfd[1]);
        execv(CUSTOS_BIN, argv);
        _exit(127);
    }
    close(pfd[1]);
    for (;;) {
        char buf[4096];
        ssize_t n = read(pfd[0], buf, sizeof(buf));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (out && cap > 1 && got < cap - 1) {
            size_t take = (size_t)n < cap - 1 - got ? (size_t)n : cap - 1 - got;

            memcpy(out + got, buf, take);
            got += take;
        }
    }
    close(pfd[0]);
    if (out && cap)
        out[got] = '\0';
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int cz_cli(struct cz_server *s, char *out, size_t cap, ...)
{
    char *argv[40];
    size_t n = 0;
    va_list ap;
    const char *a;

    argv[n++] = (char *)CUSTOS_BIN;
    va_start(ap, cap);
    while ((a = va_arg(ap, const char *)) != NULL && n < sizeof(argv) / sizeof(argv[0]) - 1)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    return run_argv(s, out, cap, argv);
}

void cz_cli_principal(struct cz_server *s, const char *id, const char *kind, const char *roles,
                      struct cz_principal *p)
{
    char out[4096];

    assert_int_equal(s->pid, 0); /* the server holds the data directory's lock */
    memset(p, 0, sizeof(*p));
    snprintf(p->id, sizeof(p->id), "%s", id);
    assert_int_equal(cz_cli(s, out, sizeof(out), "principal", "add", "--data", s->data, "--id", id, "--kind", kind,
                            "--roles", roles, NULL),
                     0);
    cz_last_line(out, p->secret, sizeof(p->secret));
    assert_int_equal(strncmp(p->secret, "cps_", 4), 0);
    assert_int_equal(cz_cli(s, out, sizeof(out), "token", "issue", "--data", s->data, "--principal", id, NULL), 0);
    cz_last_line(out, p->token, sizeof(p->token));
    assert_int_equal(strncmp(p->token, "cus_", 4), 0);
    assert_int_equal(strlen(p->token), 47);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

struct cz_server *cz_server_init(void)
{
    static int curl_ready;
    static const char tag[] = "admin secret (shown once, keep it safe): ";
    struct cz_server *s = calloc(1, sizeof(*s));
    const char *tmp = getenv("TMPDIR");
    char out[8192];
    const char *sec;

    assert_non_null(s);
    reap_pending();
    pending = s; /* cleaned up by the next setup or at exit if an assertion below fails */
    if (!curl_ready) {
        assert_int_equal(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
        signal(SIGPIPE, SIG_IGN);
        curl_ready = 1;
    }
    snprintf(s->root, sizeof(s->root), "%s/custos-api-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(s->root));
    snprintf(s->data, sizeof(s->data), "%s/data", s->root);
    snprintf(s->port_file, sizeof(s->port_file), "%s/port", s->root);
    snprintf(s->log, sizeof(s->log), "%s/server.log", s->root);
    if (cz_cli(s, out, sizeof(out), "init", "--data", s->data, NULL) != 0) {
        print_log(s);
        fail_msg("custos init failed");
    }
    cz_last_line(out, s->admin_token, sizeof(s->admin_token));
    assert_int_equal(strlen(s->admin_token), 47);
    assert_int_equal(strncmp(s->admin_token, "cus_", 4), 0);
    sec = strstr(out, tag);
    assert_non_null(sec);
    sec += sizeof(tag) - 1;
    snprintf(s->admin_secret, sizeof(s->admin_secret), "%.*s", (int)strcspn(sec, "\r\n"), sec);
    assert_int_equal(strlen(s->admin_secret), 47);
    snprintf(s->admin.id, sizeof(s->admin.id), "admin");
    snprintf(s->admin.secret, sizeof(s->admin.secret), "%s", s->admin_secret);
    snprintf(s->admin.token, sizeof(s->admin.token), "%s", s->admin_token);
    assert_int_equal(cz_cli(s, out, sizeof(out), "ledger", "key", "--data", s->data, NULL), 0);
    cz_last_line(out, s->vkey, sizeof(s->vkey));
    assert_non_null(strchr(s->vkey, '+'));
    pending = NULL;
    return s;
}

static int read_port(const char *path)
{
    FILE *f = fopen(path, "r");
    char buf[32] = "";
    char *end;
    long p;

    if (!f)
        return 0;
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = '\0';
    fclose(f);
    if (!strchr(buf, '\n'))
        return 0; /* not completely written yet */
    p = strtol(buf, &end, 10);
    return (end != buf && p > 0 && p < 65536) ? (int)p : 0;
}

void cz_server_start(struct cz_server *s)
{
    uint64_t deadline = now_ms() + START_TIMEOUT_MS;
    int status;

    assert_int_equal(s->pid, 0);
    unlink(s->port_file);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        int lfd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0600);

        if (lfd >= 0) {
            dup2(lfd, 1);
            dup2(lfd, 2);
        }
        {
            const char *argv[16];
            int n = 0;

            argv[n++] = CUSTOS_BIN;
            argv[n++] = "serve";
            argv[n++] = "--data";
            argv[n++] = s->data;
            argv[n++] = "--listen";
            argv[n++] = "127.0.0.1:0";
            argv[n++] = "--port-file";
            argv[n++] = s->port_file;
            if (s->tls_cert[0]) {
                argv[n++] = "--tls-cert";
                argv[n++] = s->tls_cert;
                argv[n++] = "--tls-key";
                argv[n++] = s->tls_key;
            }
            if (s->serve_flag)
                argv[n++] = s->serve_flag;
            argv[n] = NULL;
            execv(CUSTOS_BIN, (char *const *)argv);
        }
        _exit(127);
    }
    while ((s->port = read_port(s->port_file)) == 0) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            print_log(s);
            fail_msg("custos serve exited before listening (status %d)", status);
        }
        if (now_ms() > deadline) {
            print_log(s);
            fail_msg("custos serve did not write its port file");
        }
        nap();
    }
    snprintf(s->base, sizeof(s->base), "%s://127.0.0.1:%d", s->tls_cert[0] ? "https" : "http", s->port);
    for (;;) {
        const struct cz_resp *r = cz_req(s, "GET", "/v1/health", NULL, NULL);

        if (r->status == 200)
            break;
        if (now_ms() > deadline) {
            print_log(s);
            fail_msg("/v1/health never answered 200");
        }
        nap();
    }
}

/* Stop the server; 0 when it exited with status 0, else -1 with a reason. */
static int stop_server(struct cz_server *s, char *why, size_t cap)
{
    uint64_t deadline = now_ms() + STOP_TIMEOUT_MS;
    int status = 0;
    pid_t w;

    if (s->curl) {
        curl_easy_cleanup(s->curl); /* close the keep-alive connection first */
        s->curl = NULL;
    }
    if (!s->pid)
        return 0;
    kill(s->pid, SIGTERM);
    while ((w = waitpid(s->pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
        nap();
    if (w != s->pid) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &status, 0);
        s->pid = 0;
        snprintf(why, cap, "custos serve did not stop within %d ms of SIGTERM", STOP_TIMEOUT_MS);
        return -1;
    }
    s->pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(why, cap, "custos serve did not exit 0 after SIGTERM (%s %d)",
                 WIFEXITED(status) ? "exit status" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? WTERMSIG(status) : -1);
        return -1;
    }
    return 0;
}

void cz_server_stop(struct cz_server *s)
{
    char why[160];

    if (stop_server(s, why, sizeof(why))) {
        print_log(s);
        fail_msg("%s", why);
    }
}

void cz_server_free(struct cz_server *s)
{
    char why[160];
    int bad;

    if (!s)
        return;
    bad = stop_server(s, why, sizeof(why));
    if (bad)
        print_log(s);
    release(s);
    if (bad)
        fail_msg("%s", why);
}

/* Remove the directory and free everything; the server must be stopped. */
static void release(struct cz_server *s)
{
    if (s->curl)
        curl_easy_cleanup(s->curl);
    nftw(s->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    while (s->resps) {
        struct cz_resp *r = s->resps;

        s->resps = r->next;
        json_decref(r->json);
        free(r->body);
        free(r);
    }
    while (s->kept) {
        struct cz_keep *k = s->kept;

        s->kept = k->next;
        free(k->mem);
        json_decref(k->json);
        free(k);
    }
    free(s);
}

static void reap_pending(void)
{
    struct cz_server *s = pending;
    char why[160];

    pending = NULL;
    if (!s)
        return;
    if (stop_server(s, why, sizeof(why)))
        print_log(s);
    release(s);
}

static void begin_setup(void)
{
    static int registered;

    reap_pending();
    if (!registered) {
        atexit(reap_pending);
        registered = 1;
    }
}

int cz_setup_bare(void **state)
{
    struct cz_server *s;

    begin_setup();
    s = cz_server_init();
    pending = s;
    cz_server_start(s);
    pending = NULL;
    *state = s;
    return 0;
}

int cz_setup_stopped(void **state)
{
    begin_setup();
    *state = cz_server_init();
    return 0;
}

int cz_setup_std(void **state)
{
    struct cz_server *s;

    begin_setup();
    s = cz_server_init();
    pending = s;
    cz_server_start(s);
    cz_api_principal(s, "svc", "service", "[\"service\"]", &s->svc);
    cz_api_principal(s, "sup", "staff", "[\"support\"]", &s->sup);
    cz_api_principal(s, "aud", "staff", "[\"auditor\"]", &s->aud);
    cz_api_principal(s, "mint", "service", "[\"minter\"]", &s->mint);
    pending = NULL;
    *state = s;
    return 0;
}

int cz_teardown(void **state)
{
    cz_server_free(*state);
    *state = NULL;
    return 0;
}

/* ---- requests ---------------------------------------------------------------------------- */

struct grow {
    char *p;
    size_t len, cap;
};

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    struct grow *g = ctx;
    size_t add = size * n;

    if (g->len + add + 1 > BODY_CAP)
        return 0;
    if (g->len + add + 1 > g->cap) {
        size_t ncap = g->cap ? g->cap : 4096;
        char *np;

        while (ncap < g->len + add + 1)
            ncap *= 2;
        np = realloc(g->p, ncap);
        if (!np)
            return 0;
        g->p = np;
        g->cap = ncap;
    }
    memcpy(g->p + g->len, data, add);
    g->len += add;
    g->p[g->len] = '\0';
    return add;
}

static void header_value(char *dst, size_t cap, const char *line, size_t n, size_t skip)
{
    const char *v = line + skip;
    size_t vl = n - skip;

    while (vl && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    snprintf(dst, cap, "%.*s", (int)vl, v);
}

static size_t on_header(char *line, size_t size, size_t n, void *ctx)
{
    struct cz_resp *r = ctx;
    size_t len = size * n;

    if (len >= 13 && strncasecmp(line, "content-type:", 13) == 0)
        header_value(r->content_type, sizeof(r->content_type), line, len, 13);
    else if (len >= 14 && strncasecmp(line, "cache-control:", 14) == 0)
        header_value(r->cache_control, sizeof(r->cache_control), line, len, 14);
    return len;
}

const struct cz_resp *cz_req_raw(struct cz_server *s, const char *method, const char *path,
                                 const char *const *headers, const void *body, size_t len)
{
    struct cz_resp *r = calloc(1, sizeof(*r));
    struct curl_slist *h = NULL;
    struct grow g = {0};
    const char *url = cz_fmt(s, "%s%s", s->base, path);
    CURLcode cc;

    assert_non_null(r);
    r->next = s->resps;
    s->resps = r;
    if (!s->curl) {
        s->curl = curl_easy_init();
        assert_non_null(s->curl);
    }
    curl_easy_reset(s->curl);
    curl_easy_setopt(s->curl, CURLOPT_URL, url);
    curl_easy_setopt(s->curl, CURLOPT_PATH_AS_IS, 1L);
    if (s->tls_cert[0])
        curl_easy_setopt(s->curl, CURLOPT_CAINFO, s->tls_cert);
    curl_easy_setopt(s->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->curl, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(s->curl, CURLOPT_WRITEDATA, &g);
    curl_easy_setopt(s->curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(s->curl, CURLOPT_HEADERDATA, r);
    h = curl_slist_append(h, "Expect:");
    if (body)
        h = curl_slist_append(h, "Content-Type: application/json");
    for (; headers && *headers; headers++)
        h = curl_slist_append(h, *headers);
    curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, h);
    if (strcmp(method, "GET") == 0 && !body)
        curl_easy_setopt(s->curl, CURLOPT_HTTPGET, 1L);
    else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(s->curl, CURLOPT_POST, 1L);
        curl_easy_setopt(s->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? len : 0));
        curl_easy_setopt(s->curl, CURLOPT_POSTFIELDS, body ? body : "");
    } else {
        curl_easy_setopt(s->curl, CURLOPT_CUSTOMREQUEST, method);
        if (body) {
            curl_easy_setopt(s->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
            curl_easy_setopt(s->curl, CURLOPT_POSTFIELDS, body);
        }
    }
    cc = curl_easy_perform(s->curl);
    curl_slist_free_all(h);
    r->body = g.p ? g.p : calloc(1, 1);
    r->len = g.len;
    if (cc != CURLE_OK)
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(cc));
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->len)
        r->json = json_loadb(r->body, r->len, 0, NULL);
    return r;
}

const struct cz_resp *cz_req(struct cz_server *s, const char *method, const char *path, const char *token,
                             const char *body)
{
    const char *hdr[2] = {NULL, NULL};

    if (token)
        hdr[0] = cz_fmt(s, "Authorization: Bearer %s", token);
    return cz_req_raw(s, method, path, hdr, body, body ? strlen(body) : 0);
}

/* ---- API shortcuts ----------------------------------------------------------------------- */

void cz_api_principal(struct cz_server *s, const char *id, const char *kind, const char *roles_json,
                      struct cz_principal *p)
{
    const struct cz_resp *r;
    json_t *req;
    char *text;

    memset(p, 0, sizeof(*p));
    snprintf(p->id, sizeof(p->id), "%s", id);
    r = cz_req(s, "POST", "/v1/principals", s->admin_token,
               cz_fmt(s, "{\"id\":\"%s\",\"kind\":\"%s\",\"roles\":%s}", id, kind, roles_json));
    cz_expect(r, 201);
    assert_string_equal(cz_str(r->json, "id"), id);
    assert_non_null(cz_str(r->json, "secret"));
    snprintf(p->secret, sizeof(p->secret), "%s", cz_str(r->json, "secret"));
    req = json_pack("{s:s, s:s}", "principal", id, "secret", p->secret);
    assert_non_null(req);
    text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    assert_non_null(text);
    keep_mem(s, text);
    r = cz_req(s, "POST", "/v1/auth/token", NULL, text);
    cz_expect(r, 200);
    assert_non_null(cz_str(r->json, "token"));
    assert_non_null(cz_str(r->json, "expires_at"));
    snprintf(p->token, sizeof(p->token), "%s", cz_str(r->json, "token"));
}

const char *cz_create_subject(struct cz_server *s, const char *token, const char *json_body)
{
    const struct cz_resp *r = cz_req(s, "POST", "/v1/subjects", token, json_body);

    cz_expect(r, 201);
    assert_true(cz_is_id(cz_str(r->json, "id")));
    return cz_fmt(s, "%s", cz_str(r->json, "id"));
}

const char *cz_mint(struct cz_server *s, const char *id)
{
    const struct cz_resp *r = cz_req(s, "POST", cz_fmt(s, "/v1/subjects/%s/token", id), s->mint.token, NULL);

    cz_expect(r, 200);
    assert_non_null(cz_str(r->json, "token"));
    return cz_fmt(s, "%s", cz_str(r->json, "token"));
}

json_t *cz_ledger_entries(struct cz_server *s)
{
    json_t *all = cz_keep_json(s, json_array());
    uint64_t start = 0, size = 0;

    assert_non_null(all);
    do {
        const struct cz_resp *r =
            cz_req(s, "GET", cz_fmt(s, "/v1/ledger/entries?start=%llu&count=1000", (unsigned long long)start),
                   s->admin_token, NULL);
        json_t *e;
        size_t n;

        cz_expect(r, 200);
        e = cz_get(r->json, "entries");
        assert_true(json_is_array(e));
        assert_true(json_is_integer(cz_get(r->json, "size")));
        if (start == 0)
            size = (uint64_t)json_integer_value(cz_get(r->json, "size"));
        n = json_array_size(e);
        assert_int_equal(json_array_extend(all, e), 0);
        if (n == 0)
            break;
        start += n;
    } while (start < size);
    assert_int_equal(json_array_size(all), size);
    return all;
}

json_t *cz_find_event(json_t *entries, ...)
{
    size_t i;

    for (i = 0; i < json_array_size(entries); i++) {
        json_t *ev = json_object_get(json_array_get(entries, i), "event");
        const char *k, *v;
        int ok = 1;
        va_list ap;

        va_start(ap, entries);
        while (ok && (k = va_arg(ap, const char *)) != NULL) {
            v = va_arg(ap, const char *);
            ok = json_is_string(json_object_get(ev, k)) && strcmp(json_string_value(json_object_get(ev, k)), v) == 0;
        }
        va_end(ap);
        if (ok)
            return ev;
    }
    return NULL;
}

/* ---- assertions -------------------------------------------------------------------------- */

void cz_check_status(const struct cz_resp *r, long status, const char *file, int line)
{
    if (r->status != status)
        print_error("expected HTTP %ld, got %ld: %.600s\n", status, r->status, r->body);
    _assert_int_equal((uintmax_t)r->status, (uintmax_t)status, file, line);
}

void cz_check_error(const struct cz_resp *r, long status, const char *code, const char *file, int line)
{
    const char *c, *m;

    cz_check_status(r, status, file, line);
    c = cz_str(r->json, "error.code");
    m = cz_str(r->json, "error.message");
    if (!c || !m || !*m)
        print_error("error body lacks code or message: %.600s\n", r->body);
    _assert_true(c != NULL, "error.code is a string", file, line);
    _assert_true(m != NULL && *m, "error.message is a non-empty string", file, line);
    if (code)
        _assert_string_equal(c, code, file, line);
    _assert_true(strstr(r->content_type, "application/json") != NULL, "error is application/json", file, line);
    _assert_true(strstr(r->cache_control, "no-store") != NULL, "Cache-Control: no-store", file, line);
}

json_t *cz_get(json_t *j, const char *dotted)
{
    char key[128];

    while (j && *dotted) {
        size_t n = strcspn(dotted, ".");

        if (n >= sizeof(key) || !json_is_object(j))
            return NULL;
        memcpy(key, dotted, n);
        key[n] = '\0';
        j = json_object_get(j, key);
        dotted += n;
        if (*dotted == '.')
            dotted++;
    }
    return j;
}

const char *cz_str(json_t *j, const char *dotted)
{
    json_t *v = cz_get(j, dotted);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

int cz_is_id(const char *s)
{
    size_t i;

    if (!s || strlen(s) != 32)
        return 0;
    for (i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

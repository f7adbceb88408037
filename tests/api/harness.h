/*
 * harness.h - fixture and request helpers for the HTTP API tests
 * (tests/api/test_*.c, ctest label `integration`).
 *
 * A fixture is one real vault served by the real binary:
 *   cz_server_init()   mkdtemp, `custos init --data DIR/data` (admin token and
 *                      secret taken from its stdout), `custos ledger key`;
 *   cz_cli_principal() optional operator commands while the server is stopped
 *                      (`custos principal add`, `custos token issue`);
 *   cz_server_start()  `custos serve --listen 127.0.0.1:0 --port-file F` as a
 *                      child process; polls the port file, then /v1/health;
 *   cz_server_stop()   SIGTERM, asserts the server exits 0 (under ASan this
 *                      also catches leaks in the server);
 *   cz_server_free()   stops a running server, removes the directory, frees
 *                      everything the fixture handed out.
 * No fixed port, no sleep longer than one poll interval (5 ms).
 *
 * Ownership: every response, string and JSON value a helper returns is owned
 * by the fixture and lives until cz_server_free(), so tests never free and a
 * failed assertion (which longjmps out of the test) leaks nothing.
 *
 * The server binary is CUSTOS_BIN (set by tests/CMakeLists.txt).
 */
#ifndef CUSTOS_TEST_HARNESS_H
#define CUSTOS_TEST_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/types.h>

#include <curl/curl.h>
#include <jansson.h>

/* One HTTP response. */
struct cz_resp {
    long status;
    char *body;               /* NUL-terminated (the body may contain NULs; see len) */
    size_t len;
    json_t *json;             /* the body parsed when it is JSON, else NULL */
    char content_type[128];   /* "" when absent */
    char cache_control[128];  /* "" when absent */
    struct cz_resp *next;     /* fixture's list */
};

/* A principal the test holds credentials for. */
struct cz_principal {
    char id[65];
    char secret[64];
    char token[64];
};

struct cz_keep;

struct cz_server {
    char root[256];      /* the temp directory */
    char data[320];      /* root/data: the vault */
    char port_file[320];
    char log[320];       /* server stdout+stderr */
    char admin_token[64];
    char admin_secret[64];
    char vkey[512];      /* `custos ledger key` */
    pid_t pid;           /* 0 when not running */
    int port;
    char base[64];       /* "http://127.0.0.1:PORT" (https with TLS) */
    char tls_cert[320];  /* when set (PEM paths), cz_server_start serves HTTPS and requests trust this cert */
    char tls_key[320];
    const char *serve_flag;  /* when set, one more argument to `custos serve` (e.g. "--webhook-allow-loopback") */
    CURL *curl;
    struct cz_resp *resps;
    struct cz_keep *kept;
    /* filled by cz_setup_std: service, support (staff), auditor (staff), minter (service) */
    struct cz_principal admin, svc, sup, aud, mint;
};

/* ---- lifecycle --------------------------------------------------------------------------- */

struct cz_server *cz_server_init(void);
void cz_server_start(struct cz_server *s);
void cz_server_stop(struct cz_server *s);
void cz_server_free(struct cz_server *s);

/* cmocka fixtures: a started server with the standard principals (made through the API). */
int cz_setup_std(void **state);
/* cmocka fixture: a started server with the admin only. */
int cz_setup_bare(void **state);
/* cmocka fixture: an initialised vault, server not started (for CLI work first). */
int cz_setup_stopped(void **state);
int cz_teardown(void **state);

/* ---- the CLI ----------------------------------------------------------------------------- */

/*
 * Run CUSTOS_BIN with the NULL-terminated arguments; stdout goes to out
 * (NUL-terminated, truncated to cap), stderr to the server log.  Returns the
 * exit status (or -1 when it did not exit normally).
 */
int cz_cli(struct cz_server *s, char *out, size_t cap, ...);
/* `principal add` + `token issue` while stopped; asserts both succeed. */
void cz_cli_principal(struct cz_server *s, const char *id, const char *kind, const char *roles,
                      struct cz_principal *p);
/* Last non-empty line of text, copied into out. */
void cz_last_line(const char *text, char *out, size_t cap);

/* ---- requests ---------------------------------------------------------------------------- */

/*
 * One request.  token: NULL = no Authorization header; otherwise "Bearer <token>".
 * body: NULL = none; for cz_req it is a NUL-terminated string.
 */
const struct cz_resp *cz_req(struct cz_server *s, const char *method, const char *path, const char *token,
                             const char *body);
/* Full control: extra header lines ("Name: value", NULL-terminated list, may be NULL), raw body. */
const struct cz_resp *cz_req_raw(struct cz_server *s, const char *method, const char *path,
                                 const char *const *headers, const void *body, size_t len);

/* printf into a string owned by the fixture. */
const char *cz_fmt(struct cz_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* URL-encode (every byte outside [A-Za-z0-9._~-]); owned by the fixture. */
const char *cz_esc(struct cz_server *s, const char *v);
/* Keep a JSON reference until cz_server_free; returns it. */
json_t *cz_keep_json(struct cz_server *s, json_t *j);

/* ---- API shortcuts (each asserts success) ----------------------------------------------- */

/* POST /v1/principals as admin, then POST /v1/auth/token with the secret. */
void cz_api_principal(struct cz_server *s, const char *id, const char *kind, const char *roles_json,
                      struct cz_principal *p);
/* POST /v1/subjects; returns the new id (owned by the fixture). */
const char *cz_create_subject(struct cz_server *s, const char *token, const char *json_body);
/* POST /v1/subjects/{id}/token with the standard minter; the customer token (owned by the fixture). */
const char *cz_mint(struct cz_server *s, const char *id);
/* Every ledger entry [0, size) through GET /v1/ledger/entries as admin (pages of 1000); a JSON array
   of {"index","data","event"} owned by the fixture. */
json_t *cz_ledger_entries(struct cz_server *s);
/* First event in entries (array from cz_ledger_entries) whose members equal the given
   NULL-terminated key/value string pairs; NULL when none. */
json_t *cz_find_event(json_t *entries, ...);

/* ---- assertions -------------------------------------------------------------------------- */

void cz_check_status(const struct cz_resp *r, long status, const char *file, int line);
void cz_check_error(const struct cz_resp *r, long status, const char *code, const char *file, int line);
/* The status, and the body printed on a mismatch. */
#define cz_expect(r, status) cz_check_status((r), (status), __FILE__, __LINE__)
/* Status, {"error":{"code":code,"message":non-empty}}, Cache-Control: no-store. */
#define cz_expect_error(r, status, code) cz_check_error((r), (status), (code), __FILE__, __LINE__)

/* Member lookup by dotted path ("error.code", "fields.address_book"); NULL when absent. */
json_t *cz_get(json_t *j, const char *dotted);
/* String at a dotted path, or NULL. */
const char *cz_str(json_t *j, const char *dotted);

/* Is s 32 lowercase hex digits? */
int cz_is_id(const char *s);

#endif

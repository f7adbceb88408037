/*
 * server.h - the HTTP front end (libmicrohttpd): request context, routes,
 * response helpers.  A client of the core's public headers only.
 *
 * Threading: N worker threads, each running its own libmicrohttpd daemon in
 * external-epoll mode on one shared listening socket.  A request whose audit
 * events are not durable yet is held with its response ready (the handler
 * returns without queueing it, and libmicrohttpd calls it again on each turn
 * of the worker's loop); the ledger's writer wakes a worker once per fsync'ed
 * batch that covers something it holds.  No thread sleeps per request, no
 * response leaves before its events are durable.
 */
#ifndef CUSTOS_SERVER_H
#define CUSTOS_SERVER_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "custos/err.h"
#include "custos/vault.h"

struct req;
typedef void (*custos_handler)(struct req *r);

#define ROUTE_PUBLIC 0 /* no token */
#define ROUTE_AUTH 1   /* bearer token required */

#define ROUTE_PARAM_MAX 2
#define ROUTE_PARAM_LEN 128

struct route {
    const char *method;
    const char *pattern;  /* "/v1/subjects/{id}" */
    custos_handler fn;
    int auth;
    const char *action;   /* audit action for requests rejected before the handler */
    const char *const *query; /* allowed query parameters (NULL-terminated), NULL = none,
                                 custos_query_any = names checked by the handler */
    int body;             /* 1 when the route takes a JSON body; a body elsewhere is refused */
};

extern const char *const custos_query_any[];

/* Methods allowed on a path, comma-separated ("GET, PATCH, DELETE"), for a 405's Allow header. */
void custos_route_allowed(const char *path, char *out, size_t cap);

/*
 * Match method + path against the route table.  Returns the route or NULL;
 * *path_known tells whether the path matched with another method (405).
 * Path parameters are copied into params (at most ROUTE_PARAM_MAX, each
 * shorter than ROUTE_PARAM_LEN, made of [A-Za-z0-9._-]); a parameter that
 * does not fit that shape makes the route not match.
 */
const struct route *custos_route_match(const char *method, const char *path, char params[][ROUTE_PARAM_LEN],
                                       int *path_known);

struct req {
    struct custos_vault *vault;
    void *conn;                   /* struct MHD_Connection * */
    const char *method;
    const char *url;
    const struct route *route;
    char params[ROUTE_PARAM_MAX][ROUTE_PARAM_LEN];
    char source[48];
    struct custos_caller caller;
    /* body, capped at CUSTOS_BODY_MAX */
    char *body;
    size_t body_len;
    size_t body_cap;              /* bytes allocated at body */
    int body_too_big;
    size_t body_discarded;        /* bytes past the cap, read and dropped */
    /* response */
    int status;
    char *resp;
    size_t resp_len;
    const char *resp_type;
    char allow[64];               /* Allow header of a 405 */
    int close;                    /* answer with Connection: close (a framing error) */
    int bad_auth;                 /* Authorization repeated: a failed authentication */
    int slash_encoded;            /* the path as sent holds "%2F": it matches no route */
    /* holding: the response is ready but waits for audit entry audit_index to be durable */
    int holding;
    uint64_t audit_index;
};

/* Query parameter (NULL when absent). */
const char *custos_req_query(struct req *r, const char *name);

/* Responses: the body is serialised now; `body` is stolen. */
void custos_reply_json(struct req *r, int status, json_t *body);
void custos_reply_error(struct req *r, enum custos_err rc);
void custos_reply_error_msg(struct req *r, int status, const char *code, const char *msg);
/* The usual end of a handler: the error for rc, else `out` with `status`. */
void custos_reply_result(struct req *r, enum custos_err rc, json_t *out, int status);
void custos_reply_text(struct req *r, int status, const char *text, size_t len, const char *type);
/* Like custos_reply_result for a JSON text the reply takes over (freed with custos_free_wiped). */
void custos_reply_json_text(struct req *r, enum custos_err rc, char *text, size_t len, int status);

/* Handlers (h_*.c). */
void h_health(struct req *r);
void h_principal_create(struct req *r);
void h_principal_disable(struct req *r);
void h_principal_rotate(struct req *r);
void h_principal_list(struct req *r);
void h_principal_tokens(struct req *r);
void h_principal_token_revoke(struct req *r);
void h_keys_status(struct req *r);
void h_keys_rotate(struct req *r);
void h_auth_token(struct req *r);
void h_auth_revoke(struct req *r);
void h_subject_create(struct req *r);
void h_subject_search(struct req *r);
void h_subject_read(struct req *r);
void h_subject_update(struct req *r);
void h_subject_erase(struct req *r);
void h_subject_token(struct req *r);
void h_subject_export(struct req *r);
void h_link_put(struct req *r);
void h_erasure_status(struct req *r);
void h_ledger_checkpoint(struct req *r);
void h_ledger_entries(struct req *r);
void h_ledger_inclusion(struct req *r);
void h_ledger_consistency(struct req *r);

struct custos_server_opts {
    const char *listen;    /* "HOST:PORT", default 127.0.0.1:8420 */
    const char *tls_cert;  /* PEM files */
    const char *tls_key;
    int insecure;          /* allow plain HTTP on a non-loopback address */
    const char *port_file; /* write the bound port here (tests) */
    unsigned max_connections;
    unsigned threads;      /* worker threads (one libmicrohttpd daemon each); 0 = default */
};

/* Serve until *stop becomes non-zero (set from a signal handler, or another thread: an atomic,
   lock-free so that a handler may store to it).  Logs to stderr. */
enum custos_err custos_server_run(struct custos_vault *v, const struct custos_server_opts *o,
                                  atomic_int *stop);

/* Options of the outbox deliverer (webhook.c). */
struct custos_webhook_opts {
    int allow_loopback; /* also deliver to 127/8 and ::1 (development, tests); off by default */
};

/* Set before custos_webhook_start (custos serve does it before custos_server_run).  Without a
   call, the defaults: loopback refused.  Link-local, unspecified, multicast and broadcast
   addresses are refused whatever the options. */
void custos_webhook_configure(const struct custos_webhook_opts *o);

/* The outbox deliverer (webhook.c): runs until *stop. */
enum custos_err custos_webhook_start(struct custos_vault *v, atomic_int *stop);
void custos_webhook_stop(void);

/*
 * The request head's framing, decided from its header values alone (server.c's head_check feeds
 * it libmicrohttpd's headers; tests/fuzz/fuzz_request.c feeds it anything).  Start from a zeroed
 * struct, add every header (name compared without case), then ask for the verdict.
 */
struct custos_head {
    unsigned content_length, transfer_encoding, authorization; /* how often each header came */
    int chunked_only;          /* the (last) Transfer-Encoding is "chunked" */
    int expect_continue;       /* an Expect: 100-continue came: the client waits before its body */
    unsigned bad_name;         /* names that are not a token, or a framing header's name and more */
    unsigned host;             /* Host headers */
    int http11;                /* set by the caller: an HTTP/1.1 request (Host required) */
    unsigned long long length; /* the (last) Content-Length, strtoull: libmicrohttpd checked its syntax */
};

enum custos_head_verdict {
    CUSTOS_HEAD_OK,
    CUSTOS_HEAD_BAD_NAME,             /* 400: a header name that is not an RFC 9110 token, or that
                                         begins with Content-Length, Transfer-Encoding or
                                         Authorization and goes on (see custos_head_add) */
    CUSTOS_HEAD_HOST,                 /* 400: Host twice, or none in an HTTP/1.1 request (RFC 9112 3.2) */
    CUSTOS_HEAD_LENGTH_REPEATED,      /* 400: Content-Length twice */
    CUSTOS_HEAD_LENGTH_AND_ENCODING,  /* 400: Transfer-Encoding with Content-Length */
    CUSTOS_HEAD_ENCODING_UNSUPPORTED, /* 501: Transfer-Encoding other than one "chunked" */
    CUSTOS_HEAD_TOO_BIG,              /* 413 (through dispatch) now, unread: a body announced over
                                         CUSTOS_BODY_MAX that its client holds back (Expect:
                                         100-continue) or that is over CUSTOS_BODY_DRAIN_MAX */
    CUSTOS_HEAD_TOO_BIG_DRAIN         /* 413 (through dispatch) once the body, announced over
                                         CUSTOS_BODY_MAX but at most CUSTOS_BODY_DRAIN_MAX, has been
                                         read and dropped */
};

/* A body over the cap is read and dropped to its end, so that its client, still sending, gets the
   413 rather than a reset connection; past this many bytes it is not (see custos_head_verdict). */
#define CUSTOS_BODY_DRAIN_MAX (1024 * 1024)

void custos_head_add(struct custos_head *h, const char *key, const char *value);
/* In this order of precedence; Authorization repeated is the caller's (h->authorization > 1: a
   failed authentication, not a framing error). */
enum custos_head_verdict custos_head_verdict(const struct custos_head *h);

/* Parse "HOST:PORT" / "[V6]:PORT"; sets *loopback.  CUSTOS_ERR_INVALID with a detail. */
enum custos_err custos_parse_listen(const char *s, void *sockaddr_storage, unsigned *len, int *loopback);

#endif

/*
 * server.c - libmicrohttpd daemon, request lifecycle, responses.
 *
 * Lifecycle of a request: the URI log callback allocates a struct req (and
 * notes an encoded slash in the path as sent); the first callback fills it; upload
 * callbacks append the body up to CUSTOS_BODY_MAX (the rest is discarded
 * and the request answered 413); the final callback routes it,
 * authenticates when the route needs it (the core audits failures), checks
 * query parameters, runs the handler, and queues its response once the
 * audit events it produced are durable (until then the response is held:
 * see "Workers" below).
 *
 * Logging: one line per server event to stderr, never a header, a body, a
 * token or a personal value.
 *
 * Must never: send a personal value on an error path, send a response
 * before the core returned (the core makes the audit event durable first),
 * listen on a non-loopback address without TLS unless told --insecure.
 */
#include "server/server.h"
#include "core/thread.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <sodium.h>

#include "custos/ledger.h"

#include "custos/banned.h"

/* Workers when --threads is not given: one per CPU (2..16).  More workers mean more wake-ups per
   durable ledger batch; fewer mean a write's fsync in SQLite holds more connections waiting. */
static unsigned default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 2 ? 2u : n > 16 ? 16u : (unsigned)n;
}
/* libmicrohttpd's per-connection pool (request line, headers, read buffer), cleared per request:
   16 KiB holds any sane request head; bodies stream through it to on_request. */
#define CONN_POOL_BYTES (16 * 1024)

/* ---- TLS files ----------------------------------------------------------------------------- */

/* What a TLS handshake may negotiate (GnuTLS priority string): TLS 1.3 and 1.2 only, AEAD ciphers
   only, in 1.2 only ephemeral ECDH key exchange (forward secrecy) and no SHA-1 handshake signature
   (RFC 9155; NORMAL still has RSA-SHA1 and ECDSA-SHA1, which a client offering only those got);
   the server's order wins.  Nothing older: the clients of a vault are its own services and staff,
   not old browsers. */
#define TLS_PRIORITIES                                                                                 \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+CHACHA20-POLY1305:+AES-256-GCM:"           \
    "+AES-128-GCM:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1:"      \
    "%SERVER_PRECEDENCE"
#define TLS_FILE_MAX (1 << 20)

/* read_tls_file: the PEM file at path, NUL-terminated, into *out, in sodium_malloc'd memory
   (locked, guarded; the caller frees it with sodium_free, which wipes it), the certificate too:
   a combined PEM holds the key as well.  The private key (secret) must be a regular file that
   only its owner can read: owned by the user running custos with no group or other permission,
   or owned by root and at most group-readable (0640, as in Debian's ssl-cert group); otherwise
   serve refuses it, as OpenSSH and PostgreSQL do, instead of serving with a key anyone on the
   machine may have copied. */
static enum custos_err read_tls_file(const char *path, int secret, char **out)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK); /* a FIFO must not block the open */
    enum custos_err rc = CUSTOS_OK;

    if (fd < 0)
        return custos_err_set(CUSTOS_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > TLS_FILE_MAX) {
        rc = custos_err_set(CUSTOS_ERR_IO, "cannot read %s: not a regular file of 1 byte to 1 MiB", path);
        goto done;
    }
    if (secret && !(st.st_uid == geteuid() && !(st.st_mode & 077)) && !(st.st_uid == 0 && !(st.st_mode & 037))) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "refusing the TLS key %s: %s (mode %04o); it must be readable by its owner "
                            "only (chmod 600), or owned by root and at most group-readable (0640)",
                            path, st.st_uid == geteuid() || st.st_uid == 0 ? "others may read it"
                                                                            : "it belongs to another user",
                            (unsigned)(st.st_mode & 07777));
        goto done;
    }
    buf = sodium_malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = custos_err_set(CUSTOS_ERR_NOMEM, "out of memory");
        goto done;
    }
    while (got < (size_t)st.st_size && (n = read(fd, buf + got, (size_t)st.st_size - got)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = custos_err_set(CUSTOS_ERR_IO, "cannot read %s: %s", path, strerror(errno));
            goto done;
        }
        got += (size_t)n;
    }
    if (got != (size_t)st.st_size) {
        rc = custos_err_set(CUSTOS_ERR_IO, "cannot read %s: it changed while being read", path);
        goto done;
    }
    buf[got] = '\0';
    *out = buf;
    buf = NULL;
done:
    sodium_free(buf);
    close(fd);
    return rc;
}

/* ---- responses ----------------------------------------------------------------------------- */

static void set_resp(struct req *r, int status, char *body, size_t len, const char *type)
{
    custos_free_wiped(r->resp);
    r->status = status;
    r->resp = body;
    r->resp_len = len;
    r->resp_type = type;
}

void custos_reply_json(struct req *r, int status, json_t *body)
{
    size_t len;
    char *s = custos_json_dump(body, &len);

    json_decref(body);
    custos_reply_json_text(r, CUSTOS_OK, s, len, status);
}

void custos_reply_error_msg(struct req *r, int status, const char *code, const char *msg)
{
    char clean[256];
    json_t *j;
    size_t len;
    char *s;

    /* the message may echo caller input cut at a byte cap: make it valid UTF-8, or jansson
       refuses it */
    snprintf(clean, sizeof(clean), "%s", msg);
    custos_utf8_scrub(clean);
    j = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", clean);
    s = custos_json_dump(j, &len);
    json_decref(j);
    if (!s) {
        set_resp(r, 500, NULL, 0, "application/json"); /* out of memory: an empty 500 */
        return;
    }
    set_resp(r, status, s, len, "application/json");
}

void custos_reply_error(struct req *r, enum custos_err rc)
{
    custos_reply_error_msg(r, custos_err_http_status(rc), custos_err_api_code(rc), custos_err_msg(rc));
}

void custos_reply_result(struct req *r, enum custos_err rc, json_t *out, int status)
{
    if (rc) {
        json_decref(out);
        custos_reply_error(r, rc);
    } else
        custos_reply_json(r, status, out);
}

void custos_reply_json_text(struct req *r, enum custos_err rc, char *text, size_t len, int status)
{
    if (rc) {
        custos_free_wiped(text);
        custos_reply_error(r, rc);
    } else if (!text)
        custos_reply_error_msg(r, 500, "internal", "out of memory");
    else
        set_resp(r, status, text, len, "application/json");
}

void custos_reply_text(struct req *r, int status, const char *text, size_t len, const char *type)
{
    char *s = malloc(len + 1);

    if (!s) {
        custos_reply_error_msg(r, 500, "internal", "out of memory");
        return;
    }
    memcpy(s, text, len);
    s[len] = '\0';
    set_resp(r, status, s, len, type);
}

const char *custos_req_query(struct req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* ---- query checking ------------------------------------------------------------------------ */

struct qcheck {
    const char *const *allowed;
    const char *bad;
    const char *seen[8];
    size_t nseen;
    int dup, too_many, too_long, no_value;
};

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct qcheck *q = cls;
    const char *const *a;
    size_t i;

    (void)kind;
    if (!value) { /* "?fields" without "=": libmicrohttpd's NULL would read as "not given" */
        q->bad = key;
        q->no_value = 1;
        return MHD_NO;
    }
    if (strlen(value) > CUSTOS_QUERY_VALUE_MAX) {
        q->bad = key;
        q->too_long = 1;
        return MHD_NO;
    }
    if (q->allowed == custos_query_any) {
        a = &key; /* names are the handler's to check */
    } else {
        for (a = q->allowed; a && *a; a++)
            if (strcmp(*a, key) == 0)
                break;
        if (!a || !*a) {
            q->bad = key;
            return MHD_NO;
        }
    }
    for (i = 0; i < q->nseen; i++)
        if (strcmp(q->seen[i], key) == 0) {
            q->dup = 1;
            return MHD_NO;
        }
    if (q->nseen == sizeof(q->seen) / sizeof(q->seen[0])) {
        q->too_many = 1;
        return MHD_NO;
    }
    q->seen[q->nseen++] = *a;
    return MHD_YES;
}

/* 0 when the query string only holds allowed, unique, bounded parameters. */
static int query_ok(struct req *r, char *msg, size_t cap)
{
    struct qcheck q;

    memset(&q, 0, sizeof(q));
    q.allowed = r->route->query;
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, check_arg, &q);
    if (q.no_value) {
        snprintf(msg, cap, "query parameter '%.40s' has no value", q.bad);
        return -1;
    }
    if (q.too_long) {
        snprintf(msg, cap, "query parameter '%.40s' is longer than %d bytes", q.bad, CUSTOS_QUERY_VALUE_MAX);
        return -1;
    }
    if (q.bad) {
        snprintf(msg, cap, "unknown query parameter '%.40s'", q.bad);
        return -1;
    }
    if (q.dup) {
        snprintf(msg, cap, "a query parameter is repeated");
        return -1;
    }
    if (q.too_many) {
        snprintf(msg, cap, "too many query parameters");
        return -1;
    }
    return 0;
}

/* ---- request lifecycle --------------------------------------------------------------------- */

/*
 * Workers.  Each owns one libmicrohttpd daemon in external-epoll mode and runs its loop; the
 * ledger's writer wakes it through its eventfd once per durable batch that covers a response
 * it holds (not once per request: that is the point of owning the loop).
 */
struct server;

struct worker {
    struct server *s;
    struct MHD_Daemon *mhd;
    pthread_t thread;
    int started;
    int efd;                         /* eventfd: written by the ledger's writer */
    atomic_uint_least64_t wait_for;  /* lowest audit index a held response waits for, or NONE */
    atomic_int signalled;            /* efd written, the wake-up not seen by the worker yet */
    /* the worker thread's own */
    uint64_t next_wait;              /* recomputed on every turn by the handlers of held requests */
    size_t nheld;
};

struct server {
    struct custos_vault *vault;
    struct custos_ledger *ledger;
    struct worker *w;
    unsigned nw;
    atomic_int failed;   /* the ledger failed: held responses become 503 */
    atomic_int stopping; /* finish the held responses, accept nothing new */
};

#define NONE UINT64_MAX

static void wake(struct worker *w)
{
    uint64_t one = 1;

    if (!atomic_exchange(&w->signalled, 1) && write(w->efd, &one, sizeof(one)) < 0) {
        /* an eventfd write fails only when its counter would overflow: the worker is awake */
    }
}

/* The ledger's writer reports progress: wake each worker holding a response it covers. */
static void on_durable(void *cls, uint64_t durable, int failed)
{
    struct server *s = cls;

    if (failed)
        atomic_store(&s->failed, 1);
    for (unsigned i = 0; i < s->nw; i++)
        if (failed || atomic_load(&s->w[i].wait_for) < durable)
            wake(&s->w[i]);
}

static void refuse_unrecorded(struct req *r)
{
    custos_err_set(CUSTOS_ERR_UNAVAILABLE, "the access ledger cannot record this request: refused");
    custos_reply_error(r, CUSTOS_ERR_UNAVAILABLE);
}

/*
 * 1 while r's response must wait for its audit events (the worker notes what it waits for),
 * 0 when it may go now: durable, or the ledger failed and it became a 503.
 */
static int still_held(struct worker *w, struct req *r)
{
    if (custos_audit_is_durable(w->s->vault, r->audit_index)) {
        r->holding = 0;
        return 0;
    }
    if (atomic_load(&w->s->failed)) {
        r->holding = 0;
        refuse_unrecorded(r);
        return 0;
    }
    if (r->audit_index < w->next_wait)
        w->next_wait = r->audit_index;
    w->nheld++;
    return 1;
}

static void client_address(struct MHD_Connection *c, char *out, size_t cap)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    snprintf(out, cap, "-");
    if (!sa)
        return;
    if (sa->sa_family == AF_INET && cap >= 16)
        custos_ipv4_text(out, (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out, (socklen_t)cap);
}

/* An RFC 9110 token (a header field name): one or more of ! # $ % & ' * + - . ^ _ ` | ~, digits,
   letters. */
static int is_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c && strchr("!#$%&'*+-.^_`|~", c))))
            return 0;
    }
    return 1;
}

/* name begins with `framing` (without case) and goes on */
static int extends(const char *name, const char *framing)
{
    size_t n = strlen(framing);

    return strncasecmp(name, framing, n) == 0 && name[n] != '\0';
}

/*
 * The request head, checked before anything reads the body.  libmicrohttpd 0.9.75 takes the first of
 * two Content-Length headers and accepts Transfer-Encoding with Content-Length, so a proxy in front
 * and this server could disagree on where a request ends (request smuggling, RFC 9112 6.1, 6.3):
 * both are refused and the connection closed.  A body announced longer than the cap is refused
 * through dispatch, so that refusal is authenticated and recorded like any other: before it is read
 * when its client waits for a 100 Continue (none is sent) or when it is over CUSTOS_BODY_DRAIN_MAX,
 * else once it has been read and dropped.  (Answered early and closed, a client still sending gets
 * a reset connection, often before it reads the 413: curl's "Failed sending data to the peer".)
 * Authorization repeated fails authentication rather than picking one of the values.  (A NUL
 * byte ends a header value inside libmicrohttpd: what follows it on the line is never seen, so a
 * token followed by a NUL is that token, as its holder sent it.)
 * The decision is custos_head_add / custos_head_verdict, over the header values alone.
 */
void custos_head_add(struct custos_head *h, const char *key, const char *value)
{
    /* libmicrohttpd 0.9.75 keeps a space before the colon in the name ("Content-Length :") and
       glues a folded line's continuation to the name ("Content-Length:" CRLF " 48" becomes
       "Content-Length48" with an empty value), where RFC 9112 5.1 and 5.2 want a 400: a proxy
       in front that reads either one as Content-Length, Transfer-Encoding or Authorization
       would frame the request otherwise than this server (red-team finding).  A name that is
       not a token, or that a framing header's name begins and something follows, is refused. */
    if (!is_token(key) || extends(key, MHD_HTTP_HEADER_CONTENT_LENGTH) ||
        extends(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) || extends(key, MHD_HTTP_HEADER_AUTHORIZATION))
        h->bad_name++;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        h->content_length++;
        h->length = strtoull(value, NULL, 10); /* its syntax is checked by libmicrohttpd */
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        h->transfer_encoding++;
        h->chunked_only = strcasecmp(value, "chunked") == 0;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0) {
        h->authorization++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
        h->host++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_EXPECT) == 0) {
        h->expect_continue |= strcasecmp(value, "100-continue") == 0; /* libmicrohttpd answers the first */
    }
}

enum custos_head_verdict custos_head_verdict(const struct custos_head *h)
{
    if (h->bad_name)
        return CUSTOS_HEAD_BAD_NAME;
    if (h->host > 1 || (h->http11 && h->host == 0))
        return CUSTOS_HEAD_HOST;
    if (h->content_length > 1)
        return CUSTOS_HEAD_LENGTH_REPEATED;
    if (h->transfer_encoding && h->content_length)
        return CUSTOS_HEAD_LENGTH_AND_ENCODING;
    if (h->transfer_encoding > 1 || (h->transfer_encoding && !h->chunked_only))
        return CUSTOS_HEAD_ENCODING_UNSUPPORTED;
    if (h->content_length && h->length > CUSTOS_BODY_MAX)
        return h->expect_continue || h->length > CUSTOS_BODY_DRAIN_MAX ? CUSTOS_HEAD_TOO_BIG
                                                                        : CUSTOS_HEAD_TOO_BIG_DRAIN;
    return CUSTOS_HEAD_OK;
}

static enum MHD_Result head_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    custos_head_add(cls, key, value);
    return MHD_YES;
}

/* 0 when the head may be served; else the error is set and the connection will close. */
static int head_check(struct req *r, const char *version)
{
    struct custos_head h;

    memset(&h, 0, sizeof(h));
    /* HTTP/1.1 and later 1.x, which libmicrohttpd serves as 1.1 (review finding: HTTP/1.2 went
       without Host) */
    h.http11 = version && strncmp(version, "HTTP/1.", 7) == 0 && strcmp(version, MHD_HTTP_VERSION_1_0) != 0;
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, head_header, &h);
    r->bad_auth = h.authorization > 1;
    r->close = 1;
    switch (custos_head_verdict(&h)) {
    case CUSTOS_HEAD_BAD_NAME:
        custos_reply_error_msg(r, 400, "bad_request",
                               "malformed header: a name that is not a token (a space before the colon?) or "
                               "a folded line");
        break;
    case CUSTOS_HEAD_HOST:
        custos_reply_error_msg(r, 400, "bad_request", "an HTTP/1.1 request needs one Host header, and no request "
                               "may have two");
        break;
    case CUSTOS_HEAD_LENGTH_REPEATED:
        custos_reply_error_msg(r, 400, "bad_request", "Content-Length is repeated");
        break;
    case CUSTOS_HEAD_LENGTH_AND_ENCODING:
        custos_reply_error_msg(r, 400, "bad_request", "Transfer-Encoding and Content-Length together");
        break;
    case CUSTOS_HEAD_ENCODING_UNSUPPORTED:
        custos_reply_error_msg(r, 501, "not_implemented", "only Transfer-Encoding: chunked is supported");
        break;
    case CUSTOS_HEAD_TOO_BIG:
        r->body_too_big = 1; /* answered by dispatch, without reading it: route, caller and record */
        break;
    case CUSTOS_HEAD_TOO_BIG_DRAIN:
        r->body_too_big = 1; /* read and dropped, then answered by dispatch like a chunked one */
        return r->close = 0;
    case CUSTOS_HEAD_OK:
        return r->close = 0;
    }
    return -1;
}

/* Raise the soft open-file limit towards `want` (at most the hard limit): a default soft limit of
   1,024 would run out of descriptors before the connection limit is reached. */
static void raise_file_limit(rlim_t want)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static void dispatch(struct req *r)
{
    int known = 0;
    char msg[160];
    enum custos_err rc;

    /* an encoded slash is part of its segment, not a separator the router may split at */
    r->route = r->slash_encoded ? NULL : custos_route_match(r->method, r->url, r->params, &known);
    if (!r->route) {
        if (known) {
            custos_route_allowed(r->url, r->allow, sizeof(r->allow));
            custos_reply_error_msg(r, 405, "method_not_allowed", "method not allowed on this resource");
        }
        else
            custos_reply_error_msg(r, 404, "not_found", "no such route");
        return;
    }
    if (r->route->auth == ROUTE_AUTH) {
        const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        if (r->bad_auth) /* repeated: no one value to check */
            rc = custos_authenticate_none(r->vault, r->source, "Authorization header given more than once",
                                          &r->caller);
        else if (h && strncasecmp(h, "Bearer ", 7) != 0) /* the scheme is case-insensitive (RFC 9110) */
            rc = custos_authenticate_none(r->vault, r->source, "Authorization must be 'Bearer <token>'",
                                          &r->caller);
        else
            rc = custos_authenticate(r->vault, h ? h + 7 : NULL, r->source, &r->caller);
        if (rc) {
            custos_reply_error(r, rc);
            return;
        }
    } else {
        memset(&r->caller, 0, sizeof(r->caller));
        snprintf(r->caller.source, sizeof(r->caller.source), "%s", r->source);
        snprintf(r->caller.principal, sizeof(r->caller.principal), "-");
    }
    if (r->body_too_big) {
        custos_err_set(CUSTOS_ERR_TOOBIG, "request body exceeds %d bytes", CUSTOS_BODY_MAX);
        rc = r->route->action ? custos_audit_reject(r->vault, &r->caller, r->route->action, CUSTOS_ERR_TOOBIG)
                              : CUSTOS_ERR_TOOBIG;
        custos_reply_error(r, rc);
        return;
    }
    if (!r->route->body && r->body_len) {
        custos_err_set(CUSTOS_ERR_INVALID, "this route takes no request body");
        rc = r->route->action ? custos_audit_reject(r->vault, &r->caller, r->route->action, CUSTOS_ERR_INVALID)
                              : CUSTOS_ERR_INVALID;
        custos_reply_error(r, rc);
        return;
    }
    if (query_ok(r, msg, sizeof(msg))) {
        custos_err_set(CUSTOS_ERR_INVALID, "%s", msg);
        rc = r->route->action ? custos_audit_reject(r->vault, &r->caller, r->route->action, CUSTOS_ERR_INVALID)
                              : CUSTOS_ERR_INVALID;
        custos_reply_error(r, rc);
        return;
    }
    r->route->fn(r);
}

static enum MHD_Result queue(struct MHD_Connection *c, struct req *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (!r->resp)
        custos_reply_error_msg(r, 500, "internal", "no response");
    /* the body may hold personal values: wiped when libmicrohttpd is done with it */
    resp = r->resp ? MHD_create_response_from_buffer_with_free_callback(r->resp_len, r->resp, custos_free_wiped)
                   : MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    r->resp = NULL; /* owned by libmicrohttpd now */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->resp_type ? r->resp_type : "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (r->status == 405 && r->allow[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->status == 429)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "60");
    if (r->close)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    ret = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/*
 * Room for `need` bytes at r->body.  It grows by copy, never by realloc: the body may hold a
 * secret, a token or personal values, and realloc could leave its earlier bytes in freed memory,
 * which nothing wipes.  Doubling from 1 KiB, at most CUSTOS_BODY_MAX + 1.  0, or -1 when out of
 * memory (the body as it was stays).
 */
static int body_reserve(struct req *r, size_t need)
{
    size_t cap = r->body_cap ? r->body_cap : 1024;
    char *nb;

    if (need <= r->body_cap)
        return 0;
    while (cap < need)
        cap *= 2;
    if (cap > (size_t)CUSTOS_BODY_MAX + 1)
        cap = (size_t)CUSTOS_BODY_MAX + 1 > need ? (size_t)CUSTOS_BODY_MAX + 1 : need;
    if (!(nb = malloc(cap)))
        return -1;
    if (r->body) {
        memcpy(nb, r->body, r->body_len + 1);
        sodium_memzero(r->body, r->body_cap);
        free(r->body);
    }
    r->body = nb;
    r->body_cap = cap;
    return 0;
}

/* The request's context when on_uri could not allocate one: the request is dropped. */
static struct req no_memory;

/*
 * libmicrohttpd's URI log callback: called once per request with the request target as sent,
 * before it is percent-decoded (the path on_request gets is decoded, "%2F" made a "/").  It makes
 * the request's context, which on_request fills on its first call and on_completed frees.
 */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    struct req *r = calloc(1, sizeof(*r));
    size_t n = strcspn(uri, "?");

    (void)cls;
    (void)c;
    if (!r)
        return &no_memory;
    for (size_t i = 0; i + 2 < n; i++)
        if (uri[i] == '%' && uri[i + 1] == '2' && (uri[i + 2] == 'f' || uri[i + 2] == 'F'))
            r->slash_encoded = 1;
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    struct worker *w = cls;
    struct req *r = *con_cls;
    int held;

    if (r == &no_memory)
        return MHD_NO;
    if (!r) { /* on_uri runs first: not expected */
        if (!(r = calloc(1, sizeof(*r))))
            return MHD_NO;
        *con_cls = r;
    }
    if (!r->conn) { /* the first call: the head is in, the body not read yet */
        r->vault = w->s->vault;
        r->conn = c;
        r->method = method;
        r->url = url;
        client_address(c, r->source, sizeof(r->source));
        *con_cls = r;
        if (head_check(r, version)) {
            if (r->body_too_big) {
                /* refused like any oversize body (authenticated, recorded), but now, unread: the
                   refusal leaks nothing, so it need not wait for its event to be durable */
                uint64_t ignored;

                custos_err_clear();
                custos_defer_begin();
                dispatch(r);
                custos_defer_end(&ignored);
            }
            return queue(c, r); /* before the body: libmicrohttpd closes after this answer */
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->body_too_big && r->body_len + *upload_size <= CUSTOS_BODY_MAX) {
            if (body_reserve(r, r->body_len + *upload_size + 1))
                return MHD_NO;
            memcpy(r->body + r->body_len, upload, *upload_size);
            r->body_len += *upload_size;
            r->body[r->body_len] = '\0';
        } else {
            r->body_too_big = 1;
            r->body_discarded += *upload_size;
            if (r->body_discarded > CUSTOS_BODY_DRAIN_MAX) {
                /* a body without a length that goes on and on (chunked): its 413 would wait for
                   an end that may never come, and libmicrohttpd takes no answer in mid-body.
                   Record the refusal as at the end of an oversize body, and close. */
                uint64_t ignored;

                custos_err_clear();
                custos_defer_begin();
                dispatch(r);
                custos_defer_end(&ignored);
                return MHD_NO;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->holding) /* called again on a turn of the worker's loop */
        return still_held(w, r) ? MHD_YES : queue(c, r);
    custos_err_clear();
    custos_ledger_expect(w->s->ledger, 1); /* its audit event is on its way: worth a short wait */
    custos_defer_begin();
    dispatch(r);
    held = custos_defer_end(&r->audit_index);
    custos_ledger_expect(w->s->ledger, -1);
    if (held) {
        r->holding = 1;
        if (still_held(w, r))
            return MHD_YES; /* no response queued: libmicrohttpd asks again next turn */
    }
    return queue(c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    struct req *r = *con_cls;

    (void)cls;
    (void)c;
    (void)toe;
    if (!r || r == &no_memory) {
        *con_cls = NULL;
        return;
    }
    if (r->body) {
        sodium_memzero(r->body, r->body_cap);
        free(r->body);
    }
    custos_free_wiped(r->resp);
    sodium_memzero(&r->caller, sizeof(r->caller));
    free(r);
    *con_cls = NULL;
}

/*
 * Percent-decoding for paths and query strings, in place.  Unlike the default, "%00" is left
 * as it is: a decoded NUL would cut the C string the router sees ("/v1/subjects/ID%00/export"
 * read as "/v1/subjects/ID"), while a literal "%00" matches no route and fails every check.
 * "%2F" is decoded (a query value may hold a slash), but a path that holds it matches no route
 * (on_uri saw it before decoding).
 */
static unsigned hexval(char h)
{
    return isdigit((unsigned char)h) ? (unsigned)(h - '0') : (unsigned)(tolower((unsigned char)h) - 'a' + 10);
}

static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    char *w = s;
    const char *r = s;

    (void)cls;
    (void)c;
    while (*r) {
        if (r[0] == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
            unsigned v = hexval(r[1]) << 4 | hexval(r[2]);

            if (v != 0) {
                *w++ = (char)v;
                r += 3;
                continue;
            }
        }
        *w++ = *r++;
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* ---- listening ----------------------------------------------------------------------------- */

enum custos_err custos_parse_listen(const char *s, void *ss_out, unsigned *len, int *loopback)
{
    struct sockaddr_storage *ss = ss_out;
    char host[128];
    const char *colon, *ps;
    char *end;
    long port;
    size_t hl;

    memset(ss, 0, sizeof(*ss));
    if (!s || !*s)
        return custos_err_set(CUSTOS_ERR_INVALID, "listen address is empty");
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');

        if (!rb || rb[1] != ':')
            return custos_err_set(CUSTOS_ERR_INVALID, "listen address must be HOST:PORT or [IPV6]:PORT");
        hl = (size_t)(rb - s - 1);
        ps = rb + 2;
        if (hl >= sizeof(host))
            return custos_err_set(CUSTOS_ERR_INVALID, "listen host is too long");
        memcpy(host, s + 1, hl);
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return custos_err_set(CUSTOS_ERR_INVALID, "listen address must be HOST:PORT");
        if (memchr(s, ':', (size_t)(colon - s)))
            return custos_err_set(CUSTOS_ERR_INVALID, "an IPv6 listen address needs brackets: [ADDR]:PORT");
        hl = (size_t)(colon - s);
        ps = colon + 1;
        if (hl >= sizeof(host))
            return custos_err_set(CUSTOS_ERR_INVALID, "listen host is too long");
        memcpy(host, s, hl);
    }
    host[hl] = '\0';
    errno = 0;
    port = strtol(ps, &end, 10);
    if (errno || *end || end == ps || !isdigit((unsigned char)*ps) || end - ps > 5 || port < 0 || port > 65535)
        return custos_err_set(CUSTOS_ERR_INVALID, "listen port must be 0..65535");
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    {
        struct sockaddr_in *a4 = (struct sockaddr_in *)ss_out;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss_out;

        if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
            a4->sin_family = AF_INET;
            a4->sin_port = htons((uint16_t)port);
            *len = sizeof(*a4);
            *loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
        } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
            a6->sin6_family = AF_INET6;
            a6->sin6_port = htons((uint16_t)port);
            *len = sizeof(*a6);
            *loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
        } else
            return custos_err_set(CUSTOS_ERR_INVALID, "listen host must be a numeric IP address or localhost");
    }
    return CUSTOS_OK;
}

/* Every line the server writes to its log.  What it echoes (a request path in libmicrohttpd's
   messages, decoded by unescape(), so any byte a client sent) is made one line of valid UTF-8
   without control characters: a client must not forge log lines ("%0D" then a timestamp) nor
   send escape sequences to whoever reads the log. */
static void log_line(const char *what, const char *arg)
{
    char when[32], line[640];

    custos_time_format(when, (int64_t)time(NULL) * 1000);
    snprintf(line, sizeof(line), "%s%s", what, arg);
    custos_text_oneline(line);
    fprintf(stderr, "%s custos: %s\n", when, line);
}

/* A principal whose secret expires within 30 days, said at the start. */
static void warn_expiring(void *ctx, const char *id, int64_t expires)
{
    char when[32], msg[256];

    (void)ctx;
    custos_time_format(when, expires);
    snprintf(msg, sizeof(msg), "'%.64s' %s %s: rotate it (POST /v1/principals/%.64s/rotate)", id,
             expires <= (int64_t)time(NULL) * 1000 ? "expired at" : "expires at", when, id);
    log_line("the secret of principal ", msg);
}

/* While the daemons start (one thread, before any worker runs), libmicrohttpd's complaints are
   kept, not printed: a refused TLS certificate or key then ends serve with one line that says
   why, instead of the library's lines and a meaningless strerror. */
static int mhd_starting;
static char mhd_start_msg[256];

/*
 * At most MHD_LOG_PER_S of libmicrohttpd's lines a second, the rest counted and said in one line
 * when the next is let through: whoever can reach the port can make it write one (a failed TLS
 * handshake, a malformed request), and the log is the operator's, not theirs to fill (red-team
 * finding).
 */
#define MHD_LOG_PER_S 20

static int mhd_log_allowed(void)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static time_t second;
    static unsigned used;
    static unsigned long dropped;
    time_t now = time(NULL);
    unsigned long said = 0;
    int ok;

    pthread_mutex_lock(&mu);
    if (now != second) {
        second = now;
        used = 0;
    }
    ok = used < MHD_LOG_PER_S;
    if (ok) {
        used++;
        said = dropped;
        dropped = 0;
    } else
        dropped++;
    pthread_mutex_unlock(&mu);
    if (said) {
        char note[96];

        snprintf(note, sizeof(note), "%lu more of libmicrohttpd's messages were not logged (over %d a second)",
                 said, MHD_LOG_PER_S);
        log_line("http: ", note);
    }
    return ok;
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char buf[512];

    (void)cls;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    if (buf[0] && buf[strlen(buf) - 1] == '\n')
        buf[strlen(buf) - 1] = '\0'; /* its messages end with one; any other is log_line's to replace */
    if (mhd_starting) {
        if (!mhd_start_msg[0])
            snprintf(mhd_start_msg, sizeof(mhd_start_msg), "%s", buf);
        return;
    }
    if (mhd_log_allowed())
        log_line("http: ", buf);
}

#define STOP_GRACE_S 20 /* at shutdown, how long held responses may wait for the ledger */

/* One worker's loop: wait for libmicrohttpd's sockets or the ledger's wake-up, run a turn. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct server *s = w->s;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(w->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    struct epoll_event ev[4];
    int ep = epoll_create1(EPOLL_CLOEXEC), again = 0, quiesced = 0;
    time_t give_up = 0;

    if (ep < 0 || !info) {
        goto broken;
    }
    memset(ev, 0, sizeof(ev));
    ev[0].events = EPOLLIN;
    ev[0].data.u32 = 0;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, info->epoll_fd, &ev[0]) != 0) {
        goto broken;
    }
    /* Edge-triggered: every write is one wake-up, and the counter is never read back (a
       system call saved per wake-up; it would take 2^64 writes to fill it). */
    ev[0].events = EPOLLIN | EPOLLET;
    ev[0].data.u32 = 1;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, w->efd, &ev[0]) != 0) {
        goto broken;
    }
    custos_vault_thread_serving(s->vault, 1);
    for (;;) {
        MHD_UNSIGNED_LONG_LONG to;
        int ms = 200, n, sockets; /* a turn at least this often: custos_vault_turn ends old read snapshots */

        if (atomic_load(&s->stopping)) {
            struct timespec now;

            clock_gettime(CLOCK_MONOTONIC, &now);
            if (!quiesced) {
                MHD_quiesce_daemon(w->mhd); /* no new connections; the socket stays open */
                quiesced = 1;
                give_up = now.tv_sec + STOP_GRACE_S;
            }
            /* held responses go once durable; past the grace period they are dropped unsent */
            if (!w->nheld || now.tv_sec >= give_up)
                break;
            ms = 50;
        }
        if (MHD_get_timeout(w->mhd, &to) == MHD_YES && to < (MHD_UNSIGNED_LONG_LONG)ms)
            ms = (int)to;
        /* Held requests keep libmicrohttpd's timeout at 0 (it looks at them every turn); the
           ledger wakes this worker when they are durable, so sleep, but not for long (anything
           else libmicrohttpd would have done at once waits at most this). */
        if (ms == 0 && w->nheld)
            ms = 5;
        n = epoll_wait(ep, ev, 4, again ? 0 : ms);
        sockets = 0;
        for (int i = 0; i < n; i++) {
            if (ev[i].data.u32 == 1)
                atomic_store(&w->signalled, 0);
            else
                sockets = 1;
        }
        w->next_wait = NONE;
        w->nheld = 0;
        /* A turn that reads requests will append their audit events: the ledger's writer may
           wait (briefly, see ledger.c) for the whole turn, so that one batch and one fdatasync
           cover it instead of a few of its requests each. */
        if (sockets)
            custos_ledger_expect(s->ledger, 1);
        MHD_run(w->mhd);
        if (sockets)
            custos_ledger_expect(s->ledger, -1);
        custos_vault_turn(s->vault);
        atomic_store(&w->wait_for, w->next_wait);
        /* The writer may have published progress between a handler's check and the store
           above without seeing what this worker waits for: look once more before sleeping. */
        again = w->nheld && (custos_audit_is_durable(s->vault, w->next_wait) || atomic_load(&s->failed));
    }
    custos_vault_thread_serving(s->vault, 0);
    goto out;
broken:
    log_line("a worker could not start its event loop: its connections are not served", "");
out:
    if (ep >= 0)
        close(ep);
    atomic_store(&w->wait_for, NONE);
    return NULL;
}

/* The listening socket all workers accept from (non-blocking: they race for each connection). */
static int listen_on(const struct sockaddr_storage *ss, unsigned sslen)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), on = 1;

    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        (ss->ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) != 0) ||
        bind(fd, (const struct sockaddr *)ss, sslen) != 0 || listen(fd, 1024) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static unsigned bound_port(int fd)
{
    struct sockaddr_storage a;
    socklen_t al = sizeof(a);

    if (getsockname(fd, (struct sockaddr *)&a, &al) != 0)
        return 0;
    if (a.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)(void *)&a)->sin6_port);
    return ntohs(((struct sockaddr_in *)(void *)&a)->sin_port);
}

enum custos_err custos_server_run(struct custos_vault *v, const struct custos_server_opts *o,
                                  atomic_int *stop)
{
    struct sockaddr_storage ss;
    unsigned sslen = 0, port, limit, per_ip, nw;
    int loopback = 0, lfd = -1;
    struct server s;
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    char *cert = NULL, *key = NULL, where[160];
    enum custos_err rc = CUSTOS_OK;
    struct timespec ts = {0, 200 * 1000 * 1000};
    int tls = o->tls_cert || o->tls_key, hooked = 0;

    memset(&s, 0, sizeof(s));
    s.vault = v;
    s.ledger = custos_vault_ledger(v);
    if ((rc = custos_parse_listen(o->listen ? o->listen : "127.0.0.1:8420", &ss, &sslen, &loopback)))
        goto done;
    if (!tls && !loopback && !o->insecure) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "refusing to serve plain HTTP on a non-loopback address: give "
                            "--tls-cert and --tls-key, or --insecure");
        goto done;
    }
    if (tls) {
        if (!o->tls_cert || !o->tls_key) {
            rc = custos_err_set(CUSTOS_ERR_INVALID, "TLS needs both --tls-cert and --tls-key");
            goto done;
        }
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            rc = custos_err_set(CUSTOS_ERR_INVALID, "this libmicrohttpd has no TLS support");
            goto done;
        }
        if ((rc = read_tls_file(o->tls_cert, 0, &cert)) || (rc = read_tls_file(o->tls_key, 1, &key)))
            goto done;
        flags |= MHD_USE_TLS;
    }
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if ((lfd = listen_on(&ss, sslen)) < 0) {
        rc = custos_err_set(CUSTOS_ERR_IO, "cannot listen on %s: %s", o->listen ? o->listen : "127.0.0.1:8420",
                            strerror(errno));
        goto done;
    }
    nw = o->threads ? o->threads : default_threads();
    limit = (o->max_connections ? o->max_connections : 1024u) / nw;
    /* one client address holds at most half of the connections: a client that opens many and
       trickles their heads (slowloris) leaves the other half to everyone else */
    per_ip = limit > 1 ? limit / 2 : 1u;
    raise_file_limit((rlim_t)limit * nw + 256); /* the connections and the vault's own files */
    if (!(s.w = calloc(nw, sizeof(*s.w)))) {
        rc = custos_err_set(CUSTOS_ERR_NOMEM, "out of memory");
        goto done;
    }
    mhd_starting = 1;
    mhd_start_msg[0] = '\0';
    for (s.nw = 0; s.nw < nw; s.nw++) {
        struct worker *w = &s.w[s.nw];

        w->s = &s;
        w->efd = -1;
        atomic_init(&w->wait_for, NONE);
        atomic_init(&w->signalled, 0);
        w->mhd = MHD_start_daemon(
            flags, 0, NULL, NULL, on_request, w, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
            MHD_OPTION_LISTEN_SOCKET, lfd, MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
            MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
            MHD_OPTION_CONNECTION_LIMIT, limit ? limit : 1u, MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip,
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_POOL_BYTES,
            tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, cert, MHD_OPTION_HTTPS_MEM_KEY, key,
            MHD_OPTION_HTTPS_PRIORITIES, TLS_PRIORITIES, MHD_OPTION_END);
        if (!w->mhd) {
            mhd_starting = 0;
            custos_utf8_scrub(mhd_start_msg);
            if (tls)
                rc = custos_err_set(CUSTOS_ERR_INVALID, "cannot start the HTTP server: the TLS certificate or key "
                                    "was refused%s%s", mhd_start_msg[0] ? ": " : "", mhd_start_msg);
            else
                rc = custos_err_set(CUSTOS_ERR_IO, "cannot start the HTTP server%s%s",
                                    mhd_start_msg[0] ? ": " : "", mhd_start_msg);
            goto done;
        }
        if ((w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
            mhd_starting = 0;
            rc = custos_err_set(CUSTOS_ERR_IO, "cannot start the HTTP server: %s", strerror(errno));
            s.nw++; /* cleaned up below */
            goto done;
        }
    }
    mhd_starting = 0;
    port = bound_port(lfd);
    snprintf(where, sizeof(where), "%s port %u%s, %u workers", ss.ss_family == AF_INET6 ? "ipv6" : "ipv4", port,
             tls ? " (tls)" : "", nw);
    if (o->port_file) {
        FILE *pf = fopen(o->port_file, "w");
        int bad = !pf || fprintf(pf, "%u\n", port) < 0;

        if (pf && fclose(pf) != 0)
            bad = 1;
        if (bad) { /* a script waiting for the port would wait forever */
            rc = custos_err_set(CUSTOS_ERR_IO, "cannot write --port-file %s: %s", o->port_file, strerror(errno));
            goto done;
        }
    }
    log_line("listening on ", where);
    custos_principal_secrets_expiring(v, 30LL * 86400000, warn_expiring, NULL);
    custos_err_clear();
    custos_vault_on_durable(v, on_durable, &s);
    hooked = 1;
    for (unsigned i = 0; i < s.nw; i++) {
        if (custos_thread_create(&s.w[i].thread, worker_main, &s.w[i]) != 0) {
            rc = custos_err_set(CUSTOS_ERR_IO, "cannot start a server thread");
            goto done;
        }
        s.w[i].started = 1;
    }
    if ((rc = custos_webhook_start(v, stop)))
        goto done;
    if (custos_keys_resume(v)) /* a master key rotation left unfinished goes on beside the requests */
        log_line("resuming the unfinished master key rotation (GET /v1/keys follows it)", "");
    while (!atomic_load(stop)) {
        char line[512];

        nanosleep(&ts, NULL);
        custos_vault_tick(v);
        if (custos_keys_report(v, line, sizeof(line)))
            log_line(line, "");
    }
    log_line("stopping", "");
    custos_keys_stop(v); /* a rotation ends at its batch's end, while the workers still serve */
    custos_webhook_stop();
done:
    /* Workers stop accepting, send the responses they hold as their entries become durable
       (or a 503 if the ledger fails), then return. */
    atomic_store(&s.stopping, 1);
    for (unsigned i = 0; i < s.nw; i++)
        if (s.w[i].started) {
            wake(&s.w[i]);
            pthread_join(s.w[i].thread, NULL);
        }
    custos_keys_stop(v); /* (when the start failed half-way) */
    if (hooked)
        custos_vault_on_durable(v, NULL, NULL);
    for (unsigned i = 0; i < s.nw; i++) {
        if (s.w[i].mhd) {
            MHD_quiesce_daemon(s.w[i].mhd); /* the listening socket is closed once, below */
            MHD_stop_daemon(s.w[i].mhd);
        }
        if (s.w[i].efd >= 0)
            close(s.w[i].efd);
    }
    free(s.w);
    if (lfd >= 0)
        close(lfd);
    sodium_free(key); /* sodium_free wipes */
    sodium_free(cert);
    return rc;
}

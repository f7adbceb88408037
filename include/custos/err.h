/*
 * err.h - the one error enum of the custos core.
 *
 * Every fallible core function returns an `enum custos_err` (CUSTOS_OK == 0)
 * and hands results back through out-parameters.  A failing function may
 * attach a one-line, lowercase, human-readable detail with custos_err_set();
 * the detail lives in thread-local storage until the next custos_err_set()
 * on the same thread.  Details never contain a secret, a token or a personal
 * field value: name the field, never quote it.
 *
 * The server maps codes to HTTP statuses (custos_err_http_status), the CLI
 * to exit codes and a one-line message.
 */
#ifndef CUSTOS_ERR_H
#define CUSTOS_ERR_H

#include <stddef.h>

enum custos_err {
    CUSTOS_OK = 0,
    CUSTOS_ERR_NOMEM,       /* out of memory */
    CUSTOS_ERR_IO,          /* a file or database operation failed */
    CUSTOS_ERR_CORRUPT,     /* stored data failed a length, checksum or MAC check */
    CUSTOS_ERR_CRYPTO,      /* a cryptographic operation failed (no further detail) */
    CUSTOS_ERR_INVALID,     /* caller input is malformed or violates the schema */
    CUSTOS_ERR_TOOBIG,      /* caller input exceeds a size cap */
    CUSTOS_ERR_NOTFOUND,    /* no such object */
    CUSTOS_ERR_EXISTS,      /* object already exists */
    CUSTOS_ERR_GONE,        /* the object was erased */
    CUSTOS_ERR_UNAUTH,      /* no valid credential */
    CUSTOS_ERR_FORBIDDEN,   /* credential valid, policy says no */
    CUSTOS_ERR_RATELIMIT,   /* velocity limit reached */
    CUSTOS_ERR_LOCKED,      /* the data directory is held by another process */
    CUSTOS_ERR_UNAVAILABLE, /* the ledger cannot record the access: refuse it */
    CUSTOS_ERR_INTERNAL,    /* a bug: an invariant did not hold */
    CUSTOS_ERR__COUNT
};

/* Static name of a code, e.g. "invalid"; never NULL. */
const char *custos_strerror(enum custos_err code);

/* Stable machine-readable code used in API error bodies, e.g. "bad_request". */
const char *custos_err_api_code(enum custos_err code);

/* HTTP status for a code (400, 401, 403, 404, 409, 410, 413, 429, 500, 503). */
int custos_err_http_status(enum custos_err code);

/*
 * Record a detail message for the current thread and return `code`, so that
 * failing paths read `return custos_err_set(CUSTOS_ERR_INVALID, "...", ...)`.
 */
enum custos_err custos_err_set(enum custos_err code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clear the current thread's detail. */
void custos_err_clear(void);

/* The current thread's detail, or custos_strerror(code) when none was set. */
const char *custos_err_msg(enum custos_err code);

#endif

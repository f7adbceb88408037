/*
 * err.c - error codes, their names, HTTP mapping and the per-thread detail.
 *
 * Owns: the thread-local detail buffer behind custos_err_set()/custos_err_msg().
 * Must never: store a secret or personal value in a detail (callers name
 * fields, never quote them), allocate, or fail.
 */
#include "custos/err.h"

#include <stdarg.h>
#include <stdio.h>

#include "custos/vault.h"

#include "custos/banned.h"

static const struct {
    const char *name;
    const char *api;
    int http;
} table[CUSTOS_ERR__COUNT] = {
    [CUSTOS_OK] = {"ok", "ok", 200},
    [CUSTOS_ERR_NOMEM] = {"out of memory", "internal", 500},
    [CUSTOS_ERR_IO] = {"i/o error", "internal", 500},
    [CUSTOS_ERR_CORRUPT] = {"stored data is corrupt", "internal", 500},
    [CUSTOS_ERR_CRYPTO] = {"cryptographic operation failed", "internal", 500},
    [CUSTOS_ERR_INVALID] = {"invalid input", "bad_request", 400},
    [CUSTOS_ERR_TOOBIG] = {"input too large", "too_large", 413},
    [CUSTOS_ERR_NOTFOUND] = {"not found", "not_found", 404},
    [CUSTOS_ERR_EXISTS] = {"already exists", "conflict", 409},
    [CUSTOS_ERR_GONE] = {"erased", "gone", 410},
    [CUSTOS_ERR_UNAUTH] = {"unauthenticated", "unauthenticated", 401},
    [CUSTOS_ERR_FORBIDDEN] = {"forbidden", "forbidden", 403},
    [CUSTOS_ERR_RATELIMIT] = {"rate limited", "rate_limited", 429},
    [CUSTOS_ERR_LOCKED] = {"data directory in use", "unavailable", 503},
    [CUSTOS_ERR_UNAVAILABLE] = {"ledger unavailable", "unavailable", 503},
    [CUSTOS_ERR_INTERNAL] = {"internal error", "internal", 500},
};

static _Thread_local char detail[256];
static _Thread_local int have_detail;

static int valid(enum custos_err code)
{
    return (int)code >= 0 && code < CUSTOS_ERR__COUNT;
}

const char *custos_strerror(enum custos_err code)
{
    return valid(code) ? table[code].name : "unknown error";
}

const char *custos_err_api_code(enum custos_err code)
{
    return valid(code) ? table[code].api : "internal";
}

int custos_err_http_status(enum custos_err code)
{
    return valid(code) ? table[code].http : 500;
}

enum custos_err custos_err_set(enum custos_err code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    /* messages echo caller input under byte caps ("%.40s", and this buffer's own): a cut or
       invalid character must not make the message unencodable (JSON needs UTF-8), and a detail
       may reach a terminal (the CLI prints it) or a one-line output that scripts parse */
    custos_text_oneline(detail);
    have_detail = 1;
    return code;
}

void custos_err_clear(void)
{
    have_detail = 0;
    detail[0] = '\0';
}

const char *custos_err_msg(enum custos_err code)
{
    return have_detail ? detail : custos_strerror(code);
}

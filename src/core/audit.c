/*
 * audit.c - the one function every operation reports through, and the
 * canonical encoding of an audit event (the bytes of a ledger entry).
 *
 * Encoding (docs/format.md, "Entry encoding"): a UTF-8 JSON object without
 * whitespace whose members appear in this fixed order, absent ones omitted:
 *   v, time, action, result, reason, actor, minter, token, source, subject,
 *   purpose, fields, masked, target, count
 * Integers in decimal, strings escaped per RFC 8259 (", \, and control
 * characters only; everything else literal), always valid UTF-8 (a byte
 * that starts no valid sequence is written as '?').  Same event, same bytes.
 *
 * Must never: put a personal field value in an event (only ids, field
 * paths, principal ids, addresses), return success for an event that is
 * not durable.
 */
#include "core/vault_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "custos/banned.h"

void custos_event_init(struct custos_event *e, const char *action, const struct custos_caller *who)
{
    memset(e, 0, sizeof(*e));
    e->action = action;
    e->who = who;
    e->count = -1;
}

static const char *result_name(enum custos_result r)
{
    return r == CUSTOS_RESULT_OK ? "ok" : r == CUSTOS_RESULT_DENIED ? "denied" : "error";
}

/* ,"name": (names are constants of this file: nothing to escape) */
static enum custos_err add_key(struct custos_buf *b, const char *name)
{
    enum custos_err rc;

    if ((rc = custos_buf_add(b, ",\"", 2)) || (rc = custos_buf_adds(b, name)))
        return rc;
    return custos_buf_add(b, "\":", 2);
}

/* A JSON string that is valid UTF-8 whatever the caller passed: members come from validated
   names almost always, but an entry must stay JSON (docs/format.md) even when a caller let an
   unchecked byte through, so every byte that does not start a valid sequence becomes '?'
   (custos_utf8_scrub's rule), and the event is still recorded. */
static enum custos_err add_text(struct custos_buf *b, const char *s)
{
    size_t n = strlen(s), i = 0, k;
    unsigned long cp;
    char *copy;
    enum custos_err rc;

    while (i < n && (unsigned char)s[i] < 0x80)
        i++;
    while (i < n && (k = custos_utf8_decode((const unsigned char *)s + i, n - i, &cp)) != 0)
        i += k;
    if (i == n)
        return custos_buf_add_json_str(b, s, n);
    if (!(copy = malloc(n + 1)))
        return CUSTOS_ERR_NOMEM;
    memcpy(copy, s, n + 1);
    custos_utf8_scrub(copy);
    rc = custos_buf_add_json_str(b, copy, n);
    free(copy);
    return rc;
}

static enum custos_err add_str_member(struct custos_buf *b, const char *name, const char *val)
{
    enum custos_err rc;

    if (!val)
        return CUSTOS_OK;
    if ((rc = add_key(b, name)))
        return rc;
    return add_text(b, val);
}

static enum custos_err add_list(struct custos_buf *b, const char *name, const char *const *v, size_t n)
{
    enum custos_err rc;
    size_t i;

    if (!n)
        return CUSTOS_OK;
    if ((rc = add_key(b, name)) || (rc = custos_buf_addc(b, '[')))
        return rc;
    for (i = 0; i < n; i++) {
        if ((i && (rc = custos_buf_addc(b, ','))) || (rc = add_text(b, v[i])))
            return rc;
    }
    return custos_buf_addc(b, ']');
}

enum custos_err custos_event_encode(const struct custos_event *e, uint64_t time_ms, struct custos_buf *b)
{
    const struct custos_caller *w = e->who;
    char subj[CUSTOS_ID_HEX + 1];
    enum custos_err rc;

    if ((rc = custos_buf_adds(b, "{\"v\":1,\"time\":")) || (rc = custos_buf_add_u64(b, time_ms)) ||
        (rc = add_str_member(b, "action", e->action)) ||
        (rc = add_str_member(b, "result", result_name(e->result))) ||
        (rc = add_str_member(b, "reason", e->result == CUSTOS_RESULT_OK ? e->ok_reason : e->reason)) ||
        (rc = add_str_member(b, "actor", w ? w->principal : e->actor ? e->actor : "-")) ||
        (rc = add_str_member(b, "minter", w && w->minter[0] ? w->minter : NULL)) ||
        (rc = add_str_member(b, "token", w ? (w->has_token ? w->token_id : NULL) : e->token_id)) ||
        (rc = add_str_member(b, "source", w ? w->source : e->source)))
        return rc;
    if (e->subject) {
        custos_id_hex(subj, e->subject);
        if ((rc = add_str_member(b, "subject", subj)))
            return rc;
    }
    if ((rc = add_str_member(b, "purpose", e->purpose)) || (rc = add_list(b, "fields", e->fields, e->nfields)) ||
        (rc = add_list(b, "masked", e->masked, e->nmasked)) || (rc = add_str_member(b, "target", e->target)))
        return rc;
    if (e->count >= 0 && (rc = custos_buf_printf(b, ",\"count\":%lld", (long long)e->count)))
        return rc;
    return custos_buf_addc(b, '}');
}

/*
 * Deferred mode (custos_defer_begin/end): an event-driven front end parks the response instead
 * of blocking its thread; events are queued, the highest index is remembered, and the front end
 * releases the response once the ledger reports it durable.  Everything that must be durable
 * before a side effect (writes, erasures) uses custos_audit_durable, which always waits.
 */
static _Thread_local int defer_on, defer_have;
static _Thread_local uint64_t defer_index;

void custos_defer_begin(void)
{
    defer_on = 1;
    defer_have = 0;
    defer_index = 0;
}

int custos_defer_end(uint64_t *index)
{
    defer_on = 0;
    *index = defer_index;
    return defer_have;
}

static enum custos_err audit(struct custos_vault *v, const struct custos_event *e, uint64_t *index, int wait)
{
    struct custos_buf *b = custos_buf_thread(CUSTOS_TLS_AUDIT, CUSTOS_LEDGER_ENTRY_MAX);
    enum custos_err rc;
    uint64_t idx = 0;

    if (!b)
        return custos_err_set(CUSTOS_ERR_UNAVAILABLE, "audit event could not be encoded");
    if ((rc = custos_event_encode(e, custos_now(v), b)))
        return custos_err_set(CUSTOS_ERR_UNAVAILABLE, "audit event could not be encoded");
#ifndef CUSTOS_BENCH_NO_LEDGER
    rc = custos_ledger_enqueue(v->ledger, b->p, b->len, &idx);
    if (!rc && wait)
        rc = custos_ledger_wait(v->ledger, idx);
    if (rc)
        return custos_err_set(CUSTOS_ERR_UNAVAILABLE, "the access ledger cannot record this request: refused");
    if (!wait) {
        defer_index = defer_have && defer_index > idx ? defer_index : idx;
        defer_have = 1;
    }
#endif
    if (index)
        *index = idx;
    return CUSTOS_OK;
}

enum custos_err custos_audit(struct custos_vault *v, const struct custos_event *e, uint64_t *index)
{
    return audit(v, e, index, !defer_on);
}

enum custos_err custos_audit_durable(struct custos_vault *v, const struct custos_event *e, uint64_t *index)
{
    return audit(v, e, index, 1);
}

int custos_audit_is_durable(struct custos_vault *v, uint64_t index)
{
#ifndef CUSTOS_BENCH_NO_LEDGER
    return custos_ledger_size(v->ledger) > index;
#else
    (void)v;
    (void)index;
    return 1;
#endif
}

enum custos_err custos_audit_in_txn(struct custos_vault *v, struct custos_event *e, int *audited)
{
    enum custos_err rc;

    e->result = CUSTOS_RESULT_OK;
    rc = custos_audit_durable(v, e, NULL);
    *audited = rc == CUSTOS_OK;
    return rc;
}

enum custos_err custos_audit_enqueue(struct custos_vault *v, const struct custos_event *e, uint64_t *index)
{
    struct custos_buf *b = custos_buf_thread(CUSTOS_TLS_AUDIT, CUSTOS_LEDGER_ENTRY_MAX);

    *index = 0;
    if (!b || custos_event_encode(e, custos_now(v), b))
        return custos_err_set(CUSTOS_ERR_UNAVAILABLE, "audit event could not be encoded");
#ifndef CUSTOS_BENCH_NO_LEDGER
    if (custos_ledger_enqueue(v->ledger, b->p, b->len, index))
        return custos_err_set(CUSTOS_ERR_UNAVAILABLE, "the access ledger cannot record this request: refused");
#endif
    return CUSTOS_OK;
}

enum custos_err custos_audit_enqueue_encoded(struct custos_vault *v, const void *entry, size_t len,
                                            const uint8_t leaf[32], uint64_t *index)
{
    *index = 0;
#ifndef CUSTOS_BENCH_NO_LEDGER
    if (custos_ledger_enqueue_hashed(v->ledger, entry, len, leaf, index))
        return custos_err_set(CUSTOS_ERR_UNAVAILABLE, "the access ledger cannot record this request: refused");
#else
    (void)v;
    (void)entry;
    (void)len;
    (void)leaf;
#endif
    return CUSTOS_OK;
}

enum custos_err custos_audit_wait(struct custos_vault *v, uint64_t index)
{
#ifndef CUSTOS_BENCH_NO_LEDGER
    if (custos_ledger_wait(v->ledger, index))
        return custos_err_set(CUSTOS_ERR_UNAVAILABLE, "the access ledger cannot record this request: refused");
#endif
    return CUSTOS_OK;
}

enum custos_err custos_audit_outcome(struct custos_vault *v, struct custos_event *e, enum custos_err rc)
{
    char saved[256];

    if (rc == CUSTOS_OK)
        e->result = CUSTOS_RESULT_OK;
    else if (rc == CUSTOS_ERR_UNAUTH || rc == CUSTOS_ERR_FORBIDDEN || rc == CUSTOS_ERR_RATELIMIT)
        e->result = CUSTOS_RESULT_DENIED;
    else
        e->result = CUSTOS_RESULT_ERROR;
    if (rc && !e->reason)
        e->reason = custos_err_api_code(rc);
    /* keep the operation's detail message across the audit call */
    if (rc) {
        const char *msg = custos_err_msg(rc);

        custos_strcopy(saved, sizeof(saved), msg, strlen(msg));
    }
    if (custos_audit(v, e, NULL))
        return CUSTOS_ERR_UNAVAILABLE;
    if (rc)
        custos_err_set(rc, "%s", saved);
    return rc;
}

enum custos_err custos_audit_finish(struct custos_vault *v, struct custos_event *e, enum custos_err rc,
                                    json_t **out)
{
    rc = custos_audit_outcome(v, e, rc);
    if (rc && out) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

enum custos_err custos_audit_reject(struct custos_vault *v, const struct custos_caller *c, const char *action,
                                    enum custos_err why)
{
    struct custos_event e;

    custos_event_init(&e, action, c);
    return custos_audit_outcome(v, &e, why);
}

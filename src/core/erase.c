/*
 * erase.c - leaving: one-call erasure (crypto-shredding), erasure receipts,
 * linked services and their durable outbox, legal retention, and the
 * machinery that keeps erased subjects erased after a restore.
 *
 * Erasure, in order (each step durable before the next):
 *   1. under the vault's write lock, load the record and its key;
 *   2. one control-plane transaction: values the schema keeps under legal
 *      retention are re-sealed under the retention key of their expiry day;
 *      one outbox entry per linked service; the tombstone; every generation
 *      of the subject key deleted.  This is the point of no return: from
 *      here no copy of the record anywhere (WAL, backups) can be opened;
 *   3. the ledger entry (subject.erase), its index stored in the tombstone;
 *   4. the data-plane record, blind-index entries and links deleted;
 *   5. the receipt, signed with the ledger key.
 * If step 3 fails, step 4 still runs (the erasure is decided; the tombstone
 * keeps ledger index -1 and the next start writes the entry with reason
 * `recovered`: a failed ledger stays failed until then); if step 4 fails, the
 * entry's index goes into the tombstone on its own (so the entry is not
 * written twice) and the background tick finishes the erasure through the
 * path the next start takes (custos_erasures_finish).  Either answers an error (503 for the ledger).
 * Searches skip a tombstoned subject meanwhile (the store's blind_find).
 * It never waits for linked services: the outbox is delivered later
 * (custos_outbox_next / custos_outbox_done, driven by the server).
 *
 * Retention keys: one per expiry day (days since the epoch), wrapped by the
 * master key; when the day has passed, the key is destroyed (background
 * job), which shreds every value kept until that day at once.
 *
 * Why a restore cannot resurrect: data backups hold only the data plane
 * (sealed records, no keys).  Keys, tombstones and retained values live in
 * the control plane, which a restore never replaces; at every start the
 * tombstones are re-applied to the data plane, and erasures found in the
 * ledger after the control plane's marker are re-applied too, so even a
 * rolled-back control plane cannot bring a subject back while the
 * append-only, witnessed ledger survives.
 *
 * Must never: wait for or depend on a linked service, keep a subject key
 * after step 2, send personal values to a linked service (the notice holds
 * the subject id, link name and time only).
 */
#define _GNU_SOURCE /* memmem */
#include "core/vault_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/json.h"
#include "custos/note.h"

#include "custos/banned.h"

#define DAY_MS 86400000LL
#define RECORD_MAX (4u << 20)
/* A notice is given up only when both hold: 7 days since the erasure, and enough attempts that a
   receiver had about a day of them, so a server stopped for longer than 7 days still gives every
   receiver that day when it comes back (9 attempts to reach the 5-minute cap, then 279 more:
   23 to 29 hours with the jitter). */
#define OUTBOX_GIVE_UP_MS (7LL * DAY_MS)
#define OUTBOX_GIVE_UP_ATTEMPTS 288u
#define OUTBOX_MAX_DELAY_MS (5LL * 60 * 1000)
#define OUTBOX_SCAN 4096   /* due rows one custos_outbox_next looks at, at most */

static uint32_t day_of(int64_t ms)
{
    return (uint32_t)(ms / DAY_MS);
}

static void day_format(char out[16], uint32_t day)
{
    char when[32];

    custos_time_format(when, (int64_t)day * DAY_MS);
    snprintf(out, 16, "%.10s", when);
}

/* ---- retention keys ------------------------------------------------------------------------ */

static void retention_ad_name(char out[32], uint32_t day)
{
    snprintf(out, 32, "retention/%u", day);
}

/* Unwrap the retention key of `day` into key, or, when `cur` is given (the current master key,
   held by the caller until its transaction commits), make it if there is none. */
static enum custos_err retention_key(struct custos_vault *v, struct custos_store_conn *c, uint32_t day,
                                     const struct custos_kek *cur, uint8_t *key)
{
    uint8_t w[CUSTOS_WRAPPED_BYTES], ad[64];
    char name[32];
    size_t wlen = 0;
    uint32_t kv = 0;
    struct custos_kek kek;
    enum custos_err rc;
    int tries = 0, bad;

    retention_ad_name(name, day);
    do {
        rc = v->ops->retention_key_get(c, day, &kv, w, sizeof(w), &wlen);
        if (rc == CUSTOS_ERR_NOTFOUND && cur) {
            custos_random(key, CUSTOS_KEY_BYTES);
            custos_wrap(w, cur->key, key, ad, custos_ad_system_key(ad, name, cur->kv));
            return v->ops->retention_key_put(c, day, cur->kv, w, sizeof(w));
        }
        if (rc)
            return rc;
        if (wlen != CUSTOS_WRAPPED_BYTES)
            return custos_err_set(CUSTOS_ERR_CORRUPT, "retention key of day %u cannot be opened", day);
        /* a version gone since the row was read: re-wrapped by a rotation meanwhile (key_unwrap) */
    } while ((rc = custos_kek_version(v, kv, &kek)) && ++tries < 2);
    if (rc)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "retention key of day %u cannot be opened", day);
    bad = custos_unwrap(key, kek.key, w, ad, custos_ad_system_key(ad, name, kv));
    custos_kek_release(v, &kek);
    if (bad)
        return custos_err_set(CUSTOS_ERR_CRYPTO, "retention key failed to open");
    return CUSTOS_OK;
}

/* Re-wrap every retention key under master version `to` (keys.c, during rotation). */
struct rk_batch {
    uint32_t day[1024], kv[1024];
    uint8_t w[1024][CUSTOS_WRAPPED_BYTES];
    size_t n;
    uint32_t below;
};

static int rk_collect(void *ctx, uint32_t day, uint32_t kv, const uint8_t *w, size_t wlen)
{
    struct rk_batch *b = ctx;

    if (kv >= b->below || wlen != CUSTOS_WRAPPED_BYTES)
        return 0;
    b->day[b->n] = day;
    b->kv[b->n] = kv;
    memcpy(b->w[b->n], w, CUSTOS_WRAPPED_BYTES);
    return ++b->n == 1024;
}

enum custos_err custos_retention_rewrap(struct custos_vault *v, struct custos_store_conn *c, uint32_t to,
                                        uint64_t *count)
{
    struct rk_batch *b = calloc(1, sizeof(*b));
    uint8_t *key = custos_scratch(), ad[64], nw[CUSTOS_WRAPPED_BYTES];
    const uint8_t *kek = custos_master(v, to);
    enum custos_err rc = CUSTOS_OK;
    size_t i;

    *count = 0;
    if (!b || !key || !kek) {
        free(b);
        return b ? CUSTOS_ERR_INTERNAL : CUSTOS_ERR_NOMEM;
    }
    do {
        b->n = 0;
        b->below = to;
        if ((rc = v->ops->begin(c, CUSTOS_PLANE_CONTROL)))
            break;
        rc = v->ops->retention_key_scan(c, rk_collect, b);
        for (i = 0; !rc && i < b->n; i++) {
            const uint8_t *old = custos_master(v, b->kv[i]);
            char name[32];

            retention_ad_name(name, b->day[i]);
            if (!old || custos_unwrap(key, old, b->w[i], ad, custos_ad_system_key(ad, name, b->kv[i]))) {
                rc = custos_err_set(CUSTOS_ERR_CRYPTO, "retention key of day %u failed to open", b->day[i]);
                break;
            }
            custos_wrap(nw, kek, key, ad, custos_ad_system_key(ad, name, to));
            rc = v->ops->retention_key_put(c, b->day[i], to, nw, sizeof(nw));
            (*count)++;
        }
        custos_scratch_wipe();
        if (rc || (rc = v->ops->commit(c, CUSTOS_PLANE_CONTROL))) {
            v->ops->rollback(c, CUSTOS_PLANE_CONTROL);
            break;
        }
    } while (b->n == 1024);
    sodium_memzero(b, sizeof(*b));
    free(b);
    return rc;
}

/* ---- erasure ------------------------------------------------------------------------------- */

struct retained_note {
    char field[CUSTOS_FIELD_NAME_MAX + 1];
    char until[16];
    char basis[128];
};

struct erase_plan {
    struct retained_note retained[CUSTOS_SCHEMA_MAX_FIELDS];
    size_t nretained;
    size_t nlinks;
};

/* Re-seal the record's retained fields and store them (inside the caller's control txn; a new
   retention key goes under `cur`, held until it commits). */
static enum custos_err retain(struct custos_vault *v, struct custos_store_conn *c, const struct custos_kek *cur,
                              const uint8_t id[16], const uint8_t *key, const struct custos_record *r,
                              int64_t erased_at, struct erase_plan *plan)
{
    uint8_t *rkey = custos_scratch() + 2 * CUSTOS_KEY_BYTES, *pt = custos_plain_scratch(), nonce[CUSTOS_NONCE_BYTES];
    struct custos_buf b;
    enum custos_err rc = CUSTOS_OK;
    size_t fi, i;

    custos_buf_init(&b, RECORD_MAX);
    for (fi = 0; fi < v->schema->nfields && !rc; fi++) {
        const struct custos_field *f = &v->schema->fields[fi];
        struct custos_retained_row row;
        size_t count = 0;
        uint32_t day;

        if (!f->retention_days)
            continue;
        day = day_of(erased_at) + f->retention_days;
        custos_buf_reset(&b);
        if ((rc = custos_record_begin(&b, day)))
            break;
        for (i = 0; i < r->n && !rc; i++) {
            const struct custos_sealed_leaf *l = &r->leaf[i];
            struct custos_path_parts pp;
            const struct custos_field *top;
            char path[CUSTOS_PATH_MAX], tag;
            size_t len;

            if (custos_path_split(l->path, l->plen, &pp) || !custos_leaf_field(v->schema, &pp, &top) || top != f)
                continue;
            if (!count && (rc = retention_key(v, c, day, cur, rkey)))
                break;
            if (!pt) {
                rc = CUSTOS_ERR_NOMEM;
                break;
            }
            if ((rc = custos_leaf_open(id, key, l, pt, &tag, &len)))
                break;
            snprintf(path, sizeof(path), "%.*s", (int)l->plen, l->path);
            custos_random(nonce, sizeof(nonce));
            rc = custos_record_add_value(&b, id, rkey, path, tag, (const char *)pt, len, nonce);
            sodium_memzero(pt, len + 1);
            count++;
        }
        if (rc || !count)
            continue;
        if ((rc = custos_record_finish(&b, count)))
            break;
        memset(&row, 0, sizeof(row));
        memcpy(row.subject, id, 16);
        snprintf(row.field, sizeof(row.field), "%s", f->name);
        row.day = day;
        snprintf(row.legal_basis, sizeof(row.legal_basis), "%s", f->legal_basis);
        snprintf(row.role, sizeof(row.role), "%s", f->retention_role);
        row.erased_at = erased_at;
        row.blob = b.p;
        row.len = b.len;
        if ((rc = v->ops->retained_put(c, &row)))
            break;
        {
            struct retained_note *n = &plan->retained[plan->nretained++];

            snprintf(n->field, sizeof(n->field), "%s", f->name);
            day_format(n->until, day);
            snprintf(n->basis, sizeof(n->basis), "%s", f->legal_basis);
        }
    }
    custos_buf_release(&b);
    return rc;
}

struct link_ctx {
    struct custos_vault *v;
    struct custos_store_conn *c;
    int64_t now;
    size_t n;
    enum custos_err rc;
    struct custos_link_row *rows;
    size_t cap;
};

static int link_collect(void *ctx, const struct custos_link_row *l)
{
    struct link_ctx *lc = ctx;

    if (lc->n == lc->cap) {
        size_t ncap = lc->cap ? lc->cap * 2 : 4;
        void *np = realloc(lc->rows, ncap * sizeof(*lc->rows));

        if (!np) {
            lc->rc = CUSTOS_ERR_NOMEM;
            return 1;
        }
        lc->rows = np;
        lc->cap = ncap;
    }
    lc->rows[lc->n++] = *l;
    return 0;
}

/* A retained entry's line "retained FIELD UNTIL BASIS" is unambiguous only when FIELD has no space,
   UNTIL is a date and BASIS is one line: checked when signing and when verifying, so that words
   moved between the parts, or two entries folded into one, do not verify. */
static int retained_entry_ok(const char *f, const char *u, const char *b)
{
    static const char date[] = "dddd-dd-dd";
    size_t i;

    if (!f || !u || !b || !custos_valid_name(f, CUSTOS_FIELD_NAME_MAX) || strlen(u) != sizeof(date) - 1 || !*b)
        return 0;
    for (i = 0; i < sizeof(date) - 1; i++)
        if (date[i] == 'd' ? !(u[i] >= '0' && u[i] <= '9') : u[i] != date[i])
            return 0;
    for (; *b; b++)
        if ((unsigned char)*b < 0x20 || *b == 0x7f)
            return 0;
    return 1;
}

/* The receipt's canonical signed text (docs/format.md, "Erasure receipts"). */
static enum custos_err receipt_text(struct custos_buf *t, const char *origin, const char *hex, const char *when,
                                    uint64_t index, json_t *retained)
{
    enum custos_err rc;
    size_t i;

    if ((rc = custos_buf_printf(t,
                                CUSTOS_RECEIPT_FIRST_LINE "\norigin %s\nsubject %s\nerased_at %s\nledger_index %llu\n",
                                origin, hex, when, (unsigned long long)index)))
        return rc;
    for (i = 0; retained && i < json_array_size(retained); i++) {
        json_t *r = json_array_get(retained, i);
        const char *f = json_string_value(json_object_get(r, "field")),
                   *u = json_string_value(json_object_get(r, "until")),
                   *b = json_string_value(json_object_get(r, "legal_basis"));

        if (!retained_entry_ok(f, u, b))
            return custos_err_set(CUSTOS_ERR_INVALID, "receipt: malformed retained entry");
        if ((rc = custos_buf_printf(t, "retained %s %s %s\n", f, u, b)))
            return rc;
    }
    return CUSTOS_OK;
}

/* A signed receipt {"subject","erased_at","ledger_index","signature"[,"retained"]}; retained (borrowed,
   may be NULL) lists {"field","until","legal_basis"} and is left out when empty. */
static enum custos_err receipt_sign(struct custos_vault *v, const char *hex, const char *when, uint64_t index,
                                    json_t *retained, json_t **out)
{
    char sig64[sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL)];
    struct custos_buf t;
    uint8_t sig[64];
    enum custos_err rc;

    custos_buf_init(&t, 65536);
    if ((rc = receipt_text(&t, v->origin, hex, when, index, retained)) ||
        (rc = custos_ledger_sign(v->ledger, t.p, t.len, sig)))
        goto done;
    sodium_bin2base64(sig64, sizeof(sig64), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
    *out = json_pack("{s:s, s:s, s:I, s:s}", "subject", hex, "erased_at", when, "ledger_index", (json_int_t)index,
                     "signature", sig64);
    if (*out && json_array_size(retained))
        json_object_set(*out, "retained", retained);
    rc = *out ? CUSTOS_OK : CUSTOS_ERR_NOMEM;
done:
    custos_buf_release(&t);
    return rc;
}

static enum custos_err receipt(struct custos_vault *v, const uint8_t id[16], int64_t erased_at, uint64_t index,
                               const struct erase_plan *plan, json_t **out)
{
    char hex[CUSTOS_ID_HEX + 1], when[32];
    json_t *retained = json_array();
    enum custos_err rc;
    size_t i;

    if (!retained)
        return CUSTOS_ERR_NOMEM;
    custos_id_hex(hex, id);
    custos_time_format(when, erased_at);
    for (i = 0; i < plan->nretained; i++)
        json_array_append_new(retained, json_pack("{s:s, s:s, s:s}", "field", plan->retained[i].field, "until",
                                                  plan->retained[i].until, "legal_basis", plan->retained[i].basis));
    rc = receipt_sign(v, hex, when, index, retained, out);
    json_decref(retained);
    return rc;
}

/*
 * The record cannot be opened (rc from custos_record_load): is there still something to erase?
 * Restoring a data-plane backup can leave a key with no record (the subject was created after
 * the backup) or a record whose key generation is gone (re-keyed after it), and a damaged record
 * does not open either.  None of these may stop a subject from leaving, nor leave a key behind
 * that a later restore could use: the erasure goes on with nothing to keep (values that cannot
 * be opened cannot be retained) and destroys every key there is.  CUSTOS_OK to go on, with *r
 * empty; otherwise the error to answer (unknown: no record and no key; erased: 410).
 */
static enum custos_err unreadable(struct custos_vault *v, struct custos_store_conn *conn, const uint8_t id[16],
                                  enum custos_err rc, struct custos_record *r)
{
    enum custos_err k;

    if (rc != CUSTOS_ERR_NOTFOUND && rc != CUSTOS_ERR_CORRUPT && rc != CUSTOS_ERR_CRYPTO)
        return rc; /* erased already (410), or the store failed */
    if (rc == CUSTOS_ERR_NOTFOUND) {
        if ((k = v->ops->key_any(conn, id)) == CUSTOS_ERR_NOTFOUND)
            return custos_err_set(CUSTOS_ERR_NOTFOUND, "no such subject");
        if (k)
            return k;
    }
    custos_record_release(r);
    memset(r, 0, sizeof(*r));
    custos_scratch_wipe();
    custos_err_clear();
    return CUSTOS_OK;
}

enum custos_err custos_subject_erase(struct custos_vault *v, const struct custos_caller *c, const char *idhex,
                                     json_t **out)
{
    struct custos_store_conn *conn = NULL;
    struct custos_buf *blob = custos_buf_thread(CUSTOS_TLS_RECORD, RECORD_MAX);
    struct custos_erasure_row er;
    struct custos_record r = {0};
    struct custos_event e;
    struct erase_plan plan;
    struct link_ctx lc;
    struct custos_kek cur;
    uint8_t id[16], *key = custos_scratch();
    uint64_t index = 0;
    int64_t now = (int64_t)custos_now(v);
    int locked = 0, data_done = 0;
    size_t i;
    enum custos_err rc, audit_rc = CUSTOS_OK;

    *out = NULL;
    memset(&plan, 0, sizeof(plan));
    memset(&lc, 0, sizeof(lc));
    custos_event_init(&e, "subject.erase", c);
    if (!blob || !key) {
        rc = CUSTOS_ERR_NOMEM;
        goto fail;
    }
    if ((rc = custos_id_parse(id, idhex)))
        goto fail;
    e.subject = id;
    if ((rc = custos_check_scope(c, id)))
        goto fail;
    if (!custos_caller_may(v, c, CUSTOS_OP_SUBJECT_ERASE)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "this principal may not erase subjects");
        goto fail;
    }
    if ((rc = v->ops->acquire(v->store, &conn)))
        goto fail;
    custos_lock_writes(v, conn);
    locked = 1;
    if ((rc = custos_record_load(v, conn, id, blob, &r, key)) && (rc = unreadable(v, conn, id, rc, &r)))
        goto fail;
    if ((rc = v->ops->link_scan(conn, id, link_collect, &lc)) || (rc = lc.rc))
        goto fail;
    /* 2. the point of no return */
    memset(&er, 0, sizeof(er));
    memcpy(er.id, id, 16);
    er.erased_at = now;
    er.ledger_index = -1;
    if ((rc = custos_kek_current(v, &cur)))
        goto fail;
    if ((rc = v->ops->begin(conn, CUSTOS_PLANE_CONTROL))) {
        custos_kek_release(v, &cur);
        goto fail;
    }
    rc = retain(v, conn, &cur, id, key, &r, now, &plan);
    for (i = 0; !rc && i < lc.n; i++) {
        struct custos_outbox_row o;

        memset(&o, 0, sizeof(o));
        memcpy(o.subject, id, 16);
        snprintf(o.link, sizeof(o.link), "%s", lc.rows[i].name);
        snprintf(o.url, sizeof(o.url), "%s", lc.rows[i].url);
        o.erased_at = now;
        o.created = now;
        o.next_at = now;
        rc = v->ops->outbox_put(conn, &o);
    }
    if (!rc)
        rc = v->ops->erasure_put(conn, &er);
    if (!rc)
        rc = v->ops->key_delete(conn, id, 0);
    if (!rc)
        rc = v->ops->token_revoke_scope(conn, id, now, custos_token_sign, v); /* its customer tokens die with it */
    if (rc || (rc = v->ops->commit(conn, CUSTOS_PLANE_CONTROL))) {
        v->ops->rollback(conn, CUSTOS_PLANE_CONTROL);
        custos_kek_release(v, &cur);
        plan.nretained = 0;
        goto fail;
    }
    custos_kek_release(v, &cur); /* a retention key made under it is committed */
    custos_scratch_wipe();
    custos_keycache_drop(v->keys, id);
    custos_auth_invalidate(v); /* the subject's customer tokens were revoked with it */
    plan.nlinks = lc.n;
    /* 3. the ledger entry; a failure here is finished later (the tombstone says so: index -1) */
    e.result = CUSTOS_RESULT_OK;
    e.count = (int64_t)lc.n;
    if ((audit_rc = custos_audit_durable(v, &e, &index)) == CUSTOS_OK)
        er.ledger_index = (int64_t)index;
    /* 4. the ledger index into the tombstone, and the data plane (one transaction).  Also when
       step 3 failed: the erasure is decided, so its record and blind entries go now rather than
       stay searchable until it is finished */
    if ((rc = v->ops->begin(conn, CUSTOS_PLANE_DATA)))
        goto out;
    /* ... and what the last finished import read first goes too: a keyed digest of its input's
       head, which this subject's line may be part of (it only guards a rerun of that import) */
    if ((er.ledger_index >= 0 && (rc = v->ops->erasure_put(conn, &er))) ||
        (rc = v->ops->subject_delete(conn, id)) || (rc = v->ops->import_done_put(conn, NULL, 0)) ||
        (rc = v->ops->commit(conn, CUSTOS_PLANE_DATA))) {
        v->ops->rollback(conn, CUSTOS_PLANE_DATA);
        /* the entry exists: the tombstone must say where, or finishing the erasure would take it
           for lost and write a second one ("recovered") */
        if (er.ledger_index >= 0 && v->ops->begin(conn, CUSTOS_PLANE_CONTROL) == CUSTOS_OK) {
            if (v->ops->erasure_put(conn, &er) != CUSTOS_OK ||
                v->ops->commit(conn, CUSTOS_PLANE_CONTROL) != CUSTOS_OK)
                v->ops->rollback(conn, CUSTOS_PLANE_CONTROL);
        }
        goto out;
    }
    data_done = 1;
    if ((rc = audit_rc))
        goto out; /* the ledger entry waits for the next start: a failed ledger stays failed */
    /* 5. the receipt */
    rc = receipt(v, id, now, index, &plan, out);
out:
    if (audit_rc)
        rc = audit_rc; /* the ledger failed first: 503 */
    if (!data_done)
        atomic_store(&v->erasures_unfinished, 1); /* the tick finishes it (custos_erasures_finish) */
    atomic_store(&v->compact_soon, 1); /* a tick soon flushes logs whose old pages held the destroyed key */
    custos_unlock_writes(v);
    v->ops->release(v->store, conn);
    custos_record_release(&r);
    custos_buf_reset(blob);
    free(lc.rows);
    return rc;
fail:
    custos_scratch_wipe();
    if (locked)
        custos_unlock_writes(v);
    if (conn)
        v->ops->release(v->store, conn);
    custos_record_release(&r);
    if (blob)
        custos_buf_reset(blob);
    free(lc.rows);
    return custos_audit_outcome(v, &e, rc);
}

/* ---- receipts ------------------------------------------------------------------------------ */

static const char *member(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));

    return s ? s : "";
}

/* A receipt's members, parsed and checked for shape (not yet for its signature). */
struct rcpt {
    json_t *j; /* owns the strings below */
    const char *hex, *when;
    json_int_t index;
    json_t *retained;
    uint8_t sig[64];
};

static enum custos_err receipt_parse(const char *text, size_t len, struct rcpt *r)
{
    static const char *const keys[] = {"subject", "erased_at", "ledger_index", "signature", "retained", NULL};
    const char *sig64 = NULL;
    size_t siglen = 0;
    uint8_t id[16];
    enum custos_err rc;

    memset(r, 0, sizeof(*r));
    if ((rc = custos_json_parse(text, len, 65536, 0, &r->j)) || (rc = custos_json_only(r->j, keys, "receipt")) ||
        (rc = custos_json_str(r->j, "subject", 1, 32, &r->hex)) ||
        (rc = custos_json_str(r->j, "erased_at", 1, 31, &r->when)) ||
        (rc = custos_json_str(r->j, "signature", 1, 100, &sig64)))
        return rc;
    if ((rc = custos_id_parse(id, r->hex)))
        return rc;
    if (!json_is_integer(json_object_get(r->j, "ledger_index")) ||
        (r->index = json_integer_value(json_object_get(r->j, "ledger_index"))) < 0)
        return custos_err_set(CUSTOS_ERR_INVALID, "receipt: ledger_index must be a non-negative integer");
    r->retained = json_object_get(r->j, "retained");
    if (r->retained && !json_is_array(r->retained))
        return custos_err_set(CUSTOS_ERR_INVALID, "receipt: retained must be an array");
    if (!custos_base64_decode(r->sig, sizeof(r->sig), &siglen, sig64, strlen(sig64)) || siglen != sizeof(r->sig))
        return custos_err_set(CUSTOS_ERR_INVALID, "receipt: signature is not base64 of 64 bytes");
    return CUSTOS_OK;
}

/* The receipt's signature under the ledger key (origin, pk); `whose` names that key. */
static enum custos_err receipt_signed(const struct rcpt *r, const char *origin, const uint8_t pk[32], char *what,
                                      size_t cap, const char *whose)
{
    struct custos_buf t;
    enum custos_err rc;

    custos_buf_init(&t, 65536);
    if (!(rc = receipt_text(&t, origin, r->hex, r->when, (uint64_t)r->index, r->retained)) &&
        crypto_sign_verify_detached(r->sig, t.p, t.len, pk) != 0) {
        snprintf(what, cap, "signature does not verify under %s", whose);
        rc = custos_err_set(CUSTOS_ERR_INVALID, "%s", what);
    }
    custos_buf_release(&t);
    return rc;
}

/* what = the error's own message when nothing more specific was said */
static enum custos_err receipt_verdict(enum custos_err rc, char *what, size_t cap)
{
    if (rc && strcmp(what, "receipt is malformed") == 0)
        snprintf(what, cap, "%s", custos_err_msg(rc));
    return rc;
}

enum custos_err custos_receipt_verify(const char *dir, const char *text, size_t len, char *what, size_t cap)
{
    char origin[256], ldir[4200];
    uint8_t pk[32], *buf = NULL;
    struct custos_ledger_config lc;
    struct custos_ledger *l = NULL;
    struct rcpt r;
    json_t *ev = NULL;
    size_t elen = 0;
    enum custos_err rc;

    snprintf(what, cap, "receipt is malformed");
    if ((rc = receipt_parse(text, len, &r)) || (rc = custos_vault_ledger_identity(dir, origin, sizeof(origin), pk)) ||
        (rc = receipt_signed(&r, origin, pk, what, cap, "this vault's ledger key")))
        goto done;
    /* the ledger, when present, must hold the erasure at that index; one that is there but
       cannot be opened (damaged, unreadable) fails the check rather than skipping it */
    snprintf(ldir, sizeof(ldir), "%s/ledger", dir);
    memset(&lc, 0, sizeof(lc));
    lc.dir = ldir;
    lc.origin = origin;
    lc.read_only = 1;
    if (access(ldir, F_OK) == 0 || errno != ENOENT) {
        if ((rc = custos_ledger_open(&lc, &l, NULL))) {
            snprintf(what, cap, "the ledger cannot be read to cross-check the receipt");
            goto done; /* the ledger's own error says why */
        }
        buf = malloc(CUSTOS_LEDGER_ENTRY_MAX);
        if (!buf) {
            rc = CUSTOS_ERR_NOMEM;
            goto done;
        }
        rc = custos_ledger_read(l, (uint64_t)r.index, buf, CUSTOS_LEDGER_ENTRY_MAX, &elen);
        ev = rc ? NULL : json_loadb((const char *)buf, elen, 0, NULL);
        if (!ev || strcmp(member(ev, "action"), "subject.erase") != 0 || strcmp(member(ev, "subject"), r.hex) != 0 ||
            strcmp(member(ev, "result"), "ok") != 0) {
            snprintf(what, cap, "the ledger entry at index %lld is not this erasure", (long long)r.index);
            rc = custos_err_set(CUSTOS_ERR_INVALID, "%s", what);
            goto done;
        }
        snprintf(what, cap, "valid: signature verifies and ledger entry %lld records the erasure",
                 (long long)r.index);
    } else
        snprintf(what, cap, "valid: signature verifies (no ledger in %s to cross-check)", dir);
    rc = CUSTOS_OK;
done:
    receipt_verdict(rc, what, cap);
    custos_ledger_free(l);
    free(buf);
    json_decref(ev);
    json_decref(r.j);
    return rc;
}

enum custos_err custos_receipt_verify_key(const struct custos_note_verifier *v, const char *text, size_t len,
                                          char *what, size_t cap)
{
    struct rcpt r;
    enum custos_err rc;

    snprintf(what, cap, "receipt is malformed");
    if ((rc = receipt_parse(text, len, &r)) || (rc = receipt_signed(&r, v->name, v->pubkey, what, cap, "the given key")))
        goto done;
    snprintf(what, cap, "valid: signature verifies under %s (ledger entry %lld not cross-checked)", v->name,
             (long long)r.index);
done:
    receipt_verdict(rc, what, cap);
    json_decref(r.j);
    return rc;
}

/* ---- links and erasure status -------------------------------------------------------------- */

/*
 * A webhook: http:// or https://, the scheme in any case (RFC 3986 3.1: "HTTPS" is "https";
 * custos_link_body_parse writes it lowercase), 8 to 2048 bytes of printable ASCII without spaces,
 * and an authority the deliverer (libcurl) can send to: [userinfo@]host[:port], the host a name
 * of letters, digits and "-._~" or a bracketed IPv6 address, the port 1 to 65535.  Without that
 * check a URL such as "https://" or "http://x:99999/" was accepted (200) and its notices failed
 * every attempt for 7 days.  One '@' at most: libcurl splits the userinfo at the first, url_host
 * (the per-host share) at the last.
 */
static int valid_url(const char *u)
{
    size_t i, n = strlen(u);
    const char *a, *end, *at, *h, *q;
    char scheme[6];

    if (n < 8 || n > 2048)
        return 0;
    for (i = 0; i < 5 && isalpha((unsigned char)u[i]); i++)
        scheme[i] = (char)tolower((unsigned char)u[i]);
    scheme[i] = '\0';
    if ((strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) || strncmp(u + i, "://", 3) != 0)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)u[i] <= ' ' || (unsigned char)u[i] >= 0x7f)
            return 0;
    a = strstr(u, "://") + 3;
    end = a + strcspn(a, "/?#");
    at = memchr(a, '@', (size_t)(end - a));
    h = at ? at + 1 : a;
    if (memchr(h, '@', (size_t)(end - h)))
        return 0;
    if (*h == '[') {
        char lit[INET6_ADDRSTRLEN];
        struct in6_addr a6;

        if (!(q = memchr(h, ']', (size_t)(end - h))) || (size_t)(q - h - 1) >= sizeof(lit))
            return 0;
        memcpy(lit, h + 1, (size_t)(q - h - 1));
        lit[q - h - 1] = '\0';
        if (inet_pton(AF_INET6, lit, &a6) != 1)
            return 0;
        q++;
    } else {
        for (q = h; q < end && (isalnum((unsigned char)*q) || strchr("-._~", *q)); q++)
            ;
        if (q == h)
            return 0;
    }
    if (q < end) {
        unsigned long port = 0;

        if (*q++ != ':' || q == end || end - q > 5)
            return 0;
        for (; q < end; q++) {
            if (*q < '0' || *q > '9')
                return 0;
            port = port * 10 + (unsigned long)(*q - '0');
        }
        if (port < 1 || port > 65535)
            return 0;
    }
    return 1;
}

enum custos_err custos_link_body_parse(const char *body, size_t len, json_t **j, const char **url)
{
    static const char *const keys[] = {"webhook", NULL};
    enum custos_err rc;
    size_t n;

    *j = NULL;
    *url = NULL;
    if ((rc = custos_json_parse(body, len, CUSTOS_BODY_MAX, 0, j)) || (rc = custos_json_only(*j, keys, "link")) ||
        (rc = custos_json_str(*j, "webhook", 1, 2048, url)))
        return rc;
    if (!valid_url(*url)) {
        *url = NULL;
        return custos_err_set(CUSTOS_ERR_INVALID,
                              "webhook must be an http:// or https:// URL with a host, of at most 2048 bytes");
    }
    /* stored, answered and delivered with the scheme in its canonical lowercase, so that every
       reader of the stored URL (the export's origin, a backup's check) sees one spelling; the
       body's string is jansson's, read-only: a copy replaces it */
    n = strcspn(*url, ":");
    if (strncmp(*url, n == 4 ? "http" : "https", n) != 0) {
        char canon[2049];

        snprintf(canon, sizeof(canon), "%s%s", n == 4 ? "http" : "https", *url + n);
        if (json_object_set_new(*j, "webhook", json_string(canon)) != 0) {
            *url = NULL;
            return CUSTOS_ERR_NOMEM;
        }
        *url = json_string_value(json_object_get(*j, "webhook"));
    }
    return CUSTOS_OK;
}

enum custos_err custos_link_put(struct custos_vault *v, const struct custos_caller *c, const char *idhex,
                                const char *name, const char *body, size_t len, json_t **out)
{
    struct custos_store_conn *conn = NULL;
    struct custos_buf blob;
    struct custos_link_row l;
    struct custos_event e;
    const char *url = NULL;
    json_t *j = NULL;
    uint8_t id[16];
    int audited = 0;
    enum custos_err rc;

    *out = NULL;
    custos_buf_init(&blob, RECORD_MAX);
    custos_event_init(&e, "link.put", c);
    if ((rc = custos_id_parse(id, idhex)))
        goto done;
    e.subject = id;
    if (!name || !custos_valid_name(name, 64)) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "link name must match [a-z][a-z0-9._-]{0,63}");
        goto done;
    }
    e.target = name;
    if (c->kind == CUSTOS_KIND_CUSTOMER || !custos_caller_may(v, c, CUSTOS_OP_SUBJECT_LINK)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "registering links needs the subject.link operation");
        goto done;
    }
    if ((rc = custos_link_body_parse(body, len, &j, &url)))
        goto done;
    if ((rc = v->ops->acquire(v->store, &conn)))
        goto done;
    custos_lock_writes(v, conn);
    rc = v->ops->subject_get(conn, id, &blob);
    if (rc == CUSTOS_ERR_NOTFOUND)
        rc = custos_subject_missing(v, conn, id);
    if (!rc) {
        memset(&l, 0, sizeof(l));
        memcpy(l.subject, id, 16);
        snprintf(l.name, sizeof(l.name), "%s", name);
        snprintf(l.url, sizeof(l.url), "%s", url);
        l.created = (int64_t)custos_now(v);
        if (!(rc = v->ops->begin(conn, CUSTOS_PLANE_DATA))) {
            if ((rc = v->ops->link_put(conn, &l)) || (rc = custos_audit_in_txn(v, &e, &audited)) ||
                (rc = v->ops->commit(conn, CUSTOS_PLANE_DATA)))
                v->ops->rollback(conn, CUSTOS_PLANE_DATA);
        }
    }
    custos_unlock_writes(v);
    v->ops->release(v->store, conn);
    if (!rc && !(*out = json_pack("{s:s, s:s, s:s}", "subject", idhex, "link", name, "webhook", url)))
        rc = CUSTOS_ERR_NOMEM;
done:
    custos_buf_release(&blob);
    json_decref(j);
    if (audited && !rc)
        return CUSTOS_OK; /* its event went in before the commit */
    return custos_audit_finish(v, &e, rc, out);
}

/* A link name as JSON can carry it: a byte that does not start a valid UTF-8 sequence becomes
   '?' (only an edited database or backup holds such a name; the API makes none).  Without it,
   the listing stopped at that link and left out the rest (red-team finding). */
static const char *link_shown(const char *name, char out[65])
{
    size_t i = 0, o = 0, len = strnlen(name, 64), k;
    unsigned long cp;

    while (i < len) { /* o <= i: never more bytes than the name */
        if ((k = custos_utf8_decode((const unsigned char *)name + i, len - i, &cp)) == 0) {
            out[o++] = '?';
            i++;
        } else {
            memcpy(out + o, name + i, k);
            o += k;
            i += k;
        }
    }
    out[o] = '\0';
    return out;
}

static int status_link(void *ctx, const struct custos_outbox_row *o)
{
    json_t *arr = ctx;
    char when[32], next[32], shown[65];
    const char *state = o->delivered_at ? "delivered" : o->failed_at ? "failed" : "pending";
    json_t *item;

    item = json_pack("{s:s, s:s, s:i, s:i}", "link", link_shown(o->link, shown), "state", state, "attempts",
                     (int)o->attempts, "last_status", o->last_status);
    if (!item)
        return 1;
    if (o->last_error[0])
        json_object_set_new(item, "last_error", json_string(o->last_error));
    if (o->delivered_at) {
        custos_time_format(when, o->delivered_at);
        json_object_set_new(item, "delivered_at", json_string(when));
    } else if (!o->failed_at) {
        custos_time_format(next, o->next_at);
        json_object_set_new(item, "next_attempt_at", json_string(next));
    }
    return json_array_append_new(arr, item) != 0;
}

static int active_link(void *ctx, const struct custos_link_row *l)
{
    char shown[65];

    return json_array_append_new(ctx, json_pack("{s:s, s:s}", "link", link_shown(l->name, shown), "state",
                                                "registered")) != 0;
}

struct status_ctx {
    json_t *retained;
    uint32_t today;
};

static int status_retained(void *ctx, const struct custos_retained_row *r)
{
    struct status_ctx *sc = ctx;
    char until[16];

    if (r->day < sc->today)
        return 0; /* its period ended (shredded at the next tick) */
    day_format(until, r->day);
    return json_array_append_new(sc->retained, json_pack("{s:s, s:s, s:s}", "field", r->field, "until", until,
                                                         "legal_basis", r->legal_basis)) != 0;
}

enum custos_err custos_erasure_status(struct custos_vault *v, const struct custos_caller *c, const char *idhex,
                                      json_t **out)
{
    struct custos_store_conn *conn = NULL;
    struct custos_erasure_row er;
    struct custos_event e;
    struct custos_buf blob;
    json_t *links = NULL, *retained = NULL;
    uint8_t id[16];
    char when[32];
    enum custos_err rc;

    *out = NULL;
    custos_buf_init(&blob, RECORD_MAX);
    custos_event_init(&e, "subject.erasure_status", c);
    if ((rc = custos_id_parse(id, idhex)))
        goto done;
    e.subject = id;
    if ((rc = custos_check_scope(c, id)))
        goto done;
    if (!custos_caller_may(v, c, CUSTOS_OP_SUBJECT_ERASE) && !custos_caller_may(v, c, CUSTOS_OP_SUBJECT_LINK)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "this principal may not see erasure status");
        goto done;
    }
    links = json_array();
    retained = json_array();
    if (!links || !retained) {
        rc = CUSTOS_ERR_NOMEM;
        goto done;
    }
    if ((rc = v->ops->acquire(v->store, &conn)))
        goto done;
    rc = v->ops->erasure_get(conn, id, &er);
    if (rc == CUSTOS_OK) {
        struct status_ctx sc = {retained, day_of((int64_t)custos_now(v))};

        if (!(rc = v->ops->outbox_scan_subject(conn, id, status_link, links)))
            rc = v->ops->retained_scan_subject(conn, id, status_retained, &sc);
        custos_time_format(when, er.erased_at);
        if (!rc)
            *out = json_pack("{s:s, s:s, s:s, s:I, s:O, s:O}", "subject", idhex, "state", "erased", "erased_at", when,
                             "ledger_index", (json_int_t)er.ledger_index, "links", links, "retained", retained);
        /* the receipt again, signed now over the same facts (and what is still retained): for a
           customer whose DELETE answered 503 after the point of no return, or who lost it */
        if (!rc && *out && er.ledger_index >= 0) {
            json_t *rcpt = NULL;

            if (!(rc = receipt_sign(v, idhex, when, (uint64_t)er.ledger_index, retained, &rcpt)))
                json_object_set_new(*out, "receipt", rcpt);
        }
    } else if (rc == CUSTOS_ERR_NOTFOUND) {
        rc = v->ops->subject_get(conn, id, &blob);
        if (rc == CUSTOS_ERR_NOTFOUND)
            rc = custos_err_set(CUSTOS_ERR_NOTFOUND, "no such subject");
        if (!rc && !(rc = v->ops->link_scan(conn, id, active_link, links)))
            *out = json_pack("{s:s, s:s, s:O}", "subject", idhex, "state", "active", "links", links);
    }
    v->ops->release(v->store, conn);
    if (!rc && !*out)
        rc = CUSTOS_ERR_NOMEM;
done:
    json_decref(links);
    json_decref(retained);
    custos_buf_release(&blob);
    return custos_audit_finish(v, &e, rc, out);
}

/* ---- the outbox ---------------------------------------------------------------------------- */

/*
 * Sharing between receivers: one call hands out at most CUSTOS_OUTBOX_PER_HOST notices per receiving
 * host (the URL's host name, lowercased, without user or port), the earliest due first, and
 * looks past the rest of that host's due notices to other hosts'.  It reads two windows of at
 * most OUTBOX_SCAN due rows: the head (the earliest due) and, when the head is all hosts that
 * have had their share, a sweeping window that starts where the last one ended and wraps
 * around at the end of the due rows.  So a receiver that hangs, with more due notices than one
 * window holds, delays the others' by a sweep of the due rows (a call per OUTBOX_SCAN rows),
 * not by the hours its backlog takes at CUSTOS_OUTBOX_PER_HOST per timeout (red-team finding).
 * Nothing is written: a notice handed out stays due until custos_outbox_done records its
 * attempt, so the deliverer sees its notices in flight again on its next call (and skips
 * them), and a crash mid-delivery loses nothing (at least once).  A notice whose body cannot be
 * made (a link name that is not UTF-8: only an edited database or backup holds one) is given
 * up at once and said so in the ledger, never left to stop the scan at itself.
 */
struct due_host {
    char name[256];
    unsigned n;
};

#define DUE_BAD_MAX 8 /* unsendable notices given up per call */

struct due_ctx {
    struct custos_vault *v;
    struct custos_delivery *out;
    size_t max, n;
    struct due_host *hosts; /* max entries, nhosts used */
    size_t nhosts;
    size_t seen;            /* rows of the current window */
    int64_t last_at, last_id; /* the window's last row, in (next_at, id) order */
    struct custos_outbox_row bad[DUE_BAD_MAX];
    size_t nbad;
};

/*
 * The host of an http(s) URL, lowercased, into out (cap > 0); "" when it has none.  An address
 * is written one way whatever the spelling, as libcurl reads it: "127.1", "2130706433",
 * "0x7f000001", "0177.0.0.1" and "[::ffff:127.0.0.1]" are all 127.0.0.1, "[0:0::1]" is [::1],
 * and a name's trailing dot goes ("Example.COM." is example.com); so one receiver is not several
 * hosts for the share (red-team finding: eight spellings took eight shares).  Two names of one
 * address stay two hosts: nothing is resolved here.
 */
static void url_host(const char *url, char *out, size_t cap)
{
    size_t len, n = 0;
    const char *p = custos_url_authority(url, &len), *end = p + len, *q;
    struct in_addr a4;
    struct in6_addr a6;
    char lit[INET6_ADDRSTRLEN + 2];

    if (*p == '[') {
        q = memchr(p, ']', len);
        end = q ? q + 1 : end;
    } else if ((q = memchr(p, ':', len)))
        end = q;
    for (; p < end && n + 1 < cap; p++)
        out[n++] = (char)tolower((unsigned char)*p);
    out[n] = '\0';
    if (n > 2 && out[0] == '[' && out[n - 1] == ']') {
        memcpy(lit, out + 1, n - 2 < sizeof(lit) ? n - 2 : 0);
        lit[n - 2 < sizeof(lit) ? n - 2 : 0] = '\0';
        if (inet_pton(AF_INET6, lit, &a6) != 1)
            return;
        if (IN6_IS_ADDR_V4MAPPED(&a6)) {
            memcpy(&a4, a6.s6_addr + 12, 4);
            inet_ntop(AF_INET, &a4, out, (socklen_t)cap);
        } else if (inet_ntop(AF_INET6, &a6, lit, sizeof(lit)))
            snprintf(out, cap, "[%s]", lit);
        return;
    }
    if (n > 1 && out[n - 1] == '.')
        out[--n] = '\0';
    if (n && inet_aton(out, &a4))
        inet_ntop(AF_INET, &a4, out, (socklen_t)cap);
}

/* 1 when host `name` has had its share of this call; counts the notice otherwise. */
static int host_full(struct due_ctx *d, const char name[256])
{
    size_t i;

    for (i = 0; i < d->nhosts; i++)
        if (strcmp(d->hosts[i].name, name) == 0)
            return d->hosts[i].n >= CUSTOS_OUTBOX_PER_HOST ? 1 : (d->hosts[i].n++, 0);
    memcpy(d->hosts[d->nhosts].name, name, 256);
    d->hosts[d->nhosts++].n = 1;
    return 0;
}

static int due_one(void *ctx, const struct custos_outbox_row *o)
{
    struct due_ctx *d = ctx;
    struct custos_delivery *x = &d->out[d->n];
    char hex[CUSTOS_ID_HEX + 1], when[32], host[256];
    uint8_t sig[64];
    json_t *body;
    char *s;

    d->seen++;
    d->last_at = o->next_at;
    d->last_id = o->id;
    if (o->damaged || !custos_utf8_valid(o->link, strlen(o->link))) {
        /* no body can be made of it: given up after the scan (a full list waits for the next
           call); the scan goes on either way */
        if (d->nbad < DUE_BAD_MAX)
            d->bad[d->nbad++] = *o;
        return 0;
    }
    url_host(o->url, host, sizeof(host));
    if (host_full(d, host))
        return 0;
    custos_id_hex(hex, o->subject);
    custos_time_format(when, o->erased_at);
    body = json_pack("{s:s, s:s, s:s, s:s}", "event", "subject.erased", "subject", hex, "link", o->link,
                     "erased_at", when);
    s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!s || strlen(s) >= sizeof(x->body)) {
        free(s);
        return 1; /* out of memory: the next call (host_full counted a host with no notice) */
    }
    memset(x, 0, sizeof(*x));
    x->id = o->id;
    x->attempts = o->attempts;
    x->created = o->created;
    snprintf(x->url, sizeof(x->url), "%s", o->url);
    memcpy(x->host, host, sizeof(x->host));
    snprintf(x->link, sizeof(x->link), "%s", o->link);
    memcpy(x->subject, o->subject, 16);
    x->body_len = strlen(s);
    memcpy(x->body, s, x->body_len + 1);
    free(s);
    /* receivers can check the notice came from this vault: Ed25519 over the body, ledger key */
    if (custos_ledger_sign(d->v->ledger, x->body, x->body_len, sig) == CUSTOS_OK)
        sodium_bin2base64(x->signature, sizeof(x->signature), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
    return ++d->n == d->max;
}

/* (a1, i1) after (a2, i2) in (next_at, id) order */
static int row_after(int64_t a1, int64_t i1, int64_t a2, int64_t i2)
{
    return a1 > a2 || (a1 == a2 && i1 > i2);
}

/* Give up a notice no body can be made of, and say so in the ledger. */
static enum custos_err outbox_unsendable(struct custos_vault *v, struct custos_store_conn *conn,
                                         const struct custos_outbox_row *row)
{
    struct custos_outbox_row o = *row;
    struct custos_caller sys;
    struct custos_event e;
    enum custos_err rc;

    o.failed_at = (int64_t)custos_now(v);
    o.last_status = 0;
    snprintf(o.last_error, sizeof(o.last_error), "%s",
             o.damaged ? "unsendable: its stored row is damaged" : "unsendable: the link name is not valid UTF-8");
    if ((rc = v->ops->outbox_update(conn, &o)))
        return rc;
    custos_caller_system(&sys);
    snprintf(sys.principal, sizeof(sys.principal), "@outbox");
    custos_event_init(&e, "link.notify", &sys);
    e.subject = o.damaged ? NULL : o.subject;
    e.target = o.link; /* its invalid bytes are written as '?' */
    e.count = (int64_t)o.attempts;
    e.reason = "unsendable";
    return custos_audit_outcome(v, &e, custos_err_set(CUSTOS_ERR_CORRUPT, "unsendable notice"));
}

enum custos_err custos_outbox_next(struct custos_vault *v, struct custos_delivery *out, size_t max, size_t *n)
{
    struct custos_store_conn *conn = NULL;
    struct due_ctx d;
    int64_t now = (int64_t)custos_now(v), head_at, head_id;
    size_t window = max > OUTBOX_SCAN ? max : OUTBOX_SCAN, i;
    enum custos_err rc;

    *n = 0;
    if (!max)
        return CUSTOS_OK;
    memset(&d, 0, sizeof(d));
    d.v = v;
    d.out = out;
    d.max = max;
    if (!(d.hosts = calloc(max, sizeof(*d.hosts))))
        return CUSTOS_ERR_NOMEM;
    if ((rc = v->ops->acquire(v->store, &conn))) {
        free(d.hosts);
        return rc;
    }
    rc = v->ops->outbox_due(conn, now, INT64_MIN, 0, window, due_one, &d);
    if (!rc && d.n < max && d.seen == window) {
        /* the head is full of hosts that had their share: the sweeping window, from where the
           last one ended (or from the head's end, when that is further) */
        head_at = d.last_at;
        head_id = d.last_id;
        if (!v->ob_swept || !row_after(v->ob_at, v->ob_id, head_at, head_id)) {
            v->ob_at = head_at;
            v->ob_id = head_id;
        }
        d.seen = 0;
        rc = v->ops->outbox_due(conn, now, v->ob_at, v->ob_id, window, due_one, &d);
        /* a short window that did not fill the list reached the end: wrap around; else the next
           sweep goes on after its last row */
        v->ob_swept = !rc && (d.seen == window || d.n == max);
        if (v->ob_swept) {
            v->ob_at = d.last_at;
            v->ob_id = d.last_id;
        }
    }
    /* a give-up that fails (the store, the ledger) is tried again at the next call; the notices
       handed out go out all the same */
    for (i = 0; !rc && i < d.nbad; i++) {
        (void)outbox_unsendable(v, conn, &d.bad[i]);
        custos_err_clear();
    }
    v->ops->release(v->store, conn);
    free(d.hosts);
    *n = d.n;
    return rc;
}

enum custos_err custos_outbox_done(struct custos_vault *v, const struct custos_delivery *d, int http_status,
                                   const char *error)
{
    struct custos_store_conn *conn = NULL;
    struct custos_outbox_row o;
    struct custos_caller sys;
    struct custos_event e;
    int64_t now = (int64_t)custos_now(v), delay;
    int ok = http_status >= 200 && http_status < 300;
    char target[96];
    enum custos_err rc;

    memset(&o, 0, sizeof(o));
    o.id = d->id;
    o.attempts = d->attempts + 1;
    o.last_status = http_status;
    snprintf(o.last_error, sizeof(o.last_error), "%s", ok ? "" : error ? error : "non-2xx answer");
    if (ok)
        o.delivered_at = now;
    else if (now - d->created > OUTBOX_GIVE_UP_MS && o.attempts >= OUTBOX_GIVE_UP_ATTEMPTS)
        o.failed_at = now;
    else {
        /* 1 s, 2 s, 4 s ... capped at 5 minutes, with jitter so receivers are not stampeded (a count
           that wrapped to 0, from a row edited in control.db, takes the cap, not a shift by -1) */
        delay = o.attempts >= 1 && o.attempts < 20 ? 1000LL << (o.attempts - 1) : OUTBOX_MAX_DELAY_MS;
        if (delay > OUTBOX_MAX_DELAY_MS)
            delay = OUTBOX_MAX_DELAY_MS;
        o.next_at = now + delay + (int64_t)randombytes_uniform((uint32_t)(delay / 4 + 1));
    }
    if ((rc = v->ops->acquire(v->store, &conn)))
        return rc;
    rc = v->ops->outbox_update(conn, &o);
    v->ops->release(v->store, conn);
    if (rc || (!ok && !o.failed_at))
        return rc;
    custos_caller_system(&sys);
    snprintf(sys.principal, sizeof(sys.principal), "@outbox");
    custos_event_init(&e, "link.notify", &sys);
    e.subject = d->subject;
    snprintf(target, sizeof(target), "%s", d->link);
    e.target = target;
    e.count = (int64_t)o.attempts;
    if (!ok) {
        e.reason = "gave_up";
        return custos_audit_outcome(v, &e, custos_err_set(CUSTOS_ERR_UNAVAILABLE,
                                                          "gave up: no 2xx in 7 days and %u attempts", o.attempts));
    }
    return custos_audit_outcome(v, &e, CUSTOS_OK);
}

/* ---- legal retention ----------------------------------------------------------------------- */

struct ret_ctx {
    struct custos_vault *v;
    const struct custos_caller *c;
    struct custos_store_conn *conn;
    const uint8_t *id;
    uint64_t want;
    size_t rows;
    uint32_t today; /* a value kept until an earlier day is gone, shredded or not yet */
    json_t *fields;
    const char *paths[CUSTOS_SCHEMA_MAX_FIELDS];
    size_t npaths;
    enum custos_err rc;
    int allowed_any;
};

static int caller_has_role(const struct custos_vault *v, const struct custos_caller *c, const char *role)
{
    int r = custos_policy_role(v->policy, role);

    return c->system || (r >= 0 && (c->roles & (1u << r)));
}

/* 1 when the caller holds a role some field's retention names: only then is anything looked up,
   so that the answers (403, 410) tell no one else whether a subject was erased. */
static int any_retention_role(const struct custos_vault *v, const struct custos_caller *c)
{
    size_t i;

    for (i = 0; i < v->schema->nfields; i++) {
        const struct custos_field *f = &v->schema->fields[i];

        if (f->retention_days && caller_has_role(v, c, f->retention_role))
            return 1;
    }
    return 0;
}

static int ret_one(void *ctx, const struct custos_retained_row *row)
{
    struct ret_ctx *rc = ctx;
    struct custos_vault *v = rc->v;
    const struct custos_field *f = custos_schema_field(v->schema, row->field, strlen(row->field));
    struct custos_record rec = {0};
    uint8_t *key = custos_scratch() + 2 * CUSTOS_KEY_BYTES, *pt = custos_plain_scratch();
    size_t i;

    if (row->day < rc->today)
        return 0; /* its period ended: the next tick shreds it, and nobody reads it meanwhile */
    rc->rows++;
    if (!f || !caller_has_role(v, rc->c, row->role))
        return 0;
    if (rc->want && !(rc->want & ((uint64_t)1 << (f - v->schema->fields))))
        return 0;
    rc->allowed_any = 1;
    if (retention_key(v, rc->conn, row->day, NULL, key) != CUSTOS_OK)
        return 0; /* the period ended and the key is gone: nothing left to read */
    if ((rc->rc = custos_record_parse(row->blob, row->len, &rec)))
        goto done;
    if (!pt) {
        rc->rc = CUSTOS_ERR_NOMEM;
        goto done;
    }
    for (i = 0; i < rec.n && !rc->rc; i++) {
        struct custos_path_parts pp;
        size_t len;
        char tag;

        if (custos_path_split(rec.leaf[i].path, rec.leaf[i].plen, &pp)) {
            rc->rc = custos_err_set(CUSTOS_ERR_CORRUPT, "retained record is corrupt");
            break;
        }
        if ((rc->rc = custos_leaf_open(rc->id, key, &rec.leaf[i], pt, &tag, &len)))
            break;
        rc->rc = custos_place(rc->fields, &pp, custos_decode_value(tag, (const char *)pt, len));
        sodium_memzero(pt, len + 1);
    }
    if (!rc->rc && rc->npaths < CUSTOS_SCHEMA_MAX_FIELDS)
        rc->paths[rc->npaths++] = f->name;
done:
    custos_scratch_wipe();
    custos_record_release(&rec);
    return rc->rc != CUSTOS_OK;
}

enum custos_err custos_retained_read(struct custos_vault *v, const struct custos_caller *c, const uint8_t id[16],
                                     const char *fields, json_t **fields_out, struct custos_event *e)
{
    struct custos_store_conn *conn = NULL;
    struct custos_erasure_row er;
    struct ret_ctx rc;
    enum custos_err err;

    memset(&rc, 0, sizeof(rc));
    *fields_out = NULL;
    if ((err = custos_fields_mask(v->schema, fields, &rc.want)))
        return err;
    if (c->kind == CUSTOS_KIND_CUSTOMER || !any_retention_role(v, c))
        return custos_err_set(CUSTOS_ERR_FORBIDDEN, "legal-retention reads are for the role the schema names");
    if (!c->system &&
        (err = custos_rate_check(v, c->principal,
                                 custos_policy_rate(v->policy, c->roles, CUSTOS_OP_SUBJECT_READ, "legal-retention"))))
        return err;
    if ((err = v->ops->acquire(v->store, &conn)))
        return err;
    err = v->ops->erasure_get(conn, id, &er);
    if (err == CUSTOS_ERR_NOTFOUND) {
        v->ops->release(v->store, conn);
        return custos_err_set(CUSTOS_ERR_FORBIDDEN,
                              "purpose legal-retention only reaches values kept after an erasure");
    }
    rc.v = v;
    rc.today = day_of((int64_t)custos_now(v));
    rc.c = c;
    rc.conn = conn;
    rc.id = id;
    rc.fields = json_object();
    if (!err && !rc.fields)
        err = CUSTOS_ERR_NOMEM;
    if (!err)
        err = v->ops->retained_scan_subject(conn, id, ret_one, &rc);
    if (!err)
        err = rc.rc;
    v->ops->release(v->store, conn);
    if (!err && !rc.rows)
        err = custos_err_set(CUSTOS_ERR_GONE, "subject was erased and nothing of it is retained");
    if (!err && !rc.allowed_any)
        err = custos_err_set(CUSTOS_ERR_FORBIDDEN, "no retained value of this subject is readable by this principal");
    if (err) {
        json_decref(rc.fields);
        return err;
    }
    {
        /* the event outlives this frame: its list must too (names point into the schema) */
        static _Thread_local const char *paths[CUSTOS_SCHEMA_MAX_FIELDS];

        memcpy(paths, rc.paths, rc.npaths * sizeof(paths[0]));
        e->fields = paths;
        e->nfields = rc.npaths;
    }
    *fields_out = rc.fields;
    return CUSTOS_OK;
}

enum custos_err custos_retention_expire(struct custos_vault *v, uint64_t *keys, uint64_t *values)
{
    struct custos_store_conn *conn = NULL;
    struct custos_caller sys;
    struct custos_event e;
    enum custos_err rc;

    *keys = *values = 0;
    if ((rc = v->ops->acquire(v->store, &conn)))
        return rc;
    custos_lock_writes(v, conn);
    if (!(rc = v->ops->begin(conn, CUSTOS_PLANE_CONTROL))) {
        if ((rc = v->ops->retention_expire(conn, day_of((int64_t)custos_now(v)), keys, values)) ||
            (rc = v->ops->commit(conn, CUSTOS_PLANE_CONTROL)))
            v->ops->rollback(conn, CUSTOS_PLANE_CONTROL);
    }
    custos_unlock_writes(v);
    v->ops->release(v->store, conn);
    if (rc || !*keys)
        return rc;
    atomic_store(&v->compact_soon, 1);
    custos_caller_system(&sys);
    custos_event_init(&e, "retention.expire", &sys);
    e.count = (int64_t)*values;
    return custos_audit_outcome(v, &e, CUSTOS_OK);
}

/* ---- erasures recorded in the ledger ------------------------------------------------------- */

/* The secret rotations found by the ledger's scan (custos_erasures_from_ledger), in log order,
   replayed once the scan is done: a principal's last one says which secret it should hold. */
struct rotation {
    char id[CUSTOS_PRINCIPAL_ID_MAX + 1];
    char sid[17];
    int revoke;
};

struct rotations {
    struct rotation *r;
    size_t n, cap;
};

/* Note a principal.rotate entry: an ok one (not a replay's own) is appended; an error one names
   a secret whose ok entry went in before its commit failed, and takes that entry back. */
static enum custos_err rotation_note(struct rotations *rs, json_t *ev)
{
    const char *target = json_string_value(json_object_get(ev, "target")),
               *result = json_string_value(json_object_get(ev, "result")), *sp;
    size_t idlen, i;

    if (!target || !result || !(sp = strstr(target, " secret ")))
        return CUSTOS_OK;
    idlen = (size_t)(sp - target);
    sp += 8;
    /* "<id> secret <16 hex digits>", then " for N days" (entries since secret expiry) */
    if (idlen == 0 || idlen > CUSTOS_PRINCIPAL_ID_MAX || strspn(sp, "0123456789abcdef") != 16 ||
        (sp[16] != '\0' && sp[16] != ' '))
        return CUSTOS_OK;
    if (strcmp(result, "ok") != 0) {
        for (i = rs->n; i-- > 0;)
            if (memcmp(rs->r[i].sid, sp, 16) == 0 && strlen(rs->r[i].id) == idlen &&
                memcmp(rs->r[i].id, target, idlen) == 0) {
                memmove(rs->r + i, rs->r + i + 1, (rs->n - i - 1) * sizeof(*rs->r));
                rs->n--;
                break;
            }
        return CUSTOS_OK;
    }
    if (json_object_get(ev, "reason"))
        return CUSTOS_OK; /* "recovered": a withdrawal a replay wrote */
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 8;
        struct rotation *r = realloc(rs->r, cap * sizeof(*r));

        if (!r)
            return CUSTOS_ERR_NOMEM;
        rs->r = r;
        rs->cap = cap;
    }
    memcpy(rs->r[rs->n].id, target, idlen);
    rs->r[rs->n].id[idlen] = '\0';
    memcpy(rs->r[rs->n].sid, sp, 16);
    rs->r[rs->n].sid[16] = '\0';
    rs->r[rs->n].revoke = json_is_integer(json_object_get(ev, "count"));
    rs->n++;
    return CUSTOS_OK;
}

/* Replay each principal's rotations noted (custos_principal_rotate_replay): a principal whose row
   does not hold its last rotation's secret (a rolled-back control plane, or a crash between a
   rotation's entry and its commit) has its secret withdrawn, and its tokens revoked again if a
   rotation it missed revoked them; each withdrawal is a ledger entry. */
static enum custos_err rotations_replay(struct custos_vault *v, struct custos_store_conn *conn,
                                        const struct rotations *rs)
{
    char (*sids)[17] = NULL;
    int *revokes = NULL;
    enum custos_err rc = CUSTOS_OK;
    size_t i, k, n;

    if (rs->n == 0)
        return CUSTOS_OK;
    sids = malloc(rs->n * sizeof(*sids));
    revokes = malloc(rs->n * sizeof(*revokes));
    if (!sids || !revokes)
        rc = CUSTOS_ERR_NOMEM;
    for (i = 0; i < rs->n && !rc; i++) {
        struct custos_caller sys;
        struct custos_event e;
        char target[96];
        int withdrawn = 0;

        for (k = 0; k < i && strcmp(rs->r[k].id, rs->r[i].id) != 0; k++)
            ;
        if (k < i)
            continue; /* this principal's were replayed with its first */
        for (n = 0, k = i; k < rs->n; k++)
            if (strcmp(rs->r[k].id, rs->r[i].id) == 0) {
                memcpy(sids[n], rs->r[k].sid, 17);
                revokes[n++] = rs->r[k].revoke;
            }
        if ((rc = custos_principal_rotate_replay(v, conn, rs->r[i].id, (const char(*)[17])sids, revokes, n,
                                                 &withdrawn)) ||
            !withdrawn)
            continue;
        custos_caller_system(&sys);
        custos_event_init(&e, "principal.rotate", &sys);
        e.ok_reason = "recovered";
        snprintf(target, sizeof(target), "%s secret withdrawn", rs->r[i].id);
        e.target = target;
        rc = custos_audit_durable(v, &e, NULL);
    }
    free(sids);
    free(revokes);
    return rc;
}

enum custos_err custos_erasures_from_ledger(struct custos_vault *v, uint64_t *applied, int at_open)
{
    static const char needle[] = "\"action\":\"subject.erase\",\"result\":\"ok\"",
                      disable[] = "\"action\":\"principal.disable\",\"result\":\"ok\"",
                      rotate[] = "\"action\":\"principal.rotate\",";
    struct rotations rots = {NULL, 0, 0};
    struct custos_store_conn *conn = NULL;
    struct custos_buf mark;
    uint64_t from = 0, size = custos_ledger_size(v->ledger), i;
    uint8_t *buf = NULL, mb[8];
    enum custos_err rc;

    *applied = 0;
    custos_buf_init(&mark, 64);
    if ((rc = v->ops->acquire(v->store, &conn)))
        return rc;
    rc = v->ops->meta_get(conn, "erasures_scanned_through", &mark);
    if (rc == CUSTOS_OK && mark.len == 8)
        from = custos_get_be64(mark.p);
    else if (rc == CUSTOS_ERR_NOTFOUND)
        rc = CUSTOS_OK;
    if (rc)
        goto done;
    if (from > size) {
        /* The ledger is shorter than when the control plane last read it: rolled back or replaced
           by an older copy.  Say so in the ledger itself (witnesses holding a later checkpoint
           report it too), and rescan it all. */
        struct custos_caller sys;
        struct custos_event ev;

        custos_caller_system(&sys);
        custos_event_init(&ev, "ledger.rollback", &sys);
        ev.result = CUSTOS_RESULT_ERROR;
        ev.reason = "ledger_shorter";
        ev.count = (int64_t)(from - size);
        v->ledger_missing = from - size;
        if ((rc = custos_audit_durable(v, &ev, NULL)))
            goto done;
        from = 0;
        /* the ledger is the older copy: every rotation in it is older than the control plane's
           rows, which are the ones to keep */
        at_open = 0;
    }
    buf = malloc(CUSTOS_LEDGER_ENTRY_MAX);
    if (!buf) {
        rc = CUSTOS_ERR_NOMEM;
        goto done;
    }
    for (i = from; i < size && !rc; i++) {
        struct custos_erasure_row er;
        enum custos_err got;
        const char *hex;
        json_t *ev;
        size_t len = 0;
        uint8_t id[16];

        if ((rc = custos_ledger_read(v->ledger, i, buf, CUSTOS_LEDGER_ENTRY_MAX, &len)))
            break;
        if (len >= sizeof(disable) && memmem(buf, len, disable, sizeof(disable) - 1)) {
            const char *who;

            ev = json_loadb((const char *)buf, len, 0, NULL);
            if ((who = json_string_value(json_object_get(ev, "target"))))
                rc = custos_principal_disable_replay(v, conn, who, json_integer_value(json_object_get(ev, "time")));
            json_decref(ev);
            continue;
        }
        if (at_open && len >= sizeof(rotate) && memmem(buf, len, rotate, sizeof(rotate) - 1)) {
            ev = json_loadb((const char *)buf, len, 0, NULL);
            rc = rotation_note(&rots, ev);
            json_decref(ev);
            continue;
        }
        if (len < sizeof(needle) || !memmem(buf, len, needle, sizeof(needle) - 1))
            continue;
        ev = json_loadb((const char *)buf, len, 0, NULL);
        hex = json_string_value(json_object_get(ev, "subject"));
        if (!hex || custos_id_parse(id, hex) != CUSTOS_OK) {
            json_decref(ev);
            continue;
        }
        got = v->ops->erasure_get(conn, id, &er);
        if (got == CUSTOS_ERR_NOTFOUND) {
            memset(&er, 0, sizeof(er));
            memcpy(er.id, id, 16);
            er.erased_at = json_integer_value(json_object_get(ev, "time"));
            er.ledger_index = (int64_t)i;
            if (!(rc = v->ops->begin(conn, CUSTOS_PLANE_CONTROL))) {
                /* as the erasure did: the key goes, and the subject's customer tokens with it */
                if ((rc = v->ops->erasure_put(conn, &er)) || (rc = v->ops->key_delete(conn, id, 0)) ||
                    (rc = v->ops->token_revoke_scope(conn, id, (int64_t)custos_now(v), custos_token_sign, v)) ||
                    (rc = v->ops->commit(conn, CUSTOS_PLANE_CONTROL)))
                    v->ops->rollback(conn, CUSTOS_PLANE_CONTROL);
            }
            if (!rc)
                (*applied)++;
        } else if (got == CUSTOS_OK && er.ledger_index < 0) {
            /* The erasure's own entry reached the ledger and the process stopped before the
               tombstone learned its index (step 4): that entry is the erasure's record, naming
               who asked; reapply_one must not write a second one as the local operator. */
            er.ledger_index = (int64_t)i;
            if (!(rc = v->ops->begin(conn, CUSTOS_PLANE_CONTROL)) &&
                ((rc = v->ops->erasure_put(conn, &er)) || (rc = v->ops->commit(conn, CUSTOS_PLANE_CONTROL))))
                v->ops->rollback(conn, CUSTOS_PLANE_CONTROL);
        }
        json_decref(ev);
    }
    if (*applied)
        custos_auth_invalidate(v); /* revoked tokens leave the cache */
    if (!rc)
        rc = rotations_replay(v, conn, &rots);
    if (!rc) {
        custos_put_be64(mb, size);
        rc = v->ops->meta_put(conn, "erasures_scanned_through", mb, sizeof(mb));
    }
done:
    free(rots.r);
    free(buf);
    custos_buf_release(&mark);
    v->ops->release(v->store, conn);
    custos_err_clear();
    return rc;
}

enum custos_err custos_erasures_finish(struct custos_vault *v)
{
    uint64_t at_open;
    enum custos_err rc;

    /* cleared as it is read: an erasure failing while this runs sets it again */
    if (!atomic_exchange(&v->erasures_unfinished, 0))
        return CUSTOS_OK;
    /* the write lock: no erasure or re-key is half-way while the tombstones and key generations
       are re-applied (a re-key's new generation must not be taken for a stale one) */
    custos_lock_writes(v, NULL);
    at_open = v->reapplied_at_open;
    rc = custos_erasures_reapply(v, NULL, 0);
    v->reapplied_at_open = at_open; /* that count is the open's (restore reports it) */
    custos_unlock_writes(v);
    if (rc)
        atomic_store(&v->erasures_unfinished, 1); /* the ledger or the store still fails: the next tick retries */
    else
        atomic_store(&v->compact_soon, 1);
    return rc;
}

enum custos_err custos_erasure_mark(struct custos_vault *v)
{
    struct custos_store_conn *conn = NULL;
    uint8_t mb[8];
    enum custos_err rc;

    /* Every erase entry in the ledger was preceded by its tombstone (erase step 2 before 3),
       so the live control plane covers the whole ledger as it stands, but a tombstone may not
       know its entry yet: between steps 3 and 4 (hence the write lock, which an erasure holds
       throughout), or after a step 4 that failed (erasures_unfinished, set under that lock).
       The mark stays where it is until those are finished: the next scan finds their entries
       (custos_erasures_from_ledger), instead of finishing them with a second entry. */
    if ((rc = v->ops->acquire(v->store, &conn)))
        return rc;
    custos_lock_writes(v, conn);
    if (!atomic_load(&v->erasures_unfinished)) {
        custos_put_be64(mb, custos_ledger_size(v->ledger));
        rc = v->ops->meta_put(conn, "erasures_scanned_through", mb, sizeof(mb));
    }
    custos_unlock_writes(v);
    v->ops->release(v->store, conn);
    return rc;
}

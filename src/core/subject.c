/*
 * subject.c - subject records: create, read, update, search, erase, mint.
 *
 * Record format (data plane, docs/format.md "Sealed records"):
 *   "CSR1" | gen (u32 BE) | count (u16 BE) | count x leaf
 *   leaf = path length (u16 BE) | path | sealed length (u32 BE) | sealed
 *   sealed = nonce (24) | XChaCha20-Poly1305(tag byte || value) | tag (16)
 *   associated data = "custos/field/v1" || subject id (16) || path
 * so a sealed value moved to another subject or another path fails to open.
 * tag byte: 's' string/date, 'i' integer (decimal text), 'b' boolean.
 * The record's subject key is generation `gen` of the subject's keys in
 * the control plane, wrapped by a master key version.
 *
 * Erasure: tombstone + key destruction in one control-plane transaction
 * (the point of no return), then the ledger entry, then the data-plane
 * record and its blind-index entries.  A crash anywhere in between is
 * finished by custos_erasures_reapply() at the next start.
 *
 * Must never: return or log a value of a hidden field, decrypt a hidden
 * field at all, let data leave before its audit event is durable, keep an
 * unwrapped key outside secure scratch memory.
 */
#include "core/vault_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

#include "custos/banned.h"

#define RECORD_MAX (4u << 20)
#define FIELD_AD_TAG "custos/field/v1"
#define SEARCH_MAX_RESULTS 100
#define ITEM_INDEX_MAX 10000 /* a stored item index past this is corruption (schemas allow 1,000 items) */

static void put_be16(uint8_t *p, uint16_t x)
{
    p[0] = (uint8_t)(x >> 8);
    p[1] = (uint8_t)x;
}

static void put_be32(uint8_t *p, uint32_t x)
{
    p[0] = (uint8_t)(x >> 24);
    p[1] = (uint8_t)(x >> 16);
    p[2] = (uint8_t)(x >> 8);
    p[3] = (uint8_t)x;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- record encoding ----------------------------------------------------------------------- */

void custos_record_release(struct custos_record *r)
{
    free(r->leaf);
    r->leaf = NULL;
    r->n = 0;
}

enum custos_err custos_record_parse(const uint8_t *p, size_t n, struct custos_record *r)
{
    size_t off = 10, i, count;

    memset(r, 0, sizeof(*r));
    if (n < 10 || memcmp(p, "CSR1", 4) != 0)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "stored record is corrupt");
    r->gen = get_be32(p + 4);
    count = (size_t)p[8] << 8 | p[9];
    r->leaf = calloc(count ? count : 1, sizeof(*r->leaf));
    if (!r->leaf)
        return CUSTOS_ERR_NOMEM;
    for (i = 0; i < count; i++) {
        struct custos_sealed_leaf *l = &r->leaf[i];

        if (n - off < 2)
            goto bad;
        l->plen = (size_t)p[off] << 8 | p[off + 1];
        off += 2;
        if (l->plen == 0 || l->plen >= CUSTOS_PATH_MAX || n - off < l->plen + 4)
            goto bad;
        l->path = (const char *)p + off;
        off += l->plen;
        l->slen = get_be32(p + off);
        off += 4;
        if (l->slen < CUSTOS_SEAL_OVERHEAD + 1 || n - off < l->slen)
            goto bad;
        l->sealed = p + off;
        off += l->slen;
    }
    if (off != n)
        goto bad;
    r->n = count;
    return CUSTOS_OK;
bad:
    custos_record_release(r);
    return custos_err_set(CUSTOS_ERR_CORRUPT, "stored record is corrupt");
}

static size_t custos_field_ad(uint8_t *ad, const uint8_t id[16], const char *path, size_t plen)
{
    size_t t = sizeof(FIELD_AD_TAG) - 1;

    memcpy(ad, FIELD_AD_TAG, t);
    memcpy(ad + t, id, 16);
    memcpy(ad + t + 16, path, plen);
    return t + 16 + plen;
}

/* Start a record in b; finish with custos_record_finish(b, count). */
enum custos_err custos_record_begin(struct custos_buf *b, uint32_t gen)
{
    uint8_t h[10] = {'C', 'S', 'R', '1'};

    put_be32(h + 4, gen);
    return custos_buf_add(b, h, sizeof(h));
}

enum custos_err custos_record_finish(struct custos_buf *b, size_t count)
{
    if (count > 0xffff)
        return custos_err_set(CUSTOS_ERR_INVALID, "record has too many values");
    put_be16(b->p + 8, (uint16_t)count);
    return CUSTOS_OK;
}

enum custos_err custos_record_add_sealed(struct custos_buf *b, const char *path, size_t plen, const uint8_t *sealed,
                                         size_t slen)
{
    uint8_t h[4];
    enum custos_err rc;

    put_be16(h, (uint16_t)plen);
    if ((rc = custos_buf_add(b, h, 2)) || (rc = custos_buf_add(b, path, plen)))
        return rc;
    put_be32(h, (uint32_t)slen);
    if ((rc = custos_buf_add(b, h, 4)))
        return rc;
    return custos_buf_add(b, sealed, slen);
}

/* Seal one value (tag + bytes) under key, or the run's key when run is given (nonce then unused),
   and append it. */
static enum custos_err add_value(struct custos_buf *b, const uint8_t id[16], const uint8_t *key, struct custos_run *run,
                                 const char *path, char tag, const char *val, size_t len,
                                 const uint8_t nonce[CUSTOS_NONCE_BYTES])
{
    uint8_t ad[sizeof(FIELD_AD_TAG) + 16 + CUSTOS_PATH_MAX], h[4];
    size_t plen = strlen(path), adlen, slen = 1 + len + CUSTOS_SEAL_OVERHEAD;
    uint8_t *pt;
    enum custos_err rc;

    if (len > 4096)
        return custos_err_set(CUSTOS_ERR_INVALID, "field '%s' is too long", path);
    put_be16(h, (uint16_t)plen);
    if ((rc = custos_buf_add(b, h, 2)) || (rc = custos_buf_add(b, path, plen)))
        return rc;
    put_be32(h, (uint32_t)slen);
    if ((rc = custos_buf_add(b, h, 4)) || (rc = custos_buf_reserve(b, slen)))
        return rc;
    /* the plaintext is assembled in the output area itself, then sealed in place */
    pt = b->p + b->len + CUSTOS_NONCE_BYTES;
    pt[0] = (uint8_t)tag;
    memcpy(pt + 1, val, len);
    adlen = custos_field_ad(ad, id, path, plen);
    if (run)
        custos_run_seal(run, b->p + b->len, pt, 1 + len, ad, adlen);
    else
        custos_seal(b->p + b->len, nonce, key, pt, 1 + len, ad, adlen);
    b->len += slen;
    return CUSTOS_OK;
}

enum custos_err custos_record_add_value(struct custos_buf *b, const uint8_t id[16], const uint8_t *key,
                                        const char *path, char tag, const char *val, size_t len,
                                        const uint8_t nonce[CUSTOS_NONCE_BYTES])
{
    return add_value(b, id, key, NULL, path, tag, val, len, nonce);
}

enum custos_err custos_record_add_value_run(struct custos_buf *b, const uint8_t id[16], struct custos_run *run,
                                            const char *path, char tag, const char *val, size_t len)
{
    return add_value(b, id, NULL, run, path, tag, val, len, NULL);
}

/* Open one sealed leaf into out (cap >= slen); *tag and value bytes. */
uint8_t *custos_plain_scratch(void)
{
    struct custos_buf *b = custos_buf_thread(CUSTOS_TLS_PLAIN, CUSTOS_PLAIN_CAP);

    return b && custos_buf_reserve(b, CUSTOS_PLAIN_CAP) == CUSTOS_OK ? b->p : NULL;
}

static enum custos_err leaf_open(const uint8_t id[16], const uint8_t *key, struct custos_run *run,
                                 const struct custos_sealed_leaf *l, uint8_t *out, char *tag, size_t *len)
{
    uint8_t ad[sizeof(FIELD_AD_TAG) + 16 + CUSTOS_PATH_MAX];
    size_t adlen = custos_field_ad(ad, id, l->path, l->plen);

    if (l->slen < CUSTOS_SEAL_OVERHEAD + 1 || l->slen - CUSTOS_SEAL_OVERHEAD + 1 > CUSTOS_PLAIN_CAP)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "stored record is corrupt");
    if (run ? custos_run_open(run, out, l->sealed, l->slen, ad, adlen)
            : custos_open(out, key, l->sealed, l->slen, ad, adlen))
        return custos_err_set(CUSTOS_ERR_CRYPTO, "a stored value failed to open");
    *tag = (char)out[0];
    *len = l->slen - CUSTOS_SEAL_OVERHEAD - 1;
    memmove(out, out + 1, *len);
    out[*len] = 0;
    return CUSTOS_OK;
}

enum custos_err custos_leaf_open(const uint8_t id[16], const uint8_t *key, const struct custos_sealed_leaf *l,
                                 uint8_t *out, char *tag, size_t *len)
{
    return leaf_open(id, key, NULL, l, out, tag, len);
}

enum custos_err custos_leaf_open_run(const uint8_t id[16], struct custos_run *run, const struct custos_sealed_leaf *l,
                                     uint8_t *out, char *tag, size_t *len)
{
    return leaf_open(id, NULL, run, l, out, tag, len);
}

/* ---- paths --------------------------------------------------------------------------------- */

int custos_path_split(const char *p, size_t n, struct custos_path_parts *pp)
{
    size_t i = 0, t;
    char *end;

    memset(pp, 0, sizeof(*pp));
    while (i < n && p[i] != '[')
        i++;
    if (i == 0 || i > CUSTOS_FIELD_NAME_MAX)
        return -1;
    memcpy(pp->top, p, i);
    if (i == n)
        return 0;
    errno = 0;
    pp->index = strtoul(p + i + 1, &end, 10);
    if (errno || end > p + n - 2 || *end != ']' || end[1] != '.')
        return -1;
    t = (size_t)(end + 2 - p);
    if (n - t == 0 || n - t > CUSTOS_FIELD_NAME_MAX)
        return -1;
    memcpy(pp->item, p + t, n - t);
    pp->indexed = 1;
    return 0;
}

const struct custos_field *custos_leaf_field(const struct custos_schema *s, const struct custos_path_parts *pp,
                                             const struct custos_field **top)
{
    const struct custos_field *f = custos_schema_field(s, pp->top, strlen(pp->top));
    size_t i;

    *top = f;
    if (!f || !pp->indexed)
        return f;
    for (i = 0; i < f->nitems; i++)
        if (strcmp(f->items[i].name, pp->item) == 0)
            return &f->items[i];
    return NULL;
}

/* ---- keys ---------------------------------------------------------------------------------- */

static enum custos_err key_unwrap(struct custos_vault *v, struct custos_store_conn *c, const uint8_t id[16],
                                  uint32_t gen, uint8_t *key)
{
    uint8_t w[CUSTOS_WRAPPED_BYTES], ad[64];
    size_t wlen = 0;
    uint32_t kv = 0;
    struct custos_kek kek;
    uint64_t epoch;
    enum custos_err rc;
    int tries = 0, bad;

    if (custos_keycache_get(v->keys, id, gen, key))
        return CUSTOS_OK;
    epoch = custos_keycache_epoch(v->keys);
    do {
        if ((rc = v->ops->key_get(c, id, gen, &kv, w, sizeof(w), &wlen)))
            return rc;
        if (wlen != CUSTOS_WRAPPED_BYTES)
            return custos_err_set(CUSTOS_ERR_CORRUPT, "stored subject key is corrupt");
        /* a version gone since the row was read: a rotation re-wrapped the key meanwhile (and
           flushed every older snapshot first), so reading it again finds the new wrap */
    } while ((rc = custos_kek_version(v, kv, &kek)) && ++tries < 2);
    if (rc)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "subject key needs master key version %u, which is missing", kv);
    bad = custos_unwrap(key, kek.key, w, ad, custos_ad_subject_key(ad, id, gen, kv));
    custos_kek_release(v, &kek);
    if (bad)
        return custos_err_set(CUSTOS_ERR_CRYPTO, "subject key failed to open");
    custos_keycache_put(v->keys, epoch, id, gen, key);
    return CUSTOS_OK;
}

/* A new key generation, wrapped under the current master version and committed in a control
   transaction of its own (the version held until the commit: see custos_kek_current). */
static enum custos_err key_store_new(struct custos_vault *v, struct custos_store_conn *c, const uint8_t id[16],
                                     uint32_t gen, const uint8_t *key)
{
    uint8_t w[CUSTOS_WRAPPED_BYTES], ad[64];
    struct custos_kek kek;
    enum custos_err rc;

    if ((rc = custos_kek_current(v, &kek)))
        return rc;
    custos_wrap(w, kek.key, key, ad, custos_ad_subject_key(ad, id, gen, kek.kv));
    if ((rc = v->ops->begin(c, CUSTOS_PLANE_CONTROL)) == CUSTOS_OK &&
        ((rc = v->ops->key_put(c, id, gen, kek.kv, w, sizeof(w))) || (rc = v->ops->commit(c, CUSTOS_PLANE_CONTROL))))
        v->ops->rollback(c, CUSTOS_PLANE_CONTROL);
    custos_kek_release(v, &kek);
    return rc;
}

/* Is the subject erased?  Maps a missing record/key to GONE or NOTFOUND. */
enum custos_err custos_subject_missing(struct custos_vault *v, struct custos_store_conn *c, const uint8_t id[16])
{
    struct custos_erasure_row e;
    enum custos_err rc = v->ops->erasure_get(c, id, &e);

    if (rc == CUSTOS_OK)
        return custos_err_set(CUSTOS_ERR_GONE, "subject was erased");
    if (rc == CUSTOS_ERR_NOTFOUND)
        return custos_err_set(CUSTOS_ERR_NOTFOUND, "no such subject");
    return rc;
}

/* Load a subject's record and unwrap its key into `key` (secure scratch). */
enum custos_err custos_record_load(struct custos_vault *v, struct custos_store_conn *c, const uint8_t id[16],
                            struct custos_buf *blob, struct custos_record *r, uint8_t *key)
{
    enum custos_err rc = v->ops->subject_get(c, id, blob);

    if (rc == CUSTOS_ERR_NOTFOUND)
        return custos_subject_missing(v, c, id);
    if (rc)
        return rc;
    if ((rc = custos_record_parse(blob->p, blob->len, r)))
        return rc;
    rc = key_unwrap(v, c, id, r->gen, key);
    if (rc == CUSTOS_ERR_NOTFOUND) {
        rc = custos_subject_missing(v, c, id);
        if (rc == CUSTOS_ERR_NOTFOUND)
            rc = custos_err_set(CUSTOS_ERR_CORRUPT, "subject record has no key");
    }
    if (rc)
        custos_record_release(r);
    return rc;
}

/* ---- blind index --------------------------------------------------------------------------- */

static enum custos_err blind_hash(struct custos_vault *v, const struct custos_field *f, const char *val, size_t len,
                                  uint8_t out[32])
{
    char norm[CUSTOS_SCHEMA_MAX_LENGTH + 2]; /* any stored value; a longer search value is refused */
    size_t nlen;
    crypto_generichash_state st;
    enum custos_err rc;

    if ((rc = custos_normalise(f, val, len, norm, sizeof(norm), &nlen)))
        return rc;
    crypto_generichash_init(&st, v->sec->blind_key, 32, 32);
    crypto_generichash_update(&st, (const uint8_t *)f->name, strlen(f->name) + 1);
    crypto_generichash_update(&st, (const uint8_t *)norm, nlen);
    crypto_generichash_final(&st, out, 32); /* which wipes st */
    sodium_memzero(norm, nlen + 1);         /* custos_normalise writes nothing past its NUL */
    return CUSTOS_OK;
}

static uint32_t field_no(const struct custos_vault *v, const struct custos_field *top)
{
    return (uint32_t)(top - v->schema->fields);
}

static int leaf_searchable(const struct custos_field *f, const struct custos_field *top)
{
    return f == top && f->searchable;
}

/* ---- blind-index rebuild (after a restore) ------------------------------------------------- */

/*
 * Backups carry no blind data, so a restored data plane is marked for a rebuild, which every open
 * finishes (custos_vault_open, after the erasures are re-applied).  The index is computed again
 * from the records whose keys still exist: an erased subject has no key, so its values cannot be
 * indexed again by anyone.  A record that cannot be opened (key gone after a re-key newer than
 * the backup, a damaged value) is left unindexed: no search finds it, as no read opens it.
 * Records are read in groups of v->rebuild_group (8,192 by default); each group's rows (their new
 * lists of entries), its entries staged apart and the marker's advance commit together, so memory
 * stays flat and a crash resumes after the last group; the staged entries go into the index at the
 * end, sorted, in one transaction with the marker's removal (store.h, blind_rebuild_finish).
 * Inserted group by group where their random hashes fall, each commit rewrote nearly every page
 * of the index, so each commit cost more as the index grew: a 1,000,000-subject restore took
 * 57-59 s that way, 27-28 s staged (docs/benchmarks.md, "Notes").
 */

struct rebuild_item {
    uint8_t id[16];
    size_t nblind;
    struct custos_blind blind[CUSTOS_SCHEMA_MAX_FIELDS];
};

struct rebuild_ctx {
    struct custos_vault *v;
    struct custos_store_conn *c;
    struct rebuild_item *items;
    size_t n;
    int64_t after;
    enum custos_err rc;
};

static int rebuild_one(void *ctx, int64_t cursor, const uint8_t id[16], const uint8_t *rec, size_t len)
{
    struct rebuild_ctx *rb = ctx;
    struct custos_vault *v = rb->v;
    struct rebuild_item *it = &rb->items[rb->n];
    struct custos_record r = {0};
    uint8_t *key = custos_scratch(), *pt = custos_plain_scratch();
    enum custos_err rc;
    size_t i;

    if (!key || !pt) {
        rb->rc = CUSTOS_ERR_NOMEM;
        return 1;
    }
    memcpy(it->id, id, 16);
    it->nblind = 0;
    rb->after = cursor;
    rb->n++;
    if (custos_record_parse(rec, len, &r)) {
        custos_err_clear();
        return 0; /* unreadable: left unindexed */
    }
    rc = key_unwrap(v, rb->c, id, r.gen, key);
    if (rc == CUSTOS_ERR_NOTFOUND || rc == CUSTOS_ERR_CRYPTO || rc == CUSTOS_ERR_CORRUPT) {
        custos_err_clear(); /* no key (erased, or re-keyed since the backup): nothing can be indexed */
        custos_record_release(&r);
        custos_scratch_wipe();
        return 0;
    }
    if (rc) {
        custos_record_release(&r);
        rb->rc = rc;
        return 1;
    }
    for (i = 0; i < r.n && it->nblind < CUSTOS_SCHEMA_MAX_FIELDS; i++) {
        const struct custos_sealed_leaf *l = &r.leaf[i];
        const struct custos_field *f, *top;
        struct custos_path_parts pp;
        size_t plen = 0;
        char tag = 0;

        if (custos_path_split(l->path, l->plen, &pp) || !(f = custos_leaf_field(v->schema, &pp, &top)) ||
            !leaf_searchable(f, top))
            continue;
        if (custos_leaf_open(id, key, l, pt, &tag, &plen) == CUSTOS_OK) {
            it->blind[it->nblind].field = field_no(v, top);
            if (blind_hash(v, f, (const char *)pt, plen, it->blind[it->nblind].hash) == CUSTOS_OK)
                it->nblind++;
            sodium_memzero(pt, plen + 1);
        }
        custos_err_clear();
    }
    custos_scratch_wipe();
    custos_record_release(&r);
    return 0;
}

enum custos_err custos_blind_rebuild(struct custos_vault *v, uint64_t *indexed)
{
    struct rebuild_ctx rb;
    enum custos_err rc;
    int pending = 0, resumed, cleared = 0;
    unsigned groups = 0;
    size_t i, used = 0;

    if (indexed)
        *indexed = 0;
    memset(&rb, 0, sizeof(rb));
    rb.v = v;
    if ((rc = v->ops->acquire(v->store, &rb.c)))
        return rc;
    if ((rc = v->ops->blind_rebuild_state(rb.c, &pending, &rb.after)) || !pending)
        goto done;
    /* blind hashes, not values: ordinary memory, wiped when done */
    if (!(rb.items = malloc(v->rebuild_group * sizeof(*rb.items)))) {
        rc = CUSTOS_ERR_NOMEM;
        goto done;
    }
    /* From the first record: the old index goes at once (entries of a layout that changed, of
       subjects gone since); resumed: entries of subjects past the marker may be in the index
       still (a rebuild begun by an older release wrote them there), so each is dropped first. */
    resumed = rb.after != 0;
    for (;;) {
        rb.n = 0;
        rb.rc = CUSTOS_OK;
        rc = v->ops->blind_rebuild_scan(rb.c, rb.after, v->rebuild_group, rebuild_one, &rb);
        used = rb.n > used ? rb.n : used;
        if (rc || (rc = rb.rc))
            break;
        if (rb.n == 0 && (resumed || cleared))
            break;
        if ((rc = v->ops->begin(rb.c, CUSTOS_PLANE_DATA)))
            break;
        if (!resumed && !cleared)
            rc = v->ops->blind_rebuild_clear(rb.c);
        for (i = 0; i < rb.n && !rc; i++) {
            rc = v->ops->blind_rebuild_put(rb.c, rb.items[i].id, rb.items[i].blind, rb.items[i].nblind, resumed);
            if (!rc && indexed && rb.items[i].nblind)
                (*indexed)++;
        }
        if (!rc && rb.n)
            rc = v->ops->blind_rebuild_mark(rb.c, rb.after);
        if (rc || (rc = v->ops->commit(rb.c, CUSTOS_PLANE_DATA))) {
            v->ops->rollback(rb.c, CUSTOS_PLANE_DATA);
            break;
        }
        cleared = 1;
        if (v->rebuild_stop_after && ++groups == v->rebuild_stop_after) {
            rc = custos_err_set(CUSTOS_ERR_IO, "blind-index rebuild stopped after %u groups (test)", groups);
            break;
        }
        if (rb.n == 0)
            break;
    }
    if (!rc)
        rc = v->ops->blind_rebuild_finish(rb.c);
done:
    if (rb.items) {
        sodium_memzero(rb.items, used * sizeof(*rb.items)); /* what was written; the rest never was */
        free(rb.items);
    }
    v->ops->release(v->store, rb.c);
    return rc;
}

/* ---- sealing a new record from leaves ------------------------------------------------------- */

static void leaf_bytes(const struct custos_leaf *l, char *num, size_t ncap, const char **val, size_t *len)
{
    if (l->tag == 'i') {
        int k = snprintf(num, ncap, "%lld", l->ival);

        *val = num;
        *len = (size_t)k;
    } else {
        *val = l->val;
        *len = l->len;
    }
}

/* Seal leaves into b (already begun); add blind entries for searchable ones. */
static enum custos_err seal_leaves(struct custos_vault *v, const uint8_t id[16], struct custos_run *run,
                                   const struct custos_leaves *leaves, struct custos_buf *b,
                                   struct custos_blind *blind, size_t *nblind, size_t blind_cap)
{
    enum custos_err rc = CUSTOS_OK;
    size_t i;

    for (i = 0; i < leaves->n && !rc; i++) {
        const struct custos_leaf *l = &leaves->v[i];
        char num[24];
        const char *val;
        size_t len;

        leaf_bytes(l, num, sizeof(num), &val, &len);
        rc = custos_record_add_value_run(b, id, run, l->path, l->tag, val, len);
        if (!rc && leaf_searchable(l->field, l->top) && *nblind < blind_cap) {
            blind[*nblind].field = field_no(v, l->top);
            rc = blind_hash(v, l->field, val, len, blind[*nblind].hash);
            (*nblind)++;
        }
    }
    return rc;
}

enum custos_err custos_subject_seal_new(struct custos_vault *v, const struct custos_kek *kek,
                                        const struct custos_leaves *leaves, uint8_t id[16],
                                        uint8_t wrapped[CUSTOS_WRAPPED_BYTES], struct custos_buf *b,
                                        struct custos_blind *blind, size_t *nblind)
{
    uint8_t *key = custos_scratch(), ad[64];
    struct custos_run run;
    enum custos_err rc;

    *nblind = 0;
    if (!key)
        return CUSTOS_ERR_NOMEM;
    if (!kek->key || !kek->wrap)
        return CUSTOS_ERR_INTERNAL;
    custos_id_random(id);
    custos_random(key, CUSTOS_KEY_BYTES);
    custos_run_begin(&run, key);
    if ((rc = custos_record_begin(b, 1)) ||
        (rc = seal_leaves(v, id, &run, leaves, b, blind, nblind, CUSTOS_SCHEMA_MAX_FIELDS)) ||
        (rc = custos_record_finish(b, leaves->n)))
        goto done;
    custos_wrap(wrapped, kek->key, key, ad, custos_ad_subject_key(ad, id, 1, kek->kv));
done:
    custos_run_end(&run);
    custos_scratch_wipe();
    return rc;
}

enum custos_err custos_subject_insert(struct custos_vault *v, struct custos_store_conn *c,
                                      const struct custos_leaves *leaves, uint8_t id[16], struct custos_event *e,
                                      int *audited)
{
    struct custos_buf *b = custos_buf_thread(CUSTOS_TLS_RECORD, RECORD_MAX);
    struct custos_blind blind[CUSTOS_SCHEMA_MAX_FIELDS];
    uint8_t wrapped[CUSTOS_WRAPPED_BYTES];
    struct custos_kek kek;
    size_t nblind = 0;
    enum custos_err rc;

    if (!b)
        return CUSTOS_ERR_NOMEM;
    if ((rc = custos_kek_current(v, &kek)))
        goto done;
    if ((rc = custos_subject_seal_new(v, &kek, leaves, id, wrapped, b, blind, &nblind))) {
        custos_kek_release(v, &kek);
        goto done;
    }
    e->subject = id; /* only now has it one: a failure before names no subject */
    /* key first: a crash before the record lands leaves an orphan key, never a keyless record */
    if ((rc = v->ops->begin(c, CUSTOS_PLANE_CONTROL)) == CUSTOS_OK &&
        ((rc = v->ops->key_put(c, id, 1, kek.kv, wrapped, sizeof(wrapped))) ||
         (rc = v->ops->commit(c, CUSTOS_PLANE_CONTROL))))
        v->ops->rollback(c, CUSTOS_PLANE_CONTROL);
    custos_kek_release(v, &kek); /* the wrap is committed (or gone): a rotation may switch now */
    if (rc)
        goto done;
    if ((rc = v->ops->begin(c, CUSTOS_PLANE_DATA)))
        goto done;
    if ((rc = v->ops->subject_put(c, id, b->p, b->len, blind, nblind, (int64_t)custos_now(v), 1)) ||
        (rc = custos_audit_in_txn(v, e, audited)) || (rc = v->ops->commit(c, CUSTOS_PLANE_DATA)))
        v->ops->rollback(c, CUSTOS_PLANE_DATA);
done:
    custos_buf_reset(b);
    return rc;
}

/* ---- helpers for operations ---------------------------------------------------------------- */

/* Distinct policy paths, for audit events: the schema's own strings (custos_field.ppath), one
   per field, so a pointer compares as the path.  A schema has at most CUSTOS_SCHEMA_MAX_PATHS
   of them, so the set cannot overflow; if it ever did, the operation fails rather than leave a
   path out of its event. */
struct pathset {
    const char *ptr[CUSTOS_SCHEMA_MAX_PATHS];
    size_t n;
};

/* Policy paths of values stored under fields the schema no longer has (export only): the
   strings live here until the next export on this thread, the pathset points at them. */
static _Thread_local char retired_paths[CUSTOS_SCHEMA_MAX_PATHS][2 * CUSTOS_FIELD_NAME_MAX + 2];
static _Thread_local size_t nretired_paths;

static enum custos_err pathset_add_retired(struct pathset *s, const struct custos_path_parts *pp)
{
    char p[sizeof(retired_paths[0])];
    size_t i;

    snprintf(p, sizeof(p), "%s%s%s", pp->top, pp->item[0] ? "." : "", pp->item);
    for (i = 0; i < s->n; i++)
        if (strcmp(s->ptr[i], p) == 0)
            return CUSTOS_OK;
    if (s->n == CUSTOS_SCHEMA_MAX_PATHS || nretired_paths == CUSTOS_SCHEMA_MAX_PATHS)
        return custos_err_set(CUSTOS_ERR_INTERNAL, "more field paths than an export can name");
    memcpy(retired_paths[nretired_paths], p, sizeof(p));
    s->ptr[s->n++] = retired_paths[nretired_paths++];
    return CUSTOS_OK;
}

static enum custos_err pathset_add(struct pathset *s, const struct custos_field *f)
{
    size_t i;

    for (i = 0; i < s->n; i++)
        if (s->ptr[i] == f->ppath)
            return CUSTOS_OK;
    if (s->n == CUSTOS_SCHEMA_MAX_PATHS)
        return custos_err_set(CUSTOS_ERR_INTERNAL, "more field paths than the schema has");
    s->ptr[s->n++] = f->ppath;
    return CUSTOS_OK;
}

enum custos_err custos_check_purpose(const char *purpose)
{
    if (!purpose || !*purpose)
        return custos_err_set(CUSTOS_ERR_INVALID, "missing purpose: every read names why it happens (?purpose=)");
    if (!custos_valid_name(purpose, CUSTOS_PURPOSE_MAX))
        return custos_err_set(CUSTOS_ERR_INVALID, "malformed purpose");
    return CUSTOS_OK;
}

/* A customer token only reaches its own subject. */
enum custos_err custos_check_scope(const struct custos_caller *c, const uint8_t id[16])
{
    if (c->scoped && sodium_memcmp(c->scope, id, 16) != 0)
        return custos_err_set(CUSTOS_ERR_FORBIDDEN, "this token is limited to another subject");
    if (c->kind == CUSTOS_KIND_CUSTOMER && !c->scoped)
        return custos_err_set(CUSTOS_ERR_FORBIDDEN, "customer token without a subject");
    return CUSTOS_OK;
}

/* Parse ?fields=a,b into a bitmask of top-level fields (0 = all). */
enum custos_err custos_fields_mask(const struct custos_schema *s, const char *fields, uint64_t *mask)
{
    const char *p = fields;

    *mask = 0;
    if (!fields)
        return CUSTOS_OK;
    if (!*fields)
        return custos_err_set(CUSTOS_ERR_INVALID, "fields is empty");
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        const struct custos_field *f = custos_schema_field(s, p, n);

        if (!f)
            return custos_err_set(CUSTOS_ERR_INVALID, "fields: unknown field '%.*s'", (int)(n > 48 ? 48 : n), p);
        *mask |= (uint64_t)1 << (f - s->fields);
        p += n;
        if (*p == ',' && !*++p)
            return custos_err_set(CUSTOS_ERR_INVALID, "fields: trailing comma");
    }
    return CUSTOS_OK;
}

/* Put a decoded value at its path inside the fields object. */
enum custos_err custos_place(json_t *fields, const struct custos_path_parts *pp, json_t *val)
{
    json_t *arr, *item;

    if (!val)
        return CUSTOS_ERR_NOMEM;
    if (!pp->indexed)
        return json_object_set_new(fields, pp->top, val) ? CUSTOS_ERR_NOMEM : CUSTOS_OK;
    arr = json_object_get(fields, pp->top);
    if (!arr) {
        arr = json_array();
        if (!arr || json_object_set_new(fields, pp->top, arr)) {
            json_decref(val);
            return CUSTOS_ERR_NOMEM;
        }
    }
    if (pp->index > ITEM_INDEX_MAX) {
        json_decref(val);
        return custos_err_set(CUSTOS_ERR_CORRUPT, "stored record is corrupt");
    }
    while (json_array_size(arr) <= pp->index)
        if (json_array_append_new(arr, json_object())) {
            json_decref(val);
            return CUSTOS_ERR_NOMEM;
        }
    item = json_array_get(arr, pp->index);
    return json_object_set_new(item, pp->item, val) ? CUSTOS_ERR_NOMEM : CUSTOS_OK;
}

/* A stored 'i' value (decimal text, NUL-terminated after len): 0 and *x, or -1 when corrupt. */
static int decode_int(const char *val, size_t len, long long *x)
{
    char *end;

    errno = 0;
    *x = strtoll(val, &end, 10);
    return errno || end != val + len ? -1 : 0;
}

json_t *custos_decode_value(char tag, const char *val, size_t len)
{
    long long x;

    switch (tag) {
    case 's':
        return json_stringn(val, len);
    case 'b':
        return json_boolean(len == 4 && memcmp(val, "true", 4) == 0);
    case 'i':
        return decode_int(val, len, &x) ? NULL : json_integer(x);
    }
    return NULL;
}

/*
 * A read's response written straight as JSON text, without a jansson tree (building, dumping
 * and freeing the tree was a fifth of a read's instructions).  It writes exactly what
 * custos_json_dump would write for the tree render() builds, provided the record's leaves
 * come grouped: each top-level field in one run, array items in index order, no path twice
 * (how records are written).  Anything else sets `broken`, and the caller renders the tree.
 * String values are not re-validated as UTF-8: they are authenticated plaintext that jansson
 * validated when they came in.
 */
#define TEXT_ITEM_KEYS 16
struct textout {
    struct custos_buf *out;            /* the members of "fields", from offset `start` */
    size_t start;
    struct custos_buf *masked;         /* the members of "masked" */
    uint64_t seen;                     /* top-level fields begun (bit = index in the schema) */
    const struct custos_field *open;   /* the array whose member is open, or NULL */
    size_t open_no;                    /* its index in the schema */
    size_t items, cur;                 /* items begun; index of the open item */
    char keys[TEXT_ITEM_KEYS][CUSTOS_FIELD_NAME_MAX + 1];
    size_t nkeys;                      /* keys of the open item */
    const uint16_t *tails;             /* per top-level field: items the record has (render) */
    int broken;
};

static enum custos_err text_value(struct custos_buf *b, char tag, const char *val, size_t len)
{
    long long x;

    switch (tag) {
    case 's':
        return custos_buf_add_json_str(b, val, len);
    case 'b':
        return custos_buf_adds(b, len == 4 && memcmp(val, "true", 4) == 0 ? "true" : "false");
    case 'i': /* as custos_decode_value reads it and jansson writes it */
        if (decode_int(val, len, &x) == 0)
            return custos_buf_add_i64(b, x);
        break;
    }
    return custos_err_set(CUSTOS_ERR_CORRUPT, "stored value is corrupt");
}

/* Close the open array, if any: its last item, then {} for the record's items after it that had
   nothing to show (as before the first one shown), so that the array keeps the record's length
   and its items their indices (the paths in "masked" name them). */
static enum custos_err text_close(struct textout *t)
{
    enum custos_err rc;

    if (!t->open)
        return CUSTOS_OK;
    if ((rc = custos_buf_addc(t->out, '}')))
        return rc;
    while (!rc && t->items < t->tails[t->open_no])
        rc = custos_buf_adds(t->out, ",{}"), t->items++;
    return rc ? rc : custos_buf_addc(t->out, ']');
}

static enum custos_err text_put(struct textout *t, const struct custos_schema *s, const struct custos_field *top,
                                const struct custos_path_parts *pp, char tag, const char *val, size_t len,
                                const char *masked_path)
{
    struct custos_buf *b = t->out;
    uint64_t bit = (uint64_t)1 << (top - s->fields);
    enum custos_err rc = CUSTOS_OK;
    size_t k;

    if (pp->indexed != (top->type == CUSTOS_FT_ARRAY) || (pp->indexed && pp->index > ITEM_INDEX_MAX)) {
        t->broken = 1; /* the tree path judges it */
        return CUSTOS_OK;
    }
    if (t->open != top) {
        if (t->seen & bit) {
            t->broken = 1;
            return CUSTOS_OK;
        }
        if ((rc = text_close(t)))
            return rc;
        t->open = NULL;
        t->seen |= bit;
        if ((b->len > t->start && (rc = custos_buf_addc(b, ','))) ||
            (rc = custos_buf_add_json_str(b, top->name, strlen(top->name))) || (rc = custos_buf_addc(b, ':')))
            return rc;
        if (pp->indexed) {
            if ((rc = custos_buf_addc(b, '[')))
                return rc;
            t->open = top;
            t->open_no = (size_t)(top - s->fields);
            t->items = 0;
        }
    }
    if (pp->indexed) {
        if (t->items == 0 || pp->index > t->cur) {
            if (t->items && (rc = custos_buf_addc(b, '}')))
                return rc;
            while (!rc && t->items < pp->index) /* items with nothing to show: {} as in the tree */
                rc = custos_buf_adds(b, t->items++ ? ",{}" : "{}");
            if (rc || (rc = custos_buf_adds(b, t->items++ ? ",{" : "{")))
                return rc;
            t->cur = pp->index;
            t->nkeys = 0;
        } else if (pp->index < t->cur || t->nkeys == TEXT_ITEM_KEYS) {
            t->broken = 1;
            return CUSTOS_OK;
        }
        for (k = 0; k < t->nkeys; k++)
            if (strcmp(t->keys[k], pp->item) == 0) {
                t->broken = 1;
                return CUSTOS_OK;
            }
        custos_strcopy(t->keys[t->nkeys], sizeof(t->keys[0]), pp->item, strlen(pp->item));
        if ((t->nkeys++ && (rc = custos_buf_addc(b, ','))) ||
            (rc = custos_buf_add_json_str(b, pp->item, strlen(pp->item))) || (rc = custos_buf_addc(b, ':')))
            return rc;
    }
    if ((rc = text_value(b, tag, val, len)))
        return rc;
    if (masked_path && ((t->masked->len && (rc = custos_buf_addc(t->masked, ','))) ||
                        (rc = custos_buf_add_json_str(t->masked, masked_path, strlen(masked_path)))))
        return rc;
    return CUSTOS_OK;
}

/* Build {"fields":...} from a record for the caller's view, as a tree (fields, masked) or as
   text (t).  vis_op = op for policy lookups (0: everything plain, for export).  Values stored
   under fields the current schema no longer has are never read, only exported: with `retired`,
   they go there, each under its stored path ("address_book[1].door"; flat, since two schema
   edits apart the same name may have held a value and an array). */
static enum custos_err render(struct custos_vault *v, const struct custos_caller *c, const uint8_t id[16],
                              const uint8_t *key, const struct custos_record *r, uint32_t vis_op, const char *purpose,
                              uint64_t want, json_t *fields, json_t *masked, json_t *retired, struct textout *t,
                              struct pathset *plain_set, struct pathset *masked_set)
{
    struct custos_buf *work = custos_buf_thread(CUSTOS_TLS_WORK, 8192);
    uint8_t *pt = custos_plain_scratch();
    uint16_t tails[CUSTOS_SCHEMA_MAX_FIELDS] = {0}; /* per array: the record's items (max index + 1) */
    enum custos_err rc = CUSTOS_OK;
    struct custos_run run; /* the record's values share a nonce prefix: one subkey for all */
    size_t i;

    if (!work || !pt)
        return CUSTOS_ERR_NOMEM;
    custos_run_begin(&run, key);
    if (t)
        t->tails = tails;
    for (i = 0; i < r->n && !rc && !(t && t->broken); i++) {
        const struct custos_sealed_leaf *l = &r->leaf[i];
        const struct custos_field *f, *top;
        struct custos_path_parts pp;
        char path[CUSTOS_PATH_MAX], tag = 0;
        enum custos_vis vis;
        size_t len = 0;
        json_t *val = NULL;

        if (custos_path_split(l->path, l->plen, &pp)) {
            rc = custos_err_set(CUSTOS_ERR_CORRUPT, "stored record is corrupt");
            break;
        }
        f = custos_leaf_field(v->schema, &pp, &top);
        /* every item counts, shown or not: an array shown keeps the record's length */
        if (top && pp.indexed && top->type == CUSTOS_FT_ARRAY && pp.index <= ITEM_INDEX_MAX &&
            (!want || (want & ((uint64_t)1 << (top - v->schema->fields))))) {
            size_t no = (size_t)(top - v->schema->fields);

            /* an item of an array whose text was already closed (the record's leaves are not
               grouped): the text could not count it, the tree judges */
            if (t && (t->seen & ((uint64_t)1 << no)) && t->open != top) {
                t->broken = 1;
                break;
            }
            if (tails[no] <= pp.index)
                tails[no] = (uint16_t)(pp.index + 1);
        }
        if (!f && retired) {
            if ((rc = custos_leaf_open_run(id, &run, l, pt, &tag, &len)))
                break;
            if (!(val = custos_decode_value(tag, (const char *)pt, len)))
                rc = custos_err_set(CUSTOS_ERR_CORRUPT, "stored value is corrupt");
            sodium_memzero(pt, len + 1);
            custos_strcopy(path, sizeof(path), l->path, l->plen);
            if (!rc && !(rc = pathset_add_retired(plain_set, &pp)) && json_object_set_new(retired, path, val))
                rc = CUSTOS_ERR_NOMEM;
            else if (rc)
                json_decref(val);
            continue;
        }
        if (!f)
            continue; /* a field the current schema no longer has: exported, never read */
        if (want && !(want & ((uint64_t)1 << (top - v->schema->fields))))
            continue;
        custos_strcopy(path, sizeof(path), l->path, l->plen);
        vis = vis_op ? custos_policy_vis(v->policy, c->system ? 0xffffffffu : c->roles, vis_op, purpose, f->ppath)
                     : CUSTOS_VIS_PLAIN;
        if (vis == CUSTOS_VIS_HIDDEN)
            continue; /* hidden values are not even decrypted */
        if ((rc = custos_leaf_open_run(id, &run, l, pt, &tag, &len)))
            break;
        if (vis == CUSTOS_VIS_MASKED) {
            custos_buf_reset(work);
            if (tag == 's')
                rc = custos_mask_value(f->mask, (const char *)pt, len, work);
            else
                rc = custos_buf_adds(work, "****");
            if (!rc && t)
                rc = text_put(t, v->schema, top, &pp, 's', (const char *)work->p, work->len, path);
            else if (!rc) {
                val = json_stringn((const char *)work->p, work->len);
                if (json_array_append_new(masked, json_string(path)))
                    rc = CUSTOS_ERR_NOMEM;
            }
            if (!rc)
                rc = pathset_add(masked_set, f);
        } else {
            if (t)
                rc = text_put(t, v->schema, top, &pp, tag, (const char *)pt, len, NULL);
            else if (!(val = custos_decode_value(tag, (const char *)pt, len)))
                rc = custos_err_set(CUSTOS_ERR_CORRUPT, "stored value is corrupt");
            if (!rc)
                rc = pathset_add(plain_set, f);
        }
        sodium_memzero(pt, len + 1);
        if (!rc && !t)
            rc = custos_place(fields, &pp, val);
        else
            json_decref(val);
    }
    if (!rc && t && !t->broken)
        rc = text_close(t);
    for (i = 0; !rc && !t && i < v->schema->nfields; i++) {
        json_t *arr = tails[i] ? json_object_get(fields, v->schema->fields[i].name) : NULL;

        while (!rc && json_is_array(arr) && json_array_size(arr) < tails[i])
            if (json_array_append_new(arr, json_object()))
                rc = CUSTOS_ERR_NOMEM;
    }
    custos_buf_reset(work);
    custos_run_end(&run);
    return rc;
}

void custos_lock_writes(struct custos_vault *v, struct custos_store_conn *c)
{
    /* Never wait here holding a read snapshot: a log flush (the tick's compact_logs) waits for
       old snapshots to end and holds writers back meanwhile, so if the lock's holder is waiting
       to write, this thread, the holder and the flush would wait for each other until SQLite's
       busy timeout broke the cycle (10 s, and a 503 for one of them). */
    if (v->ops->snapshot_leave)
        v->ops->snapshot_leave(v->store, c);
    pthread_mutex_lock(&v->write_mu);
}

void custos_unlock_writes(struct custos_vault *v)
{
    pthread_mutex_unlock(&v->write_mu);
}

/* ---- create -------------------------------------------------------------------------------- */

static enum custos_err leaves_policy_paths(const struct custos_leaves *l, struct pathset *s)
{
    enum custos_err rc = CUSTOS_OK;
    size_t i;

    for (i = 0; i < l->n && !rc; i++)
        rc = pathset_add(s, l->v[i].field);
    return rc;
}

enum custos_err custos_subject_create(struct custos_vault *v, const struct custos_caller *c, const char *body,
                                      size_t len, json_t **out)
{
    struct custos_store_conn *conn = NULL;
    struct custos_leaves leaves = {0};
    struct custos_event e;
    static _Thread_local struct pathset written;
    json_t *j = NULL;
    uint64_t removed;
    uint8_t id[16];
    char hex[CUSTOS_ID_HEX + 1];
    int audited = 0;
    enum custos_err rc;

    *out = NULL;
    written.n = 0;
    custos_event_init(&e, "subject.create", c);
    if (!custos_caller_may(v, c, CUSTOS_OP_SUBJECT_CREATE)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "this principal may not create subjects");
        goto done;
    }
    if ((rc = custos_json_parse(body, len, CUSTOS_BODY_MAX, 0, &j)) ||
        (rc = custos_schema_flatten(v->schema, j, 0, &leaves, &removed)))
        goto done;
    if (leaves.n == 0) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "a subject needs at least one field");
        goto done;
    }
    if ((rc = leaves_policy_paths(&leaves, &written)) || (rc = v->ops->acquire(v->store, &conn)))
        goto done;
    /* e.subject: set by the insert once the id exists, before its event is written */
    e.fields = written.ptr;
    e.nfields = written.n;
    rc = custos_subject_insert(v, conn, &leaves, id, &e, &audited);
    v->ops->release(v->store, conn);
    if (rc)
        goto done;
    custos_id_hex(hex, id);
    if (!(*out = json_pack("{s:s}", "id", hex)))
        rc = CUSTOS_ERR_NOMEM;
done:
    if (!audited || rc)
        rc = custos_audit_outcome(v, &e, rc);
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    custos_leaves_release(&leaves);
    json_decref(j);
    return rc;
}

/* ---- read ---------------------------------------------------------------------------------- */

/*
 * Load a subject and render it as the caller may see it (vis_op 0: everything plain) into new
 * *fields and *masked, or, when t is given and the record allows it (struct textout), as text
 * into t (then *fields and *masked stay NULL); the event gets the policy paths released.
 * Hidden values are never decrypted; the key and plaintext buffers are wiped before returning.
 */
static enum custos_err view(struct custos_vault *v, const struct custos_caller *c, const uint8_t id[16],
                            uint32_t vis_op, const char *purpose, uint64_t want, json_t **fields, json_t **masked,
                            json_t *retired, struct textout *t, struct custos_event *e)
{
    static _Thread_local struct pathset plain_set, masked_set;
    struct custos_store_conn *conn = NULL;
    struct custos_buf *blob = custos_buf_thread(CUSTOS_TLS_RECORD, RECORD_MAX);
    struct custos_record r = {0};
    uint8_t *key = custos_scratch();
    enum custos_err rc;
    int tree = 1;

    plain_set.n = masked_set.n = 0;
    nretired_paths = 0;
    *fields = *masked = NULL;
    if (!blob || !key)
        return CUSTOS_ERR_NOMEM;
    if ((rc = v->ops->acquire(v->store, &conn)))
        return rc;
    rc = custos_record_load(v, conn, id, blob, &r, key);
    v->ops->release(v->store, conn);
    if (!rc && t) {
        size_t out0 = t->out->len;

        tree = 0;
        t->start = out0;
        rc = render(v, c, id, key, &r, vis_op, purpose, want, NULL, NULL, NULL, t, &plain_set, &masked_set);
        if (!rc && t->broken) { /* not grouped as records are written: the tree does it */
            sodium_memzero(t->out->p + out0, t->out->len - out0);
            t->out->len = out0;
            custos_buf_reset(t->masked);
            plain_set.n = masked_set.n = 0;
            tree = 1;
        }
    }
    if (!rc && tree) {
        *fields = json_object();
        *masked = json_array();
        rc = *fields && *masked ? render(v, c, id, key, &r, vis_op, purpose, want, *fields, *masked, retired,
                                         NULL, &plain_set, &masked_set)
                                : CUSTOS_ERR_NOMEM;
    }
    custos_scratch_wipe();
    custos_record_release(&r);
    custos_buf_reset(blob);
    if (rc) {
        json_decref(*fields);
        json_decref(*masked);
        *fields = *masked = NULL;
        return rc;
    }
    e->fields = plain_set.ptr;
    e->nfields = plain_set.n;
    e->masked = masked_set.ptr;
    e->nmasked = masked_set.n;
    return CUSTOS_OK;
}

enum custos_err custos_subject_read_text(struct custos_vault *v, const struct custos_caller *c, const char *idhex,
                                         const char *purpose, const char *fields_arg, char **text, size_t *text_len)
{
    struct custos_event e;
    struct custos_buf out, mtext;
    struct textout t;
    json_t *fields = NULL, *masked = NULL, *tree = NULL;
    uint8_t id[16];
    uint64_t want = 0;
    enum custos_err rc;

    *text = NULL;
    *text_len = 0;
    memset(&t, 0, sizeof(t));
    t.out = &out;
    t.masked = &mtext;
    custos_buf_init(&out, RECORD_MAX);
    custos_buf_init(&mtext, RECORD_MAX);
    custos_event_init(&e, "subject.read", c);
    if ((rc = custos_id_parse(id, idhex)))
        goto done;
    e.subject = id;
    if ((rc = custos_check_purpose(purpose)))
        goto done;
    e.purpose = purpose;
    if ((rc = custos_check_scope(c, id)))
        goto done;
    if (strcmp(purpose, "legal-retention") == 0) {
        /* values kept after erasure, for the role the schema names */
        if ((rc = custos_retained_read(v, c, id, fields_arg, &fields, &e)))
            goto done;
        if (!(tree = json_pack("{s:s, s:o, s:[]}", "id", idhex, "fields", fields, "masked")))
            rc = CUSTOS_ERR_NOMEM;
        goto done;
    }
    if (!custos_caller_may(v, c, CUSTOS_OP_SUBJECT_READ)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "this principal may not read subjects");
        goto done;
    }
    if (!c->system && !custos_policy_purpose(v->policy, c->roles, CUSTOS_OP_SUBJECT_READ, purpose)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "purpose '%s' is not allowed for this principal", purpose);
        goto done;
    }
    if ((rc = custos_fields_mask(v->schema, fields_arg, &want)))
        goto done;
    if (!c->system &&
        (rc = custos_rate_check(v, c->principal,
                                custos_policy_rate(v->policy, c->roles, CUSTOS_OP_SUBJECT_READ, purpose))))
        goto done;
    /* {"id":"<hex>","fields":{ members },"masked":[ members ]} */
    if ((rc = custos_buf_reserve(&out, 2047)) || (rc = custos_buf_adds(&out, "{\"id\":")) ||
        (rc = custos_buf_add_json_str(&out, idhex, strlen(idhex))) || (rc = custos_buf_adds(&out, ",\"fields\":{")))
        goto done;
    if ((rc = view(v, c, id, CUSTOS_OP_SUBJECT_READ, purpose, want, &fields, &masked, NULL, &t, &e)))
        goto done;
    if (fields) { /* rendered as a tree */
        if (!(tree = json_pack("{s:s, s:o, s:o}", "id", idhex, "fields", fields, "masked", masked)))
            rc = CUSTOS_ERR_NOMEM;
        goto done;
    }
    if ((rc = custos_buf_adds(&out, "},\"masked\":[")) ||
        (rc = custos_buf_add(&out, mtext.p, mtext.len)) || (rc = custos_buf_adds(&out, "]}")))
        goto done;
done:
    custos_buf_release(&mtext);
    if (!rc && tree && !(*text = custos_json_dump(tree, text_len)))
        rc = CUSTOS_ERR_NOMEM;
    json_decref(tree);
    if (!rc && !*text) {
        *text = (char *)out.p; /* malloc'ed: custos_free_wiped frees it */
        *text_len = out.len;
        custos_buf_init(&out, 0);
    }
    custos_buf_release(&out);
    /* the response leaves only after this event is durable */
    rc = custos_audit_finish(v, &e, rc, NULL);
    if (rc) {
        custos_free_wiped(*text);
        *text = NULL;
        *text_len = 0;
    }
    return rc;
}

enum custos_err custos_subject_read(struct custos_vault *v, const struct custos_caller *c, const char *idhex,
                                    const char *purpose, const char *fields_arg, json_t **out)
{
    char *text = NULL;
    size_t len = 0;
    enum custos_err rc = custos_subject_read_text(v, c, idhex, purpose, fields_arg, &text, &len);

    *out = NULL;
    if (!rc && !(*out = json_loadb(text, len, 0, NULL)))
        rc = custos_err_set(CUSTOS_ERR_INTERNAL, "a read's response is not valid JSON");
    custos_free_wiped(text);
    return rc;
}

/* ---- export (the subject's own copy of everything held) ------------------------------------ */

/* A link as its subject sees it: which service, where its notices go (the webhook's origin only:
   the rest of the URL may hold the service's credential for its receiver), since when. */
static int export_link(void *ctx, const struct custos_link_row *l)
{
    char when[32], origin[sizeof(l->url)];

    custos_time_format(when, l->created);
    custos_url_origin(l->url, origin, sizeof(origin));
    return json_array_append_new(ctx, json_pack("{s:s, s:s, s:s}", "name", l->name, "webhook", origin,
                                                "registered_at", when)) != 0;
}

enum custos_err custos_subject_export(struct custos_vault *v, const struct custos_caller *c, const char *idhex,
                                      json_t **out)
{
    struct custos_store_conn *conn = NULL;
    struct custos_event e;
    json_t *fields = NULL, *masked = NULL, *links = NULL, *retired = NULL;
    uint8_t id[16];
    enum custos_err rc;

    *out = NULL;
    custos_event_init(&e, "subject.export", c);
    if ((rc = custos_id_parse(id, idhex)))
        goto done;
    e.subject = id;
    if ((rc = custos_check_scope(c, id)))
        goto done;
    if (!custos_caller_may(v, c, CUSTOS_OP_SUBJECT_EXPORT)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "this principal may not export subjects");
        goto done;
    }
    if (!(retired = json_object())) {
        rc = CUSTOS_ERR_NOMEM;
        goto done;
    }
    if ((rc = view(v, c, id, 0, NULL, 0, &fields, &masked, retired, NULL, &e))) {
        json_decref(retired);
        goto done;
    }
    json_decref(masked); /* nothing is masked in an export */
    if (!(links = json_array()) || (rc = v->ops->acquire(v->store, &conn))) {
        rc = rc ? rc : CUSTOS_ERR_NOMEM;
        json_decref(fields);
        json_decref(retired);
        json_decref(links);
        goto done;
    }
    rc = v->ops->link_scan(conn, id, export_link, links);
    v->ops->release(v->store, conn);
    if (!(*out = json_pack("{s:s, s:o, s:o, s:o}", "id", idhex, "fields", fields, "retired_fields", retired, "links",
                           links)))
        rc = CUSTOS_ERR_NOMEM;
done:
    return custos_audit_finish(v, &e, rc, out);
}

/* ---- update -------------------------------------------------------------------------------- */

/* Does the update touch a sensitive value (so the old one must be shredded, not kept)? */
static int touches_sensitive(const struct custos_schema *s, uint64_t touched)
{
    size_t i, k;

    for (i = 0; i < s->nfields; i++) {
        if (!(touched & ((uint64_t)1 << i)))
            continue;
        if (s->fields[i].cls == CUSTOS_FC_SENSITIVE)
            return 1;
        for (k = 0; k < s->fields[i].nitems; k++)
            if (s->fields[i].items[k].cls == CUSTOS_FC_SENSITIVE)
                return 1;
    }
    return 0;
}

/*
 * Build the updated record: kept leaves (fields not touched) + new leaves.  With `rekey`, kept
 * leaves are opened with `oldkey` and re-sealed under `newkey`; otherwise copied sealed.  Blind
 * entries are recomputed for every searchable leaf of the result.
 */
static enum custos_err rebuild(struct custos_vault *v, const uint8_t id[16], const struct custos_record *r, uint64_t touched,
                               const struct custos_leaves *add, const uint8_t *oldkey, const uint8_t *newkey,
                               uint32_t gen, struct custos_buf *b, struct custos_blind *blind, size_t *nblind)
{
    uint8_t *pt = custos_plain_scratch();
    struct custos_run run; /* sealing under newkey: every value this rebuild seals */
    enum custos_err rc;
    size_t i, count = 0;

    if (!pt)
        return CUSTOS_ERR_NOMEM;
    custos_run_begin(&run, newkey);
    if ((rc = custos_record_begin(b, gen)))
        goto done;
    for (i = 0; i < r->n; i++) {
        const struct custos_sealed_leaf *l = &r->leaf[i];
        const struct custos_field *f, *top;
        struct custos_path_parts pp;
        char path[CUSTOS_PATH_MAX], tag = 0;
        size_t len = 0;
        int need_plain;

        if (custos_path_split(l->path, l->plen, &pp)) {
            rc = custos_err_set(CUSTOS_ERR_CORRUPT, "stored record is corrupt");
            goto done;
        }
        f = custos_leaf_field(v->schema, &pp, &top);
        if (f && (touched & ((uint64_t)1 << (top - v->schema->fields))))
            continue; /* replaced or removed */
        need_plain = oldkey != newkey || (f && leaf_searchable(f, top));
        if (!need_plain) {
            rc = custos_record_add_sealed(b, l->path, l->plen, l->sealed, l->slen);
        } else {
            if ((rc = custos_leaf_open(id, oldkey, l, pt, &tag, &len)))
                goto done;
            if (oldkey != newkey) {
                snprintf(path, sizeof(path), "%.*s", (int)l->plen, l->path);
                rc = custos_record_add_value_run(b, id, &run, path, tag, (const char *)pt, len);
            } else
                rc = custos_record_add_sealed(b, l->path, l->plen, l->sealed, l->slen);
            if (!rc && f && leaf_searchable(f, top) && *nblind < CUSTOS_SCHEMA_MAX_FIELDS) {
                blind[*nblind].field = field_no(v, top);
                rc = blind_hash(v, f, (const char *)pt, len, blind[*nblind].hash);
                (*nblind)++;
            }
            sodium_memzero(pt, len + 1);
        }
        if (rc)
            goto done;
        count++;
    }
    if ((rc = seal_leaves(v, id, &run, add, b, blind, nblind, CUSTOS_SCHEMA_MAX_FIELDS)))
        goto done;
    count += add->n;
    rc = custos_record_finish(b, count);
done:
    custos_run_end(&run);
    return rc;
}

enum custos_err custos_subject_update(struct custos_vault *v, const struct custos_caller *c, const char *idhex,
                                      const char *body, size_t len, json_t **out)
{
    struct custos_store_conn *conn = NULL;
    struct custos_buf *blob = custos_buf_thread(CUSTOS_TLS_RECORD, RECORD_MAX);
    struct custos_buf nb;
    struct custos_leaves leaves = {0};
    struct custos_blind blind[CUSTOS_SCHEMA_MAX_FIELDS];
    static _Thread_local struct pathset written;
    struct custos_event e;
    struct custos_record r = {0};
    json_t *j = NULL, *list = NULL;
    uint8_t id[16], *key = custos_scratch(), *newkey;
    uint64_t removed = 0, touched = 0;
    size_t nblind = 0, i;
    int rekey = 0, locked = 0, audited = 0;
    const char *k;
    json_t *val;
    enum custos_err rc;

    *out = NULL;
    written.n = 0;
    custos_buf_init(&nb, RECORD_MAX);
    custos_event_init(&e, "subject.update", c);
    if (!blob || !key) {
        rc = CUSTOS_ERR_NOMEM;
        goto done;
    }
    newkey = key + CUSTOS_KEY_BYTES;
    if ((rc = custos_id_parse(id, idhex)))
        goto done;
    e.subject = id;
    if ((rc = custos_check_scope(c, id)))
        goto done;
    if (!custos_caller_may(v, c, CUSTOS_OP_SUBJECT_UPDATE)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "this principal may not update subjects");
        goto done;
    }
    if ((rc = custos_json_parse(body, len, CUSTOS_BODY_MAX, 0, &j)) ||
        (rc = custos_schema_flatten(v->schema, j, 1, &leaves, &removed)))
        goto done;
    if (json_object_size(j) == 0) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "empty update");
        goto done;
    }
    json_object_foreach(j, k, val) {
        const struct custos_field *f = custos_schema_field(v->schema, k, strlen(k));

        touched |= (uint64_t)1 << (f - v->schema->fields);
        if ((rc = pathset_add(&written, f)))
            goto done;
    }
    (void)removed;
    e.fields = written.ptr;
    e.nfields = written.n;
    rekey = touches_sensitive(v->schema, touched);
    if ((rc = v->ops->acquire(v->store, &conn)))
        goto done;
    custos_lock_writes(v, conn);
    locked = 1;
    if ((rc = custos_record_load(v, conn, id, blob, &r, key)))
        goto done;
    if (rekey)
        custos_random(newkey, CUSTOS_KEY_BYTES);
    if ((rc = rebuild(v, id, &r, touched, &leaves, key, rekey ? newkey : key, rekey ? r.gen + 1 : r.gen, &nb, blind,
                      &nblind)))
        goto done;
    if (rekey) {
        custos_keycache_drop(v->keys, id);
        /* new key generation first, then the record, then the old generation goes */
        if ((rc = key_store_new(v, conn, id, r.gen + 1, newkey)))
            goto done;
    }
    if ((rc = v->ops->begin(conn, CUSTOS_PLANE_DATA)))
        goto done;
    if ((rc = v->ops->subject_put(conn, id, nb.p, nb.len, blind, nblind, (int64_t)custos_now(v), 0)) ||
        (rc = custos_audit_in_txn(v, &e, &audited)) || (rc = v->ops->commit(conn, CUSTOS_PLANE_DATA))) {
        v->ops->rollback(conn, CUSTOS_PLANE_DATA);
        goto done;
    }
    if (rekey) {
        if ((rc = v->ops->begin(conn, CUSTOS_PLANE_CONTROL)))
            goto done;
        if ((rc = v->ops->key_delete(conn, id, r.gen + 1)) || (rc = v->ops->commit(conn, CUSTOS_PLANE_CONTROL))) {
            v->ops->rollback(conn, CUSTOS_PLANE_CONTROL);
            goto done; /* the next start removes the stale generation */
        }
        custos_keycache_drop(v->keys, id); /* a reader may have cached the old generation meanwhile */
        atomic_store(&v->compact_soon, 1); /* old log pages hold the deleted generation: flush within seconds */
    }
    list = json_array();
    for (i = 0; list && i < written.n; i++)
        json_array_append_new(list, json_string(written.ptr[i]));
    if (!list || !(*out = json_pack("{s:s, s:o}", "id", idhex, "updated", list)))
        rc = CUSTOS_ERR_NOMEM;
    list = NULL;
done:
    if (locked)
        custos_unlock_writes(v);
    if (conn)
        v->ops->release(v->store, conn);
    custos_scratch_wipe();
    custos_record_release(&r);
    if (blob)
        custos_buf_reset(blob);
    custos_buf_release(&nb);
    custos_leaves_release(&leaves);
    json_decref(j);
    json_decref(list);
    if (audited && !rc)
        return CUSTOS_OK; /* its event went in before the commit */
    return custos_audit_finish(v, &e, rc, out);
}

/* ---- search -------------------------------------------------------------------------------- */

enum custos_err custos_subject_search(struct custos_vault *v, const struct custos_caller *c, const char *field,
                                      const char *value, const char *purpose, json_t **out)
{
    struct custos_store_conn *conn = NULL;
    const struct custos_field *f = NULL;
    struct custos_event e;
    uint8_t hash[32], (*ids)[16] = NULL;
    const char *fl[1];
    size_t n = 0, i;
    json_t *arr = NULL;
    int truncated = 0;
    enum custos_err rc;

    *out = NULL;
    custos_event_init(&e, "subject.search", c);
    if (field && (f = custos_schema_field(v->schema, field, strlen(field)))) {
        fl[0] = f->name;
        e.fields = fl;
        e.nfields = 1;
    }
    if ((rc = custos_check_purpose(purpose)))
        goto done;
    e.purpose = purpose;
    if (c->kind == CUSTOS_KIND_CUSTOMER || !custos_caller_may(v, c, CUSTOS_OP_SUBJECT_SEARCH)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "this principal may not search");
        goto done;
    }
    if (!c->system && !custos_policy_purpose(v->policy, c->roles, CUSTOS_OP_SUBJECT_SEARCH, purpose)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "purpose '%s' is not allowed for this principal", purpose);
        goto done;
    }
    if (!f || !f->searchable) {
        rc = field ? custos_err_set(CUSTOS_ERR_INVALID, "'%.48s' is not a searchable field", field)
                   : custos_err_set(CUSTOS_ERR_INVALID, "search needs one searchable field (e.g. email or phone)");
        goto done;
    }
    /* a search is an equality test on the field: a field the purpose hides from the caller is not
       one it may test values of (it would map them to ids), so only plain and masked ones */
    if (!c->system &&
        custos_policy_vis(v->policy, c->roles, CUSTOS_OP_SUBJECT_SEARCH, purpose, f->ppath) == CUSTOS_VIS_HIDDEN) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "field '%s' is hidden for purpose '%s': it cannot be searched",
                            f->name, purpose);
        goto done;
    }
    if (!value || strlen(value) > f->max_length) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "search value is missing or longer than %zu bytes", f->max_length);
        goto done;
    }
    /* as a body's values must be (an invalid one could never match: say why instead) */
    if (!custos_utf8_valid(value, strlen(value))) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "search value is not valid UTF-8");
        goto done;
    }
    if (!c->system &&
        (rc = custos_rate_check(v, c->principal,
                                custos_policy_rate(v->policy, c->roles, CUSTOS_OP_SUBJECT_SEARCH, purpose))))
        goto done;
    if ((rc = blind_hash(v, f, value, strlen(value), hash)))
        goto done;
    ids = malloc((SEARCH_MAX_RESULTS + 1) * sizeof(*ids));
    if (!ids) {
        rc = CUSTOS_ERR_NOMEM;
        goto done;
    }
    if ((rc = v->ops->acquire(v->store, &conn)))
        goto done;
    rc = v->ops->blind_find(conn, field_no(v, f), hash, ids, SEARCH_MAX_RESULTS + 1, &n);
    v->ops->release(v->store, conn);
    if (rc)
        goto done;
    if (n > SEARCH_MAX_RESULTS) {
        truncated = 1;
        n = SEARCH_MAX_RESULTS;
    }
    e.count = (int64_t)n;
    arr = json_array();
    for (i = 0; arr && i < n; i++) {
        char hex[CUSTOS_ID_HEX + 1];

        custos_id_hex(hex, ids[i]);
        if (json_array_append_new(arr, json_string(hex)))
            rc = CUSTOS_ERR_NOMEM;
    }
    if (!arr || rc || !(*out = json_pack("{s:o, s:b}", "ids", arr, "truncated", truncated)))
        rc = CUSTOS_ERR_NOMEM;
    arr = NULL;
done:
    free(ids);
    json_decref(arr);
    return custos_audit_finish(v, &e, rc, out);
}

/* ---- customer tokens ----------------------------------------------------------------------- */

enum custos_err custos_subject_token(struct custos_vault *v, const struct custos_caller *c, const char *idhex,
                                     json_t **out)
{
    struct custos_store_conn *conn = NULL;
    struct custos_buf blob;
    struct custos_event e;
    uint8_t id[16];
    char tok[CUSTOS_TOKEN_LEN + 1], when[32], tid[17];
    int64_t expires = 0;
    enum custos_err rc;

    *out = NULL;
    custos_buf_init(&blob, RECORD_MAX);
    custos_event_init(&e, "token.mint", c);
    if ((rc = custos_id_parse(id, idhex)))
        goto done;
    e.subject = id;
    if (c->kind == CUSTOS_KIND_CUSTOMER || !custos_caller_may(v, c, CUSTOS_OP_TOKEN_MINT)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "minting customer tokens needs the minter role");
        goto done;
    }
    if ((rc = v->ops->acquire(v->store, &conn)))
        goto done;
    rc = v->ops->subject_get(conn, id, &blob);
    if (rc == CUSTOS_ERR_NOTFOUND)
        rc = custos_subject_missing(v, conn, id);
    v->ops->release(v->store, conn);
    if (rc)
        goto done;
    if ((rc = custos_token_mint_customer(v, c, id, tok, &expires, tid)))
        goto done;
    e.target = tid;
    custos_time_format(when, expires);
    if (!(*out = json_pack("{s:s, s:s, s:s}", "token", tok, "expires_at", when, "subject", idhex)))
        rc = CUSTOS_ERR_NOMEM;
    sodium_memzero(tok, sizeof(tok));
done:
    custos_buf_release(&blob);
    return custos_audit_finish(v, &e, rc, out);
}

/* ---- recovery ------------------------------------------------------------------------------ */

struct reapply {
    struct custos_vault *v;
    struct custos_store_conn *c;
    uint64_t applied;
    enum custos_err rc;
};

static int reapply_one(void *ctx, const struct custos_erasure_row *er)
{
    struct reapply *ra = ctx;
    struct custos_vault *v = ra->v;
    struct custos_buf blob;
    enum custos_err rc;

    custos_buf_init(&blob, RECORD_MAX);
    /* keys first: a restored control plane copy must not resurrect anything */
    if ((rc = v->ops->begin(ra->c, CUSTOS_PLANE_CONTROL)))
        goto done;
    if ((rc = v->ops->key_delete(ra->c, er->id, 0)) || (rc = v->ops->commit(ra->c, CUSTOS_PLANE_CONTROL))) {
        v->ops->rollback(ra->c, CUSTOS_PLANE_CONTROL);
        goto done;
    }
    if (er->ledger_index < 0) {
        struct custos_caller sys;
        struct custos_event e;
        struct custos_erasure_row fixed = *er;
        uint64_t index;

        custos_caller_system(&sys);
        custos_event_init(&e, "subject.erase", &sys);
        e.subject = er->id;
        e.ok_reason = "recovered";
        if ((rc = custos_audit_durable(v, &e, &index)))
            goto done;
        fixed.ledger_index = (int64_t)index;
        if ((rc = v->ops->erasure_put(ra->c, &fixed)))
            goto done;
    }
    rc = v->ops->subject_get(ra->c, er->id, &blob);
    if (rc == CUSTOS_ERR_NOTFOUND) {
        rc = CUSTOS_OK;
        goto done;
    }
    if (rc == CUSTOS_ERR_TOOBIG)
        rc = CUSTOS_OK; /* a row too large to be a record (a doctored backup): it goes all the same */
    if (rc || (rc = v->ops->begin(ra->c, CUSTOS_PLANE_DATA)))
        goto done;
    if ((rc = v->ops->subject_delete(ra->c, er->id)) || (rc = v->ops->commit(ra->c, CUSTOS_PLANE_DATA))) {
        v->ops->rollback(ra->c, CUSTOS_PLANE_DATA);
        goto done;
    }
    ra->applied++;
done:
    custos_buf_release(&blob);
    ra->rc = rc;
    return rc != CUSTOS_OK;
}

static int drop_stale_gen(void *ctx, const uint8_t id[16])
{
    struct reapply *ra = ctx;
    struct custos_vault *v = ra->v;
    struct custos_buf blob;
    struct custos_record r = {0};
    enum custos_err rc;

    custos_buf_init(&blob, RECORD_MAX);
    rc = v->ops->subject_get(ra->c, id, &blob);
    if (rc == CUSTOS_ERR_NOTFOUND) {
        rc = CUSTOS_OK; /* no record: erasure handles keys; an orphan stays harmless */
        goto done;
    }
    if (rc || (rc = custos_record_parse(blob.p, blob.len, &r)))
        goto done;
    if ((rc = v->ops->begin(ra->c, CUSTOS_PLANE_CONTROL)))
        goto done;
    if ((rc = v->ops->key_delete(ra->c, id, r.gen)) || (rc = v->ops->commit(ra->c, CUSTOS_PLANE_CONTROL)))
        v->ops->rollback(ra->c, CUSTOS_PLANE_CONTROL);
done:
    custos_record_release(&r);
    custos_buf_release(&blob);
    ra->rc = rc;
    return rc != CUSTOS_OK;
}

enum custos_err custos_erasures_reapply(struct custos_vault *v, uint64_t *applied, int at_open)
{
    struct reapply ra = {v, NULL, 0, CUSTOS_OK};
    enum custos_err rc;
    uint64_t from_ledger = 0;

    /* erasures the ledger knows and the control plane forgot (a rolled-back copy) first */
    if ((rc = custos_erasures_from_ledger(v, &from_ledger, at_open)))
        return rc;
    if ((rc = v->ops->acquire(v->store, &ra.c)))
        return rc;
    rc = v->ops->erasure_scan(ra.c, reapply_one, &ra);
    if (!rc)
        rc = ra.rc;
    if (!rc) {
        rc = v->ops->key_scan_multi(ra.c, drop_stale_gen, &ra);
        if (!rc)
            rc = ra.rc;
    }
    if (!rc && ra.applied)
        if ((rc = v->ops->compact_logs(ra.c)) == CUSTOS_ERR_LOCKED)
            rc = CUSTOS_OK; /* retried by the tick */
    v->ops->release(v->store, ra.c);
    if (applied)
        *applied = ra.applied + from_ledger;
    v->reapplied_at_open = ra.applied + from_ledger;
    return rc;
}

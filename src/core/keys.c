/*
 * keys.c - master key rotation.
 *
 * Steps (each durable before the next; running again resumes):
 *   1. write keys/master-N+1.key (fsync file and directory);
 *   2. one control-plane transaction: master_kv = N+1, system root key
 *      re-wrapped under N+1 (new subject keys use N+1 from here on);
 *   3. re-wrap every subject key still under an older version, in batches,
 *      one transaction per batch;
 *   4. when none is left, destroy every older master key file (rename aside,
 *      overwrite, fsync, unlink, fsync directory) and flush the database logs.
 * Interrupted after 1: the newest file is taken as the target.  After 2 or
 * during 3: the scan continues with what is left.  During 4: the next open
 * finishes the destroy (custos_keyfile_destroy, load_masters in vault.c).
 * Never destroys a version that still wraps something.
 *
 * Must never: run while a server uses the vault (the data-directory lock
 * ensures it), leave an unwrapped key outside secure memory.
 */
#include "core/vault_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/keyfile.h"

#include "custos/banned.h"

#define REWRAP_BATCH 2000

struct pending {
    uint8_t id[16];
    uint32_t gen, kv;
    uint8_t w[CUSTOS_WRAPPED_BYTES];
};

struct rewrap {
    struct custos_vault *v;
    struct custos_store_conn *c;
    uint32_t to;
    uint64_t done;
    struct pending *batch; /* collected first: the scan must not see its own updates */
    size_t n;
    enum custos_err rc;
};

static int collect(void *ctx, const uint8_t id[16], uint32_t gen, uint32_t kv, const uint8_t *w, size_t wlen)
{
    struct rewrap *rw = ctx;
    struct pending *p = &rw->batch[rw->n];

    if (wlen != CUSTOS_WRAPPED_BYTES) {
        rw->rc = custos_err_set(CUSTOS_ERR_CORRUPT, "stored subject key is corrupt");
        return 1;
    }
    memcpy(p->id, id, 16);
    p->gen = gen;
    p->kv = kv;
    memcpy(p->w, w, CUSTOS_WRAPPED_BYTES);
    return ++rw->n == REWRAP_BATCH;
}

static enum custos_err rewrap_one(struct rewrap *rw, const struct pending *p)
{
    struct custos_vault *v = rw->v;
    uint8_t *key = custos_scratch(), ad[64], nw[CUSTOS_WRAPPED_BYTES];
    const uint8_t *old = custos_master(v, p->kv), *kek = custos_master(v, rw->to);
    enum custos_err rc;

    if (!key)
        return CUSTOS_ERR_NOMEM;
    if (!old || !kek)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "a subject key is under master key version %u, which is missing",
                              p->kv);
    if (custos_unwrap(key, old, p->w, ad, custos_ad_subject_key(ad, p->id, p->gen, p->kv))) {
        custos_scratch_wipe();
        return custos_err_set(CUSTOS_ERR_CRYPTO, "a subject key failed to open during rotation");
    }
    custos_wrap(nw, kek, key, ad, custos_ad_subject_key(ad, p->id, p->gen, rw->to));
    custos_scratch_wipe();
    if ((rc = v->ops->key_put(rw->c, p->id, p->gen, rw->to, nw, sizeof(nw))))
        return rc;
    rw->done++;
    return CUSTOS_OK;
}

static uint32_t newest_version(const struct custos_vault *v)
{
    uint32_t m = 0;
    int i;

    for (i = 0; i < CUSTOS_MAX_KEY_VERSIONS; i++)
        if (v->sec->master_kv[i] > m)
            m = v->sec->master_kv[i];
    return m;
}

static int free_slot(const struct custos_vault *v)
{
    int i;

    for (i = 0; i < CUSTOS_MAX_KEY_VERSIONS; i++)
        if (!v->sec->master_kv[i])
            return i;
    return -1;
}

static void put_be32(uint8_t *p, uint32_t x)
{
    p[0] = (uint8_t)(x >> 24);
    p[1] = (uint8_t)(x >> 16);
    p[2] = (uint8_t)(x >> 8);
    p[3] = (uint8_t)x;
}

/* Step 4 on its own, for versions below the one in use: the destroy of each such file. */
static enum custos_err destroy_below(struct custos_vault *v, uint32_t current, uint64_t *destroyed)
{
    char path[PATH_MAX + 64];
    enum custos_err rc;
    int i;

    for (i = 0; i < CUSTOS_MAX_KEY_VERSIONS; i++) {
        uint32_t kv = v->sec->master_kv[i];

        if (!kv || kv >= current)
            continue;
        snprintf(path, sizeof(path), "%s/keys/master-%u.key", v->dir, kv);
        if ((rc = custos_keyfile_destroy(path)))
            return rc;
        sodium_memzero(v->sec->master[i], CUSTOS_KEY_BYTES);
        v->sec->master_kv[i] = 0;
        (*destroyed)++;
    }
    return CUSTOS_OK;
}

/* Truncate the database logs before old master key files are destroyed.  Busy readers (LOCKED) do
   not stop the destroy, as before: the control plane's log is flushed first, and only a reader of
   the control plane, which no other process has while the vault's lock is held, can keep it. */
static enum custos_err flush_before_destroy(struct custos_vault *v, struct custos_store_conn *c)
{
    enum custos_err rc = v->ops->compact_logs(c);

    if (rc == CUSTOS_ERR_LOCKED) {
        custos_err_clear();
        rc = CUSTOS_OK;
    }
    return rc;
}

static enum custos_err rotate(struct custos_vault *v, struct custos_store_conn *c, struct custos_rotate_stats *st)
{
    struct rewrap rw;
    char path[PATH_MAX + 64];
    uint8_t last[16];
    uint32_t last_gen = 0;
    int have_last = 0;
    uint8_t kvb[4];
    uint64_t left = 0;
    enum custos_err rc;
    int slot;

    st->from_version = v->current_kv;
    st->to_version = newest_version(v);
    if ((rc = v->ops->key_count_below(c, v->current_kv, &left)))
        return rc;
    st->resumed = st->to_version > v->current_kv || left > 0;
    if (!st->resumed) {
        /* 1. a new version */
        slot = free_slot(v);
        if (slot < 0)
            return custos_err_set(CUSTOS_ERR_CORRUPT, "too many master key versions present");
        st->to_version = v->current_kv + 1;
        snprintf(path, sizeof(path), "%s/keys/master-%u.key", v->dir, st->to_version);
        randombytes_buf(v->sec->master[slot], CUSTOS_KEY_BYTES);
        if ((rc = custos_keyfile_write(path, "master key", v->sec->master[slot]))) {
            sodium_memzero(v->sec->master[slot], CUSTOS_KEY_BYTES);
            return rc;
        }
        v->sec->master_kv[slot] = st->to_version;
    }
    if (st->to_version > v->current_kv) {
        /* 2. switch new wraps to it */
        put_be32(kvb, st->to_version);
        if ((rc = v->ops->begin(c, CUSTOS_PLANE_CONTROL)))
            return rc;
        if ((rc = v->ops->meta_put(c, "master_kv", kvb, 4)) ||
            (rc = custos_system_key_store(v, c, st->to_version)) ||
            (rc = v->ops->commit(c, CUSTOS_PLANE_CONTROL))) {
            v->ops->rollback(c, CUSTOS_PLANE_CONTROL);
            return rc;
        }
        v->current_kv = st->to_version;
    }
    /* 3. re-wrap in batches */
    memset(&rw, 0, sizeof(rw));
    rw.v = v;
    rw.c = c;
    rw.to = v->current_kv;
    rw.batch = malloc(REWRAP_BATCH * sizeof(*rw.batch));
    if (!rw.batch)
        return CUSTOS_ERR_NOMEM;
    for (;;) {
        size_t k;

        rw.n = 0;
        rw.rc = CUSTOS_OK;
        if ((rc = v->ops->begin(c, CUSTOS_PLANE_CONTROL)))
            break;
        /* resume after the last key of the previous batch: one pass over the table */
        rc = v->ops->key_scan_below(c, rw.to, have_last ? last : NULL, last_gen, REWRAP_BATCH, collect, &rw);
        if (!rc)
            rc = rw.rc;
        for (k = 0; !rc && k < rw.n; k++)
            rc = rewrap_one(&rw, &rw.batch[k]);
        if (rc || (rc = v->ops->commit(c, CUSTOS_PLANE_CONTROL))) {
            v->ops->rollback(c, CUSTOS_PLANE_CONTROL);
            break;
        }
        if (rw.n < REWRAP_BATCH)
            break;
        memcpy(last, rw.batch[rw.n - 1].id, 16);
        last_gen = rw.batch[rw.n - 1].gen;
        have_last = 1;
    }
    sodium_memzero(rw.batch, REWRAP_BATCH * sizeof(*rw.batch));
    free(rw.batch);
    if (rc)
        return rc;
    {
        uint64_t nret = 0;

        if ((rc = custos_retention_rewrap(v, c, rw.to, &nret)))
            return rc;
        st->retention_rewrapped = nret;
    }
    st->rewrapped = rw.done;
    if ((rc = v->ops->key_count_below(c, rw.to, &left)))
        return rc;
    if (left)
        return custos_err_set(CUSTOS_ERR_INTERNAL, "%llu subject keys are still under an old version",
                              (unsigned long long)left);
    /* 4. destroy what nothing uses any more, once the database logs are flushed: until then the
       old pages of control.db (and its log) still hold every key wrapped under the old versions,
       and a crash between the destroy and the flush would leave them there with the old key file
       gone, so that the rotation looks done while an old copy of that key still opens them */
    if ((rc = flush_before_destroy(v, c)) || (rc = destroy_below(v, rw.to, &st->destroyed_versions)))
        return rc;
    rc = v->ops->compact_logs(c);
    return rc == CUSTOS_ERR_LOCKED ? CUSTOS_OK : rc; /* the server's tick flushes it later */
}

enum custos_err custos_keys_finish(struct custos_vault *v)
{
    struct custos_store_conn *conn = NULL;
    struct custos_caller sys;
    struct custos_event e;
    uint32_t oldest = 0;
    uint64_t destroyed = 0;
    char target[48];
    enum custos_err rc;
    int i;

    for (i = 0; i < CUSTOS_MAX_KEY_VERSIONS; i++)
        if (v->sec->master_kv[i] && v->sec->master_kv[i] < v->current_kv &&
            (!oldest || v->sec->master_kv[i] < oldest))
            oldest = v->sec->master_kv[i];
    if (!oldest)
        return CUSTOS_OK;
    if ((rc = v->ops->acquire(v->store, &conn)))
        return rc;
    if (!custos_older_versions_unused(v, conn, v->current_kv)) {
        custos_err_clear();
        v->ops->release(v->store, conn);
        return CUSTOS_OK; /* a rotation still re-wrapping: `custos keys rotate` resumes it */
    }
    custos_caller_system(&sys);
    custos_event_init(&e, "keys.rotate", &sys);
    e.ok_reason = "recovered";
    snprintf(target, sizeof(target), "master-key v%u -> v%u", oldest, v->current_kv);
    e.target = target;
    sodium_mprotect_readwrite(v->sec);
    rc = flush_before_destroy(v, conn); /* as in rotate(): no old key file goes before the logs are flushed */
    if (!rc)
        rc = destroy_below(v, v->current_kv, &destroyed);
    sodium_mprotect_readonly(v->sec);
    if (!rc && (rc = v->ops->compact_logs(conn)) == CUSTOS_ERR_LOCKED)
        rc = CUSTOS_OK;
    v->ops->release(v->store, conn);
    return custos_audit_outcome(v, &e, rc);
}

enum custos_err custos_keys_rotate(struct custos_vault *v, const struct custos_caller *c,
                                   struct custos_rotate_stats *out)
{
    struct custos_store_conn *conn = NULL;
    struct custos_event e;
    char target[48];
    enum custos_err rc;

    memset(out, 0, sizeof(*out));
    custos_event_init(&e, "keys.rotate", c);
    if (!c->system) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "key rotation runs on the data directory (custos keys rotate)");
        goto done;
    }
    if ((rc = v->ops->acquire(v->store, &conn)))
        goto done;
    sodium_mprotect_readwrite(v->sec);
    rc = rotate(v, conn, out);
    sodium_mprotect_readonly(v->sec);
    v->ops->release(v->store, conn);
    snprintf(target, sizeof(target), "master-key v%u -> v%u", out->from_version, out->to_version);
    e.target = target;
    e.count = (int64_t)out->rewrapped;
done:
    return custos_audit_outcome(v, &e, rc);
}

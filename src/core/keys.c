/*
 * keys.c - master key rotation.
 *
 * Steps (each durable before the next; running again resumes):
 *   1. write keys/master-N+1.key (fsync file and directory);
 *   2. one control-plane transaction: master_kv = N+1, system root key
 *      re-wrapped under N+1 (new subject keys use N+1 from here on);
 *   3. re-wrap every subject key still under an older version, in batches,
 *      one transaction per batch;
 *   4. when none is left, flush the control plane's log (its old pages hold the
 *      old wraps), destroy every older master key file (rename aside,
 *      overwrite, fsync, unlink, fsync directory), flush the database logs.
 * Interrupted after 1: the newest file is taken as the target.  After 2 or
 * during 3: the scan continues with what is left.  During 4: the next open
 * finishes the destroy (custos_keyfile_destroy, load_masters in vault.c).
 * Never destroys a version that still wraps something.
 *
 * Two ways to run it: `custos keys rotate` on a stopped vault (the directory
 * lock), or a running server's own thread (POST /v1/keys/rotate; resumed at
 * serve's start), beside the requests.  Both run the same steps; serving
 * adds the keyring (custos_kek_*, also here): every thread that uses a
 * master key holds it, counted per slot under kr_mu, so step 2 makes the new
 * version current and then waits until no wrap under an older one is still
 * uncommitted (which the re-wrap scan could miss), and step 4 marks a slot
 * retiring and waits until no thread holds it before the wipe.  Step 4
 * destroys only after the control plane's log is flushed, which needs every
 * reader's snapshot of it to be newer than the re-wrap: a rotation whose
 * flush stays busy keeps the old key and fails (running it again finishes).
 * Serving, the request claims the rotation, records `started` durably and
 * makes step 1 before it answers; the thread does the rest and records the
 * outcome.
 *
 * Must never: change the key slots except under kr_mu (and only by whoever
 * holds the rotation's claim: the request that makes the new version, then
 * the rotation's thread), wait for anything while holding kr_mu, make a version
 * current while a wrap under another is uncommitted, wipe a key a thread
 * holds, leave an unwrapped key outside secure memory.
 */
#include "core/vault_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/json.h"
#include "core/keyfile.h"
#include "core/thread.h"

#include "custos/banned.h"

#define REWRAP_BATCH 2000
/* serving: a batch holds the database's write lock (every write waits for it), so small */
#define REWRAP_BATCH_SERVING 250
/* serving: the pause between two tries of step 4's flush (within v->key_flush_ms in all) */
#define FLUSH_PAUSE_MS 250

/* ---- the keyring ---------------------------------------------------------------------------- */

void custos_keyring_init(struct custos_vault *v)
{
    pthread_mutex_init(&v->kr_mu, NULL);
    pthread_cond_init(&v->kr_cv, NULL);
    v->kr_ready = 1;
}

static int slot_of(const struct custos_vault *v, uint32_t kv)
{
    int i;

    for (i = 0; kv && i < CUSTOS_MAX_KEY_VERSIONS; i++)
        if (v->sec->master_kv[i] == kv && !v->kr_retiring[i])
            return i;
    return -1;
}

static enum custos_err kek_hold(struct custos_vault *v, int current, uint32_t kv, struct custos_kek *k)
{
    int i;

    memset(k, 0, sizeof(*k));
    k->slot = -1;
    pthread_mutex_lock(&v->kr_mu);
    if (current)
        kv = v->current_kv;
    i = v->sec ? slot_of(v, kv) : -1;
    if (i >= 0) {
        v->kr_users[i]++;
        v->kr_wrapping[i] += (unsigned)current;
        k->key = v->sec->master[i];
        k->kv = kv;
        k->slot = i;
        k->wrap = current;
    }
    pthread_mutex_unlock(&v->kr_mu);
    if (i >= 0)
        return CUSTOS_OK;
    return current ? custos_err_set(CUSTOS_ERR_INTERNAL, "the current master key version %u is not loaded", kv)
                   : custos_err_set(CUSTOS_ERR_CORRUPT, "master key version %u is missing", kv);
}

enum custos_err custos_kek_current(struct custos_vault *v, struct custos_kek *k)
{
    return kek_hold(v, 1, 0, k);
}

enum custos_err custos_kek_version(struct custos_vault *v, uint32_t kv, struct custos_kek *k)
{
    return kek_hold(v, 0, kv, k);
}

void custos_kek_release(struct custos_vault *v, struct custos_kek *k)
{
    if (k->slot < 0)
        return;
    pthread_mutex_lock(&v->kr_mu);
    v->kr_users[k->slot]--;
    v->kr_wrapping[k->slot] -= (unsigned)k->wrap;
    if (!v->kr_users[k->slot] || (k->wrap && !v->kr_wrapping[k->slot]))
        pthread_cond_broadcast(&v->kr_cv); /* a rotation may wait for this slot (switch, wipe) */
    pthread_mutex_unlock(&v->kr_mu);
    k->key = NULL;
    k->slot = -1;
}

/* Step 1's new key into a free slot (random, then written to its file). */
static enum custos_err slot_fill(struct custos_vault *v, int slot, uint32_t kv, const char *path)
{
    enum custos_err rc;

    pthread_mutex_lock(&v->kr_mu);
    sodium_mprotect_readwrite(v->sec);
    randombytes_buf(v->sec->master[slot], CUSTOS_KEY_BYTES);
    sodium_mprotect_readonly(v->sec);
    pthread_mutex_unlock(&v->kr_mu);
    if ((rc = custos_keyfile_write(path, "master key", v->sec->master[slot]))) {
        pthread_mutex_lock(&v->kr_mu);
        sodium_mprotect_readwrite(v->sec);
        sodium_memzero(v->sec->master[slot], CUSTOS_KEY_BYTES);
        sodium_mprotect_readonly(v->sec);
        pthread_mutex_unlock(&v->kr_mu);
        return rc;
    }
    pthread_mutex_lock(&v->kr_mu);
    sodium_mprotect_readwrite(v->sec);
    v->sec->master_kv[slot] = kv; /* holders find it from here on */
    sodium_mprotect_readonly(v->sec);
    pthread_mutex_unlock(&v->kr_mu);
    return CUSTOS_OK;
}

/* Step 2's switch: `to` becomes current, then wait until no wrap under another version is in
   flight (each holds its version until its key is committed), so the re-wrap scan sees them. */
static void make_current(struct custos_vault *v, uint32_t to)
{
    int i, busy;

    pthread_mutex_lock(&v->kr_mu);
    v->current_kv = to;
    do {
        for (busy = 0, i = 0; i < CUSTOS_MAX_KEY_VERSIONS; i++)
            if (v->sec->master_kv[i] != to && v->kr_wrapping[i])
                busy = 1;
        if (busy)
            pthread_cond_wait(&v->kr_cv, &v->kr_mu);
    } while (busy);
    pthread_mutex_unlock(&v->kr_mu);
}

/* Step 4's wipe of a slot: no new holder, wait for the ones there are, then zero it. */
static void slot_retire(struct custos_vault *v, int slot)
{
    pthread_mutex_lock(&v->kr_mu);
    v->kr_retiring[slot] = 1;
    while (v->kr_users[slot])
        pthread_cond_wait(&v->kr_cv, &v->kr_mu);
    pthread_mutex_unlock(&v->kr_mu);
}

static void slot_wipe(struct custos_vault *v, int slot)
{
    pthread_mutex_lock(&v->kr_mu);
    sodium_mprotect_readwrite(v->sec);
    sodium_memzero(v->sec->master[slot], CUSTOS_KEY_BYTES);
    v->sec->master_kv[slot] = 0;
    sodium_mprotect_readonly(v->sec);
    v->kr_retiring[slot] = 0;
    pthread_mutex_unlock(&v->kr_mu);
}

/* ---- the rotation's state while serving ----------------------------------------------------- */

enum rot_state { ROT_STARTING = 1, ROT_RUNNING, ROT_DONE, ROT_FAILED, ROT_STOPPED };

/* What GET /v1/keys tells of the last rotation. */
struct rot_record {
    enum rot_state state;
    struct custos_rotate_stats st;
    int64_t started_at, finished_at;
    enum custos_err err;
    char msg[256];
    struct custos_caller who;
    int recovered; /* resumed at a start, as the local operator */
    int reported;  /* custos_keys_report told of its end */
};

struct custos_rotation {
    pthread_t thread;
    int joinable;
    atomic_int stop;
    struct rot_record rec;  /* under v->kr_mu */
    struct rot_record prev; /* what a claim given back restores */
};

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
    size_t n, cap;
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
    return ++rw->n == rw->cap;
}

/* The rotation's own thread reads the slots without kr_mu: it is the only one that changes them. */
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

/* Where a rotation starts from: the oldest version below the current one still loaded (a
   rotation stopped after its switch), else the current one. */
static uint32_t from_version(const struct custos_vault *v)
{
    uint32_t m = v->current_kv;
    int i;

    for (i = 0; i < CUSTOS_MAX_KEY_VERSIONS; i++)
        if (v->sec->master_kv[i] && v->sec->master_kv[i] < m)
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

/* Step 4 on its own, for versions below the one in use: the destroy of each such file, once no
   thread holds its key (serving: a read that fetched a key row before the re-wrap may still be
   opening it), then the wipe of the key. */
static enum custos_err destroy_below(struct custos_vault *v, uint32_t current, uint64_t *destroyed)
{
    char path[PATH_MAX + 64];
    enum custos_err rc;
    int i;

    for (i = 0; i < CUSTOS_MAX_KEY_VERSIONS; i++) {
        uint32_t kv = v->sec->master_kv[i];

        if (!kv || kv >= current)
            continue;
        slot_retire(v, i);
        snprintf(path, sizeof(path), "%s/keys/master-%u.key", v->dir, kv);
        if ((rc = custos_keyfile_destroy(path))) {
            pthread_mutex_lock(&v->kr_mu);
            v->kr_retiring[i] = 0; /* still there: usable again */
            pthread_mutex_unlock(&v->kr_mu);
            return rc;
        }
        slot_wipe(v, i);
        (*destroyed)++;
    }
    return CUSTOS_OK;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Truncate the control plane's log before old master key files are destroyed: until then its old
   pages hold every key wrapped under the old versions (the data plane holds no wrapped key, so
   its readers, a backup among them, do not hold this back).  Offline, busy readers (LOCKED) do
   not stop the destroy, as before: only a reader of the control plane, which no other process
   has while the vault's lock is held, can keep it.  Serving, the readers are this process's
   request threads, whose snapshots end within a turn: try again for key_flush_ms, and give up
   (keeping the old key) rather than destroy it with its wraps still in the log.  *halted: the
   stop flag ended it. */
static enum custos_err flush_before_destroy(struct custos_vault *v, struct custos_store_conn *c,
                                           const atomic_int *stop, int *halted)
{
    struct timespec pause = {0, FLUSH_PAUSE_MS * 1000000L};
    uint64_t until = mono_ms() + v->key_flush_ms;
    enum custos_err rc;

    while ((rc = v->ops->compact_log(c, CUSTOS_PLANE_CONTROL)) == CUSTOS_ERR_LOCKED) {
        custos_err_clear();
        if (!stop)
            return CUSTOS_OK;
        if (atomic_load(stop)) {
            *halted = 1;
            return custos_err_set(CUSTOS_ERR_UNAVAILABLE, "the server stopped during the rotation; its next start "
                                  "resumes it");
        }
        if (mono_ms() >= until)
            return custos_err_set(CUSTOS_ERR_UNAVAILABLE, "the database logs stayed busy, so the old master key "
                                  "is kept; POST /v1/keys/rotate again to finish");
        nanosleep(&pause, NULL);
    }
    return rc;
}

/* What is left of a rotation: an older version loaded (something still under it, or the open
   would have destroyed it) or a newer one not current yet. */
static int unfinished(const struct custos_vault *v)
{
    int i;

    for (i = 0; i < CUSTOS_MAX_KEY_VERSIONS; i++)
        if (v->sec->master_kv[i] && v->sec->master_kv[i] != v->current_kv)
            return 1;
    return 0;
}

/* Publish progress (serving) and tell whether to stop. */
static int progress(struct custos_vault *v, const struct custos_rotate_stats *st, const atomic_int *stop)
{
    if (!stop)
        return 0;
    pthread_mutex_lock(&v->kr_mu);
    {
        int resumed = v->rot->rec.st.resumed; /* the claim's: step 1 may have been its own */

        v->rot->rec.st = *st;
        v->rot->rec.st.resumed = resumed;
    }
    pthread_mutex_unlock(&v->kr_mu);
    return atomic_load(stop);
}

/* The steps.  stop: NULL offline (custos keys rotate), else the serving thread's stop flag;
   *halted is set when that flag ended it (its error is then UNAVAILABLE). */
static enum custos_err rotate(struct custos_vault *v, struct custos_store_conn *c, struct custos_rotate_stats *st,
                              const atomic_int *stop, int *halted)
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

    st->from_version = from_version(v);
    st->to_version = newest_version(v);
    if ((rc = v->ops->key_count_below(c, v->current_kv, &left)))
        return rc;
    /* resumed: a newer version not current yet, an older one still loaded (keys under it, or a
       destroy that a busy flush put off), or keys under an older one */
    st->resumed = unfinished(v) || left > 0;
    if (!st->resumed) {
        /* 1. a new version */
        slot = free_slot(v);
        if (slot < 0)
            return custos_err_set(CUSTOS_ERR_CORRUPT, "too many master key versions present");
        st->to_version = v->current_kv + 1;
        snprintf(path, sizeof(path), "%s/keys/master-%u.key", v->dir, st->to_version);
        if ((rc = slot_fill(v, slot, st->to_version, path)))
            return rc;
    }
    progress(v, st, stop);
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
    }
    /* serving: also when resuming, wraps under the old version may be in flight (none offline) */
    make_current(v, st->to_version);
    /* 3. re-wrap in batches */
    memset(&rw, 0, sizeof(rw));
    rw.v = v;
    rw.c = c;
    rw.to = st->to_version;
    rw.cap = stop ? REWRAP_BATCH_SERVING : REWRAP_BATCH;
    rw.batch = malloc(rw.cap * sizeof(*rw.batch));
    if (!rw.batch)
        return CUSTOS_ERR_NOMEM;
    for (;;) {
        size_t k;

        rw.n = 0;
        rw.rc = CUSTOS_OK;
        if ((rc = v->ops->begin(c, CUSTOS_PLANE_CONTROL)))
            break;
        /* resume after the last key of the previous batch: one pass over the table */
        rc = v->ops->key_scan_below(c, rw.to, have_last ? last : NULL, last_gen, (unsigned)rw.cap, collect, &rw);
        if (!rc)
            rc = rw.rc;
        for (k = 0; !rc && k < rw.n; k++)
            rc = rewrap_one(&rw, &rw.batch[k]);
        if (rc || (rc = v->ops->commit(c, CUSTOS_PLANE_CONTROL))) {
            v->ops->rollback(c, CUSTOS_PLANE_CONTROL);
            break;
        }
        st->rewrapped = rw.done;
        if (rw.n < rw.cap)
            break;
        if (progress(v, st, stop)) {
            *halted = 1;
            rc = custos_err_set(CUSTOS_ERR_UNAVAILABLE, "the server stopped during the rotation; its next start "
                                "resumes it");
            break;
        }
        memcpy(last, rw.batch[rw.n - 1].id, 16);
        last_gen = rw.batch[rw.n - 1].gen;
        have_last = 1;
    }
    sodium_memzero(rw.batch, rw.cap * sizeof(*rw.batch));
    free(rw.batch);
    if (rc)
        return rc;
    {
        uint64_t nret = 0;

        if ((rc = custos_retention_rewrap(v, c, rw.to, &nret)))
            return rc;
        st->retention_rewrapped = nret;
    }
    progress(v, st, stop);
    if ((rc = v->ops->key_count_below(c, rw.to, &left)))
        return rc;
    if (left)
        return custos_err_set(CUSTOS_ERR_INTERNAL, "%llu subject keys are still under an old version",
                              (unsigned long long)left);
    /* 4. destroy what nothing uses any more, once the database logs are flushed: until then the
       old pages of control.db (and its log) still hold every key wrapped under the old versions,
       and a crash between the destroy and the flush would leave them there with the old key file
       gone, so that the rotation looks done while an old copy of that key still opens them */
    if ((rc = flush_before_destroy(v, c, stop, halted)) || (rc = destroy_below(v, rw.to, &st->destroyed_versions)))
        return rc;
    progress(v, st, stop);
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
        return CUSTOS_OK; /* a rotation still re-wrapping: `custos keys rotate` or serve resumes it */
    }
    custos_caller_system(&sys);
    custos_event_init(&e, "keys.rotate", &sys);
    e.ok_reason = "recovered";
    snprintf(target, sizeof(target), "master-key v%u -> v%u", oldest, v->current_kv);
    e.target = target;
    rc = flush_before_destroy(v, conn, NULL, NULL); /* as in rotate(): no old key file goes before the log is flushed */
    if (!rc)
        rc = destroy_below(v, v->current_kv, &destroyed);
    if (!rc && (rc = v->ops->compact_logs(conn)) == CUSTOS_ERR_LOCKED)
        rc = CUSTOS_OK;
    v->ops->release(v->store, conn);
    return custos_audit_outcome(v, &e, rc);
}

static void rotate_target(char target[48], const struct custos_rotate_stats *st)
{
    snprintf(target, 48, "master-key v%u -> v%u", st->from_version, st->to_version);
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
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "key rotation runs on the data directory (custos keys rotate) or "
                            "in the server (POST /v1/keys/rotate)");
        goto done;
    }
    if ((rc = v->ops->acquire(v->store, &conn)))
        goto done;
    rc = rotate(v, conn, out, NULL, NULL);
    v->ops->release(v->store, conn);
    rotate_target(target, out);
    e.target = target;
    e.count = (int64_t)out->rewrapped;
done:
    return custos_audit_outcome(v, &e, rc);
}

/* ---- serving: the rotation's thread --------------------------------------------------------- */

static void *rotation_main(void *arg)
{
    struct custos_vault *v = arg;
    struct custos_rotation *r = v->rot;
    struct custos_store_conn *conn = NULL;
    struct custos_rotate_stats st;
    struct custos_event e;
    char target[48];
    enum custos_err rc;
    enum rot_state end;
    int halted = 0;

    memset(&st, 0, sizeof(st));
    if (!(rc = v->ops->acquire(v->store, &conn))) {
        rc = rotate(v, conn, &st, &r->stop, &halted);
        v->ops->release(v->store, conn);
    }
    custos_event_init(&e, "keys.rotate", &r->rec.who);
    if (r->rec.recovered)
        e.ok_reason = "recovered";
    if (halted)
        e.reason = "stopped";
    rotate_target(target, &st);
    e.target = target;
    e.count = (int64_t)st.rewrapped;
    rc = custos_audit_outcome(v, &e, rc);
    /* done only when its outcome is in the ledger too */
    end = rc == CUSTOS_OK ? ROT_DONE : halted ? ROT_STOPPED : ROT_FAILED;
    pthread_mutex_lock(&v->kr_mu);
    st.resumed = r->rec.st.resumed;
    r->rec.st = st;
    r->rec.state = end;
    r->rec.err = rc;
    custos_strcopy(r->rec.msg, sizeof(r->rec.msg), rc ? custos_err_msg(rc) : "", rc ? strlen(custos_err_msg(rc)) : 0);
    r->rec.finished_at = (int64_t)custos_now(v);
    pthread_mutex_unlock(&v->kr_mu);
    custos_err_clear();
    v->ops->thread_done(v->store); /* its connection serves the next thread */
    return NULL;
}

static int busy(const struct custos_rotation *r)
{
    return r && (r->rec.state == ROT_STARTING || r->rec.state == ROT_RUNNING);
}

/* Claim the rotation (kr_mu held, none running): state `starting`, what it will do; the caller
   then launches it or gives it back (rotation_giveback).  Whoever holds the claim is the only
   one that may change the key slots. */
static enum custos_err rotation_claim(struct custos_vault *v, const struct custos_caller *who, int recovered)
{
    struct custos_rotation *r = v->rot;

    if (v->kr_closed)
        return custos_err_set(CUSTOS_ERR_UNAVAILABLE, "the server is stopping");
    if (busy(r))
        return custos_err_set(CUSTOS_ERR_EXISTS, "a rotation is already running (GET /v1/keys shows how far it is)");
    if (!r && !(r = v->rot = calloc(1, sizeof(*r))))
        return CUSTOS_ERR_NOMEM;
    if (r->joinable) { /* the last one has ended (its state says so): collect it */
        pthread_join(r->thread, NULL);
        r->joinable = 0;
    }
    r->prev = r->rec;
    memset(&r->rec, 0, sizeof(r->rec));
    r->rec.st.resumed = unfinished(v);
    r->rec.st.from_version = from_version(v);
    r->rec.st.to_version = r->rec.st.resumed ? newest_version(v) : v->current_kv + 1;
    r->rec.who = *who;
    r->rec.recovered = recovered;
    r->rec.started_at = (int64_t)custos_now(v);
    atomic_store(&r->stop, 0);
    r->rec.state = ROT_STARTING;
    return CUSTOS_OK;
}

/* Nothing was started after all: the record is what it was (kr_mu held). */
static void rotation_giveback(struct custos_vault *v)
{
    v->rot->rec = v->rot->prev;
}

/* Start the claimed rotation's thread (kr_mu held); on failure the claim is given back. */
static enum custos_err rotation_launch(struct custos_vault *v)
{
    struct custos_rotation *r = v->rot;

    if (custos_thread_create(&r->thread, rotation_main, v) != 0) {
        rotation_giveback(v);
        return custos_err_set(CUSTOS_ERR_IO, "cannot start the rotation's thread");
    }
    r->joinable = 1;
    r->rec.state = ROT_RUNNING;
    return CUSTOS_OK;
}

/* Step 1 for a claimed rotation that is not resuming: the new version's key, in its file and in a
   slot (the thread then finds it and goes on from step 2, as after an interruption). */
static enum custos_err new_version(struct custos_vault *v, uint32_t kv)
{
    char path[PATH_MAX + 64];
    int slot = free_slot(v);

    if (slot < 0)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "too many master key versions present");
    snprintf(path, sizeof(path), "%s/keys/master-%u.key", v->dir, kv);
    return slot_fill(v, slot, kv, path);
}

/* The status document (kr_mu held). */
static json_t *status_json(struct custos_vault *v)
{
    static const char *const names[] = {"", "running", "running", "done", "failed", "stopped"};
    struct custos_rotation *r = v->rot;
    json_t *o = json_object(), *vs = json_array(), *rot;
    char when[32];
    uint32_t sorted[CUSTOS_MAX_KEY_VERSIONS];
    size_t n = 0, i, j;

    for (i = 0; i < CUSTOS_MAX_KEY_VERSIONS; i++)
        if (v->sec->master_kv[i] && !v->kr_retiring[i]) {
            for (j = n++; j > 0 && sorted[j - 1] > v->sec->master_kv[i]; j--)
                sorted[j] = sorted[j - 1];
            sorted[j] = v->sec->master_kv[i];
        }
    for (i = 0; vs && i < n; i++)
        json_array_append_new(vs, json_integer(sorted[i]));
    if (!o || !vs || json_object_set_new(o, "current_version", json_integer(v->current_kv)) ||
        json_object_set_new(o, "versions", vs)) {
        json_decref(o);
        return NULL;
    }
    if (!r || !r->rec.state)
        return json_object_set_new(o, "rotation", json_null()) ? (json_decref(o), NULL) : o;
    custos_time_format(when, r->rec.started_at);
    rot = json_pack("{s:s, s:I, s:I, s:b, s:s, s:o, s:I, s:I, s:I}", "state", names[r->rec.state], "from_version",
                    (json_int_t)r->rec.st.from_version, "to_version", (json_int_t)r->rec.st.to_version, "resumed",
                    r->rec.st.resumed, "started_at", when, "finished_at", json_null(), "rewrapped",
                    (json_int_t)r->rec.st.rewrapped, "retention_rewrapped", (json_int_t)r->rec.st.retention_rewrapped,
                    "destroyed_versions", (json_int_t)r->rec.st.destroyed_versions);
    if (rot && r->rec.finished_at) {
        custos_time_format(when, r->rec.finished_at);
        json_object_set_new(rot, "finished_at", json_string(when));
    }
    if (rot && r->rec.err)
        json_object_set_new(rot, "error", json_pack("{s:s, s:s}", "code", custos_err_api_code(r->rec.err), "message",
                                                     r->rec.msg));
    if (!rot || json_object_set_new(o, "rotation", rot)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

enum custos_err custos_keys_rotate_parse(const char *body, size_t len)
{
    static const char *const none[] = {NULL};
    json_t *j = NULL;
    enum custos_err rc = CUSTOS_OK;

    if (len && !(rc = custos_json_parse(body, len, CUSTOS_BODY_MAX, 0, &j))) /* no member: nothing to choose */
        rc = custos_json_only(j, none, "request");
    json_decref(j);
    return rc;
}

/*
 * The request's entry is durable before anything happens (no audit, no rotation): claim the
 * rotation (a second request gets 409 meanwhile), record `started`, make the new version's key
 * file (step 1), then launch the rest in a thread and answer 202: a crash after the answer
 * leaves a rotation the next start resumes.  A ledger that refuses the entry leaves everything
 * as it was (503); a stop that came meanwhile launches nothing (503, outcome `stopped`; a key
 * file already made is resumed by the next start like any interrupted rotation).
 */
enum custos_err custos_keys_rotate_start(struct custos_vault *v, const struct custos_caller *c, const char *body,
                                         size_t len, json_t **out)
{
    struct custos_event e;
    struct custos_rotate_stats plan;
    char target[48];
    enum custos_err rc = CUSTOS_OK;
    int closed;

    *out = NULL;
    custos_event_init(&e, "keys.rotate", c);
    e.ok_reason = "started";
    if (!custos_caller_may(v, c, CUSTOS_OP_KEYS_MANAGE)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "key rotation needs keys.manage (admin)");
        goto refused;
    }
    if ((rc = custos_keys_rotate_parse(body, len)))
        goto refused;
    pthread_mutex_lock(&v->kr_mu);
    if (!(rc = rotation_claim(v, c, 0)))
        plan = v->rot->rec.st;
    pthread_mutex_unlock(&v->kr_mu);
    if (rc)
        goto refused;
    rotate_target(target, &plan);
    e.target = target;
    e.result = CUSTOS_RESULT_OK;
    if (custos_audit_durable(v, &e, NULL)) {
        pthread_mutex_lock(&v->kr_mu);
        rotation_giveback(v);
        pthread_mutex_unlock(&v->kr_mu);
        return custos_err_set(CUSTOS_ERR_UNAVAILABLE, "the ledger cannot record the rotation: nothing was done");
    }
    pthread_mutex_lock(&v->kr_mu);
    closed = v->kr_closed; /* a stop while the entry was written: no key file either */
    pthread_mutex_unlock(&v->kr_mu);
    /* the claim is this thread's alone: no lock needed to change a slot (slot_fill takes it) */
    if (!closed && !plan.resumed)
        rc = new_version(v, plan.to_version);
    pthread_mutex_lock(&v->kr_mu);
    if (!rc && v->kr_closed) { /* a stop came meanwhile (kr_closed stays set): it found nothing to stop */
        rc = custos_err_set(CUSTOS_ERR_UNAVAILABLE, "the server is stopping");
        e.reason = "stopped";
    }
    if (rc)
        rotation_giveback(v);
    else if (!(rc = rotation_launch(v))) {
        if (!(*out = status_json(v)))
            rc = CUSTOS_ERR_NOMEM; /* it runs anyway; GET /v1/keys shows it (its outcome, its own entry) */
        pthread_mutex_unlock(&v->kr_mu);
        return rc;
    }
    pthread_mutex_unlock(&v->kr_mu);
    /* recorded as started, never launched: say so */
    e.ok_reason = NULL;
    return custos_audit_outcome(v, &e, rc);
refused:
    return custos_audit_finish(v, &e, rc, out);
}

enum custos_err custos_keys_status(struct custos_vault *v, const struct custos_caller *c, json_t **out)
{
    struct custos_event e;
    enum custos_err rc = CUSTOS_OK;

    *out = NULL;
    custos_event_init(&e, "keys.status", c);
    if (!custos_caller_may(v, c, CUSTOS_OP_KEYS_MANAGE)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "key status needs keys.manage (admin)");
        goto done;
    }
    pthread_mutex_lock(&v->kr_mu);
    *out = status_json(v);
    pthread_mutex_unlock(&v->kr_mu);
    if (!*out)
        rc = CUSTOS_ERR_NOMEM;
done:
    return custos_audit_finish(v, &e, rc, out);
}

int custos_keys_report(struct custos_vault *v, char *line, size_t cap)
{
    struct rot_record *r;
    int told = 0;

    if (!v->kr_ready)
        return 0;
    pthread_mutex_lock(&v->kr_mu);
    r = v->rot ? &v->rot->rec : NULL;
    if (r && !r->reported && (r->state == ROT_DONE || r->state == ROT_FAILED || r->state == ROT_STOPPED)) {
        if (r->state == ROT_DONE)
            snprintf(line, cap, "master key rotation v%u -> v%u done: %llu subject key(s) and %llu retention key(s) "
                     "re-wrapped, %llu old version(s) destroyed", r->st.from_version, r->st.to_version,
                     (unsigned long long)r->st.rewrapped, (unsigned long long)r->st.retention_rewrapped,
                     (unsigned long long)r->st.destroyed_versions);
        else
            snprintf(line, cap, "master key rotation v%u -> v%u %s after %llu subject key(s): %s", r->st.from_version,
                     r->st.to_version, r->state == ROT_FAILED ? "failed" : "stopped",
                     (unsigned long long)r->st.rewrapped, r->msg);
        r->reported = told = 1;
    }
    pthread_mutex_unlock(&v->kr_mu);
    return told;
}

int custos_keys_resume(struct custos_vault *v)
{
    struct custos_caller sys;
    int started = 0;

    custos_caller_system(&sys);
    pthread_mutex_lock(&v->kr_mu);
    /* no entry first: like `custos keys rotate` resuming, its outcome entry says `recovered` */
    if (unfinished(v) && !busy(v->rot)) {
        if (rotation_claim(v, &sys, 1) || rotation_launch(v))
            custos_err_clear(); /* serving goes on; GET /v1/keys shows the versions left */
        else
            started = 1;
    }
    pthread_mutex_unlock(&v->kr_mu);
    return started;
}

void custos_keys_stop(struct custos_vault *v)
{
    struct custos_rotation *r;
    pthread_t t;
    int join = 0;

    if (!v->kr_ready)
        return;
    pthread_mutex_lock(&v->kr_mu);
    v->kr_closed = 1;
    r = v->rot;
    if (r) {
        atomic_store(&r->stop, 1);
        if ((join = r->joinable)) { /* claimed here: one join, whoever calls */
            t = r->thread;
            r->joinable = 0;
        }
    }
    pthread_mutex_unlock(&v->kr_mu);
    if (join)
        pthread_join(t, NULL);
}

void custos_keyring_free(struct custos_vault *v)
{
    if (!v->kr_ready)
        return;
    custos_keys_stop(v);
    free(v->rot);
    v->rot = NULL;
    pthread_cond_destroy(&v->kr_cv);
    pthread_mutex_destroy(&v->kr_mu);
    v->kr_ready = 0;
}

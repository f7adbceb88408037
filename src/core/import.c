/*
 * import.c - bulk load of subjects from JSON lines.
 *
 * Pipeline: the calling thread reads and cuts the input into jobs of whole
 * lines; worker threads parse, validate and seal each line (the CPU work);
 * two writer threads store commit groups of sealed subjects, sorted by id:
 * the key writer stages the group's keys in the control plane, commits, and
 * queues one `subject.import` ledger event per subject; then the record
 * writer stages the group's records (data plane), waits until those events
 * are durable and commits.  Staged subjects are invisible (store.h, "bulk
 * load"): at each publish_step (1,048,576 subjects, then doubling) and at
 * the end they are published, each plane in one synced transaction that
 * indexes them in key order, both at once: the key writer publishes the
 * keys while the record writer publishes the same groups' records, whose
 * commit waits for the keys' (keys_ready).  The key writer, idle most of the
 * time, also checkpoints the data plane's log after each group, so that copy
 * is off the record writer, the longest stage.  A crash leaves staged
 * subjects complete (key, record, ledger event) and the next open publishes
 * them, keys first.
 * Queues between stages are bounded, so memory stays flat whatever the
 * input size.
 *
 * A bad line is rejected (reported with its number and reason, never its
 * content) and the import goes on.
 *
 * Resuming (custos_import's flags): batches reach the key writer in any order
 * and it forms groups of them in input order (a worker does not start a job
 * more than ORDER_WINDOW ahead of the next one the key writer needs, so the
 * reordering is bounded), so a group is a run of whole lines.  The record
 * writer commits, with each group's records, the import's mark (the group's
 * last line and a keyed BLAKE2b-256 digest of the input up to the end of
 * that line: keyed, so that the data plane holds no test for guessed input),
 * deleted when the import ends well.  A resumed import reads the input again
 * from its start, hashes the lines up to the mark without handing them on,
 * and stops before storing anything if the digest differs.
 *
 * Lines (custos_import_split, custos_import_line): the input is cut at each
 * '\n', and one '\r' before it is dropped (CRLF files); a last line without
 * '\n' is a line; an empty line is counted and skipped, not rejected; a NUL
 * byte is a byte of its line (which JSON then refuses).  A line is numbered
 * from 1 in the input, whatever read(2) and the jobs cut it into.
 *
 * Must never: hold plaintext after sealing a line (buffers are wiped), store
 * a record before its key or publish it before its key, report success for
 * a batch not committed, let the mark claim a line whose group's records are
 * not committed in the same transaction, or hash the input without the key.
 */
#include "core/vault_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/json.h"
#include "core/thread.h"

#include "custos/banned.h"

#define JOB_LINES 256
#define JOB_BYTES (256u << 10) /* a job's text buffer, grown for longer lines */
#define QUEUE_DEPTH 8
#define READ_CHUNK (1u << 20)
#define LINE_MAX_BYTES CUSTOS_BODY_MAX
/* the reason a line over the cap is rejected with, whether the reader skipped it or held it */
#define LINE_TOO_LONG "line exceeds 65536 bytes"
_Static_assert(LINE_MAX_BYTES == 65536, "LINE_TOO_LONG names the cap");
#define COMMIT_EVERY 8192
/* Staged subjects are published (made visible, indexed in key order) once PUBLISH_MIN of them
   are staged, and after that once as many are staged as this import has published already.  A
   publish rewrites every page of the indexes it adds to, so a fixed step would make an import's
   index writes grow with the square of its size; doubling keeps them proportional to it (each
   entry is rewritten O(1) times on average, LSM-style).  The sort a publish takes spills to
   temporary files (store: bulk connections), so memory does not grow with the step. */
#define PUBLISH_MIN (128 * COMMIT_EVERY) /* 1,048,576 */
/* Jobs a worker may be ahead of the first one the key writer still waits for: more than the
   jobs that can be queued or in the workers' hands, so it only holds back a runaway. */
#define ORDER_WINDOW 64
#define MARK_VERSION 1
#define MARK_BYTES (1 + 8 + 8 + 8 + 32)
/* What an import leaves when it finished (meta `import_done`, the mark's layout with this
   version byte): the head's length, lines, imported, the head's keyed digest, so that the same
   input imported again is refused.  Without it, an import killed after its last commit but
   before it printed its summary looked like an interrupted one to whoever ran it, and running
   it again stored every line a second time.  A row of its own: an import that fails or stores
   nothing leaves it as it was. */
#define MARK_DONE 2
#define HEAD_MAX 65536 /* the head: the input's first bytes, up to this many */

/* Staged subjects that make a publish, given how many this import has published. */
static uint64_t publish_step(uint64_t published)
{
    return published > PUBLISH_MIN ? published : PUBLISH_MIN;
}

/* Batches alive at once: three commit groups (one being built, one queued, one being written),
   a full queue and one per worker.  The pool keeps every one of them, so a long import never
   frees and reallocates them (which fragmented the heap and made memory grow with the count). */
#define BATCHES_MAX (3 * (COMMIT_EVERY / JOB_LINES + 1) + QUEUE_DEPTH + 16 + 4)

/* ---- a bounded queue of pointers ------------------------------------------------------------ */

struct queue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    void *item[QUEUE_DEPTH];
    size_t head, n, depth; /* depth <= QUEUE_DEPTH */
    int closed;
};

static void q_init(struct queue *q, size_t depth)
{
    memset(q, 0, sizeof(*q));
    q->depth = depth;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
}

static void q_destroy(struct queue *q)
{
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
}

static void q_push(struct queue *q, void *p)
{
    pthread_mutex_lock(&q->mu);
    while (q->n == q->depth)
        pthread_cond_wait(&q->not_full, &q->mu);
    q->item[(q->head + q->n) % QUEUE_DEPTH] = p;
    q->n++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

/* NULL once closed and drained. */
static void *q_pop(struct queue *q)
{
    void *p = NULL;

    pthread_mutex_lock(&q->mu);
    while (q->n == 0 && !q->closed)
        pthread_cond_wait(&q->not_empty, &q->mu);
    if (q->n) {
        p = q->item[q->head];
        q->head = (q->head + 1) % QUEUE_DEPTH;
        q->n--;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->mu);
    return p;
}

static void q_close(struct queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

/* ---- jobs and sealed batches ---------------------------------------------------------------- */

/* How far an import has stored its input (the data plane's `import_mark`, MARK_BYTES):
   version, line, bytes, imported, digest; integers big-endian. */
struct mark {
    uint64_t line;      /* every line up to this one is stored, rejected or blank */
    uint64_t bytes;     /* the input's bytes up to the end of that line */
    uint64_t imported;  /* subjects stored up to it, over every run of this import */
    uint8_t digest[32]; /* BLAKE2b-256 of those bytes, keyed with the vault's import_key */
};

static void mark_encode(const struct mark *m, uint8_t version, uint8_t out[MARK_BYTES])
{
    out[0] = version;
    custos_put_be64(out + 1, m->line);
    custos_put_be64(out + 9, m->bytes);
    custos_put_be64(out + 17, m->imported);
    memcpy(out + 25, m->digest, 32);
}

/* version: MARK_VERSION (import_mark) or MARK_DONE (import_done: bytes = the head's length,
   digest = the head's). */
static enum custos_err mark_decode(const uint8_t *p, size_t len, uint8_t version, struct mark *m)
{
    if (len != MARK_BYTES || p[0] != version)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "the record of %s import is unreadable (restart forgets it)",
                              version == MARK_DONE ? "the last finished" : "an interrupted");
    m->line = custos_get_be64(p + 1);
    m->bytes = custos_get_be64(p + 9);
    m->imported = custos_get_be64(p + 17);
    memcpy(m->digest, p + 25, 32);
    return CUSTOS_OK;
}

/* Put (m) or delete (NULL) the mark in the data plane, in a transaction of its own when `own`. */
static enum custos_err mark_put(struct custos_vault *v, struct custos_store_conn *c, const struct mark *m, int own)
{
    uint8_t b[MARK_BYTES];
    enum custos_err rc;

    if (m)
        mark_encode(m, MARK_VERSION, b);
    if (own && (rc = v->ops->begin(c, CUSTOS_PLANE_DATA)))
        return rc;
    rc = v->ops->import_mark_put(c, m ? b : NULL, sizeof(b));
    if (own) {
        if (!rc)
            rc = v->ops->commit(c, CUSTOS_PLANE_DATA);
        if (rc)
            v->ops->rollback(c, CUSTOS_PLANE_DATA);
    }
    return rc;
}

struct job {
    char *text;          /* whole lines, each ending in '\n' (the last may not) */
    size_t len, cap;
    uint64_t first_line; /* 1-based number of the first line */
    uint64_t seq;        /* 0, 1, ... in input order */
    struct mark end;     /* the input up to the end of the job's last line */
};

struct sealed {
    uint8_t id[16];
    uint8_t wrapped[CUSTOS_WRAPPED_BYTES];
    uint32_t kv;
    struct custos_blind blind[4];
    size_t nblind;
    size_t off, len;     /* record bytes in the batch arena */
    size_t ev_off, ev_len; /* its subject.import event, encoded, in the arena */
    uint8_t leaf[32];      /* the event's ledger leaf hash */
};

struct batch {
    struct sealed *item;
    size_t n;
    struct custos_buf arena;
    uint64_t seq;    /* its job's */
    struct mark end; /* its job's */
};

struct import {
    struct custos_vault *v;
    const struct custos_caller *caller;
    struct queue jobs, batches, groups;
    pthread_mutex_t pool_mu;   /* free batches and jobs, reused: no allocation per batch or job */
    void *pool[BATCHES_MAX];             /* struct batch *, free for reuse */
    size_t npool;
    void *jpool[2 * QUEUE_DEPTH + 4];    /* struct job *, free for reuse */
    size_t njpool;
    pthread_mutex_t cb_mu;
    void (*bad)(void *ctx, uint64_t line, const char *reason);
    void *ctx;
    atomic_ullong lines, imported, rejected;
    atomic_int failed;   /* a storage failure stops the import */
    /* input order: the key writer takes batches in job order; workers wait within the window */
    pthread_mutex_t order_mu;
    pthread_cond_t order_cv;
    uint64_t next_seq;       /* the job the key writer needs next (under order_mu) */
    uint64_t imported_base;  /* a resumed import: subjects stored before */
    /* publishing: the key writer publishes the staged keys, the record writer the records up to
       the same group; a records publish commits only once keys_published reaches its last group */
    pthread_mutex_t pub_mu;
    pthread_cond_t pub_cv;
    uint64_t keys_published; /* sequence number of the last group whose keys are published */
    int keys_final;          /* the key writer has published for the last time (or given up) */
    enum custos_err fail_rc;
    char fail_msg[256];
};

static void reject(struct import *im, uint64_t line, const char *reason)
{
    atomic_fetch_add(&im->rejected, 1);
    if (!im->bad)
        return;
    pthread_mutex_lock(&im->cb_mu);
    im->bad(im->ctx, line, reason);
    pthread_mutex_unlock(&im->cb_mu);
}

static void job_free(struct job *j)
{
    if (!j)
        return;
    sodium_memzero(j->text, j->len);
    free(j->text);
    free(j);
}

/* A job able to hold n bytes: from the pool, or new.  NULL when out of memory. */
static struct job *job_get(struct import *im, size_t n)
{
    struct job *j = NULL;

    pthread_mutex_lock(&im->pool_mu);
    if (im->njpool)
        j = im->jpool[--im->njpool];
    pthread_mutex_unlock(&im->pool_mu);
    if (!j && !(j = calloc(1, sizeof(*j))))
        return NULL;
    if (j->cap < n) {
        free(j->text); /* wiped when it was put back */
        j->cap = n < JOB_BYTES ? JOB_BYTES : n;
        if (!(j->text = malloc(j->cap))) {
            free(j);
            return NULL;
        }
    }
    j->len = 0;
    return j;
}

/* Keep p in a free list of cap slots (under pool_mu); 0 when the list is full. */
static int pool_keep(struct import *im, void **slots, size_t *n, size_t cap, void *p)
{
    int kept = 0;

    pthread_mutex_lock(&im->pool_mu);
    if (*n < cap) {
        slots[(*n)++] = p;
        kept = 1;
    }
    pthread_mutex_unlock(&im->pool_mu);
    return kept;
}

/* Wipe a job's text (plaintext input) and keep it for reuse. */
static void job_put(struct import *im, struct job *j)
{
    sodium_memzero(j->text, j->len);
    j->len = 0;
    if (!pool_keep(im, im->jpool, &im->njpool, sizeof(im->jpool) / sizeof(im->jpool[0]), j))
        job_free(j);
}

static void batch_free(struct batch *b)
{
    if (!b)
        return;
    /* sealed records and wrapped keys only: nothing here is plaintext */
    free(b->arena.p);
    free(b->item);
    free(b);
}

/* A batch ready for a worker: from the pool, or new. */
static struct batch *batch_get(struct import *im)
{
    struct batch *b = NULL;

    pthread_mutex_lock(&im->pool_mu);
    if (im->npool)
        b = im->pool[--im->npool];
    pthread_mutex_unlock(&im->pool_mu);
    if (b) {
        b->n = 0;
        b->arena.len = 0;
        return b;
    }
    b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->item = calloc(JOB_LINES, sizeof(*b->item));
    custos_buf_init(&b->arena, 64u << 20);
    /* one allocation per batch for its life: a record and its event take ~1.2 KiB */
    if (!b->item || custos_buf_reserve(&b->arena, JOB_LINES * 1536u)) {
        batch_free(b);
        return NULL;
    }
    return b;
}

static void batch_put(struct import *im, struct batch *b)
{
    if (b && !pool_keep(im, im->pool, &im->npool, sizeof(im->pool) / sizeof(im->pool[0]), b))
        batch_free(b);
}

static void fail(struct import *im, enum custos_err rc)
{
    if (atomic_exchange(&im->failed, 1) == 0) {
        im->fail_rc = rc;
        snprintf(im->fail_msg, sizeof(im->fail_msg), "%s", custos_err_msg(rc));
        pthread_mutex_lock(&im->order_mu); /* no worker waits for the order any more */
        pthread_cond_broadcast(&im->order_cv);
        pthread_mutex_unlock(&im->order_mu);
    }
}

/* Worker: parse, validate and seal every line of a job. */
static void *worker(void *arg)
{
    struct import *im = arg;
    struct custos_vault *v = im->v;
    struct custos_buf *rec = custos_buf_thread(CUSTOS_TLS_RECORD, 4u << 20);
    struct custos_json_arena ja = {0}; /* each line's parse, wiped at the line's end */
    struct custos_kek kek; /* held throughout: an import holds the vault, no rotation runs */
    enum custos_err krc = custos_kek_current(v, &kek);
    struct job *j;

    if (krc)
        fail(im, krc);
    while ((j = q_pop(&im->jobs)) != NULL) {
        struct batch *b = batch_get(im);
        size_t off = 0, n;
        uint64_t line = j->first_line;
        const char *p;

        pthread_mutex_lock(&im->order_mu);
        while (j->seq >= im->next_seq + ORDER_WINDOW && !atomic_load(&im->failed))
            pthread_cond_wait(&im->order_cv, &im->order_mu);
        pthread_mutex_unlock(&im->order_mu);
        if (!b || !rec || krc) {
            fail(im, krc ? krc : CUSTOS_ERR_NOMEM);
            batch_put(im, b);
            job_put(im, j);
            continue;
        }
        b->seq = j->seq;
        b->end = j->end;
        while ((p = custos_import_line(j->text, j->len, &off, &n)) != NULL) {
            struct custos_leaves leaves = {0};
            json_t *obj = NULL;
            enum custos_err rc;

            atomic_fetch_add(&im->lines, 1);
            if (n == 0 || atomic_load(&im->failed)) {
                line++;
                continue;
            }
            if ((rc = custos_json_arena_begin(&ja)) == CUSTOS_OK)
                rc = custos_import_parse(v->schema, p, n, &obj, &leaves);
            else
                fail(im, rc);
            if (!rc) {
                struct sealed *s = &b->item[b->n];

                custos_buf_reset(rec);
                s->kv = kek.kv;
                rc = custos_subject_seal_new(v, &kek, &leaves, s->id, s->wrapped, rec, s->blind, &s->nblind);
                if (!rc && s->nblind > 4)
                    rc = custos_err_set(CUSTOS_ERR_INVALID, "import supports at most 4 searchable fields");
                if (!rc) {
                    s->off = b->arena.len;
                    s->len = rec->len;
                    rc = custos_buf_add(&b->arena, rec->p, rec->len);
                }
                if (!rc) {
                    /* the ledger event is encoded and hashed here, in parallel, not by the writer */
                    struct custos_event ev;

                    custos_event_init(&ev, "subject.import", im->caller);
                    ev.result = CUSTOS_RESULT_OK;
                    ev.subject = s->id;
                    s->ev_off = b->arena.len;
                    rc = custos_event_encode(&ev, custos_now(v), &b->arena);
                    s->ev_len = b->arena.len - s->ev_off;
                    if (!rc)
                        custos_merkle_leaf_hash(s->leaf, b->arena.p + s->ev_off, s->ev_len);
                }
                if (!rc)
                    b->n++;
                else if (rc == CUSTOS_ERR_NOMEM)
                    fail(im, rc);
            }
            if (rc && rc != CUSTOS_ERR_NOMEM)
                reject(im, line, custos_err_msg(rc));
            custos_leaves_release(&leaves);
            json_decref(obj);
            custos_json_arena_end(&ja);
            line++;
        }
        job_put(im, j);
        custos_buf_reset(rec);
        q_push(&im->batches, b); /* even without a subject: it moves the mark */
    }
    custos_json_arena_release(&ja);
    custos_kek_release(v, &kek);
    return NULL;
}

struct row {
    const struct sealed *s;
    const uint8_t *rec, *ev; /* the record and its encoded event, in the batch arena */
};

static int row_cmp(const void *a, const void *b)
{
    return memcmp(((const struct row *)a)->s->id, ((const struct row *)b)->s->id, 16);
}

/* A commit group: batches stored in one transaction per plane, rows sorted by id. */
struct group {
    struct batch *bs[COMMIT_EVERY / 64 + 1];
    size_t nb;
    struct row *rows;
    size_t n;
    uint64_t last; /* ledger index of the group's last subject.import event */
    uint64_t seq;  /* 1, 2, ... in the order groups are formed (and written) */
    struct mark end; /* the input up to the end of its last line */
};

static void group_free(struct import *im, struct group *g)
{
    size_t i;

    for (i = 0; i < g->nb; i++)
        batch_put(im, g->bs[i]);
    free(g->rows);
    free(g);
}

/* Stage 1 (control plane): the group's subject keys, committed before any of its records. */
static enum custos_err commit_keys(struct import *im, struct custos_store_conn *c, struct group *g)
{
    struct custos_vault *v = im->v;
    enum custos_err rc;
    size_t i, k;

    for (g->n = 0, i = 0; i < g->nb; i++)
        g->n += g->bs[i]->n;
    g->rows = malloc((g->n ? g->n : 1) * sizeof(*g->rows));
    if (!g->rows)
        return CUSTOS_ERR_NOMEM;
    for (g->n = 0, i = 0; i < g->nb; i++)
        for (k = 0; k < g->bs[i]->n; k++) {
            g->rows[g->n].s = &g->bs[i]->item[k];
            g->rows[g->n].rec = g->bs[i]->arena.p + g->bs[i]->item[k].off;
            g->rows[g->n].ev = g->bs[i]->arena.p + g->bs[i]->item[k].ev_off;
            g->n++;
        }
    /* random ids, inserted in order: neighbouring b-tree pages instead of random ones */
    qsort(g->rows, g->n, sizeof(*g->rows), row_cmp);
    if ((rc = v->ops->begin(c, CUSTOS_PLANE_CONTROL)))
        return rc;
    for (i = 0; i < g->n && !rc; i++)
        rc = v->ops->key_stage(c, g->rows[i].s->id, 1, g->rows[i].s->kv, g->rows[i].s->wrapped, CUSTOS_WRAPPED_BYTES);
    if (rc || (rc = v->ops->commit(c, CUSTOS_PLANE_CONTROL))) {
        v->ops->rollback(c, CUSTOS_PLANE_CONTROL);
        return rc;
    }
    /* the group's ledger events, queued now: the ledger makes them durable while the record
       writer works on the group before, so its wait before committing this one is short */
    for (i = 0; i < g->n && !rc; i++)
        rc = custos_audit_enqueue_encoded(v, g->rows[i].ev, g->rows[i].s->ev_len, g->rows[i].s->leaf, &g->last);
    return rc;
}

/* Stage 2 (data plane): the records and one ledger event each, durable before the commit. */
static enum custos_err commit_records(struct import *im, struct custos_store_conn *c, struct group *g)
{
    struct custos_vault *v = im->v;
    enum custos_err rc;
    int64_t now = (int64_t)custos_now(v);
    size_t i;

    if ((rc = v->ops->begin(c, CUSTOS_PLANE_DATA)))
        return rc;
    for (i = 0; i < g->n && !rc; i++) {
        const struct sealed *s = g->rows[i].s;

        rc = v->ops->subject_stage(c, s->id, g->rows[i].rec, s->len, s->blind, s->nblind, now);
    }
    /* how far the input is stored, committed with the records that make it true */
    g->end.imported = im->imported_base + atomic_load(&im->imported) + g->n;
    if (!rc)
        rc = mark_put(v, c, &g->end, 0);
    /* no audit, no write: the events commit_keys queued must be durable first */
    if (!rc && g->n)
        rc = custos_audit_wait(v, g->last);
    if (rc || (rc = v->ops->commit(c, CUSTOS_PLANE_DATA))) {
        v->ops->rollback(c, CUSTOS_PLANE_DATA);
        return rc;
    }
    atomic_fetch_add(&im->imported, g->n);
    return CUSTOS_OK;
}

static struct custos_store_conn *bulk_conn(struct import *im)
{
    struct custos_store_conn *c = NULL;
    enum custos_err rc = im->v->ops->acquire(im->v->store, &c);

    if (rc) {
        fail(im, rc);
        return NULL;
    }
    im->v->ops->set_bulk(c, 1);
    return c;
}

static void bulk_done(struct import *im, struct custos_store_conn *c)
{
    enum custos_err rc;

    if (!c)
        return;
    im->v->ops->set_bulk(c, 0);
    rc = atomic_load(&im->failed) ? CUSTOS_OK : im->v->ops->compact_logs(c);
    if (rc && rc != CUSTOS_ERR_LOCKED) /* LOCKED: the other writer still works; it flushes last */
        fail(im, rc);
    im->v->ops->release(im->v->store, c);
}

/* Key writer: publish the staged keys (control plane), then let a records publish of the groups
   up to `seq` commit.  Called at the same group boundaries as the record writer's publishes, also
   after a failure (what is staged is complete, and the record writer may be waiting for it);
   `final` (the last call) or a failure here releases every wait for good. */
static void publish_keys(struct import *im, struct custos_store_conn *c, uint64_t seq, int final)
{
    enum custos_err rc = im->v->ops->subjects_publish(c, CUSTOS_PLANE_CONTROL, NULL, NULL);

    if (rc)
        fail(im, rc);
    pthread_mutex_lock(&im->pub_mu);
    if (!rc && seq > im->keys_published)
        im->keys_published = seq;
    if (final || rc)
        im->keys_final = 1;
    pthread_cond_broadcast(&im->pub_cv);
    pthread_mutex_unlock(&im->pub_mu);
}

struct keys_wait {
    struct import *im;
    uint64_t seq; /* the last group the records publish covers */
};

/* The records publish's `ready`: wait until the keys of its groups are published. */
static enum custos_err keys_ready(void *ctx)
{
    struct keys_wait *w = ctx;
    struct import *im = w->im;
    int ok;

    pthread_mutex_lock(&im->pub_mu);
    while (im->keys_published < w->seq && !im->keys_final)
        pthread_cond_wait(&im->pub_cv, &im->pub_mu);
    ok = im->keys_published >= w->seq;
    pthread_mutex_unlock(&im->pub_mu);
    return ok ? CUSTOS_OK : custos_err_set(CUSTOS_ERR_IO, "the keys of staged subjects were not published");
}

/* The key writer's state between batches. */
struct kw {
    struct import *im;
    struct custos_store_conn *c;
    struct group *g;
    size_t rows;
    uint64_t seq, last_ok, staged, published;
};

/* Store the keys of the group being formed and pass it on; publish the keys at each
   publish_step (the record writer publishes the same groups' records meanwhile). */
static void kw_close_group(struct kw *k)
{
    struct import *im = k->im;
    struct group *g = k->g;
    enum custos_err rc;

    g->seq = ++k->seq;
    if (k->c && !atomic_load(&im->failed)) {
        if ((rc = commit_keys(im, k->c, g)))
            fail(im, rc);
        else {
            k->last_ok = g->seq;
            k->staged += g->n;
        }
    }
    q_push(&im->groups, g);
    k->g = NULL;
    k->rows = 0;
    if (k->staged >= publish_step(k->published)) {
        publish_keys(im, k->c, k->last_ok, 0);
        k->published += k->staged;
        k->staged = 0;
    }
    /* copy the records' log into data.db here, off the record writer's thread */
    if (k->c && !atomic_load(&im->failed) && (rc = im->v->ops->log_checkpoint(k->c, CUSTOS_PLANE_DATA)))
        fail(im, rc);
}

/* The next batch in input order joins the group being formed. */
static void kw_add(struct kw *k, struct batch *b)
{
    if (!k->g && !(k->g = calloc(1, sizeof(*k->g)))) {
        fail(k->im, CUSTOS_ERR_NOMEM); /* the import stops: its mark stays before this batch */
        batch_put(k->im, b);
        return;
    }
    k->g->end = b->end;
    if (b->n == 0) { /* nothing to store: only its end counts, the batch goes back now */
        batch_put(k->im, b);
        return;
    }
    k->g->bs[k->g->nb++] = b;
    k->rows += b->n;
    if (k->rows >= COMMIT_EVERY || k->g->nb == sizeof(k->g->bs) / sizeof(k->g->bs[0]))
        kw_close_group(k);
}

/* Stage 1 thread: take the batches in input order, group them, store their keys. */
static void *key_writer(void *arg)
{
    struct import *im = arg;
    struct kw k = {im, bulk_conn(im), NULL, 0, 0, 0, 0, 0};
    struct batch *ring[ORDER_WINDOW] = {0}, *b;
    uint64_t next = 0;

    while ((b = q_pop(&im->batches)) != NULL) {
        if (atomic_load(&im->failed)) { /* nothing more is stored (and workers no longer wait) */
            batch_put(im, b);
            continue;
        }
        ring[b->seq % ORDER_WINDOW] = b; /* free: every batch in flight is within the window */
        while ((b = ring[next % ORDER_WINDOW]) != NULL && b->seq == next) {
            ring[next % ORDER_WINDOW] = NULL;
            pthread_mutex_lock(&im->order_mu);
            im->next_seq = ++next;
            pthread_cond_broadcast(&im->order_cv);
            pthread_mutex_unlock(&im->order_mu);
            kw_add(&k, b);
        }
    }
    for (size_t i = 0; i < ORDER_WINDOW; i++)
        batch_put(im, ring[i]); /* after a failure: never grouped */
    if (k.g) /* perhaps without a subject: it still moves the mark */
        kw_close_group(&k);
    q_close(&im->groups);
    if (k.staged)
        publish_keys(im, k.c, k.last_ok, 1);
    else {
        pthread_mutex_lock(&im->pub_mu);
        im->keys_final = 1;
        pthread_cond_broadcast(&im->pub_cv);
        pthread_mutex_unlock(&im->pub_mu);
    }
    bulk_done(im, k.c);
    return NULL;
}

/* Stage 2 thread: store each group's records (keys already durable in stage 1); publish them at
   each publish_step and at the end, each publish committing after its keys'. */
static void *record_writer(void *arg)
{
    struct import *im = arg;
    struct custos_store_conn *c = bulk_conn(im);
    struct group *g;
    enum custos_err rc;
    uint64_t staged = 0, published = 0;
    struct keys_wait w = {im, 0};

    while ((g = q_pop(&im->groups)) != NULL) {
        if (c && !atomic_load(&im->failed)) {
            if ((rc = commit_records(im, c, g)))
                fail(im, rc);
            else {
                staged += g->n;
                w.seq = g->seq;
            }
        }
        group_free(im, g);
        if (c && staged >= publish_step(published) && !atomic_load(&im->failed)) {
            if ((rc = im->v->ops->subjects_publish(c, CUSTOS_PLANE_DATA, keys_ready, &w)))
                fail(im, rc);
            published += staged;
            staged = 0;
        }
    }
    /* also after a failure: what was staged is complete (else the next open publishes it) */
    if (c && staged && (rc = im->v->ops->subjects_publish(c, CUSTOS_PLANE_DATA, keys_ready, &w)))
        fail(im, rc);
    bulk_done(im, c);
    return NULL;
}

static void snapshot(struct import *im, struct custos_import_stats *s, uint64_t bytes)
{
    s->lines = atomic_load(&im->lines);
    s->imported = atomic_load(&im->imported);
    s->rejected = atomic_load(&im->rejected);
    s->bytes_read = bytes;
}

/* ---- reading: the input cut into jobs of whole lines ----------------------------------------- */

const char *custos_import_line(const char *text, size_t len, size_t *off, size_t *n)
{
    const char *p, *nl;

    if (*off >= len)
        return NULL;
    p = text + *off;
    nl = memchr(p, '\n', len - *off);
    *n = nl ? (size_t)(nl - p) : len - *off;
    *off += *n + (nl ? 1 : 0);
    if (*n && p[*n - 1] == '\r')
        (*n)--;
    return p;
}

enum custos_err custos_import_parse(const struct custos_schema *schema, const char *p, size_t n, json_t **obj,
                                    struct custos_leaves *leaves)
{
    uint64_t removed;
    enum custos_err rc;

    *obj = NULL;
    if (n > LINE_MAX_BYTES)
        return custos_err_set(CUSTOS_ERR_TOOBIG, LINE_TOO_LONG);
    rc = custos_json_parse(p, n, LINE_MAX_BYTES, 0, obj);
    if (!rc)
        rc = custos_schema_flatten(schema, *obj, 0, leaves, &removed);
    if (!rc && leaves->n == 0)
        rc = custos_err_set(CUSTOS_ERR_INVALID, "a subject needs at least one field");
    return rc;
}

enum custos_err custos_import_split(const struct custos_import_split *sp, uint64_t *bytes)
{
    /* room for a line at the cap, a '\r' and a chunk more: a line is only found too long once
       it is longer than the cap without its '\r', and a read is never asked for nothing */
    size_t cap = sp->chunk + sp->max_line + 1, have = 0, lines_in_buf = 0;
    uint64_t next_line = 1;
    char *buf = malloc(cap);
    int eof = 0;
    enum custos_err rc = CUSTOS_OK;

    *bytes = 0;
    if (!buf)
        return CUSTOS_ERR_NOMEM;
    while (!eof && !(sp->stopped && sp->stopped(sp->ctx))) {
        ssize_t r = sp->read(sp->ctx, buf + have, cap - have);
        size_t cut, start = 0, k;

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = custos_err_set(CUSTOS_ERR_IO, "read error: %s", strerror(errno));
            break;
        }
        if (r == 0)
            eof = 1;
        *bytes += (uint64_t)r;
        have += (size_t)r;
        /* cut after the last newline (or everything at EOF) into jobs of job_lines lines */
        cut = have;
        if (!eof) {
            while (cut && buf[cut - 1] != '\n')
                cut--;
            if (cut == 0 && have - (buf[have - 1] == '\r') > sp->max_line) {
                /* a line longer than the cap, even if a '\n' comes next: reject it and skip to
                   its end (the same reason as a long line held whole gets, custos_import_parse) */
                sp->too_long(sp->ctx, next_line);
                if (sp->skipped)
                    sp->skipped(sp->ctx, buf, have);
                lines_in_buf = 0;
                for (;;) {
                    ssize_t s = sp->read(sp->ctx, buf, sp->chunk);
                    char *nl;

                    if (s < 0 && errno == EINTR)
                        continue;
                    if (s < 0) { /* not the end of the input: the rest was never read */
                        rc = custos_err_set(CUSTOS_ERR_IO, "read error: %s", strerror(errno));
                        goto done;
                    }
                    if (s == 0) {
                        eof = 1;
                        have = 0;
                        break;
                    }
                    *bytes += (uint64_t)s;
                    nl = memchr(buf, '\n', (size_t)s);
                    if (sp->skipped)
                        sp->skipped(sp->ctx, buf, nl ? (size_t)(nl + 1 - buf) : (size_t)s);
                    if (nl) {
                        have = (size_t)s - (size_t)(nl + 1 - buf);
                        memmove(buf, nl + 1, have);
                        break;
                    }
                }
                next_line++;
                continue;
            }
        }
        for (k = 0; k < cut; k++) {
            /* each line's end: its '\n', or the chunk's last byte */
            const char *nl = memchr(buf + k, '\n', cut - k);

            k = nl ? (size_t)(nl - buf) : cut - 1;
            lines_in_buf++;
            if (lines_in_buf == sp->job_lines || k + 1 == cut) {
                if ((rc = sp->lines(sp->ctx, buf + start, k + 1 - start, next_line, lines_in_buf)))
                    goto done;
                next_line += lines_in_buf;
                lines_in_buf = 0;
                start = k + 1;
            }
        }
        sodium_memzero(buf, cut);
        memmove(buf, buf + cut, have - cut);
        have -= cut;
        if (sp->progress)
            sp->progress(sp->ctx, *bytes);
    }
done:
    sodium_memzero(buf, cap);
    free(buf);
    return rc;
}

/* The control-plane row that says an import is under way (1) or none is (0). */
static enum custos_err unfinished_put(struct custos_vault *v, uint8_t on)
{
    struct custos_store_conn *c = NULL;
    enum custos_err rc;

    if ((rc = v->ops->acquire(v->store, &c)))
        return rc;
    rc = v->ops->meta_put(c, "import_unfinished", &on, 1);
    v->ops->release(v->store, c);
    return rc;
}

/* custos_import's side of the reading: the file, the digest of what was read, the lines a
   resumed import skips, and the jobs handed to the workers. */
struct reading {
    struct import *im;
    int fd;
    void (*progress)(void *ctx, const struct custos_import_stats *s);
    void *ctx;
    uint64_t last_progress;
    crypto_generichash_state h; /* the input so far (struct mark) */
    crypto_generichash_state head; /* its first HEAD_MAX bytes (MARK_DONE) */
    uint64_t bytes;             /* hashed so far */
    char *pre;                  /* read ahead to compare with a finished import's head */
    size_t pre_len, pre_off;
    uint64_t seq;               /* the next job's */
    uint64_t skip;              /* resuming: lines up to this one were stored before */
    uint8_t want[32];           /* ... and the digest of the input up to its end */
    int check;                  /* the input is hashed up to the end of line `skip`: compare */
    int checked;                /* compared (or nothing to compare) */
    int unfinished;             /* import_unfinished is set */
};

static ssize_t read_fd(void *ctx, void *buf, size_t n)
{
    struct reading *rd = ctx;

    if (rd->pre_off < rd->pre_len) { /* what was read ahead comes first */
        if (n > rd->pre_len - rd->pre_off)
            n = rd->pre_len - rd->pre_off;
        memcpy(buf, rd->pre + rd->pre_off, n);
        rd->pre_off += n;
        return (ssize_t)n;
    }
    return read(rd->fd, buf, n);
}

static void hash_in(struct reading *rd, const char *p, size_t n)
{
    crypto_generichash_update(&rd->h, (const unsigned char *)p, n);
    if (rd->bytes < HEAD_MAX)
        crypto_generichash_update(&rd->head, (const unsigned char *)p,
                                  n < HEAD_MAX - rd->bytes ? n : (size_t)(HEAD_MAX - rd->bytes));
    rd->bytes += n;
}

/*
 * A plain import after one that finished: read the head of this input ahead (it is handed to
 * the import afterwards, so stdin works too) and refuse it when it is the finished import's:
 * the same first bytes, keyed with the vault's import key, so the mark tells nothing about them.
 */
static enum custos_err refuse_same_head(struct custos_vault *v, struct reading *rd, const struct mark *done,
                                        int *refused)
{
    uint8_t d[32];
    size_t want = done->bytes;
    /* a head shorter than HEAD_MAX was that whole input: one byte more tells a longer input
       that begins with it (`head -n 10` first, then the whole file), which is another input */
    size_t ahead = want < HEAD_MAX ? want + 1 : want;
    int same;

    if (want == 0 || want > HEAD_MAX)
        return CUSTOS_OK;
    if (!(rd->pre = malloc(ahead)))
        return custos_err_set(CUSTOS_ERR_NOMEM, "out of memory");
    while (rd->pre_len < ahead) {
        ssize_t r = read(rd->fd, rd->pre + rd->pre_len, ahead - rd->pre_len);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return custos_err_set(CUSTOS_ERR_IO, "cannot read the input: %s", strerror(errno));
        if (r == 0)
            break;
        rd->pre_len += (size_t)r;
    }
    if (rd->pre_len != want)
        return CUSTOS_OK; /* shorter or longer: another input */
    crypto_generichash(d, 32, (const unsigned char *)rd->pre, want, v->sec->import_key, 32);
    same = sodium_memcmp(d, done->digest, 32) == 0;
    sodium_memzero(d, sizeof(d));
    if (!same)
        return CUSTOS_OK;
    *refused = 1;
    return custos_err_set(CUSTOS_ERR_EXISTS,
                          "this input was imported already: the last import read the same %llu bytes first and "
                          "finished (%llu lines, %llu subjects stored); nothing was imported",
                          (unsigned long long)want, (unsigned long long)done->line,
                          (unsigned long long)done->imported);
}

static void hash_now(const struct reading *rd, uint8_t out[32])
{
    crypto_generichash_state t = rd->h; /* the running state goes on */

    crypto_generichash_final(&t, out, 32);
    sodium_memzero(&t, sizeof(t));
}

/* Resuming, once the input is hashed up to the end of line `skip`. */
static enum custos_err check_skipped(struct reading *rd)
{
    uint8_t d[32];
    int same;

    rd->check = 0;
    rd->checked = 1;
    hash_now(rd, d);
    same = sodium_memcmp(d, rd->want, 32) == 0;
    sodium_memzero(d, sizeof(d));
    if (!same)
        return custos_err_set(CUSTOS_ERR_INVALID,
                              "this input is not the one the interrupted import read: its first %llu lines "
                              "differ; nothing was imported",
                              (unsigned long long)rd->skip);
    return CUSTOS_OK;
}

static enum custos_err take_lines(void *ctx, const char *text, size_t len, uint64_t first, uint64_t nlines)
{
    struct reading *rd = ctx;
    uint64_t last = first + nlines - 1;
    enum custos_err rc;
    struct job *j;

    if (rd->check && (rc = check_skipped(rd)))
        return rc;
    if (first <= rd->skip) {
        /* resuming: lines stored before are hashed, not handed on */
        size_t off = 0, n;
        uint64_t k, upto = last < rd->skip ? last : rd->skip;

        for (k = first; k <= upto; k++)
            custos_import_line(text, len, &off, &n);
        hash_in(rd, text, off);
        atomic_fetch_add(&rd->im->lines, upto - first + 1);
        if (upto == rd->skip && (rc = check_skipped(rd)))
            return rc;
        if (upto == last)
            return CUSTOS_OK;
        text += off;
        len -= off;
        first = upto + 1;
    }
    /* from the first line handed on, the next open looks for subjects this import did not store
       (until cleared at the end); a resume refused before it stored nothing */
    if (!rd->unfinished && (rc = unfinished_put(rd->im->v, 1)))
        return rc;
    rd->unfinished = 1;
    if (!(j = job_get(rd->im, len)))
        return CUSTOS_ERR_NOMEM;
    memcpy(j->text, text, len);
    j->len = len;
    j->first_line = first;
    j->seq = rd->seq++;
    hash_in(rd, text, len);
    j->end.line = last;
    j->end.bytes = rd->bytes;
    hash_now(rd, j->end.digest);
    q_push(&rd->im->jobs, j);
    return CUSTOS_OK;
}

static void too_long(void *ctx, uint64_t line)
{
    struct reading *rd = ctx;

    if (rd->check && check_skipped(rd)) {
        fail(rd->im, CUSTOS_ERR_INVALID); /* the message: custos_err_msg of this thread */
        return;
    }
    atomic_fetch_add(&rd->im->lines, 1);
    if (line > rd->skip)
        reject(rd->im, line, LINE_TOO_LONG);
    else if (line == rd->skip)
        rd->check = 1; /* once its bytes are in */
}

static void skipped_bytes(void *ctx, const char *p, size_t n)
{
    hash_in(ctx, p, n);
}

static int stopped(void *ctx)
{
    return atomic_load(&((struct reading *)ctx)->im->failed);
}

static void reading_progress(void *ctx, uint64_t bytes)
{
    struct reading *rd = ctx;
    struct custos_import_stats s;

    if (rd->progress && custos_clock_ms() - rd->last_progress >= 200) {
        snapshot(rd->im, &s, bytes);
        rd->progress(rd->ctx, &s);
        rd->last_progress = custos_clock_ms();
    }
}

struct not_stored {
    struct custos_vault *v;
    uint64_t n, last;
    enum custos_err rc;
};

static int not_stored_one(void *ctx, const uint8_t id[16])
{
    struct not_stored *ns = ctx;
    struct custos_caller sys;
    struct custos_event ev;

    custos_caller_system(&sys);
    custos_event_init(&ev, "subject.import", &sys);
    ev.subject = id;
    ev.result = CUSTOS_RESULT_ERROR;
    ev.reason = "not_stored";
    if (!(ns->rc = custos_audit_enqueue(ns->v, &ev, &ns->last)))
        ns->n++;
    return ns->rc != CUSTOS_OK;
}

enum custos_err custos_import_recover(struct custos_vault *v)
{
    struct custos_store_conn *c = NULL;
    struct custos_buf b;
    struct not_stored ns = {v, 0, 0, CUSTOS_OK};
    enum custos_err rc;

    custos_buf_init(&b, 8);
    if ((rc = v->ops->acquire(v->store, &c)))
        return rc;
    rc = v->ops->meta_get(c, "import_unfinished", &b);
    if (rc == CUSTOS_ERR_NOTFOUND || (rc == CUSTOS_OK && (b.len != 1 || b.p[0] == 0))) {
        rc = CUSTOS_OK;
        goto done;
    }
    if (!rc && !(rc = v->ops->keys_without_record(c, not_stored_one, &ns)))
        rc = ns.rc;
    if (!rc && ns.n)
        rc = custos_audit_wait(v, ns.last); /* on the record before the row goes */
    if (!rc) {
        uint8_t off = 0;

        rc = v->ops->meta_put(c, "import_unfinished", &off, 1);
    }
done:
    v->ops->release(v->store, c);
    custos_buf_release(&b);
    return rc;
}

/* A plain import: refused when its input is the one the last finished import read. */
static enum custos_err refuse_done(struct custos_vault *v, struct custos_store_conn *c, struct reading *rd,
                                   int *already)
{
    struct custos_buf b;
    struct mark done;
    enum custos_err rc;

    custos_buf_init(&b, MARK_BYTES);
    rc = v->ops->import_done_get(c, &b);
    if (rc == CUSTOS_ERR_NOTFOUND)
        rc = CUSTOS_OK;
    else if (!rc && mark_decode(b.p, b.len, MARK_DONE, &done) == CUSTOS_OK)
        rc = refuse_same_head(v, rd, &done, already);
    else if (!rc)
        custos_err_clear(); /* unreadable: it protects nothing, and the import replaces it */
    custos_buf_release(&b);
    return rc;
}

/* At the start of an import: the mark of an interrupted one, what to do with it, and this one's
   first mark.  *m gets the mark to resume from (all zero when starting afresh). */
static enum custos_err mark_start(struct custos_vault *v, unsigned flags, struct reading *rd, struct mark *m,
                                  int *refused, int *already)
{
    struct custos_store_conn *c = NULL;
    struct custos_buf b;
    struct mark old;
    enum custos_err rc;
    int resume = (flags & CUSTOS_IMPORT_RESUME) != 0, interrupted = 0;

    memset(m, 0, sizeof(*m));
    if (resume && (flags & CUSTOS_IMPORT_RESTART))
        return custos_err_set(CUSTOS_ERR_INVALID, "resume or restart, not both");
    custos_buf_init(&b, MARK_BYTES);
    if ((rc = v->ops->acquire(v->store, &c)))
        return rc;
    rc = v->ops->import_mark_get(c, &b);
    if (rc == CUSTOS_OK && !(flags & CUSTOS_IMPORT_RESTART) && !(rc = mark_decode(b.p, b.len, MARK_VERSION, &old)))
        interrupted = old.line > 0 || resume; /* a mark at line 0: it stopped before storing anything */
    else if (rc == CUSTOS_ERR_NOTFOUND || rc == CUSTOS_OK)
        rc = CUSTOS_OK;
    if (rc)
        goto done;
    if (interrupted && !resume) {
        *refused = 1;
        rc = custos_err_set(CUSTOS_ERR_EXISTS,
                            "an import was interrupted after line %llu (%llu subjects stored): resume it with "
                            "the same input, or restart",
                            (unsigned long long)old.line, (unsigned long long)old.imported);
    } else if (interrupted)
        *m = old; /* resuming: the mark stays until a group moves it on */
    else if (resume)
        rc = custos_err_set(CUSTOS_ERR_NOTFOUND, "there is no interrupted import to resume");
    else if (!(flags & CUSTOS_IMPORT_RESTART) && (rc = refuse_done(v, c, rd, already)))
        ; /* refused, or the input could not be read */
    else { /* this import's first mark: line 0, the digest of nothing */
        crypto_generichash(m->digest, 32, NULL, 0, v->sec->import_key, 32);
        rc = mark_put(v, c, m, 1);
    }
done:
    v->ops->release(v->store, c);
    custos_buf_release(&b);
    return rc;
}

/* An import that ended well leaves no mark, and, having stored subjects, records what it read
   first (import_done: its head's length and keyed digest, its lines, the subjects stored over
   every run of it), in one transaction; one that stored nothing leaves import_done as it was. */
static enum custos_err mark_end(struct custos_vault *v, struct reading *rd, uint64_t lines, uint64_t imported)
{
    struct custos_store_conn *c = NULL;
    uint8_t b[MARK_BYTES];
    struct mark m;
    enum custos_err rc;

    memset(&m, 0, sizeof(m));
    m.line = lines;
    m.bytes = rd->bytes < HEAD_MAX ? rd->bytes : HEAD_MAX;
    m.imported = imported;
    crypto_generichash_final(&rd->head, m.digest, 32);
    mark_encode(&m, MARK_DONE, b);
    if ((rc = v->ops->acquire(v->store, &c)))
        return rc;
    if (!(rc = v->ops->begin(c, CUSTOS_PLANE_DATA))) {
        if ((rc = mark_put(v, c, NULL, 0)) || (imported && (rc = v->ops->import_done_put(c, b, sizeof(b)))) ||
            (rc = v->ops->commit(c, CUSTOS_PLANE_DATA)))
            v->ops->rollback(c, CUSTOS_PLANE_DATA);
    }
    v->ops->release(v->store, c);
    return rc;
}

enum custos_err custos_import(struct custos_vault *v, const struct custos_caller *c, int fd, unsigned threads,
                              unsigned flags, void (*progress)(void *ctx, const struct custos_import_stats *s),
                              void (*bad)(void *ctx, uint64_t line, const char *reason), void *ctx,
                              struct custos_import_stats *out)
{
    struct import im;
    struct reading rd;
    struct custos_import_split split = {read_fd, take_lines, too_long, skipped_bytes, stopped, reading_progress, &rd,
                                        READ_CHUNK, LINE_MAX_BYTES, JOB_LINES};
    struct mark from;
    pthread_t wk[16], wr, wr2;
    unsigned nw = threads ? threads : 2, i, started = 0;
    uint64_t bytes = 0;
    int writer_up = 0, writer2_up = 0;
    enum custos_err rc = CUSTOS_OK;

    memset(out, 0, sizeof(*out));
    if (!c->system)
        return custos_err_set(CUSTOS_ERR_FORBIDDEN, "import runs on the data directory (custos import)");
    memset(&im, 0, sizeof(im));
    memset(&rd, 0, sizeof(rd));
    rd.im = &im;
    rd.fd = fd;
    if ((rc = mark_start(v, flags, &rd, &from, &out->interrupted, &out->already))) {
        if (rd.pre)
            sodium_memzero(rd.pre, rd.pre_len);
        free(rd.pre);
        return rc;
    }
    if (nw > 16)
        nw = 16;
    im.v = v;
    im.caller = c;
    im.bad = bad;
    im.ctx = ctx;
    im.imported_base = from.imported;
    rd.progress = progress;
    rd.ctx = ctx;
    rd.skip = from.line;
    memcpy(rd.want, from.digest, 32);
    rd.checked = from.line == 0;
    crypto_generichash_init(&rd.h, v->sec->import_key, 32, 32);
    crypto_generichash_init(&rd.head, v->sec->import_key, 32, 32);
    q_init(&im.jobs, QUEUE_DEPTH);
    q_init(&im.batches, QUEUE_DEPTH);
    q_init(&im.groups, 1); /* a group is ~12 MiB: one waiting while one is written */
    pthread_mutex_init(&im.cb_mu, NULL);
    pthread_mutex_init(&im.pool_mu, NULL);
    pthread_mutex_init(&im.pub_mu, NULL);
    pthread_cond_init(&im.pub_cv, NULL);
    pthread_mutex_init(&im.order_mu, NULL);
    pthread_cond_init(&im.order_cv, NULL);
    for (i = 0; i < nw; i++, started++)
        if (custos_thread_create(&wk[i], worker, &im) != 0) {
            rc = custos_err_set(CUSTOS_ERR_INTERNAL, "cannot start import threads");
            goto stop;
        }
    /* the record writer first: a key writer without it would block handing over its first
       group (stop closes `groups` only when the key writer never ran) */
    if (custos_thread_create(&wr2, record_writer, &im) != 0) {
        rc = custos_err_set(CUSTOS_ERR_INTERNAL, "cannot start import threads");
        goto stop;
    }
    writer2_up = 1;
    if (custos_thread_create(&wr, key_writer, &im) != 0) {
        rc = custos_err_set(CUSTOS_ERR_INTERNAL, "cannot start import threads");
        goto stop;
    }
    writer_up = 1;
    rc = custos_import_split(&split, &bytes);
    if (!rc && rd.check)
        rc = check_skipped(&rd);
    if (!rc && !rd.checked && !atomic_load(&im.failed))
        rc = custos_err_set(CUSTOS_ERR_INVALID,
                            "this input is not the one the interrupted import read: it ends before line %llu; "
                            "nothing was imported",
                            (unsigned long long)rd.skip);
    if (rc)
        fail(&im, rc); /* what the workers still hold is not stored: the mark stays before it */
stop:
    q_close(&im.jobs);
    for (i = 0; i < started; i++)
        pthread_join(wk[i], NULL);
    q_close(&im.batches);
    if (writer_up)
        pthread_join(wr, NULL);
    else
        q_close(&im.groups);
    if (writer2_up)
        pthread_join(wr2, NULL);
    snapshot(&im, out, bytes);
    out->skipped = rd.skip;
    out->imported_before = from.imported;
    if (progress && !rc)
        progress(ctx, out);
    if (!rc && atomic_load(&im.failed))
        rc = custos_err_set(im.fail_rc ? im.fail_rc : CUSTOS_ERR_IO, "%s", im.fail_msg);
    if (!rc)
        rc = mark_end(v, &rd, out->lines, out->imported + out->imported_before);
    if (!rc)
        rc = unfinished_put(v, 0);
    sodium_memzero(&rd.h, sizeof(rd.h));
    sodium_memzero(&rd.head, sizeof(rd.head));
    if (rd.pre) {
        sodium_memzero(rd.pre, rd.pre_len); /* customers' lines */
        free(rd.pre);
    }
    while (im.npool)
        batch_free(im.pool[--im.npool]);
    while (im.njpool)
        job_free(im.jpool[--im.njpool]);
    pthread_mutex_destroy(&im.cb_mu);
    pthread_mutex_destroy(&im.pool_mu);
    pthread_mutex_destroy(&im.pub_mu);
    pthread_cond_destroy(&im.pub_cv);
    pthread_mutex_destroy(&im.order_mu);
    pthread_cond_destroy(&im.order_cv);
    q_destroy(&im.jobs);
    q_destroy(&im.batches);
    q_destroy(&im.groups);
    return rc;
}

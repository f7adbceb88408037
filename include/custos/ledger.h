/*
 * ledger.h - the tamper-evident access ledger.
 *
 * An append-only sequence of opaque entries (the canonical audit-event
 * encoding of docs/format.md; the ledger never looks inside them) arranged
 * as an RFC 6962 Merkle tree, with C2SP checkpoints signed by the ledger's
 * Ed25519 key.  One directory holds one ledger; one process at a time may
 * open it for writing (an exclusive lock; CUSTOS_ERR_LOCKED otherwise).
 *
 * Durability: appends are batched by a writer thread (group commit) and a
 * batch is fsync'ed once; an append is acknowledged (custos_ledger_append
 * returns, custos_ledger_wait returns for its index) only once durable.  A
 * crash loses no acknowledged entry and leaves no torn entry: open()
 * truncates a torn tail and reports it in custos_ledger_recovery.
 *
 * Memory: nothing proportional to the number of entries is held in memory;
 * root at any size and proofs cost O(log n) storage reads.
 *
 * Checkpoints: while entries arrive, a new signed checkpoint at least every
 * checkpoint_interval_ms; every checkpoint is stored; sizes never decrease
 * and every checkpoint is consistent with the previous ones.
 *
 * Failure: if the ledger cannot write (I/O error, disk full), it enters a
 * failed state and every append/wait returns CUSTOS_ERR_UNAVAILABLE: the
 * caller must then refuse the access it was recording.
 */
#ifndef CUSTOS_LEDGER_H
#define CUSTOS_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "custos/err.h"
#include "custos/merkle.h"
#include "custos/note.h"

#define CUSTOS_LEDGER_ENTRY_MAX 65536 /* bytes; longer entries are CUSTOS_ERR_TOOBIG */

struct custos_ledger;

struct custos_ledger_config {
    const char *dir;                /* ledger directory; created (0700) if absent and !read_only */
    const char *origin;             /* checkpoint origin line and signing key name */
    const uint8_t *sign_sk;         /* Ed25519 secret key, 64 bytes (libsodium form); borrowed, copied into
                                       sodium_malloc'd memory; may be NULL only when read_only */
    unsigned checkpoint_interval_ms;/* 0 means 1000 */
    int read_only;                  /* no writer thread, no lock, no recovery writes */
    /* Injected clock for tests (milliseconds since the epoch); NULL means the real clock. */
    uint64_t (*now_ms)(void *ctx);
    void *now_ctx;
    /* Fault injection for tests: called before each write/fsync with a short op name
       ("write", "fsync"); a non-zero return makes that operation fail with EIO. NULL in production. */
    int (*fault)(void *ctx, const char *op);
    void *fault_ctx;
};

struct custos_ledger_recovery {
    uint64_t size;             /* entries present after open */
    uint64_t truncated_bytes;  /* data bytes of a torn tail removed by open, up to its last non-zero
                                  byte (0 when the tail was clean; zeros written ahead not counted) */
    uint64_t rebuilt;          /* derived records (tree hashes, index) recomputed from entries */
};

/* Open (and create when absent, unless read_only) the ledger in cfg->dir.
   `rec` may be NULL.  Returns CUSTOS_ERR_LOCKED when another process holds it. */
enum custos_err custos_ledger_open(const struct custos_ledger_config *cfg, struct custos_ledger **out,
                                   struct custos_ledger_recovery *rec);

/* Drain pending appends, write a final checkpoint if the tree grew since the
   last one, stop the writer, release the lock, wipe the key.  NULL is a no-op. */
void custos_ledger_free(struct custos_ledger *l);

/* Append one entry and return once it is durable; *index (may be NULL) gets its leaf index. */
enum custos_err custos_ledger_append(struct custos_ledger *l, const void *entry, size_t len, uint64_t *index);

/* Queue one entry without waiting; *index gets the leaf index it will have. */
enum custos_err custos_ledger_enqueue(struct custos_ledger *l, const void *entry, size_t len, uint64_t *index);

/* The same with the entry's leaf hash (custos_merkle_leaf_hash) computed by the caller, so bulk
   producers can hash in parallel before a single thread enqueues. */
enum custos_err custos_ledger_enqueue_hashed(struct custos_ledger *l, const void *entry, size_t len,
                                             const uint8_t leaf[CUSTOS_HASH_BYTES], uint64_t *index);

/* Wait until entry `index` is durable. */
enum custos_err custos_ledger_wait(struct custos_ledger *l, uint64_t index);

/*
 * Call fn(ctx, durable, failed) from the writer thread each time the durable size grows (and
 * once with failed = 1 if the ledger fails), for front ends that park requests instead of
 * blocking a thread per request.  fn must be quick and must not call back into the ledger.
 * Replacing or removing it (NULL) waits for a call in flight, so ctx may be freed after.
 */
void custos_ledger_on_durable(struct custos_ledger *l, void (*fn)(void *ctx, uint64_t durable, int failed),
                              void *ctx);

/*
 * A hint for group commit: delta = +1 when a producer starts work that will (probably) enqueue
 * an entry soon (a request being handled), -1 when it has enqueued it or will not.  Under
 * concurrent load the writer waits for announced entries (at most about a millisecond) so
 * that one fdatasync covers them.  Calls must balance; nothing else depends on them.
 */
void custos_ledger_expect(struct custos_ledger *l, int delta);

/* Wait until every queued entry is durable and sign a checkpoint covering them. */
enum custos_err custos_ledger_checkpoint_now(struct custos_ledger *l);

/* Number of durable entries. */
uint64_t custos_ledger_size(struct custos_ledger *l);

/* Copy entry `index` (< size) into buf; *len gets its length.  CUSTOS_ERR_TOOBIG when cap is short
   (with *len set), CUSTOS_ERR_NOTFOUND when index >= size, CUSTOS_ERR_CORRUPT when its check fails. */
enum custos_err custos_ledger_read(struct custos_ledger *l, uint64_t index, void *buf, size_t cap, size_t *len);

/* Merkle root of the first `size` entries (size <= custos_ledger_size). */
enum custos_err custos_ledger_root(struct custos_ledger *l, uint64_t size, uint8_t root[CUSTOS_HASH_BYTES]);

/* Inclusion proof of leaf `index` in the tree of `size` leaves; *n gets the number of hashes
   written to proof (capacity CUSTOS_PROOF_MAX).  CUSTOS_ERR_INVALID when index >= size or
   size > custos_ledger_size. */
enum custos_err custos_ledger_prove_inclusion(struct custos_ledger *l, uint64_t index, uint64_t size,
                                              uint8_t proof[][CUSTOS_HASH_BYTES], size_t *n);

/* Consistency proof between sizes `from` and `to` (0 < from <= to <= size). */
enum custos_err custos_ledger_prove_consistency(struct custos_ledger *l, uint64_t from, uint64_t to,
                                                uint8_t proof[][CUSTOS_HASH_BYTES], size_t *n);

/* The latest signed checkpoint (a complete signed note), NUL-terminated, into out.
   CUSTOS_ERR_NOTFOUND when none has been signed yet. */
enum custos_err custos_ledger_checkpoint(struct custos_ledger *l, char *out, size_t cap, size_t *len);

/* Detached Ed25519 signature by the ledger key (used for erasure receipts). */
enum custos_err custos_ledger_sign(struct custos_ledger *l, const void *msg, size_t len, uint8_t sig[64]);

/* The ledger's public key and origin. */
void custos_ledger_pubkey(struct custos_ledger *l, uint8_t pk[32]);
const char *custos_ledger_origin(struct custos_ledger *l);

struct custos_ledger_verify_report {
    uint64_t size;            /* entries found */
    uint64_t checkpoints;     /* stored checkpoints checked */
    int intact;               /* 1 when the entries and checkpoints checked out */
    uint64_t first_bad_index; /* valid when !intact: the first entry index found bad or missing */
    char what[160];           /* when !intact: one lowercase line saying what failed */
    /* The derived files, which open and the proofs rely on: 1 when every `tree` node and
       `index` offset below the durable marker equals what the entries give, and `state`
       checks out.  When 0, custos_ledger_rebuild recomputes tree and index from the entries. */
    int derived_intact;
    uint64_t derived_bad_slot; /* when !derived_intact: the first bad tree slot, UINT64_MAX when
                                  the damage is elsewhere (index, state) */
    char derived_what[160];    /* when !derived_intact: one lowercase line */
    /* 1 when a writer (a running server) held the ledger: the check covered the entries up to
       the latest checkpoint stored when it began (`size`), the part the writer no longer
       changes, and left what was being appended after it. */
    int live;
};

/*
 * Check the ledger in `dir` from scratch, without trusting derived files:
 * every record's framing and check, the whole tree recomputed from the
 * entries, every stored checkpoint's signature (under `v`) and root, and
 * that stored checkpoints cover no more entries than exist, and that the
 * files are not shorter than the markers in `state` (unkeyed evidence); a
 * torn last record of either file is reported as such; and, apart
 * (rep->derived_*), that the derived `tree` and `index` below the durable
 * marker equal what the entries give.  Streams: O(log n) memory.  Returns
 * CUSTOS_OK when the check ran (then see rep->intact and rep->derived_intact)
 * or an error when it could not run (CUSTOS_ERR_IO, ...).
 *
 * It holds no lock (a verify never keeps a server from starting).  With no
 * writer it checks everything; if a writer held the ledger at its end, or
 * one came and went meanwhile (each writer puts a new generation in the
 * lock file first), it checks again, live.  While a writer holds
 * the ledger (a running server), the check is live
 * (rep->live): it reads `state`, then the checkpoints file's length, then the
 * log's, and checks everything up to the last checkpoint stored by then.  A
 * checkpoint is stored only after the entries it covers are durable, and
 * `state` only after that checkpoint, so that prefix is complete and no
 * longer written to; a last checkpoint record still being written is not
 * counted (nor reported as torn).  The lock holder may also be a writer
 * starting (open recovers past its marker) or custos_ledger_rebuild: both
 * rewrite the derived files in place before cutting what is past the end, so
 * they never get shorter than the marker a live check read.  While a writer
 * is creating the ledger (no `state` yet) the check cannot run:
 * CUSTOS_ERR_NOTFOUND.
 */
enum custos_err custos_ledger_verify(const char *dir, const struct custos_note_verifier *v,
                                     struct custos_ledger_verify_report *rep);

/*
 * Recompute the derived files (`tree`, `index`) of the ledger in `dir` from the whole entries
 * log, as open does past its marker, and check the latest checkpoint (signature under `v`,
 * which must be the ledger's key, and root) against the result.  For repair after verify
 * reports derived damage; O(n) time, O(1) memory.  Takes the exclusive lock
 * (CUSTOS_ERR_LOCKED while a writer runs); needs no signing key and signs nothing.  A torn
 * tail is truncated as at open; `rec` (may be NULL) says what was done.  CUSTOS_ERR_CORRUPT,
 * changing nothing past the derived files, when the log itself is damaged.
 */
enum custos_err custos_ledger_rebuild(const char *dir, const struct custos_note_verifier *v,
                                      struct custos_ledger_recovery *rec);

#endif

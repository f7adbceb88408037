/*
 * store.h - the one storage interface of the vault.
 *
 * The core reaches persistent state only through a struct custos_store_ops
 * table; a back-end (sqlite.c now, postgres.c next) fills one in.  The
 * interface is semantic (put a wrapped key, find by blind index, ...), not
 * SQL, so a back-end is free in how it lays tables out.
 *
 * Two planes, kept in separately restorable places on purpose:
 *  - control plane: master-wrapped keys (subject keys, system keys,
 *    retention keys), erasure tombstones, principals and tokens.  Never
 *    rolled back by a data restore, so a restored backup cannot bring back
 *    a shredded key, a disabled principal or a revoked token.
 *  - data plane: sealed subject records, blind index, links.  This is what
 *    `custos backup` copies, without the blind index: a backup holds no
 *    blind hash (with the live blind key one is a test for guessed values,
 *    which would outlive an erasure), and a restore leaves the index to be
 *    rebuilt from the records whose keys still exist.
 *
 * Connections: a store hands out connections; one thread uses a connection
 * at a time (acquire/release).  Transactions are per plane.
 *
 * Every function returns enum custos_err; NOTFOUND when a lookup misses.
 * Stored bytes are never trusted by the store: the core checks MACs/AEADs.
 */
#ifndef CUSTOS_STORE_H
#define CUSTOS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "custos/err.h"

#define CUSTOS_STORE_HASH 32
#define CUSTOS_PRINCIPAL_ID_MAX 64

enum custos_plane { CUSTOS_PLANE_CONTROL = 0, CUSTOS_PLANE_DATA = 1 };

struct custos_store;
struct custos_store_conn;

struct custos_principal_row {
    char id[CUSTOS_PRINCIPAL_ID_MAX + 1];
    char kind[16];
    char roles[256];      /* comma-separated role names */
    uint8_t secret_hash[CUSTOS_STORE_HASH];
    int64_t created;      /* ms */
    int64_t disabled;     /* ms, 0 when enabled */
    char created_by[CUSTOS_PRINCIPAL_ID_MAX + 1];
    uint8_t mac[CUSTOS_STORE_HASH]; /* keyed MAC over id, kind, roles, secret_hash, created, disabled,
                                       secret_expires (version 2; version 1 rows: without it, and 0) */
    int64_t secret_expires; /* ms; 0: never (rows from before secret expiry) */
};

struct custos_token_row {
    uint8_t hash[CUSTOS_STORE_HASH];
    char principal[CUSTOS_PRINCIPAL_ID_MAX + 1]; /* owner; for customer tokens, the minting principal */
    char kind[16];                               /* staff, service, customer */
    uint8_t scope[16];                           /* customer tokens: the one subject */
    int has_scope;
    int64_t issued, expires, revoked;            /* ms; revoked 0 when live */
    char issued_by[CUSTOS_PRINCIPAL_ID_MAX + 1];
    char source[48];
    uint8_t mac[CUSTOS_STORE_HASH];              /* keyed MAC over the row (core checks) */
    uint8_t minted_with[CUSTOS_STORE_HASH];      /* customer tokens: hash of the minter's token */
    int has_minted_with;                         /* (revoking that token revokes this one) */
    /* filled by token_get: the principal named in `principal` */
    int owner_found;
    struct custos_principal_row owner;
};

/* Revocation's callback into the core (store ops token_revoke*): sets r->revoked and r->mac. */
typedef void (*custos_token_signer)(void *ctx, struct custos_token_row *r, int64_t when);

struct custos_blind {
    uint32_t field; /* top-level field number in the schema */
    uint8_t hash[CUSTOS_STORE_HASH];
};

struct custos_erasure_row {
    uint8_t id[16];
    int64_t erased_at;
    int64_t ledger_index; /* -1 until the ledger entry is durable */
};

/* A linked service's tie to a subject (data plane). */
struct custos_link_row {
    uint8_t subject[16];
    char name[65];
    char url[2049];
    int64_t created;
};

/* A durable outbox entry: one subject.erased notice for one link (control plane). */
struct custos_outbox_row {
    int64_t id;            /* assigned by outbox_put */
    uint8_t subject[16];
    char link[65];
    char url[2049];
    int64_t erased_at;
    int64_t created;
    int64_t next_at;       /* next attempt (ms) */
    int64_t delivered_at;  /* 0 while pending */
    int64_t failed_at;     /* 0 unless given up */
    uint32_t attempts;
    int last_status;       /* HTTP status of the last attempt, 0 = no answer */
    char last_error[128];
    int damaged;           /* outbox_due: the stored subject is not 16 bytes (a row changed outside the
                              vault); the other members are as stored */
};

/* A value kept after erasure under a retention key (control plane). */
struct custos_retained_row {
    uint8_t subject[16];
    char field[49];
    uint32_t day;          /* retention key: shredded when this day (days since epoch) has passed */
    char legal_basis[128];
    char role[33];
    int64_t erased_at;
    const uint8_t *blob;   /* sealed leaves under the retention key (same layout as a record) */
    size_t len;
};

struct custos_store_ops {
    const char *name;

    /* Data-plane backup: a consistent online copy into a new file `out`, labelled with the
       vault's origin and the time, holding no blind-index data at all (no entry, no record's
       list of its entries).  Restore: replace the data plane with such a copy (no connection
       may be open; the caller holds the vault's lock), its blind index empty and marked for a
       rebuild (blind_rebuild_state) in the same file.  Neither touches keys. */
    enum custos_err (*backup)(const char *dir, const char *out, const char *origin, int64_t now);
    enum custos_err (*restore)(const char *dir, const char *in, const char *origin);

    /* Open the store rooted at data directory `dir`; `create` makes new empty databases. */
    enum custos_err (*open)(const char *dir, int create, struct custos_store **out);
    void (*close)(struct custos_store *s);
    enum custos_err (*acquire)(struct custos_store *s, struct custos_store_conn **out);
    void (*release)(struct custos_store *s, struct custos_store_conn *c);
    /* A thread that ends (the rotation's): the connection release kept for it goes back to the
       pool for others.  No effect when it kept none. */
    void (*thread_done)(struct custos_store *s);

    enum custos_err (*begin)(struct custos_store_conn *c, enum custos_plane p);
    enum custos_err (*commit)(struct custos_store_conn *c, enum custos_plane p);
    void (*rollback)(struct custos_store_conn *c, enum custos_plane p);
    /* Bulk mode (import): relaxed per-commit syncing; a final commit with bulk off syncs. */
    void (*set_bulk)(struct custos_store_conn *c, int on);
    /* Flush logs so deleted content leaves the files (after erasures, rotation).  Waits a short,
       bounded time (a fraction of a second) for readers of old pages, since new writers wait
       meanwhile; CUSTOS_ERR_LOCKED when readers kept it from finishing: try again later. */
    enum custos_err (*compact_logs)(struct custos_store_conn *c);
    /* The same for one plane's log only (a rotation's destroy needs the control plane's alone:
       a long reader of the data plane, a backup, must not hold it back). */
    enum custos_err (*compact_log)(struct custos_store_conn *c, enum custos_plane p);
    /* Snapshot reads, for request threads: after snapshot_reads(s, 1) the calling thread's
       plain reads (key_get, erasure_get, subject_get, blind_find outside a transaction) may
       share one read snapshot until anything is committed through this store; a read still
       never sees less than was committed before it began.  snapshot_turn(s) is called by such
       a thread between requests and when idle (at least once a second) so that no snapshot
       outlives SNAPSHOT_MAX_MS or a commit.  Either may be a no-op. */
    void (*snapshot_reads)(struct custos_store *s, int on);
    void (*snapshot_turn)(struct custos_store *s);
    /* Ends the calling thread's snapshot now, whatever its age (the one of c, a connection it
       holds, if not NULL, and of the one it keeps between acquires): called before the thread
       waits for anything a writer may hold (the vault's write lock), since a log flush holds
       writers back while it waits for old snapshots to end.  May be a no-op. */
    void (*snapshot_leave)(struct custos_store *s, struct custos_store_conn *c);
    /* Copy what a plane's log holds into its database now, without waiting for or blocking its
       writer (a bulk load runs this on another thread, so its writer's own checkpoints find
       little left to copy). */
    enum custos_err (*log_checkpoint)(struct custos_store_conn *c, enum custos_plane p);

    /* control plane: small named values */
    enum custos_err (*meta_get)(struct custos_store_conn *c, const char *key, struct custos_buf *out);
    enum custos_err (*meta_put)(struct custos_store_conn *c, const char *key, const void *v, size_t len);

    /* control plane: subject data keys by (subject, generation), wrapped by master key version kv.
       A subject normally has one generation; re-keying adds gen+1 before the record moves to it
       and deletes the old generation after, so a crash never leaves a record without its key. */
    enum custos_err (*key_put)(struct custos_store_conn *c, const uint8_t id[16], uint32_t gen, uint32_t kv,
                               const uint8_t *w, size_t wlen);
    enum custos_err (*key_get)(struct custos_store_conn *c, const uint8_t id[16], uint32_t gen, uint32_t *kv,
                               uint8_t *w, size_t wcap, size_t *wlen);
    /* CUSTOS_OK when the subject has a key of any generation, NOTFOUND when it has none. */
    enum custos_err (*key_any)(struct custos_store_conn *c, const uint8_t id[16]);
    /* Delete every generation (erasure), or every generation except `keep` (keep > 0). */
    enum custos_err (*key_delete)(struct custos_store_conn *c, const uint8_t id[16], uint32_t keep);
    /* Up to `max` keys wrapped under a version < kv, in (id, gen) order after (after, after_gen)
       (after NULL: from the start). */
    enum custos_err (*key_scan_below)(struct custos_store_conn *c, uint32_t kv, const uint8_t *after,
                                      uint32_t after_gen, size_t max,
                                      int (*fn)(void *ctx, const uint8_t id[16], uint32_t gen, uint32_t kv,
                                                const uint8_t *w, size_t wlen),
                                      void *ctx);
    enum custos_err (*key_count_below)(struct custos_store_conn *c, uint32_t kv, uint64_t *n);
    /* Subjects holding more than one key generation (left by an interrupted re-key). */
    enum custos_err (*key_scan_multi)(struct custos_store_conn *c, int (*fn)(void *ctx, const uint8_t id[16]),
                                      void *ctx);

    /* control plane: erasure tombstones */
    enum custos_err (*erasure_put)(struct custos_store_conn *c, const struct custos_erasure_row *r);
    enum custos_err (*erasure_get)(struct custos_store_conn *c, const uint8_t id[16], struct custos_erasure_row *r);
    enum custos_err (*erasure_scan)(struct custos_store_conn *c,
                                    int (*fn)(void *ctx, const struct custos_erasure_row *r), void *ctx);

    /* control plane: principals and tokens */
    enum custos_err (*principal_put)(struct custos_store_conn *c, const struct custos_principal_row *r);
    enum custos_err (*principal_get)(struct custos_store_conn *c, const char *id, struct custos_principal_row *r);
    /* Set disabled = when and the row's new MAC (the MAC covers the disabled state). */
    enum custos_err (*principal_disable)(struct custos_store_conn *c, const char *id, int64_t when,
                                         const uint8_t mac[CUSTOS_STORE_HASH]);
    /* Set an enabled principal's secret hash, its expiry and the row's new MAC (secret rotation, or
       its withdrawal when a rotation is replayed); CUSTOS_ERR_NOTFOUND when no enabled row has id. */
    enum custos_err (*principal_set_secret)(struct custos_store_conn *c, const char *id,
                                            const uint8_t secret_hash[CUSTOS_STORE_HASH], int64_t secret_expires,
                                            const uint8_t mac[CUSTOS_STORE_HASH]);
    /* Every principal row, by id: fn(ctx, row, CUSTOS_OK or CUSTOS_ERR_CORRUPT for a row that does not
       parse (a column of the wrong type, a text with a NUL in it or too long: then only its id, as
       far as it reads, can be shown); fn returns non-zero to stop. */
    enum custos_err (*principal_scan)(struct custos_store_conn *c,
                                      int (*fn)(void *ctx, const struct custos_principal_row *r, enum custos_err row),
                                      void *ctx);
    /* The live tokens (not revoked, expiring after now) owned or minted by principal, newest first, at
       most limit: fn(ctx, row, CUSTOS_OK or CUSTOS_ERR_CORRUPT); owner is not filled. */
    enum custos_err (*token_scan)(struct custos_store_conn *c, const char *principal, int64_t now, uint32_t limit,
                                  int (*fn)(void *ctx, const struct custos_token_row *r, enum custos_err row),
                                  void *ctx);
    /* How many live tokens principal owns or minted. */
    enum custos_err (*token_count)(struct custos_store_conn *c, const char *principal, int64_t now, uint64_t *n);
    /* The token of principal whose hash begins with prefix (8 bytes: a token id), in any state:
       *matches gets 0, 1 or 2 (2: more than one), hash the first one's. */
    enum custos_err (*token_find)(struct custos_store_conn *c, const char *principal, const uint8_t prefix[8],
                                  uint8_t hash[CUSTOS_STORE_HASH], unsigned *matches);
    /* Revocation (the three below), in the caller's transaction: for each live row selected,
       sign(ctx, row as stored, when) sets row->revoked and row->mac (the core signs the row anew
       with its revoked state, or keeps the MAC of a row that fails it), and the store writes
       both.  Integer columns are read strictly: a non-integer is a corrupt row. */
    /* Revoke every live customer token scoped to a subject (erasure). */
    enum custos_err (*token_revoke_scope)(struct custos_store_conn *c, const uint8_t id[16], int64_t when,
                                          custos_token_signer sign, void *ctx);
    /* Delete token rows expired before `before` (ms); *n gets the count. */
    enum custos_err (*token_purge)(struct custos_store_conn *c, int64_t before, uint64_t *n);
    enum custos_err (*token_put)(struct custos_store_conn *c, const struct custos_token_row *r);
    enum custos_err (*token_get)(struct custos_store_conn *c, const uint8_t hash[CUSTOS_STORE_HASH],
                                 struct custos_token_row *r);
    /* Revoke a token and every live token minted with it; *n gets the count of both. */
    enum custos_err (*token_revoke)(struct custos_store_conn *c, const uint8_t hash[CUSTOS_STORE_HASH],
                                    int64_t when, custos_token_signer sign, void *ctx,
                                    uint64_t *n);
    /* Revoke every live token owned or minted by a principal; *n gets the count. */
    enum custos_err (*token_revoke_principal)(struct custos_store_conn *c, const char *id, int64_t when,
                                              custos_token_signer sign, void *ctx,
                                              uint64_t *n);

    /* data plane: sealed subject records with their blind-index entries (the store keeps the
       index in step: put replaces the subject's old entries, delete removes them) */
    enum custos_err (*subject_put)(struct custos_store_conn *c, const uint8_t id[16], const void *blob,
                                   size_t len, const struct custos_blind *blind, size_t nblind, int64_t now,
                                   int insert);
    enum custos_err (*subject_get)(struct custos_store_conn *c, const uint8_t id[16], struct custos_buf *blob);
    enum custos_err (*subject_delete)(struct custos_store_conn *c, const uint8_t id[16]);
    /* data plane: links (subject_delete removes a subject's links too) */
    enum custos_err (*link_put)(struct custos_store_conn *c, const struct custos_link_row *r);
    enum custos_err (*link_scan)(struct custos_store_conn *c, const uint8_t id[16],
                                 int (*fn)(void *ctx, const struct custos_link_row *r), void *ctx);

    /* control plane: erasure outbox */
    enum custos_err (*outbox_put)(struct custos_store_conn *c, struct custos_outbox_row *r);
    enum custos_err (*outbox_update)(struct custos_store_conn *c, const struct custos_outbox_row *r);
    /* Pending entries due at `now` (next_at <= now) that come after (after_at, after_id) in
       (next_at, id) order, oldest first, at most max.  INT64_MIN, 0: from the first. */
    enum custos_err (*outbox_due)(struct custos_store_conn *c, int64_t now, int64_t after_at, int64_t after_id,
                                  size_t max, int (*fn)(void *ctx, const struct custos_outbox_row *r), void *ctx);
    enum custos_err (*outbox_scan_subject)(struct custos_store_conn *c, const uint8_t id[16],
                                           int (*fn)(void *ctx, const struct custos_outbox_row *r), void *ctx);

    /* control plane: retention keys by day, and retained values */
    enum custos_err (*retention_key_put)(struct custos_store_conn *c, uint32_t day, uint32_t kv, const uint8_t *w,
                                         size_t wlen);
    enum custos_err (*retention_key_get)(struct custos_store_conn *c, uint32_t day, uint32_t *kv, uint8_t *w,
                                         size_t wcap, size_t *wlen);
    /* Scan retention keys (for rotation): fn(day, kv, w). */
    enum custos_err (*retention_key_scan)(struct custos_store_conn *c,
                                          int (*fn)(void *ctx, uint32_t day, uint32_t kv, const uint8_t *w,
                                                    size_t wlen),
                                          void *ctx);
    enum custos_err (*retained_put)(struct custos_store_conn *c, const struct custos_retained_row *r);
    enum custos_err (*retained_scan_subject)(struct custos_store_conn *c, const uint8_t id[16],
                                             int (*fn)(void *ctx, const struct custos_retained_row *r), void *ctx);
    /* Shred: delete retention keys and retained values of every day < `day`; *keys, *values counts. */
    enum custos_err (*retention_expire)(struct custos_store_conn *c, uint32_t day, uint64_t *keys,
                                        uint64_t *values);

    /* Bulk load (import).  key_stage and subject_stage store a new subject's key (control plane)
       and record with its blind entries (data plane) durably but invisibly: no lookup, search or
       scan finds them.  subjects_publish(c, p, ...) makes what is staged in plane p visible in one
       synced transaction (CONTROL: the keys; DATA: the records), indexing it in key order there,
       which is what makes a bulk load fast.  `ready` (may be NULL) is called just before that
       commit; an error from it rolls the publish back and is returned.  Ordering is the caller's:
       stage a record only after its key's stage has committed, and let a DATA publish commit only
       after the keys of every record it publishes are published (the two planes may publish at
       the same time on two connections, the DATA one waiting in `ready`): then no record is ever
       visible without its key.  Opening the store publishes whatever an interrupted load left
       staged, keys first.  At most 8 blind entries per staged subject. */
    enum custos_err (*key_stage)(struct custos_store_conn *c, const uint8_t id[16], uint32_t gen, uint32_t kv,
                                 const uint8_t *w, size_t wlen);
    enum custos_err (*subject_stage)(struct custos_store_conn *c, const uint8_t id[16], const void *blob,
                                     size_t len, const struct custos_blind *blind, size_t nblind, int64_t now);
    enum custos_err (*subjects_publish)(struct custos_store_conn *c, enum custos_plane p,
                                        enum custos_err (*ready)(void *ctx), void *ctx);

    /* Subjects whose blind entry (field, hash) matches, up to cap; *n gets the count found.
       A subject with an erasure tombstone is never returned, even while its entries remain
       (an erasure interrupted after its point of no return). */
    enum custos_err (*blind_find)(struct custos_store_conn *c, uint32_t field, const uint8_t hash[CUSTOS_STORE_HASH],
                                  uint8_t (*ids)[16], size_t cap, size_t *n);

    /* Blind-index rebuild after a restore (data plane).  blind_rebuild_state: *pending 1 while a
       rebuild is due, with *after the cursor of the last record done (0 at first), else 0.
       blind_rebuild_scan: up to `max` visible records after cursor `after`, in cursor order:
       fn(ctx, cursor, id, rec, len), rec valid during the call only (non-zero from fn stops).
       In the caller's data-plane transaction: blind_rebuild_clear drops the whole index (a
       rebuild from its first record); blind_rebuild_put replaces a subject's list of entries in
       its row and stages the entries (staged_blind), its record unchanged (NOTFOUND without a
       record), with `drop` first deleting from the index the entries its row listed (a resumed
       rebuild: they may still be there); blind_rebuild_mark records the cursor of the last
       record done.  blind_rebuild_finish, its own transaction: the staged entries into the
       index in key order, and the end of the rebuild (staged entries a crash leaves are
       published by the next open, as an interrupted import's are). */
    enum custos_err (*blind_rebuild_state)(struct custos_store_conn *c, int *pending, int64_t *after);
    enum custos_err (*blind_rebuild_scan)(struct custos_store_conn *c, int64_t after, size_t max,
                                          int (*fn)(void *ctx, int64_t cursor, const uint8_t id[16],
                                                    const uint8_t *rec, size_t len),
                                          void *ctx);
    enum custos_err (*blind_rebuild_clear)(struct custos_store_conn *c);
    enum custos_err (*blind_rebuild_put)(struct custos_store_conn *c, const uint8_t id[16],
                                         const struct custos_blind *blind, size_t nblind, int drop);
    enum custos_err (*blind_rebuild_mark)(struct custos_store_conn *c, int64_t after);
    enum custos_err (*blind_rebuild_finish)(struct custos_store_conn *c);

    /* The progress of an import (data plane, meta `import_mark`): written in the transaction
       that commits a group's records, so it never claims a line whose subject is not stored.
       import_mark_put with v NULL deletes it; import_mark_get: CUSTOS_ERR_NOTFOUND when none. */
    enum custos_err (*import_mark_get)(struct custos_store_conn *c, struct custos_buf *out);
    enum custos_err (*import_mark_put)(struct custos_store_conn *c, const void *v, size_t len);
    /* What the last import that finished read first (data plane, meta `import_done`), so that
       the same input is not imported twice; an erasure deletes it.  Same conventions. */
    enum custos_err (*import_done_get)(struct custos_store_conn *c, struct custos_buf *out);
    enum custos_err (*import_done_put)(struct custos_store_conn *c, const void *v, size_t len);

    /* Subjects with a key (control plane) and no published record (data plane), after whatever
       was staged has been published: left by an import that ended (killed, or failed) between a
       group's key commit and its records' commit.  fn(ctx, id) for each (non-zero stops). */
    enum custos_err (*keys_without_record)(struct custos_store_conn *c, int (*fn)(void *ctx, const uint8_t id[16]),
                                           void *ctx);
};

extern const struct custos_store_ops custos_store_sqlite;

#endif

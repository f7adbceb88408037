/*
 * vault_int.h - private state of the vault shared by the core's modules
 * (vault.c, auth.c, subject.c, audit.c, keys.c, import.c).  Not installed.
 */
#ifndef CUSTOS_VAULT_INT_H
#define CUSTOS_VAULT_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "core/crypto.h"
#include "core/policy.h"
#include "core/schema.h"
#include "custos/ledger.h"
#include "custos/vault.h"
#include "store/store.h"

#define CUSTOS_MAX_KEY_VERSIONS 8
/* The first line of an erasure receipt's canonical text (docs/format.md); no origin may be it. */
#define CUSTOS_RECEIPT_FIRST_LINE "custos-erasure-receipt/v1"

/* Everything secret the vault holds, in one sodium_malloc'd block, read-only while serving. */
struct custos_secrets {
    uint8_t master[CUSTOS_MAX_KEY_VERSIONS][CUSTOS_KEY_BYTES];
    uint32_t master_kv[CUSTOS_MAX_KEY_VERSIONS]; /* version held in each slot, 0 = empty */
    uint8_t root[CUSTOS_KEY_BYTES];              /* system root key (wrapped in the control plane) */
    uint8_t token_key[CUSTOS_KEY_BYTES];         /* keyed hash of tokens */
    uint8_t secret_key[CUSTOS_KEY_BYTES];        /* keyed hash of principal secrets */
    uint8_t blind_key[CUSTOS_KEY_BYTES];         /* blind index */
    uint8_t mac_key[CUSTOS_KEY_BYTES];           /* row MACs (tokens) */
    uint8_t import_key[CUSTOS_KEY_BYTES];        /* keyed digest of an import's input (its mark) */
    uint8_t ledger_sk[64];                       /* Ed25519 ledger signing key */
};

struct custos_rate;
struct custos_tcache;
struct custos_keycache;

struct custos_vault {
    char dir[PATH_MAX];
    int lock_fd;
    /* When the secrets of principal rows from before secret expiry (expiry 0, a principal/v1 MAC)
       expire: a year after this vault was first opened by a release with secret expiry (the time
       in DIR/keys/legacy-secrets, which a write to the database cannot move). */
    int64_t legacy_secret_expires;
    const struct custos_store_ops *ops;
    struct custos_store *store;
    struct custos_ledger *ledger;
    struct custos_ledger_recovery ledger_recovery; /* what opening the ledger had to repair */
    uint64_t ledger_missing; /* entries the vault had seen that its ledger no longer holds */
    int unclean_stop;        /* the last open of the vault did not end with a clean close */
    int marker_set;          /* this open set the open marker (custos_vault_free clears it) */
    struct custos_schema *schema;
    struct custos_policy *policy;
    struct custos_secrets *sec;
    uint32_t current_kv; /* while serving: read and changed under kr_mu only (custos_kek_*) */
    /* The master keys in use (keys.c): how many threads hold each slot's key, and how many of
       them wrap under it, so that a rotation in a running server neither makes another version
       current under a wrap that is not committed yet nor wipes a key a thread is using. */
    pthread_mutex_t kr_mu;
    pthread_cond_t kr_cv;
    int kr_ready;
    unsigned kr_users[CUSTOS_MAX_KEY_VERSIONS];
    unsigned kr_wrapping[CUSTOS_MAX_KEY_VERSIONS];
    unsigned char kr_retiring[CUSTOS_MAX_KEY_VERSIONS]; /* no new holder: being destroyed */
    struct custos_rotation *rot; /* a rotation run by this process in a thread of its own (keys.c) */
    int kr_closed;               /* custos_keys_stop ran: no rotation starts any more */
    unsigned key_flush_ms;       /* how long a serving rotation tries to flush before its destroy */
    char origin[256];
    uint64_t (*now_ms)(void *ctx);
    void *now_ctx;
    struct custos_rate *rate;
    struct custos_tcache *tcache; /* authenticated tokens (auth.c) */
    struct custos_keycache *keys; /* recently used subject keys (keycache.c) */
    pthread_mutex_t write_mu; /* serialises read-modify-write of subject records and keys */
    int write_mu_ready;
    uint64_t last_compact_ms;
    atomic_int compact_soon;   /* set by erasures and re-keys (request threads): the tick flushes within 5 s */
    uint64_t compact_retry_at; /* (tick) after failed flushes, none before this time (ms) */
    unsigned compact_fails;    /* (tick) flushes failed in a row */
    unsigned rebuild_group;    /* subjects per commit of a blind-index rebuild */
    unsigned rebuild_stop_after; /* tests only: see custos_vault_opts */
    uint64_t last_expire_ms;
    uint64_t reapplied_at_open; /* subjects erased again when the vault opened (restore) */
    atomic_int erasures_unfinished; /* an erasure failed after its point of no return (erase.c) */
    int opened;                 /* open completed (erasures re-applied) */
    /* the outbox's sweeping window (erase.c, custos_outbox_next: its one caller, the deliverer
       thread): where the last one ended, in (next_at, id) order; swept = 0: start after the head */
    int64_t ob_at, ob_id;
    int ob_swept;
};

uint64_t custos_now(const struct custos_vault *v);

/* Master key of a version, or NULL.  Only where no rotation can run at the same time (the open,
   the CLI's rotation, the rotation's own thread for the slots it alone changes); everything a
   request thread does goes through custos_kek_*. */
const uint8_t *custos_master(const struct custos_vault *v, uint32_t kv);

/* A master key held by a thread (keys.c).  custos_kek_current: the current version, to wrap a
   new key under; hold it until what it wrapped is committed (or abandoned): a rotation makes
   the next version current only once no wrap under the old one is in flight, so its re-wrap
   pass cannot miss one.  custos_kek_version: version kv, to unwrap; CUSTOS_ERR_CORRUPT when this
   vault has no such key (destroyed by a rotation: a caller that read the wrapped key before the
   rotation re-wrapped it reads it again).  Release each one exactly once; a released or failed
   kek holds nothing. */
struct custos_kek {
    const uint8_t *key;
    uint32_t kv;
    int slot; /* -1: nothing held */
    int wrap;
};
enum custos_err custos_kek_current(struct custos_vault *v, struct custos_kek *k);
enum custos_err custos_kek_version(struct custos_vault *v, uint32_t kv, struct custos_kek *k);
void custos_kek_release(struct custos_vault *v, struct custos_kek *k);
/* The body of POST /v1/keys/rotate: empty, or a JSON object without members (outside input:
   tests/fuzz/fuzz_request.c).  CUSTOS_ERR_INVALID or CUSTOS_ERR_TOOBIG otherwise. */
enum custos_err custos_keys_rotate_parse(const char *body, size_t len);
/* keys.c: set up and tear down kr_mu/kr_cv; stop and wait for a running rotation first. */
void custos_keyring_init(struct custos_vault *v);
void custos_keyring_free(struct custos_vault *v);

/* Store the system root key wrapped under master version kv (control plane, caller's txn). */
enum custos_err custos_system_key_store(struct custos_vault *v, struct custos_store_conn *c, uint32_t kv);

/* Create a principal as the local operator (init); secret receives its secret. */
enum custos_err custos_principal_create_local(struct custos_vault *v, const char *id, const char *kind,
                                              const char *roles, char secret[CUSTOS_SECRET_LEN + 1]);

/* ---- audit (audit.c) ----------------------------------------------------------------------- */

enum custos_result { CUSTOS_RESULT_OK, CUSTOS_RESULT_DENIED, CUSTOS_RESULT_ERROR };

struct custos_event {
    const char *action;                /* "subject.read" */
    enum custos_result result;
    const char *reason;                /* short code when not ok, e.g. "forbidden", "expired_token" */
    const char *ok_reason;             /* the same member on an ok event: only "recovered" (an erasure or a
                                          rotation finished at a start) */
    const struct custos_caller *who;   /* may be NULL */
    const char *actor;                 /* when who is NULL: a claimed principal id, else "-" */
    const char *token_id;              /* when who is NULL: hex prefix of a presented token */
    const char *source;                /* when who is NULL */
    const uint8_t *subject;            /* 16 bytes or NULL */
    const char *purpose;
    const char *const *fields;         /* policy paths released in plain / written */
    size_t nfields;
    const char *const *masked;         /* policy paths released masked */
    size_t nmasked;
    const char *target;                /* principal, link name, ... */
    int64_t count;                     /* results of a search, tokens revoked, ...; -1 = none */
};

void custos_event_init(struct custos_event *e, const char *action, const struct custos_caller *who);

/* Encode e canonically (docs/format.md) into out. */
enum custos_err custos_event_encode(const struct custos_event *e, uint64_t time_ms, struct custos_buf *out);

/* Append e to the ledger and wait until durable, or in deferred mode (custos_defer_begin) only
   queue it and leave the wait to the front end; *index (may be NULL) gets its leaf index.
   CUSTOS_ERR_UNAVAILABLE when it cannot be recorded. */
enum custos_err custos_audit(struct custos_vault *v, const struct custos_event *e, uint64_t *index);
/* The same, always durable on return (before a side effect that depends on it). */
enum custos_err custos_audit_durable(struct custos_vault *v, const struct custos_event *e, uint64_t *index);

/*
 * No audit, no write: called inside the write's transaction, just before its commit, so a
 * ledger that cannot record the event makes the write roll back.  Records e as ok, sets
 * *audited.  If the commit then fails, the caller records that failure as a second event.
 */
enum custos_err custos_audit_in_txn(struct custos_vault *v, struct custos_event *e, int *audited);

/* Queue an event without waiting (bulk paths); custos_audit_wait makes everything up to index
   durable. */
enum custos_err custos_audit_enqueue(struct custos_vault *v, const struct custos_event *e, uint64_t *index);
enum custos_err custos_audit_wait(struct custos_vault *v, uint64_t index);
/* Queue an event encoded (custos_event_encode) and hashed (custos_merkle_leaf_hash) beforehand. */
enum custos_err custos_audit_enqueue_encoded(struct custos_vault *v, const void *entry, size_t len,
                                            const uint8_t leaf[32], uint64_t *index);

/* custos_audit_outcome, then drop *out (may be NULL) when the outcome is an error: the usual end
   of an operation that answers with JSON. */
enum custos_err custos_audit_finish(struct custos_vault *v, struct custos_event *e, enum custos_err rc,
                                    json_t **out);

/* Record an outcome: result/reason derived from `rc` (ok, denied for 401/403/429, error else);
   returns rc, or CUSTOS_ERR_UNAVAILABLE when the event could not be recorded. */
enum custos_err custos_audit_outcome(struct custos_vault *v, struct custos_event *e, enum custos_err rc);

/* ---- authorisation helpers (auth.c) -------------------------------------------------------- */

/* Role bits for a comma-separated role list (unknown roles ignored). */
uint32_t custos_roles_mask(const struct custos_vault *v, const char *roles);

/* Does the caller hold op (system callers hold everything)? */
int custos_caller_may(const struct custos_vault *v, const struct custos_caller *c, uint32_t op);

/* Forget every cached authentication: called after any revocation or disable, so it takes
   effect on the next request. */
void custos_auth_invalidate(struct custos_vault *v);
void custos_tcache_free(struct custos_tcache *t);

/* Per-principal velocity limit; CUSTOS_ERR_RATELIMIT when over `per_minute`. */
enum custos_err custos_rate_check(struct custos_vault *v, const char *principal, uint32_t per_minute);
void custos_rate_free(struct custos_rate *r);

/* Token/secret text <-> 32 random bytes. */
enum custos_err custos_credential_parse(const char *text, const char *prefix, uint8_t raw[32]);
void custos_credential_format(char out[48], const char *prefix, const uint8_t raw[32]);

/* Keyed hashes. */
void custos_token_hash(const struct custos_vault *v, uint8_t out[32], const uint8_t raw[32]);
/* The store's revocation callback (custos_token_signer; ctx: the vault): t->revoked = when, and
   t->mac signed anew if the row as stored passes its MAC (else kept as found). */
void custos_token_sign(void *vault, struct custos_token_row *t, int64_t when);

/*
 * The request bodies of the /v1/principals and /v1/auth routes, parsed and validated without
 * the store or the ledger (outside input: tests/fuzz/fuzz_request.c).  CUSTOS_ERR_INVALID or
 * CUSTOS_ERR_TOOBIG with the detail the API answers.  *j (set whatever the outcome; the caller
 * json_decref's it) owns the strings handed back.
 */
/* POST /v1/auth/token {"principal","secret"}: a well-formed principal id and a string of at most
   64 bytes as secret (not decoded: the caller does it with the same work whatever it holds). */
enum custos_err custos_token_issue_parse(const char *body, size_t len, json_t **j, const char **id,
                                         const char **secret);
/* POST /v1/auth/revoke {"token"}: the token's 32 bytes into raw (wiped on failure). */
enum custos_err custos_token_revoke_parse(const char *body, size_t len, uint8_t raw[32]);
/* POST /v1/principals {"id","kind","roles"[,"secret_ttl_days"]}: *id once it is well-formed (so the
   audit event can name it even when kind or roles are refused), *kind "staff" or "service", roles
   of the policy (1 to 8, never "customer") joined by commas into roles (cap bytes), *ttl_days the
   secret's lifetime (1..CUSTOS_SECRET_TTL_DAYS_MAX, default CUSTOS_SECRET_TTL_DAYS). */
enum custos_err custos_principal_create_parse(const struct custos_policy *pol, const char *body, size_t len,
                                              json_t **j, const char **id, const char **kind, char *roles,
                                              size_t cap, unsigned *ttl_days);

/* ---- the subject key cache (keycache.c) ---------------------------------------------------- */

struct custos_keycache *custos_keycache_new(void);
void custos_keycache_free(struct custos_keycache *k);
uint64_t custos_keycache_epoch(struct custos_keycache *k);
/* 1 and the key copied into key (secure memory) on a hit. */
int custos_keycache_get(struct custos_keycache *k, const uint8_t id[16], uint32_t gen, uint8_t *key);
/* Store, unless a drop happened since `epoch` was read (before the key was read). */
void custos_keycache_put(struct custos_keycache *k, uint64_t epoch, const uint8_t id[16], uint32_t gen,
                         const uint8_t *key);
/* Wipe the subject's entry (erasure, re-key). */
void custos_keycache_drop(struct custos_keycache *k, const uint8_t id[16]);

/* ---- subject records (subject.c) ----------------------------------------------------------- */

/* Create a new subject from validated leaves: new id, new key, sealed record, blind index.
   Control plane first (key), then data.  Used by create and import. */
enum custos_err custos_subject_insert(struct custos_vault *v, struct custos_store_conn *conn,
                                      const struct custos_leaves *leaves, uint8_t id[16], struct custos_event *e,
                                      int *audited);

/* Seal a new subject from validated leaves without storing it: new id, new key (generation 1)
   wrapped under kek (held by the caller with custos_kek_current until the key is committed),
   the record into b, blind entries (up to CUSTOS_SCHEMA_MAX_FIELDS). */
enum custos_err custos_subject_seal_new(struct custos_vault *v, const struct custos_kek *kek,
                                        const struct custos_leaves *leaves, uint8_t id[16],
                                        uint8_t wrapped[CUSTOS_WRAPPED_BYTES], struct custos_buf *b,
                                        struct custos_blind *blind, size_t *nblind);

/* ---- sealed records (subject.c), shared with erase.c --------------------------------------- */

struct custos_sealed_leaf {
    const char *path;
    size_t plen;
    const uint8_t *sealed;
    size_t slen;
};

struct custos_record {
    uint32_t gen;
    struct custos_sealed_leaf *leaf;
    size_t n;
};

struct custos_path_parts {
    char top[CUSTOS_FIELD_NAME_MAX + 1];
    int indexed;
    size_t index;
    char item[CUSTOS_FIELD_NAME_MAX + 1];
};

enum custos_err custos_record_parse(const uint8_t *p, size_t n, struct custos_record *r);
void custos_record_release(struct custos_record *r);
enum custos_err custos_record_begin(struct custos_buf *b, uint32_t gen);
enum custos_err custos_record_finish(struct custos_buf *b, size_t count);
enum custos_err custos_record_add_sealed(struct custos_buf *b, const char *path, size_t plen, const uint8_t *sealed,
                                         size_t slen);
enum custos_err custos_record_add_value(struct custos_buf *b, const uint8_t id[16], const uint8_t *key,
                                        const char *path, char tag, const char *val, size_t len,
                                        const uint8_t nonce[CUSTOS_NONCE_BYTES]);
/* The same under a run's key with its next nonce (crypto.h): the values of one record share the
   run's prefix, so reading them derives XChaCha20's subkey once. */
enum custos_err custos_record_add_value_run(struct custos_buf *b, const uint8_t id[16], struct custos_run *run,
                                            const char *path, char tag, const char *val, size_t len);
/* An opened leaf: tag byte, a value of at most 4096 bytes, and the NUL custos_leaf_open adds. */
#define CUSTOS_PLAIN_CAP (1 + 4096 + 1)
/* This thread's buffer of CUSTOS_PLAIN_CAP bytes for opened leaves (NULL when out of memory).
   Callers wipe the bytes they used; the rest is wiped when the thread exits. */
uint8_t *custos_plain_scratch(void);
/* Open a sealed leaf into out (CUSTOS_PLAIN_CAP bytes); value bytes NUL-terminated at out[*len].
   CUSTOS_ERR_CORRUPT when the stored value is larger than any value the vault seals. */
enum custos_err custos_leaf_open(const uint8_t id[16], const uint8_t *key, const struct custos_sealed_leaf *l,
                                 uint8_t *out, char *tag, size_t *len);
/* The same under a run's key: the leaves of one record, opened one after the other. */
enum custos_err custos_leaf_open_run(const uint8_t id[16], struct custos_run *run, const struct custos_sealed_leaf *l,
                                     uint8_t *out, char *tag, size_t *len);
int custos_path_split(const char *p, size_t n, struct custos_path_parts *pp);
const struct custos_field *custos_leaf_field(const struct custos_schema *s, const struct custos_path_parts *pp,
                                             const struct custos_field **top);
/* Load a subject's record and unwrap its key (GONE / NOTFOUND when missing). */
enum custos_err custos_record_load(struct custos_vault *v, struct custos_store_conn *c, const uint8_t id[16],
                                   struct custos_buf *blob, struct custos_record *r, uint8_t *key);
/* GONE when a tombstone exists, else NOTFOUND (with details). */
enum custos_err custos_subject_missing(struct custos_vault *v, struct custos_store_conn *c, const uint8_t id[16]);
enum custos_err custos_check_purpose(const char *purpose);
enum custos_err custos_check_scope(const struct custos_caller *c, const uint8_t id[16]);
enum custos_err custos_place(json_t *fields, const struct custos_path_parts *pp, json_t *val);
/* "?fields=a,b" -> a bit per top-level field (NULL: 0, meaning every field); 400 on an empty list,
   an unknown name or a stray comma. */
enum custos_err custos_fields_mask(const struct custos_schema *s, const char *fields, uint64_t *mask);
json_t *custos_decode_value(char tag, const char *val, size_t len);
/* custos_vault_open with the data directory's lock already taken: lock_fd (or -1) is an open
   descriptor of DIR/lock holding the flock, which the vault owns from the call on (closed on
   failure too).  For restore, which must not let another process in between. */
enum custos_err custos_vault_open_locked(const struct custos_vault_opts *o, int lock_fd, struct custos_vault **out);

/* 1 when no subject or retention key is wrapped under a master key version below `current`. */
int custos_older_versions_unused(struct custos_vault *v, struct custos_store_conn *c, uint32_t current);

/* At open: destroy master key files below the version in use that nothing is wrapped under any
   more (a rotation stopped between its last re-wrap and its destroy), recorded as a keys.rotate
   event with reason "recovered".  A no-op otherwise (keys.c). */
enum custos_err custos_keys_finish(struct custos_vault *v);

/* The vault's write lock (read-modify-write of records and keys).  c: the connection the caller
   holds, if any; the caller's read snapshots end before it waits (see custos_lock_writes). */
void custos_lock_writes(struct custos_vault *v, struct custos_store_conn *c);
void custos_unlock_writes(struct custos_vault *v);

/* Rebuild the blind index of a restored data plane (backups carry none) from the records whose
   subject keys still exist, in groups, resuming after a crash; a no-op unless the store marks a
   rebuild as due.  *indexed (may be NULL) counts the subjects given entries. */
enum custos_err custos_blind_rebuild(struct custos_vault *v, uint64_t *indexed);

/* ---- the line reader of custos import (import.c) ------------------------------------------- */

/*
 * How custos_import cuts its input into lines (outside input: tests/fuzz/fuzz_import.c).  The
 * input is read through `read` (pieces of any size) into a buffer of chunk + max_line + 1 bytes
 * and handed on in jobs of whole lines, in order.  A line's length does not count its '\n' nor
 * one '\r' before it.  When the buffer holds more than max_line bytes of one line and no newline,
 * that line is not held: `too_long` gets its number and the reader skips to its end.  Longer
 * lines that came whole are handed on (how read(2) cuts the input decides which): the caller
 * rejects them the same way.  Nothing else depends on how the input was cut.
 */
struct custos_import_split {
    /* read(2)'s contract: bytes read (at most n, n > 0), 0 at the end, -1 with errno (EINTR: again) */
    ssize_t (*read)(void *ctx, void *buf, size_t n);
    /* lines first .. first + nlines - 1 in text[0..len), each ending in '\n' except the input's last
       (nlines <= job_lines); text is the reader's buffer, wiped afterwards.  Non-zero stops the
       reading, and custos_import_split returns it. */
    enum custos_err (*lines)(void *ctx, const char *text, size_t len, uint64_t first, uint64_t nlines);
    void (*too_long)(void *ctx, uint64_t line);
    /* may be NULL: the bytes of a line too long to hold, in order, as the reader skips them
       ('\n' included).  These and the jobs' texts are the input, every byte once, in order. */
    void (*skipped)(void *ctx, const char *p, size_t n);
    int (*stopped)(void *ctx);                  /* may be NULL: non-zero ends the reading */
    void (*progress)(void *ctx, uint64_t bytes); /* may be NULL: after each read that was cut */
    void *ctx;
    size_t chunk, max_line, job_lines;          /* all > 0: custos_import uses 1 MiB, 65,536, 256 */
};

/* Read the whole input (or until `stopped`); *bytes counts what was read.  CUSTOS_ERR_IO on a
   read error, CUSTOS_ERR_NOMEM, or what `lines` returned. */
enum custos_err custos_import_split(const struct custos_import_split *sp, uint64_t *bytes);
/* At open, after an import that did not finish (killed, or failed: control-plane meta row
   import_unfinished): a subject.import event (result error, reason not_stored) for each subject
   whose key committed but whose record never did, so that the ledger does not name them as
   imported without saying so; then the row is cleared.  Their wrapped keys stay (nothing to
   open with them). */
enum custos_err custos_import_recover(struct custos_vault *v);

/* The line at text[*off..len) of a job: returns where it starts (NULL when none is left), its
   length without the '\n' that ends it and one '\r' before that in *n, and moves *off past it. */
const char *custos_import_line(const char *text, size_t len, size_t *off, size_t *n);

/* Parse and validate one non-blank line against the schema: a JSON object of at most 65,536
   bytes that flattens into at least one leaf.  *obj (set whatever the outcome; the caller
   json_decref's it) and *leaves (the caller releases them) as custos_schema_flatten gives them.
   CUSTOS_ERR_INVALID / CUSTOS_ERR_TOOBIG with the reason a rejected line is reported with (a
   line over the cap: "line exceeds 65536 bytes", as for one the reader skipped). */
enum custos_err custos_import_parse(const struct custos_schema *schema, const char *p, size_t n, json_t **obj,
                                    struct custos_leaves *leaves);

/* ---- erasure (erase.c) --------------------------------------------------------------------- */

/* Read the values kept under legal retention for an erased subject (purpose legal-retention). */
enum custos_err custos_retained_read(struct custos_vault *v, const struct custos_caller *c, const uint8_t id[16],
                                     const char *fields, json_t **fields_out, struct custos_event *e);

/* Re-wrap every retention key under master version `to` (rotation). */
enum custos_err custos_retention_rewrap(struct custos_vault *v, struct custos_store_conn *c, uint32_t to,
                                        uint64_t *count);

/* Shred retention keys whose period has ended (background job; audited when it shreds). */
enum custos_err custos_retention_expire(struct custos_vault *v, uint64_t *keys, uint64_t *values);

/* Re-apply erasures and principal disables recorded in the ledger after the control plane's marker
   (a rolled-back control plane cannot resurrect a subject, nor re-enable a principal, while the
   ledger survives); *applied counts the erasures.  at_open: also replay secret rotations (only
   then: a running server's rotation has its entry in the ledger before its commit, so a scan
   while it runs would take it for a rolled-back one), unless the ledger is the one found
   rolled back. */
enum custos_err custos_erasures_from_ledger(struct custos_vault *v, uint64_t *applied, int at_open);

/* A token id as the ledger and the token listing show it (16 lowercase hex digits: the first 8
   bytes of the token's keyed hash) into prefix; CUSTOS_ERR_INVALID otherwise. */
enum custos_err custos_token_id_parse(const char *tid, uint8_t prefix[8]);

/* Replay principal id's secret rotations found in the ledger since the control plane's marker (their
   secret ids sids, 16 hex digits each, and whether each revoked tokens, in log order; n >= 1): if
   its row, read in the transaction that writes it, is intact and enabled and does not hold the
   last one's secret, withdraw the secret it holds (a hash nobody has a secret for) and, if any
   rotation after the last one whose secret it does hold revoked tokens, revoke every token it
   owns or minted; *withdrawn says so. */
enum custos_err custos_principal_rotate_replay(struct custos_vault *v, struct custos_store_conn *conn,
                                               const char *id, const char (*sids)[17], const int *revokes, size_t n,
                                               int *withdrawn);

/* Disable principal `id` again if this control plane has it enabled (a rolled-back copy); when is
   the original disable time. */
enum custos_err custos_principal_disable_replay(struct custos_vault *v, struct custos_store_conn *conn,
                                                const char *id, int64_t when);

/* Finish erasures interrupted after their point of no return (a 503 from DELETE), through the
   path the next open takes (custos_erasures_reapply), under the write lock; a no-op unless one
   failed since the last success.  Called by the tick. */
enum custos_err custos_erasures_finish(struct custos_vault *v);

/* Record that the control plane covers every erasure in the ledger so far (tick). */
enum custos_err custos_erasure_mark(struct custos_vault *v);

/* Re-apply erasure tombstones to the data plane and finish interrupted erasures and re-keys
   (startup, restore: at_open; the tick's retries: 0).  *applied (may be NULL) counts records
   removed. */
enum custos_err custos_erasures_reapply(struct custos_vault *v, uint64_t *applied, int at_open);

/* The body of PUT /v1/subjects/{id}/links/{name}, {"webhook": URL}, parsed and checked without
   the store (outside input: tests/fuzz/fuzz_request.c): *url an http:// or https:// URL of 8 to
   2048 bytes, printable ASCII without spaces.  *j (set whatever the outcome; the caller
   json_decref's it) owns *url.  CUSTOS_ERR_INVALID / CUSTOS_ERR_TOOBIG with the API's detail. */
enum custos_err custos_link_body_parse(const char *body, size_t len, json_t **j, const char **url);

/* Mint a customer token (auth.c). */
enum custos_err custos_token_mint_customer(struct custos_vault *v, const struct custos_caller *c,
                                           const uint8_t id[16], char tok[CUSTOS_TOKEN_LEN + 1], int64_t *expires,
                                           char tid[17]);

#endif

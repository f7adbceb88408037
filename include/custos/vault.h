/*
 * vault.h - the public interface of the custos core.
 *
 * The server and the CLI use the core only through this header (and
 * err.h / ledger.h / note.h / merkle.h).  Every operation here:
 *   - takes the caller (who, from where, with which token),
 *   - enforces policy (role, operation, purpose, fields),
 *   - produces exactly one audit event in the ledger, allowed or denied,
 *     and fails with CUSTOS_ERR_UNAVAILABLE when that event cannot be made
 *     durable (no audit, no access),
 *   - returns enum custos_err with a one-line detail (custos_err_msg).
 * Request bodies are passed as raw bytes: the core parses and validates.
 * Outputs that are JSON are returned as new jansson references.
 */
#ifndef CUSTOS_VAULT_H
#define CUSTOS_VAULT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "custos/err.h"

#define CUSTOS_TOKEN_LEN 47   /* "cus_" + 43 base64url characters (256 bits) */
#define CUSTOS_SECRET_LEN 47  /* "cps_" + 43 base64url characters (256 bits) */
#define CUSTOS_SECRET_TTL_DAYS 365      /* a principal secret's lifetime unless secret_ttl_days says */
#define CUSTOS_SECRET_TTL_DAYS_MAX 3650
#define CUSTOS_BODY_MAX 65536 /* request body cap */

struct custos_vault;

enum custos_kind { CUSTOS_KIND_STAFF, CUSTOS_KIND_SERVICE, CUSTOS_KIND_CUSTOMER, CUSTOS_KIND_SYSTEM };

/* Who is calling.  Filled by custos_authenticate() (or custos_caller_system()). */
struct custos_caller {
    char principal[65];   /* principal id; for customer tokens "customer:<subject id>" */
    char minter[65];      /* customer tokens: the principal that minted the token */
    enum custos_kind kind;
    uint32_t roles;       /* policy role bits */
    int scoped;           /* customer token: limited to `scope` */
    uint8_t scope[16];
    char token_id[17];    /* hex prefix of the token's hash (never the token), "" if none */
    uint8_t token_hash[32];
    int has_token;
    char source[48];      /* client address, or "local" for the CLI */
    int system;           /* the local operator (CLI on the data directory): every operation allowed */
};

struct custos_vault_opts {
    const char *dir;
    /* Injected clock (ms since the epoch) for tests; NULL = real clock. */
    uint64_t (*now_ms)(void *ctx);
    void *now_ctx;
    unsigned checkpoint_interval_ms; /* ledger; 0 = 1000 */
    /* Tests: make ledger I/O fail (see struct custos_ledger_config's fault); NULL in production.
       It can only make the ledger refuse entries (requests then fail with 503), never skip one. */
    int (*ledger_fault)(void *ctx, const char *op);
    void *ledger_fault_ctx;
    unsigned rebuild_group; /* subjects per commit of a blind-index rebuild; 0 = 8192 (tests: small) */
    unsigned rebuild_stop_after; /* tests: a rebuild fails after this many commits, as if killed; 0 = never */
    unsigned key_flush_ms; /* tests: how long a serving rotation tries to flush before its destroy; 0 = 10 s */
};

/*
 * Create a new vault in `dir` (created 0700; must not already hold a vault).
 * schema_text/policy_text may be NULL for the defaults; they are validated and
 * stored in the vault.  On success admin_secret and admin_token receive the
 * initial admin principal's secret and a first token (NUL-terminated).
 */
enum custos_err custos_vault_init(const char *dir, const char *schema_text, size_t schema_len,
                                  const char *policy_text, size_t policy_len, const char *origin,
                                  char admin_secret[CUSTOS_SECRET_LEN + 1], char admin_token[CUSTOS_TOKEN_LEN + 1]);

/* Open a vault for use; takes the data directory's exclusive lock (CUSTOS_ERR_LOCKED). */
enum custos_err custos_vault_open(const struct custos_vault_opts *o, struct custos_vault **out);
void custos_vault_free(struct custos_vault *v);
/* 1 when opening found the ledger not closed cleanly (recovered, and recorded as a ledger.recover
   event); *torn_bytes (may be NULL) gets the bytes of an unacknowledged torn tail it dropped. */
int custos_vault_ledger_recovered(const struct custos_vault *v, uint64_t *torn_bytes);
/* How many entries shorter the ledger is than when this vault last opened it (0 normally): a
   ledger rolled back or replaced by an older copy.  Recorded as a ledger.rollback event. */
uint64_t custos_vault_ledger_missing(const struct custos_vault *v);

/* The ledger of an open vault (for checkpoints, proofs, entries). */
struct custos_ledger *custos_vault_ledger(struct custos_vault *v);

/* Read the ledger origin and public key of the vault in `dir` without opening it. */
enum custos_err custos_vault_ledger_identity(const char *dir, char *origin, size_t cap, uint8_t pk[32]);

/* The local operator: used by CLI subcommands working on the data directory. */
void custos_caller_system(struct custos_caller *c);

/* ---- authentication ------------------------------------------------------------------------ */

/* Check a bearer token (the full header value after "Bearer ").  NULL/empty token is a failed
   authentication too.  Audited on failure.  CUSTOS_ERR_UNAUTH when not valid. */
enum custos_err custos_authenticate(struct custos_vault *v, const char *token, const char *source,
                                    struct custos_caller *out);

/* A request whose Authorization header holds no one bearer token (repeated, another scheme):
   audited as custos_authenticate audits a missing token (reason missing_token), answered with
   `msg`.  Always CUSTOS_ERR_UNAUTH (or CUSTOS_ERR_UNAVAILABLE when the ledger refuses). */
enum custos_err custos_authenticate_none(struct custos_vault *v, const char *source, const char *msg,
                                         struct custos_caller *out);

/* Exchange principal id + secret (JSON body {"principal","secret"}) for a token.
   *out = {"token","expires_at"}. */
enum custos_err custos_token_issue(struct custos_vault *v, const char *body, size_t len, const char *source,
                                   json_t **out);

/* Issue a token for a principal without its secret (local operator only). */
enum custos_err custos_token_issue_local(struct custos_vault *v, const struct custos_caller *c, const char *principal,
                                         char token[CUSTOS_TOKEN_LEN + 1], int64_t *expires_ms);

/* Revoke a token (body {"token"}): a token may revoke itself, token.revoke may revoke any. */
enum custos_err custos_token_revoke(struct custos_vault *v, const struct custos_caller *c, const char *body,
                                    size_t len);

/* ---- principals ---------------------------------------------------------------------------- */

/* Create a principal from {"id","kind","roles":[...]}; *out = {"id","secret"}. */
enum custos_err custos_principal_create(struct custos_vault *v, const struct custos_caller *c, const char *body,
                                        size_t len, json_t **out);

/* Disable a principal and revoke every token it owns or minted, at once. */
enum custos_err custos_principal_disable(struct custos_vault *v, const struct custos_caller *c, const char *id);

/* Give a principal a new secret; the old one stops working at once.  Body: empty, or
   {"revoke_tokens": bool, "secret_ttl_days": 1..3650} (both optional; revoke_tokens true: every
   token it owns or minted is revoked in the same transaction).  *out = {"id","secret",
   "secret_expires_at"} (and "revoked_tokens" with revoke_tokens). */
enum custos_err custos_principal_rotate(struct custos_vault *v, const struct custos_caller *c, const char *id,
                                        const char *body, size_t len, json_t **out);

/* Every principal: *out = {"principals":[{"id","kind","roles","created_at","created_by","disabled_at",
   "valid","live_tokens"}]} ({"id","valid":false} for a row that fails its MAC).  principal.read. */
enum custos_err custos_principal_list(struct custos_vault *v, const struct custos_caller *c, json_t **out);

/* The live tokens a principal owns or minted, newest first (at most 1,000): *out = {"principal",
   "tokens":[{"id","kind","issued_at","expires_at","issued_by","source","valid"[,"subject"]
   [,"minted_with"]}],"live_tokens","truncated"}.  principal.read. */
enum custos_err custos_principal_tokens(struct custos_vault *v, const struct custos_caller *c, const char *id,
                                        json_t **out);

/* Revoke principal id's token whose id (16 hex digits, as listed and ledgered) is tid, and every live
   token minted with it; token.revoke.  *out = {"principal","token","revoked": count}. */
enum custos_err custos_token_revoke_id(struct custos_vault *v, const struct custos_caller *c, const char *id,
                                       const char *tid, json_t **out);

/* fn(ctx, id, when) for each enabled, intact principal whose secret expires within within_ms from
   now (or has expired): what serve says at its start, so that nobody learns it from a 401.  Not a
   ledger event: it reads no personal data and answers nobody. */
enum custos_err custos_principal_secrets_expiring(struct custos_vault *v, int64_t within_ms,
                                                  void (*fn)(void *ctx, const char *id, int64_t expires), void *ctx);

/* Parse the body of POST /v1/principals/{id}/rotate (empty: the defaults: no revocation, the
   secret for CUSTOS_SECRET_TTL_DAYS). */
enum custos_err custos_principal_rotate_parse(const char *body, size_t len, int *revoke, unsigned *ttl_days);

/* ---- subjects ------------------------------------------------------------------------------ */

/* Create a subject from one customer object; *out = {"id"}. */
enum custos_err custos_subject_create(struct custos_vault *v, const struct custos_caller *c, const char *body,
                                      size_t len, json_t **out);

/* Read a subject for a purpose; fields = comma-separated top-level names or NULL for all.
   *out = {"id","fields":{...},"masked":[paths]}. */
enum custos_err custos_subject_read(struct custos_vault *v, const struct custos_caller *c, const char *id,
                                    const char *purpose, const char *fields, json_t **out);
/* The same read with the response as JSON text, written without a jansson tree (the HTTP
   front end's path); *text is freed with custos_free_wiped. */
enum custos_err custos_subject_read_text(struct custos_vault *v, const struct custos_caller *c, const char *id,
                                         const char *purpose, const char *fields, char **text, size_t *len);

/* Replace the given fields (JSON null removes one); *out = {"id","updated":[fields]}. */
enum custos_err custos_subject_update(struct custos_vault *v, const struct custos_caller *c, const char *id,
                                      const char *body, size_t len, json_t **out);

/* Equality search on a searchable field by blind index; *out = {"ids":[...]}. */
enum custos_err custos_subject_search(struct custos_vault *v, const struct custos_caller *c, const char *field,
                                      const char *value, const char *purpose, json_t **out);

/* Erase a subject (crypto-shredding); *out = the signed erasure receipt. */
enum custos_err custos_subject_erase(struct custos_vault *v, const struct custos_caller *c, const char *id,
                                     json_t **out);

/* Everything the vault holds about a subject, all fields plain, and its links (subject.export;
   by default only a customer's own token).  *out = {"id","fields":{...},"retired_fields":{...},
   "links":[...]}: retired_fields holds values stored under fields the schema no longer has, each
   under its stored path ("nick", "address_book[0].door"). */
enum custos_err custos_subject_export(struct custos_vault *v, const struct custos_caller *c, const char *id,
                                      json_t **out);

/* Mint a customer token for one subject (token.mint); *out = {"token","expires_at","subject"}. */
enum custos_err custos_subject_token(struct custos_vault *v, const struct custos_caller *c, const char *id,
                                     json_t **out);

/* ---- leaving: links, erasure status, outbox, receipts ---------------------------------------- */

/* Register (or re-point) a linked service's tie to a subject: body {"webhook": URL}.
   *out = {"subject","link","webhook"}. */
enum custos_err custos_link_put(struct custos_vault *v, const struct custos_caller *c, const char *id,
                                const char *name, const char *body, size_t len, json_t **out);

/* Erasure state of a subject: for an erased one, each link's delivery state and the values kept
   under legal retention; for a live one, its registered links. */
enum custos_err custos_erasure_status(struct custos_vault *v, const struct custos_caller *c, const char *id,
                                      json_t **out);

/* One subject.erased notice due for delivery. */
/* Notices handed out for one receiving host by one custos_outbox_next, and the most a deliverer
   should have in flight to one host. */
#define CUSTOS_OUTBOX_PER_HOST 4

struct custos_delivery {
    int64_t id;
    uint32_t attempts;
    int64_t created;
    uint8_t subject[16];
    char link[65];
    char url[2049];
    char host[256];          /* the URL's host, lowercased, no user or port: the per-host key */
    char body[512];          /* {"event":"subject.erased","subject","link","erased_at"} */
    size_t body_len;
    char signature[100];     /* base64 Ed25519 signature of body by the ledger key */
};

/* Up to max notices due now, at most CUSTOS_OUTBOX_PER_HOST for one destination host (so one
   slow receiver cannot take every delivery slot). */
enum custos_err custos_outbox_next(struct custos_vault *v, struct custos_delivery *out, size_t max, size_t *n);
/* Record a delivery attempt: a 2xx status marks it delivered (and is audited); anything else
   schedules a retry with exponential backoff (1 s doubling, capped at 5 min), given up after
   7 days and at least 288 attempts. */
enum custos_err custos_outbox_done(struct custos_vault *v, const struct custos_delivery *d, int http_status,
                                   const char *error);

/* Check an erasure receipt (JSON text) against the vault in dir: its signature under the ledger
   key and, when the ledger is there, that the entry at ledger_index is that erasure.
   CUSTOS_OK when valid; `what` gets a one-line verdict either way. */
enum custos_err custos_receipt_verify(const char *dir, const char *text, size_t len, char *what, size_t cap);

/* The same signature check under a published verifier key (`custos ledger key`), without the
   vault: for a customer or a regulator.  The ledger entry is not cross-checked. */
struct custos_note_verifier;
enum custos_err custos_receipt_verify_key(const struct custos_note_verifier *v, const char *text, size_t len,
                                          char *what, size_t cap);

/* ---- backup and restore ------------------------------------------------------------------ */

/* Consistent online copy of the data plane (sealed records only: no key) into `out` (new file).
   Works while a server runs. */
enum custos_err custos_backup(const char *dir, const char *out);

/* What a restore found and did besides replacing the data plane (what an operator must be told). */
struct custos_restore_report {
    uint64_t reapplied;      /* subjects erased since the backup, erased again */
    int ledger_recovered;    /* the ledger had not been closed cleanly: recovered at the open */
    uint64_t torn_bytes;     /* ... dropping this many bytes of a torn, never acknowledged tail */
    uint64_t ledger_missing; /* entries fewer than the vault last saw: rolled back (ledger.rollback) */
};

/* Replace the data plane with a backup, then re-apply every erasure made since (the vault must
   not be in use).  *rep (may be NULL) is filled when the restore succeeds. */
enum custos_err custos_restore(const char *dir, const char *in, struct custos_restore_report *rep);

/* ---- bulk load ----------------------------------------------------------------------------- */

struct custos_import_stats {
    uint64_t lines, imported, rejected; /* lines: of the whole input, the skipped ones included */
    uint64_t bytes_read;
    uint64_t skipped;        /* --resume: the first lines, imported before, not read again */
    uint64_t imported_before; /* --resume: subjects the interrupted import had stored */
    int interrupted;          /* refused (CUSTOS_ERR_EXISTS): an interrupted import waits */
    int already;              /* refused (CUSTOS_ERR_EXISTS): the last import, which finished, read
                                 the same first bytes (up to 64 KiB) */
};

/* custos_import flags */
#define CUSTOS_IMPORT_RESUME 1u  /* go on after the last line the interrupted import stored */
#define CUSTOS_IMPORT_RESTART 2u /* forget an interrupted import and start from the first line */

/*
 * Import JSON lines from fd (one customer object per line) as the local
 * operator.  Invalid lines are rejected (counted, reported through `bad`
 * with their line number and reason) without stopping the import.
 * `progress` (may be NULL) is called about every 0.2 s.  Memory stays flat.
 *
 * Lines are stored in order, in commit groups, and each group's commit records
 * how far the input was stored (its last line and a keyed BLAKE2b-256 digest
 * of the input through it).  An import that did not end well leaves that mark: a new
 * import is then refused (CUSTOS_ERR_EXISTS) unless it says RESUME (the same
 * input again: its first lines are read and checked against the digest, not
 * stored again; CUSTOS_ERR_INVALID if they differ, CUSTOS_ERR_NOTFOUND if there
 * is nothing to resume) or RESTART (import this input from its first line).
 */
enum custos_err custos_import(struct custos_vault *v, const struct custos_caller *c, int fd, unsigned threads,
                              unsigned flags, void (*progress)(void *ctx, const struct custos_import_stats *s),
                              void (*bad)(void *ctx, uint64_t line, const char *reason), void *ctx,
                              struct custos_import_stats *out);

/* ---- keys ---------------------------------------------------------------------------------- */

struct custos_rotate_stats {
    uint32_t from_version, to_version;
    uint64_t rewrapped;          /* subject keys */
    uint64_t retention_rewrapped;
    uint64_t destroyed_versions;
    int resumed;
};

/* Rotate the master key: new version, re-wrap every subject and system key, destroy old versions
   once unused.  Resumable: running it again after an interruption finishes the job. */
enum custos_err custos_keys_rotate(struct custos_vault *v, const struct custos_caller *c,
                                   struct custos_rotate_stats *out);

/*
 * The same rotation while serving (POST /v1/keys/rotate, keys.manage; body empty or {}): it runs
 * in a thread of its own, beside the requests, and this returns at once: *out = the status
 * below, 202.  CUSTOS_ERR_EXISTS (409) while one runs.  Requests go on meanwhile: new keys are
 * wrapped under the new version as soon as it is current, reads open keys under either version,
 * and the old version is destroyed once nothing is wrapped under it and no thread holds it.
 * Its outcome is a second `keys.rotate` entry (count: subject keys re-wrapped).
 */
enum custos_err custos_keys_rotate_start(struct custos_vault *v, const struct custos_caller *c, const char *body,
                                         size_t len, json_t **out);
/* GET /v1/keys (keys.manage): {"current_version","versions":[...],"rotation":null or {"state":
   "running"|"done"|"failed"|"stopped","from_version","to_version","resumed","started_at",
   "finished_at","rewrapped","retention_rewrapped","destroyed_versions"[,"error":{"code",
   "message"}]}} (the last rotation this process ran). */
enum custos_err custos_keys_status(struct custos_vault *v, const struct custos_caller *c, json_t **out);
/* custos serve's start: a rotation left unfinished (an older master key version still wraps
   something, or a newer one is not current yet) goes on in its own thread, as the local
   operator; its entry says `recovered`.  1 when it started one, else 0 (nothing to do). */
int custos_keys_resume(struct custos_vault *v);
/* For the server's log: once per rotation that ended (done, failed, stopped), a one-line account
   of it into line (no key material) and 1; else 0.  Call it from one thread. */
int custos_keys_report(struct custos_vault *v, char *line, size_t cap);
/* Stop a rotation running in its own thread at the end of its current batch and wait for it
   (its entry says `stopped`; the next start resumes it); from then on this vault starts none
   (503 "the server is stopping"): it is for a server's stop.  custos_vault_free calls it too. */
void custos_keys_stop(struct custos_vault *v);

/* ---- audit for requests the core never saw ------------------------------------------------- */

/* Record a request rejected before it reached an operation (bad route, body too large, ...). */
enum custos_err custos_audit_reject(struct custos_vault *v, const struct custos_caller *c, const char *action,
                                    enum custos_err why);

/* Ledger entries [start, start+count) with their decoded events (ledger.read; count capped at
   1000, default 100).  start/count are the raw query strings (may be NULL).
   *out = {"entries":[{"index","data","event"}], "size"}. */
enum custos_err custos_ledger_entries_json(struct custos_vault *v, const struct custos_caller *c, const char *start,
                                           const char *count, json_t **out);

/* Parse a proof route's JSON answer (what a witness fetches from a server it does not trust):
   an object whose "hashes" member is an array of at most CUSTOS_PROOF_MAX base64 strings of 32
   bytes each; other members are ignored.  Bounded like every outside JSON (64 KiB, depth 8).
   *n gets the number of hashes written to proof.  CUSTOS_ERR_INVALID otherwise. */
enum custos_err custos_proof_json_parse(const char *body, size_t len, uint8_t proof[][32], size_t *n);

/* Strict decimal parse of an unsigned 64-bit value ("0".."18446744073709551615", no sign, no
   spaces, no leading zeros except "0"); CUSTOS_ERR_INVALID naming `what` otherwise. */
enum custos_err custos_parse_u64(const char *s, const char *what, uint64_t *out);

/*
 * Deferred audit, for an event-driven front end.  Between custos_defer_begin() and
 * custos_defer_end() on one thread, operations queue their audit events without waiting for
 * them to become durable (writes and erasures still wait: their events must be durable before
 * they commit).  custos_defer_end() returns 1 and the highest queued index when any event was
 * queued; the front end MUST NOT send the operation's response before
 * custos_audit_is_durable(v, index) holds (custos_vault_on_durable reports progress).
 */
void custos_defer_begin(void);
int custos_defer_end(uint64_t *index);
int custos_audit_is_durable(struct custos_vault *v, uint64_t index);
/* Register fn(ctx, durable, failed), called from the ledger's writer thread as the durable size
   grows (see custos_ledger_on_durable). */
void custos_vault_on_durable(struct custos_vault *v, void (*fn)(void *ctx, uint64_t durable, int failed),
                             void *ctx);

/* Background upkeep, call every second or so: shreds retention keys whose period ended, purges
   token rows expired more than a week ago, flushes database logs after erasures (and every
   minute), and records the ledger position the control plane covers. */
void custos_vault_tick(struct custos_vault *v);

/* Request threads: custos_vault_thread_serving(v, 1) lets this thread's reads share one storage
   snapshot until the next commit (cheaper reads that never see less than was committed before
   they began); such a thread then calls custos_vault_turn(v) between requests and at least once
   a second when idle, so that a snapshot never outlives a commit for long. */
void custos_vault_thread_serving(struct custos_vault *v, int on);
void custos_vault_turn(struct custos_vault *v);

/* Free memory from malloc (or a serialised JSON document), wiping it first: for anything that
   held a personal value (a response body). */
void custos_free_wiped(void *p);
/* Make s valid UTF-8 in place: every byte that does not start a valid sequence (an invalid byte,
   or a character cut by a byte cap such as "%.40s") becomes '?'.  For messages that echo input. */
void custos_utf8_scrub(char *s);
/* custos_utf8_scrub, and every character that could break or disguise a line becomes one '?'
   too (C0 and C1 controls, DEL, U+2028/2029, bidirectional controls): for text that ends up on
   one line of a terminal, a log or a script's input (an echoed "\r" or "\n" must not start a
   line of its own, an ESC or a CSI must not reach a terminal).  It may shorten s. */
void custos_text_oneline(char *s);

/* The compact JSON text of j (what json_dumps(j, JSON_COMPACT) writes, up to the case of hex
   digits in \u escapes), NUL-terminated, its length in *len; free it with custos_free_wiped.
   Written in one pass into one growing buffer that wipes what it leaves behind (jansson's own
   dump costs a callback per fragment and a realloc per doubling: a quarter of a read's CPU).
   NULL when out of memory. */
char *custos_json_dump(const json_t *j, size_t *len);

/* The longest value of a query parameter (the HTTP front end refuses longer ones), so also the
   longest value a searchable field may hold: a longer one could be stored but never searched. */
#define CUSTOS_QUERY_VALUE_MAX 512

/* The host[:port] of an http(s) URL, after any user info: a pointer into url and its length. */
const char *custos_url_authority(const char *url, size_t *len);
/* The origin of an http(s) URL, "scheme://host[:port]", into out (cap > 0): no user info, path,
   query or fragment, any of which may hold a credential of the URL's owner.  "" without "://". */
void custos_url_origin(const char *url, char *out, size_t cap);

/* The dotted-quad text of an IPv4 address (network byte order), as inet_ntop writes it but
   without the sprintf it costs per request. */
void custos_ipv4_text(char out[16], const uint8_t a[4]);

/* Format ms since the epoch as RFC 3339 UTC with milliseconds ("2026-11-28T05:16:23.123Z"). */
void custos_time_format(char out[32], int64_t ms);

#endif

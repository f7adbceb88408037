/*
 * sqlite.c - the embedded store back-end (SQLite).  See store.h.
 *
 * Files: DIR/control.db (control plane) and DIR/data.db (data plane), both
 * in WAL mode with synchronous=FULL (NORMAL for a bulk load's staged records;
 * its staged keys and publishing commits stay FULL), secure_delete on so deleted
 * rows (shredded keys, erased records) are zeroed in the file.
 * A connection opens data.db as "main" and attaches control.db as "ctl";
 * statements are prepared once per connection.
 *
 * Tables (control): meta(k,v), subject_keys(id,gen,kv,w), erasures(id,
 * erased_at,ledger_index), principals(...), tokens(...), outbox(...),
 * retention_keys(day,kv,w), retained(subject,field,day,...),
 * staged_keys(id,gen,kv,w).  (data): meta(k,v), subjects(rid,id,created,
 * updated,rec,blind), subject_ids(id,rid), blind(field,hash,subject),
 * links(subject,name,url,created), staged_ids(id,rid), staged_blind(field,
 * hash,subject).
 * Records live in `subjects` by an internal row number (rid), in insertion
 * order; subject_ids maps a subject id to its rid and is the only way to a
 * record, so a row without its subject_ids entry is invisible.  Keeping the
 * records out of a random-keyed b-tree, and the staged_* tables (see "bulk
 * load" below), are what let a bulk load append instead of rewriting pages
 * spread over the whole index.
 * subjects.blind lists the row's own index entries (4-byte big-endian field
 * number || 32-byte hash each) so the index can be kept in step without a
 * secondary index and without the subject's key.
 * Backups (sq_backup) copy the data plane without blind, staged_blind and
 * subjects.blind; a restore marks the restored file for a blind-index rebuild
 * (meta `blind_rebuild_after`), which the core finishes at open.
 *
 * Request threads may read through snapshots (see "snapshot reads" below):
 * a query-only twin connection holding one read transaction until the next
 * commit through this store.
 *
 * Invariant: a row of subject_ids or blind names a subject whose key is in
 * subject_keys (or was shredded by an erasure, which drops its rows too; until
 * an interrupted erasure is finished, blind_find skips its tombstoned subject).
 *
 * Must never: interpret record bytes, hold a connection across threads at
 * the same time, build SQL from caller input (everything is bound), let a
 * snapshot read miss a commit made before it began, write a blind hash into
 * a backup file.
 */
#include "store/store.h"

#include "core/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "custos/banned.h"

enum stmt_id {
    S_BEGIN_CTL, S_BEGIN_DATA, S_COMMIT_CTL, S_COMMIT_DATA, S_ROLLBACK_CTL, S_ROLLBACK_DATA,
    S_META_GET, S_META_PUT,
    S_KEY_PUT, S_KEY_GET, S_KEY_ANY, S_KEY_DEL, S_KEY_DEL_OTHER, S_KEY_SCAN_FIRST, S_KEY_SCAN_AFTER, S_KEY_COUNT_BELOW,
    S_KEY_MULTI,
    S_ERA_PUT, S_ERA_GET, S_ERA_SCAN,
    S_PRIN_PUT, S_PRIN_GET, S_PRIN_DISABLE, S_PRIN_SECRET, S_PRIN_SCAN, S_TOK_SCAN, S_TOK_COUNT, S_TOK_FIND,
    S_TOK_PUT, S_TOK_GET, S_TOK_REVOKE, S_TOK_REVOKE_PRIN, S_TOK_REVOKE_SCOPE, S_TOK_PURGE,
    S_TOK_REVOKE_ONE, S_TOK_REVOKE_RAW,
    S_SUBJ_INSERT, S_SUBJ_ID_PUT, S_SUBJ_UPDATE, S_SUBJ_GET, S_SUBJ_BLIND, S_SUBJ_DEL, S_SUBJ_ID_DEL,
    S_KEY_STAGE, S_SUBJ_STAGE, S_ID_STAGE, S_BLIND_STAGE,
    S_BLIND_PUT, S_BLIND_DEL, S_BLIND_FIND,
    S_SUBJ_BLIND_SET, S_REBUILD_GET, S_REBUILD_PUT, S_REBUILD_SCAN,
    S_IMARK_GET, S_IMARK_PUT, S_IMARK_DEL, S_IDONE_GET, S_IDONE_PUT, S_IDONE_DEL,
    S_LINK_PUT, S_LINK_SCAN, S_LINK_DEL_SUBJ,
    S_OUT_PUT, S_OUT_UPDATE, S_OUT_DUE, S_OUT_SUBJ,
    S_RK_PUT, S_RK_GET, S_RK_SCAN, S_RET_PUT, S_RET_SUBJ, S_RK_EXPIRE, S_RET_EXPIRE,
    S__COUNT
};

/* A connection spans both files, so a transaction is too: the core runs control-plane and
   data-plane changes as separate transactions, in the order that keeps a crash safe. */
/* revocation: the rows to revoke, with what their MAC covers (then each is revoked and signed anew) */
#define TOK_REVOKE_SELECT                                                                                   \
    "SELECT hash, principal, kind, scope, issued, expires, issued_by, revoked, mac, minted_with FROM ctl.tokens "

static const char *const sql[S__COUNT] = {
    [S_BEGIN_CTL] = "BEGIN IMMEDIATE",
    [S_BEGIN_DATA] = "BEGIN IMMEDIATE",
    [S_COMMIT_CTL] = "COMMIT",
    [S_COMMIT_DATA] = "COMMIT",
    [S_ROLLBACK_CTL] = "ROLLBACK",
    [S_ROLLBACK_DATA] = "ROLLBACK",
    [S_META_GET] = "SELECT v FROM ctl.meta WHERE k = ?1",
    [S_META_PUT] = "INSERT INTO ctl.meta(k, v) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
    [S_KEY_PUT] = "INSERT INTO ctl.subject_keys(id, gen, kv, w) VALUES (?1, ?2, ?3, ?4) "
                  "ON CONFLICT(id, gen) DO UPDATE SET kv = excluded.kv, w = excluded.w",
    [S_KEY_GET] = "SELECT kv, w FROM ctl.subject_keys WHERE id = ?1 AND gen = ?2",
    [S_KEY_ANY] = "SELECT 1 FROM ctl.subject_keys WHERE id = ?1 LIMIT 1",
    [S_KEY_DEL] = "DELETE FROM ctl.subject_keys WHERE id = ?1",
    [S_KEY_DEL_OTHER] = "DELETE FROM ctl.subject_keys WHERE id = ?1 AND gen <> ?2",
    [S_KEY_SCAN_FIRST] = "SELECT id, gen, kv, w FROM ctl.subject_keys WHERE kv < ?1 ORDER BY id, gen LIMIT ?2",
    [S_KEY_SCAN_AFTER] = "SELECT id, gen, kv, w FROM ctl.subject_keys WHERE (id, gen) > (?3, ?4) AND kv < ?1 "
                         "ORDER BY id, gen LIMIT ?2",
    [S_KEY_COUNT_BELOW] = "SELECT count(*) FROM ctl.subject_keys WHERE kv < ?1",
    [S_KEY_MULTI] = "SELECT id FROM ctl.subject_keys GROUP BY id HAVING count(*) > 1",
    [S_ERA_PUT] = "INSERT INTO ctl.erasures(id, erased_at, ledger_index) VALUES (?1, ?2, ?3) "
                  "ON CONFLICT(id) DO UPDATE SET ledger_index = excluded.ledger_index",
    [S_ERA_GET] = "SELECT erased_at, ledger_index FROM ctl.erasures WHERE id = ?1",
    [S_ERA_SCAN] = "SELECT id, erased_at, ledger_index FROM ctl.erasures ORDER BY id",
    [S_PRIN_PUT] = "INSERT INTO ctl.principals(id, kind, roles, secret_hash, created, disabled, created_by, mac, "
                   "secret_expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [S_PRIN_GET] = "SELECT kind, roles, secret_hash, created, disabled, created_by, mac, secret_expires FROM ctl.principals "
                   "WHERE id = ?1",
    [S_PRIN_DISABLE] = "UPDATE ctl.principals SET disabled = ?2, mac = ?3 WHERE id = ?1 AND disabled = 0",
    [S_PRIN_SECRET] = "UPDATE ctl.principals SET secret_hash = ?2, mac = ?3, secret_expires = ?4 WHERE id = ?1 "
                      "AND disabled = 0",
    [S_PRIN_SCAN] = "SELECT id, kind, roles, secret_hash, created, disabled, created_by, mac, secret_expires "
                    "FROM ctl.principals "
                    "ORDER BY id",
    /* "owned or minted" as S_TOK_REVOKE_PRIN has it */
    [S_TOK_SCAN] = "SELECT hash, principal, kind, scope, issued, expires, revoked, issued_by, source, mac, minted_with "
                   "FROM ctl.tokens WHERE (principal = ?1 OR issued_by = ?1) AND revoked = 0 AND expires > ?2 "
                   "ORDER BY issued DESC, hash LIMIT ?3",
    [S_TOK_COUNT] = "SELECT count(*) FROM ctl.tokens WHERE (principal = ?1 OR issued_by = ?1) AND revoked = 0 "
                    "AND expires > ?2",
    [S_TOK_FIND] = "SELECT hash FROM ctl.tokens WHERE hash BETWEEN ?2 AND ?3 AND (principal = ?1 OR issued_by = ?1) "
                   "LIMIT 2",
    [S_TOK_REVOKE_SCOPE] = TOK_REVOKE_SELECT "WHERE scope = ?1 AND revoked = 0 AND expires > ?2",
    [S_TOK_REVOKE_ONE] = "UPDATE ctl.tokens SET revoked = ?2, mac = ?3 WHERE hash = ?1 AND revoked = 0",
    [S_TOK_REVOKE_RAW] = "UPDATE ctl.tokens SET revoked = ?2 WHERE hash = ?1 AND revoked = 0",
    [S_TOK_PURGE] = "DELETE FROM ctl.tokens WHERE expires < ?1",
    [S_TOK_PUT] = "INSERT INTO ctl.tokens(hash, principal, kind, scope, issued, expires, revoked, issued_by, "
                  "source, mac, minted_with) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8, ?9, ?10)",
    [S_TOK_GET] = "SELECT t.principal, t.kind, t.scope, t.issued, t.expires, t.revoked, t.issued_by, t.source, "
                  "t.mac, t.minted_with, p.id, p.kind, p.roles, p.secret_hash, p.created, p.disabled, p.created_by, p.mac, "
                  "p.secret_expires "
                  "FROM ctl.tokens t LEFT JOIN ctl.principals p ON p.id = t.principal WHERE t.hash = ?1",
    [S_TOK_REVOKE] = TOK_REVOKE_SELECT "WHERE (hash = ?1 OR (minted_with = ?1 AND expires > ?2))"
                                       " AND revoked = 0",
    [S_TOK_REVOKE_PRIN] = TOK_REVOKE_SELECT "WHERE (principal = ?1 OR issued_by = ?1)"
                                            " AND revoked = 0 AND expires > ?2",
    /* a subject is found through subject_ids only: a row without its entry there is staged */
    [S_SUBJ_INSERT] = "INSERT INTO subjects(id, created, updated, rec, blind) VALUES (?1, ?2, ?2, ?3, ?4)",
    [S_SUBJ_ID_PUT] = "INSERT INTO subject_ids(id, rid) VALUES (?1, ?2)",
    [S_SUBJ_UPDATE] = "UPDATE subjects SET updated = ?2, rec = ?3, blind = ?4 "
                      "WHERE rid = (SELECT rid FROM subject_ids WHERE id = ?1)",
    [S_SUBJ_GET] = "SELECT rec FROM subjects WHERE rid = (SELECT rid FROM subject_ids WHERE id = ?1)",
    [S_SUBJ_BLIND] = "SELECT blind FROM subjects WHERE rid = (SELECT rid FROM subject_ids WHERE id = ?1)",
    [S_SUBJ_DEL] = "DELETE FROM subjects WHERE rid = (SELECT rid FROM subject_ids WHERE id = ?1)",
    [S_SUBJ_ID_DEL] = "DELETE FROM subject_ids WHERE id = ?1",
    /* bulk load: appends only (rowid tables), indexed in key order by publish() */
    [S_KEY_STAGE] = "INSERT INTO ctl.staged_keys(id, gen, kv, w) VALUES (?1, ?2, ?3, ?4)",
    [S_SUBJ_STAGE] = "INSERT INTO subjects(id, created, updated, rec, blind) VALUES (?1, ?2, ?2, ?3, ?4)",
    [S_ID_STAGE] = "INSERT INTO staged_ids(id, rid) VALUES (?1, ?2)",
    [S_BLIND_STAGE] = "INSERT INTO staged_blind(field, hash, subject) VALUES (?1, ?2, ?3)",
    [S_BLIND_PUT] = "INSERT OR IGNORE INTO blind(field, hash, subject) VALUES (?1, ?2, ?3)",
    [S_BLIND_DEL] = "DELETE FROM blind WHERE field = ?1 AND hash = ?2 AND subject = ?3",
    /* never a subject with a tombstone: an erasure interrupted after its point of no return
       (ledger or data plane failing) leaves its entries until it is finished */
    [S_BLIND_FIND] = "SELECT b.subject FROM blind b WHERE b.field = ?1 AND b.hash = ?2"
                     " AND NOT EXISTS (SELECT 1 FROM ctl.erasures e WHERE e.id = b.subject) LIMIT ?3",
    /* blind-index rebuild after a restore (data-plane meta: the cursor of the last record done) */
    [S_SUBJ_BLIND_SET] = "UPDATE subjects SET blind = ?2 WHERE rid = (SELECT rid FROM subject_ids WHERE id = ?1)",
    [S_REBUILD_GET] = "SELECT v FROM main.meta WHERE k = 'blind_rebuild_after'",
    [S_REBUILD_PUT] = "INSERT OR REPLACE INTO main.meta(k, v) VALUES ('blind_rebuild_after', ?1)",
    [S_IMARK_GET] = "SELECT v FROM main.meta WHERE k = 'import_mark'",
    [S_IMARK_PUT] = "INSERT OR REPLACE INTO main.meta(k, v) VALUES ('import_mark', ?1)",
    [S_IMARK_DEL] = "DELETE FROM main.meta WHERE k = 'import_mark'",
    [S_IDONE_GET] = "SELECT v FROM main.meta WHERE k = 'import_done'",
    [S_IDONE_PUT] = "INSERT OR REPLACE INTO main.meta(k, v) VALUES ('import_done', ?1)",
    [S_IDONE_DEL] = "DELETE FROM main.meta WHERE k = 'import_done'",
    [S_REBUILD_SCAN] = "SELECT s.rid, s.id, s.rec FROM subjects s JOIN subject_ids i ON i.id = s.id AND i.rid = s.rid"
                       " WHERE s.rid > ?1 ORDER BY s.rid LIMIT ?2",
    [S_LINK_PUT] = "INSERT INTO links(subject, name, url, created) VALUES (?1, ?2, ?3, ?4) "
                   "ON CONFLICT(subject, name) DO UPDATE SET url = excluded.url",
    [S_LINK_SCAN] = "SELECT name, url, created FROM links WHERE subject = ?1 ORDER BY name",
    [S_LINK_DEL_SUBJ] = "DELETE FROM links WHERE subject = ?1",
    [S_OUT_PUT] = "INSERT INTO ctl.outbox(subject, link, url, erased_at, created, next_at, delivered_at, failed_at,"
                  " attempts, last_status, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, 0, 0, '')",
    [S_OUT_UPDATE] = "UPDATE ctl.outbox SET next_at = ?2, delivered_at = ?3, failed_at = ?4, attempts = ?5,"
                     " last_status = ?6, last_error = ?7 WHERE id = ?1",
    [S_OUT_DUE] = "SELECT id, subject, link, url, erased_at, created, next_at, delivered_at, failed_at, attempts,"
                  " last_status, last_error FROM ctl.outbox WHERE delivered_at = 0 AND failed_at = 0"
                  " AND next_at <= ?1 AND (next_at, id) > (?3, ?4) ORDER BY next_at, id LIMIT ?2",
    [S_OUT_SUBJ] = "SELECT id, subject, link, url, erased_at, created, next_at, delivered_at, failed_at, attempts,"
                   " last_status, last_error FROM ctl.outbox WHERE subject = ?1 ORDER BY link",
    [S_RK_PUT] = "INSERT INTO ctl.retention_keys(day, kv, w) VALUES (?1, ?2, ?3) "
                 "ON CONFLICT(day) DO UPDATE SET kv = excluded.kv, w = excluded.w",
    [S_RK_GET] = "SELECT kv, w FROM ctl.retention_keys WHERE day = ?1",
    [S_RK_SCAN] = "SELECT day, kv, w FROM ctl.retention_keys ORDER BY day",
    [S_RET_PUT] = "INSERT INTO ctl.retained(subject, field, day, legal_basis, role, erased_at, blob) "
                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(subject, field) DO UPDATE SET day = excluded.day,"
                  " legal_basis = excluded.legal_basis, role = excluded.role, erased_at = excluded.erased_at,"
                  " blob = excluded.blob",
    [S_RET_SUBJ] = "SELECT field, day, legal_basis, role, erased_at, blob FROM ctl.retained WHERE subject = ?1"
                   " ORDER BY field",
    [S_RK_EXPIRE] = "DELETE FROM ctl.retention_keys WHERE day < ?1",
    [S_RET_EXPIRE] = "DELETE FROM ctl.retained WHERE day < ?1",
};

static const char control_schema[] =
    "CREATE TABLE IF NOT EXISTS ctl.meta(k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS ctl.subject_keys(id BLOB NOT NULL, gen INTEGER NOT NULL, kv INTEGER NOT NULL,"
    " w BLOB NOT NULL, PRIMARY KEY(id, gen)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS ctl.erasures(id BLOB PRIMARY KEY, erased_at INTEGER NOT NULL,"
    " ledger_index INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS ctl.principals(id TEXT PRIMARY KEY, kind TEXT NOT NULL, roles TEXT NOT NULL,"
    " secret_hash BLOB NOT NULL, created INTEGER NOT NULL, disabled INTEGER NOT NULL, created_by TEXT NOT NULL,"
    " mac BLOB NOT NULL, secret_expires INTEGER NOT NULL DEFAULT 0)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS ctl.tokens(hash BLOB PRIMARY KEY, principal TEXT NOT NULL, kind TEXT NOT NULL,"
    " scope BLOB, issued INTEGER NOT NULL, expires INTEGER NOT NULL, revoked INTEGER NOT NULL,"
    " issued_by TEXT NOT NULL, source TEXT NOT NULL, mac BLOB NOT NULL, minted_with BLOB) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS ctl.tokens_principal ON tokens(principal);"
    "CREATE INDEX IF NOT EXISTS ctl.tokens_issued_by ON tokens(issued_by);"
    "CREATE INDEX IF NOT EXISTS ctl.tokens_scope ON tokens(scope) WHERE scope IS NOT NULL;"
    "CREATE INDEX IF NOT EXISTS ctl.tokens_expires ON tokens(expires);"
    "CREATE TABLE IF NOT EXISTS ctl.outbox(id INTEGER PRIMARY KEY, subject BLOB NOT NULL, link TEXT NOT NULL,"
    " url TEXT NOT NULL, erased_at INTEGER NOT NULL, created INTEGER NOT NULL, next_at INTEGER NOT NULL,"
    " delivered_at INTEGER NOT NULL, failed_at INTEGER NOT NULL, attempts INTEGER NOT NULL,"
    " last_status INTEGER NOT NULL, last_error TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS ctl.outbox_due ON outbox(next_at) WHERE delivered_at = 0 AND failed_at = 0;"
    "CREATE INDEX IF NOT EXISTS ctl.outbox_subject ON outbox(subject);"
    "CREATE TABLE IF NOT EXISTS ctl.retention_keys(day INTEGER PRIMARY KEY, kv INTEGER NOT NULL, w BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS ctl.retained(subject BLOB NOT NULL, field TEXT NOT NULL, day INTEGER NOT NULL,"
    " legal_basis TEXT NOT NULL, role TEXT NOT NULL, erased_at INTEGER NOT NULL, blob BLOB NOT NULL,"
    " PRIMARY KEY(subject, field)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS ctl.retained_day ON retained(day);"
    "CREATE TABLE IF NOT EXISTS ctl.staged_keys(id BLOB NOT NULL, gen INTEGER NOT NULL, kv INTEGER NOT NULL,"
    " w BLOB NOT NULL);";

static const char data_schema[] =
    "CREATE TABLE IF NOT EXISTS main.meta(k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS main.subjects(rid INTEGER PRIMARY KEY, id BLOB NOT NULL, created INTEGER NOT NULL,"
    " updated INTEGER NOT NULL, rec BLOB NOT NULL, blind BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS main.subject_ids(id BLOB PRIMARY KEY, rid INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS main.staged_ids(id BLOB NOT NULL, rid INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS main.staged_blind(field INTEGER NOT NULL, hash BLOB NOT NULL, subject BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS main.blind(field INTEGER NOT NULL, hash BLOB NOT NULL, subject BLOB NOT NULL,"
    " PRIMARY KEY(field, hash, subject)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS main.links(subject BLOB NOT NULL, name TEXT NOT NULL, url TEXT NOT NULL,"
    " created INTEGER NOT NULL, PRIMARY KEY(subject, name)) WITHOUT ROWID;";

struct custos_store_conn {
    sqlite3 *db;
    int bulk;
    sqlite3_stmt *st[S__COUNT];
    struct custos_store *store;
    int ckpt_frames;                 /* checkpoint the log after a commit leaves this many frames */
    struct custos_store_conn *next;  /* free list */
    struct custos_store_conn *all;   /* every connection of the store, for close */
    /* snapshot reads (see snapshot()): the read-only twin of this connection */
    struct custos_store_conn *twin;
    int snap_open;                   /* (twin) a read transaction is open */
    uint64_t snap_commits;           /* (twin) store->commits when it began */
    uint64_t snap_ms;                /* (twin) monotonic ms when it began */
    unsigned busy_ms;                /* how long on_busy waits; 0 = BUSY_MS */
};

struct custos_store {
    char data_path[PATH_MAX];
    char ctl_path[PATH_MAX];
    pthread_mutex_t mu;
    uint64_t gen;                      /* unique per store, never reused: keys the thread slot */
    struct custos_store_conn *free_list;
    struct custos_store_conn *all;
    atomic_uint_least64_t commits;     /* bumped after every commit, on any connection */
};

/*
 * Each thread keeps the last connection it released in a slot of its own and takes it back
 * without touching the pool's lock: request threads reuse one connection each, with no
 * contention.  The slot names its store by generation, so a slot left over from a closed store
 * is never used (the connection itself is closed with its store).
 */
static _Thread_local struct {
    uint64_t gen;
    struct custos_store_conn *c;
    int snapshots;                     /* this thread reads through snapshots (snapshot_reads) */
} slot;
static uint64_t next_gen = 1;
static pthread_mutex_t gen_mu = PTHREAD_MUTEX_INITIALIZER;

static enum custos_err db_err(sqlite3 *db, int rc, const char *what)
{
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return custos_err_set(CUSTOS_ERR_LOCKED, "%s: database is busy", what);
    if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "%s: database file is corrupt", what);
    if (rc == SQLITE_CONSTRAINT)
        return custos_err_set(CUSTOS_ERR_EXISTS, "%s: already exists", what);
    if (rc == SQLITE_FULL)
        return custos_err_set(CUSTOS_ERR_IO, "%s: disk full", what);
    return custos_err_set(CUSTOS_ERR_IO, "%s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

static sqlite3_stmt *stmt(struct custos_store_conn *c, enum stmt_id id)
{
    if (!c->st[id]) {
        if (sqlite3_prepare_v3(c->db, sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->st[id], NULL) != SQLITE_OK)
            return NULL;
    }
    return c->st[id];
}

/* Run a statement that returns no rows; resets it. */
static enum custos_err run(struct custos_store_conn *c, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);

    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE)
        return db_err(c->db, rc, what);
    return CUSTOS_OK;
}

static void done_stmt(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

#define PREP(var, id)                                                                      \
    sqlite3_stmt *var = stmt(c, id);                                                       \
    if (!var)                                                                              \
        return db_err(c->db, sqlite3_errcode(c->db), "prepare");

static void conn_close(struct custos_store_conn *c)
{
    int i;

    if (!c)
        return;
    conn_close(c->twin);
    for (i = 0; i < S__COUNT; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db);
    free(c);
}

static enum custos_err exec(sqlite3 *db, const char *q, const char *what)
{
    int rc = sqlite3_exec(db, q, NULL, NULL, NULL);

    return rc == SQLITE_OK ? CUSTOS_OK : db_err(db, rc, what);
}

#define CKPT_FRAMES 1000 /* SQLite's own default for wal_autocheckpoint */
#define BUSY_MS 10000    /* how long a connection waits for a lock before giving up */
/* How long a log flush (compact_logs) waits for readers of old pages.  A truncating checkpoint
   holds new writers back while it waits, so the wait must be short: with the full BUSY_MS, one
   long reader (a backup of a large vault) stalled every write for 10 s at a time (red-team
   finding).  Request threads end their read snapshots within 200 ms, so this is enough when
   nothing else reads. */
#define FLUSH_BUSY_MS 250

static void snapshot_end(struct custos_store_conn *t);

/*
 * SQLite's busy handler, as sqlite3_busy_timeout(BUSY_MS) but first ending the waiting thread's
 * own read snapshot: a log flush (compact_logs) waits for old snapshots to end and, meanwhile,
 * holds new writers back, so a thread waiting to write while it holds an old snapshot would
 * wait for itself.
 */
static int on_busy(void *ctx, int count)
{
    static const unsigned delay_ms[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
    struct custos_store_conn *c = ctx;
    unsigned i, total = 0;
    struct timespec ts;

    if (count == 0 && c->twin && c->twin->snap_open) {
        snapshot_end(c->twin);
        return 1; /* try again at once */
    }
    for (i = 0; i < (unsigned)count && i < sizeof(delay_ms) / sizeof(delay_ms[0]); i++)
        total += delay_ms[i];
    if ((unsigned)count >= sizeof(delay_ms) / sizeof(delay_ms[0]))
        total += 100u * ((unsigned)count - (unsigned)(sizeof(delay_ms) / sizeof(delay_ms[0])));
    if (total >= (c->busy_ms ? c->busy_ms : BUSY_MS))
        return 0;
    i = (unsigned)count < sizeof(delay_ms) / sizeof(delay_ms[0]) ? delay_ms[count] : 100u;
    ts.tv_sec = 0;
    ts.tv_nsec = (long)i * 1000000L;
    nanosleep(&ts, NULL);
    return 1;
}

/*
 * Called by SQLite after each commit on a read-write connection, the commit visible and its
 * write lock released: counts the commit (snapshot readers start over) and checkpoints as
 * wal_autocheckpoint would (this hook replaces SQLite's own).
 */
static int on_commit(void *ctx, sqlite3 *db, const char *name, int frames)
{
    struct custos_store_conn *c = ctx;

    atomic_fetch_add(&c->store->commits, 1);
    if (frames >= c->ckpt_frames)
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return SQLITE_OK;
}

/* tokens before minted_with (revoking a minter's token revokes what it minted): add the column */
static enum custos_err migrate_tokens(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int r = sqlite3_prepare_v2(db, "SELECT count(*) FROM pragma_table_info('tokens', 'ctl') WHERE name = 'minted_with'",
                               -1, &st, NULL),
        has = 1;
    enum custos_err rc = CUSTOS_OK;

    if (r == SQLITE_OK && (r = sqlite3_step(st)) == SQLITE_ROW)
        has = sqlite3_column_int(st, 0) == 1;
    sqlite3_finalize(st);
    if (r != SQLITE_ROW)
        return db_err(db, r, "check control schema");
    if (!has)
        rc = exec(db, "ALTER TABLE ctl.tokens ADD COLUMN minted_with BLOB", "migrate tokens");
    if (!rc)
        rc = exec(db,
                  "CREATE INDEX IF NOT EXISTS ctl.tokens_minted_with ON tokens(minted_with) WHERE minted_with IS NOT NULL",
                  "migrate tokens");
    return rc;
}

/* principals before secret expiry: add the column (0: the secret never expires, and the row's MAC
   is the version 1 one, which does not cover it) */
static enum custos_err migrate_principals(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int r = sqlite3_prepare_v2(
            db, "SELECT count(*) FROM pragma_table_info('principals', 'ctl') WHERE name = 'secret_expires'", -1, &st,
            NULL),
        has = 1;

    if (r == SQLITE_OK && (r = sqlite3_step(st)) == SQLITE_ROW)
        has = sqlite3_column_int(st, 0) == 1;
    sqlite3_finalize(st);
    if (r != SQLITE_ROW)
        return db_err(db, r, "check control schema");
    if (has)
        return CUSTOS_OK;
    return exec(db, "ALTER TABLE ctl.principals ADD COLUMN secret_expires INTEGER NOT NULL DEFAULT 0",
                "migrate principals");
}

/* data.db before subject_ids kept subjects keyed by id (a random-keyed b-tree holding the records
   themselves): move the rows to the rid-keyed table and index their ids, in one transaction. */
static enum custos_err migrate_subjects(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int r = sqlite3_prepare_v2(db,
                               "SELECT (SELECT count(*) FROM main.sqlite_master WHERE type = 'table' AND name = "
                               "'subjects'), (SELECT count(*) FROM pragma_table_info('subjects', 'main') WHERE "
                               "name = 'rid')",
                               -1, &st, NULL),
        old = 0;
    enum custos_err rc;

    if (r == SQLITE_OK && (r = sqlite3_step(st)) == SQLITE_ROW)
        old = sqlite3_column_int(st, 0) == 1 && sqlite3_column_int(st, 1) == 0;
    sqlite3_finalize(st);
    if (r != SQLITE_ROW)
        return db_err(db, r, "check data schema");
    if (!old)
        return CUSTOS_OK;
    if ((rc = exec(db, "BEGIN IMMEDIATE; ALTER TABLE main.subjects RENAME TO subjects_v1;", "migrate subjects")) ||
        (rc = exec(db, data_schema, "migrate subjects")) ||
        (rc = exec(db,
                   "INSERT OR ROLLBACK INTO main.subjects(id, created, updated, rec, blind)"
                   " SELECT id, created, updated, rec, blind FROM main.subjects_v1 ORDER BY rowid;"
                   "INSERT OR ROLLBACK INTO main.subject_ids(id, rid) SELECT id, rid FROM main.subjects ORDER BY id;"
                   "DROP TABLE main.subjects_v1; COMMIT;",
                   "migrate subjects")))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static enum custos_err conn_open(struct custos_store *s, int create, struct custos_store_conn **out)
{
    struct custos_store_conn *c = calloc(1, sizeof(*c));
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    enum custos_err rc;
    sqlite3_stmt *att = NULL;
    int r;

    if (!c)
        return CUSTOS_ERR_NOMEM;
    r = sqlite3_open_v2(s->data_path, &c->db, flags, NULL);
    if (r != SQLITE_OK) {
        /* only a missing file means "no vault": one that cannot be opened (its mode, the directory's)
           must not send the operator to custos init */
        rc = r == SQLITE_CANTOPEN && access(s->data_path, F_OK) != 0 && errno == ENOENT
                 ? custos_err_set(CUSTOS_ERR_NOTFOUND, "no vault database (run custos init)")
                 : db_err(c->db, r, "open data.db");
        goto fail;
    }
    sqlite3_busy_timeout(c->db, 10000);
    sqlite3_extended_result_codes(c->db, 0);
    /* ATTACH with a bound file name: never spliced into SQL. */
    if (!create && access(s->ctl_path, F_OK) != 0) {
        rc = custos_err_set(CUSTOS_ERR_NOTFOUND, "control database is missing");
        goto fail;
    }
    /* data.db's schema read on its own first: a damaged data.db is named as such, not as the
       attach's failure (which would blame control.db) */
    if (!create && (rc = exec(c->db, "SELECT count(*) FROM main.sqlite_master", "open data.db")))
        goto fail;
    r = sqlite3_prepare_v2(c->db, "ATTACH DATABASE ?1 AS ctl", -1, &att, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_text(att, 1, s->ctl_path, -1, SQLITE_STATIC);
        r = sqlite3_step(att);
        r = r == SQLITE_DONE ? SQLITE_OK : r;
    }
    sqlite3_finalize(att);
    if (r != SQLITE_OK) {
        rc = db_err(c->db, r, "attach control.db");
        goto fail;
    }
    if (create && (rc = exec(c->db, "PRAGMA main.page_size=16384; PRAGMA ctl.page_size=16384;", "configure")))
        goto fail;
    if ((rc = exec(c->db,
                   "PRAGMA main.journal_mode=WAL; PRAGMA ctl.journal_mode=WAL;"
                   "PRAGMA main.synchronous=FULL; PRAGMA ctl.synchronous=FULL;"
                   "PRAGMA main.secure_delete=ON; PRAGMA ctl.secure_delete=ON;"
                   "PRAGMA temp_store=MEMORY; PRAGMA trusted_schema=OFF;"
                   /* pages read through one shared mapping instead of a cache per connection */
                   "PRAGMA main.mmap_size=1073741824; PRAGMA ctl.mmap_size=1073741824;",
                   "configure")))
        goto fail;
    c->store = s;
    c->ckpt_frames = CKPT_FRAMES;
    sqlite3_wal_hook(c->db, on_commit, c);
    sqlite3_busy_handler(c->db, on_busy, c);
    if (create && ((rc = exec(c->db, control_schema, "create control schema")) ||
                   (rc = exec(c->db, data_schema, "create data schema")) || (rc = migrate_tokens(c->db))))
        goto fail;
    /* tables added by later versions (idempotent) */
    if (!create && ((rc = exec(c->db, control_schema, "upgrade control schema")) || (rc = migrate_tokens(c->db)) ||
                    (rc = migrate_principals(c->db)) ||
                    (rc = migrate_subjects(c->db)) || (rc = exec(c->db, data_schema, "upgrade data schema"))))
        goto fail;
    *out = c;
    return CUSTOS_OK;
fail:
    conn_close(c);
    return rc;
}

static enum custos_err publish_all(struct custos_store_conn *c);
static int staged_left(sqlite3 *db);

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_setup(void)
{
    /* SQLite's memory statistics take one process-wide mutex on every allocation: with a
       connection per request thread that lock is the hottest in the read path. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static enum custos_err sq_open(const char *dir, int create, struct custos_store **out)
{
    struct custos_store *s;
    struct custos_store_conn *c = NULL;
    enum custos_err rc;

    pthread_once(&global_once, global_setup);
    s = calloc(1, sizeof(*s));
    *out = NULL;
    if (!s)
        return CUSTOS_ERR_NOMEM;
    snprintf(s->data_path, sizeof(s->data_path), "%s/data.db", dir);
    snprintf(s->ctl_path, sizeof(s->ctl_path), "%s/control.db", dir);
    pthread_mutex_init(&s->mu, NULL);
    /* The first connection checks that the files open and (on create) builds the schema. */
    if (create) {
        /* create both files 0600 before SQLite does (its WAL files inherit the mode) */
        int fd1 = open(s->data_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        int fd2 = open(s->ctl_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

        if (fd1 >= 0)
            close(fd1);
        if (fd2 >= 0)
            close(fd2);
        if (fd1 < 0 || fd2 < 0) {
            pthread_mutex_destroy(&s->mu);
            free(s);
            return custos_err_set(CUSTOS_ERR_EXISTS, "database files already exist in %s", dir);
        }
    }
    if ((rc = conn_open(s, create, &c))) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return rc;
    }
    /* an import interrupted by a crash: its staged subjects are complete, make them visible */
    if (!create && staged_left(c->db) != 0 && (rc = publish_all(c))) {
        conn_close(c);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return rc;
    }
    s->free_list = c;
    s->all = c;
    pthread_mutex_lock(&gen_mu);
    s->gen = next_gen++;
    pthread_mutex_unlock(&gen_mu);
    *out = s;
    return CUSTOS_OK;
}

static void sq_close(struct custos_store *s)
{
    struct custos_store_conn *c, *n;

    if (!s)
        return;
    for (c = s->all; c; c = n) {
        n = c->all;
        conn_close(c);
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- snapshot reads ------------------------------------------------------------------------ */

/*
 * A plain read (outside any transaction of the caller's) costs SQLite a read transaction of its
 * own: locking and unlocking the log index and a stat of the file, four system calls that are
 * most of a subject read's storage cost.  A request thread that asked for it (snapshot_reads)
 * instead reads through a query-only twin of its connection that keeps one read transaction
 * open for as long as nothing has been committed through this store since it began: every
 * commit, on any connection, bumps store->commits after it is visible, and the next read starts
 * a new transaction.  So a read never sees less than what was committed before it started, the
 * same guarantee a fresh transaction gives.  The process owns the data directory (its lock), so
 * no commit escapes the count.  snapshot_turn ends an old or outdated snapshot so that an idle
 * thread never holds the log back from checkpointing.
 */
#define SNAPSHOT_MAX_MS 200

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void snapshot_end(struct custos_store_conn *t)
{
    if (t && t->snap_open) {
        if (!sqlite3_get_autocommit(t->db))
            sqlite3_exec(t->db, "COMMIT", NULL, NULL, NULL);
        t->snap_open = 0;
    }
}

/* 1 when both files are in WAL mode (the journal_mode pragma may have been refused). */
static int both_wal(sqlite3 *db)
{
    static const char *const q[2] = {"PRAGMA main.journal_mode", "PRAGMA ctl.journal_mode"};
    int ok = 1;

    for (int i = 0; i < 2 && ok; i++) {
        sqlite3_stmt *st = NULL;

        ok = sqlite3_prepare_v2(db, q[i], -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
             sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
        sqlite3_finalize(st);
    }
    return ok;
}

static enum custos_err twin_open(struct custos_store_conn *c)
{
    struct custos_store_conn *t = NULL;
    enum custos_err rc;

    if ((rc = conn_open(c->store, 0, &t)))
        return rc;
    sqlite3_wal_hook(t->db, NULL, NULL); /* it never commits anything */
    if ((rc = exec(t->db, "PRAGMA query_only=1", "configure snapshot")) || !both_wal(t->db)) {
        /* commits are only counted through the log's hook: without WAL, no snapshots */
        conn_close(t);
        return rc ? rc : custos_err_set(CUSTOS_ERR_IO, "snapshot reads need WAL mode");
    }
    c->twin = t;
    return CUSTOS_OK;
}

/* The connection a plain read of c runs on: c itself inside a transaction, else the twin. */
static struct custos_store_conn *snapshot(struct custos_store_conn *c)
{
    struct custos_store_conn *t;
    uint64_t n;

    if (!slot.snapshots || c->bulk || !sqlite3_get_autocommit(c->db))
        return c; /* inside a transaction the caller reads its own view */
    if (!c->twin && twin_open(c) != CUSTOS_OK) {
        custos_err_clear();
        return c;
    }
    t = c->twin;
    n = atomic_load(&c->store->commits);
    if (t->snap_open && (t->snap_commits != n || sqlite3_get_autocommit(t->db)))
        snapshot_end(t); /* outdated, or SQLite ended it after an error */
    if (!t->snap_open) {
        if (sqlite3_exec(t->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
            return c;
        t->snap_open = 1;
        t->snap_commits = n; /* read before BEGIN: the snapshot holds at least that much */
        t->snap_ms = mono_ms();
    }
    return t;
}

static void sq_snapshot_reads(struct custos_store *s, int on)
{
    (void)s;
    slot.snapshots = on;
    if (!on && slot.c)
        snapshot_end(slot.c->twin);
}

static void sq_snapshot_turn(struct custos_store *s)
{
    struct custos_store_conn *t = slot.c && slot.gen == s->gen ? slot.c->twin : NULL;

    if (t && t->snap_open &&
        (t->snap_commits != atomic_load(&s->commits) || mono_ms() - t->snap_ms > SNAPSHOT_MAX_MS))
        snapshot_end(t);
}

static void sq_snapshot_leave(struct custos_store *s, struct custos_store_conn *c)
{
    if (c)
        snapshot_end(c->twin);
    snapshot_end(slot.c && slot.gen == s->gen ? slot.c->twin : NULL);
}

static enum custos_err sq_acquire(struct custos_store *s, struct custos_store_conn **out)
{
    struct custos_store_conn *c;
    enum custos_err rc;

    if (slot.c && slot.gen == s->gen) {
        *out = slot.c;
        slot.c = NULL;
        return CUSTOS_OK;
    }
    pthread_mutex_lock(&s->mu);
    c = s->free_list;
    if (c)
        s->free_list = c->next;
    pthread_mutex_unlock(&s->mu);
    if (c) {
        c->next = NULL;
        *out = c;
        return CUSTOS_OK;
    }
    if ((rc = conn_open(s, 0, out)))
        return rc;
    pthread_mutex_lock(&s->mu);
    (*out)->all = s->all;
    s->all = *out;
    pthread_mutex_unlock(&s->mu);
    return CUSTOS_OK;
}

static void sq_release(struct custos_store *s, struct custos_store_conn *c)
{
    if (!c)
        return;
    if (!sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL); /* a caller forgot: never leak a txn */
    if (!slot.c || slot.gen != s->gen) { /* kept for this thread's next acquire (or replaces a closed store's) */
        slot.gen = s->gen;
        slot.c = c;
        return;
    }
    snapshot_end(c->twin); /* nobody's turn would end it on the free list */
    pthread_mutex_lock(&s->mu);
    c->next = s->free_list;
    s->free_list = c;
    pthread_mutex_unlock(&s->mu);
}

static void sq_thread_done(struct custos_store *s)
{
    struct custos_store_conn *c = slot.gen == s->gen ? slot.c : NULL;

    slot.c = NULL;
    if (!c)
        return;
    snapshot_end(c->twin);
    pthread_mutex_lock(&s->mu);
    c->next = s->free_list;
    s->free_list = c;
    pthread_mutex_unlock(&s->mu);
}

static enum custos_err sq_begin(struct custos_store_conn *c, enum custos_plane p)
{
    if (c->bulk) {
        /* bulk loads write one plane per connection: a deferred BEGIN locks only the file the
           transaction writes, so the two planes load in parallel */
        int r = sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL);

        return r == SQLITE_OK ? CUSTOS_OK : db_err(c->db, r, "begin");
    }
    {
        PREP(s, p == CUSTOS_PLANE_CONTROL ? S_BEGIN_CTL : S_BEGIN_DATA);
        return run(c, s, "begin");
    }
}

static enum custos_err sq_commit(struct custos_store_conn *c, enum custos_plane p)
{
    enum custos_err rc;
    PREP(s, p == CUSTOS_PLANE_CONTROL ? S_COMMIT_CTL : S_COMMIT_DATA);

    rc = run(c, s, "commit");
    /* this thread's snapshot is older than what it just committed: the next read starts a new
       one anyway, and ending it now lets a log flush waiting for old snapshots go on at once
       (instead of when the thread's next turn comes: a flush could time out meanwhile) */
    if (!rc)
        snapshot_end(c->twin);
    return rc;
}

static void sq_rollback(struct custos_store_conn *c, enum custos_plane p)
{
    if (!sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    (void)p;
}

static void sq_set_bulk(struct custos_store_conn *c, int on)
{
    /* bulk: records (data plane) are staged without an fsync per commit (publish and the final
       checkpoint sync them), 8 MiB caches, checkpoints every 16,384 frames.  Staged keys (control
       plane) stay synchronous=FULL: SQLite orders nothing between two log files, so a data-plane
       checkpoint could otherwise make a group's records durable before its keys, and a crash
       would then publish records without keys.  One fsync per key group (8,192 subjects).
       temp_store=FILE: a publish's ORDER BY sorts runs of at most the cache size (8 MiB) and
       merges them from temporary files; with MEMORY those files are heap (+260 MiB for a publish
       of 10^6 subjects).  They hold ids, blind hashes and wrapped keys, never a plaintext value,
       and are unlinked as soon as they are opened. */
    sqlite3_exec(c->db,
                 on ? "PRAGMA main.synchronous=NORMAL; PRAGMA ctl.synchronous=FULL;"
                      "PRAGMA main.cache_size=-8192; PRAGMA ctl.cache_size=-8192;"
                      "PRAGMA main.mmap_size=0; PRAGMA ctl.mmap_size=0;" /* memory flat however large */
                      "PRAGMA temp_store=FILE;"
                    : "PRAGMA main.synchronous=FULL; PRAGMA ctl.synchronous=FULL;"
                      "PRAGMA main.cache_size=-2000; PRAGMA ctl.cache_size=-2000;"
                      "PRAGMA main.mmap_size=1073741824; PRAGMA ctl.mmap_size=1073741824;"
                      "PRAGMA temp_store=MEMORY;",
                 NULL, NULL, NULL);
    c->ckpt_frames = on ? 16384 : CKPT_FRAMES; /* not the pragma: it would replace on_commit */
    c->bulk = on;
}

static enum custos_err sq_compact_log(struct custos_store_conn *c, enum custos_plane p)
{
    int rc;

    c->busy_ms = FLUSH_BUSY_MS;
    rc = sqlite3_wal_checkpoint_v2(c->db, p == CUSTOS_PLANE_CONTROL ? "ctl" : "main", SQLITE_CHECKPOINT_TRUNCATE,
                                   NULL, NULL);
    c->busy_ms = 0;
    if (rc == SQLITE_BUSY)
        return CUSTOS_ERR_LOCKED;
    return rc == SQLITE_OK ? CUSTOS_OK : db_err(c->db, rc, "checkpoint");
}

static enum custos_err sq_compact_logs(struct custos_store_conn *c)
{
    int rc;

    c->busy_ms = FLUSH_BUSY_MS;
    rc = sqlite3_wal_checkpoint_v2(c->db, "ctl", SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    c->busy_ms = 0;
    /* BUSY: readers still use old log pages; the caller tries again later */
    if (rc == SQLITE_BUSY)
        return CUSTOS_ERR_LOCKED;
    return rc == SQLITE_OK ? CUSTOS_OK : db_err(c->db, rc, "checkpoint");
}

static enum custos_err sq_log_checkpoint(struct custos_store_conn *c, enum custos_plane p)
{
    int rc = sqlite3_wal_checkpoint_v2(c->db, p == CUSTOS_PLANE_CONTROL ? "ctl" : "main", SQLITE_CHECKPOINT_PASSIVE,
                                       NULL, NULL);

    /* BUSY: another connection checkpoints right now, which is as good */
    return rc == SQLITE_OK || rc == SQLITE_BUSY ? CUSTOS_OK : db_err(c->db, rc, "checkpoint");
}

/* ---- meta, keys, erasures ------------------------------------------------------------------ */

/* The one blob a bound statement selects, into out; CUSTOS_ERR_NOTFOUND without a row. */
static enum custos_err one_blob(struct custos_store_conn *c, sqlite3_stmt *s, struct custos_buf *out, const char *what)
{
    enum custos_err rc = CUSTOS_ERR_NOTFOUND;
    int r = sqlite3_step(s);

    if (r == SQLITE_ROW)
        rc = custos_buf_add(out, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0));
    else if (r != SQLITE_DONE)
        rc = db_err(c->db, r, what);
    done_stmt(s);
    return rc;
}

static enum custos_err sq_meta_get(struct custos_store_conn *c, const char *key, struct custos_buf *out)
{
    PREP(s, S_META_GET);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    return one_blob(c, s, out, "meta get");
}

static enum custos_err sq_meta_put(struct custos_store_conn *c, const char *key, const void *v, size_t len)
{
    PREP(s, S_META_PUT);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, v, (int)len, SQLITE_STATIC);
    return run(c, s, "meta put");
}

/* A wrapped key row (id, gen, kv, w) through statement `id_st`: S_KEY_PUT or S_KEY_STAGE. */
static enum custos_err key_row(struct custos_store_conn *c, enum stmt_id id_st, const uint8_t id[16], uint32_t gen,
                               uint32_t kv, const uint8_t *w, size_t wlen, const char *what)
{
    PREP(s, id_st);
    sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, gen);
    sqlite3_bind_int64(s, 3, kv);
    sqlite3_bind_blob(s, 4, w, (int)wlen, SQLITE_STATIC);
    return run(c, s, what);
}

static enum custos_err sq_key_put(struct custos_store_conn *c, const uint8_t id[16], uint32_t gen, uint32_t kv,
                                  const uint8_t *w, size_t wlen)
{
    return key_row(c, S_KEY_PUT, id, gen, kv, w, wlen, "key put");
}

static enum custos_err sq_key_get(struct custos_store_conn *c0, const uint8_t id[16], uint32_t gen, uint32_t *kv,
                                  uint8_t *w, size_t wcap, size_t *wlen)
{
    struct custos_store_conn *c = snapshot(c0);
    enum custos_err rc = CUSTOS_ERR_NOTFOUND;
    int r;
    PREP(s, S_KEY_GET);

    sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, gen);
    r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(s, 1);

        if (n > wcap) {
            rc = custos_err_set(CUSTOS_ERR_CORRUPT, "wrapped key has a wrong length");
        } else {
            *kv = (uint32_t)sqlite3_column_int64(s, 0);
            memcpy(w, sqlite3_column_blob(s, 1), n);
            *wlen = n;
            rc = CUSTOS_OK;
        }
    } else if (r != SQLITE_DONE)
        rc = db_err(c->db, r, "key get");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_key_any(struct custos_store_conn *c, const uint8_t id[16])
{
    enum custos_err rc = CUSTOS_ERR_NOTFOUND;
    int r;
    PREP(s, S_KEY_ANY);

    sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
    r = sqlite3_step(s);
    if (r == SQLITE_ROW)
        rc = CUSTOS_OK;
    else if (r != SQLITE_DONE)
        rc = db_err(c->db, r, "key lookup");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_key_delete(struct custos_store_conn *c, const uint8_t id[16], uint32_t keep)
{
    PREP(s, keep ? S_KEY_DEL_OTHER : S_KEY_DEL);
    sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
    if (keep)
        sqlite3_bind_int64(s, 2, keep);
    return run(c, s, "key delete");
}

static enum custos_err sq_key_scan_below(struct custos_store_conn *c, uint32_t kv, const uint8_t *after,
                                         uint32_t after_gen, size_t max,
                                         int (*fn)(void *, const uint8_t[16], uint32_t, uint32_t, const uint8_t *,
                                                   size_t),
                                         void *ctx)
{
    enum custos_err rc = CUSTOS_OK;
    int r;
    PREP(s, after ? S_KEY_SCAN_AFTER : S_KEY_SCAN_FIRST);

    sqlite3_bind_int64(s, 1, kv);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)max);
    if (after) {
        sqlite3_bind_blob(s, 3, after, 16, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, after_gen);
    }
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 0) != 16) {
            rc = custos_err_set(CUSTOS_ERR_CORRUPT, "subject key row has a bad id");
            break;
        }
        if (fn(ctx, sqlite3_column_blob(s, 0), (uint32_t)sqlite3_column_int64(s, 1),
               (uint32_t)sqlite3_column_int64(s, 2), sqlite3_column_blob(s, 3), (size_t)sqlite3_column_bytes(s, 3)))
            break;
    }
    if (!rc && r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_err(c->db, r, "key scan");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_key_count_below(struct custos_store_conn *c, uint32_t kv, uint64_t *n)
{
    enum custos_err rc = CUSTOS_OK;
    int r;
    PREP(s, S_KEY_COUNT_BELOW);

    sqlite3_bind_int64(s, 1, kv);
    r = sqlite3_step(s);
    if (r == SQLITE_ROW)
        *n = (uint64_t)sqlite3_column_int64(s, 0);
    else
        rc = db_err(c->db, r, "key count");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_key_scan_multi(struct custos_store_conn *c, int (*fn)(void *, const uint8_t[16]), void *ctx)
{
    enum custos_err rc = CUSTOS_OK;
    uint8_t (*ids)[16] = NULL;
    size_t n = 0, cap = 0, i;
    int r;
    PREP(s, S_KEY_MULTI);

    /* collect first: the callback writes to the table being scanned */
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 0) != 16)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            void *np = realloc(ids, ncap * 16);

            if (!np) {
                rc = CUSTOS_ERR_NOMEM;
                break;
            }
            ids = np;
            cap = ncap;
        }
        memcpy(ids[n++], sqlite3_column_blob(s, 0), 16);
    }
    if (!rc && r != SQLITE_DONE && r != SQLITE_ROW)
        rc = db_err(c->db, r, "key scan");
    done_stmt(s);
    for (i = 0; !rc && i < n; i++)
        if (fn(ctx, ids[i]))
            break;
    free(ids);
    return rc;
}

static enum custos_err sq_erasure_put(struct custos_store_conn *c, const struct custos_erasure_row *e)
{
    PREP(s, S_ERA_PUT);
    sqlite3_bind_blob(s, 1, e->id, 16, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, e->erased_at);
    sqlite3_bind_int64(s, 3, e->ledger_index);
    return run(c, s, "erasure put");
}

static enum custos_err sq_erasure_get(struct custos_store_conn *c0, const uint8_t id[16], struct custos_erasure_row *e)
{
    struct custos_store_conn *c = snapshot(c0);
    enum custos_err rc = CUSTOS_ERR_NOTFOUND;
    int r;
    PREP(s, S_ERA_GET);

    sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
    r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        memcpy(e->id, id, 16);
        e->erased_at = sqlite3_column_int64(s, 0);
        e->ledger_index = sqlite3_column_int64(s, 1);
        rc = CUSTOS_OK;
    } else if (r != SQLITE_DONE)
        rc = db_err(c->db, r, "erasure get");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_erasure_scan(struct custos_store_conn *c,
                                       int (*fn)(void *, const struct custos_erasure_row *), void *ctx)
{
    enum custos_err rc = CUSTOS_OK;
    int r;
    PREP(s, S_ERA_SCAN);

    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        struct custos_erasure_row e;

        if (sqlite3_column_bytes(s, 0) != 16)
            continue;
        memcpy(e.id, sqlite3_column_blob(s, 0), 16);
        e.erased_at = sqlite3_column_int64(s, 1);
        e.ledger_index = sqlite3_column_int64(s, 2);
        if (fn(ctx, &e))
            break;
    }
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_err(c->db, r, "erasure scan");
    done_stmt(s);
    return rc;
}

/* ---- principals and tokens ----------------------------------------------------------------- */

static void col_text(sqlite3_stmt *s, int i, char *out, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(s, i);

    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

/* A text column, strictly: TEXT, no NUL inside, shorter than cap.  A lenient read would cut a
   BLOB id 'ops' NUL ... down to "ops", a row that then passes for another's copy (its MAC checks)
   wherever rows are listed rather than looked up by id.  out gets the lenient text either way. */
static int col_text_strict(sqlite3_stmt *s, int i, char *out, size_t cap)
{
    const unsigned char *t;
    int bad = sqlite3_column_type(s, i) != SQLITE_TEXT;

    t = sqlite3_column_text(s, i);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
    if (!t || strlen((const char *)t) != (size_t)sqlite3_column_bytes(s, i) ||
        (size_t)sqlite3_column_bytes(s, i) >= cap)
        bad = 1;
    return bad ? -1 : 0;
}

/* An integer column, strictly: anything but an INTEGER (0.5, 'x', NULL) is a corrupt row.  A
   lenient read would see 0 in "0.5" while SQL's `= 0` does not: a row the core takes as live
   that no revocation or disable would ever match. */
static int col_i64(sqlite3_stmt *s, int i, int64_t *out)
{
    if (sqlite3_column_type(s, i) != SQLITE_INTEGER)
        return -1;
    *out = sqlite3_column_int64(s, i);
    return 0;
}

static int col_blob(sqlite3_stmt *s, int i, uint8_t *out, size_t n)
{
    if ((size_t)sqlite3_column_bytes(s, i) != n)
        return -1;
    memcpy(out, sqlite3_column_blob(s, i), n);
    return 0;
}

static enum custos_err sq_principal_put(struct custos_store_conn *c, const struct custos_principal_row *p)
{
    PREP(s, S_PRIN_PUT);
    sqlite3_bind_text(s, 1, p->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, p->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, p->roles, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 4, p->secret_hash, CUSTOS_STORE_HASH, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, p->created);
    sqlite3_bind_int64(s, 6, p->disabled);
    sqlite3_bind_text(s, 7, p->created_by, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 8, p->mac, CUSTOS_STORE_HASH, SQLITE_STATIC);
    sqlite3_bind_int64(s, 9, p->secret_expires);
    return run(c, s, "principal");
}

/* A principal row's columns from k on: kind, roles, secret_hash, created, disabled, created_by, mac,
   secret_expires
   (integers read strictly). */
static enum custos_err principal_cols(sqlite3_stmt *s, int k, struct custos_principal_row *p)
{
    int bad = col_text_strict(s, k, p->kind, sizeof(p->kind));

    bad |= col_text_strict(s, k + 1, p->roles, sizeof(p->roles));
    col_text(s, k + 5, p->created_by, sizeof(p->created_by));
    bad |= col_blob(s, k + 2, p->secret_hash, CUSTOS_STORE_HASH);
    bad |= col_i64(s, k + 3, &p->created);
    bad |= col_i64(s, k + 4, &p->disabled);
    bad |= col_blob(s, k + 6, p->mac, CUSTOS_STORE_HASH);
    bad |= col_i64(s, k + 7, &p->secret_expires);
    return bad ? custos_err_set(CUSTOS_ERR_CORRUPT, "principal row is corrupt") : CUSTOS_OK;
}

static enum custos_err sq_principal_get(struct custos_store_conn *c, const char *id, struct custos_principal_row *p)
{
    enum custos_err rc = CUSTOS_ERR_NOTFOUND;
    int r;
    PREP(s, S_PRIN_GET);

    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        memset(p, 0, sizeof(*p));
        snprintf(p->id, sizeof(p->id), "%s", id);
        rc = principal_cols(s, 0, p);
    } else if (r != SQLITE_DONE)
        rc = db_err(c->db, r, "principal get");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_principal_scan(struct custos_store_conn *c,
                                         int (*fn)(void *, const struct custos_principal_row *, enum custos_err),
                                         void *ctx)
{
    enum custos_err rc = CUSTOS_OK;
    int r;
    PREP(s, S_PRIN_SCAN);

    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        struct custos_principal_row p;
        enum custos_err row;

        memset(&p, 0, sizeof(p));
        row = principal_cols(s, 1, &p);
        if (col_text_strict(s, 0, p.id, sizeof(p.id)))
            row = CUSTOS_ERR_CORRUPT;
        custos_err_clear();
        if (fn(ctx, &p, row)) {
            r = SQLITE_DONE;
            break;
        }
    }
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_err(c->db, r, "principal scan");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_principal_disable(struct custos_store_conn *c, const char *id, int64_t when,
                                            const uint8_t mac[CUSTOS_STORE_HASH])
{
    PREP(s, S_PRIN_DISABLE);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, when);
    sqlite3_bind_blob(s, 3, mac, CUSTOS_STORE_HASH, SQLITE_STATIC);
    return run(c, s, "principal disable");
}

static enum custos_err sq_principal_set_secret(struct custos_store_conn *c, const char *id,
                                               const uint8_t secret_hash[CUSTOS_STORE_HASH], int64_t secret_expires,
                                               const uint8_t mac[CUSTOS_STORE_HASH])
{
    enum custos_err rc;

    PREP(s, S_PRIN_SECRET);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, secret_hash, CUSTOS_STORE_HASH, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, mac, CUSTOS_STORE_HASH, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, secret_expires);
    if ((rc = run(c, s, "principal secret")))
        return rc;
    return sqlite3_changes(c->db) == 1 ? CUSTOS_OK : CUSTOS_ERR_NOTFOUND;
}

/* Revoke the rows a bound S_TOK_REVOKE* statement selects: sign(ctx, row as stored, when) sets the
   row's revoked state and MAC (the core's key; the MAC covers the revoked state), written in the
   caller's transaction.  Selected first, then updated: no update while the select runs.  A row
   that does not even parse (a MAC of the wrong length, a non-integer time) is revoked all the
   same, its MAC left as found: it is refused anyway, and one such row must not stop a revocation,
   a principal's disable or an erasure (nor the vault's open, which replays them).  Only a
   database error or running out of memory stops it. */
struct revoked {
    uint8_t hash[CUSTOS_STORE_HASH], mac[CUSTOS_STORE_HASH];
    int64_t revoked;
    sqlite3_value *raw; /* the key of a row that does not parse (then hash/mac are unused) */
};

static enum custos_err revoke_rows(struct custos_store_conn *c, sqlite3_stmt *s, int64_t when,
                                   custos_token_signer sign, void *ctx, uint64_t *n)
{
    struct revoked *rows = NULL;
    struct custos_token_row t;
    size_t k = 0, cap = 0, i;
    enum custos_err rc = CUSTOS_OK;
    int r;

    *n = 0;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (k == cap) {
            size_t ncap = cap ? 2 * cap : 8;
            struct revoked *nr = realloc(rows, ncap * sizeof(*rows));

            if (!nr) {
                rc = custos_err_set(CUSTOS_ERR_NOMEM, "token revoke: out of memory");
                break;
            }
            rows = nr;
            cap = ncap;
        }
        memset(&rows[k], 0, sizeof(rows[k]));
        memset(&t, 0, sizeof(t));
        if (col_blob(s, 0, t.hash, CUSTOS_STORE_HASH) ||
            ((t.has_scope = sqlite3_column_type(s, 3) != SQLITE_NULL) && col_blob(s, 3, t.scope, 16)) ||
            col_i64(s, 4, &t.issued) || col_i64(s, 5, &t.expires) || col_i64(s, 7, &t.revoked) ||
            col_blob(s, 8, t.mac, CUSTOS_STORE_HASH) ||
            ((t.has_minted_with = sqlite3_column_type(s, 9) != SQLITE_NULL) &&
             col_blob(s, 9, t.minted_with, CUSTOS_STORE_HASH))) {
            if (!(rows[k].raw = sqlite3_value_dup(sqlite3_column_value(s, 0)))) {
                rc = custos_err_set(CUSTOS_ERR_NOMEM, "token revoke: out of memory");
                break;
            }
        } else {
            col_text(s, 1, t.principal, sizeof(t.principal));
            col_text(s, 2, t.kind, sizeof(t.kind));
            col_text(s, 6, t.issued_by, sizeof(t.issued_by));
            sign(ctx, &t, when);
            memcpy(rows[k].hash, t.hash, CUSTOS_STORE_HASH);
            memcpy(rows[k].mac, t.mac, CUSTOS_STORE_HASH);
            rows[k].revoked = t.revoked;
        }
        k++;
    }
    if (!rc && r != SQLITE_DONE)
        rc = db_err(c->db, r, "token revoke");
    done_stmt(s);
    for (i = 0; i < k && !rc; i++) {
        sqlite3_stmt *u = stmt(c, rows[i].raw ? S_TOK_REVOKE_RAW : S_TOK_REVOKE_ONE);

        if (!u) {
            rc = db_err(c->db, sqlite3_errcode(c->db), "prepare");
            break;
        }
        if (rows[i].raw) {
            sqlite3_bind_value(u, 1, rows[i].raw);
            sqlite3_bind_int64(u, 2, when);
        } else {
            sqlite3_bind_blob(u, 1, rows[i].hash, CUSTOS_STORE_HASH, SQLITE_STATIC);
            sqlite3_bind_int64(u, 2, rows[i].revoked);
            sqlite3_bind_blob(u, 3, rows[i].mac, CUSTOS_STORE_HASH, SQLITE_STATIC);
        }
        if (!(rc = run(c, u, "token revoke")))
            *n += (uint64_t)sqlite3_changes(c->db);
    }
    for (i = 0; i < k; i++)
        sqlite3_value_free(rows[i].raw);
    free(rows);
    return rc;
}

static enum custos_err sq_token_revoke_scope(struct custos_store_conn *c, const uint8_t id[16], int64_t when,
                                             custos_token_signer sign, void *ctx)
{
    uint64_t n;
    PREP(s, S_TOK_REVOKE_SCOPE);

    sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, when);
    return revoke_rows(c, s, when, sign, ctx, &n);
}

static enum custos_err sq_token_purge(struct custos_store_conn *c, int64_t before, uint64_t *n)
{
    enum custos_err rc;
    PREP(s, S_TOK_PURGE);

    sqlite3_bind_int64(s, 1, before);
    rc = run(c, s, "token purge");
    *n = rc ? 0 : (uint64_t)sqlite3_changes(c->db);
    return rc;
}

static enum custos_err sq_token_put(struct custos_store_conn *c, const struct custos_token_row *t)
{
    PREP(s, S_TOK_PUT);
    sqlite3_bind_blob(s, 1, t->hash, CUSTOS_STORE_HASH, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, t->principal, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, t->kind, -1, SQLITE_STATIC);
    if (t->has_scope)
        sqlite3_bind_blob(s, 4, t->scope, 16, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 4);
    sqlite3_bind_int64(s, 5, t->issued);
    sqlite3_bind_int64(s, 6, t->expires);
    sqlite3_bind_text(s, 7, t->issued_by, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, t->source, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 9, t->mac, CUSTOS_STORE_HASH, SQLITE_STATIC);
    if (t->has_minted_with)
        sqlite3_bind_blob(s, 10, t->minted_with, CUSTOS_STORE_HASH, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 10);
    return run(c, s, "token put");
}

/* A token row's columns from k on: principal, kind, scope, issued, expires, revoked, issued_by, source,
   mac, minted_with (integers read strictly). */
static enum custos_err token_cols(sqlite3_stmt *s, int k, struct custos_token_row *t)
{
    enum custos_err rc = CUSTOS_OK;
    int bad;

    bad = col_text_strict(s, k, t->principal, sizeof(t->principal));
    bad |= col_text_strict(s, k + 1, t->kind, sizeof(t->kind));
    if (bad)
        rc = CUSTOS_ERR_CORRUPT;
    t->has_scope = sqlite3_column_type(s, k + 2) != SQLITE_NULL;
    if (t->has_scope && col_blob(s, k + 2, t->scope, 16))
        rc = CUSTOS_ERR_CORRUPT;
    /* each read, so that a row shown despite a bad one shows the others as they are */
    bad = col_i64(s, k + 3, &t->issued);
    bad |= col_i64(s, k + 4, &t->expires);
    bad |= col_i64(s, k + 5, &t->revoked);
    if (bad)
        rc = CUSTOS_ERR_CORRUPT;
    col_text(s, k + 6, t->issued_by, sizeof(t->issued_by));
    col_text(s, k + 7, t->source, sizeof(t->source));
    if (col_blob(s, k + 8, t->mac, CUSTOS_STORE_HASH))
        rc = CUSTOS_ERR_CORRUPT;
    t->has_minted_with = sqlite3_column_type(s, k + 9) != SQLITE_NULL;
    if (t->has_minted_with && col_blob(s, k + 9, t->minted_with, CUSTOS_STORE_HASH))
        rc = CUSTOS_ERR_CORRUPT;
    return rc ? custos_err_set(rc, "token row is corrupt") : CUSTOS_OK;
}

static enum custos_err sq_token_get(struct custos_store_conn *c, const uint8_t hash[CUSTOS_STORE_HASH],
                                    struct custos_token_row *t)
{
    enum custos_err rc = CUSTOS_ERR_NOTFOUND;
    int r;
    PREP(s, S_TOK_GET);

    sqlite3_bind_blob(s, 1, hash, CUSTOS_STORE_HASH, SQLITE_STATIC);
    r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        memset(t, 0, sizeof(*t));
        memcpy(t->hash, hash, CUSTOS_STORE_HASH);
        rc = token_cols(s, 0, t);
        t->owner_found = sqlite3_column_type(s, 10) != SQLITE_NULL;
        if (t->owner_found) {
            col_text(s, 10, t->owner.id, sizeof(t->owner.id));
            if (principal_cols(s, 11, &t->owner))
                rc = CUSTOS_ERR_CORRUPT; /* its detail is set */
        }
    } else if (r != SQLITE_DONE)
        rc = db_err(c->db, r, "token get");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_token_scan(struct custos_store_conn *c, const char *principal, int64_t now, uint32_t limit,
                                     int (*fn)(void *, const struct custos_token_row *, enum custos_err), void *ctx)
{
    enum custos_err rc = CUSTOS_OK;
    int r;
    PREP(s, S_TOK_SCAN);

    sqlite3_bind_text(s, 1, principal, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now);
    sqlite3_bind_int64(s, 3, limit);
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        struct custos_token_row t;
        enum custos_err row;

        memset(&t, 0, sizeof(t));
        row = sqlite3_column_bytes(s, 0) == CUSTOS_STORE_HASH ? CUSTOS_OK : CUSTOS_ERR_CORRUPT;
        if (!row)
            memcpy(t.hash, sqlite3_column_blob(s, 0), CUSTOS_STORE_HASH);
        if (token_cols(s, 1, &t))
            row = CUSTOS_ERR_CORRUPT;
        custos_err_clear();
        if (fn(ctx, &t, row)) {
            r = SQLITE_DONE;
            break;
        }
    }
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_err(c->db, r, "token scan");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_token_count(struct custos_store_conn *c, const char *principal, int64_t now, uint64_t *n)
{
    enum custos_err rc = CUSTOS_OK;
    int r;
    PREP(s, S_TOK_COUNT);

    *n = 0;
    sqlite3_bind_text(s, 1, principal, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now);
    r = sqlite3_step(s);
    if (r == SQLITE_ROW)
        *n = (uint64_t)sqlite3_column_int64(s, 0);
    else
        rc = db_err(c->db, r, "token count");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_token_revoke(struct custos_store_conn *c, const uint8_t hash[CUSTOS_STORE_HASH],
                                       int64_t when, custos_token_signer sign, void *ctx,
                                       uint64_t *n)
{
    PREP(s, S_TOK_REVOKE);
    sqlite3_bind_blob(s, 1, hash, CUSTOS_STORE_HASH, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, when);
    return revoke_rows(c, s, when, sign, ctx, n);
}

static enum custos_err sq_token_find(struct custos_store_conn *c, const char *principal, const uint8_t prefix[8],
                                     uint8_t hash[CUSTOS_STORE_HASH], unsigned *matches)
{
    uint8_t lo[CUSTOS_STORE_HASH], hi[CUSTOS_STORE_HASH];
    enum custos_err rc = CUSTOS_OK;
    int r;
    PREP(s, S_TOK_FIND);

    *matches = 0;
    memset(lo, 0x00, sizeof(lo));
    memset(hi, 0xff, sizeof(hi));
    memcpy(lo, prefix, 8);
    memcpy(hi, prefix, 8);
    sqlite3_bind_text(s, 1, principal, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, lo, sizeof(lo), SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, hi, sizeof(hi), SQLITE_STATIC);
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 0) != CUSTOS_STORE_HASH)
            continue; /* not a hash this store wrote: no token can match it */
        if ((*matches)++ == 0)
            memcpy(hash, sqlite3_column_blob(s, 0), CUSTOS_STORE_HASH);
    }
    if (r != SQLITE_DONE)
        rc = db_err(c->db, r, "token find");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_token_revoke_principal(struct custos_store_conn *c, const char *id, int64_t when,
                                                 custos_token_signer sign, void *ctx,
                                                 uint64_t *n)
{
    PREP(s, S_TOK_REVOKE_PRIN);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, when);
    return revoke_rows(c, s, when, sign, ctx, n);
}

/* ---- subjects and the blind index ---------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

#define BLIND_ENTRY 36

/* Delete the blind entries listed in the subject's row (if any). */
static enum custos_err blind_drop(struct custos_store_conn *c, const uint8_t id[16])
{
    enum custos_err rc = CUSTOS_OK;
    uint8_t *copy = NULL;
    size_t n = 0, i;
    int r;
    PREP(s, S_SUBJ_BLIND);

    sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
    r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        n = (size_t)sqlite3_column_bytes(s, 0);
        if (n % BLIND_ENTRY)
            rc = custos_err_set(CUSTOS_ERR_CORRUPT, "subject index list is corrupt");
        else if (n && !(copy = malloc(n)))
            rc = CUSTOS_ERR_NOMEM;
        else if (n)
            memcpy(copy, sqlite3_column_blob(s, 0), n);
    } else if (r != SQLITE_DONE)
        rc = db_err(c->db, r, "subject index list");
    done_stmt(s);
    for (i = 0; !rc && i < n; i += BLIND_ENTRY) {
        sqlite3_stmt *d = stmt(c, S_BLIND_DEL);
        uint32_t f = (uint32_t)copy[i] << 24 | (uint32_t)copy[i + 1] << 16 | (uint32_t)copy[i + 2] << 8 | copy[i + 3];

        if (!d) {
            rc = db_err(c->db, sqlite3_errcode(c->db), "prepare");
            break;
        }
        sqlite3_bind_int64(d, 1, f);
        sqlite3_bind_blob(d, 2, copy + i + 4, CUSTOS_STORE_HASH, SQLITE_STATIC);
        sqlite3_bind_blob(d, 3, id, 16, SQLITE_STATIC);
        rc = run(c, d, "blind delete");
    }
    free(copy);
    return rc;
}

/* The subject row's list of its own entries (subjects.blind): field (u32 BE) || hash each, into
   stackbuf when it fits (8 entries), else into a new allocation the caller frees. */
static enum custos_err blind_list(const struct custos_blind *blind, size_t nblind, uint8_t *stackbuf, size_t cap,
                                  uint8_t **list)
{
    size_t i;

    *list = stackbuf;
    if (nblind > cap / BLIND_ENTRY && !(*list = malloc(nblind * BLIND_ENTRY)))
        return CUSTOS_ERR_NOMEM;
    for (i = 0; i < nblind; i++) {
        put_be32(*list + i * BLIND_ENTRY, blind[i].field);
        memcpy(*list + i * BLIND_ENTRY + 4, blind[i].hash, CUSTOS_STORE_HASH);
    }
    return CUSTOS_OK;
}

/* Add the subject's entries to the index (its row's list is the caller's). */
static enum custos_err blind_insert(struct custos_store_conn *c, const uint8_t id[16], const struct custos_blind *blind,
                                    size_t nblind)
{
    enum custos_err rc = CUSTOS_OK;
    size_t i;

    for (i = 0; i < nblind && !rc; i++) {
        sqlite3_stmt *s = stmt(c, S_BLIND_PUT);

        if (!s)
            return db_err(c->db, sqlite3_errcode(c->db), "prepare");
        sqlite3_bind_int64(s, 1, blind[i].field);
        sqlite3_bind_blob(s, 2, blind[i].hash, CUSTOS_STORE_HASH, SQLITE_STATIC);
        sqlite3_bind_blob(s, 3, id, 16, SQLITE_STATIC);
        rc = run(c, s, "blind put");
    }
    return rc;
}

static enum custos_err sq_subject_put(struct custos_store_conn *c, const uint8_t id[16], const void *blob, size_t len,
                                      const struct custos_blind *blind, size_t nblind, int64_t now, int insert)
{
    enum custos_err rc;
    uint8_t stackbuf[BLIND_ENTRY * 8], *list = NULL;

    if ((rc = blind_list(blind, nblind, stackbuf, sizeof(stackbuf), &list)))
        return rc;
    if (!insert && (rc = blind_drop(c, id)))
        goto done;
    {
        sqlite3_stmt *s = stmt(c, insert ? S_SUBJ_INSERT : S_SUBJ_UPDATE);

        if (!s) {
            rc = db_err(c->db, sqlite3_errcode(c->db), "prepare");
            goto done;
        }
        sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, now);
        sqlite3_bind_blob(s, 3, blob, (int)len, SQLITE_STATIC);
        sqlite3_bind_blob(s, 4, list, (int)(nblind * BLIND_ENTRY), SQLITE_STATIC);
        if ((rc = run(c, s, "subject put")))
            goto done;
        if (!insert && sqlite3_changes(c->db) == 0) {
            rc = CUSTOS_ERR_NOTFOUND;
            goto done;
        }
    }
    if (insert) {
        sqlite3_stmt *s = stmt(c, S_SUBJ_ID_PUT);

        if (!s) {
            rc = db_err(c->db, sqlite3_errcode(c->db), "prepare");
            goto done;
        }
        sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, sqlite3_last_insert_rowid(c->db));
        if ((rc = run(c, s, "subject put")))
            goto done;
    }
    rc = blind_insert(c, id, blind, nblind);
done:
    if (list != stackbuf)
        free(list);
    return rc;
}

static enum custos_err sq_subject_get(struct custos_store_conn *c0, const uint8_t id[16], struct custos_buf *blob)
{
    struct custos_store_conn *c = snapshot(c0);
    enum custos_err rc = CUSTOS_ERR_NOTFOUND;
    int r;
    PREP(s, S_SUBJ_GET);

    sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
    r = sqlite3_step(s);
    if (r == SQLITE_ROW)
        rc = custos_buf_add(blob, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0));
    else if (r != SQLITE_DONE)
        rc = db_err(c->db, r, "subject get");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_subject_delete(struct custos_store_conn *c, const uint8_t id[16])
{
    enum custos_err rc;
    PREP(s, S_SUBJ_DEL);

    if ((rc = blind_drop(c, id)))
        return rc;
    {
        sqlite3_stmt *l = stmt(c, S_LINK_DEL_SUBJ);

        if (!l)
            return db_err(c->db, sqlite3_errcode(c->db), "prepare");
        sqlite3_bind_blob(l, 1, id, 16, SQLITE_STATIC);
        if ((rc = run(c, l, "link delete")))
            return rc;
    }
    sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
    if ((rc = run(c, s, "subject delete")))
        return rc;
    {
        sqlite3_stmt *d = stmt(c, S_SUBJ_ID_DEL);

        if (!d)
            return db_err(c->db, sqlite3_errcode(c->db), "prepare");
        sqlite3_bind_blob(d, 1, id, 16, SQLITE_STATIC);
        return run(c, d, "subject delete");
    }
}

/* ---- bulk load: staged subjects ------------------------------------------------------------ */

/*
 * An import appends to rowid tables only: the record to `subjects` (a row no lookup finds: it has
 * no entry in subject_ids yet), its id to staged_ids, its blind entries to staged_blind, its key
 * to ctl.staged_keys.  A publish then inserts each staged set into its index in key order, so
 * the random-keyed b-trees (subject_ids, blind, ctl.subject_keys) are written page after page
 * once per publish instead of a page per entry per commit.  Each plane publishes in its own
 * transaction, on its own connection if the caller likes (the import publishes both at once).
 *
 * Crash safety: a staged record commits after its staged key (the core's order), and a records
 * publish commits only after the keys publish covering it (the core waits in `ready`; open
 * publishes keys, then records), so a record is never visible without its key.  Staged
 * rows left by a crash are published by the next open (sq_open): they are sealed and keyed, and
 * their ledger events were durable before they committed.
 */
static enum custos_err sq_key_stage(struct custos_store_conn *c, const uint8_t id[16], uint32_t gen, uint32_t kv,
                                    const uint8_t *w, size_t wlen)
{
    return key_row(c, S_KEY_STAGE, id, gen, kv, w, wlen, "key stage");
}

static enum custos_err sq_subject_stage(struct custos_store_conn *c, const uint8_t id[16], const void *blob,
                                        size_t len, const struct custos_blind *blind, size_t nblind, int64_t now)
{
    uint8_t list[BLIND_ENTRY * 8];
    sqlite3_int64 rid;
    enum custos_err rc;
    size_t i;
    PREP(s, S_SUBJ_STAGE);

    if (nblind > sizeof(list) / BLIND_ENTRY)
        return custos_err_set(CUSTOS_ERR_INVALID, "too many searchable fields for a bulk load");
    for (i = 0; i < nblind; i++) {
        put_be32(list + i * BLIND_ENTRY, blind[i].field);
        memcpy(list + i * BLIND_ENTRY + 4, blind[i].hash, CUSTOS_STORE_HASH);
    }
    sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now);
    sqlite3_bind_blob(s, 3, blob, (int)len, SQLITE_STATIC);
    sqlite3_bind_blob(s, 4, list, (int)(nblind * BLIND_ENTRY), SQLITE_STATIC);
    if ((rc = run(c, s, "subject stage")))
        return rc;
    rid = sqlite3_last_insert_rowid(c->db);
    {
        PREP(t, S_ID_STAGE);
        sqlite3_bind_blob(t, 1, id, 16, SQLITE_STATIC);
        sqlite3_bind_int64(t, 2, rid);
        if ((rc = run(c, t, "subject stage")))
            return rc;
    }
    for (i = 0; i < nblind; i++) {
        PREP(b, S_BLIND_STAGE);
        sqlite3_bind_int64(b, 1, blind[i].field);
        sqlite3_bind_blob(b, 2, blind[i].hash, CUSTOS_STORE_HASH, SQLITE_STATIC);
        sqlite3_bind_blob(b, 3, id, 16, SQLITE_STATIC);
        if ((rc = run(c, b, "subject stage")))
            return rc;
    }
    return CUSTOS_OK;
}

/* One plane's publish: its own transaction, synced (FULL) however the connection is set; `ready`
   (may be NULL) is asked just before the commit and a failure there rolls the publish back. */
static enum custos_err publish_plane(struct custos_store_conn *c, const char *q, const char *what,
                                     enum custos_err (*ready)(void *ctx), void *ctx)
{
    enum custos_err rc;

    if (c->bulk && (rc = exec(c->db, "PRAGMA main.synchronous=FULL; PRAGMA ctl.synchronous=FULL;", what)))
        return rc;
    if (!(rc = exec(c->db, "BEGIN", what))) {
        if ((rc = exec(c->db, q, what)) || (ready && (rc = ready(ctx))) || (rc = exec(c->db, "COMMIT", what)))
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    }
    if (c->bulk)
        sqlite3_exec(c->db, "PRAGMA main.synchronous=NORMAL; PRAGMA ctl.synchronous=FULL;", NULL, NULL, NULL);
    return rc;
}

/* OR ROLLBACK and OR IGNORE: a statement that cannot abort halfway needs no statement journal,
   which would hold the old content of every index page the publish touches */
static const char publish_keys_sql[] = "INSERT OR ROLLBACK INTO ctl.subject_keys(id, gen, kv, w)"
                                       " SELECT id, gen, kv, w FROM ctl.staged_keys ORDER BY id, gen;"
                                       "DELETE FROM ctl.staged_keys;";
static const char publish_subjects_sql[] =
    "INSERT OR ROLLBACK INTO subject_ids(id, rid) SELECT id, rid FROM staged_ids ORDER BY id;"
    "INSERT OR IGNORE INTO blind(field, hash, subject) SELECT field, hash, subject"
    " FROM staged_blind ORDER BY field, hash, subject;"
    "DELETE FROM staged_ids; DELETE FROM staged_blind;";

static enum custos_err sq_subjects_publish(struct custos_store_conn *c, enum custos_plane p,
                                           enum custos_err (*ready)(void *ctx), void *ctx)
{
    return p == CUSTOS_PLANE_CONTROL ? publish_plane(c, publish_keys_sql, "publish keys", ready, ctx)
                                     : publish_plane(c, publish_subjects_sql, "publish subjects", ready, ctx);
}

/* Everything staged (left by an interrupted import; at open), keys first: once a record is
   visible its key must be.  The sorts spill to files, as in a bulk load (sq_set_bulk). */
static enum custos_err publish_all(struct custos_store_conn *c)
{
    enum custos_err rc = exec(c->db, "PRAGMA temp_store=FILE", "publish");

    if (!rc)
        rc = sq_subjects_publish(c, CUSTOS_PLANE_CONTROL, NULL, NULL);
    if (!rc)
        rc = sq_subjects_publish(c, CUSTOS_PLANE_DATA, NULL, NULL);
    sqlite3_exec(c->db, "PRAGMA temp_store=MEMORY", NULL, NULL, NULL);
    return rc;
}

/* Anything staged (left by an interrupted import)?  1 yes, 0 no, -1 error. */
static int staged_left(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int r = sqlite3_prepare_v2(db,
                               "SELECT EXISTS(SELECT 1 FROM ctl.staged_keys) OR EXISTS(SELECT 1 FROM staged_ids)"
                               " OR EXISTS(SELECT 1 FROM staged_blind)",
                               -1, &st, NULL),
        yes = -1;

    if (r == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        yes = sqlite3_column_int(st, 0) != 0;
    sqlite3_finalize(st);
    return yes;
}

static enum custos_err sq_blind_find(struct custos_store_conn *c0, uint32_t field, const uint8_t hash[CUSTOS_STORE_HASH],
                                     uint8_t (*ids)[16], size_t cap, size_t *n)
{
    struct custos_store_conn *c = snapshot(c0);
    enum custos_err rc = CUSTOS_OK;
    int r;
    PREP(s, S_BLIND_FIND);

    *n = 0;
    sqlite3_bind_int64(s, 1, field);
    sqlite3_bind_blob(s, 2, hash, CUSTOS_STORE_HASH, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)cap);
    while ((r = sqlite3_step(s)) == SQLITE_ROW && *n < cap)
        if (!col_blob(s, 0, ids[*n], 16))
            (*n)++;
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_err(c->db, r, "blind find");
    done_stmt(s);
    return rc;
}

/* ---- blind-index rebuild (after a restore) ---------------------------------------------------- */

/*
 * Backups carry no blind data (sq_backup); sq_restore leaves the marker `blind_rebuild_after` (the
 * rid of the last record indexed, 0 at first) in the restored file's meta table, in the same file
 * that replaces data.db, so a restore interrupted at any point leaves either the old data plane or
 * the new one with its marker.  The core rebuilds in groups, each group's rows and staged entries
 * and the marker's advance in one transaction; sq_blind_rebuild_finish publishes the staged entries
 * and clears the marker in one more: a crash resumes where it stopped.
 */
static enum custos_err sq_blind_rebuild_state(struct custos_store_conn *c, int *pending, int64_t *after)
{
    enum custos_err rc = CUSTOS_OK;
    int r;
    PREP(s, S_REBUILD_GET);

    *pending = 0;
    *after = 0;
    r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        *pending = 1;
        *after = sqlite3_column_int64(s, 0);
    } else if (r != SQLITE_DONE)
        rc = db_err(c->db, r, "blind rebuild state");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_blind_rebuild_scan(struct custos_store_conn *c, int64_t after, size_t max,
                                             int (*fn)(void *ctx, int64_t cursor, const uint8_t id[16],
                                                       const uint8_t *rec, size_t len),
                                             void *ctx)
{
    enum custos_err rc = CUSTOS_OK;
    int r;
    PREP(s, S_REBUILD_SCAN);

    sqlite3_bind_int64(s, 1, after);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)max);
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        uint8_t id[16];

        if (col_blob(s, 1, id, 16)) {
            rc = custos_err_set(CUSTOS_ERR_CORRUPT, "stored subject id is corrupt");
            break;
        }
        if (fn(ctx, sqlite3_column_int64(s, 0), id, sqlite3_column_blob(s, 2), (size_t)sqlite3_column_bytes(s, 2)))
            break;
    }
    if (!rc && r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_err(c->db, r, "blind rebuild scan");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_keys_without_record(struct custos_store_conn *c, int (*fn)(void *ctx, const uint8_t id[16]),
                                              void *ctx)
{
    sqlite3_stmt *s = NULL;
    enum custos_err rc = CUSTOS_OK;
    int r = sqlite3_prepare_v2(c->db,
                               "SELECT DISTINCT k.id FROM ctl.subject_keys AS k"
                               " WHERE NOT EXISTS (SELECT 1 FROM main.subject_ids AS s WHERE s.id = k.id)",
                               -1, &s, NULL);

    if (r != SQLITE_OK)
        return db_err(c->db, r, "keys without a record");
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        uint8_t id[16];

        if (col_blob(s, 0, id, 16)) {
            rc = custos_err_set(CUSTOS_ERR_CORRUPT, "stored subject id is corrupt");
            break;
        }
        if (fn(ctx, id))
            break;
    }
    if (!rc && r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_err(c->db, r, "keys without a record");
    sqlite3_finalize(s);
    return rc;
}

/* staged_blind too: nothing is staged when a rebuild begins (an open publishes what an import or
   a rebuild left), but entries staged under an older layout must never reach the new index */
static enum custos_err sq_blind_rebuild_clear(struct custos_store_conn *c)
{
    return exec(c->db, "DELETE FROM blind; DELETE FROM staged_blind;", "blind rebuild clear");
}

/* The row's new list and its entries staged: the index itself is written once, sorted, by
   sq_blind_rebuild_finish.  Inserted where their hashes fall, group after group, each commit
   rewrote nearly every page of the index (for 10^6 subjects ~2*10^6 entries, 8,192 subjects a
   commit): a restore spent most of its time writing the same pages again. */
static enum custos_err sq_blind_rebuild_put(struct custos_store_conn *c, const uint8_t id[16],
                                            const struct custos_blind *blind, size_t nblind, int drop)
{
    enum custos_err rc;
    uint8_t stackbuf[BLIND_ENTRY * 8], *list = NULL;
    size_t i;

    if ((rc = blind_list(blind, nblind, stackbuf, sizeof(stackbuf), &list)))
        return rc;
    if (!drop || !(rc = blind_drop(c, id))) {
        sqlite3_stmt *s = stmt(c, S_SUBJ_BLIND_SET);

        if (!s)
            rc = db_err(c->db, sqlite3_errcode(c->db), "prepare");
        else {
            sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
            sqlite3_bind_blob(s, 2, list, (int)(nblind * BLIND_ENTRY), SQLITE_STATIC);
            if (!(rc = run(c, s, "blind set")) && sqlite3_changes(c->db) == 0)
                rc = CUSTOS_ERR_NOTFOUND;
        }
    }
    for (i = 0; i < nblind && !rc; i++) {
        sqlite3_stmt *b = stmt(c, S_BLIND_STAGE);

        if (!b) {
            rc = db_err(c->db, sqlite3_errcode(c->db), "prepare");
            break;
        }
        sqlite3_bind_int64(b, 1, blind[i].field);
        sqlite3_bind_blob(b, 2, blind[i].hash, CUSTOS_STORE_HASH, SQLITE_STATIC);
        sqlite3_bind_blob(b, 3, id, 16, SQLITE_STATIC);
        rc = run(c, b, "blind stage");
    }
    if (list != stackbuf)
        free(list);
    return rc;
}

/* Sorted as an import's publish is (its runs spilled to files, as in a bulk load), in one
   transaction with the marker's removal: a crash leaves either the marker and the staged
   entries (the next open publishes them, then finishes) or neither. */
static enum custos_err sq_blind_rebuild_finish(struct custos_store_conn *c)
{
    enum custos_err rc = exec(c->db, "PRAGMA temp_store=FILE; PRAGMA main.cache_size=-8192", "blind rebuild");

    if (!rc && !(rc = exec(c->db, "BEGIN", "blind rebuild"))) {
        if ((rc = exec(c->db,
                       "INSERT OR IGNORE INTO blind(field, hash, subject) SELECT field, hash, subject"
                       " FROM staged_blind ORDER BY field, hash, subject;"
                       "DELETE FROM staged_blind;"
                       "DELETE FROM main.meta WHERE k = 'blind_rebuild_after';",
                       "blind rebuild")) ||
            (rc = exec(c->db, "COMMIT", "blind rebuild")))
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    }
    /* one at a time, each whatever the other did: the connection goes back to the pool */
    sqlite3_exec(c->db, "PRAGMA temp_store=MEMORY", NULL, NULL, NULL);
    sqlite3_exec(c->db, "PRAGMA main.cache_size=-2000", NULL, NULL, NULL);
    return rc;
}

static enum custos_err sq_blind_rebuild_mark(struct custos_store_conn *c, int64_t after)
{
    PREP(s, S_REBUILD_PUT);

    sqlite3_bind_int64(s, 1, after);
    return run(c, s, "blind rebuild mark");
}

/* The two import rows of the data plane's meta (import_mark, import_done): statements get, put,
   delete in that order of enum stmt_id. */
_Static_assert(S_IMARK_PUT == S_IMARK_GET + 1 && S_IMARK_DEL == S_IMARK_GET + 2 && S_IDONE_PUT == S_IDONE_GET + 1 &&
                   S_IDONE_DEL == S_IDONE_GET + 2,
               "import row statements: get, put, delete");

static enum custos_err import_row_get(struct custos_store_conn *c, enum stmt_id get, struct custos_buf *out)
{
    PREP(s, get);
    return one_blob(c, s, out, "import row get");
}

static enum custos_err import_row_put(struct custos_store_conn *c, enum stmt_id get, const void *v, size_t len)
{
    PREP(s, v ? get + 1 : get + 2);

    if (v)
        sqlite3_bind_blob(s, 1, v, (int)len, SQLITE_STATIC);
    return run(c, s, "import row");
}

static enum custos_err sq_import_mark_get(struct custos_store_conn *c, struct custos_buf *out)
{
    return import_row_get(c, S_IMARK_GET, out);
}

static enum custos_err sq_import_mark_put(struct custos_store_conn *c, const void *v, size_t len)
{
    return import_row_put(c, S_IMARK_GET, v, len);
}

static enum custos_err sq_import_done_get(struct custos_store_conn *c, struct custos_buf *out)
{
    return import_row_get(c, S_IDONE_GET, out);
}

static enum custos_err sq_import_done_put(struct custos_store_conn *c, const void *v, size_t len)
{
    return import_row_put(c, S_IDONE_GET, v, len);
}

/* ---- links, outbox, retention -------------------------------------------------------------- */

static enum custos_err sq_link_put(struct custos_store_conn *c, const struct custos_link_row *r)
{
    PREP(s, S_LINK_PUT);
    sqlite3_bind_blob(s, 1, r->subject, 16, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, r->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, r->url, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, r->created);
    return run(c, s, "link put");
}

static enum custos_err sq_link_scan(struct custos_store_conn *c, const uint8_t id[16],
                                    int (*fn)(void *, const struct custos_link_row *), void *ctx)
{
    enum custos_err rc = CUSTOS_OK;
    int r;
    PREP(s, S_LINK_SCAN);

    sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        struct custos_link_row l;

        memcpy(l.subject, id, 16);
        col_text(s, 0, l.name, sizeof(l.name));
        col_text(s, 1, l.url, sizeof(l.url));
        l.created = sqlite3_column_int64(s, 2);
        if (fn(ctx, &l))
            break;
    }
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_err(c->db, r, "link scan");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_outbox_put(struct custos_store_conn *c, struct custos_outbox_row *o)
{
    enum custos_err rc;
    PREP(s, S_OUT_PUT);

    sqlite3_bind_blob(s, 1, o->subject, 16, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, o->link, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, o->url, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, o->erased_at);
    sqlite3_bind_int64(s, 5, o->created);
    sqlite3_bind_int64(s, 6, o->next_at);
    rc = run(c, s, "outbox put");
    if (!rc)
        o->id = sqlite3_last_insert_rowid(c->db);
    return rc;
}

static enum custos_err sq_outbox_update(struct custos_store_conn *c, const struct custos_outbox_row *o)
{
    PREP(s, S_OUT_UPDATE);
    sqlite3_bind_int64(s, 1, o->id);
    sqlite3_bind_int64(s, 2, o->next_at);
    sqlite3_bind_int64(s, 3, o->delivered_at);
    sqlite3_bind_int64(s, 4, o->failed_at);
    sqlite3_bind_int64(s, 5, o->attempts);
    sqlite3_bind_int64(s, 6, o->last_status);
    sqlite3_bind_text(s, 7, o->last_error, -1, SQLITE_STATIC);
    return run(c, s, "outbox update");
}

static enum custos_err outbox_rows(struct custos_store_conn *c, sqlite3_stmt *s,
                                   int (*fn)(void *, const struct custos_outbox_row *), void *ctx)
{
    enum custos_err rc = CUSTOS_OK;
    int r;

    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        struct custos_outbox_row o;

        memset(&o, 0, sizeof(o));
        o.id = sqlite3_column_int64(s, 0);
        if (col_blob(s, 1, o.subject, 16)) {
            memset(o.subject, 0, sizeof(o.subject));
            o.damaged = 1; /* handed on, so that it can be given up rather than skipped for ever */
        }
        col_text(s, 2, o.link, sizeof(o.link));
        col_text(s, 3, o.url, sizeof(o.url));
        o.erased_at = sqlite3_column_int64(s, 4);
        o.created = sqlite3_column_int64(s, 5);
        o.next_at = sqlite3_column_int64(s, 6);
        o.delivered_at = sqlite3_column_int64(s, 7);
        o.failed_at = sqlite3_column_int64(s, 8);
        o.attempts = (uint32_t)sqlite3_column_int64(s, 9);
        o.last_status = sqlite3_column_int(s, 10);
        col_text(s, 11, o.last_error, sizeof(o.last_error));
        if (fn(ctx, &o))
            break;
    }
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_err(c->db, r, "outbox scan");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_outbox_due(struct custos_store_conn *c, int64_t now, int64_t after_at, int64_t after_id,
                                     size_t max, int (*fn)(void *, const struct custos_outbox_row *), void *ctx)
{
    PREP(s, S_OUT_DUE);
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)max);
    sqlite3_bind_int64(s, 3, after_at);
    sqlite3_bind_int64(s, 4, after_id);
    return outbox_rows(c, s, fn, ctx);
}

static enum custos_err sq_outbox_scan_subject(struct custos_store_conn *c, const uint8_t id[16],
                                              int (*fn)(void *, const struct custos_outbox_row *), void *ctx)
{
    PREP(s, S_OUT_SUBJ);
    sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
    return outbox_rows(c, s, fn, ctx);
}

static enum custos_err sq_retention_key_put(struct custos_store_conn *c, uint32_t day, uint32_t kv, const uint8_t *w,
                                            size_t wlen)
{
    PREP(s, S_RK_PUT);
    sqlite3_bind_int64(s, 1, day);
    sqlite3_bind_int64(s, 2, kv);
    sqlite3_bind_blob(s, 3, w, (int)wlen, SQLITE_STATIC);
    return run(c, s, "retention key put");
}

static enum custos_err sq_retention_key_get(struct custos_store_conn *c, uint32_t day, uint32_t *kv, uint8_t *w,
                                            size_t wcap, size_t *wlen)
{
    enum custos_err rc = CUSTOS_ERR_NOTFOUND;
    int r;
    PREP(s, S_RK_GET);

    sqlite3_bind_int64(s, 1, day);
    r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(s, 1);

        if (n > wcap)
            rc = custos_err_set(CUSTOS_ERR_CORRUPT, "retention key has a wrong length");
        else {
            *kv = (uint32_t)sqlite3_column_int64(s, 0);
            memcpy(w, sqlite3_column_blob(s, 1), n);
            *wlen = n;
            rc = CUSTOS_OK;
        }
    } else if (r != SQLITE_DONE)
        rc = db_err(c->db, r, "retention key get");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_retention_key_scan(struct custos_store_conn *c,
                                             int (*fn)(void *, uint32_t, uint32_t, const uint8_t *, size_t),
                                             void *ctx)
{
    enum custos_err rc = CUSTOS_OK;
    int r;
    PREP(s, S_RK_SCAN);

    while ((r = sqlite3_step(s)) == SQLITE_ROW)
        if (fn(ctx, (uint32_t)sqlite3_column_int64(s, 0), (uint32_t)sqlite3_column_int64(s, 1),
               sqlite3_column_blob(s, 2), (size_t)sqlite3_column_bytes(s, 2)))
            break;
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_err(c->db, r, "retention key scan");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_retained_put(struct custos_store_conn *c, const struct custos_retained_row *r)
{
    PREP(s, S_RET_PUT);
    sqlite3_bind_blob(s, 1, r->subject, 16, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, r->field, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, r->day);
    sqlite3_bind_text(s, 4, r->legal_basis, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, r->role, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, r->erased_at);
    sqlite3_bind_blob(s, 7, r->blob, (int)r->len, SQLITE_STATIC);
    return run(c, s, "retained put");
}

static enum custos_err sq_retained_scan_subject(struct custos_store_conn *c, const uint8_t id[16],
                                                int (*fn)(void *, const struct custos_retained_row *), void *ctx)
{
    enum custos_err rc = CUSTOS_OK;
    int r;
    PREP(s, S_RET_SUBJ);

    sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        struct custos_retained_row t;

        memset(&t, 0, sizeof(t));
        memcpy(t.subject, id, 16);
        col_text(s, 0, t.field, sizeof(t.field));
        t.day = (uint32_t)sqlite3_column_int64(s, 1);
        col_text(s, 2, t.legal_basis, sizeof(t.legal_basis));
        col_text(s, 3, t.role, sizeof(t.role));
        t.erased_at = sqlite3_column_int64(s, 4);
        t.blob = sqlite3_column_blob(s, 5);
        t.len = (size_t)sqlite3_column_bytes(s, 5);
        if (fn(ctx, &t))
            break;
    }
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_err(c->db, r, "retained scan");
    done_stmt(s);
    return rc;
}

static enum custos_err sq_retention_expire(struct custos_store_conn *c, uint32_t day, uint64_t *keys,
                                           uint64_t *values)
{
    enum custos_err rc;
    sqlite3_stmt *a = stmt(c, S_RK_EXPIRE), *b = stmt(c, S_RET_EXPIRE);

    *keys = *values = 0;
    if (!a || !b)
        return db_err(c->db, sqlite3_errcode(c->db), "prepare");
    /* keys first: once a day's key is gone its values are unreadable wherever copies exist */
    sqlite3_bind_int64(a, 1, day);
    if ((rc = run(c, a, "retention expire")))
        return rc;
    *keys = (uint64_t)sqlite3_changes(c->db);
    sqlite3_bind_int64(b, 1, day);
    if ((rc = run(c, b, "retention expire")))
        return rc;
    *values = (uint64_t)sqlite3_changes(c->db);
    return CUSTOS_OK;
}

/* ---- backup and restore -------------------------------------------------------------------- */

/* `path` as a read-only SQLite URI (file:...?mode=ro), each byte outside [A-Za-z0-9/._-] escaped;
   -1 when it does not fit. */
static int ro_uri(char *out, size_t cap, const char *path)
{
    static const char hex[] = "0123456789ABCDEF", tail[] = "?mode=ro";
    const unsigned char *p = (const unsigned char *)path;
    size_t o = (size_t)snprintf(out, cap, "%s", *p == '/' ? "file://" : "file:");

    for (; *p; p++) {
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    *p == '/' || *p == '.' || *p == '_' || *p == '-';

        if (o + 4 >= cap)
            return -1;
        if (plain)
            out[o++] = (char)*p;
        else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    if (o + sizeof(tail) > cap)
        return -1;
    memcpy(out + o, tail, sizeof(tail));
    return 0;
}

/*
 * The backup is built table by table from one read snapshot of data.db, never as a copy of the
 * file: the blind index (`blind`, `staged_blind`) and each record's list of its entries
 * (`subjects.blind`) are left out, so no blind hash is ever written to the backup file, even
 * for a moment (security.md "Backups and restore": with the live blind key, a hash is a test
 * for a guessed value, which would outlive the subject's erasure).  A restore rebuilds the index
 * from the records whose keys still exist.  An import's mark is left out too (and dropped by a
 * restore): after a restore nothing is resumable, since the lines an import stored after the
 * backup may be people erased since.  Every other data-plane table is copied whole; a table
 * this code does not know stops the backup rather than be left out silently.
 */
static const char backup_known_tables[] =
    "SELECT name FROM src.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' ESCAPE '!'"
    " AND name NOT IN ('meta', 'subjects', 'subject_ids', 'staged_ids', 'staged_blind', 'blind', 'links')";
static const char backup_copy_sql[] =
    "INSERT INTO main.meta(k, v) SELECT k, v FROM src.meta"
    " WHERE k NOT IN ('backup_origin', 'backup_time', 'import_mark', 'import_done');"
    "INSERT INTO main.subjects(rid, id, created, updated, rec, blind)"
    " SELECT rid, id, created, updated, rec, x'' FROM src.subjects ORDER BY rid;"
    "INSERT INTO main.subject_ids(id, rid) SELECT id, rid FROM src.subject_ids ORDER BY id;"
    "INSERT INTO main.staged_ids(id, rid) SELECT id, rid FROM src.staged_ids ORDER BY rowid;"
    "INSERT INTO main.links(subject, name, url, created) SELECT subject, name, url, created FROM src.links"
    " ORDER BY subject, name;";

/* Give the complete file `tmp` the name `out`, which must not exist.  link() refuses an existing
   name atomically; where the file system has no hard links (vfat, exFAT, many network and FUSE
   mounts: EPERM and the like), a rename after checking the name is free: what appears under it
   in between would be replaced, the only case not covered. */
static enum custos_err put_in_place(const char *tmp, const char *out)
{
    if (link(tmp, out) == 0)
        return CUSTOS_OK;
    if (errno == EPERM || errno == ENOTSUP || errno == EOPNOTSUPP || errno == ENOSYS || errno == EMLINK) {
        if (access(out, F_OK) == 0)
            return custos_err_set(CUSTOS_ERR_EXISTS, "cannot create %s: File exists", out);
        if (rename(tmp, out) == 0)
            return CUSTOS_OK;
    }
    return custos_err_set(errno == EEXIST ? CUSTOS_ERR_EXISTS : CUSTOS_ERR_IO, "cannot create %s: %s", out,
                          strerror(errno));
}

static enum custos_err sq_backup(const char *dir, const char *out, const char *origin, int64_t now)
{
    char path[PATH_MAX], uri[3 * PATH_MAX + 32], tmp[PATH_MAX], outname[PATH_MAX + 3];
    sqlite3 *copy = NULL;
    sqlite3_stmt *st = NULL;
    enum custos_err rc = CUSTOS_OK;
    int r, fd, in_txn = 0;

    snprintf(path, sizeof(path), "%s/data.db", dir);
    if (ro_uri(uri, sizeof(uri), path) != 0)
        return custos_err_set(CUSTOS_ERR_INVALID, "data directory path is too long");
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.partial-XXXXXX", out) >= sizeof(tmp))
        return custos_err_set(CUSTOS_ERR_INVALID, "backup file name is too long");
    /* The backup must not exist already; it is written under a temporary name (created 0600
       before SQLite writes it) and linked to its name once complete, so a backup that is killed
       leaves no file under that name that looks like one (only FILE.partial-XXXXXX). */
    if (access(out, F_OK) == 0)
        return custos_err_set(CUSTOS_ERR_EXISTS, "cannot create %s: File exists", out);
    if (errno != ENOENT)
        return custos_err_set(CUSTOS_ERR_IO, "cannot create %s: %s", out, strerror(errno));
    fd = mkstemp(tmp);
    if (fd < 0)
        return custos_err_set(CUSTOS_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    close(fd);
    /* the new, empty file is `main`; data.db is attached read-only as `src` (a URI, so this
       connection takes URIs: a name given as "file:..." is made a plain path, so that SQLite
       writes the very file just created 0600) */
    snprintf(outname, sizeof(outname), "%s%s", strncmp(tmp, "file:", 5) == 0 ? "./" : "", tmp);
    r = sqlite3_open_v2(outname, &copy, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI, NULL);
    if (r != SQLITE_OK) {
        rc = db_err(copy, r, "open backup file");
        goto done;
    }
    sqlite3_busy_timeout(copy, BUSY_MS);
    if ((rc = exec(copy, "PRAGMA main.page_size=16384; PRAGMA main.journal_mode=DELETE;"
                         "PRAGMA main.synchronous=FULL; PRAGMA trusted_schema=OFF;", "backup")) ||
        (rc = exec(copy, data_schema, "backup schema")))
        goto done;
    r = sqlite3_prepare_v2(copy, "ATTACH DATABASE ?1 AS src", -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_text(st, 1, uri, -1, SQLITE_STATIC);
        r = sqlite3_step(st);
        r = r == SQLITE_DONE ? SQLITE_OK : r;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (r != SQLITE_OK) {
        rc = db_err(copy, r, "open data.db");
        goto done;
    }
    /* one transaction: the copy reads one consistent snapshot of data.db (so it works while the
       server writes), and the file is labelled only if everything is in it */
    if ((rc = exec(copy, "BEGIN", "backup")))
        goto done;
    in_txn = 1;
    r = sqlite3_prepare_v2(copy, backup_known_tables, -1, &st, NULL);
    if (r == SQLITE_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
        rc = custos_err_set(CUSTOS_ERR_INTERNAL, "backup: data.db has a table this version does not know (%.64s)",
                            (const char *)sqlite3_column_text(st, 0));
        goto done;
    }
    if (r != SQLITE_DONE && r != SQLITE_OK) {
        rc = db_err(copy, r, "backup");
        goto done;
    }
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = exec(copy, backup_copy_sql, "backup")))
        goto done;
    r = sqlite3_prepare_v2(copy, "INSERT OR REPLACE INTO main.meta(k, v) VALUES ('backup_origin', ?1), "
                           "('backup_time', ?2)", -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now);
        r = sqlite3_step(st);
        r = r == SQLITE_DONE ? SQLITE_OK : r;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (r != SQLITE_OK) {
        rc = db_err(copy, r, "label backup");
        goto done;
    }
    if ((rc = exec(copy, "COMMIT", "backup")))
        goto done;
    in_txn = 0;
done:
    sqlite3_finalize(st);
    if (in_txn)
        sqlite3_exec(copy, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(copy);
    if (!rc && (rc = put_in_place(tmp, out)) == CUSTOS_OK && custos_fsync_parent(out) != CUSTOS_OK)
        custos_err_clear(); /* the backup is whole: a failed directory sync is not a failed backup */
    unlink(tmp);
    if (rc) {
        snprintf(path, sizeof(path), "%s-journal", tmp);
        unlink(path);
    }
    return rc;
}

/*
 * Fold data.db's write-ahead log into data.db (a checkpoint that empties the log).  A server that
 * was killed leaves its last commits in the log alone; restore removes the log before it renames
 * the restored file over data.db (the old log must not be replayed into the new file), so without
 * this a restore that stopped in between, or whose rename failed, lost those commits.  A data.db
 * that is no database at all (what a restore may be recovering from) has nothing to keep; any
 * other failure stops the restore with nothing changed.
 */
static enum custos_err fold_wal(const char *path)
{
    char wal[PATH_MAX];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int r, busy = 0;

    snprintf(wal, sizeof(wal), "%s-wal", path);
    if (access(wal, F_OK) != 0)
        return CUSTOS_OK;
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return CUSTOS_OK; /* a log without its database (data.db lost): nothing it holds can be kept */
    r = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (r == SQLITE_OK)
        r = sqlite3_prepare_v2(db, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &st, NULL);
    if (r == SQLITE_OK) {
        r = sqlite3_step(st);
        busy = r == SQLITE_ROW && sqlite3_column_int(st, 0) != 0;
        r = r == SQLITE_ROW ? SQLITE_OK : sqlite3_errcode(db);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (r == SQLITE_CORRUPT || r == SQLITE_NOTADB)
        return CUSTOS_OK;
    if (r != SQLITE_OK || busy)
        return custos_err_set(CUSTOS_ERR_IO, "cannot fold data.db's write-ahead log into it (%s): nothing was "
                              "restored", busy ? "the database is in use" : sqlite3_errstr(r));
    return CUSTOS_OK;
}

/* The first column of the first row of query q in db, for restore_shape: SQLITE_ROW and *out
   (malloc'ed text), SQLITE_DONE when there is no row (*out NULL), or an error code. */
static int first_row(sqlite3 *db, const char *q, char **out)
{
    sqlite3_stmt *st = NULL;
    int r = sqlite3_prepare_v2(db, q, -1, &st, NULL);

    *out = NULL;
    if (r == SQLITE_OK)
        r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);

        if (!(*out = strdup(t ? t : "")))
            r = SQLITE_NOMEM;
    }
    sqlite3_finalize(st);
    return r;
}

/*
 * The copy of a backup (dst, not yet data.db) must be a data plane this version opens and keeps
 * working on, or it does not replace data.db: the open checks nothing of this, and a restore that
 * had renamed a file it then cannot open would leave the vault unopenable.  After the one
 * migration an older backup may need and the tables it may lack, its schema must be exactly
 * data_schema's (no table, column, constraint or index of anyone else's: a CHECK or an
 * expression index would fail later writes; SQLite's own statistics tables, which an operator's
 * ANALYZE may have left in an older backup, are dropped), its text UTF-8, and its ids consistent
 * the way the open's publishing step relies on: an id staged once and not also stored, one id
 * per record, each index entry naming its record's id.  dst has secure_delete on: the migration
 * frees pages that held blind data.
 */
static enum custos_err restore_shape(sqlite3 *dst, const char *in)
{
    static const char shape[] = "SELECT group_concat(d, char(10)) FROM (SELECT type || ' ' || name || ' ' || "
                                "tbl_name || ' ' || ifnull(sql, '') AS d FROM main.sqlite_master ORDER BY d)";
    static const char *const checks[][2] = {
        {"SELECT 1 FROM main.staged_ids s JOIN main.subject_ids i ON i.id = s.id LIMIT 1",
         "a subject is both staged and stored"},
        {"SELECT 1 FROM main.staged_ids GROUP BY id HAVING count(*) > 1 LIMIT 1", "a subject is staged twice"},
        {"SELECT 1 FROM main.subject_ids GROUP BY rid HAVING count(*) > 1 LIMIT 1", "two ids name one record"},
        {"SELECT 1 FROM main.subject_ids i LEFT JOIN main.subjects s ON s.rid = i.rid"
         " WHERE s.rid IS NULL OR s.id IS NOT i.id LIMIT 1",
         "an id names a record that is not its own"},
        /* links as PUT .../links/{name} makes them: a name of [a-z][a-z0-9._-]{0,63}, an http(s)
           URL of printable ASCII (red-team finding: a name that was not UTF-8 stopped every
           webhook notice of the vault; the deliverer now gives such a notice up, and a backup
           holding one is refused here).  Not the URL's whole syntax: versions before 6b0b652
           took "https://" without a host, and their backups restore (its notices fail and are
           given up as before) */
        {"SELECT 1 FROM main.links WHERE typeof(name) <> 'text' OR typeof(url) <> 'text' OR length(name) > 64"
         " OR NOT name GLOB '[a-z]*' OR name GLOB '*[^a-z0-9._-]*' OR length(url) > 2048"
         " OR NOT (url GLOB 'http://*' OR url GLOB 'https://*') OR url GLOB '*[^!-~]*' LIMIT 1",
         "a link the API could not have made (its name or URL)"},
    };
    static const char *const stats[] = {"sqlite_stat1", "sqlite_stat2", "sqlite_stat3", "sqlite_stat4"};
    sqlite3 *ref = NULL;
    char *want = NULL, *got = NULL, *enc = NULL;
    enum custos_err rc = CUSTOS_OK;
    size_t i;
    int r = SQLITE_OK;

    if ((r = first_row(dst, "PRAGMA main.encoding", &enc)) != SQLITE_ROW || strcmp(enc, "UTF-8") != 0) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "%s is not a custos backup (text encoding %s): nothing was restored",
                            in, enc ? enc : "unknown");
        goto done;
    }
    /* ANALYZE's tables: no custos version makes them.  Dropped by their own fixed names, never by
       a name read from the file (the file is not trusted: a name is SQL once spliced into it);
       any other name fails the schema comparison below. */
    for (i = 0; i < sizeof(stats) / sizeof(stats[0]); i++) {
        char q[128], *hit = NULL;

        snprintf(q, sizeof(q), "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = '%s'", stats[i]);
        if ((r = first_row(dst, q, &hit)) == SQLITE_ROW) {
            snprintf(q, sizeof(q), "DROP TABLE main.%s", stats[i]);
            if ((rc = exec(dst, q, "restore schema")))
                r = sqlite3_errcode(dst);
        }
        free(hit);
        if (r != SQLITE_ROW && r != SQLITE_DONE)
            goto refused;
    }
    if ((rc = migrate_subjects(dst)) || (rc = exec(dst, data_schema, "restore schema")))
        goto refused;
    if (sqlite3_open_v2(":memory:", &ref, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
        (rc = exec(ref, data_schema, "reference schema"))) {
        rc = rc ? rc : CUSTOS_ERR_NOMEM;
        goto done;
    }
    if (first_row(ref, shape, &want) != SQLITE_ROW) {
        rc = custos_err_set(CUSTOS_ERR_NOMEM, "cannot check %s (%s): nothing was restored", in, sqlite3_errmsg(ref));
        goto done;
    }
    if ((r = first_row(dst, shape, &got)) != SQLITE_ROW)
        goto refused;
    if (strcmp(want, got) != 0) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "%s is not a custos backup: its tables or indexes are not this "
                            "version's: nothing was restored", in);
        goto done;
    }
    for (i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        char *hit = NULL;

        r = first_row(dst, checks[i][0], &hit);
        free(hit);
        if (r == SQLITE_ROW) {
            rc = custos_err_set(CUSTOS_ERR_CORRUPT, "%s is damaged (%s): nothing was restored", in, checks[i][1]);
            goto done;
        }
        if (r != SQLITE_DONE)
            goto refused;
    }
    goto done;
refused: {
    /* a step on the copy failed.  What the machine caused (the disk, memory, a lock) keeps its
       code; anything else is the file's doing, and refuses it.  The detail is copied first: the
       one being replaced is the one quoted. */
    int code = sqlite3_errcode(dst) & 0xff;
    char why[160];

    if (!rc && r != SQLITE_ROW && r != SQLITE_DONE)
        code = r & 0xff;
    snprintf(why, sizeof(why), "%s", rc ? custos_err_msg(rc) : sqlite3_errmsg(dst));
    if (rc == CUSTOS_ERR_NOMEM || code == SQLITE_NOMEM)
        rc = custos_err_set(CUSTOS_ERR_NOMEM, "cannot check %s (%s): nothing was restored", in, why);
    else if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
        rc = custos_err_set(CUSTOS_ERR_LOCKED, "cannot check %s (%s): nothing was restored", in, why);
    else if (code == SQLITE_IOERR || code == SQLITE_FULL || code == SQLITE_CANTOPEN || code == SQLITE_READONLY ||
             code == SQLITE_PERM)
        rc = custos_err_set(CUSTOS_ERR_IO, "cannot check %s (%s): nothing was restored", in, why);
    else
        rc = custos_err_set(CUSTOS_ERR_CORRUPT, "%s cannot be made this version's data plane (%s): nothing was "
                            "restored", in, why);
}
done:
    free(enc);
    free(want);
    free(got);
    sqlite3_close(ref);
    return rc;
}

static enum custos_err sq_restore(const char *dir, const char *in, const char *origin)
{
    char path[PATH_MAX], tmp[PATH_MAX], side[PATH_MAX];
    sqlite3 *db = NULL, *dst = NULL;
    sqlite3_backup *bk = NULL;
    sqlite3_stmt *st = NULL;
    enum custos_err rc = CUSTOS_OK;
    int r, fd;

    /* check it is a backup of this vault's data plane before touching anything */
    r = sqlite3_open_v2(in, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (r == SQLITE_OK)
        r = sqlite3_prepare_v2(db, "SELECT v FROM meta WHERE k = 'backup_origin'", -1, &st, NULL);
    if (r != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "%s is not a custos backup", in);
        goto done;
    }
    if (!sqlite3_column_text(st, 0) || strcmp((const char *)sqlite3_column_text(st, 0), origin) != 0) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "%s is a backup of another vault (%.100s)", in,
                            sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "no origin");
        goto done;
    }
    sqlite3_finalize(st);
    st = NULL;
    /* The pragma reports problems as rows and still returns SQLITE_OK: the one answer that passes
       is a single row "ok".  integrity_check, not quick_check: it also finds index entries out of
       order or missing, which would make subjects unfindable after the restore. */
    r = sqlite3_prepare_v2(db, "PRAGMA integrity_check(1)", -1, &st, NULL);
    if (r != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW || !sqlite3_column_text(st, 0) ||
        strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0 || sqlite3_step(st) != SQLITE_DONE) {
        rc = custos_err_set(CUSTOS_ERR_CORRUPT, "%s fails its integrity check: nothing was restored", in);
        goto done;
    }
    sqlite3_finalize(st);
    st = NULL;
    /* A backup is tables and their indexes, nothing else (backup_copy_sql).  A trigger or a view
       would come along with the pages and run inside the vault at every write: whoever could
       edit the backup file would decide what an erasure's delete, a create or a rebuild does. */
    r = sqlite3_prepare_v2(db, "SELECT type, name FROM sqlite_master WHERE type NOT IN ('table', 'index')", -1, &st,
                           NULL);
    if (r != SQLITE_OK || (r = sqlite3_step(st)) != SQLITE_DONE) {
        rc = r == SQLITE_ROW ? custos_err_set(CUSTOS_ERR_INVALID, "%s holds a %s (%.64s), which no custos backup has: "
                                              "nothing was restored", in, (const char *)sqlite3_column_text(st, 0),
                                              (const char *)sqlite3_column_text(st, 1))
                             : custos_err_set(CUSTOS_ERR_CORRUPT, "%s cannot be read: nothing was restored", in);
        goto done;
    }
    sqlite3_finalize(st);
    st = NULL;
    /* copy into a new file next to data.db, fsync, then rename over it */
    snprintf(path, sizeof(path), "%s/data.db", dir);
    snprintf(tmp, sizeof(tmp), "%s/data.db.restore", dir);
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = custos_err_set(CUSTOS_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    close(fd);
    r = sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    /* as every connection of the vault: pages freed by what follows are zeroed (an older backup's
       blind data), and nothing in the copy's schema may call a function with side effects */
    if (r == SQLITE_OK) {
        /* the copy is the file's, not yet the vault's: no other database can be attached to the
           connection that works on it, whatever runs there */
        sqlite3_limit(dst, SQLITE_LIMIT_ATTACHED, 0);
        r = sqlite3_exec(dst, "PRAGMA secure_delete=ON; PRAGMA trusted_schema=OFF;", NULL, NULL, NULL);
    }
    if (r == SQLITE_OK && (bk = sqlite3_backup_init(dst, "main", db, "main")) != NULL) {
        r = sqlite3_backup_step(bk, -1);
        r = sqlite3_backup_finish(bk) == SQLITE_OK && r == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    } else if (r == SQLITE_OK)
        r = sqlite3_errcode(dst);
    /* no blind data comes in with a backup (an older backup's is dropped, zeroed): the vault's
       open rebuilds the index from the records whose keys still exist, resuming after a crash
       (the marker travels with the file that replaces data.db).  An older backup is migrated
       here, and gets the data-plane tables it lacks empty (restore_shape). */
    if (r == SQLITE_OK && (rc = restore_shape(dst, in))) {
        sqlite3_close(dst);
        unlink(tmp);
        goto done;
    }
    if (r == SQLITE_OK)
        r = sqlite3_exec(dst, "PRAGMA secure_delete=ON; BEGIN;"
                              "DELETE FROM meta WHERE k IN ('backup_origin', 'backup_time', 'import_mark', 'import_done');"
                              "DELETE FROM blind; DELETE FROM staged_blind;"
                              "UPDATE subjects SET blind = x'' WHERE length(blind) > 0;"
                              "INSERT OR REPLACE INTO meta(k, v) VALUES ('blind_rebuild_after', 0);"
                              "COMMIT; PRAGMA synchronous=FULL; PRAGMA journal_mode=DELETE;", NULL, NULL, NULL);
    sqlite3_close(dst);
    dst = NULL;
    if (r != SQLITE_OK) {
        unlink(tmp);
        rc = custos_err_set(CUSTOS_ERR_IO, "cannot copy the backup");
        goto done;
    }
    fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        if (fd >= 0)
            close(fd);
        unlink(tmp);
        rc = custos_err_set(CUSTOS_ERR_IO, "cannot sync %s", tmp);
        goto done;
    }
    close(fd);
    if ((rc = fold_wal(path))) {
        unlink(tmp);
        goto done;
    }
    /* the old WAL belongs to the old file: it must not be replayed into the restored one */
    snprintf(side, sizeof(side), "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", path);
    unlink(side);
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        rc = custos_err_set(CUSTOS_ERR_IO, "cannot replace data.db: %s", strerror(errno));
        goto done;
    }
    custos_fsync_dir(dir);
    custos_err_clear(); /* data.db is replaced: a failed directory sync is not a failed restore */
done:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

const struct custos_store_ops custos_store_sqlite = {
    .name = "sqlite",
    .backup = sq_backup,
    .restore = sq_restore,
    .open = sq_open,
    .close = sq_close,
    .acquire = sq_acquire,
    .release = sq_release,
    .thread_done = sq_thread_done,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .set_bulk = sq_set_bulk,
    .compact_logs = sq_compact_logs,
    .compact_log = sq_compact_log,
    .snapshot_reads = sq_snapshot_reads,
    .snapshot_turn = sq_snapshot_turn,
    .snapshot_leave = sq_snapshot_leave,
    .log_checkpoint = sq_log_checkpoint,
    .meta_get = sq_meta_get,
    .meta_put = sq_meta_put,
    .key_put = sq_key_put,
    .key_get = sq_key_get,
    .key_any = sq_key_any,
    .key_delete = sq_key_delete,
    .key_scan_below = sq_key_scan_below,
    .key_count_below = sq_key_count_below,
    .key_scan_multi = sq_key_scan_multi,
    .erasure_put = sq_erasure_put,
    .erasure_get = sq_erasure_get,
    .erasure_scan = sq_erasure_scan,
    .principal_put = sq_principal_put,
    .principal_get = sq_principal_get,
    .principal_disable = sq_principal_disable,
    .principal_set_secret = sq_principal_set_secret,
    .principal_scan = sq_principal_scan,
    .token_scan = sq_token_scan,
    .token_count = sq_token_count,
    .token_find = sq_token_find,
    .token_revoke_scope = sq_token_revoke_scope,
    .token_purge = sq_token_purge,
    .token_put = sq_token_put,
    .token_get = sq_token_get,
    .token_revoke = sq_token_revoke,
    .token_revoke_principal = sq_token_revoke_principal,
    .subject_put = sq_subject_put,
    .subject_get = sq_subject_get,
    .subject_delete = sq_subject_delete,
    .blind_find = sq_blind_find,
    .blind_rebuild_state = sq_blind_rebuild_state,
    .blind_rebuild_scan = sq_blind_rebuild_scan,
    .keys_without_record = sq_keys_without_record,
    .blind_rebuild_clear = sq_blind_rebuild_clear,
    .blind_rebuild_put = sq_blind_rebuild_put,
    .blind_rebuild_mark = sq_blind_rebuild_mark,
    .blind_rebuild_finish = sq_blind_rebuild_finish,
    .import_mark_get = sq_import_mark_get,
    .import_mark_put = sq_import_mark_put,
    .import_done_get = sq_import_done_get,
    .import_done_put = sq_import_done_put,
    .key_stage = sq_key_stage,
    .subject_stage = sq_subject_stage,
    .subjects_publish = sq_subjects_publish,
    .link_put = sq_link_put,
    .link_scan = sq_link_scan,
    .outbox_put = sq_outbox_put,
    .outbox_update = sq_outbox_update,
    .outbox_due = sq_outbox_due,
    .outbox_scan_subject = sq_outbox_scan_subject,
    .retention_key_put = sq_retention_key_put,
    .retention_key_get = sq_retention_key_get,
    .retention_key_scan = sq_retention_key_scan,
    .retained_put = sq_retained_put,
    .retained_scan_subject = sq_retained_scan_subject,
    .retention_expire = sq_retention_expire,
};

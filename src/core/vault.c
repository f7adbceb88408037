/*
 * vault.c - creating, opening and closing a vault; the key hierarchy in memory.
 *
 * Data directory (docs/security.md):
 *   DIR/vault.json          format version and ledger origin (written last by init)
 *   DIR/lock                flock()ed by the one process using the vault
 *   DIR/keys/master-N.key   master key versions (0600)
 *   DIR/keys/ledger.key     Ed25519 seed of the ledger key (0600)
 *   DIR/control.db          control plane (wrapped keys, tombstones, principals, tokens)
 *   DIR/data.db             data plane (sealed records, blind index)
 *   DIR/ledger/             the ledger
 *   DIR/schema.json, DIR/policy.json   optional, copied at init
 *
 * Key hierarchy: master key (file) wraps each subject key and the system
 * root key (control plane); the root key derives the token, secret,
 * blind-index and row-MAC keys.  All of them live in one sodium_malloc'd
 * block, read-only except while a rotation changes it.
 *
 * Must never: open a vault another process holds, write a key outside
 * DIR/keys, overwrite an existing vault.
 */
#include "core/vault_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/json.h"
#include "core/keyfile.h"

#include "custos/banned.h"

#define ROOT_AD_NAME "root"

uint64_t custos_now(const struct custos_vault *v)
{
    return v->now_ms ? v->now_ms(v->now_ctx) : custos_clock_ms();
}

const uint8_t *custos_master(const struct custos_vault *v, uint32_t kv)
{
    int i;

    for (i = 0; i < CUSTOS_MAX_KEY_VERSIONS; i++)
        if (kv && v->sec->master_kv[i] == kv)
            return v->sec->master[i];
    return NULL;
}

void custos_time_format(char out[32], int64_t ms)
{
    /* RFC 3339 has four-digit years: a time read from an edited row is held to 0000-9999 */
    const int64_t lo = -62167219200000LL, hi = 253402300799999LL;
    time_t t;
    struct tm tm;

    ms = ms < lo ? lo : ms > hi ? hi : ms;
    t = (time_t)((ms - ((ms % 1000) + 1000) % 1000) / 1000);
    gmtime_r(&t, &tm);
    snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(((ms % 1000) + 1000) % 1000));
}

void custos_caller_system(struct custos_caller *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->principal, sizeof(c->principal), "@local");
    c->kind = CUSTOS_KIND_SYSTEM;
    snprintf(c->source, sizeof(c->source), "local");
    c->system = 1;
}

struct custos_ledger *custos_vault_ledger(struct custos_vault *v)
{
    return v->ledger;
}

static void path_join(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static int valid_origin(const char *o)
{
    size_t i, n = strlen(o);

    if (n == 0 || n > 128)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)o[i];

        if (!(c > ' ' && c < 0x7f) || c == '+')
            return 0;
    }
    return 1;
}

/* ---- principals from before secret expiry -------------------------------------------------- */

/* DIR/keys/legacy-secrets: "custos legacy secrets v1\n" and the time (ms, decimal) this vault was
   first opened by a release whose principal secrets expire; written once, on that open (init
   writes it too), never changed.  Principal rows written before have no expiry: theirs is a year
   after that time.  It is kept beside the keys, not in control.db: an old row written back into
   the database must not come with a later start. */
static enum custos_err load_legacy_secrets(struct custos_vault *v)
{
    static const char head[] = "custos legacy secrets v1\n";
    char path[PATH_MAX], text[64], *got = NULL, *end = NULL;
    long long since;
    size_t len = 0;
    enum custos_err rc;

    path_join(path, sizeof(path), v->dir, "keys/legacy-secrets");
    rc = custos_file_read(path, 64, &got, &len);
    if (rc == CUSTOS_ERR_NOTFOUND) {
        custos_err_clear();
        snprintf(text, sizeof(text), "%s%llu\n", head, (unsigned long long)custos_now(v));
        if ((rc = custos_file_replace(path, text, strlen(text), 0600)) ||
            (rc = custos_file_read(path, 64, &got, &len)))
            return rc;
    } else if (rc)
        return rc;
    rc = CUSTOS_OK;
    if (len < sizeof(head) || memcmp(got, head, sizeof(head) - 1) != 0 || got[sizeof(head) - 1] < '0' ||
        got[sizeof(head) - 1] > '9')
        rc = CUSTOS_ERR_CORRUPT;
    else {
        errno = 0;
        since = strtoll(got + sizeof(head) - 1, &end, 10);
        if (errno || since <= 0 || *end != '\n' || end[1] != '\0')
            rc = CUSTOS_ERR_CORRUPT;
        else
            v->legacy_secret_expires = (int64_t)since + (int64_t)CUSTOS_SECRET_TTL_DAYS * 86400000;
    }
    free(got);
    return rc ? custos_err_set(rc, "%s is malformed", path) : CUSTOS_OK;
}

/* ---- vault.json ---------------------------------------------------------------------------- */

static enum custos_err read_manifest(const char *dir, char *origin, size_t cap)
{
    char path[PATH_MAX], *text = NULL;
    json_t *j = NULL, *fmt, *org, *store;
    json_error_t jerr;
    enum custos_err rc;

    path_join(path, sizeof(path), dir, "vault.json");
    if ((rc = custos_file_read(path, 4096, &text, NULL))) {
        if (rc == CUSTOS_ERR_NOTFOUND)
            return custos_err_set(CUSTOS_ERR_NOTFOUND, "%s is not a custos vault (no vault.json): run custos init",
                                  dir);
        return rc;
    }
    j = json_loads(text, 0, &jerr);
    free(text);
    fmt = json_object_get(j, "format");
    org = json_object_get(j, "origin");
    if (!j || !json_is_integer(fmt) || !json_is_string(org) || !valid_origin(json_string_value(org))) {
        json_decref(j);
        return custos_err_set(CUSTOS_ERR_CORRUPT, "%s/vault.json is malformed", dir);
    }
    if (json_integer_value(fmt) != 1) {
        long long f = (long long)json_integer_value(fmt); /* fmt belongs to j */

        json_decref(j);
        return custos_err_set(CUSTOS_ERR_INVALID, "vault format %lld is not supported by this version", f);
    }
    /* the back-end the vault was made with: this version has one, and must not open another's
       directory as if it were its own */
    store = json_object_get(j, "store");
    if (store && (!json_is_string(store) || strcmp(json_string_value(store), "sqlite") != 0)) {
        json_decref(j);
        return custos_err_set(CUSTOS_ERR_INVALID, "%s/vault.json names a store this version does not have "
                              "(only \"sqlite\")", dir);
    }
    snprintf(origin, cap, "%s", json_string_value(org));
    json_decref(j);
    return CUSTOS_OK;
}

enum custos_err custos_vault_ledger_identity(const char *dir, char *origin, size_t cap, uint8_t pk[32])
{
    char path[PATH_MAX];
    uint8_t *seed = sodium_malloc(32 + 64);
    enum custos_err rc;

    if (!seed)
        return CUSTOS_ERR_NOMEM;
    if ((rc = read_manifest(dir, origin, cap)))
        goto done;
    path_join(path, sizeof(path), dir, "keys/ledger.key");
    if ((rc = custos_keyfile_read(path, "ledger key", seed)))
        goto done;
    crypto_sign_seed_keypair(pk, seed + 32, seed);
done:
    sodium_free(seed);
    return rc;
}

/* ---- secrets ------------------------------------------------------------------------------- */

static void derive_subkeys(struct custos_secrets *s)
{
    crypto_kdf_derive_from_key(s->token_key, 32, 1, "custos01", s->root);
    crypto_kdf_derive_from_key(s->secret_key, 32, 2, "custos01", s->root);
    crypto_kdf_derive_from_key(s->blind_key, 32, 3, "custos01", s->root);
    crypto_kdf_derive_from_key(s->mac_key, 32, 4, "custos01", s->root);
    crypto_kdf_derive_from_key(s->import_key, 32, 5, "custos01", s->root);
}

static int retention_below(void *ctx, uint32_t day, uint32_t kv, const uint8_t *w, size_t wlen)
{
    uint32_t *cur = ctx;

    (void)day;
    (void)w;
    (void)wlen;
    if (kv < cur[0])
        cur[1] = 1;
    return cur[1];
}

/* 1 when no subject or retention key is wrapped under a version below `current`. */
int custos_older_versions_unused(struct custos_vault *v, struct custos_store_conn *c, uint32_t current)
{
    uint64_t n = 1;
    uint32_t ctx[2] = {current, 0};

    if (v->ops->key_count_below(c, current, &n) || n ||
        v->ops->retention_key_scan(c, retention_below, ctx))
        return 0;
    return !ctx[1];
}

/*
 * Load every DIR/keys/master-N.key into the secrets block.  A file of a version above `current`
 * (the version the control plane uses) has never wrapped anything: if it is malformed (a
 * rotation torn while writing it, before key files were written under a temporary name), it is
 * destroyed so the rotation can start over.  A destroy interrupted by a crash is finished: a
 * file set aside for it (master-N.key.destroy), and an all-zero file of a version below
 * `current` when nothing is wrapped under an older version any more (what a rotation checks
 * before its destroy; older releases overwrote in place before unlinking).  Any other malformed
 * file of a version in use is an error: a zeroed key that still wraps something is damage to
 * report, not a file to remove.
 */
static enum custos_err load_masters(struct custos_vault *v, struct custos_store_conn *c, uint32_t current)
{
    char kdir[PATH_MAX], path[PATH_MAX + 64], want[64];
    DIR *d;
    struct dirent *de;
    int slot = 0;
    enum custos_err rc = CUSTOS_OK;

    path_join(kdir, sizeof(kdir), v->dir, "keys");
    d = opendir(kdir);
    if (!d)
        return custos_err_set(CUSTOS_ERR_IO, "cannot open %s: %s", kdir, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        unsigned long kv;

        if (sscanf(de->d_name, "master-%lu.key", &kv) != 1 || kv == 0 || kv > 0xffffffffUL)
            continue;
        snprintf(want, sizeof(want), "master-%lu.key" CUSTOS_KEYFILE_ASIDE, kv);
        if (strcmp(want, de->d_name) == 0) {
            /* set aside by a destroy that was interrupted: nothing uses it, finish the job */
            snprintf(path, sizeof(path), "%s/%s", kdir, de->d_name);
            if ((rc = custos_keyfile_shred(path)))
                break;
            continue;
        }
        snprintf(want, sizeof(want), "master-%lu.key", kv);
        if (strcmp(want, de->d_name) != 0)
            continue; /* master-2.key.tmp and the like */
        if (slot == CUSTOS_MAX_KEY_VERSIONS) {
            rc = custos_err_set(CUSTOS_ERR_CORRUPT, "more than %d master key versions in %s: finish the rotation",
                                CUSTOS_MAX_KEY_VERSIONS, kdir);
            break;
        }
        snprintf(path, sizeof(path), "%s/%s", kdir, de->d_name);
        rc = custos_keyfile_read(path, "master key", v->sec->master[slot]);
        /* all zeros, a version below the one in use, nothing under it: a rotation's destroy of a
           version nothing used any more, interrupted between its overwrite and its unlink by an older release
           (it did not set the file aside first); it holds no key, finish the job */
        if (rc == CUSTOS_ERR_CORRUPT && kv < current && custos_keyfile_zeroed(path) &&
            custos_older_versions_unused(v, c, current)) {
            custos_err_clear();
            if ((rc = custos_keyfile_shred(path)))
                break;
            continue;
        }
        if (rc == CUSTOS_ERR_CORRUPT && kv > current) {
            custos_err_clear();
            if ((rc = custos_keyfile_destroy(path)))
                break;
            continue;
        }
        if (rc)
            break;
        v->sec->master_kv[slot++] = (uint32_t)kv;
    }
    closedir(d);
    return rc;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t x)
{
    p[0] = (uint8_t)(x >> 24);
    p[1] = (uint8_t)(x >> 16);
    p[2] = (uint8_t)(x >> 8);
    p[3] = (uint8_t)x;
}

/* meta "master_kv" = 4 bytes: the master key version new wraps use. */
static enum custos_err load_current_kv(struct custos_vault *v, struct custos_store_conn *c)
{
    struct custos_buf b;
    enum custos_err rc;

    custos_buf_init(&b, 16);
    if ((rc = v->ops->meta_get(c, "master_kv", &b)) || b.len != 4)
        rc = custos_err_set(rc ? rc : CUSTOS_ERR_CORRUPT, "control plane has no master key version");
    else
        v->current_kv = get_be32(b.p);
    custos_buf_release(&b);
    return rc;
}

/* meta "system_key" = kv (4) || wrapped root (72). */
static enum custos_err load_system(struct custos_vault *v, struct custos_store_conn *c)
{
    struct custos_buf b;
    enum custos_err rc;
    uint8_t ad[64];
    const uint8_t *kek;
    uint32_t kv;

    custos_buf_init(&b, 256);
    if ((rc = v->ops->meta_get(c, "system_key", &b)) || b.len != 4 + CUSTOS_WRAPPED_BYTES) {
        rc = custos_err_set(rc ? rc : CUSTOS_ERR_CORRUPT, "control plane has no system key");
        goto done;
    }
    kv = get_be32(b.p);
    kek = custos_master(v, kv);
    if (!kek) {
        rc = custos_err_set(CUSTOS_ERR_CORRUPT, "master key version %u is missing from keys/", kv);
        goto done;
    }
    if (custos_unwrap(v->sec->root, kek, b.p + 4, ad, custos_ad_system_key(ad, ROOT_AD_NAME, kv))) {
        rc = custos_err_set(CUSTOS_ERR_CRYPTO, "system key does not open with master key version %u", kv);
        goto done;
    }
    derive_subkeys(v->sec);
done:
    custos_buf_release(&b);
    return rc;
}

enum custos_err custos_system_key_store(struct custos_vault *v, struct custos_store_conn *c, uint32_t kv)
{
    uint8_t rec[4 + CUSTOS_WRAPPED_BYTES], ad[64];
    const uint8_t *kek = custos_master(v, kv);

    if (!kek)
        return CUSTOS_ERR_INTERNAL;
    put_be32(rec, kv);
    custos_wrap(rec + 4, kek, v->sec->root, ad, custos_ad_system_key(ad, ROOT_AD_NAME, kv));
    return v->ops->meta_put(c, "system_key", rec, sizeof(rec));
}

/* ---- open / close -------------------------------------------------------------------------- */

/* Every role a schema names for legal retention must exist in the policy. */
static enum custos_err check_retention_roles(const struct custos_schema *s, const struct custos_policy *p)
{
    size_t i;

    for (i = 0; i < s->nfields; i++)
        if (s->fields[i].retention_days && custos_policy_role(p, s->fields[i].retention_role) < 0)
            return custos_err_set(CUSTOS_ERR_INVALID, "schema: field '%s': retention role '%s' is not a role of the "
                                  "policy", s->fields[i].name, s->fields[i].retention_role);
    return CUSTOS_OK;
}

static enum custos_err load_optional(const char *dir, const char *name, char **text, size_t *len)
{
    char path[PATH_MAX];
    enum custos_err rc;

    path_join(path, sizeof(path), dir, name);
    rc = custos_file_read(path, 1 << 20, text, len);
    if (rc == CUSTOS_ERR_NOTFOUND) {
        custos_err_clear();
        *text = NULL;
        *len = 0;
        return CUSTOS_OK;
    }
    return rc;
}

/*
 * The blind index holds keyed hashes of values as normalised when they were indexed
 * (custos_normalise), each under its field's position in the schema.  When the normalisation
 * changes (CUSTOS_BLIND_VERSION) or the schema's searchable fields do (a field inserted before
 * one, fields reordered, one renamed, made searchable or given another format), entries made
 * before would no longer match a search for the same value.  The control plane keeps a
 * fingerprint of both (meta row blind_layout); the first open that computes another one starts a
 * rebuild of the whole index (resumable, as after a restore), then records the new fingerprint.
 * A crash in between only starts the rebuild again.
 */
static void blind_layout(const struct custos_schema *s, uint8_t out[32])
{
    static const char domain[] = "custos/blind-layout/v1";
    crypto_generichash_state st;
    uint8_t b[6];

    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)domain, sizeof(domain));
    b[0] = CUSTOS_BLIND_VERSION;
    crypto_generichash_update(&st, b, 1);
    for (size_t i = 0; i < s->nfields; i++) {
        const struct custos_field *f = &s->fields[i];

        if (!f->searchable)
            continue;
        b[0] = (uint8_t)(i >> 24), b[1] = (uint8_t)(i >> 16), b[2] = (uint8_t)(i >> 8), b[3] = (uint8_t)i;
        b[4] = (uint8_t)f->type, b[5] = (uint8_t)f->format;
        crypto_generichash_update(&st, b, sizeof(b));
        crypto_generichash_update(&st, (const uint8_t *)f->name, strlen(f->name) + 1);
    }
    crypto_generichash_final(&st, out, 32);
}

static enum custos_err blind_layout_check(struct custos_vault *v)
{
    struct custos_store_conn *c = NULL;
    struct custos_buf b;
    uint8_t want[32];
    enum custos_err rc;

    blind_layout(v->schema, want);
    custos_buf_init(&b, 64);
    if ((rc = v->ops->acquire(v->store, &c)))
        return rc;
    rc = v->ops->meta_get(c, "blind_layout", &b);
    if (rc == CUSTOS_OK && b.len == sizeof(want) && memcmp(b.p, want, sizeof(want)) == 0)
        goto done;
    if (rc && rc != CUSTOS_ERR_NOTFOUND)
        goto done;
    if (!(rc = v->ops->begin(c, CUSTOS_PLANE_DATA)) &&
        ((rc = v->ops->blind_rebuild_mark(c, 0)) || (rc = v->ops->commit(c, CUSTOS_PLANE_DATA))))
        v->ops->rollback(c, CUSTOS_PLANE_DATA);
    if (!rc)
        rc = v->ops->meta_put(c, "blind_layout", want, sizeof(want));
done:
    v->ops->release(v->store, c);
    custos_buf_release(&b);
    return rc;
}

/*
 * The open marker (control plane meta row `open_since`, 8 bytes: the time of the open, 0 when
 * closed) tells the next open whether the last one ended cleanly.  set: 1 records an open, 0 a
 * clean close, -1 nothing; *was_open (may be NULL) gets whether the row says open.
 */
static enum custos_err open_marker(struct custos_vault *v, int set, int *was_open)
{
    struct custos_store_conn *c = NULL;
    struct custos_buf b;
    uint64_t now = set == 1 ? custos_now(v) : 0;
    uint8_t mb[8];
    enum custos_err rc;

    custos_buf_init(&b, 16);
    if ((rc = v->ops->acquire(v->store, &c)))
        return rc;
    if (was_open) {
        *was_open = 0;
        rc = v->ops->meta_get(c, "open_since", &b);
        if (rc == CUSTOS_OK)
            for (size_t i = 0; i < b.len; i++)
                *was_open |= b.p[i] != 0;
        else if (rc == CUSTOS_ERR_NOTFOUND)
            rc = CUSTOS_OK;
    }
    if (!rc && set >= 0) {
        for (int i = 0; i < 8; i++)
            mb[i] = (uint8_t)(now >> (56 - 8 * i));
        rc = v->ops->meta_put(c, "open_since", mb, sizeof(mb));
    }
    v->ops->release(v->store, c);
    custos_buf_release(&b);
    return rc;
}

uint64_t custos_vault_ledger_missing(const struct custos_vault *v)
{
    return v->ledger_missing;
}

int custos_vault_ledger_recovered(const struct custos_vault *v, uint64_t *torn_bytes)
{
    if (torn_bytes)
        *torn_bytes = v->ledger_recovery.truncated_bytes;
    return v->unclean_stop || v->ledger_recovery.truncated_bytes > 0 || v->ledger_recovery.rebuilt > 0;
}

void custos_vault_free(struct custos_vault *v)
{
    if (!v)
        return;
    custos_keys_stop(v); /* a rotation in its own thread ends at a batch's end, its entry written */
    /* the next open need not rescan the ledger this process covered; and this was a clean close */
    if (v->opened)
        custos_erasure_mark(v);
    if (v->marker_set)
        open_marker(v, 0, NULL); /* a failure here only makes the next open report a stop too many */
    custos_ledger_free(v->ledger);
    if (v->store)
        v->ops->close(v->store);
    custos_schema_free(v->schema);
    custos_policy_free(v->policy);
    custos_rate_free(v->rate);
    custos_tcache_free(v->tcache);
    custos_keycache_free(v->keys);
    if (v->sec)
        sodium_free(v->sec); /* wipes */
    if (v->lock_fd >= 0)
        close(v->lock_fd); /* releases the flock */
    if (v->write_mu_ready)
        pthread_mutex_destroy(&v->write_mu);
    custos_keyring_free(v);
    free(v);
}

enum custos_err custos_vault_open(const struct custos_vault_opts *o, struct custos_vault **out)
{
    return custos_vault_open_locked(o, -1, out);
}

enum custos_err custos_vault_open_locked(const struct custos_vault_opts *o, int lock_fd, struct custos_vault **out)
{
    struct custos_vault *v = NULL;
    struct custos_store_conn *c = NULL;
    struct custos_ledger_config lc;
    char path[PATH_MAX], *text = NULL;
    size_t len = 0;
    uint8_t pk[32];
    enum custos_err rc;

    *out = NULL;
    if (sodium_init() < 0) {
        rc = custos_err_set(CUSTOS_ERR_CRYPTO, "libsodium failed to initialise");
    } else if (!(v = calloc(1, sizeof(*v)))) {
        rc = CUSTOS_ERR_NOMEM;
    } else
        rc = CUSTOS_OK;
    if (rc) {
        if (lock_fd >= 0)
            close(lock_fd);
        return rc;
    }
    v->lock_fd = lock_fd; /* the vault owns it from here on, and closes it on failure */
    pthread_mutex_init(&v->write_mu, NULL);
    v->write_mu_ready = 1;
    custos_keyring_init(v);
    v->ops = &custos_store_sqlite;
    v->now_ms = o->now_ms;
    v->now_ctx = o->now_ctx;
    if (strlen(o->dir) >= sizeof(v->dir) - 64) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "data directory path is too long");
        goto fail;
    }
    snprintf(v->dir, sizeof(v->dir), "%s", o->dir);
    if ((rc = read_manifest(v->dir, v->origin, sizeof(v->origin))))
        goto fail;
    path_join(path, sizeof(path), v->dir, "lock");
    if (lock_fd < 0 && (v->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        rc = custos_err_set(CUSTOS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    if (lock_fd < 0 && flock(v->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = custos_err_set(CUSTOS_ERR_LOCKED,
                            "the vault in %s is in use by another process (a running custos serve?)", v->dir);
        goto fail;
    }
    /* A restore killed between its copy and the rename leaves the copy (the backup's records,
       erased subjects' among them, sealed under keys since destroyed, and their link rows): no
       restore runs while this lock is held, so it is a leftover, and it goes now rather than at
       the next restore. */
    {
        static const char *const left[] = {"data.db.restore", "data.db.restore-journal", "data.db.restore-wal",
                                           "data.db.restore-shm"};

        for (size_t i = 0; i < sizeof(left) / sizeof(left[0]); i++) {
            path_join(path, sizeof(path), v->dir, left[i]);
            unlink(path);
        }
    }
    v->sec = sodium_malloc(sizeof(*v->sec));
    if (!v->sec) {
        rc = custos_err_set(CUSTOS_ERR_NOMEM, "cannot allocate secure memory (check RLIMIT_MEMLOCK)");
        goto fail;
    }
    memset(v->sec, 0, sizeof(*v->sec));
    if (!(v->keys = custos_keycache_new())) {
        rc = custos_err_set(CUSTOS_ERR_NOMEM, "cannot allocate secure memory (check RLIMIT_MEMLOCK)");
        goto fail;
    }
    path_join(path, sizeof(path), v->dir, "keys/ledger.key");
    if ((rc = custos_keyfile_read(path, "ledger key", v->sec->root)))
        goto fail;
    crypto_sign_seed_keypair(pk, v->sec->ledger_sk, v->sec->root);
    sodium_memzero(v->sec->root, sizeof(v->sec->root));
    if ((rc = load_legacy_secrets(v)))
        goto fail;
    if ((rc = v->ops->open(v->dir, 0, &v->store)))
        goto fail;
    if ((rc = v->ops->acquire(v->store, &c)))
        goto fail;
    if (!(rc = load_current_kv(v, c)) && !(rc = load_masters(v, c, v->current_kv)))
        rc = load_system(v, c);
    v->ops->release(v->store, c);
    if (rc)
        goto fail;
    if ((rc = load_optional(v->dir, "schema.json", &text, &len)))
        goto fail;
    rc = text ? custos_schema_parse(text, len, &v->schema)
              : custos_schema_parse(custos_default_schema_json, strlen(custos_default_schema_json), &v->schema);
    if (rc && text) {
        /* the file init copied: a version with stricter checks than the one that made the
           vault may refuse it; say which file, and that an edit of it is the way out */
        char msg[512];

        custos_strcopy(msg, sizeof(msg), custos_err_msg(rc), strlen(custos_err_msg(rc)));
        rc = custos_err_set(rc, "%s/schema.json: %s (edit that file; docs/schema.md, \"Changing a schema later\")",
                            v->dir, msg);
    }
    free(text);
    text = NULL;
    if (rc)
        goto fail;
    if ((rc = load_optional(v->dir, "policy.json", &text, &len)))
        goto fail;
    rc = custos_policy_load(text, len, &v->policy);
    free(text);
    if (rc || (rc = check_retention_roles(v->schema, v->policy)))
        goto fail;
    v->rebuild_group = o->rebuild_group ? o->rebuild_group : 8192;
    v->rebuild_stop_after = o->rebuild_stop_after;
    v->key_flush_ms = o->key_flush_ms ? o->key_flush_ms : 10000;
    memset(&lc, 0, sizeof(lc));
    path_join(path, sizeof(path), v->dir, "ledger");
    lc.dir = path;
    lc.origin = v->origin;
    lc.sign_sk = v->sec->ledger_sk;
    lc.checkpoint_interval_ms = o->checkpoint_interval_ms;
    lc.now_ms = o->now_ms;
    lc.now_ctx = o->now_ctx;
    lc.fault = o->ledger_fault;
    lc.fault_ctx = o->ledger_fault_ctx;
    if ((rc = custos_ledger_open(&lc, &v->ledger, &v->ledger_recovery)))
        goto fail;
    if ((rc = open_marker(v, -1, &v->unclean_stop)))
        goto fail;
    if (v->unclean_stop || v->ledger_recovery.truncated_bytes > 0 || v->ledger_recovery.rebuilt > 0) {
        /* The vault was not closed cleanly (its open marker is still set), or the ledger was not:
           recovery recomputed derived files and perhaps dropped a torn, never acknowledged tail.
           Say so where auditors look, in the ledger itself (the core never prints; count = bytes
           of the torn tail dropped).  One event per unclean stop, even one that left nothing to
           recover (a crash just after a checkpoint covered everything). */
        struct custos_caller sys;
        struct custos_event ev;

        custos_caller_system(&sys);
        custos_event_init(&ev, "ledger.recover", &sys);
        ev.count = (int64_t)v->ledger_recovery.truncated_bytes;
        if ((rc = custos_audit_durable(v, &ev, NULL)))
            goto fail;
    }
    /* open from here on (the unclean stop before, if any, is on the record): a process that ends
       without custos_vault_free, even during the rest of this open, leaves the marker set */
    if ((rc = open_marker(v, 1, NULL)))
        goto fail;
    v->marker_set = 1;
    sodium_mprotect_readonly(v->sec);
    if ((rc = custos_erasures_reapply(v, NULL, 1)) || (rc = custos_import_recover(v)) || (rc = custos_keys_finish(v)))
        goto fail;
    /* after a restore: the blind index, which backups do not carry, from the records left; after
       an upgrade that changed the normalisation or a schema edit that moved a searchable field,
       the index made before */
    if ((rc = blind_layout_check(v)) || (rc = custos_blind_rebuild(v, NULL)))
        goto fail;
    v->opened = 1;
    *out = v;
    return CUSTOS_OK;
fail:
    custos_vault_free(v);
    return rc;
}

/* ---- init ---------------------------------------------------------------------------------- */

static int dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int empty = 1;

    if (!d)
        return 0;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

enum custos_err custos_vault_init(const char *dir, const char *schema_text, size_t schema_len,
                                  const char *policy_text, size_t policy_len, const char *origin,
                                  char admin_secret[CUSTOS_SECRET_LEN + 1], char admin_token[CUSTOS_TOKEN_LEN + 1])
{
    char path[PATH_MAX], org[160];
    struct custos_schema *schema = NULL;
    struct custos_policy *policy = NULL;
    struct custos_store *store = NULL;
    struct custos_store_conn *c = NULL;
    struct custos_vault *v = NULL;
    struct custos_vault_opts o;
    struct custos_caller sys;
    uint8_t *k = NULL, rec[4 + CUSTOS_WRAPPED_BYTES], ad[64], vid[8];
    json_t *manifest = NULL;
    char *mtext = NULL;
    int64_t exp;
    enum custos_err rc;
    struct stat st;

    if (sodium_init() < 0)
        return custos_err_set(CUSTOS_ERR_CRYPTO, "libsodium failed to initialise");
    if (strlen(dir) > PATH_MAX - 64)
        return custos_err_set(CUSTOS_ERR_INVALID, "data directory path is too long");
    if (origin) {
        if (!valid_origin(origin))
            return custos_err_set(CUSTOS_ERR_INVALID, "origin must be 1-128 printable characters without "
                                  "spaces or '+'");
        /* The ledger key refuses to sign any message that begins with the origin's line (it
           could pass for a checkpoint), so an origin that is the first line of another message
           it signs would make every such message unsignable: every erasure receipt, after the
           erasure itself (regulator-verifier finding). */
        if (strcmp(origin, CUSTOS_RECEIPT_FIRST_LINE) == 0)
            return custos_err_set(CUSTOS_ERR_INVALID, "origin '%s' is the first line of erasure receipts: choose "
                                  "another", origin);
        snprintf(org, sizeof(org), "%s", origin);
    } else {
        char hex[17];

        randombytes_buf(vid, sizeof(vid));
        sodium_bin2hex(hex, sizeof(hex), vid, sizeof(vid));
        snprintf(org, sizeof(org), "custos.local/%s", hex);
    }
    /* everything the caller gave is checked before anything is created */
    if (schema_text && (rc = custos_schema_parse(schema_text, schema_len, &schema)))
        goto done;
    if ((rc = custos_policy_load(policy_text, policy_len, &policy)))
        goto done;
    if (schema && (rc = check_retention_roles(schema, policy)))
        goto done;
    path_join(path, sizeof(path), dir, "vault.json");
    if (access(path, F_OK) == 0) {
        rc = custos_err_set(CUSTOS_ERR_EXISTS, "%s already holds a vault: refusing to overwrite it", dir);
        goto done;
    }
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode) || !dir_is_empty(dir)) {
            rc = custos_err_set(CUSTOS_ERR_EXISTS, "%s exists and is not an empty directory", dir);
            goto done;
        }
        if (chmod(dir, 0700) != 0) {
            rc = custos_err_set(CUSTOS_ERR_IO, "chmod %s: %s", dir, strerror(errno));
            goto done;
        }
    } else if (mkdir(dir, 0700) != 0) {
        rc = custos_err_set(CUSTOS_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
        goto done;
    }
    path_join(path, sizeof(path), dir, "keys");
    if (mkdir(path, 0700) != 0) {
        rc = custos_err_set(CUSTOS_ERR_IO, "cannot create %s: %s", path, strerror(errno));
        goto done;
    }
    if (schema_text) {
        path_join(path, sizeof(path), dir, "schema.json");
        if ((rc = custos_file_replace(path, schema_text, schema_len, 0600)))
            goto done;
    }
    if (policy_text) {
        path_join(path, sizeof(path), dir, "policy.json");
        if ((rc = custos_file_replace(path, policy_text, policy_len, 0600)))
            goto done;
    }
    k = sodium_malloc(64);
    if (!k) {
        rc = CUSTOS_ERR_NOMEM;
        goto done;
    }
    randombytes_buf(k, 32);
    path_join(path, sizeof(path), dir, "keys/ledger.key");
    if ((rc = custos_keyfile_write(path, "ledger key", k)))
        goto done;
    randombytes_buf(k, 32); /* master key version 1 */
    path_join(path, sizeof(path), dir, "keys/master-1.key");
    if ((rc = custos_keyfile_write(path, "master key", k)))
        goto done;
    randombytes_buf(k + 32, 32); /* system root key */
    if ((rc = custos_store_sqlite.open(dir, 1, &store)) || (rc = custos_store_sqlite.acquire(store, &c)))
        goto done;
    put_be32(rec, 1);
    custos_wrap(rec + 4, k, k + 32, ad, custos_ad_system_key(ad, ROOT_AD_NAME, 1));
    if ((rc = custos_store_sqlite.begin(c, CUSTOS_PLANE_CONTROL)) ||
        (rc = custos_store_sqlite.meta_put(c, "master_kv", rec, 4)) ||
        (rc = custos_store_sqlite.meta_put(c, "system_key", rec, sizeof(rec))) ||
        (rc = custos_store_sqlite.commit(c, CUSTOS_PLANE_CONTROL)))
        goto done;
    custos_store_sqlite.release(store, c);
    c = NULL;
    custos_store_sqlite.close(store);
    store = NULL;
    manifest = json_pack("{s:i, s:s, s:s}", "format", 1, "origin", org, "store", "sqlite");
    mtext = manifest ? json_dumps(manifest, JSON_INDENT(2)) : NULL;
    if (!mtext) {
        rc = CUSTOS_ERR_NOMEM;
        goto done;
    }
    path_join(path, sizeof(path), dir, "vault.json");
    if ((rc = custos_file_replace(path, mtext, strlen(mtext), 0600)))
        goto done;
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    if ((rc = custos_vault_open(&o, &v)))
        goto done;
    if ((rc = custos_principal_create_local(v, "admin", "staff", "admin", admin_secret)))
        goto done;
    custos_caller_system(&sys);
    rc = custos_token_issue_local(v, &sys, "admin", admin_token, &exp);
done:
    if (c)
        custos_store_sqlite.release(store, c);
    if (store)
        custos_store_sqlite.close(store);
    custos_vault_free(v);
    if (k)
        sodium_free(k);
    custos_schema_free(schema);
    custos_policy_free(policy);
    json_decref(manifest);
    free(mtext);
    sodium_memzero(rec, sizeof(rec));
    return rc;
}

#define FLUSH_SOON_MS 5000u /* the log flush after an erasure or a re-key (why not sooner: below) */

void custos_vault_tick(struct custos_vault *v)
{
    struct custos_store_conn *c = NULL;
    uint64_t now = custos_now(v);
    int soon, ok = 0;

    /* Shred retention keys whose period ended (checked every 10 s). */
    if (now - v->last_expire_ms >= 10000) {
        uint64_t k, n;

        custos_retention_expire(v, &k, &n);
        /* an erasure that answered 503 after its point of no return: finish it now, not at the
           next start (its record and blind entries are still in the data plane) */
        custos_erasures_finish(v);
        v->last_expire_ms = now;
        /* token rows are kept a week past expiry (the ledger keeps their story for good) */
        if (v->ops->acquire(v->store, &c) == CUSTOS_OK) {
            v->ops->token_purge(c, (int64_t)now - 7LL * 86400000, &n);
            v->ops->release(v->store, c);
        }
    }
    /* Flush the databases' logs 5 s after an erasure or a re-key (old pages and log frames hold
       the destroyed key until then: a crash in between leaves it in the files until the next
       open), and at least once a minute otherwise.  Sooner costs every write: a truncated log
       grows again frame by frame, and each commit that grows it syncs the file's size as well
       (DELETE and POST p50 +0.4 ms with a flush at every tick under back-to-back erasures, +0.1
       ms with one a second).  A flush that readers keep from completing is tried again after 1,
       2, 4 ... 30 s: each try holds new writers back for up to the store's short flush wait, so
       a long reader (a backup) must not make every tick a stall (red-team finding: with the 10 s
       lock wait and a retry at every tick, each write waited 10 s while a backup ran). */
    if (now - v->last_compact_ms < (atomic_load(&v->compact_soon) ? FLUSH_SOON_MS : 60000u) ||
        now < v->compact_retry_at)
        return;
    custos_erasure_mark(v);
    /* Taken before the flush: an erasure committed while it runs (its old pages perhaps not
       covered) sets it again, and the next tick flushes once more. */
    soon = atomic_exchange(&v->compact_soon, 0);
    if (v->ops->acquire(v->store, &c) == CUSTOS_OK) {
        ok = v->ops->compact_logs(c) == CUSTOS_OK;
        v->ops->release(v->store, c);
    }
    if (ok) {
        v->last_compact_ms = now;
        v->compact_fails = 0;
        v->compact_retry_at = 0;
    } else {
        custos_err_clear();
        if (soon)
            atomic_store(&v->compact_soon, 1); /* until a flush completes, the request stands */
        v->compact_retry_at = now + (v->compact_fails < 5 ? 1000u << v->compact_fails : 30000u);
        v->compact_fails++;
    }
}

void custos_vault_thread_serving(struct custos_vault *v, int on)
{
    if (v->ops->snapshot_reads)
        v->ops->snapshot_reads(v->store, on);
}

void custos_vault_turn(struct custos_vault *v)
{
    if (v->ops->snapshot_turn)
        v->ops->snapshot_turn(v->store);
}

void custos_vault_on_durable(struct custos_vault *v, void (*fn)(void *ctx, uint64_t durable, int failed), void *ctx)
{
    custos_ledger_on_durable(v->ledger, fn, ctx);
}

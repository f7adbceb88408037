/*
 * auth.c - principals, tokens, authentication, velocity limits.
 *
 * Tokens are 256 random bits ("cus_" + base64url), never signed: a token is
 * valid only if its keyed hash is registered in the control plane, with a
 * row MAC that checks, not expired, not revoked, and its principal (or for
 * customer tokens, the principal that minted it) enabled.  Nothing exists
 * from which a valid token could be computed.  Principal secrets are 256
 * random bits ("cps_" + base64url) stored as a keyed hash.
 *
 * Every authentication failure and every issue/revoke/create/disable is an
 * audit event.  Details never include a token or secret.
 *
 * Must never: compare a secret or hash with memcmp (sodium_memcmp only),
 * log or return a stored hash, accept a token whose row MAC fails.
 */
#include "core/vault_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

#include "custos/banned.h"

#define LIFETIME_STAFF_MS (15 * 60 * 1000)
#define LIFETIME_SERVICE_MS (60 * 60 * 1000)
#define LIFETIME_CUSTOMER_MS (30 * 60 * 1000)

/* ---- credentials --------------------------------------------------------------------------- */

void custos_credential_format(char out[48], const char *prefix, const uint8_t raw[32])
{
    memcpy(out, prefix, 4);
    sodium_bin2base64(out + 4, 44, raw, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* On failure raw is wiped: a value refused only for its last bits (base64url's 2 spare bits set)
   has been decoded into it in full by then, and callers keep raw on the stack. */
enum custos_err custos_credential_parse(const char *text, const char *prefix, uint8_t raw[32])
{
    size_t binlen = 0;
    const char *end = NULL;

    size_t i;

    sodium_memzero(raw, 32);
    if (!text || strlen(text) != 47 || memcmp(text, prefix, 4) != 0)
        return CUSTOS_ERR_INVALID;
    /* one spelling per credential: libsodium 1.0.18 would also take bytes >= 0x80 as '_' */
    for (i = 4; i < 47; i++) {
        unsigned char c = (unsigned char)text[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return CUSTOS_ERR_INVALID;
    }
    if (sodium_base642bin(raw, 32, text + 4, 43, NULL, &binlen, &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        binlen != 32 || *end != '\0') {
        sodium_memzero(raw, 32);
        return CUSTOS_ERR_INVALID;
    }
    return CUSTOS_OK;
}

void custos_token_hash(const struct custos_vault *v, uint8_t out[32], const uint8_t raw[32])
{
    crypto_generichash(out, 32, raw, 32, v->sec->token_key, 32);
}

static void secret_hash(const struct custos_vault *v, uint8_t out[32], const char *id, const uint8_t raw[32])
{
    crypto_generichash_state st;

    crypto_generichash_init(&st, v->sec->secret_key, 32, 32);
    crypto_generichash_update(&st, (const uint8_t *)id, strlen(id) + 1);
    crypto_generichash_update(&st, raw, 32);
    crypto_generichash_final(&st, out, 32);
}

static void mac_add_str(crypto_generichash_state *st, const char *s)
{
    crypto_generichash_update(st, (const uint8_t *)s, strlen(s) + 1);
}

static void mac_add_i64(crypto_generichash_state *st, int64_t x)
{
    uint8_t b[8];
    int i;

    for (i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)x >> (56 - 8 * i));
    crypto_generichash_update(st, b, 8);
}

/* A principal row's MAC.  Version 2 also covers the secret's expiry; version 1 (rows written before
   it) did not, and such a row's expiry reads 0 (never). */
static void principal_mac_version(const struct custos_vault *v, const struct custos_principal_row *p, int version,
                                  uint8_t out[32])
{
    crypto_generichash_state st;

    crypto_generichash_init(&st, v->sec->mac_key, 32, 32);
    mac_add_str(&st, version == 2 ? "principal/v2" : "principal/v1");
    mac_add_str(&st, p->id);
    mac_add_str(&st, p->kind);
    mac_add_str(&st, p->roles);
    crypto_generichash_update(&st, p->secret_hash, 32);
    mac_add_i64(&st, p->created);
    mac_add_i64(&st, p->disabled);
    if (version == 2)
        mac_add_i64(&st, p->secret_expires);
    crypto_generichash_final(&st, out, 32);
}

/* Sign a principal row (always version 2). */
static void principal_mac(const struct custos_vault *v, const struct custos_principal_row *p, uint8_t out[32])
{
    principal_mac_version(v, p, 2, out);
}

static int mac_ok(const uint8_t a[32], const uint8_t b[32]);

/* A stored principal row is intact: its version 2 MAC, or a version 1 MAC on a row without an
   expiry (one written before version 2).  Writing 0 into a version 2 row's expiry does not make
   it a version 1 row: its MAC was not computed as one. */
static int principal_row_ok(const struct custos_vault *v, const struct custos_principal_row *p)
{
    uint8_t mac[32];
    int ok;

    principal_mac_version(v, p, 2, mac);
    ok = mac_ok(mac, p->mac);
    if (!ok && p->secret_expires == 0) {
        principal_mac_version(v, p, 1, mac);
        ok = mac_ok(mac, p->mac);
    }
    sodium_memzero(mac, sizeof(mac));
    return ok;
}

/* When a secret set now for ttl_days expires (ms); never 0 (never) nor past INT64_MAX, whatever an
   injected clock says. */
static int64_t secret_expiry(const struct custos_vault *v, unsigned ttl_days)
{
    uint64_t now = custos_now(v), ttl = (uint64_t)ttl_days * 86400000u;

    if (now > (uint64_t)INT64_MAX - ttl)
        return INT64_MAX;
    return (int64_t)(now + ttl) > 0 ? (int64_t)(now + ttl) : 1;
}

/* When a principal's secret expires: its row's expiry, or for a row from before secret expiry
   (0) the vault's legacy_secret_expires. */
static int64_t secret_expires_at(const struct custos_vault *v, const struct custos_principal_row *p)
{
    return p->secret_expires ? p->secret_expires : v->legacy_secret_expires;
}

static int secret_expired(const struct custos_vault *v, const struct custos_principal_row *p)
{
    return (int64_t)custos_now(v) >= secret_expires_at(v, p);
}

/* A token row's MAC.  Version 2 also covers the revoked state (0, or when) and the token a customer
   token was minted with (whose revocation revokes it), so neither can be changed in the database
   file; version 1 (rows written before it) covered neither. */
static void token_mac_version(const struct custos_vault *v, const struct custos_token_row *t, int version,
                              uint8_t out[32])
{
    static const uint8_t zero[16];
    crypto_generichash_state st;

    crypto_generichash_init(&st, v->sec->mac_key, 32, 32);
    mac_add_str(&st, version == 2 ? "token/v2" : "token/v1");
    crypto_generichash_update(&st, t->hash, 32);
    mac_add_str(&st, t->principal);
    mac_add_str(&st, t->kind);
    crypto_generichash_update(&st, t->has_scope ? t->scope : zero, 16);
    mac_add_i64(&st, t->has_scope);
    mac_add_i64(&st, t->issued);
    mac_add_i64(&st, t->expires);
    mac_add_str(&st, t->issued_by);
    if (version == 2) {
        static const uint8_t none[32];

        mac_add_i64(&st, t->revoked);
        crypto_generichash_update(&st, t->has_minted_with ? t->minted_with : none, 32);
        mac_add_i64(&st, t->has_minted_with);
    }
    crypto_generichash_final(&st, out, 32);
}

static void token_mac(const struct custos_vault *v, const struct custos_token_row *t, uint8_t out[32])
{
    token_mac_version(v, t, 2, out);
}

static int mac_ok(const uint8_t a[32], const uint8_t b[32])
{
    return sodium_memcmp(a, b, 32) == 0;
}

/* A stored token row is intact: its version 2 MAC, or a version 1 MAC (a row written before
   version 2, by a version that also revoked rows without covering that in the MAC).  Version 1
   proves nothing about the revoked state, so such a row counts as revoked when it says so and
   as live otherwise (a token issued before version 2 lives at most an hour); revoking it here
   signs it anew with version 2. */
static int token_row_ok(const struct custos_vault *v, const struct custos_token_row *t)
{
    uint8_t mac[32];
    int ok;

    token_mac_version(v, t, 2, mac);
    ok = mac_ok(mac, t->mac);
    if (!ok) {
        token_mac_version(v, t, 1, mac);
        ok = mac_ok(mac, t->mac);
    }
    sodium_memzero(mac, sizeof(mac));
    return ok;
}

void custos_token_sign(void *vault, struct custos_token_row *t, int64_t when)
{
    /* A row that fails its MAC was changed outside the vault: revoked, but its MAC kept as found,
       as for a disabled principal.  Signing it anew would launder the change into a valid row and
       wipe the evidence (its reason would read revoked_token instead of token_integrity). */
    int ok = token_row_ok(vault, t);

    t->revoked = when;
    if (ok)
        token_mac(vault, t, t->mac);
}

static void token_id_hex(char out[17], const uint8_t hash[32])
{
    sodium_bin2hex(out, 17, hash, 8);
}

/* ---- roles and velocity -------------------------------------------------------------------- */

uint32_t custos_roles_mask(const struct custos_vault *v, const char *roles)
{
    uint32_t mask = 0;
    const char *p = roles;

    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char name[CUSTOS_ROLE_NAME_MAX + 1];
        int r;

        if (n && n < sizeof(name)) {
            memcpy(name, p, n);
            name[n] = '\0';
            r = custos_policy_role(v->policy, name);
            if (r >= 0)
                mask |= 1u << r;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return mask;
}

int custos_caller_may(const struct custos_vault *v, const struct custos_caller *c, uint32_t op)
{
    return c->system || custos_policy_allows(v->policy, c->roles, op);
}

#define RATE_SLOTS 4096
#define RATE_PROBE 16

struct custos_rate {
    pthread_mutex_t mu;
    struct {
        char who[CUSTOS_PRINCIPAL_ID_MAX + 1];
        uint64_t minute;
        uint32_t count, prev; /* reads this minute and in the one before */
    } slot[RATE_SLOTS];
};

void custos_rate_free(struct custos_rate *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static struct custos_rate *rate_get(struct custos_vault *v)
{
    static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;

    pthread_mutex_lock(&init_mu);
    if (!v->rate) {
        v->rate = calloc(1, sizeof(*v->rate));
        if (v->rate)
            pthread_mutex_init(&v->rate->mu, NULL);
    }
    pthread_mutex_unlock(&init_mu);
    return v->rate;
}

enum custos_err custos_rate_check(struct custos_vault *v, const char *principal, uint32_t per_minute)
{
    struct custos_rate *r;
    uint64_t now, minute, h = 1469598103934665603ULL, weight;
    const char *p;
    size_t i, pick = RATE_SLOTS;
    enum custos_err rc = CUSTOS_OK;

    if (per_minute == 0)
        return CUSTOS_OK;
    if (!(r = rate_get(v)))
        return CUSTOS_ERR_NOMEM;
    now = custos_now(v);
    minute = now / 60000;
    for (p = principal; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    pthread_mutex_lock(&r->mu);
    for (i = 0; i < RATE_PROBE; i++) {
        size_t s = (size_t)((h + i) % RATE_SLOTS);

        if (strcmp(r->slot[s].who, principal) == 0) {
            pick = s;
            break;
        }
        /* reuse an empty or stale slot; the oldest window otherwise */
        if (pick == RATE_SLOTS || r->slot[s].minute < r->slot[pick].minute)
            pick = s;
    }
    if (strcmp(r->slot[pick].who, principal) != 0) {
        snprintf(r->slot[pick].who, sizeof(r->slot[pick].who), "%s", principal);
        r->slot[pick].minute = minute;
        r->slot[pick].count = r->slot[pick].prev = 0;
    } else if (r->slot[pick].minute != minute) {
        r->slot[pick].prev = r->slot[pick].minute + 1 == minute ? r->slot[pick].count : 0;
        r->slot[pick].minute = minute;
        r->slot[pick].count = 0;
    }
    /* sliding window: the previous minute counts for the part of it still inside the last 60 s */
    weight = 60000 - now % 60000;
    if ((uint64_t)r->slot[pick].prev * weight / 60000 + r->slot[pick].count >= per_minute)
        rc = custos_err_set(CUSTOS_ERR_RATELIMIT, "velocity limit of %u reads per minute reached", per_minute);
    else
        r->slot[pick].count++;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* ---- the authentication cache ------------------------------------------------------------- */

/*
 * A token that authenticated is remembered (by its keyed hash) with the caller it resolved to,
 * until it expires or anything is revoked or disabled: every revocation bumps the epoch, which
 * drops every entry at once.  One process owns the control plane (the data directory lock), so
 * every revocation passes through here.  (A multi-process store must bound entries by age.)
 */
#define TCACHE_SLOTS 4096

struct tcache_entry {
    uint8_t hash[32];
    uint64_t epoch; /* 0 = empty */
    int64_t expires;
    struct custos_caller caller;
};

struct custos_tcache {
    pthread_mutex_t mu;
    uint64_t epoch;
    struct tcache_entry e[TCACHE_SLOTS];
};

void custos_tcache_free(struct custos_tcache *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->mu);
    sodium_memzero(t, sizeof(*t));
    free(t);
}

static struct custos_tcache *tcache_get(struct custos_vault *v)
{
    static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;

    pthread_mutex_lock(&init_mu);
    if (!v->tcache) {
        v->tcache = calloc(1, sizeof(*v->tcache));
        if (v->tcache) {
            pthread_mutex_init(&v->tcache->mu, NULL);
            v->tcache->epoch = 1;
        }
    }
    pthread_mutex_unlock(&init_mu);
    return v->tcache;
}

void custos_auth_invalidate(struct custos_vault *v)
{
    struct custos_tcache *t = tcache_get(v);

    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->epoch++;
    pthread_mutex_unlock(&t->mu);
}

static size_t tcache_slot(const uint8_t hash[32])
{
    return ((size_t)hash[0] | (size_t)hash[1] << 8 | (size_t)hash[2] << 16) % TCACHE_SLOTS;
}

/* 1 and *out filled when the token is cached and still valid. */
static int tcache_lookup(struct custos_vault *v, const uint8_t hash[32], int64_t now, struct custos_caller *out)
{
    struct custos_tcache *t = tcache_get(v);
    struct tcache_entry *e;
    int hit = 0;

    if (!t)
        return 0;
    e = &t->e[tcache_slot(hash)];
    pthread_mutex_lock(&t->mu);
    if (e->epoch == t->epoch && e->expires > now && sodium_memcmp(e->hash, hash, 32) == 0) {
        *out = e->caller;
        hit = 1;
    }
    pthread_mutex_unlock(&t->mu);
    return hit;
}

static void tcache_store(struct custos_vault *v, const uint8_t hash[32], uint64_t epoch, int64_t expires,
                         const struct custos_caller *c)
{
    struct custos_tcache *t = tcache_get(v);
    struct tcache_entry *e;

    if (!t)
        return;
    e = &t->e[tcache_slot(hash)];
    pthread_mutex_lock(&t->mu);
    if (epoch == t->epoch) { /* nothing was revoked while we looked it up */
        memcpy(e->hash, hash, 32);
        e->epoch = epoch;
        e->expires = expires;
        e->caller = *c;
    }
    pthread_mutex_unlock(&t->mu);
}

static uint64_t tcache_epoch(struct custos_vault *v)
{
    struct custos_tcache *t = tcache_get(v);
    uint64_t e = 0;

    if (t) {
        pthread_mutex_lock(&t->mu);
        e = t->epoch;
        pthread_mutex_unlock(&t->mu);
    }
    return e;
}

/* ---- authentication ------------------------------------------------------------------------ */

static int auth_event(struct custos_vault *v, enum custos_result result, const char *reason, const char *token_id,
                      const char *source, const char *actor)
{
    struct custos_event e;

    custos_event_init(&e, "auth.fail", NULL);
    e.result = result;
    e.reason = reason;
    e.token_id = token_id;
    e.source = source;
    e.actor = actor;
    return custos_audit(v, &e, NULL) ? -1 : 0;
}

static enum custos_err auth_fail(struct custos_vault *v, const char *reason, const char *token_id, const char *source,
                                 const char *actor, const char *msg)
{
    if (auth_event(v, CUSTOS_RESULT_DENIED, reason, token_id, source, actor))
        return CUSTOS_ERR_UNAVAILABLE;
    return custos_err_set(CUSTOS_ERR_UNAUTH, "%s", msg);
}

/* A registered token refused (integrity, revoked, expired, disabled owner): the event names the
   token's holder as a request with it would, so a customer token's failure reads
   "customer:<subject>" with its minter beside it, never as the minting service's own failure. */
static enum custos_err token_fail(struct custos_vault *v, const char *reason, const char *token_id, const char *source,
                                  const struct custos_token_row *t, const char *msg)
{
    struct custos_caller who;
    struct custos_event e;
    char hex[CUSTOS_ID_HEX + 1];

    if (strcmp(t->kind, "customer") != 0 || !t->has_scope)
        return auth_fail(v, reason, token_id, source, t->principal, msg);
    memset(&who, 0, sizeof(who));
    custos_id_hex(hex, t->scope);
    snprintf(who.principal, sizeof(who.principal), "customer:%s", hex);
    snprintf(who.minter, sizeof(who.minter), "%s", t->principal);
    custos_strcopy(who.token_id, sizeof(who.token_id), token_id, strlen(token_id));
    who.has_token = 1;
    custos_strcopy(who.source, sizeof(who.source), source, strlen(source));
    custos_event_init(&e, "auth.fail", &who);
    e.result = CUSTOS_RESULT_DENIED;
    e.reason = reason;
    if (custos_audit(v, &e, NULL))
        return CUSTOS_ERR_UNAVAILABLE;
    return custos_err_set(CUSTOS_ERR_UNAUTH, "%s", msg);
}

/* The store failed while a token was being checked: the attempt is recorded all the same (result
   error), and the request fails with the store's error. */
static enum custos_err auth_error(struct custos_vault *v, enum custos_err rc, const char *token_id, const char *source)
{
    char saved[256];
    const char *msg = custos_err_msg(rc);

    custos_strcopy(saved, sizeof(saved), msg, strlen(msg));
    if (auth_event(v, CUSTOS_RESULT_ERROR, custos_err_api_code(rc), token_id, source, NULL))
        return CUSTOS_ERR_UNAVAILABLE;
    return custos_err_set(rc, "%s", saved);
}

static enum custos_kind kind_of(const char *s)
{
    if (strcmp(s, "staff") == 0)
        return CUSTOS_KIND_STAFF;
    if (strcmp(s, "customer") == 0)
        return CUSTOS_KIND_CUSTOMER;
    return CUSTOS_KIND_SERVICE;
}

static const char *kind_name(enum custos_kind k)
{
    switch (k) {
    case CUSTOS_KIND_STAFF: return "staff";
    case CUSTOS_KIND_CUSTOMER: return "customer";
    case CUSTOS_KIND_SYSTEM: return "system";
    default: return "service";
    }
}

enum custos_err custos_authenticate_none(struct custos_vault *v, const char *source, const char *msg,
                                         struct custos_caller *out)
{
    memset(out, 0, sizeof(*out));
    source = source ? source : "-";
    custos_strcopy(out->source, sizeof(out->source), source, strlen(source));
    return auth_fail(v, "missing_token", NULL, out->source, NULL, msg);
}

enum custos_err custos_authenticate(struct custos_vault *v, const char *token, const char *source,
                                    struct custos_caller *out)
{
    struct custos_store_conn *c = NULL;
    struct custos_token_row t;
    uint8_t raw[32], hash[32];
    char tid[17];
    enum custos_err rc;
    uint64_t epoch;
    int64_t now = (int64_t)custos_now(v);

    memset(out, 0, sizeof(*out));
    source = source ? source : "-";
    custos_strcopy(out->source, sizeof(out->source), source, strlen(source));
    if (!token || !*token)
        return auth_fail(v, "missing_token", NULL, out->source, NULL, "missing bearer token");
    if (custos_credential_parse(token, "cus_", raw) != CUSTOS_OK)
        return auth_fail(v, "malformed_token", NULL, out->source, NULL, "malformed bearer token");
    custos_token_hash(v, hash, raw);
    sodium_memzero(raw, sizeof(raw));
    if (tcache_lookup(v, hash, now, out)) {
        custos_strcopy(out->source, sizeof(out->source), source, strlen(source));
        return CUSTOS_OK;
    }
    epoch = tcache_epoch(v);
    token_id_hex(tid, hash);
    if ((rc = v->ops->acquire(v->store, &c)))
        return auth_error(v, rc, tid, out->source);
    rc = v->ops->token_get(c, hash, &t);
    v->ops->release(v->store, c);
    if (rc == CUSTOS_ERR_NOTFOUND)
        return auth_fail(v, "unknown_token", tid, out->source, NULL, "token was never issued");
    if (rc == CUSTOS_ERR_CORRUPT) /* a row (its own or its principal's) that does not even parse */
        return auth_fail(v, "token_integrity", tid, out->source, NULL, "token is not valid");
    if (rc)
        return auth_error(v, rc, tid, out->source);
    if (!token_row_ok(v, &t))
        return token_fail(v, "token_integrity", tid, out->source, &t, "token is not valid");
    if (t.revoked)
        return token_fail(v, "revoked_token", tid, out->source, &t, "token was revoked");
    if (t.expires <= now)
        return token_fail(v, "expired_token", tid, out->source, &t, "token has expired");
    if (!t.owner_found)
        return token_fail(v, "disabled_principal", tid, out->source, &t, "principal is disabled");
    if (!principal_row_ok(v, &t.owner))
        return token_fail(v, "principal_integrity", tid, out->source, &t, "principal is not valid");
    if (t.owner.disabled)
        return token_fail(v, "disabled_principal", tid, out->source, &t, "principal is disabled");
    snprintf(out->principal, sizeof(out->principal), "%s", t.principal);
    out->kind = kind_of(t.kind);
    if (out->kind == CUSTOS_KIND_CUSTOMER) {
        int r = custos_policy_role(v->policy, "customer");
        char hex[CUSTOS_ID_HEX + 1];

        custos_id_hex(hex, t.scope);
        snprintf(out->principal, sizeof(out->principal), "customer:%s", hex);
        snprintf(out->minter, sizeof(out->minter), "%s", t.principal);

        out->roles = r >= 0 ? 1u << r : 0;
        out->scoped = t.has_scope;
        memcpy(out->scope, t.scope, 16);
        if (!t.has_scope)
            return token_fail(v, "token_integrity", tid, out->source, &t, "token is not valid");
    } else
        out->roles = custos_roles_mask(v, t.owner.roles);
    memcpy(out->token_hash, hash, 32);
    memcpy(out->token_id, tid, sizeof(tid));
    out->has_token = 1;
    tcache_store(v, hash, epoch, t.expires, out);
    return CUSTOS_OK;
}

/*
 * Check, inside a control-plane write transaction, that the token a request authenticated with
 * is still live and its principal still enabled.  Authentication happens before the request's
 * transaction, so a revoke or disable can commit in between: two admins disabling each other at
 * the same moment both succeeded and left the vault without an admin, and an admin token being
 * disabled could still create a principal.  Control-plane writes are serialised (BEGIN
 * IMMEDIATE), so what this reads holds until the commit.  hash NULL (the local operator) passes.
 */
static enum custos_err token_live_tx(struct custos_vault *v, struct custos_store_conn *c, const uint8_t *hash)
{
    struct custos_token_row t;
    enum custos_err rc;

    if (!hash)
        return CUSTOS_OK;
    rc = v->ops->token_get(c, hash, &t);
    if (rc == CUSTOS_OK && !token_row_ok(v, &t))
        rc = custos_err_set(CUSTOS_ERR_UNAUTH, "token is not valid");
    else if (rc == CUSTOS_OK && t.revoked)
        rc = custos_err_set(CUSTOS_ERR_UNAUTH, "token was revoked");
    else if (rc == CUSTOS_OK && !t.owner_found)
        rc = custos_err_set(CUSTOS_ERR_UNAUTH, "principal is disabled");
    else if (rc == CUSTOS_OK) {
        if (!principal_row_ok(v, &t.owner))
            rc = custos_err_set(CUSTOS_ERR_UNAUTH, "principal is not valid");
        else if (t.owner.disabled)
            rc = custos_err_set(CUSTOS_ERR_UNAUTH, "principal is disabled");
    } else if (rc == CUSTOS_ERR_NOTFOUND || rc == CUSTOS_ERR_CORRUPT)
        rc = custos_err_set(CUSTOS_ERR_UNAUTH, "token is not valid");
    sodium_memzero(&t, sizeof(t));
    return rc;
}

/* Check, inside the mint's transaction, that the subject is not erased and that the token the
   minter called with is still live. */
static enum custos_err mint_allowed(struct custos_vault *v, struct custos_store_conn *c, const uint8_t scope[16],
                                    const uint8_t *minted_with)
{
    struct custos_erasure_row er;
    enum custos_err rc = v->ops->erasure_get(c, scope, &er);

    if (rc == CUSTOS_OK)
        return custos_err_set(CUSTOS_ERR_GONE, "subject was erased");
    if (rc != CUSTOS_ERR_NOTFOUND)
        return rc;
    return token_live_tx(v, c, minted_with);
}

/* Register a new token; tok receives its text. */
/* Check, inside the transaction that registers a token for a secret, that the principal still holds
   that secret (secret_hash, as verified), intact and enabled: a rotation that committed since (with
   revoke_tokens, after which no token from the old secret may live) makes it refused. */
static enum custos_err secret_still_held(struct custos_vault *v, struct custos_store_conn *c, const char *id,
                                         const uint8_t secret_hash[32])
{
    struct custos_principal_row p;
    enum custos_err rc = v->ops->principal_get(c, id, &p);
    int ok = rc == CUSTOS_OK;

    if (rc && rc != CUSTOS_ERR_NOTFOUND && rc != CUSTOS_ERR_CORRUPT)
        return rc;
    if (ok)
        ok = principal_row_ok(v, &p) && !p.disabled && sodium_memcmp(p.secret_hash, secret_hash, 32) == 0;
    if (ok && secret_expired(v, &p)) {
        sodium_memzero(&p, sizeof(p));
        return custos_err_set(CUSTOS_ERR_UNAUTH, "principal secret has expired: an admin rotates it "
                              "(POST /v1/principals/{id}/rotate)");
    }
    sodium_memzero(&p, sizeof(p));
    return ok ? CUSTOS_OK : custos_err_set(CUSTOS_ERR_UNAUTH, "invalid principal or secret");
}

/* Register a new token.  A customer token (scope) is checked against its subject's tombstone and
   its minter's token, one exchanged for a secret (secret_hash) against the principal's row, both
   in the registering transaction. */
static enum custos_err token_register(struct custos_vault *v, const char *principal, enum custos_kind kind,
                                      const uint8_t *scope, const uint8_t *minted_with, const uint8_t *secret_hash,
                                      const char *issued_by, const char *source, char tok[CUSTOS_TOKEN_LEN + 1],
                                      int64_t *expires, char tid[17])
{
    struct custos_store_conn *c = NULL;
    struct custos_token_row t;
    uint8_t raw[32];
    enum custos_err rc;
    int64_t now = (int64_t)custos_now(v);

    memset(&t, 0, sizeof(t));
    custos_random(raw, sizeof(raw));
    custos_token_hash(v, t.hash, raw);
    custos_credential_format(tok, "cus_", raw);
    sodium_memzero(raw, sizeof(raw));
    snprintf(t.principal, sizeof(t.principal), "%s", principal);
    snprintf(t.kind, sizeof(t.kind), "%s", kind_name(kind));
    if (scope) {
        memcpy(t.scope, scope, 16);
        t.has_scope = 1;
    }
    if (minted_with) {
        memcpy(t.minted_with, minted_with, sizeof(t.minted_with));
        t.has_minted_with = 1;
    }
    t.issued = now;
    t.expires = now + (kind == CUSTOS_KIND_STAFF      ? LIFETIME_STAFF_MS
                       : kind == CUSTOS_KIND_CUSTOMER ? LIFETIME_CUSTOMER_MS
                                                      : LIFETIME_SERVICE_MS);
    snprintf(t.issued_by, sizeof(t.issued_by), "%s", issued_by);
    snprintf(t.source, sizeof(t.source), "%s", source);
    token_mac(v, &t, t.mac);
    token_id_hex(tid, t.hash);
    if ((rc = v->ops->acquire(v->store, &c)))
        goto done;
    if (!scope && !secret_hash) {
        rc = v->ops->token_put(c, &t);
    } else if (!scope) {
        if (!(rc = v->ops->begin(c, CUSTOS_PLANE_CONTROL))) {
            if (!(rc = secret_still_held(v, c, principal, secret_hash)))
                rc = v->ops->token_put(c, &t);
            if (rc || (rc = v->ops->commit(c, CUSTOS_PLANE_CONTROL)))
                v->ops->rollback(c, CUSTOS_PLANE_CONTROL);
        }
    } else {
        /* A customer token, its subject's erasure and the revocation of the minter's token are
           serialised by the control plane: the tombstone and the minter's token are checked in
           the transaction that registers the new token, and an erasure (a revocation) revokes the
           subject's tokens (the tokens minted with it) in its own transaction.  So a mint either
           commits first and dies with the other, or sees it (410, 401). */
        if (!(rc = v->ops->begin(c, CUSTOS_PLANE_CONTROL))) {
            if (!(rc = mint_allowed(v, c, scope, minted_with)))
                rc = v->ops->token_put(c, &t);
            if (rc || (rc = v->ops->commit(c, CUSTOS_PLANE_CONTROL)))
                v->ops->rollback(c, CUSTOS_PLANE_CONTROL);
        }
    }
    v->ops->release(v->store, c);
    *expires = t.expires;
done:
    if (rc)
        sodium_memzero(tok, CUSTOS_TOKEN_LEN + 1);
    return rc;
}

static json_t *token_json(const char *tok, int64_t expires)
{
    char when[32];

    custos_time_format(when, expires);
    return json_pack("{s:s, s:s}", "token", tok, "expires_at", when);
}

/* ---- request bodies: parsing and validation only, no store, no audit ----------------------- */

enum custos_err custos_token_issue_parse(const char *body, size_t len, json_t **j, const char **id,
                                         const char **secret)
{
    static const char *const keys[] = {"principal", "secret", NULL};
    enum custos_err rc;

    *j = NULL;
    *id = *secret = NULL;
    if ((rc = custos_json_parse(body, len, CUSTOS_BODY_MAX, 0, j)) || (rc = custos_json_only(*j, keys, "request")) ||
        (rc = custos_json_str(*j, "principal", 1, CUSTOS_PRINCIPAL_ID_MAX, id)) ||
        (rc = custos_json_str(*j, "secret", 1, 64, secret)))
        return rc;
    if (!custos_valid_name(*id, CUSTOS_PRINCIPAL_ID_MAX))
        return custos_err_set(CUSTOS_ERR_INVALID, "malformed principal id");
    return CUSTOS_OK;
}

enum custos_err custos_token_revoke_parse(const char *body, size_t len, uint8_t raw[32])
{
    static const char *const keys[] = {"token", NULL};
    json_t *j = NULL;
    const char *tok = NULL;
    enum custos_err rc;

    if (!(rc = custos_json_parse(body, len, CUSTOS_BODY_MAX, 0, &j)) && !(rc = custos_json_only(j, keys, "request")) &&
        !(rc = custos_json_str(j, "token", 1, 64, &tok)) && custos_credential_parse(tok, "cus_", raw) != CUSTOS_OK)
        rc = custos_err_set(CUSTOS_ERR_INVALID, "malformed token");
    if (rc)
        sodium_memzero(raw, 32);
    json_decref(j);
    return rc;
}

/* The optional "secret_ttl_days" member: an integer 1..CUSTOS_SECRET_TTL_DAYS_MAX into *days (left
   as it is when absent). */
static enum custos_err ttl_days_get(json_t *j, unsigned *days)
{
    json_t *t = json_object_get(j, "secret_ttl_days");

    if (!t)
        return CUSTOS_OK;
    if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > CUSTOS_SECRET_TTL_DAYS_MAX)
        return custos_err_set(CUSTOS_ERR_INVALID, "secret_ttl_days must be an integer from 1 to %d",
                              CUSTOS_SECRET_TTL_DAYS_MAX);
    *days = (unsigned)json_integer_value(t);
    return CUSTOS_OK;
}

/* Validate kind and roles; builds the comma-separated role list. */
static enum custos_err check_kind_roles(const struct custos_policy *pol, const char *kind, json_t *roles, char *out,
                                        size_t cap)
{
    size_t i, o = 0;

    if (strcmp(kind, "customer") == 0)
        return custos_err_set(CUSTOS_ERR_INVALID, "customers act through tokens minted for their own subject "
                              "(POST /v1/subjects/{id}/token), not through principals");
    if (strcmp(kind, "staff") != 0 && strcmp(kind, "service") != 0)
        return custos_err_set(CUSTOS_ERR_INVALID, "kind must be staff or service");
    if (!json_is_array(roles) || json_array_size(roles) == 0 || json_array_size(roles) > 8)
        return custos_err_set(CUSTOS_ERR_INVALID, "roles must be an array of 1 to 8 role names");
    out[0] = '\0';
    for (i = 0; i < json_array_size(roles); i++) {
        json_t *r = json_array_get(roles, i);
        const char *name = json_is_string(r) ? json_string_value(r) : NULL;
        int n;

        if (!name || custos_policy_role(pol, name) < 0)
            return custos_err_set(CUSTOS_ERR_INVALID, "roles[%zu] is not a role of the policy", i);
        if (strcmp(name, "customer") == 0)
            return custos_err_set(CUSTOS_ERR_INVALID, "the customer role is only for minted customer tokens");
        n = snprintf(out + o, cap - o, "%s%s", o ? "," : "", name);
        if (n < 0 || (size_t)n >= cap - o)
            return custos_err_set(CUSTOS_ERR_INVALID, "roles list too long");
        o += (size_t)n;
    }
    return CUSTOS_OK;
}

enum custos_err custos_principal_create_parse(const struct custos_policy *pol, const char *body, size_t len,
                                              json_t **j, const char **id, const char **kind, char *roles,
                                              size_t cap, unsigned *ttl_days)
{
    static const char *const keys[] = {"id", "kind", "roles", "secret_ttl_days", NULL};
    const char *pid = NULL;
    enum custos_err rc;

    *j = NULL;
    *id = *kind = NULL;
    *ttl_days = CUSTOS_SECRET_TTL_DAYS;
    if ((rc = custos_json_parse(body, len, CUSTOS_BODY_MAX, 0, j)) || (rc = custos_json_only(*j, keys, "principal")) ||
        (rc = custos_json_str(*j, "id", 1, CUSTOS_PRINCIPAL_ID_MAX, &pid)) ||
        (rc = custos_json_str(*j, "kind", 1, 16, kind)))
        return rc;
    if (!custos_valid_name(pid, CUSTOS_PRINCIPAL_ID_MAX))
        return custos_err_set(CUSTOS_ERR_INVALID, "principal id must match [a-z][a-z0-9._-]{0,63}");
    *id = pid;
    if ((rc = check_kind_roles(pol, *kind, json_object_get(*j, "roles"), roles, cap)))
        return rc;
    return ttl_days_get(*j, ttl_days);
}

/* ---- token issue and revocation ------------------------------------------------------------ */

enum custos_err custos_token_issue(struct custos_vault *v, const char *body, size_t len, const char *source,
                                   json_t **out)
{
    struct custos_store_conn *c = NULL;
    struct custos_principal_row p;
    struct custos_caller who;
    struct custos_event e;
    json_t *j = NULL;
    const char *id = NULL, *secret = NULL;
    char tok[CUSTOS_TOKEN_LEN + 1];
    uint8_t raw[32], h[32];
    int64_t expires = 0;
    enum custos_err rc;
    int good;

    *out = NULL;
    custos_event_init(&e, "token.issue", NULL);
    e.source = source;
    if ((rc = custos_token_issue_parse(body, len, &j, &id, &secret)))
        goto done;
    /* the id is the caller's text until it names a principal: anybody could otherwise write
       words into the ledger, which is never erased, through this public route (a name and a
       phone number fit [a-z0-9._-]); the entry says who it was not, and from where */
    e.actor = "-";
    if ((rc = v->ops->acquire(v->store, &c)))
        goto done;
    rc = v->ops->principal_get(c, id, &p);
    v->ops->release(v->store, c);
    if (rc == CUSTOS_OK || rc == CUSTOS_ERR_CORRUPT)
        e.actor = id;
    good = rc == CUSTOS_OK;
    /* a row that does not parse answers as a wrong secret does (it is refused either way) */
    if (rc && rc != CUSTOS_ERR_NOTFOUND && rc != CUSTOS_ERR_CORRUPT)
        goto done;
    /* Same work and same answer whether the principal exists or the secret is wrong. */
    if (custos_credential_parse(secret, "cps_", raw) != CUSTOS_OK)
        good = 0;
    secret_hash(v, h, id, raw);
    sodium_memzero(raw, sizeof(raw));
    good = good && sodium_memcmp(h, p.secret_hash, 32) == 0;
    if (good)
        good = principal_row_ok(v, &p);
    if (!good) {
        e.reason = "bad_credentials";
        rc = custos_err_set(CUSTOS_ERR_UNAUTH, "invalid principal or secret");
        goto done;
    }
    if (p.disabled) {
        e.reason = "disabled_principal";
        rc = custos_err_set(CUSTOS_ERR_UNAUTH, "principal is disabled");
        goto done;
    }
    if (secret_expired(v, &p)) {
        e.reason = "expired_secret";
        rc = custos_err_set(CUSTOS_ERR_UNAUTH, "principal secret has expired: an admin rotates it "
                            "(POST /v1/principals/{id}/rotate)");
        goto done;
    }
    memset(&who, 0, sizeof(who));
    snprintf(who.principal, sizeof(who.principal), "%s", id);
    snprintf(who.source, sizeof(who.source), "%s", source);
    if ((rc = token_register(v, id, kind_of(p.kind), NULL, NULL, h, id, source, tok, &expires, who.token_id))) {
        if (rc == CUSTOS_ERR_UNAUTH) /* rotated, disabled or expired since the check above */
            e.reason = secret_expired(v, &p) ? "expired_secret" : "bad_credentials";
        goto done;
    }
    who.has_token = 1;
    e.who = &who;
    if (!(*out = token_json(tok, expires)))
        rc = CUSTOS_ERR_NOMEM;
done:
    rc = custos_audit_outcome(v, &e, rc);
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    sodium_memzero(tok, sizeof(tok));
    json_decref(j);
    return rc;
}

enum custos_err custos_token_issue_local(struct custos_vault *v, const struct custos_caller *c, const char *principal,
                                         char token[CUSTOS_TOKEN_LEN + 1], int64_t *expires_ms)
{
    struct custos_store_conn *conn = NULL;
    struct custos_principal_row p;
    struct custos_event e;
    enum custos_err rc;
    char tid[17];

    custos_event_init(&e, "token.issue", c);
    if (!c->system) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "only the local operator may issue tokens without a secret");
        goto done;
    }
    /* checked here, not only by the CLI: an id that names no principal goes into no event */
    if (!principal || !custos_valid_name(principal, CUSTOS_PRINCIPAL_ID_MAX)) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "malformed principal id");
        goto done;
    }
    e.target = principal;
    if ((rc = v->ops->acquire(v->store, &conn)))
        goto done;
    rc = v->ops->principal_get(conn, principal, &p);
    v->ops->release(v->store, conn);
    if (rc == CUSTOS_ERR_NOTFOUND)
        rc = custos_err_set(CUSTOS_ERR_NOTFOUND, "no principal '%.64s'", principal);
    if (rc)
        goto done;
    /* a row changed outside the vault (its MAC fails) is refused here as on every other path:
       a token for it would be refused anyway, and the ledger must not say one was issued */
    if (!principal_row_ok(v, &p)) {
        e.reason = "principal_integrity";
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "principal '%s' is not valid (its row was changed outside custos)",
                            principal);
        goto done;
    }
    if (p.disabled) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "principal '%s' is disabled", principal);
        goto done;
    }
    rc = token_register(v, principal, kind_of(p.kind), NULL, NULL, NULL, c->principal, c->source, token, expires_ms,
                        tid);
done:
    return custos_audit_outcome(v, &e, rc);
}

enum custos_err custos_token_revoke(struct custos_vault *v, const struct custos_caller *c, const char *body,
                                    size_t len)
{
    struct custos_store_conn *conn = NULL;
    struct custos_token_row t;
    struct custos_event e;
    uint8_t raw[32], hash[32];
    char tid[17] = "";
    uint64_t n = 0;
    enum custos_err rc;

    custos_event_init(&e, "token.revoke", c);
    if ((rc = custos_token_revoke_parse(body, len, raw)))
        goto done;
    custos_token_hash(v, hash, raw);
    sodium_memzero(raw, sizeof(raw));
    token_id_hex(tid, hash);
    e.target = tid;
    if (!(c->has_token && sodium_memcmp(hash, c->token_hash, 32) == 0) &&
        !custos_caller_may(v, c, CUSTOS_OP_TOKEN_REVOKE)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "only the token itself or an admin may revoke a token");
        goto done;
    }
    if ((rc = v->ops->acquire(v->store, &conn)))
        goto done;
    /* one transaction: all of it or none, serialised with mints (token_register), and with the
       caller's own token checked again in it (revoked, or its principal disabled, meanwhile: 401) */
    if (!(rc = v->ops->begin(conn, CUSTOS_PLANE_CONTROL))) {
        if (!(rc = token_live_tx(v, conn, c->has_token ? c->token_hash : NULL)))
            rc = v->ops->token_get(conn, hash, &t);
        if (rc == CUSTOS_ERR_NOTFOUND)
            rc = custos_err_set(CUSTOS_ERR_NOTFOUND, "unknown token");
        /* a row that does not parse (its own, or its principal's) is refused anyway, but the
           customer tokens minted with it are not: they are revoked all the same */
        if (rc == CUSTOS_ERR_CORRUPT)
            rc = CUSTOS_OK;
        if (!rc)
            rc = v->ops->token_revoke(conn, hash, (int64_t)custos_now(v), custos_token_sign, v, &n);
        if (rc || (rc = v->ops->commit(conn, CUSTOS_PLANE_CONTROL))) {
            v->ops->rollback(conn, CUSTOS_PLANE_CONTROL);
            n = 0;
        }
    }
    e.count = (int64_t)n; /* the token and the customer tokens minted with it */
    v->ops->release(v->store, conn);
    custos_auth_invalidate(v);
done:
    return custos_audit_outcome(v, &e, rc);
}

/* ---- principals ---------------------------------------------------------------------------- */

/* A secret's id in the ledger: 8 bytes (16 hex digits) of a keyed hash of its stored hash, enough to
   tell, when a rotation is replayed, whether a principal's row holds the secret it made. */
static void secret_id_hex(const struct custos_vault *v, char out[17], const uint8_t secret_hash[32])
{
    crypto_generichash_state st;
    uint8_t h[8];

    crypto_generichash_init(&st, v->sec->mac_key, 32, sizeof(h));
    mac_add_str(&st, "secret-id/v1");
    crypto_generichash_update(&st, secret_hash, 32);
    crypto_generichash_final(&st, h, sizeof(h));
    sodium_bin2hex(out, 17, h, sizeof(h));
}

/* The ledger target of an entry that made principal `id` a secret (principal.create,
   principal.rotate): "<id> secret <its id> for <N> days", N the lifetime chosen.  Returns out. */
static const char *secret_target(const struct custos_vault *v, char out[128], const char *id,
                                 const uint8_t secret_hash[32], unsigned ttl_days)
{
    char sid[17];

    secret_id_hex(v, sid, secret_hash);
    snprintf(out, 128, "%s secret %s for %u days", id, sid, ttl_days);
    return out;
}

/* Create principal `id` with a new secret (into secret; wiped on failure), if the caller's token
   (by_token; NULL for the operator) is still live in the transaction; on success e->target, in
   target, names the secret (secret_target). */
static enum custos_err principal_insert(struct custos_vault *v, struct custos_event *e, char target[128],
                                        const char *id, const char *kind, const char *roles, unsigned ttl_days,
                                        const char *by, const uint8_t *by_token, char secret[CUSTOS_SECRET_LEN + 1])
{
    struct custos_store_conn *c = NULL;
    struct custos_principal_row p;
    uint8_t raw[32];
    enum custos_err rc;

    memset(&p, 0, sizeof(p));
    snprintf(p.id, sizeof(p.id), "%s", id);
    snprintf(p.kind, sizeof(p.kind), "%s", kind);
    snprintf(p.roles, sizeof(p.roles), "%s", roles);
    snprintf(p.created_by, sizeof(p.created_by), "%s", by);
    p.created = (int64_t)custos_now(v);
    p.secret_expires = secret_expiry(v, ttl_days);
    custos_random(raw, sizeof(raw));
    custos_credential_format(secret, "cps_", raw);
    secret_hash(v, p.secret_hash, id, raw);
    sodium_memzero(raw, sizeof(raw));
    principal_mac(v, &p, p.mac);
    if ((rc = v->ops->acquire(v->store, &c)))
        return rc;
    if (!(rc = v->ops->begin(c, CUSTOS_PLANE_CONTROL))) {
        if ((rc = token_live_tx(v, c, by_token)) || (rc = v->ops->principal_put(c, &p)) ||
            (rc = v->ops->commit(c, CUSTOS_PLANE_CONTROL)))
            v->ops->rollback(c, CUSTOS_PLANE_CONTROL);
    }
    v->ops->release(v->store, c);
    if (rc == CUSTOS_ERR_EXISTS)
        rc = custos_err_set(CUSTOS_ERR_EXISTS, "principal '%s' already exists", id);
    if (rc)
        sodium_memzero(secret, CUSTOS_SECRET_LEN + 1);
    else
        e->target = secret_target(v, target, id, p.secret_hash, ttl_days);
    return rc;
}

enum custos_err custos_principal_create_local(struct custos_vault *v, const char *id, const char *kind,
                                              const char *roles, char secret[CUSTOS_SECRET_LEN + 1])
{
    struct custos_caller sys;
    struct custos_event e;
    char target[128];
    enum custos_err rc;

    custos_caller_system(&sys);
    custos_event_init(&e, "principal.create", &sys);
    e.target = id;
    rc = principal_insert(v, &e, target, id, kind, roles, CUSTOS_SECRET_TTL_DAYS, sys.principal, NULL, secret);
    return custos_audit_outcome(v, &e, rc);
}

enum custos_err custos_principal_create(struct custos_vault *v, const struct custos_caller *c, const char *body,
                                        size_t len, json_t **out)
{
    struct custos_event e;
    json_t *j = NULL;
    const char *id = NULL, *kind = NULL;
    char roles[256], secret[CUSTOS_SECRET_LEN + 1], target[128];
    unsigned ttl = CUSTOS_SECRET_TTL_DAYS;
    enum custos_err rc;

    *out = NULL;
    custos_event_init(&e, "principal.create", c);
    if (!custos_caller_may(v, c, CUSTOS_OP_PRINCIPAL_MANAGE)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "managing principals needs the admin role");
        goto done;
    }
    rc = custos_principal_create_parse(v->policy, body, len, &j, &id, &kind, roles, sizeof(roles), &ttl);
    e.target = id; /* set once the id is well-formed, also when kind or roles are refused */
    if (rc)
        goto done;
    if ((rc = principal_insert(v, &e, target, id, kind, roles, ttl, c->principal,
                               c->has_token ? c->token_hash : NULL, secret)))
        goto done;
    if (!(*out = json_pack("{s:s, s:s}", "id", id, "secret", secret)))
        rc = CUSTOS_ERR_NOMEM;
    sodium_memzero(secret, sizeof(secret));
done:
    rc = custos_audit_outcome(v, &e, rc);
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    json_decref(j);
    return rc;
}

/* Disable principal `id` (keeping an earlier disable time) and revoke every token it owns or minted,
   in one control-plane transaction, if the caller's token (by_token; NULL for the operator or a
   replay) is still live in it; *n gets the count of tokens revoked. */
static enum custos_err principal_disable_tx(struct custos_vault *v, struct custos_store_conn *conn, const char *id,
                                            const uint8_t *by_token, int64_t when, uint64_t *n)
{
    struct custos_principal_row p;
    uint8_t mac[32];
    int64_t disabled;
    enum custos_err rc;

    *n = 0;
    if ((rc = v->ops->begin(conn, CUSTOS_PLANE_CONTROL)))
        return rc;
    if ((rc = token_live_tx(v, conn, by_token))) {
        v->ops->rollback(conn, CUSTOS_PLANE_CONTROL);
        return rc;
    }
    rc = v->ops->principal_get(conn, id, &p); /* read in the transaction that writes it */
    if (rc == CUSTOS_OK) {
        disabled = p.disabled ? p.disabled : when;
        /* A row that fails its MAC was changed outside the vault: disable it, but keep its MAC as
           found.  Signing it anew would launder the change (new roles, a new secret hash) into a
           valid row; as it is, it stays refused and the damage stays visible. */
        if (principal_row_ok(v, &p)) {
            p.disabled = disabled;
            principal_mac(v, &p, mac);
        } else
            memcpy(mac, p.mac, sizeof(mac));
        rc = v->ops->principal_disable(conn, id, disabled, mac);
    } else if (rc == CUSTOS_ERR_CORRUPT)
        rc = CUSTOS_OK; /* a row that does not parse is refused everywhere: left as found */
    if (rc || (rc = v->ops->token_revoke_principal(conn, id, (int64_t)custos_now(v), custos_token_sign, v, n)) ||
        (rc = v->ops->commit(conn, CUSTOS_PLANE_CONTROL))) {
        v->ops->rollback(conn, CUSTOS_PLANE_CONTROL);
        *n = 0;
    }
    return rc;
}

enum custos_err custos_principal_disable_replay(struct custos_vault *v, struct custos_store_conn *conn,
                                                const char *id, int64_t when)
{
    struct custos_principal_row p;
    uint64_t n = 0;
    enum custos_err rc = v->ops->principal_get(conn, id, &p);

    if (rc == CUSTOS_ERR_NOTFOUND || (rc == CUSTOS_OK && p.disabled))
        return CUSTOS_OK; /* never created in this copy, or still disabled */
    if ((rc && rc != CUSTOS_ERR_CORRUPT) || (rc = principal_disable_tx(v, conn, id, NULL, when, &n)))
        return rc;
    custos_auth_invalidate(v);
    return CUSTOS_OK;
}

/* The checks every call on a named principal starts with: the caller may manage principals, and id
   is well-formed (set as the event's target once it is). */
static enum custos_err principal_call_ok(struct custos_vault *v, const struct custos_caller *c, const char *id,
                                         struct custos_event *e)
{
    if (!custos_caller_may(v, c, CUSTOS_OP_PRINCIPAL_MANAGE))
        return custos_err_set(CUSTOS_ERR_FORBIDDEN, "managing principals needs the admin role");
    if (!id || !custos_valid_name(id, CUSTOS_PRINCIPAL_ID_MAX))
        return custos_err_set(CUSTOS_ERR_INVALID, "malformed principal id");
    e->target = id;
    return CUSTOS_OK;
}

enum custos_err custos_principal_disable(struct custos_vault *v, const struct custos_caller *c, const char *id)
{
    struct custos_store_conn *conn = NULL;
    struct custos_event e;
    uint64_t n = 0;
    enum custos_err rc;

    custos_event_init(&e, "principal.disable", c);
    if ((rc = principal_call_ok(v, c, id, &e)))
        goto done;
    /* Not itself: with no other admin left, the vault would have none to manage principals or
       revoke tokens until an operator adds one with the CLI (red-team finding: one call, and a
       stolen admin token could make it).  Another admin, or the CLI (a system caller), can. */
    if (!c->system && strcmp(c->principal, id) == 0) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "a principal cannot disable itself: another admin can, or "
                            "custos principal disable");
        goto done;
    }
    if ((rc = v->ops->acquire(v->store, &conn)))
        goto done;
    rc = principal_disable_tx(v, conn, id, c->has_token ? c->token_hash : NULL, (int64_t)custos_now(v), &n);
    v->ops->release(v->store, conn);
    custos_auth_invalidate(v);
    if (rc == CUSTOS_ERR_NOTFOUND)
        rc = custos_err_set(CUSTOS_ERR_NOTFOUND, "no principal '%s'", id);
    e.count = (int64_t)n;
done:
    return custos_audit_outcome(v, &e, rc);
}

/* ---- secret rotation ------------------------------------------------------------------------ */

enum custos_err custos_principal_rotate_parse(const char *body, size_t len, int *revoke, unsigned *ttl_days)
{
    static const char *const keys[] = {"revoke_tokens", "secret_ttl_days", NULL};
    json_t *j = NULL, *r;
    enum custos_err rc;

    *revoke = 0;
    *ttl_days = CUSTOS_SECRET_TTL_DAYS;
    if (len == 0)
        return CUSTOS_OK; /* no body: the defaults */
    if (!(rc = custos_json_parse(body, len, CUSTOS_BODY_MAX, 0, &j)) && !(rc = custos_json_only(j, keys, "request"))) {
        r = json_object_get(j, "revoke_tokens");
        if (r && !json_is_boolean(r))
            rc = custos_err_set(CUSTOS_ERR_INVALID, "revoke_tokens must be true or false");
        else if (!(rc = ttl_days_get(j, ttl_days)))
            *revoke = json_is_true(r);
    }
    if (rc)
        *ttl_days = CUSTOS_SECRET_TTL_DAYS;
    json_decref(j);
    return rc;
}

/* Give principal `id` a new secret in one control-plane transaction that also checks the caller's
   token (by_token) and, with revoke, revokes every token it owns or minted; its ledger entry is
   durable before the commit (a crash in between leaves an entry whose secret the row does not
   hold: the next open withdraws the old secret, custos_principal_rotate_replay). */
static enum custos_err rotate_tx(struct custos_vault *v, struct custos_event *e, const char *id,
                                 const uint8_t *by_token, int revoke, unsigned ttl_days, json_t **out, char target[128],
                                 int *audited)
{
    struct custos_store_conn *conn = NULL;
    struct custos_principal_row p;
    uint8_t raw[32];
    char secret[CUSTOS_SECRET_LEN + 1], when[32];
    uint64_t n = 0;
    enum custos_err rc;

    if ((rc = v->ops->acquire(v->store, &conn)))
        return rc;
    if ((rc = v->ops->begin(conn, CUSTOS_PLANE_CONTROL))) {
        v->ops->release(v->store, conn);
        return rc;
    }
    if ((rc = token_live_tx(v, conn, by_token)))
        goto out;
    rc = v->ops->principal_get(conn, id, &p); /* read in the transaction that writes it */
    if (rc == CUSTOS_ERR_NOTFOUND) {
        rc = custos_err_set(CUSTOS_ERR_NOTFOUND, "no principal '%s'", id);
        goto out;
    }
    if (rc == CUSTOS_OK && !principal_row_ok(v, &p))
        rc = CUSTOS_ERR_CORRUPT;
    /* a row changed outside the vault is never signed anew: that would launder the change */
    if (rc == CUSTOS_ERR_CORRUPT) {
        e->reason = "principal_integrity";
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "principal '%s' is not valid (its row was changed outside custos)",
                            id);
    }
    if (!rc && p.disabled)
        rc = custos_err_set(CUSTOS_ERR_EXISTS, "principal '%s' is disabled: it gets no new secret", id);
    if (rc)
        goto out;
    custos_random(raw, sizeof(raw));
    custos_credential_format(secret, "cps_", raw);
    secret_hash(v, p.secret_hash, id, raw);
    sodium_memzero(raw, sizeof(raw));
    p.secret_expires = secret_expiry(v, ttl_days);
    principal_mac(v, &p, p.mac);
    e->target = secret_target(v, target, id, p.secret_hash, ttl_days);
    if ((rc = v->ops->principal_set_secret(conn, id, p.secret_hash, p.secret_expires, p.mac)))
        goto out;
    if (revoke &&
        (rc = v->ops->token_revoke_principal(conn, id, (int64_t)custos_now(v), custos_token_sign, v, &n)))
        goto out;
    e->count = revoke ? (int64_t)n : -1;
    /* the answer is built before the commit: a rotation that commits is one whose secret is
       handed out */
    custos_time_format(when, p.secret_expires);
    *out = json_pack("{s:s, s:s, s:s}", "id", id, "secret", secret, "secret_expires_at", when);
    if (*out && revoke && json_object_set_new(*out, "revoked_tokens", json_integer((json_int_t)n))) {
        json_decref(*out);
        *out = NULL;
    }
    if (!*out)
        rc = CUSTOS_ERR_NOMEM;
    else if (!(rc = custos_audit_in_txn(v, e, audited)))
        rc = v->ops->commit(conn, CUSTOS_PLANE_CONTROL);
out:
    if (rc)
        v->ops->rollback(conn, CUSTOS_PLANE_CONTROL);
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(&p, sizeof(p));
    v->ops->release(v->store, conn);
    if (revoke && !rc)
        custos_auth_invalidate(v); /* revoked tokens leave the cache */
    return rc;
}

enum custos_err custos_principal_rotate(struct custos_vault *v, const struct custos_caller *c, const char *id,
                                        const char *body, size_t len, json_t **out)
{
    struct custos_event e;
    char target[128];
    int revoke = 0, audited = 0;
    unsigned ttl = CUSTOS_SECRET_TTL_DAYS;
    enum custos_err rc;

    *out = NULL;
    custos_event_init(&e, "principal.rotate", c);
    if ((rc = principal_call_ok(v, c, id, &e)) || (rc = custos_principal_rotate_parse(body, len, &revoke, &ttl)))
        goto done;
    rc = rotate_tx(v, &e, id, c->has_token ? c->token_hash : NULL, revoke, ttl, out, target, &audited);
    if (!rc)
        return CUSTOS_OK; /* its event went in before the commit */
    /* an entry that went in before a failed commit named a secret that never was: the outcome
       entry below, with the same target, says the rotation failed (the replay at open reads it
       so) */
    (void)audited;
done:
    return custos_audit_finish(v, &e, rc, out);
}

enum custos_err custos_principal_rotate_replay(struct custos_vault *v, struct custos_store_conn *conn,
                                               const char *id, const char (*sids)[17], const int *revokes, size_t n,
                                               int *withdrawn)
{
    struct custos_principal_row p;
    uint8_t raw[32];
    char have[17];
    uint64_t count = 0;
    size_t k, j;
    int revoke = 0;
    enum custos_err rc;

    *withdrawn = 0;
    if (n == 0)
        return CUSTOS_OK;
    if ((rc = v->ops->begin(conn, CUSTOS_PLANE_CONTROL)))
        return rc;
    rc = v->ops->principal_get(conn, id, &p); /* read in the transaction that writes it */
    if (rc == CUSTOS_ERR_NOTFOUND || rc == CUSTOS_ERR_CORRUPT) {
        v->ops->rollback(conn, CUSTOS_PLANE_CONTROL);
        return CUSTOS_OK; /* never created in this copy, or refused everywhere as it is */
    }
    if (rc)
        goto out;
    if (!principal_row_ok(v, &p) || p.disabled)
        goto out; /* refused as found, or no secret at all */
    secret_id_hex(v, have, p.secret_hash);
    /* the last rotation whose secret the row holds (k = n: none): the ones after it are what the
       row missed */
    for (k = n; k-- > 0;)
        if (sodium_memcmp(have, sids[k], 16) == 0)
            break;
    if (k == n - 1)
        goto out; /* it holds the last one's secret */
    for (j = (k == (size_t)-1) ? 0 : k + 1; j < n; j++)
        revoke |= revokes[j];
    /* An older secret, perhaps the one a rotation replaced because it leaked: replaced by a hash
       nobody holds a secret for, expired as of now, so that the listing and serve's start say the
       principal has no secret to use.  It gets one again by a new rotation. */
    custos_random(raw, sizeof(raw));
    secret_hash(v, p.secret_hash, id, raw);
    sodium_memzero(raw, sizeof(raw));
    p.secret_expires = (int64_t)custos_now(v) > 0 ? (int64_t)custos_now(v) : 1;
    principal_mac(v, &p, p.mac);
    if ((rc = v->ops->principal_set_secret(conn, id, p.secret_hash, p.secret_expires, p.mac)) ||
        (revoke &&
         (rc = v->ops->token_revoke_principal(conn, id, (int64_t)custos_now(v), custos_token_sign, v, &count))))
        goto out;
    if (!(rc = v->ops->commit(conn, CUSTOS_PLANE_CONTROL))) {
        *withdrawn = 1;
        if (revoke)
            custos_auth_invalidate(v);
        sodium_memzero(&p, sizeof(p));
        return CUSTOS_OK;
    }
out:
    v->ops->rollback(conn, CUSTOS_PLANE_CONTROL);
    sodium_memzero(&p, sizeof(p));
    return rc;
}

/* ---- listing principals and their tokens ---------------------------------------------------- */

#define TOKEN_LIST_MAX 1000

/* Text from a row that may have been edited in the file (only the MAC'd columns of an intact row
   are known to be what custos wrote): every byte outside printable ASCII becomes '?', so it always
   goes into JSON. */
static const char *shown(const char *in, char *out, size_t cap)
{
    size_t i;

    for (i = 0; in[i] && i + 1 < cap; i++)
        out[i] = (in[i] > 0x20 && in[i] < 0x7f) ? in[i] : '?';
    out[i] = '\0';
    return out;
}

static int may_read_principals(const struct custos_vault *v, const struct custos_caller *c)
{
    return custos_caller_may(v, c, CUSTOS_OP_PRINCIPAL_READ) || custos_caller_may(v, c, CUSTOS_OP_PRINCIPAL_MANAGE);
}

struct plist {
    struct custos_vault *v;
    struct custos_store_conn *conn;
    json_t *arr;
    int64_t now;
    enum custos_err rc;
};

static int plist_row(void *ctx, const struct custos_principal_row *p, enum custos_err row)
{
    struct plist *l = ctx;
    char id[CUSTOS_PRINCIPAL_ID_MAX + 1], by[CUSTOS_PRINCIPAL_ID_MAX + 1], when[32], off[32], until[32];
    json_t *o = NULL, *roles;
    uint64_t live = 0;
    const char *r;
    int valid = 0;

    if (row == CUSTOS_OK)
        valid = principal_row_ok(l->v, p);
    shown(p->id, id, sizeof(id));
    if (!valid) /* nothing else in the row can be believed */
        o = json_pack("{s:s, s:b}", "id", id, "valid", 0);
    else if (!(l->rc = l->v->ops->token_count(l->conn, p->id, l->now, &live))) {
        custos_time_format(when, p->created);
        custos_time_format(off, p->disabled);
        custos_time_format(until, secret_expires_at(l->v, p));
        o = json_pack("{s:s, s:s, s:[], s:s, s:s, s:o, s:o, s:b, s:I}", "id", id, "kind", p->kind, "roles",
                      "created_at", when, "created_by", shown(p->created_by, by, sizeof(by)), "disabled_at",
                      p->disabled ? json_string(off) : json_null(), "secret_expires_at", json_string(until), "valid", 1,
                      "live_tokens",
                      (json_int_t)live);
        roles = json_object_get(o, "roles");
        for (r = p->roles; o && *r;) {
            size_t n = strcspn(r, ",");

            if (json_array_append_new(roles, json_stringn(r, n)))
                break;
            r += n + (r[n] == ',');
        }
    }
    if (!l->rc && (!o || json_array_append_new(l->arr, o)))
        l->rc = CUSTOS_ERR_NOMEM;
    return l->rc != CUSTOS_OK;
}

enum custos_err custos_principal_list(struct custos_vault *v, const struct custos_caller *c, json_t **out)
{
    struct custos_event e;
    struct plist l;
    enum custos_err rc;

    *out = NULL;
    custos_event_init(&e, "principal.list", c);
    if (!may_read_principals(v, c)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "listing principals needs principal.read (admin, auditor)");
        goto done;
    }
    memset(&l, 0, sizeof(l));
    l.v = v;
    l.now = (int64_t)custos_now(v);
    if (!(*out = json_pack("{s:[]}", "principals"))) {
        rc = CUSTOS_ERR_NOMEM;
        goto done;
    }
    l.arr = json_object_get(*out, "principals");
    if ((rc = v->ops->acquire(v->store, &l.conn)))
        goto done;
    rc = v->ops->principal_scan(l.conn, plist_row, &l);
    v->ops->release(v->store, l.conn);
    if (!rc)
        rc = l.rc;
    e.count = (int64_t)json_array_size(l.arr);
done:
    return custos_audit_finish(v, &e, rc, out);
}

struct expiring {
    struct custos_vault *v;
    int64_t before;
    void (*fn)(void *ctx, const char *id, int64_t expires);
    void *ctx;
};

static int expiring_row(void *ctx, const struct custos_principal_row *p, enum custos_err row)
{
    struct expiring *x = ctx;
    int64_t at;

    if (row != CUSTOS_OK || p->disabled || !principal_row_ok(x->v, p))
        return 0;
    at = secret_expires_at(x->v, p);
    if (at <= x->before)
        x->fn(x->ctx, p->id, at);
    return 0;
}

enum custos_err custos_principal_secrets_expiring(struct custos_vault *v, int64_t within_ms,
                                                  void (*fn)(void *ctx, const char *id, int64_t expires), void *ctx)
{
    struct custos_store_conn *conn = NULL;
    struct expiring x = {v, (int64_t)custos_now(v) + within_ms, fn, ctx};
    enum custos_err rc;

    if ((rc = v->ops->acquire(v->store, &conn)))
        return rc;
    rc = v->ops->principal_scan(conn, expiring_row, &x);
    v->ops->release(v->store, conn);
    return rc;
}

/* All zeros: what the store leaves in a blob column that did not read. */
static int unread(const uint8_t *b, size_t n)
{
    static const uint8_t zero[32];

    return n <= sizeof(zero) && memcmp(b, zero, n) == 0;
}

struct tlist {
    struct custos_vault *v;
    json_t *arr;
    int more; /* a row past TOKEN_LIST_MAX was there */
    enum custos_err rc;
};

static int tlist_row(void *ctx, const struct custos_token_row *t, enum custos_err row)
{
    struct tlist *l = ctx;
    char tid[17], kind[16], by[CUSTOS_PRINCIPAL_ID_MAX + 1], src[64], issued[32], expires[32], hex[33];
    json_t *o;

    if (json_array_size(l->arr) == TOKEN_LIST_MAX) {
        l->more = 1;
        return 1;
    }
    token_id_hex(tid, t->hash);
    custos_time_format(issued, t->issued);
    custos_time_format(expires, t->expires);
    /* a hash that did not read (wrong length) is all zeros: no id, rather than one that looks real */
    o = json_pack("{s:o, s:s, s:s, s:s, s:s, s:s, s:b}", "id", unread(t->hash, 32) ? json_null() : json_string(tid),
                  "kind", shown(t->kind, kind, sizeof(kind)), "issued_at", issued, "expires_at", expires, "issued_by",
                  shown(t->issued_by, by, sizeof(by)), "source", shown(t->source, src, sizeof(src)), "valid",
                  row == CUSTOS_OK && token_row_ok(l->v, t));
    if (o && t->has_scope && !unread(t->scope, 16)) {
        sodium_bin2hex(hex, sizeof(hex), t->scope, 16);
        json_object_set_new(o, "subject", json_string(hex));
    }
    if (o && t->has_minted_with && !unread(t->minted_with, 32)) {
        token_id_hex(tid, t->minted_with);
        json_object_set_new(o, "minted_with", json_string(tid));
    }
    if (!o || json_array_append_new(l->arr, o))
        l->rc = CUSTOS_ERR_NOMEM;
    return l->rc != CUSTOS_OK;
}

enum custos_err custos_principal_tokens(struct custos_vault *v, const struct custos_caller *c, const char *id,
                                        json_t **out)
{
    struct custos_store_conn *conn = NULL;
    struct custos_principal_row p;
    struct custos_event e;
    struct tlist l;
    uint64_t live = 0;
    int64_t now = (int64_t)custos_now(v);
    enum custos_err rc;

    *out = NULL;
    custos_event_init(&e, "token.list", c);
    if (!may_read_principals(v, c)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "listing tokens needs principal.read (admin, auditor)");
        goto done;
    }
    if (!id || !custos_valid_name(id, CUSTOS_PRINCIPAL_ID_MAX)) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "malformed principal id");
        goto done;
    }
    e.target = id;
    memset(&l, 0, sizeof(l));
    l.v = v;
    if (!(*out = json_pack("{s:s, s:[]}", "principal", id, "tokens"))) {
        rc = CUSTOS_ERR_NOMEM;
        goto done;
    }
    l.arr = json_object_get(*out, "tokens");
    if ((rc = v->ops->acquire(v->store, &conn)))
        goto done;
    rc = v->ops->principal_get(conn, id, &p);
    if (rc == CUSTOS_ERR_NOTFOUND)
        rc = custos_err_set(CUSTOS_ERR_NOTFOUND, "no principal '%s'", id);
    else if (rc == CUSTOS_ERR_CORRUPT)
        rc = CUSTOS_OK; /* its tokens are refused, but still listed */
    /* the count and the list are two reads: a token issued between them may be in one only */
    if (!rc && !(rc = v->ops->token_count(conn, id, now, &live)) &&
        !(rc = v->ops->token_scan(conn, id, now, TOKEN_LIST_MAX + 1, tlist_row, &l)))
        rc = l.rc;
    v->ops->release(v->store, conn);
    sodium_memzero(&p, sizeof(p));
    if (!rc && (json_object_set_new(*out, "live_tokens", json_integer((json_int_t)live)) ||
                json_object_set_new(*out, "truncated", json_boolean(l.more))))
        rc = CUSTOS_ERR_NOMEM;
    e.count = (int64_t)json_array_size(l.arr);
done:
    return custos_audit_finish(v, &e, rc, out);
}

enum custos_err custos_token_id_parse(const char *tid, uint8_t prefix[8])
{
    size_t i, len = 0;

    if (!tid || strlen(tid) != 16)
        return custos_err_set(CUSTOS_ERR_INVALID, "malformed token id: expected 16 lowercase hex digits");
    for (i = 0; i < 16; i++)
        if (!((tid[i] >= '0' && tid[i] <= '9') || (tid[i] >= 'a' && tid[i] <= 'f')))
            return custos_err_set(CUSTOS_ERR_INVALID, "malformed token id: expected 16 lowercase hex digits");
    if (sodium_hex2bin(prefix, 8, tid, 16, NULL, &len, NULL) != 0 || len != 8)
        return custos_err_set(CUSTOS_ERR_INVALID, "malformed token id: expected 16 lowercase hex digits");
    return CUSTOS_OK;
}

enum custos_err custos_token_revoke_id(struct custos_vault *v, const struct custos_caller *c, const char *id,
                                       const char *tid, json_t **out)
{
    struct custos_store_conn *conn = NULL;
    struct custos_event e;
    uint8_t prefix[8], hash[32];
    unsigned matches = 0;
    uint64_t n = 0;
    enum custos_err rc;

    *out = NULL;
    custos_event_init(&e, "token.revoke", c);
    if (!custos_caller_may(v, c, CUSTOS_OP_TOKEN_REVOKE)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "revoking another's token needs token.revoke (admin)");
        goto done;
    }
    if (!id || !custos_valid_name(id, CUSTOS_PRINCIPAL_ID_MAX)) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "malformed principal id");
        goto done;
    }
    if ((rc = custos_token_id_parse(tid, prefix)))
        goto done;
    e.target = tid;
    if ((rc = v->ops->acquire(v->store, &conn)))
        goto done;
    /* found and revoked in one transaction, which also re-checks the caller's token */
    if (!(rc = v->ops->begin(conn, CUSTOS_PLANE_CONTROL))) {
        if (!(rc = token_live_tx(v, conn, c->has_token ? c->token_hash : NULL)) &&
            !(rc = v->ops->token_find(conn, id, prefix, hash, &matches))) {
            if (matches == 0)
                rc = custos_err_set(CUSTOS_ERR_NOTFOUND, "principal '%s' has no token %s", id, tid);
            else if (matches > 1)
                rc = custos_err_set(CUSTOS_ERR_EXISTS, "token id %s is ambiguous: revoke the token itself "
                                    "(POST /v1/auth/revoke), or rotate the principal with revoke_tokens", tid);
            else
                rc = v->ops->token_revoke(conn, hash, (int64_t)custos_now(v), custos_token_sign, v, &n);
        }
        if (rc || (rc = v->ops->commit(conn, CUSTOS_PLANE_CONTROL))) {
            v->ops->rollback(conn, CUSTOS_PLANE_CONTROL);
            n = 0;
        }
    }
    v->ops->release(v->store, conn);
    sodium_memzero(hash, sizeof(hash));
    if (!rc) {
        custos_auth_invalidate(v);
        if (!(*out = json_pack("{s:s, s:s, s:I}", "principal", id, "token", tid, "revoked", (json_int_t)n)))
            rc = CUSTOS_ERR_NOMEM;
    }
    e.count = (int64_t)n; /* the token and the customer tokens minted with it */
done:
    return custos_audit_finish(v, &e, rc, out);
}

enum custos_err custos_token_mint_customer(struct custos_vault *v, const struct custos_caller *c,
                                           const uint8_t id[16], char tok[CUSTOS_TOKEN_LEN + 1], int64_t *expires,
                                           char tid[17])
{
    return token_register(v, c->principal, CUSTOS_KIND_CUSTOMER, id, c->has_token ? c->token_hash : NULL, NULL,
                          c->principal, c->source, tok, expires, tid);
}

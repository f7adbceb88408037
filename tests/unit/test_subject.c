/*
 * test_subject.c - subject operations (src/core/subject.c) on a real vault in a temporary
 * directory, for what the HTTP tests cannot make happen on cue: failures inside an operation
 * and the audit event they leave.  The vault's private header is used to cause them.  Also the
 * principal rows' integrity (auth.c) against a database edited behind the vault's back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>

#include "core/vault_int.h"
#include "custos/err.h"
#include "custos/ledger.h"
#include "custos/vault.h"
#include "custos/banned.h"

struct fx {
    char root[512];
    char dir[600];
    struct custos_vault *v;
    struct custos_caller sys;
    char admin_token[CUSTOS_TOKEN_LEN + 1];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    const char *base = getenv("TMPDIR");
    char secret[CUSTOS_SECRET_LEN + 1], token[CUSTOS_TOKEN_LEN + 1];
    struct custos_vault_opts o;

    if (!f)
        return -1;
    snprintf(f->root, sizeof(f->root), "%s/custos-test-subject-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(f->root))
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/data", f->root);
    if (custos_vault_init(f->dir, NULL, 0, NULL, 0, "test.example/subject", secret, token))
        return -1;
    snprintf(f->admin_token, sizeof(f->admin_token), "%s", token);
    memset(&o, 0, sizeof(o));
    o.dir = f->dir;
    if (custos_vault_open(&o, &f->v))
        return -1;
    custos_caller_system(&f->sys);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    custos_vault_free(f->v);
    rm_rf(f->root);
    free(f);
    return 0;
}

/* The last ledger entry, parsed. */
static json_t *last_event(struct custos_vault *v)
{
    static uint8_t buf[CUSTOS_LEDGER_ENTRY_MAX];
    struct custos_ledger *l = custos_vault_ledger(v);
    size_t len = 0;
    json_t *ev;

    assert_true(custos_ledger_size(l) > 0);
    assert_int_equal(custos_ledger_read(l, custos_ledger_size(l) - 1, buf, sizeof(buf), &len), CUSTOS_OK);
    ev = json_loadb((const char *)buf, len, 0, NULL);
    assert_non_null(ev);
    return ev;
}

/*
 * A create that fails before the new subject has an id (here: the current master key is
 * missing, so nothing can be wrapped) is recorded as an error, and its event names no subject:
 * it used to name whatever 16 bytes were on the stack, which may be another request's subject
 * and so puts a failed create into that subject's scope.
 */
static void test_create_failure_names_no_subject(void **state)
{
    static const char body[] = "{\"name\":\"전성준\",\"email\":\"fail.create@example.com\"}";
    struct fx *f = *state;
    uint32_t kv = f->v->current_kv;
    json_t *out = NULL, *ev;
    enum custos_err rc;

    f->v->current_kv = kv + 1000; /* no such master key */
    rc = custos_subject_create(f->v, &f->sys, body, strlen(body), &out);
    f->v->current_kv = kv;
    assert_int_equal(rc, CUSTOS_ERR_INTERNAL);
    assert_null(out);
    ev = last_event(f->v);
    assert_string_equal(json_string_value(json_object_get(ev, "action")), "subject.create");
    assert_string_equal(json_string_value(json_object_get(ev, "result")), "error");
    assert_null(json_object_get(ev, "subject"));
    json_decref(ev);

    /* and a create that succeeds names its new subject */
    assert_int_equal(custos_subject_create(f->v, &f->sys, body, strlen(body), &out), CUSTOS_OK);
    ev = last_event(f->v);
    assert_string_equal(json_string_value(json_object_get(ev, "result")), "ok");
    assert_string_equal(json_string_value(json_object_get(ev, "subject")), json_string_value(json_object_get(out, "id")));
    json_decref(ev);
    json_decref(out);
}

/* Run one SQL statement that changes something in DIR/file (control.db, data.db), as someone
   with the file but not the keys. */
static void edit_db(const struct fx *f, const char *file, const char *sql)
{
    char path[700];
    sqlite3 *db = NULL;

    snprintf(path, sizeof(path), "%s/%s", f->dir, file);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_busy_timeout(db, 5000), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_true(sqlite3_changes(db) >= 1);
    sqlite3_close(db);
}

/* A new service principal and a token for it. */
static void principal_with_token(struct fx *f, const struct custos_caller *admin, const char *id,
                                 char tok[CUSTOS_TOKEN_LEN + 1])
{
    char body[256];
    json_t *out = NULL;

    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"kind\":\"service\",\"roles\":[\"service\"]}", id);
    assert_int_equal(custos_principal_create(f->v, admin, body, strlen(body), &out), CUSTOS_OK);
    snprintf(body, sizeof(body), "{\"principal\":\"%s\",\"secret\":\"%s\"}", id,
             json_string_value(json_object_get(out, "secret")));
    json_decref(out);
    assert_int_equal(custos_token_issue(f->v, body, strlen(body), "127.0.0.1", &out), CUSTOS_OK);
    snprintf(tok, CUSTOS_TOKEN_LEN + 1, "%s", json_string_value(json_object_get(out, "token")));
    json_decref(out);
}

/* The stored MAC and disabled time of principal `id`. */
static void principal_row(const struct fx *f, const char *id, uint8_t mac[32], int64_t *disabled)
{
    char path[700];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    snprintf(path, sizeof(path), "%s/control.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT mac, disabled FROM principals WHERE id = ?1", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_bytes(st, 0), 32);
    memcpy(mac, sqlite3_column_blob(st, 0), 32);
    *disabled = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static const char *last_reason(struct custos_vault *v, char out[64])
{
    json_t *ev = last_event(v);
    const char *r = json_string_value(json_object_get(ev, "reason"));

    snprintf(out, 64, "%s", r ? r : "");
    json_decref(ev);
    return out;
}

/*
 * A principal row changed in the database file (here its roles raised to admin) fails its MAC:
 * its tokens are refused as "principal_integrity".  Disabling it revokes its tokens and marks it
 * disabled, but must not sign the changed row anew: that laundered the change into a valid,
 * merely disabled row, and the evidence was gone.  An intact principal is signed with the change.
 */
static void test_disabling_a_tampered_principal_keeps_it_tampered(void **state)
{
    struct fx *f = *state;
    struct custos_caller admin, c;
    char tok[CUSTOS_TOKEN_LEN + 1], tok2[CUSTOS_TOKEN_LEN + 1], why[64];
    uint8_t mac[32], mac2[32];
    int64_t disabled;

    assert_int_equal(custos_authenticate(f->v, f->admin_token, "127.0.0.1", &admin), CUSTOS_OK);
    principal_with_token(f, &admin, "ops", tok);
    principal_with_token(f, &admin, "ops2", tok2);
    edit_db(f, "control.db", "UPDATE principals SET roles = 'admin' WHERE id = 'ops'");
    assert_int_equal(custos_authenticate(f->v, tok, "127.0.0.1", &c), CUSTOS_ERR_UNAUTH);
    assert_string_equal(last_reason(f->v, why), "principal_integrity");

    principal_row(f, "ops", mac, &disabled);
    assert_int_equal(custos_principal_disable(f->v, &admin, "ops"), CUSTOS_OK);
    principal_row(f, "ops", mac2, &disabled);
    assert_true(disabled > 0);
    assert_memory_equal(mac, mac2, 32); /* not signed anew */
    assert_int_equal(custos_authenticate(f->v, tok, "127.0.0.1", &c), CUSTOS_ERR_UNAUTH);

    /* the intact one: disabled, its row signed with the change */
    assert_int_equal(custos_authenticate(f->v, tok2, "127.0.0.1", &c), CUSTOS_OK);
    principal_row(f, "ops2", mac, &disabled);
    assert_int_equal(custos_principal_disable(f->v, &admin, "ops2"), CUSTOS_OK);
    principal_row(f, "ops2", mac2, &disabled);
    assert_true(disabled > 0);
    assert_memory_not_equal(mac, mac2, 32);
    assert_int_equal(custos_authenticate(f->v, tok2, "127.0.0.1", &c), CUSTOS_ERR_UNAUTH);
    assert_string_equal(last_reason(f->v, why), "revoked_token");

    /* nor does the local operator get a token for either: the tampered row, nor the disabled one
       switched back on in the file (custos token issue once did, and ledgered an `ok` issue) */
    edit_db(f, "control.db", "UPDATE principals SET disabled = 0 WHERE id = 'ops2'");
    assert_int_equal(custos_token_issue_local(f->v, &f->sys, "ops", tok, &disabled), CUSTOS_ERR_FORBIDDEN);
    assert_string_equal(last_reason(f->v, why), "principal_integrity");
    assert_int_equal(custos_token_issue_local(f->v, &f->sys, "ops2", tok, &disabled), CUSTOS_ERR_FORBIDDEN);
    assert_string_equal(last_reason(f->v, why), "principal_integrity");
}

/* The entry in a listing's array whose "id" is id, or NULL. */
static json_t *by_id(json_t *arr, const char *id)
{
    size_t i;

    for (i = 0; i < json_array_size(arr); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(arr, i), "id")), id) == 0)
            return json_array_get(arr, i);
    return NULL;
}

/*
 * GET /v1/principals and GET /v1/principals/{id}/tokens at the core: what a security team needs to
 * see which credentials exist.  A row edited in the file is listed as not valid and nothing of it
 * is believed, not even for JSON (its bytes are shown printable); a principal's live tokens are its
 * own and the customer tokens it minted, newest first, at most 1,000, then "truncated".
 */
static void test_listing_principals_and_tokens(void **state)
{
    struct fx *f = *state;
    static const char subj[] = "{\"name\":\"유지현\"}";
    struct custos_caller admin, c;
    char tok[CUSTOS_TOKEN_LEN + 1], tok2[CUSTOS_TOKEN_LEN + 1], mid[17], sid[33];
    json_t *out = NULL, *p, *ev, *t;
    int64_t exp;
    int i;

    assert_int_equal(custos_authenticate(f->v, f->admin_token, "127.0.0.1", &admin), CUSTOS_OK);
    principal_with_token(f, &admin, "ops", tok);
    principal_with_token(f, &admin, "gone", tok2);
    assert_int_equal(custos_principal_disable(f->v, &admin, "gone"), CUSTOS_OK);
    principal_with_token(f, &admin, "odd", tok2);
    edit_db(f, "control.db", "UPDATE principals SET created_by = x'e2809c0a' WHERE id = 'odd'"); /* not MAC'd */
    principal_with_token(f, &admin, "bad", tok2);
    edit_db(f, "control.db", "UPDATE principals SET roles = 'admin', id = x'6261642dff' WHERE id = 'bad'");

    /* a service may not list */
    assert_int_equal(custos_authenticate(f->v, tok, "127.0.0.1", &c), CUSTOS_OK);
    assert_int_equal(custos_principal_list(f->v, &c, &out), CUSTOS_ERR_FORBIDDEN);
    assert_null(out);
    assert_int_equal(custos_principal_tokens(f->v, &c, "ops", &out), CUSTOS_ERR_FORBIDDEN);
    assert_null(out);

    assert_int_equal(custos_principal_list(f->v, &admin, &out), CUSTOS_OK);
    p = json_object_get(out, "principals");
    assert_int_equal(json_array_size(p), 5); /* admin, bad-?, gone, odd, ops */
    t = by_id(p, "ops");
    assert_non_null(t);
    assert_true(json_is_true(json_object_get(t, "valid")));
    assert_string_equal(json_string_value(json_object_get(t, "kind")), "service");
    assert_string_equal(json_string_value(json_array_get(json_object_get(t, "roles"), 0)), "service");
    assert_string_equal(json_string_value(json_object_get(t, "created_by")), "admin");
    assert_true(json_is_null(json_object_get(t, "disabled_at")));
    assert_int_equal(json_integer_value(json_object_get(t, "live_tokens")), 1);
    t = by_id(p, "gone");
    assert_true(json_is_string(json_object_get(t, "disabled_at")));
    assert_int_equal(json_integer_value(json_object_get(t, "live_tokens")), 0);
    t = by_id(p, "odd");
    assert_true(json_is_true(json_object_get(t, "valid")));
    assert_string_equal(json_string_value(json_object_get(t, "created_by")), "????");
    t = by_id(p, "bad-?");
    assert_non_null(t);
    assert_true(json_is_false(json_object_get(t, "valid")));
    assert_null(json_object_get(t, "roles"));
    json_decref(out);
    ev = last_event(f->v);
    assert_string_equal(json_string_value(json_object_get(ev, "action")), "principal.list");
    assert_int_equal(json_integer_value(json_object_get(ev, "count")), 5);
    json_decref(ev);

    /* tokens: a minter's own, and the customer token it minted, newest first */
    assert_int_equal(custos_principal_create_local(f->v, "mint", "service", "minter", tok2), CUSTOS_OK);
    assert_int_equal(custos_token_issue_local(f->v, &f->sys, "mint", tok2, &exp), CUSTOS_OK);
    assert_int_equal(custos_authenticate(f->v, tok2, "127.0.0.1", &c), CUSTOS_OK);
    assert_int_equal(custos_subject_create(f->v, &f->sys, subj, strlen(subj), &out), CUSTOS_OK);
    snprintf(sid, sizeof(sid), "%s", json_string_value(json_object_get(out, "id")));
    json_decref(out);
    assert_int_equal(custos_subject_token(f->v, &c, sid, &out), CUSTOS_OK);
    json_decref(out);
    assert_int_equal(custos_principal_tokens(f->v, &admin, "mint", &out), CUSTOS_OK);
    assert_int_equal(json_integer_value(json_object_get(out, "live_tokens")), 2);
    assert_true(json_is_false(json_object_get(out, "truncated")));
    t = json_array_get(json_object_get(out, "tokens"), 1);
    assert_string_equal(json_string_value(json_object_get(t, "kind")), "service");
    assert_string_equal(json_string_value(json_object_get(t, "issued_by")), "@local");
    assert_string_equal(json_string_value(json_object_get(t, "source")), "local");
    assert_true(json_is_true(json_object_get(t, "valid")));
    assert_null(json_object_get(t, "subject"));
    snprintf(mid, sizeof(mid), "%s", json_string_value(json_object_get(t, "id")));
    assert_int_equal(strlen(mid), 16);
    t = json_array_get(json_object_get(out, "tokens"), 0);
    assert_string_equal(json_string_value(json_object_get(t, "kind")), "customer");
    assert_string_equal(json_string_value(json_object_get(t, "subject")), sid);
    assert_string_equal(json_string_value(json_object_get(t, "minted_with")), mid);
    assert_string_equal(json_string_value(json_object_get(t, "source")), "127.0.0.1");
    json_decref(out);
    /* a principal whose row fails its MAC: its tokens are refused, but still listed */
    edit_db(f, "control.db", "UPDATE principals SET roles = 'service' WHERE id = 'ops'");
    assert_int_equal(custos_principal_tokens(f->v, &admin, "ops", &out), CUSTOS_OK);
    assert_int_equal(json_integer_value(json_object_get(out, "live_tokens")), 1);
    assert_int_equal(json_array_size(json_object_get(out, "tokens")), 1);
    json_decref(out);
    assert_int_equal(custos_principal_tokens(f->v, &admin, "nobody", &out), CUSTOS_ERR_NOTFOUND);
    assert_int_equal(custos_principal_tokens(f->v, &admin, "No body", &out), CUSTOS_ERR_INVALID);
    assert_null(out);

    /* over 1,000 live tokens: the newest 1,000 and "truncated"; a revoked one is not live */
    for (i = 0; i < 1001; i++)
        assert_int_equal(custos_token_issue_local(f->v, &f->sys, "admin", tok2, &exp), CUSTOS_OK);
    assert_int_equal(custos_principal_tokens(f->v, &admin, "admin", &out), CUSTOS_OK);
    assert_int_equal(json_integer_value(json_object_get(out, "live_tokens")), 1002); /* and the init token */
    assert_int_equal(json_array_size(json_object_get(out, "tokens")), 1000);
    assert_true(json_is_true(json_object_get(out, "truncated")));
    t = json_array_get(json_object_get(out, "tokens"), 0);
    assert_string_equal(json_string_value(json_object_get(t, "issued_by")), "@local");
    json_decref(out);
    ev = last_event(f->v);
    assert_string_equal(json_string_value(json_object_get(ev, "action")), "token.list");
    assert_string_equal(json_string_value(json_object_get(ev, "target")), "admin");
    assert_int_equal(json_integer_value(json_object_get(ev, "count")), 1000);
    json_decref(ev);
}

/*
 * Rows edited in the file, listed: always valid JSON, and a copy of a row under an id that only
 * reads like another's (a BLOB with a NUL after "ops", or an id cut short at its buffer) is not a
 * second valid principal (review finding: it listed as one, MAC and all).
 */
static void test_listing_edited_rows(void **state)
{
    struct fx *f = *state;
    struct custos_caller admin;
    char tok[CUSTOS_TOKEN_LEN + 1], *dump;
    json_t *out = NULL, *p;
    size_t i;
    int ops_valid = 0, no_id = 0;

    assert_int_equal(custos_authenticate(f->v, f->admin_token, "127.0.0.1", &admin), CUSTOS_OK);
    principal_with_token(f, &admin, "ops", tok);
    principal_with_token(f, &admin, "ops2", tok);
    edit_db(f, "control.db",
            "INSERT INTO principals(id, kind, roles, secret_hash, created, disabled, created_by, mac) "
            "SELECT x'6f707300ff', kind, roles, secret_hash, created, disabled, 'mallory', mac "
            "FROM principals WHERE id = 'ops'");
    edit_db(f, "control.db",
            "INSERT INTO principals(id, kind, roles, secret_hash, created, disabled, created_by, mac) "
            "SELECT 'ops' || printf('%0100d', 0), kind, roles, secret_hash, created, disabled, 'mallory', mac "
            "FROM principals WHERE id = 'ops'");
    edit_db(f, "control.db",
            "UPDATE tokens SET kind = x'ff00', issued_by = x'c3', source = x'e28000', issued = 'x' "
            "WHERE principal = 'ops2'");
    edit_db(f, "control.db",
            "INSERT INTO tokens SELECT x'01', id, 'service', NULL, 1, 9223372036854775807, 0, 'ops2', "
            "'x', x'00', NULL FROM principals WHERE id = 'ops2'");
    edit_db(f, "control.db", "UPDATE principals SET secret_hash = x'00' WHERE id = 'ops2'");

    assert_int_equal(custos_principal_list(f->v, &admin, &out), CUSTOS_OK);
    dump = json_dumps(out, JSON_COMPACT);
    assert_non_null(dump);
    free(dump);
    p = json_object_get(out, "principals");
    for (i = 0; i < json_array_size(p); i++) {
        json_t *e = json_array_get(p, i);

        if (strncmp(json_string_value(json_object_get(e, "id")), "ops", 3) == 0 &&
            json_is_true(json_object_get(e, "valid")))
            ops_valid++;
    }
    assert_int_equal(ops_valid, 1); /* only the real "ops" */
    assert_true(json_is_false(json_object_get(by_id(p, "ops2"), "valid")));
    json_decref(out);

    assert_int_equal(custos_principal_tokens(f->v, &admin, "ops2", &out), CUSTOS_OK);
    dump = json_dumps(out, JSON_COMPACT);
    assert_non_null(dump);
    free(dump);
    p = json_object_get(out, "tokens");
    assert_int_equal(json_array_size(p), 2);
    for (i = 0; i < json_array_size(p); i++) {
        json_t *t = json_array_get(p, i);

        assert_true(json_is_false(json_object_get(t, "valid")));
        /* the inserted row's hash (x'01') does not read: no id that looks like a token's */
        if (json_is_null(json_object_get(t, "id")))
            no_id++;
        else
            assert_int_equal(strlen(json_string_value(json_object_get(t, "id"))), 16);
    }
    assert_int_equal(no_id, 1);
    json_decref(out);
}

/* The stored row of a token (by its text). */
static void token_row(struct fx *f, const char *tok, struct custos_token_row *t)
{
    struct custos_store_conn *c = NULL;
    uint8_t raw[32], hash[32];

    assert_int_equal(custos_credential_parse(tok, "cus_", raw), CUSTOS_OK);
    custos_token_hash(f->v, hash, raw);
    assert_int_equal(f->v->ops->acquire(f->v->store, &c), CUSTOS_OK);
    assert_int_equal(f->v->ops->token_get(c, hash, t), CUSTOS_OK);
    f->v->ops->release(f->v->store, c);
}

static void hex_of(const uint8_t *p, size_t n, char *out)
{
    sodium_bin2hex(out, 2 * n + 1, p, n);
}

static void authn_fails(struct fx *f, const char *tok, const char *reason)
{
    struct custos_caller c;
    char why[64];

    assert_int_equal(custos_authenticate(f->v, tok, "127.0.0.1", &c), CUSTOS_ERR_UNAUTH);
    assert_string_equal(last_reason(f->v, why), reason);
}

/* UPDATE tokens SET `set` on tok's row, in the file. */
static void edit_token(struct fx *f, const char *tok, const char *set)
{
    struct custos_token_row t;
    char hh[65], q[512];

    token_row(f, tok, &t);
    hex_of(t.hash, 32, hh);
    snprintf(q, sizeof(q), "UPDATE tokens SET %s WHERE hash = x'%s'", set, hh);
    edit_db(f, "control.db", q);
}

static void revoke_as(struct fx *f, const struct custos_caller *admin, const char *tok)
{
    char body[128];

    snprintf(body, sizeof(body), "{\"token\":\"%s\"}", tok);
    assert_int_equal(custos_token_revoke(f->v, admin, body, strlen(body)), CUSTOS_OK);
}

/* A minter ("shop", service + minter) with a token (issued with its secret, kept in secret), a
   new subject, and a customer token minted for it with the shop's token. */
static void shop_minted(struct fx *f, const struct custos_caller *admin, char secret[80],
                        char stok[CUSTOS_TOKEN_LEN + 1], struct custos_caller *shop, char subj[40],
                        char ctok[CUSTOS_TOKEN_LEN + 1])
{
    static const char mint_body[] = "{\"id\":\"shop\",\"kind\":\"service\",\"roles\":[\"service\",\"minter\"]}";
    static const char person[] = "{\"name\":\"전성준\"}";
    char body[160];
    json_t *out = NULL;

    assert_int_equal(custos_principal_create(f->v, admin, mint_body, strlen(mint_body), &out), CUSTOS_OK);
    snprintf(secret, 80, "%s", json_string_value(json_object_get(out, "secret")));
    json_decref(out);
    snprintf(body, sizeof(body), "{\"principal\":\"shop\",\"secret\":\"%s\"}", secret);
    assert_int_equal(custos_token_issue(f->v, body, strlen(body), "127.0.0.1", &out), CUSTOS_OK);
    snprintf(stok, CUSTOS_TOKEN_LEN + 1, "%s", json_string_value(json_object_get(out, "token")));
    json_decref(out);
    assert_int_equal(custos_authenticate(f->v, stok, "127.0.0.1", shop), CUSTOS_OK);
    assert_int_equal(custos_subject_create(f->v, &f->sys, person, strlen(person), &out), CUSTOS_OK);
    snprintf(subj, 40, "%s", json_string_value(json_object_get(out, "id")));
    json_decref(out);
    assert_int_equal(custos_subject_token(f->v, shop, subj, &out), CUSTOS_OK);
    snprintf(ctok, CUSTOS_TOKEN_LEN + 1, "%s", json_string_value(json_object_get(out, "token")));
    json_decref(out);
}

/* Sign a token's row with the version 1 MAC, as versions before the revoked state was covered
   did, setting its revoked column to `revoked` (which that MAC does not cover). */
static void sign_v1(struct fx *f, const char *tok, int64_t revoked)
{
    struct custos_token_row t;
    crypto_generichash_state st;
    uint8_t b8[8], mac[32];
    char hh[65], mh[65], sql[512];

    token_row(f, tok, &t);
    crypto_generichash_init(&st, f->v->sec->mac_key, 32, 32);
    crypto_generichash_update(&st, (const uint8_t *)"token/v1", 9);
    crypto_generichash_update(&st, t.hash, 32);
    crypto_generichash_update(&st, (const uint8_t *)t.principal, strlen(t.principal) + 1);
    crypto_generichash_update(&st, (const uint8_t *)t.kind, strlen(t.kind) + 1);
    memset(b8, 0, sizeof(b8));
    crypto_generichash_update(&st, b8, 8); /* no scope: 16 zero bytes, then has_scope 0 */
    crypto_generichash_update(&st, b8, 8);
    crypto_generichash_update(&st, b8, 8);
    for (int k = 0; k < 2; k++) {
        int64_t x = k ? t.expires : t.issued;

        for (int i = 0; i < 8; i++)
            b8[i] = (uint8_t)((uint64_t)x >> (56 - 8 * i));
        crypto_generichash_update(&st, b8, 8);
    }
    crypto_generichash_update(&st, (const uint8_t *)t.issued_by, strlen(t.issued_by) + 1);
    crypto_generichash_final(&st, mac, 32);
    hex_of(t.hash, 32, hh);
    hex_of(mac, 32, mh);
    snprintf(sql, sizeof(sql), "UPDATE tokens SET mac = x'%s', revoked = %lld WHERE hash = x'%s'", mh,
             (long long)revoked, hh);
    edit_db(f, "control.db", sql);
}

/*
 * A revocation cannot be undone in the database file: the token row's MAC covers its revoked
 * state (`revoked = 0` written back makes the row fail its MAC), for a revoked token, for the
 * customer tokens minted with it, and for a token signed before the MAC covered that state (it
 * still works until revoked, and revoking it signs it anew).  Nor can it be dodged beforehand:
 * a non-integer `revoked` (which SQL's `= 0` would skip) is a corrupt row, refused; a customer
 * token's link to its minting token is under the MAC; a mint checks its minting token's row.
 * A tampered row that gets revoked keeps its failing MAC (the evidence stays).
 */
static void test_revocation_cannot_be_undone_in_the_file(void **state)
{
    struct fx *f = *state;
    struct custos_caller admin, shop;
    struct custos_token_row t;
    char tok[CUSTOS_TOKEN_LEN + 1], stok[CUSTOS_TOKEN_LEN + 1], ctok[CUSTOS_TOKEN_LEN + 1];
    char body[256], secret[80];
    json_t *out = NULL;

    assert_int_equal(custos_authenticate(f->v, f->admin_token, "127.0.0.1", &admin), CUSTOS_OK);
    principal_with_token(f, &admin, "svc1", tok);
    revoke_as(f, &admin, tok);
    authn_fails(f, tok, "revoked_token");
    edit_db(f, "control.db", "UPDATE tokens SET revoked = 0 WHERE revoked != 0");
    authn_fails(f, tok, "token_integrity");

    /* made unrevocable in advance: revoked = 0.5 reads as no integer at all */
    principal_with_token(f, &admin, "svc2", tok);
    edit_token(f, tok, "revoked = 0.5");
    authn_fails(f, tok, "token_integrity");
    /* a principal whose disabled = 0.5 is refused a token, and cannot be silently left enabled */
    edit_db(f, "control.db", "UPDATE principals SET disabled = 0.5 WHERE id = 'svc2'");
    assert_int_equal(custos_token_issue_local(f->v, &f->sys, "svc2", tok, &t.issued), CUSTOS_ERR_CORRUPT);

    /* a tampered row (its expiry pushed out) that is then revoked keeps failing its MAC */
    principal_with_token(f, &admin, "svc4", tok);
    edit_token(f, tok, "expires = expires + 86400000");
    revoke_as(f, &admin, tok);
    edit_db(f, "control.db", "UPDATE tokens SET revoked = 0 WHERE revoked != 0");
    authn_fails(f, tok, "token_integrity");

    /* a customer token minted with a service token: revoking the service token revokes both */
    shop_minted(f, &admin, secret, stok, &shop, body, ctok);
    /* cutting a customer token's link to its minting token (so a revocation would miss it) */
    edit_token(f, ctok, "minted_with = NULL");
    authn_fails(f, ctok, "token_integrity");
    assert_int_equal(custos_subject_token(f->v, &shop, body, &out), CUSTOS_OK);
    snprintf(ctok, sizeof(ctok), "%s", json_string_value(json_object_get(out, "token")));
    json_decref(out);
    revoke_as(f, &admin, stok);
    edit_db(f, "control.db", "UPDATE tokens SET revoked = 0 WHERE revoked != 0");
    authn_fails(f, stok, "token_integrity");
    authn_fails(f, ctok, "token_integrity");

    /* a mint checks the row of the token it is made with (a caller authenticated before the
       row was changed, as a server's cache would hold it) */
    assert_int_equal(custos_token_issue_local(f->v, &f->sys, "shop", stok, &t.issued), CUSTOS_OK);
    assert_int_equal(custos_authenticate(f->v, stok, "127.0.0.1", &shop), CUSTOS_OK);
    edit_token(f, stok, "issued_by = 'someone'");
    assert_int_equal(custos_subject_token(f->v, &shop, body, &out), CUSTOS_ERR_UNAUTH);
    assert_null(out);

    /* a row signed the old way (no revoked state in its MAC): valid while never revoked */
    principal_with_token(f, &admin, "svc3", tok);
    sign_v1(f, tok, 0);
    custos_auth_invalidate(f->v);
    assert_int_equal(custos_authenticate(f->v, tok, "127.0.0.1", &shop), CUSTOS_OK);
    revoke_as(f, &admin, tok);
    edit_db(f, "control.db", "UPDATE tokens SET revoked = 0 WHERE revoked != 0");
    authn_fails(f, tok, "token_integrity");

    /* a row an older version revoked and signed the old way: a revoked token, not a changed row
       (compatibility finding: it read as token_integrity, false evidence of tampering) */
    principal_with_token(f, &admin, "svc6", tok);
    sign_v1(f, tok, 1764000000000LL);
    custos_auth_invalidate(f->v);
    authn_fails(f, tok, "revoked_token");
}

/*
 * A row that does not even parse (a MAC of the wrong length) stops no revocation: not a token's,
 * not its mints' (even when the token's own row is the broken one), not a principal's disable,
 * not an erasure.  Each such row is revoked as found.  A principal row that does not parse
 * answers as a wrong secret does, and its disable revokes its tokens.
 */
static void test_revocation_survives_broken_rows(void **state)
{
    struct fx *f = *state;
    struct custos_caller admin, shop;
    struct custos_token_row t;
    char stok[CUSTOS_TOKEN_LEN + 1], ctok[CUSTOS_TOKEN_LEN + 1], tok[CUSTOS_TOKEN_LEN + 1], sql[512], hh[65];
    char subj[40], body[256], secret[80];
    json_t *out = NULL;

    assert_int_equal(custos_authenticate(f->v, f->admin_token, "127.0.0.1", &admin), CUSTOS_OK);
    shop_minted(f, &admin, secret, stok, &shop, subj, ctok);

    /* junk rows in the way of each revocation: minted with the shop's token, owned by shop,
       scoped to the subject */
    token_row(f, stok, &t);
    hex_of(t.hash, 32, hh);
    snprintf(sql, sizeof(sql),
             "INSERT INTO tokens(hash, principal, kind, scope, issued, expires, revoked, issued_by, source, mac,"
             " minted_with) VALUES (x'01', 'shop', 'customer', x'%s', 0, 9e15, 0, 'shop', 'x', x'00', x'%s')",
             subj, hh);
    edit_db(f, "control.db", sql);

    /* the shop's own row broken: its mint is still revoked through it */
    edit_token(f, stok, "revoked = 0.5");
    revoke_as(f, &admin, stok);
    authn_fails(f, stok, "token_integrity");
    authn_fails(f, ctok, "revoked_token");

    /* a principal's disable and an erasure go through as well */
    snprintf(body, sizeof(body), "{\"principal\":\"shop\",\"secret\":\"%s\"}", secret);
    assert_int_equal(custos_token_issue(f->v, body, strlen(body), "127.0.0.1", &out), CUSTOS_OK);
    snprintf(tok, sizeof(tok), "%s", json_string_value(json_object_get(out, "token")));
    json_decref(out);
    assert_int_equal(custos_principal_disable(f->v, &admin, "shop"), CUSTOS_OK);
    authn_fails(f, tok, "revoked_token");
    assert_int_equal(custos_subject_erase(f->v, &f->sys, subj, &out), CUSTOS_OK);
    json_decref(out);

    /* a principal row that does not parse: refused, a wrong secret's answer for a new token,
       and its disable revokes its tokens (shown once the row parses again) */
    principal_with_token(f, &admin, "svc5", tok);
    edit_db(f, "control.db", "UPDATE principals SET created = 'x' WHERE id = 'svc5'");
    authn_fails(f, tok, "token_integrity");
    assert_int_equal(custos_token_issue(f->v, "{\"principal\":\"svc5\",\"secret\":\"cps_x\"}",
                                        strlen("{\"principal\":\"svc5\",\"secret\":\"cps_x\"}"), "127.0.0.1", &out),
                     CUSTOS_ERR_UNAUTH);
    assert_int_equal(custos_principal_disable(f->v, &admin, "svc5"), CUSTOS_OK);
    edit_db(f, "control.db", "UPDATE principals SET created = 1 WHERE id = 'svc5'");
    authn_fails(f, tok, "revoked_token");
}

/* 1 when a system search for field = value (purpose account) finds id. */
static int search_finds(struct fx *f, const char *field, const char *value, const char *id)
{
    json_t *out = NULL, *ids;
    size_t i;
    int found = 0;

    assert_int_equal(custos_subject_search(f->v, &f->sys, field, value, "account", &out), CUSTOS_OK);
    ids = json_object_get(out, "ids");
    for (i = 0; i < json_array_size(ids); i++)
        found |= strcmp(json_string_value(json_array_get(ids, i)), id) == 0;
    json_decref(out);
    return found;
}

/*
 * A vault whose blind index was made by an older normalisation (here: a vault from before the
 * index had a version, its entries gone stale) rebuilds the index at its next open, so that a
 * search finds what a write of the same value indexes today (phone forms such as "+82 010-..."
 * changed in CUSTOS_BLIND_VERSION 2).
 */
static void test_blind_index_rebuilt_for_a_new_normalisation(void **state)
{
    static const char body[] = "{\"name\":\"전성준\",\"phone\":\"+82 010-2841-6960\"}";
    struct fx *f = *state;
    json_t *out = NULL;
    char id[CUSTOS_ID_HEX + 1];
    struct custos_vault_opts o;

    assert_int_equal(custos_subject_create(f->v, &f->sys, body, strlen(body), &out), CUSTOS_OK);
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(out, "id")));
    json_decref(out);
    assert_true(search_finds(f, "phone", "010-2841-6960", id));
    custos_vault_free(f->v);
    f->v = NULL;
    edit_db(f, "data.db", "UPDATE blind SET hash = zeroblob(32)"); /* what the old normalisation made */
    edit_db(f, "control.db", "DELETE FROM meta WHERE k = 'blind_layout'");
    memset(&o, 0, sizeof(o));
    o.dir = f->dir;
    assert_int_equal(custos_vault_open(&o, &f->v), CUSTOS_OK);
    assert_true(search_finds(f, "phone", "010-2841-6960", id));
    assert_true(search_finds(f, "phone", "+82 10 2841 6960", id));
}

/* A searchable value is as long as a search can send (CUSTOS_QUERY_VALUE_MAX, 512 bytes), even
   when max_length allows more: up to that it is stored and found (values over 511 bytes were
   refused as "search value is too long", review finding); one byte more is refused with a message
   that says why, rather than stored where no search could reach it. */
static void test_long_searchable_value(void **state)
{
    static const char schema[] = "{\"fields\": {\"ref\": {\"type\": \"string\", \"searchable\": true, "
                                 "\"max_length\": 4096}}}";
    struct fx *f = *state;
    char dir[700], secret[CUSTOS_SECRET_LEN + 1], token[CUSTOS_TOKEN_LEN + 1];
    char value[CUSTOS_QUERY_VALUE_MAX + 2], body[CUSTOS_QUERY_VALUE_MAX + 64];
    struct custos_vault_opts o;
    struct custos_vault *v = NULL;
    json_t *out = NULL;

    snprintf(dir, sizeof(dir), "%s/long", f->root);
    assert_int_equal(custos_vault_init(dir, schema, strlen(schema), NULL, 0, "test.example/long", secret, token),
                     CUSTOS_OK);
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    assert_int_equal(custos_vault_open(&o, &v), CUSTOS_OK);
    memset(value, 'k', CUSTOS_QUERY_VALUE_MAX);
    value[CUSTOS_QUERY_VALUE_MAX] = '\0';
    snprintf(body, sizeof(body), "{\"ref\":\"%s\"}", value);
    assert_int_equal(custos_subject_create(v, &f->sys, body, strlen(body), &out), CUSTOS_OK);
    json_decref(out);
    out = NULL;
    assert_int_equal(custos_subject_search(v, &f->sys, "ref", value, "account", &out), CUSTOS_OK);
    assert_int_equal(json_array_size(json_object_get(out, "ids")), 1);
    json_decref(out);
    out = NULL;

    value[CUSTOS_QUERY_VALUE_MAX] = 'k';
    value[CUSTOS_QUERY_VALUE_MAX + 1] = '\0';
    snprintf(body, sizeof(body), "{\"ref\":\"%s\"}", value);
    assert_int_equal(custos_subject_create(v, &f->sys, body, strlen(body), &out), CUSTOS_ERR_INVALID);
    assert_string_equal(custos_err_msg(CUSTOS_ERR_INVALID), "field 'ref' is searchable and longer than 512 bytes");
    assert_null(out);
    custos_vault_free(v);
}

/* search_count: how many ids a search of field = value finds in vault v (-1 when the search fails) */
static int search_count(struct fx *f, struct custos_vault *v, const char *field, const char *value)
{
    json_t *out = NULL;
    int n;

    if (custos_subject_search(v, &f->sys, field, value, "account", &out) != CUSTOS_OK)
        return -1;
    n = (int)json_array_size(json_object_get(out, "ids"));
    json_decref(out);
    return n;
}

/* A new vault in f->root/name with `schema`, opened into *v (o->dir points at dir). */
static void custom_vault(struct fx *f, const char *name, const char *schema, char *dir, size_t dcap,
                         struct custos_vault_opts *o, struct custos_vault **v)
{
    char secret[CUSTOS_SECRET_LEN + 1], token[CUSTOS_TOKEN_LEN + 1], origin[64];

    snprintf(dir, dcap, "%s/%s", f->root, name);
    snprintf(origin, sizeof(origin), "test.example/%s", name);
    assert_int_equal(custos_vault_init(dir, schema, strlen(schema), NULL, 0, origin, secret, token), CUSTOS_OK);
    memset(o, 0, sizeof(*o));
    o->dir = dir;
    assert_int_equal(custos_vault_open(o, v), CUSTOS_OK);
}

/* What an operator's edit does: DIR/schema.json replaced by `text` (the vault closed). */
static void edit_schema(const char *dir, const char *text)
{
    char path[800];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/schema.json", dir);
    assert_non_null(fp = fopen(path, "w"));
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/*
 * Blind-index entries are kept under a field's position in the schema.  An edit to schema.json
 * that moves a searchable field (a field inserted before it, fields reordered) or changes what a
 * search of it means (another format) used to break search for every existing record (documented
 * as "add new fields at the end"); the next open now rebuilds the index for the new layout.
 */
static void test_schema_edit_keeps_search_working(void **state)
{
    static const char before[] = "{\"fields\": {\"email\": {\"type\": \"string\", \"searchable\": true, "
                                 "\"format\": \"email\"}, \"code\": {\"type\": \"string\", \"searchable\": true}}}";
    static const char after[] = "{\"fields\": {\"nick\": {\"type\": \"string\", \"searchable\": true}, "
                                "\"code\": {\"type\": \"string\", \"searchable\": true}, "
                                "\"email\": {\"type\": \"string\", \"searchable\": true, \"format\": \"email\"}}}";
    static const char body[] = "{\"email\":\"Jeon@Example.org\",\"code\":\"K-77\"}";
    struct fx *f = *state;
    char dir[700];
    struct custos_vault_opts o;
    struct custos_vault *v = NULL;
    json_t *out = NULL;

    custom_vault(f, "edit", before, dir, sizeof(dir), &o, &v);
    assert_int_equal(custos_subject_create(v, &f->sys, body, strlen(body), &out), CUSTOS_OK);
    json_decref(out);
    assert_int_equal(search_count(f, v, "email", "jeon@example.org"), 1);
    assert_int_equal(search_count(f, v, "code", "K-77"), 1);
    custos_vault_free(v);
    v = NULL;

    /* the operator inserts a searchable field first and swaps the other two */
    edit_schema(dir, after);
    assert_int_equal(custos_vault_open(&o, &v), CUSTOS_OK);
    assert_int_equal(search_count(f, v, "email", "jeon@example.org"), 1);
    assert_int_equal(search_count(f, v, "code", "K-77"), 1);
    assert_int_equal(search_count(f, v, "nick", "K-77"), 0); /* nothing indexed under the new field */
    custos_vault_free(v);
    v = NULL;

    /* the same layout again: no rebuild pending, search still right */
    assert_int_equal(custos_vault_open(&o, &v), CUSTOS_OK);
    assert_int_equal(search_count(f, v, "email", "JEON@example.org"), 1);
    custos_vault_free(v);
}

/*
 * A schema edit that drops a field leaves its stored values sealed in the records.  Nobody's read
 * shows them any more, but the export does (everything the vault holds about the subject), under
 * "retired_fields" by stored path; the export's ledger entry names their policy paths.
 */
static void test_export_shows_values_of_removed_fields(void **state)
{
    static const char before[] = "{\"fields\": {\"name\": {\"type\": \"string\"}, \"nick\": {\"type\": \"string\"}, "
                                 "\"book\": {\"type\": \"array\", \"items\": {\"to\": {\"type\": \"string\"}, "
                                 "\"door\": {\"type\": \"string\", \"class\": \"sensitive\"}}}}}";
    static const char after[] = "{\"fields\": {\"name\": {\"type\": \"string\"}, "
                                "\"book\": {\"type\": \"array\", \"items\": {\"to\": {\"type\": \"string\"}}}}}";
    static const char body[] = "{\"name\":\"전성준\",\"nick\":\"sj\",\"book\":[{\"to\":\"집\",\"door\":\"#1234\"},"
                               "{\"to\":\"회사\"}]}";
    struct fx *f = *state;
    char dir[700], id[CUSTOS_ID_HEX + 1], entry[4096];
    struct custos_vault_opts o;
    struct custos_vault *v = NULL;
    json_t *out = NULL, *ev;
    size_t len = 0;

    custom_vault(f, "retired", before, dir, sizeof(dir), &o, &v);
    assert_int_equal(custos_subject_create(v, &f->sys, body, strlen(body), &out), CUSTOS_OK);
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(out, "id")));
    json_decref(out);
    out = NULL;
    /* with every field still in the schema, nothing is retired */
    assert_int_equal(custos_subject_export(v, &f->sys, id, &out), CUSTOS_OK);
    assert_int_equal(json_object_size(json_object_get(out, "retired_fields")), 0);
    json_decref(out);
    out = NULL;
    custos_vault_free(v);
    v = NULL;

    edit_schema(dir, after);
    assert_int_equal(custos_vault_open(&o, &v), CUSTOS_OK);

    /* a read shows what the schema has, nothing else */
    assert_int_equal(custos_subject_read(v, &f->sys, id, "account", NULL, &out), CUSTOS_OK);
    assert_null(json_object_get(json_object_get(out, "fields"), "nick"));
    assert_null(json_object_get(json_array_get(json_object_get(json_object_get(out, "fields"), "book"), 0), "door"));
    json_decref(out);
    out = NULL;

    /* the export shows the rest */
    assert_int_equal(custos_subject_export(v, &f->sys, id, &out), CUSTOS_OK);
    assert_string_equal(json_string_value(json_object_get(json_object_get(out, "fields"), "name")), "전성준");
    assert_null(json_object_get(json_object_get(out, "fields"), "nick"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(out, "retired_fields"), "nick")), "sj");
    assert_string_equal(json_string_value(json_object_get(json_object_get(out, "retired_fields"), "book[0].door")),
                        "#1234");
    assert_int_equal(json_object_size(json_object_get(out, "retired_fields")), 2);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(json_object_get(out, "fields"), "book"), 1), "to")),
                        "회사");
    json_decref(out);
    out = NULL;
    /* ... and its ledger entry names every path it showed, the retired ones included */
    assert_int_equal(custos_ledger_read(custos_vault_ledger(v), custos_ledger_size(custos_vault_ledger(v)) - 1, (uint8_t *)entry,
                                        sizeof(entry) - 1, &len),
                     CUSTOS_OK);
    entry[len] = '\0';
    assert_non_null(ev = json_loads(entry, 0, NULL));
    assert_string_equal(json_string_value(json_object_get(ev, "action")), "subject.export");
    {
        json_t *paths = json_object_get(ev, "fields");
        int nick = 0, door = 0, name = 0;

        for (size_t i = 0; i < json_array_size(paths); i++) {
            const char *p = json_string_value(json_array_get(paths, i));

            nick |= strcmp(p, "nick") == 0;
            door |= strcmp(p, "book.door") == 0;
            name |= strcmp(p, "name") == 0;
        }
        assert_true(nick && door && name);
    }
    json_decref(ev);
    custos_vault_free(v);
}

/* How many ledger entries from `from` on have action `action`, result `result`, subject `id`
   (and reason `reason`, when not NULL). */
static int count_events(struct custos_vault *v, uint64_t from, const char *action, const char *result,
                        const char *reason, const char *id)
{
    static char entry[CUSTOS_LEDGER_ENTRY_MAX + 1];
    struct custos_ledger *l = custos_vault_ledger(v);
    int n = 0;

    for (uint64_t i = from; i < custos_ledger_size(l); i++) {
        size_t len = 0;
        json_t *ev;

        assert_int_equal(custos_ledger_read(l, i, (uint8_t *)entry, sizeof(entry) - 1, &len), CUSTOS_OK);
        entry[len] = '\0';
        assert_non_null(ev = json_loads(entry, 0, NULL));
        n += strcmp(json_string_value(json_object_get(ev, "action")), action) == 0 &&
             strcmp(json_string_value(json_object_get(ev, "result")), result) == 0 &&
             (!reason || (json_is_string(json_object_get(ev, "reason")) &&
                          strcmp(json_string_value(json_object_get(ev, "reason")), reason) == 0)) &&
             json_is_string(json_object_get(ev, "subject")) &&
             strcmp(json_string_value(json_object_get(ev, "subject")), id) == 0;
        json_decref(ev);
    }
    return n;
}

/*
 * An import that ends between a group's key commit and its records' commit (killed, or failed)
 * leaves subject.import events, durable before the records, for subjects never stored.  The
 * import's control-plane row import_unfinished makes the next open record, for each subject with
 * a key and no record, a subject.import event with result error and reason not_stored; a finished
 * import (row cleared) and subjects that are stored get none.
 */
static void test_unfinished_import_is_put_on_the_record(void **state)
{
    struct fx *f = *state;
    char kept[CUSTOS_ID_HEX + 1], lost[CUSTOS_ID_HEX + 1], sql[256];
    struct custos_vault_opts o;
    json_t *out = NULL;
    uint64_t size0;

    assert_int_equal(custos_subject_create(f->v, &f->sys, "{\"name\":\"남음\"}", strlen("{\"name\":\"남음\"}"), &out),
                     CUSTOS_OK);
    snprintf(kept, sizeof(kept), "%s", json_string_value(json_object_get(out, "id")));
    json_decref(out);
    assert_int_equal(custos_subject_create(f->v, &f->sys, "{\"name\":\"잃음\"}", strlen("{\"name\":\"잃음\"}"), &out),
                     CUSTOS_OK);
    snprintf(lost, sizeof(lost), "%s", json_string_value(json_object_get(out, "id")));
    json_decref(out);
    custos_vault_free(f->v);
    f->v = NULL;
    /* the state an interrupted import leaves: a key whose record never committed */
    snprintf(sql, sizeof(sql), "DELETE FROM subject_ids WHERE id = x'%s'", lost);
    edit_db(f, "data.db", sql);
    memset(&o, 0, sizeof(o));
    o.dir = f->dir;

    /* no import under way: nothing is said (an open does not scan every key for nothing) */
    assert_int_equal(custos_vault_open(&o, &f->v), CUSTOS_OK);
    assert_int_equal(count_events(f->v, 0, "subject.import", "error", "not_stored", lost), 0);
    size0 = custos_ledger_size(custos_vault_ledger(f->v));
    custos_vault_free(f->v);
    f->v = NULL;

    /* after an unfinished import: the lost subject is put on the record, once */
    edit_db(f, "control.db", "INSERT OR REPLACE INTO meta(k, v) VALUES ('import_unfinished', x'01')");
    assert_int_equal(custos_vault_open(&o, &f->v), CUSTOS_OK);
    assert_int_equal(count_events(f->v, size0, "subject.import", "error", "not_stored", lost), 1);
    assert_int_equal(count_events(f->v, size0, "subject.import", "error", NULL, kept), 0);
    size0 = custos_ledger_size(custos_vault_ledger(f->v));
    custos_vault_free(f->v);
    f->v = NULL;
    assert_int_equal(custos_vault_open(&o, &f->v), CUSTOS_OK);
    assert_int_equal(count_events(f->v, size0, "subject.import", "error", "not_stored", lost), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_failure_names_no_subject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disabling_a_tampered_principal_keeps_it_tampered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listing_principals_and_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listing_edited_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revocation_cannot_be_undone_in_the_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revocation_survives_broken_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blind_index_rebuilt_for_a_new_normalisation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_searchable_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_edit_keeps_search_working, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_shows_values_of_removed_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unfinished_import_is_put_on_the_record, setup, teardown),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests_name("subject", tests, NULL, NULL);
}

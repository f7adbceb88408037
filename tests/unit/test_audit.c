/*
 * test_audit.c - the canonical audit-event encoding (src/core/audit.c,
 * docs/format.md "Entry encoding"): fixed member order, absent members
 * omitted, RFC 8259 escaping, byte-exact.  The expected bytes are written
 * out literally: a change to the encoding changes every ledger entry and
 * must be a deliberate, documented format change.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/vault_int.h"
#include "custos/err.h"
#include "custos/ledger.h"
#include "custos/vault.h"
#include "custos/banned.h"

static const uint8_t subj[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};

static void expect_encoding(const struct custos_event *e, uint64_t t, const char *want)
{
    struct custos_buf b;
    json_t *j;
    json_error_t err;

    custos_buf_init(&b, 65536);
    assert_int_equal(custos_event_encode(e, t, &b), CUSTOS_OK);
    if (b.len != strlen(want) || memcmp(b.p, want, b.len) != 0)
        fail_msg("encoded\n  %s\nwant\n  %s", (char *)b.p, want);
    /* it is one JSON object */
    j = json_loadb((const char *)b.p, b.len, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(j))
        fail_msg("encoding is not a JSON object: %s", err.text);
    json_decref(j);
    /* same event, same bytes */
    custos_buf_reset(&b);
    assert_int_equal(custos_event_encode(e, t, &b), CUSTOS_OK);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.p, want, b.len);
    custos_buf_release(&b);
}

static void test_read_by_system(void **state)
{
    struct custos_caller sys;
    struct custos_event e;
    static const char *const plain[] = {"name", "phone"};
    static const char *const masked[] = {"email"};

    (void)state;
    custos_caller_system(&sys);
    custos_event_init(&e, "subject.read", &sys);
    e.result = CUSTOS_RESULT_OK;
    e.subject = subj;
    e.purpose = "support";
    e.fields = plain;
    e.nfields = 2;
    e.masked = masked;
    e.nmasked = 1;
    expect_encoding(&e, 1700000000123ULL,
                    "{\"v\":1,\"time\":1700000000123,\"action\":\"subject.read\",\"result\":\"ok\","
                    "\"actor\":\"@local\",\"source\":\"local\",\"subject\":\"000102030405060708090a0b0c0d0e0f\","
                    "\"purpose\":\"support\",\"fields\":[\"name\",\"phone\"],\"masked\":[\"email\"]}");
    /* a reason on a successful event is not encoded */
    e.reason = "ignored";
    expect_encoding(&e, 1700000000123ULL,
                    "{\"v\":1,\"time\":1700000000123,\"action\":\"subject.read\",\"result\":\"ok\","
                    "\"actor\":\"@local\",\"source\":\"local\",\"subject\":\"000102030405060708090a0b0c0d0e0f\","
                    "\"purpose\":\"support\",\"fields\":[\"name\",\"phone\"],\"masked\":[\"email\"]}");
}

static void test_failed_auth_without_caller(void **state)
{
    struct custos_event e;

    (void)state;
    custos_event_init(&e, "auth.fail", NULL);
    e.result = CUSTOS_RESULT_DENIED;
    e.reason = "unknown_token";
    e.token_id = "0123456789abcdef";
    e.source = "127.0.0.1";
    expect_encoding(&e, 0,
                    "{\"v\":1,\"time\":0,\"action\":\"auth.fail\",\"result\":\"denied\",\"reason\":\"unknown_token\","
                    "\"actor\":\"-\",\"token\":\"0123456789abcdef\",\"source\":\"127.0.0.1\"}");
    /* a claimed principal id */
    e.actor = "svc";
    e.token_id = NULL;
    expect_encoding(&e, 9223372036854775807ULL,
                    "{\"v\":1,\"time\":9223372036854775807,\"action\":\"auth.fail\",\"result\":\"denied\","
                    "\"reason\":\"unknown_token\",\"actor\":\"svc\",\"source\":\"127.0.0.1\"}");
    /* nothing but the required members */
    custos_event_init(&e, "x", NULL);
    e.result = CUSTOS_RESULT_ERROR;
    expect_encoding(&e, 5, "{\"v\":1,\"time\":5,\"action\":\"x\",\"result\":\"error\",\"actor\":\"-\"}");
}

static void test_every_member_in_order(void **state)
{
    struct custos_caller c;
    struct custos_event e;
    static const char *const plain[] = {"address_book.phone"};
    static const char *const masked[] = {"name", "address_book.address"};

    (void)state;
    memset(&c, 0, sizeof(c));
    snprintf(c.principal, sizeof(c.principal), "customer:000102030405060708090a0b0c0d0e0f");
    snprintf(c.minter, sizeof(c.minter), "shop-frontend");
    c.kind = CUSTOS_KIND_CUSTOMER;
    c.has_token = 1;
    snprintf(c.token_id, sizeof(c.token_id), "fedcba9876543210");
    snprintf(c.source, sizeof(c.source), "::1");
    custos_event_init(&e, "subject.erase", &c);
    e.result = CUSTOS_RESULT_DENIED;
    e.reason = "forbidden";
    e.subject = subj;
    e.purpose = "account";
    e.fields = plain;
    e.nfields = 1;
    e.masked = masked;
    e.nmasked = 2;
    e.target = "link-1";
    e.count = 0;
    expect_encoding(&e, 42,
                    "{\"v\":1,\"time\":42,\"action\":\"subject.erase\",\"result\":\"denied\",\"reason\":\"forbidden\","
                    "\"actor\":\"customer:000102030405060708090a0b0c0d0e0f\",\"minter\":\"shop-frontend\","
                    "\"token\":\"fedcba9876543210\",\"source\":\"::1\","
                    "\"subject\":\"000102030405060708090a0b0c0d0e0f\",\"purpose\":\"account\","
                    "\"fields\":[\"address_book.phone\"],\"masked\":[\"name\",\"address_book.address\"],"
                    "\"target\":\"link-1\",\"count\":0}");
    /* with a caller, the caller's identity wins over actor/token_id/source */
    e.actor = "mallory";
    e.token_id = "0000000000000000";
    e.source = "10.0.0.1";
    e.count = 3;
    e.result = CUSTOS_RESULT_OK;
    expect_encoding(&e, 42,
                    "{\"v\":1,\"time\":42,\"action\":\"subject.erase\",\"result\":\"ok\","
                    "\"actor\":\"customer:000102030405060708090a0b0c0d0e0f\",\"minter\":\"shop-frontend\","
                    "\"token\":\"fedcba9876543210\",\"source\":\"::1\","
                    "\"subject\":\"000102030405060708090a0b0c0d0e0f\",\"purpose\":\"account\","
                    "\"fields\":[\"address_book.phone\"],\"masked\":[\"name\",\"address_book.address\"],"
                    "\"target\":\"link-1\",\"count\":3}");
    /* a caller without a token: no token member even if token_id holds something */
    c.has_token = 0;
    c.minter[0] = '\0';
    e.fields = NULL;
    e.nfields = 0;
    e.masked = NULL;
    e.nmasked = 0;
    e.subject = NULL;
    e.purpose = NULL;
    e.target = NULL;
    e.count = -1;
    expect_encoding(&e, 42,
                    "{\"v\":1,\"time\":42,\"action\":\"subject.erase\",\"result\":\"ok\","
                    "\"actor\":\"customer:000102030405060708090a0b0c0d0e0f\",\"source\":\"::1\"}");
}

static void test_escaping(void **state)
{
    struct custos_event e;
    static const char *const fields[] = {"a\"b", "c\\d", "e\x01" "f"};

    (void)state;
    custos_event_init(&e, "principal.create", NULL);
    e.result = CUSTOS_RESULT_OK;
    e.actor = "admin";
    e.source = "local";
    e.target = "line1\nline2\ttab \"q\" \\ / 전성준 \x7f";
    e.fields = fields;
    e.nfields = 3;
    expect_encoding(&e, 7,
                    "{\"v\":1,\"time\":7,\"action\":\"principal.create\",\"result\":\"ok\",\"actor\":\"admin\","
                    "\"source\":\"local\",\"fields\":[\"a\\\"b\",\"c\\\\d\",\"e\\u0001f\"],"
                    "\"target\":\"line1\\nline2\\ttab \\\"q\\\" \\\\ / 전성준 \x7f\"}");
}

/* An unchecked byte that is not UTF-8 never makes an entry that is not JSON: it is written as '?'
   (a character cut in the middle too), valid multi-byte characters stay as they are, and the
   event is recorded all the same. */
static void test_invalid_utf8_scrubbed(void **state)
{
    struct custos_event e;
    static const char *const fields[] = {"ok", "bad\xff", "\xea\xb5"};

    (void)state;
    custos_event_init(&e, "token.issue", NULL);
    e.result = CUSTOS_RESULT_DENIED;
    e.reason = "unknown_principal";
    e.actor = "adm\xc0\xafin";
    e.source = "local";
    e.target = "전\xed\xa0\x80성준";
    e.fields = fields;
    e.nfields = 3;
    expect_encoding(&e, 9,
                    "{\"v\":1,\"time\":9,\"action\":\"token.issue\",\"result\":\"denied\","
                    "\"reason\":\"unknown_principal\",\"actor\":\"adm??in\",\"source\":\"local\","
                    "\"fields\":[\"ok\",\"bad?\",\"??\"],\"target\":\"전???성준\"}");
}

static void test_cap(void **state)
{
    struct custos_event e;
    struct custos_buf b;

    (void)state;
    custos_event_init(&e, "subject.read", NULL);
    custos_buf_init(&b, 20);
    assert_int_equal(custos_event_encode(&e, 1, &b), CUSTOS_ERR_TOOBIG);
    custos_buf_release(&b);
}

/* ---- through a vault: one operation, one entry, these exact bytes --------------------------- */

static uint64_t clock_val;

static uint64_t fixed_clock(void *ctx)
{
    (void)ctx;
    return clock_val;
}

static void expect_last_entry(struct custos_vault *v, uint64_t size_before, const char *want)
{
    struct custos_ledger *l = custos_vault_ledger(v);
    char buf[CUSTOS_LEDGER_ENTRY_MAX + 1];
    size_t len = 0;

    /* exactly one entry per operation, durable when the call returns */
    assert_int_equal(custos_ledger_size(l), size_before + 1);
    assert_int_equal(custos_ledger_read(l, size_before, buf, sizeof(buf) - 1, &len), CUSTOS_OK);
    buf[len] = '\0';
    if (len != strlen(want) || memcmp(buf, want, len) != 0)
        fail_msg("ledger entry\n  %s\nwant\n  %s", buf, want);
}

/* Entry n is the only one since n, an auth.fail with this result, reason and source, naming a
   token id (a hash prefix), never the token. */
static void expect_auth_fail(struct custos_vault *v, uint64_t n, const char *result, const char *reason,
                             const char *source)
{
    struct custos_ledger *l = custos_vault_ledger(v);
    char buf[4096];
    size_t len = 0;
    json_t *ev;

    assert_int_equal(custos_ledger_size(l), n + 1);
    assert_int_equal(custos_ledger_read(l, n, buf, sizeof(buf) - 1, &len), CUSTOS_OK);
    buf[len] = '\0';
    ev = json_loads(buf, 0, NULL);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "action")), "auth.fail");
    assert_string_equal(json_string_value(json_object_get(ev, "result")), result);
    assert_string_equal(json_string_value(json_object_get(ev, "reason")), reason);
    assert_string_equal(json_string_value(json_object_get(ev, "source")), source);
    assert_int_equal(strlen(json_string_value(json_object_get(ev, "token"))), 16);
    assert_null(strstr(buf, "AAAAAAAA"));
    json_decref(ev);
}

static enum custos_err failing_token_get(struct custos_store_conn *c, const uint8_t hash[32], struct custos_token_row *t)
{
    (void)c;
    (void)hash;
    (void)t;
    return custos_err_set(CUSTOS_ERR_IO, "disk I/O error (injected)");
}

static void test_vault_entries(void **state)
{
    char tmp[512], dir[600], secret[CUSTOS_SECRET_LEN + 1], token[CUSTOS_TOKEN_LEN + 1], want[1024];
    struct custos_vault_opts o;
    struct custos_vault *v = NULL;
    struct custos_caller sys, who;
    json_t *out = NULL;
    uint64_t n;
    const char *base = getenv("TMPDIR");
    char id[CUSTOS_ID_HEX + 1];
    static const char body[] = "{\"name\":\"가다연\",\"email\":\"christiana.dietrich688@naver.com\","
                               "\"address_book\":[{\"recipient\":\"가다연\",\"entrance_code\":\"#1893\"}]}";

    (void)state;
    snprintf(tmp, sizeof(tmp), "%s/custos-test-audit-XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(tmp));
    snprintf(dir, sizeof(dir), "%s/vault", tmp);
    assert_int_equal(custos_vault_init(dir, NULL, 0, NULL, 0, "test.example/audit", secret, token), CUSTOS_OK);
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    o.now_ms = fixed_clock;
    clock_val = 1800000000000ULL;
    assert_int_equal(custos_vault_open(&o, &v), CUSTOS_OK);
    custos_caller_system(&sys);

    /* a write names the policy paths written, never a value */
    n = custos_ledger_size(custos_vault_ledger(v));
    assert_int_equal(custos_subject_create(v, &sys, body, strlen(body), &out), CUSTOS_OK);
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(out, "id")));
    json_decref(out);
    snprintf(want, sizeof(want),
             "{\"v\":1,\"time\":1800000000000,\"action\":\"subject.create\",\"result\":\"ok\",\"actor\":\"@local\","
             "\"source\":\"local\",\"subject\":\"%s\",\"fields\":[\"name\",\"email\",\"address_book.recipient\","
             "\"address_book.entrance_code\"]}",
             id);
    expect_last_entry(v, n, want);

    /* a read: released paths, purpose */
    clock_val++;
    n = custos_ledger_size(custos_vault_ledger(v));
    assert_int_equal(custos_subject_read(v, &sys, id, "account", "name,email", &out), CUSTOS_OK);
    json_decref(out);
    snprintf(want, sizeof(want),
             "{\"v\":1,\"time\":1800000000001,\"action\":\"subject.read\",\"result\":\"ok\",\"actor\":\"@local\","
             "\"source\":\"local\",\"subject\":\"%s\",\"purpose\":\"account\",\"fields\":[\"name\",\"email\"]}",
             id);
    expect_last_entry(v, n, want);

    /* a refused read is recorded too */
    n = custos_ledger_size(custos_vault_ledger(v));
    assert_int_equal(custos_subject_read(v, &sys, id, NULL, NULL, &out), CUSTOS_ERR_INVALID);
    snprintf(want, sizeof(want),
             "{\"v\":1,\"time\":1800000000001,\"action\":\"subject.read\",\"result\":\"error\","
             "\"reason\":\"bad_request\",\"actor\":\"@local\",\"source\":\"local\",\"subject\":\"%s\"}",
             id);
    expect_last_entry(v, n, want);

    /* a search: count, field name, never the value searched for */
    n = custos_ledger_size(custos_vault_ledger(v));
    assert_int_equal(custos_subject_search(v, &sys, "email", "Christiana.Dietrich688@naver.com", "account", &out),
                     CUSTOS_OK);
    assert_int_equal(json_array_size(json_object_get(out, "ids")), 1);
    json_decref(out);
    expect_last_entry(v, n,
                      "{\"v\":1,\"time\":1800000000001,\"action\":\"subject.search\",\"result\":\"ok\","
                      "\"actor\":\"@local\",\"source\":\"local\",\"purpose\":\"account\",\"fields\":[\"email\"],"
                      "\"count\":1}");

    /* a failed authentication: who, from where, why */
    n = custos_ledger_size(custos_vault_ledger(v));
    assert_int_equal(custos_authenticate(v, "cus_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "192.0.2.7", &who),
                     CUSTOS_ERR_UNAUTH);
    expect_auth_fail(v, n, "denied", "unknown_token", "192.0.2.7");

    /* the store failing while a token is checked: the request fails, and is recorded as an error */
    {
        struct custos_store_ops broken = *v->ops;
        const struct custos_store_ops *saved = v->ops;

        broken.token_get = failing_token_get;
        v->ops = &broken;
        n = custos_ledger_size(custos_vault_ledger(v));
        assert_int_equal(custos_authenticate(v, "cus_BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "192.0.2.8", &who),
                         CUSTOS_ERR_IO);
        v->ops = saved;
        expect_auth_fail(v, n, "error", "internal", "192.0.2.8");
    }

    /* no entry quotes a personal value */
    {
        struct custos_ledger *l = custos_vault_ledger(v);
        uint64_t i, size = custos_ledger_size(l);
        char buf[CUSTOS_LEDGER_ENTRY_MAX + 1];
        size_t len;

        for (i = 0; i < size; i++) {
            assert_int_equal(custos_ledger_read(l, i, buf, sizeof(buf) - 1, &len), CUSTOS_OK);
            buf[len] = '\0';
            assert_null(strstr(buf, "가다연"));
            assert_null(strstr(buf, "christiana"));
            assert_null(strstr(buf, "Christiana"));
            assert_null(strstr(buf, "#1893"));
        }
    }
    custos_vault_free(v);
    rm_rf(tmp);
}

/* A read of a wide record names every policy path it released, past 64 (review finding: the set
   used to stop at 64 and drop the rest silently). */
static void test_wide_read_names_every_path(void **state)
{
    char tmp[512], dir[600], secret[CUSTOS_SECRET_LEN + 1], token[CUSTOS_TOKEN_LEN + 1], id[CUSTOS_ID_HEX + 1];
    char schema[8192], body[8192], buf[CUSTOS_LEDGER_ENTRY_MAX + 1];
    struct custos_vault_opts o;
    struct custos_vault *v = NULL;
    struct custos_caller sys;
    json_t *out = NULL, *ev, *fields;
    size_t sn = 0, bn = 0, len = 0, i;
    uint64_t n;
    const char *base = getenv("TMPDIR");

    (void)state;
    sn += (size_t)snprintf(schema + sn, sizeof(schema) - sn, "{\"fields\": {");
    bn += (size_t)snprintf(body + bn, sizeof(body) - bn, "{");
    for (i = 0; i < 10; i++) {
        sn += (size_t)snprintf(schema + sn, sizeof(schema) - sn, "\"t%zu\": {\"type\": \"string\"},", i);
        bn += (size_t)snprintf(body + bn, sizeof(body) - bn, "\"t%zu\": \"v\",", i);
    }
    sn += (size_t)snprintf(schema + sn, sizeof(schema) - sn, "\"arr\": {\"type\": \"array\", \"items\": {");
    bn += (size_t)snprintf(body + bn, sizeof(body) - bn, "\"arr\": [{");
    for (i = 0; i < 60; i++) {
        sn += (size_t)snprintf(schema + sn, sizeof(schema) - sn, "%s\"f%zu\": {\"type\": \"string\"}", i ? "," : "", i);
        bn += (size_t)snprintf(body + bn, sizeof(body) - bn, "%s\"f%zu\": \"v\"", i ? "," : "", i);
    }
    snprintf(schema + sn, sizeof(schema) - sn, "}}}}");
    snprintf(body + bn, sizeof(body) - bn, "}]}");

    snprintf(tmp, sizeof(tmp), "%s/custos-test-audit-XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(tmp));
    snprintf(dir, sizeof(dir), "%s/vault", tmp);
    assert_int_equal(custos_vault_init(dir, schema, strlen(schema), NULL, 0, "test.example/audit", secret, token),
                     CUSTOS_OK);
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    assert_int_equal(custos_vault_open(&o, &v), CUSTOS_OK);
    custos_caller_system(&sys);
    assert_int_equal(custos_subject_create(v, &sys, body, strlen(body), &out), CUSTOS_OK);
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(out, "id")));
    json_decref(out);
    n = custos_ledger_size(custos_vault_ledger(v));
    assert_int_equal(custos_subject_read(v, &sys, id, "account", NULL, &out), CUSTOS_OK);
    json_decref(out);
    assert_int_equal(custos_ledger_read(custos_vault_ledger(v), n, buf, sizeof(buf) - 1, &len), CUSTOS_OK);
    buf[len] = '\0';
    ev = json_loads(buf, 0, NULL);
    assert_non_null(ev);
    fields = json_object_get(ev, "fields");
    assert_int_equal(json_array_size(fields), 70);
    assert_string_equal(json_string_value(json_array_get(fields, 69)), "arr.f59");
    json_decref(ev);
    custos_vault_free(v);
    rm_rf(tmp);
}

/* Source addresses are written without inet_ntop: the same text for every digit count. */
static void test_ipv4_text(void **state)
{
    static const uint8_t cases[][4] = {{127, 0, 0, 1}, {10, 99, 100, 255}, {0, 0, 0, 0}, {255, 255, 255, 255},
                                       {192, 168, 1, 20}, {1, 22, 203, 9}};
    char mine[16], ref[16];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_non_null(inet_ntop(AF_INET, cases[i], ref, sizeof(ref)));
        custos_ipv4_text(mine, cases[i]);
        assert_string_equal(mine, ref);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_by_system),
        cmocka_unit_test(test_failed_auth_without_caller),
        cmocka_unit_test(test_every_member_in_order),
        cmocka_unit_test(test_ipv4_text),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_invalid_utf8_scrubbed),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_vault_entries),
        cmocka_unit_test(test_wide_read_names_every_path),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_api_customer.c - customer tokens: a `minter` principal mints
 * POST /v1/subjects/{id}/token; the token reads (purpose account), exports
 * and erases its own subject only, cannot search, create, update or mint;
 * disabling the minter kills every token it minted.
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>

#include "custos/banned.h"

static const char ALICE[] =
    "{\"name\":\"선우안\",\"email\":\"cust.alice@gmail.com\",\"phone\":\"010-3333-6960\",\"birth_date\":\"1990-04-01\","
    "\"customs_code\":\"P123456789081\",\"address_book\":[{\"recipient\":\"선우안\",\"phone\":\"010-3333-6960\","
    "\"address\":\"서울특별시 강남구 테헤란로 123\",\"entrance_code\":\"#1234\"}]}";
static const char BOB[] = "{\"name\":\"박보검\",\"email\":\"cust.bob@example.com\",\"phone\":\"010-5555-0101\"}";

static const char *mint(struct cz_server *s, const char *minter_token, const char *id)
{
    const struct cz_resp *r = cz_req(s, "POST", cz_fmt(s, "/v1/subjects/%s/token", id), minter_token, NULL);
    const char *tok;

    cz_expect(r, 200);
    assert_non_null(strstr(r->cache_control, "no-store"));
    tok = cz_str(r->json, "token");
    assert_non_null(tok);
    assert_int_equal(strlen(tok), 47);
    assert_int_equal(strncmp(tok, "cus_", 4), 0);
    assert_non_null(cz_str(r->json, "expires_at"));
    assert_string_equal(cz_str(r->json, "subject"), id);
    return cz_fmt(s, "%s", tok);
}

/* GET of a path built from a format with one subject id. */
static const struct cz_resp *get(struct cz_server *s, const char *token, const char *fmt, const char *id)
{
    char path[256];

    assert_true(strlen(id) < 64);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(path, sizeof(path), fmt, id);
#pragma GCC diagnostic pop
    return cz_req(s, "GET", path, token, NULL);
}

static void test_customer_token_scope(void **state)
{
    struct cz_server *s = *state;
    const char *a = cz_create_subject(s, s->svc.token, ALICE);
    const char *b = cz_create_subject(s, s->svc.token, BOB);
    const char *ta = mint(s, s->mint.token, a);
    const struct cz_resp *r;
    json_t *want = cz_keep_json(s, json_loads(ALICE, 0, NULL));

    /* its own subject, purpose account: everything plain */
    r = get(s, ta, "/v1/subjects/%s?purpose=account", a);
    cz_expect(r, 200);
    assert_true(json_equal(cz_get(r->json, "fields"), want));
    assert_int_equal(json_array_size(cz_get(r->json, "masked")), 0);
    r = get(s, ta, "/v1/subjects/%s/export", a);
    cz_expect(r, 200);
    assert_non_null(strstr(r->cache_control, "no-store"));
    assert_true(json_equal(cz_get(r->json, "fields"), want));
    /* other purposes are not the customer's */
    cz_expect_error(get(s, ta, "/v1/subjects/%s?purpose=support", a), 403, "forbidden");
    cz_expect_error(get(s, ta, "/v1/subjects/%s?purpose=delivery", a), 403, "forbidden");
    cz_expect_error(get(s, ta, "/v1/subjects/%s", a), 400, "bad_request");

    /* another subject: forbidden for every operation, and nothing about it leaks */
    r = get(s, ta, "/v1/subjects/%s?purpose=account", b);
    cz_expect_error(r, 403, "forbidden");
    assert_null(strstr(r->body, "박보검"));
    cz_expect_error(get(s, ta, "/v1/subjects/%s/export", b), 403, "forbidden");
    cz_expect_error(cz_req(s, "DELETE", cz_fmt(s, "/v1/subjects/%s", b), ta, NULL), 403, "forbidden");
    cz_expect_error(get(s, ta, "/v1/subjects/%s?purpose=account", "0123456789abcdef0123456789abcdef"), 403,
                    "forbidden");
    cz_expect(get(s, s->svc.token, "/v1/subjects/%s?purpose=account", b), 200);

    /* no search, no create, no update, no minting */
    cz_expect_error(cz_req(s, "GET", "/v1/subjects?email=cust.alice%40gmail.com&purpose=account", ta, NULL), 403,
                    "forbidden");
    cz_expect_error(cz_req(s, "POST", "/v1/subjects", ta, BOB), 403, "forbidden");
    cz_expect_error(cz_req(s, "PATCH", cz_fmt(s, "/v1/subjects/%s", a), ta, "{\"name\":\"김철수\"}"), 403,
                    "forbidden");
    cz_expect_error(cz_req(s, "POST", cz_fmt(s, "/v1/subjects/%s/token", a), ta, NULL), 403, "forbidden");
    cz_expect_error(cz_req(s, "POST", "/v1/principals", ta,
                           "{\"id\":\"x\",\"kind\":\"service\",\"roles\":[\"service\"]}"),
                    403, "forbidden");
    cz_expect_error(cz_req(s, "GET", "/v1/ledger/entries", ta, NULL), 403, "forbidden");
    r = get(s, s->svc.token, "/v1/subjects/%s?purpose=account&fields=name", a);
    assert_string_equal(cz_str(r->json, "fields.name"), "선우안");

    /* leaving is one call: the customer erases its own subject */
    r = cz_req(s, "DELETE", cz_fmt(s, "/v1/subjects/%s", a), ta, NULL);
    cz_expect(r, 200);
    assert_string_equal(cz_str(r->json, "subject"), a);
    assert_non_null(cz_str(r->json, "signature"));
    cz_expect_error(get(s, s->svc.token, "/v1/subjects/%s?purpose=account", a), 410, "gone");
    /* the subject's own token: gone with it (410), or revoked by the erasure (401) */
    r = get(s, ta, "/v1/subjects/%s?purpose=account", a);
    cz_expect_error(r, r->status == 401 ? 401 : 410, NULL);
    assert_null(cz_get(r->json, "fields"));
    cz_expect(get(s, s->svc.token, "/v1/subjects/%s?purpose=account", b), 200);
}

static void test_mint_rules(void **state)
{
    struct cz_server *s = *state;
    const char *a = cz_create_subject(s, s->svc.token, ALICE);
    const char *t1, *t2;

    cz_expect_error(cz_req(s, "POST", cz_fmt(s, "/v1/subjects/%s/token", a), s->svc.token, NULL), 403, "forbidden");
    cz_expect_error(cz_req(s, "POST", cz_fmt(s, "/v1/subjects/%s/token", a), s->sup.token, NULL), 403, "forbidden");
    cz_expect_error(cz_req(s, "POST", cz_fmt(s, "/v1/subjects/%s/token", a), s->admin_token, NULL), 403, "forbidden");
    cz_expect_error(cz_req(s, "POST", cz_fmt(s, "/v1/subjects/%s/token", a), NULL, NULL), 401, "unauthenticated");
    cz_expect_error(cz_req(s, "POST", "/v1/subjects/0123456789abcdef0123456789abcdef/token", s->mint.token, NULL), 404,
                    "not_found");
    cz_expect_error(cz_req(s, "POST", "/v1/subjects/0123/token", s->mint.token, NULL), 400, "bad_request");
    /* the minter itself reads nothing */
    cz_expect_error(get(s, s->mint.token, "/v1/subjects/%s?purpose=account", a), 403, "forbidden");
    cz_expect_error(get(s, s->mint.token, "/v1/subjects/%s/export", a), 403, "forbidden");
    /* each mint is a new token */
    t1 = mint(s, s->mint.token, a);
    t2 = mint(s, s->mint.token, a);
    assert_string_not_equal(t1, t2);
    cz_expect(get(s, t1, "/v1/subjects/%s?purpose=account", a), 200);
    cz_expect(get(s, t2, "/v1/subjects/%s?purpose=account", a), 200);
    /* a customer token may revoke itself; the other one lives on */
    cz_expect(cz_req(s, "POST", "/v1/auth/revoke", t1, cz_fmt(s, "{\"token\":\"%s\"}", t1)), 200);
    cz_expect_error(get(s, t1, "/v1/subjects/%s?purpose=account", a), 401, "unauthenticated");
    cz_expect(get(s, t2, "/v1/subjects/%s?purpose=account", a), 200);
    /* but not another token */
    cz_expect_error(cz_req(s, "POST", "/v1/auth/revoke", t2, cz_fmt(s, "{\"token\":\"%s\"}", s->svc.token)), 403,
                    "forbidden");
}

static void test_disable_minter_kills_customer_tokens(void **state)
{
    struct cz_server *s = *state;
    const char *a = cz_create_subject(s, s->svc.token, ALICE);
    const char *b = cz_create_subject(s, s->svc.token, BOB);
    struct cz_principal other;
    const char *ta, *tb, *tc;

    cz_api_principal(s, "mint2", "service", "[\"minter\"]", &other);
    ta = mint(s, s->mint.token, a);
    tb = mint(s, s->mint.token, b);
    tc = mint(s, other.token, a);
    cz_expect(get(s, ta, "/v1/subjects/%s?purpose=account", a), 200);
    cz_expect(get(s, tb, "/v1/subjects/%s?purpose=account", b), 200);

    cz_expect(cz_req(s, "POST", "/v1/principals/mint/disable", s->admin_token, NULL), 200);
    cz_expect_error(get(s, ta, "/v1/subjects/%s?purpose=account", a), 401, "unauthenticated");
    cz_expect_error(get(s, tb, "/v1/subjects/%s?purpose=account", b), 401, "unauthenticated");
    cz_expect_error(get(s, ta, "/v1/subjects/%s/export", a), 401, "unauthenticated");
    cz_expect_error(cz_req(s, "DELETE", cz_fmt(s, "/v1/subjects/%s", a), ta, NULL), 401, "unauthenticated");
    cz_expect_error(cz_req(s, "POST", cz_fmt(s, "/v1/subjects/%s/token", a), s->mint.token, NULL), 401,
                    "unauthenticated");
    /* tokens minted by another minter are unaffected */
    cz_expect(get(s, tc, "/v1/subjects/%s?purpose=account", a), 200);
    cz_expect(get(s, s->svc.token, "/v1/subjects/%s?purpose=account", a), 200);

    /* the refused customer token is recorded as the customer's, with its minter beside it: never
       as a failed request of the minting service itself (which made none) */
    {
        json_t *e = cz_ledger_entries(s), *ev;
        const char *cust = cz_fmt(s, "customer:%s", a);

        ev = cz_find_event(e, "action", "auth.fail", "actor", cust, NULL);
        assert_non_null(ev);
        assert_true(strcmp(cz_str(ev, "reason"), "revoked_token") == 0 ||
                    strcmp(cz_str(ev, "reason"), "disabled_principal") == 0);
        assert_string_equal(cz_str(ev, "minter"), "mint");
        assert_string_equal(cz_str(ev, "result"), "denied");
        assert_int_equal(strlen(cz_str(ev, "token")), 16);
        assert_null(cz_find_event(e, "action", "auth.fail", "actor", "mint", "token", cz_str(ev, "token"), NULL));
    }
}

/* A revoked customer token (its minter's token revoked, which revokes what it minted) is
   attributed the same way. */
static void test_customer_auth_fail_attribution(void **state)
{
    struct cz_server *s = *state;
    const char *a = cz_create_subject(s, s->svc.token, ALICE);
    const char *ta = mint(s, s->mint.token, a);
    const char *body = cz_fmt(s, "{\"token\":\"%s\"}", s->mint.token);
    json_t *e, *ev;

    cz_expect(cz_req(s, "POST", "/v1/auth/revoke", s->mint.token, body), 200);
    cz_expect_error(get(s, ta, "/v1/subjects/%s?purpose=account", a), 401, "unauthenticated");
    e = cz_ledger_entries(s);
    ev = cz_find_event(e, "action", "auth.fail", "reason", "revoked_token", "actor", cz_fmt(s, "customer:%s", a),
                       NULL);
    assert_non_null(ev);
    assert_string_equal(cz_str(ev, "minter"), "mint");
    assert_null(cz_find_event(e, "action", "auth.fail", "reason", "revoked_token", "actor", "mint", NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_customer_token_scope, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_mint_rules, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_disable_minter_kills_customer_tokens, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_customer_auth_fail_attribution, cz_setup_std, cz_teardown),
    };

    return cmocka_run_group_tests_name("api customer tokens", tests, NULL, NULL);
}

/*
 * test_api_basics.c - routing, the error body, response headers: GET
 * /v1/health without auth, unknown routes 404, wrong methods 405, every
 * error {"error":{"code","message"}}, Cache-Control: no-store on every
 * response that carries (or could carry) personal data.
 */
#include "harness.h"

#include <string.h>

#include "custos/banned.h"

static const char SUBJECT[] =
    "{\"name\":\"선우안\",\"email\":\"basics.kim@example.com\",\"phone\":\"010-2222-3333\","
    "\"address_book\":[{\"recipient\":\"선우안\",\"phone\":\"010-2222-3333\","
    "\"address\":\"서울특별시 종로구 세종대로 1\",\"entrance_code\":\"#4321\"}]}";

static void test_health(void **state)
{
    struct cz_server *s = *state;
    const struct cz_resp *r = cz_req(s, "GET", "/v1/health", NULL, NULL);

    cz_expect(r, 200);
    assert_non_null(strstr(r->content_type, "application/json"));
    assert_string_equal(cz_str(r->json, "status"), "ok");
    assert_int_equal(json_object_size(r->json), 1);
    /* a bad token on a public route changes nothing: health needs no auth at all */
    r = cz_req(s, "GET", "/v1/health", "cus_garbage", NULL);
    cz_expect(r, 200);
}

static void test_unknown_routes_404(void **state)
{
    struct cz_server *s = *state;
    static const char *const paths[] = {"/", "/v1", "/v1/", "/v1/nope", "/v2/health", "/v1/health/", "/v1/healthz",
                                        "/v1/subjects/0123456789abcdef0123456789abcdef/nope",
                                        "/v1/ledger", "/v1/ledger/proof", "/v1/principals/x/enable", NULL};
    size_t i;

    for (i = 0; paths[i]; i++) {
        const struct cz_resp *r = cz_req(s, "GET", paths[i], s->admin_token, NULL);

        cz_expect_error(r, 404, "not_found");
    }
    /* same for other methods and without a token: routing happens before authentication */
    cz_expect_error(cz_req(s, "POST", "/v1/nope", NULL, "{}"), 404, "not_found");
    cz_expect_error(cz_req(s, "DELETE", "/v1/things/1", NULL, NULL), 404, "not_found");
}

static void test_wrong_method_405(void **state)
{
    struct cz_server *s = *state;
    static const char *const cases[][2] = {
        {"POST", "/v1/health"},
        {"DELETE", "/v1/health"},
        {"DELETE", "/v1/principals"},
        {"GET", "/v1/principals/svc/rotate"},
        {"PUT", "/v1/principals/svc/tokens"},
        {"GET", "/v1/principals/svc/disable"},
        {"GET", "/v1/auth/token"},
        {"PUT", "/v1/auth/revoke"},
        {"PUT", "/v1/subjects"},
        {"DELETE", "/v1/subjects"},
        {"PUT", "/v1/subjects/0123456789abcdef0123456789abcdef"},
        {"POST", "/v1/subjects/0123456789abcdef0123456789abcdef"},
        {"GET", "/v1/subjects/0123456789abcdef0123456789abcdef/token"},
        {"POST", "/v1/subjects/0123456789abcdef0123456789abcdef/export"},
        {"POST", "/v1/ledger/checkpoint"},
        {"DELETE", "/v1/ledger/entries"},
        {"POST", "/v1/ledger/proof/inclusion"},
        {"PATCH", "/v1/ledger/proof/consistency"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct cz_resp *r = cz_req(s, cases[i][0], cases[i][1], s->admin_token, NULL);

        cz_expect_error(r, 405, "method_not_allowed");
    }
}

static void test_error_body_shape(void **state)
{
    struct cz_server *s = *state;
    const struct cz_resp *r;
    json_t *err;

    /* one of each status the API promises, each with exactly {"error":{"code","message"}} */
    r = cz_req(s, "GET", "/v1/subjects/00000000000000000000000000000000?purpose=account", NULL, NULL);
    cz_expect_error(r, 401, "unauthenticated");
    r = cz_req(s, "GET", "/v1/subjects/00000000000000000000000000000000?purpose=account", s->sup.token, NULL);
    cz_expect_error(r, 403, "forbidden");
    r = cz_req(s, "GET", "/v1/subjects/00000000000000000000000000000000?purpose=account", s->svc.token, NULL);
    cz_expect_error(r, 404, "not_found");
    r = cz_req(s, "GET", "/v1/subjects/00000000000000000000000000000000", s->svc.token, NULL);
    cz_expect_error(r, 400, "bad_request");
    r = cz_req(s, "POST", "/v1/principals", s->admin_token,
               "{\"id\":\"svc\",\"kind\":\"service\",\"roles\":[\"service\"]}");
    cz_expect_error(r, 409, "conflict");
    assert_true(json_is_object(r->json));
    assert_int_equal(json_object_size(r->json), 1);
    err = cz_get(r->json, "error");
    assert_int_equal(json_object_size(err), 2);
    /* the message names, never quotes, a value: the id is a name so it may appear; the secret never */
    assert_null(strstr(r->body, "cps_"));
}

static void test_cache_control_everywhere(void **state)
{
    struct cz_server *s = *state;
    const char *id = cz_create_subject(s, s->svc.token, SUBJECT);
    const struct cz_resp *r[12];
    size_t i, n = 0;

    r[n++] = cz_req(s, "POST", "/v1/subjects", s->svc.token, SUBJECT);
    r[n++] = cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=account", id), s->svc.token, NULL);
    r[n++] = cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=support", id), s->sup.token, NULL);
    r[n++] = cz_req(s, "GET", cz_fmt(s, "/v1/subjects?email=%s&purpose=account", cz_esc(s, "basics.kim@example.com")),
                    s->svc.token, NULL);
    r[n++] = cz_req(s, "PATCH", cz_fmt(s, "/v1/subjects/%s", id), s->svc.token, "{\"phone\":\"010-2222-4444\"}");
    r[n++] = cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s/export", id), cz_mint(s, id), NULL);
    r[n++] = cz_req(s, "POST", cz_fmt(s, "/v1/subjects/%s/token", id), s->mint.token, NULL);
    r[n++] = cz_req(s, "POST", "/v1/auth/token", NULL,
                    cz_fmt(s, "{\"principal\":\"svc\",\"secret\":\"%s\"}", s->svc.secret));
    r[n++] = cz_req(s, "POST", "/v1/principals", s->admin_token,
                    "{\"id\":\"cc-new\",\"kind\":\"service\",\"roles\":[\"service\"]}");
    r[n++] = cz_req(s, "GET", "/v1/ledger/entries?count=5", s->aud.token, NULL);
    r[n++] = cz_req(s, "DELETE", cz_fmt(s, "/v1/subjects/%s", id), s->svc.token, NULL);
    r[n++] = cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=account", id), s->svc.token, NULL); /* 410 */
    for (i = 0; i < n; i++) {
        if (i + 1 < n)
            assert_true(r[i]->status == 200 || r[i]->status == 201);
        else
            cz_expect_error(r[i], 410, "gone");
        assert_non_null(strstr(r[i]->cache_control, "no-store"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health, cz_setup_bare, cz_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_routes_404, cz_setup_bare, cz_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_method_405, cz_setup_bare, cz_teardown),
        cmocka_unit_test_setup_teardown(test_error_body_shape, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_cache_control_everywhere, cz_setup_std, cz_teardown),
    };

    return cmocka_run_group_tests_name("api basics", tests, NULL, NULL);
}

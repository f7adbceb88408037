/*
 * test_api_policy.c - field policy at the edges of the read path: what a purpose hides must not
 * be reachable through another route (search) either.
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>

#include "custos/banned.h"

static const char ALICE[] =
    "{\"name\":\"선우안\",\"email\":\"policy.alice@gmail.com\",\"phone\":\"010-3333-6961\",\"birth_date\":\"1990-04-01\"}";

/*
 * A search is an equality test on the searched field: a caller who may not see a field under a
 * purpose must not be able to test values of it under that purpose either.  With the default
 * policy, `service` + `delivery` hides `email`: searching by email for delivery would map an
 * email address to a subject id whose delivery data the caller then reads, which the purpose
 * rules forbid.  Plain and masked fields stay searchable (support searches by masked email).
 */
static void test_search_hidden_field(void **state)
{
    struct cz_server *s = *state;
    const char *a = cz_create_subject(s, s->svc.token, ALICE);
    const struct cz_resp *r;
    json_t *entries, *ev;

    /* hidden under delivery: refused, and the refusal says nothing about a match */
    r = cz_req(s, "GET", "/v1/subjects?email=policy.alice%40gmail.com&purpose=delivery", s->svc.token, NULL);
    cz_expect_error(r, 403, "forbidden");
    assert_null(cz_get(r->json, "ids"));
    r = cz_req(s, "GET", "/v1/subjects?email=nobody%40example.com&purpose=delivery", s->svc.token, NULL);
    cz_expect_error(r, 403, "forbidden");
    /* plain under delivery, plain under account, masked under support: allowed */
    r = cz_req(s, "GET", "/v1/subjects?phone=010-3333-6961&purpose=delivery", s->svc.token, NULL);
    cz_expect(r, 200);
    assert_string_equal(json_string_value(json_array_get(cz_get(r->json, "ids"), 0)), a);
    r = cz_req(s, "GET", "/v1/subjects?email=policy.alice%40gmail.com&purpose=account", s->svc.token, NULL);
    cz_expect(r, 200);
    assert_string_equal(json_string_value(json_array_get(cz_get(r->json, "ids"), 0)), a);
    r = cz_req(s, "GET", "/v1/subjects?email=policy.alice%40gmail.com&purpose=support", s->sup.token, NULL);
    cz_expect(r, 200);
    assert_string_equal(json_string_value(json_array_get(cz_get(r->json, "ids"), 0)), a);

    /* the refusal is a denied subject.search event naming the field and purpose, with no count */
    entries = cz_ledger_entries(s);
    ev = cz_find_event(entries, "action", "subject.search", "actor", "svc", "purpose", "delivery", "result", "denied",
                       NULL);
    assert_non_null(ev);
    assert_string_equal(cz_str(ev, "reason"), "forbidden");
    assert_string_equal(json_string_value(json_array_get(cz_get(ev, "fields"), 0)), "email");
    assert_null(cz_get(ev, "count"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_search_hidden_field, cz_setup_std, cz_teardown),
    };

    return cmocka_run_group_tests_name("api field policy", tests, NULL, NULL);
}

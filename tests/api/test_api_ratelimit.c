/*
 * test_api_ratelimit.c - the support role's velocity limit (rate_per_minute
 * 60 in the default policy): the 61st read within one minute is 429, the
 * refusal is a ledger entry with result "denied", and other principals are
 * not affected.
 *
 * The server counts per calendar minute of its clock (the same clock as
 * ours).  When a run happens to straddle a minute boundary the count
 * restarts, so such a run proves nothing and is repeated once with a fresh
 * principal (a run takes a few seconds, so the repeat cannot straddle too).
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "custos/banned.h"

static const char SUBJECT[] = "{\"name\":\"한가람\",\"email\":\"rate.han@example.com\",\"phone\":\"010-4444-5555\"}";

static long minute_now(void)
{
    return (long)(time(NULL) / 60);
}

static void test_support_velocity_limit(void **state)
{
    struct cz_server *s = *state;
    const char *id = cz_create_subject(s, s->svc.token, SUBJECT);
    const char *path = cz_fmt(s, "/v1/subjects/%s?purpose=support", id);
    int attempt;

    for (attempt = 0; attempt < 2; attempt++) {
        struct cz_principal p;
        const struct cz_resp *r[61], *search;
        long m0, m1;
        int i;

        cz_api_principal(s, cz_fmt(s, "agent%d", attempt), "staff", "[\"support\"]", &p);
        m0 = minute_now();
        for (i = 0; i < 61; i++)
            r[i] = cz_req(s, "GET", path, p.token, NULL);
        search = cz_req(s, "GET", "/v1/subjects?email=rate.han%40example.com&purpose=support", p.token, NULL);
        m1 = minute_now();
        if (m0 != m1) {
            print_message("run straddled a minute boundary; repeating with a fresh principal\n");
            continue;
        }
        for (i = 0; i < 60; i++) {
            cz_expect(r[i], 200);
            assert_string_equal(cz_str(r[i]->json, "fields.name"), "한*람");
        }
        cz_expect_error(r[60], 429, "rate_limited");
        assert_null(cz_get(r[60]->json, "fields"));
        assert_null(strstr(r[60]->body, "한"));
        cz_expect_error(search, 429, "rate_limited");
        /* the limit is per principal: another support agent and the service carry on */
        cz_expect(cz_req(s, "GET", path, s->sup.token, NULL), 200);
        cz_expect(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=account", id), s->svc.token, NULL), 200);
        /* the refusal is recorded, as a denial */
        {
            json_t *entries = cz_ledger_entries(s);
            json_t *ev = cz_find_event(entries, "action", "subject.read", "actor", p.id, "result", "denied", "subject",
                                       id, NULL);

            assert_non_null(ev);
            assert_string_equal(cz_str(ev, "purpose"), "support");
            assert_string_equal(cz_str(ev, "reason"), "rate_limited");
        }
        return;
    }
    fail_msg("two runs straddled a minute boundary");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_support_velocity_limit, cz_setup_std, cz_teardown),
    };

    return cmocka_run_group_tests_name("api velocity", tests, NULL, NULL);
}

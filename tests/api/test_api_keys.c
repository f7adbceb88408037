/*
 * test_api_keys.c - master key rotation through a running server: GET /v1/keys
 * and POST /v1/keys/rotate need keys.manage (admin); a rotation answers 202 at
 * once and runs beside the requests; GET /v1/keys follows it to `done`; reads
 * go on throughout and after; the old key file is gone; the ledger has the
 * request (`started`) and the outcome; a restart starts with no rotation to
 * report and the new version current.  The concurrency itself (a wrap in
 * flight, a key held, a stop and a resume) is tested in-process, where it can
 * be held still: tests/unit/test_vault.c, test_rotation_online.
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "custos/banned.h"

static const char SUBJECT[] =
    "{\"name\":\"한지우\",\"email\":\"keys.han@example.com\",\"phone\":\"010-4444-5555\","
    "\"address_book\":[{\"recipient\":\"한지우\",\"phone\":\"010-4444-5555\","
    "\"address\":\"부산광역시 해운대구 우동 1\",\"entrance_code\":\"#7788\"}]}";

static const char *versions(const struct cz_resp *r, char *out, size_t cap)
{
    json_t *vs = cz_get(r->json, "versions");
    size_t i, n = 0;

    out[0] = '\0';
    for (i = 0; i < json_array_size(vs) && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%lld", i ? "," : "",
                              (long long)json_integer_value(json_array_get(vs, i)));
    return out;
}

/* GET /v1/keys until the rotation is no longer running (20 ms apart, 20 s at most). */
static const struct cz_resp *wait_done(struct cz_server *s)
{
    int i;

    for (i = 0; i < 1000; i++) {
        const struct cz_resp *r = cz_req(s, "GET", "/v1/keys", s->admin.token, NULL);

        cz_expect(r, 200);
        if (strcmp(cz_str(r->json, "rotation.state"), "running") != 0)
            return r;
        usleep(20 * 1000);
    }
    fail_msg("the rotation was still running after 20 s");
    return NULL;
}

static void test_rotate_while_serving(void **state)
{
    struct cz_server *s = *state;
    const char *ids[3];
    const struct cz_resp *r;
    char vs[64], path[400];
    json_t *entries, *ev;
    int i;

    for (i = 0; i < 3; i++)
        ids[i] = cz_create_subject(s, s->svc.token, SUBJECT);

    /* keys.manage only: admin, not a service, not the auditor */
    cz_expect_error(cz_req(s, "GET", "/v1/keys", s->svc.token, NULL), 403, "forbidden");
    cz_expect_error(cz_req(s, "GET", "/v1/keys", s->aud.token, NULL), 403, "forbidden");
    cz_expect_error(cz_req(s, "POST", "/v1/keys/rotate", s->svc.token, NULL), 403, "forbidden");
    cz_expect_error(cz_req(s, "POST", "/v1/keys/rotate", NULL, NULL), 401, "unauthenticated");
    cz_expect_error(cz_req(s, "POST", "/v1/keys/rotate", s->admin.token, "{\"to_version\":7}"), 400, "bad_request");
    cz_expect_error(cz_req(s, "GET", "/v1/keys/rotate", s->admin.token, NULL), 405, "method_not_allowed");

    r = cz_req(s, "GET", "/v1/keys", s->admin.token, NULL);
    cz_expect(r, 200);
    assert_int_equal(json_integer_value(cz_get(r->json, "current_version")), 1);
    assert_string_equal(versions(r, vs, sizeof(vs)), "1");
    assert_true(json_is_null(cz_get(r->json, "rotation")));

    r = cz_req(s, "POST", "/v1/keys/rotate", s->admin.token, NULL);
    cz_expect(r, 202);
    assert_string_equal(cz_str(r->json, "rotation.state"), "running");
    assert_int_equal(json_integer_value(cz_get(r->json, "rotation.from_version")), 1);
    assert_int_equal(json_integer_value(cz_get(r->json, "rotation.to_version")), 2);
    for (i = 0; i < 3; i++) /* reads go on while it runs */
        cz_expect(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=account", ids[i]), s->svc.token, NULL), 200);

    r = wait_done(s);
    assert_string_equal(cz_str(r->json, "rotation.state"), "done");
    assert_int_equal(json_integer_value(cz_get(r->json, "current_version")), 2);
    assert_string_equal(versions(r, vs, sizeof(vs)), "2");
    assert_true(json_integer_value(cz_get(r->json, "rotation.rewrapped")) >= 3);
    assert_int_equal(json_integer_value(cz_get(r->json, "rotation.destroyed_versions")), 1);
    assert_non_null(cz_str(r->json, "rotation.finished_at"));
    snprintf(path, sizeof(path), "%s/keys/master-1.key", s->data);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(path, sizeof(path), "%s/keys/master-2.key", s->data);
    assert_int_equal(access(path, F_OK), 0);
    for (i = 0; i < 3; i++) {
        r = cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=account", ids[i]), s->svc.token, NULL);
        cz_expect(r, 200);
        assert_string_equal(cz_str(r->json, "fields.name"), "한지우");
    }
    cz_create_subject(s, s->svc.token, SUBJECT); /* new keys under 2 */

    entries = cz_ledger_entries(s);
    ev = cz_find_event(entries, "action", "keys.rotate", "reason", "started", NULL);
    assert_non_null(ev);
    assert_string_equal(cz_str(ev, "actor"), "admin");
    assert_string_equal(cz_str(ev, "target"), "master-key v1 -> v2");
    for (ev = NULL, i = 0; !ev && i < (int)json_array_size(entries); i++) { /* the outcome: no reason, a count */
        json_t *e = json_object_get(json_array_get(entries, (size_t)i), "event");

        if (strcmp(cz_str(e, "action"), "keys.rotate") == 0 && !cz_get(e, "reason"))
            ev = e;
    }
    assert_non_null(ev);
    assert_string_equal(cz_str(ev, "result"), "ok");
    assert_string_equal(cz_str(ev, "target"), "master-key v1 -> v2");
    assert_true(json_integer_value(cz_get(ev, "count")) >= 3);
    assert_non_null(cz_find_event(entries, "action", "keys.status", "result", "denied", NULL));

    /* the server's log tells of its end (the tick looks every 200 ms) */
    for (i = 0; i < 250; i++) {
        FILE *fp = fopen(s->log, "r");
        char line[1024];
        int found = 0;

        assert_non_null(fp);
        while (!found && fgets(line, sizeof(line), fp))
            found = strstr(line, "custos: master key rotation v1 -> v2 done: ") != NULL;
        fclose(fp);
        if (found)
            break;
        usleep(20 * 1000);
    }
    assert_true(i < 250);

    /* a second one, then a restart: version 3 current, nothing to report */
    cz_expect(cz_req(s, "POST", "/v1/keys/rotate", s->admin.token, "{}"), 202);
    r = wait_done(s);
    assert_string_equal(cz_str(r->json, "rotation.state"), "done");
    cz_server_stop(s);
    cz_server_start(s);
    r = cz_req(s, "GET", "/v1/keys", s->admin.token, NULL);
    cz_expect(r, 200);
    assert_int_equal(json_integer_value(cz_get(r->json, "current_version")), 3);
    assert_string_equal(versions(r, vs, sizeof(vs)), "3");
    assert_true(json_is_null(cz_get(r->json, "rotation")));
    cz_expect(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=account", ids[0]), s->svc.token, NULL), 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rotate_while_serving, cz_setup_std, cz_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_api_subjects.c - /v1/subjects: create (random 128-bit ids), read per
 * purpose under the default policy (service/account plain, service/delivery
 * name+phone+address_book, support/support masked with entrance_code
 * hidden), fields= filtering, PATCH (replace, null removes), blind-index
 * search (email case-insensitive, phone separators and +82 normalised),
 * DELETE with its signed receipt, and 410 for everything afterwards.
 */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "custos/note.h"

#include "custos/banned.h"

static const char ALICE[] =
    "{\"name\":\"선우안\",\"email\":\"abcdef@gmail.com\",\"phone\":\"010-1234-6960\",\"birth_date\":\"1990-04-01\","
    "\"customs_code\":\"P123456789081\",\"address_book\":["
    "{\"recipient\":\"선우안\",\"phone\":\"010-1234-6960\",\"address\":\"서울특별시 강남구 테헤란로 123\","
    "\"entrance_code\":\"#1234\"},"
    "{\"recipient\":\"김철수\",\"phone\":\"010-9876-5432\",\"address\":\"부산광역시 해운대구 우동 1\","
    "\"entrance_code\":\"*5678#\"}]}";

/* support/support view of ALICE: the masking styles of the contract, entrance_code absent */
static const char ALICE_MASKED[] =
    "{\"name\":\"선*안\",\"email\":\"ab****@gmail.com\",\"phone\":\"010-****-6960\",\"birth_date\":\"1990-**-**\","
    "\"customs_code\":\"P**********81\",\"address_book\":["
    "{\"recipient\":\"선*안\",\"phone\":\"010-****-6960\",\"address\":\"서울특별시 강남구 ****\"},"
    "{\"recipient\":\"김*수\",\"phone\":\"010-****-5432\",\"address\":\"부산광역시 해운대구 ****\"}]}";

static const char BOB[] = "{\"name\":\"박보검\",\"email\":\"Bob.Park@Example.COM\",\"phone\":\"+82 10-5555-0101\"}";

static json_t *parse(struct cz_server *s, const char *text)
{
    json_t *j = json_loads(text, 0, NULL);

    assert_non_null(j);
    return cz_keep_json(s, j);
}

static const struct cz_resp *read_subject(struct cz_server *s, const char *token, const char *id, const char *query)
{
    return cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s%s%s", id, query ? "?" : "", query ? query : ""), token, NULL);
}

/* ids found by a search; asserts 200 and the shape. */
static json_t *search(struct cz_server *s, const char *token, const char *field, const char *value,
                      const char *purpose)
{
    const struct cz_resp *r = cz_req(
        s, "GET", cz_fmt(s, "/v1/subjects?%s=%s&purpose=%s", field, cz_esc(s, value), purpose), token, NULL);
    json_t *ids;

    cz_expect(r, 200);
    assert_non_null(strstr(r->cache_control, "no-store"));
    ids = cz_get(r->json, "ids");
    assert_true(json_is_array(ids));
    return ids;
}

static int ids_contain(json_t *ids, const char *id)
{
    size_t i;

    for (i = 0; i < json_array_size(ids); i++)
        if (strcmp(json_string_value(json_array_get(ids, i)), id) == 0)
            return 1;
    return 0;
}

static int set_has(json_t *arr, const char *v)
{
    return ids_contain(arr, v);
}

static void test_create_random_ids(void **state)
{
    struct cz_server *s = *state;
    const char *ids[8];
    size_t i, k;

    for (i = 0; i < 8; i++) {
        const struct cz_resp *r = cz_req(s, "POST", "/v1/subjects", s->svc.token, i % 2 ? ALICE : BOB);

        cz_expect(r, 201);
        assert_non_null(strstr(r->cache_control, "no-store"));
        assert_int_equal(json_object_size(r->json), 1);
        ids[i] = cz_fmt(s, "%s", cz_str(r->json, "id"));
        assert_true(cz_is_id(ids[i]));
    }
    /* 128 random bits: no two share even their first 64 bits, and none is a counter */
    for (i = 0; i < 8; i++)
        for (k = i + 1; k < 8; k++)
            assert_int_not_equal(strncmp(ids[i], ids[k], 16), 0);
    for (i = 0; i < 8; i++)
        assert_int_not_equal(strncmp(ids[i], "0000000000000000", 16), 0);
    /* same data twice, two different subjects, both readable */
    cz_expect(read_subject(s, s->svc.token, ids[1], "purpose=account"), 200);
    cz_expect(read_subject(s, s->svc.token, ids[3], "purpose=account"), 200);
}

static void test_read_service_account(void **state)
{
    struct cz_server *s = *state;
    const char *id = cz_create_subject(s, s->svc.token, ALICE);
    const struct cz_resp *r = read_subject(s, s->svc.token, id, "purpose=account");

    cz_expect(r, 200);
    assert_non_null(strstr(r->content_type, "application/json"));
    assert_non_null(strstr(r->cache_control, "no-store"));
    assert_string_equal(cz_str(r->json, "id"), id);
    assert_true(json_equal(cz_get(r->json, "fields"), parse(s, ALICE)));
    assert_true(json_is_array(cz_get(r->json, "masked")));
    assert_int_equal(json_array_size(cz_get(r->json, "masked")), 0);
}

static void test_read_service_delivery(void **state)
{
    struct cz_server *s = *state;
    const char *id = cz_create_subject(s, s->svc.token, ALICE);
    const struct cz_resp *r = read_subject(s, s->svc.token, id, "purpose=delivery");
    json_t *in = parse(s, ALICE), *f;

    cz_expect(r, 200);
    f = cz_get(r->json, "fields");
    assert_int_equal(json_object_size(f), 3);
    assert_true(json_equal(json_object_get(f, "name"), json_object_get(in, "name")));
    assert_true(json_equal(json_object_get(f, "phone"), json_object_get(in, "phone")));
    assert_true(json_equal(json_object_get(f, "address_book"), json_object_get(in, "address_book")));
    assert_null(json_object_get(f, "email"));
    assert_null(json_object_get(f, "customs_code"));
    assert_null(json_object_get(f, "birth_date"));
    assert_int_equal(json_array_size(cz_get(r->json, "masked")), 0);
    assert_null(strstr(r->body, "abcdef@gmail.com"));
    assert_null(strstr(r->body, "P123456789081"));
}

static void test_read_support_masked(void **state)
{
    struct cz_server *s = *state;
    const char *id = cz_create_subject(s, s->svc.token, ALICE);
    const struct cz_resp *r = read_subject(s, s->sup.token, id, "purpose=support");
    static const char *const paths[] = {"name", "email", "phone", "birth_date", "customs_code",
                                        "address_book[0].recipient", "address_book[0].phone",
                                        "address_book[0].address", "address_book[1].recipient",
                                        "address_book[1].phone", "address_book[1].address", NULL};
    json_t *masked;
    size_t i;

    cz_expect(r, 200);
    assert_non_null(strstr(r->cache_control, "no-store"));
    if (!json_equal(cz_get(r->json, "fields"), parse(s, ALICE_MASKED)))
        fail_msg("support view differs:\n got %s\nwant %s", r->body, ALICE_MASKED);
    masked = cz_get(r->json, "masked");
    for (i = 0; paths[i]; i++)
        if (!set_has(masked, paths[i]))
            fail_msg("'%s' missing from masked: %s", paths[i], r->body);
    assert_int_equal(json_array_size(masked), 11);
    /* neither entrance code, nor any plain value, leaves the vault */
    assert_null(strstr(r->body, "#1234"));
    assert_null(strstr(r->body, "5678"));
    assert_null(strstr(r->body, "entrance_code"));
    assert_null(strstr(r->body, "abcdef"));
    assert_null(strstr(r->body, "1234-6960"));
    assert_null(strstr(r->body, "테헤란로"));
    assert_null(strstr(r->body, "P123456789081"));
}

static void test_read_purpose_rules(void **state)
{
    struct cz_server *s = *state;
    const char *id = cz_create_subject(s, s->svc.token, ALICE);

    /* every read names a purpose */
    cz_expect_error(read_subject(s, s->svc.token, id, NULL), 400, "bad_request");
    cz_expect_error(read_subject(s, s->svc.token, id, "purpose="), 400, "bad_request");
    cz_expect_error(read_subject(s, s->svc.token, id, "fields=name"), 400, "bad_request");
    cz_expect_error(read_subject(s, s->svc.token, id, "purpose=Account"), 400, "bad_request");
    /* a purpose the role lacks */
    cz_expect_error(read_subject(s, s->svc.token, id, "purpose=support"), 403, "forbidden");
    cz_expect_error(read_subject(s, s->svc.token, id, "purpose=marketing"), 403, "forbidden");
    cz_expect_error(read_subject(s, s->sup.token, id, "purpose=account"), 403, "forbidden");
    cz_expect_error(read_subject(s, s->sup.token, id, "purpose=delivery"), 403, "forbidden");
    /* roles without personal-data reads */
    cz_expect_error(read_subject(s, s->admin_token, id, "purpose=account"), 403, "forbidden");
    cz_expect_error(read_subject(s, s->aud.token, id, "purpose=account"), 403, "forbidden");
    cz_expect_error(read_subject(s, s->mint.token, id, "purpose=account"), 403, "forbidden");
    /* an id nobody created */
    cz_expect_error(read_subject(s, s->svc.token, "0123456789abcdef0123456789abcdef", "purpose=account"), 404,
                    "not_found");
    cz_expect(read_subject(s, s->svc.token, id, "purpose=account"), 200);
}

static void test_read_fields_filter(void **state)
{
    struct cz_server *s = *state;
    const char *id = cz_create_subject(s, s->svc.token, ALICE);
    const struct cz_resp *r;
    json_t *f;

    r = read_subject(s, s->svc.token, id, "purpose=account&fields=name,email");
    cz_expect(r, 200);
    f = cz_get(r->json, "fields");
    assert_int_equal(json_object_size(f), 2);
    assert_string_equal(cz_str(f, "name"), "선우안");
    assert_string_equal(cz_str(f, "email"), "abcdef@gmail.com");

    r = read_subject(s, s->svc.token, id, "purpose=account&fields=address_book");
    cz_expect(r, 200);
    f = cz_get(r->json, "fields");
    assert_int_equal(json_object_size(f), 1);
    assert_true(json_equal(json_object_get(f, "address_book"), json_object_get(parse(s, ALICE), "address_book")));

    /* fields= narrows, never widens: email stays hidden for delivery */
    r = read_subject(s, s->svc.token, id, "purpose=delivery&fields=email,name");
    cz_expect(r, 200);
    f = cz_get(r->json, "fields");
    assert_null(json_object_get(f, "email"));
    assert_string_equal(cz_str(f, "name"), "선우안");
    assert_null(strstr(r->body, "abcdef"));

    r = read_subject(s, s->sup.token, id, "purpose=support&fields=phone");
    cz_expect(r, 200);
    assert_string_equal(cz_str(r->json, "fields.phone"), "010-****-6960");
    assert_int_equal(json_object_size(cz_get(r->json, "fields")), 1);
    assert_int_equal(json_array_size(cz_get(r->json, "masked")), 1);

    cz_expect_error(read_subject(s, s->svc.token, id, "purpose=account&fields=name,nickname"), 400, "bad_request");
    cz_expect_error(read_subject(s, s->svc.token, id, "purpose=account&fields=nickname"), 400, "bad_request");
    cz_expect_error(read_subject(s, s->svc.token, id, "purpose=account&fields="), 400, "bad_request");
    cz_expect_error(read_subject(s, s->svc.token, id, "purpose=account&fields=name,"), 400, "bad_request");
    cz_expect_error(read_subject(s, s->svc.token, id, "purpose=account&fields=address_book.phone"), 400,
                    "bad_request");
}

static void test_patch(void **state)
{
    struct cz_server *s = *state;
    const char *id = cz_create_subject(s, s->svc.token, ALICE);
    const struct cz_resp *r;
    json_t *f;

    r = cz_req(s, "PATCH", cz_fmt(s, "/v1/subjects/%s", id), s->svc.token,
               "{\"email\":\"new.address@naver.com\",\"phone\":\"010-7777-8888\"}");
    cz_expect(r, 200);
    assert_non_null(strstr(r->cache_control, "no-store"));
    assert_string_equal(cz_str(r->json, "id"), id);
    assert_true(set_has(cz_get(r->json, "updated"), "email"));
    assert_true(set_has(cz_get(r->json, "updated"), "phone"));
    r = read_subject(s, s->svc.token, id, "purpose=account");
    cz_expect(r, 200);
    f = cz_get(r->json, "fields");
    assert_string_equal(cz_str(f, "email"), "new.address@naver.com");
    assert_string_equal(cz_str(f, "phone"), "010-7777-8888");
    assert_string_equal(cz_str(f, "name"), "선우안");                /* untouched */
    assert_string_equal(cz_str(f, "customs_code"), "P123456789081"); /* untouched */
    assert_int_equal(json_array_size(cz_get(f, "address_book")), 2);

    /* the blind index follows: old values no longer find it, new ones do */
    assert_int_equal(json_array_size(search(s, s->svc.token, "email", "abcdef@gmail.com", "account")), 0);
    assert_true(ids_contain(search(s, s->svc.token, "email", "new.address@naver.com", "account"), id));
    assert_int_equal(json_array_size(search(s, s->svc.token, "phone", "010-1234-6960", "account")), 0);
    assert_true(ids_contain(search(s, s->svc.token, "phone", "01077778888", "account"), id));

    /* null removes a field; an array is replaced whole (sensitive: re-keyed) */
    r = cz_req(s, "PATCH", cz_fmt(s, "/v1/subjects/%s", id), s->svc.token,
               "{\"customs_code\":null,\"address_book\":[{\"recipient\":\"이몽룡\","
               "\"address\":\"전라북도 남원시 요천로 1\",\"entrance_code\":\"0000\"}]}");
    cz_expect(r, 200);
    r = read_subject(s, s->svc.token, id, "purpose=account");
    cz_expect(r, 200);
    f = cz_get(r->json, "fields");
    assert_null(json_object_get(f, "customs_code"));
    assert_true(json_equal(json_object_get(f, "address_book"),
                           parse(s, "[{\"recipient\":\"이몽룡\",\"address\":\"전라북도 남원시 요천로 1\","
                                    "\"entrance_code\":\"0000\"}]")));
    assert_string_equal(cz_str(f, "birth_date"), "1990-04-01");
    /* removing a searchable field takes it out of the index */
    cz_expect(cz_req(s, "PATCH", cz_fmt(s, "/v1/subjects/%s", id), s->svc.token, "{\"email\":null}"), 200);
    assert_int_equal(json_array_size(search(s, s->svc.token, "email", "new.address@naver.com", "account")), 0);
    r = read_subject(s, s->svc.token, id, "purpose=account");
    assert_null(cz_get(r->json, "fields.email"));

    /* rules */
    cz_expect_error(cz_req(s, "PATCH", cz_fmt(s, "/v1/subjects/%s", id), s->svc.token, "{}"), 400, "bad_request");
    cz_expect_error(cz_req(s, "PATCH", cz_fmt(s, "/v1/subjects/%s", id), s->sup.token, "{\"name\":\"x\"}"), 403,
                    "forbidden");
    cz_expect_error(cz_req(s, "PATCH", cz_fmt(s, "/v1/subjects/%s", id), NULL, "{\"name\":\"x\"}"), 401,
                    "unauthenticated");
    cz_expect_error(cz_req(s, "PATCH", "/v1/subjects/0123456789abcdef0123456789abcdef", s->svc.token,
                           "{\"name\":\"x\"}"),
                    404, "not_found");
    r = read_subject(s, s->svc.token, id, "purpose=account&fields=name");
    assert_string_equal(cz_str(r->json, "fields.name"), "선우안");
}

static void test_search(void **state)
{
    struct cz_server *s = *state;
    const char *a = cz_create_subject(s, s->svc.token, ALICE);
    const char *b = cz_create_subject(s, s->svc.token, BOB);
    static const char *const alice_phones[] = {"010-1234-6960", "01012346960", "010 1234 6960", "(010) 1234-6960",
                                               "+82 10-1234-6960", "+82-10-1234-6960", "+821012346960",
                                               " 010-1234-6960 ", NULL};
    static const char *const bob_phones[] = {"010-5555-0101", "01055550101", "+82 10 5555 0101", NULL};
    static const char *const alice_emails[] = {"abcdef@gmail.com", "ABCDEF@GMAIL.COM", "AbCdEf@Gmail.Com", NULL};
    static const char *const bob_emails[] = {"bob.park@example.com", "Bob.Park@Example.COM", "BOB.PARK@EXAMPLE.COM",
                                             NULL};
    const struct cz_resp *r;
    json_t *ids;
    size_t i;

    for (i = 0; alice_emails[i]; i++) {
        ids = search(s, s->svc.token, "email", alice_emails[i], "account");
        assert_int_equal(json_array_size(ids), 1);
        assert_true(ids_contain(ids, a));
    }
    for (i = 0; bob_emails[i]; i++) {
        ids = search(s, s->svc.token, "email", bob_emails[i], "account");
        assert_int_equal(json_array_size(ids), 1);
        assert_true(ids_contain(ids, b));
    }
    for (i = 0; alice_phones[i]; i++) {
        ids = search(s, s->svc.token, "phone", alice_phones[i], "account");
        if (json_array_size(ids) != 1 || !ids_contain(ids, a))
            fail_msg("phone search '%s' did not find exactly the subject", alice_phones[i]);
    }
    for (i = 0; bob_phones[i]; i++) {
        ids = search(s, s->svc.token, "phone", bob_phones[i], "account");
        if (json_array_size(ids) != 1 || !ids_contain(ids, b))
            fail_msg("phone search '%s' did not find exactly the subject", bob_phones[i]);
    }
    /* '+' unescaped in a query string is a space: "+82..." then no longer means Korea */
    r = cz_req(s, "GET", "/v1/subjects?phone=+821012346960&purpose=account", s->svc.token, NULL);
    cz_expect(r, 200);
    assert_false(ids_contain(cz_get(r->json, "ids"), a));
    /* no match, near misses */
    assert_int_equal(json_array_size(search(s, s->svc.token, "email", "abcdef@gmail.co", "account")), 0);
    assert_int_equal(json_array_size(search(s, s->svc.token, "email", "abcde@gmail.com", "account")), 0);
    assert_int_equal(json_array_size(search(s, s->svc.token, "phone", "010-1234-6961", "account")), 0);
    /* an address-book phone is not a searchable field */
    assert_int_equal(json_array_size(search(s, s->svc.token, "phone", "010-9876-5432", "account")), 0);
    /* support may search (for its purpose), delivery purpose works for service */
    assert_true(ids_contain(search(s, s->sup.token, "email", "abcdef@gmail.com", "support"), a));
    assert_true(ids_contain(search(s, s->svc.token, "phone", "01012346960", "delivery"), a));
    /* rules */
    cz_expect_error(cz_req(s, "GET", "/v1/subjects?email=abcdef%40gmail.com", s->svc.token, NULL), 400,
                    "bad_request");
    cz_expect_error(cz_req(s, "GET", "/v1/subjects?purpose=account", s->svc.token, NULL), 400, "bad_request");
    cz_expect_error(cz_req(s, "GET", "/v1/subjects?email=abcdef%40gmail.com&phone=01012346960&purpose=account",
                           s->svc.token, NULL),
                    400, "bad_request");
    cz_expect_error(cz_req(s, "GET", "/v1/subjects?name=x&purpose=account", s->svc.token, NULL), 400, "bad_request");
    cz_expect_error(cz_req(s, "GET", "/v1/subjects?email=&purpose=account", s->svc.token, NULL), 400, "bad_request");
    cz_expect_error(cz_req(s, "GET", "/v1/subjects?email=abcdef%40gmail.com&purpose=support", s->svc.token, NULL),
                    403, "forbidden");
    cz_expect_error(cz_req(s, "GET", "/v1/subjects?email=abcdef%40gmail.com&purpose=account", s->aud.token, NULL),
                    403, "forbidden");
    cz_expect_error(cz_req(s, "GET", "/v1/subjects?email=abcdef%40gmail.com&purpose=account", s->admin_token, NULL),
                    403, "forbidden");
    cz_expect_error(cz_req(s, "GET", "/v1/subjects?email=abcdef%40gmail.com&purpose=account", NULL, NULL), 401,
                    "unauthenticated");
}

/* The erasure receipt: Ed25519 by the ledger key over the documented text. */
static void check_receipt(struct cz_server *s, json_t *rc, const char *id)
{
    struct custos_note_verifier v;
    const char *sig64 = cz_str(rc, "signature"), *when = cz_str(rc, "erased_at");
    unsigned char sig[64];
    size_t siglen = 0;
    const char *text;

    assert_string_equal(cz_str(rc, "subject"), id);
    assert_non_null(when);
    assert_true(strlen(when) >= 20 && when[4] == '-' && when[10] == 'T' && when[strlen(when) - 1] == 'Z');
    assert_true(json_is_integer(cz_get(rc, "ledger_index")));
    assert_non_null(sig64);
    assert_int_equal(sodium_base642bin(sig, sizeof(sig), sig64, strlen(sig64), NULL, &siglen, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(siglen, 64);
    assert_int_equal(custos_note_vkey_parse(&v, s->vkey), CUSTOS_OK);
    text = cz_fmt(s, "custos-erasure-receipt/v1\norigin %s\nsubject %s\nerased_at %s\nledger_index %lld\n", v.name,
                  id, when, (long long)json_integer_value(cz_get(rc, "ledger_index")));
    if (crypto_sign_verify_detached(sig, (const unsigned char *)text, strlen(text), v.pubkey) != 0)
        fail_msg("erasure receipt signature does not verify with the ledger key");
}

static void test_erase(void **state)
{
    struct cz_server *s = *state;
    const char *id = cz_create_subject(s, s->svc.token, ALICE);
    const char *other = cz_create_subject(s, s->svc.token, BOB);
    const char *path = cz_fmt(s, "/v1/subjects/%s", id);
    const char *own = cz_mint(s, id); /* the subject's own token, for export */
    const struct cz_resp *r;
    json_t *entries, *ev;

    assert_true(ids_contain(search(s, s->svc.token, "email", "abcdef@gmail.com", "account"), id));
    /* only roles with subject.erase */
    cz_expect_error(cz_req(s, "DELETE", path, s->sup.token, NULL), 403, "forbidden");
    cz_expect_error(cz_req(s, "DELETE", path, s->admin_token, NULL), 403, "forbidden");
    cz_expect_error(cz_req(s, "DELETE", path, NULL, NULL), 401, "unauthenticated");
    cz_expect(read_subject(s, s->svc.token, id, "purpose=account"), 200);

    r = cz_req(s, "DELETE", path, s->svc.token, NULL);
    cz_expect(r, 200);
    assert_non_null(strstr(r->cache_control, "no-store"));
    check_receipt(s, r->json, id);
    /* the receipt's ledger index holds the erasure event for this subject */
    entries = cz_ledger_entries(s);
    ev = json_object_get(json_array_get(entries, (size_t)json_integer_value(cz_get(r->json, "ledger_index"))),
                         "event");
    assert_string_equal(cz_str(ev, "action"), "subject.erase");
    assert_string_equal(cz_str(ev, "subject"), id);
    assert_string_equal(cz_str(ev, "result"), "ok");

    /* gone, for every route and every role */
    cz_expect_error(read_subject(s, s->svc.token, id, "purpose=account"), 410, "gone");
    cz_expect_error(read_subject(s, s->sup.token, id, "purpose=support"), 410, "gone");
    cz_expect_error(cz_req(s, "DELETE", path, s->svc.token, NULL), 410, "gone");
    cz_expect_error(cz_req(s, "PATCH", path, s->svc.token, "{\"name\":\"부활\"}"), 410, "gone");
    /* the subject's own token: gone with it (410), or revoked by the erasure (401) */
    r = cz_req(s, "GET", cz_fmt(s, "%s/export", path), own, NULL);
    cz_expect_error(r, r->status == 401 ? 401 : 410, NULL);
    assert_null(cz_get(r->json, "fields"));
    cz_expect_error(cz_req(s, "POST", cz_fmt(s, "%s/token", path), s->mint.token, NULL), 410, "gone");
    assert_int_equal(json_array_size(search(s, s->svc.token, "email", "abcdef@gmail.com", "account")), 0);
    assert_int_equal(json_array_size(search(s, s->svc.token, "phone", "010-1234-6960", "account")), 0);
    /* the other subject is untouched */
    r = read_subject(s, s->svc.token, other, "purpose=account");
    cz_expect(r, 200);
    assert_string_equal(cz_str(r->json, "fields.name"), "박보검");
    assert_true(ids_contain(search(s, s->svc.token, "email", "bob.park@example.com", "account"), other));
    /* never-existing ids are 404, not 410 */
    cz_expect_error(cz_req(s, "DELETE", "/v1/subjects/0123456789abcdef0123456789abcdef", s->svc.token, NULL), 404,
                    "not_found");
}

static void test_export(void **state)
{
    struct cz_server *s = *state;
    const char *id = cz_create_subject(s, s->svc.token, ALICE);
    const char *own = cz_mint(s, id);
    const struct cz_resp *r = cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s/export", id), own, NULL);

    /* everything held, all plain: the subject's own copy (entrance codes included) */
    cz_expect(r, 200);
    assert_non_null(strstr(r->cache_control, "no-store"));
    assert_string_equal(cz_str(r->json, "id"), id);
    assert_true(json_equal(cz_get(r->json, "fields"), parse(s, ALICE)));
    /* staff without the export operation */
    cz_expect_error(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s/export", id), s->sup.token, NULL), 403, "forbidden");
    cz_expect_error(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s/export", id), s->aud.token, NULL), 403, "forbidden");
    cz_expect_error(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s/export", id), s->mint.token, NULL), 403, "forbidden");
    cz_expect_error(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s/export", id), s->admin_token, NULL), 403,
                    "forbidden");
    cz_expect_error(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s/export", id), NULL, NULL), 401, "unauthenticated");
}

/*
 * Regression (fixed: ids must be lowercase): subject ids are issued as 32 lowercase hex digits, but the id
 * parser (sodium_hex2bin) also takes upper case, and the read, update (and
 * export) responses echo the id as the caller spelled it: GET
 * /v1/subjects/970DC57D...?purpose=account answers 200 with
 * "id":"970DC57D..." while search, create and erasure receipts say
 * "970dc57d...".  One subject, 2^32 spellings, and clients comparing ids
 * disagree.  Expected: either 400 (malformed id) or the canonical lower-case
 * id in the response.
 */
static void test_id_spelling_is_canonical(void **state)
{
    struct cz_server *s = *state;
    const char *id = cz_create_subject(s, s->svc.token, BOB);
    char upper[33];
    const struct cz_resp *r;
    size_t i;

    for (i = 0; i < 33; i++)
        upper[i] = (char)(id[i] >= 'a' && id[i] <= 'f' ? id[i] - 'a' + 'A' : id[i]);
    if (strcmp(upper, id) == 0)
        return; /* all 32 digits decimal (p ~ 3e-7): no other spelling exists */
    r = cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=account", upper), s->svc.token, NULL);
    if (r->status == 400)
        return;
    cz_expect(r, 200);
    assert_string_equal(cz_str(r->json, "id"), id);
    r = cz_req(s, "PATCH", cz_fmt(s, "/v1/subjects/%s", upper), s->svc.token, "{\"name\":\"박서준\"}");
    cz_expect(r, 200);
    assert_string_equal(cz_str(r->json, "id"), id);
}

/* ---- concurrency: thread-per-connection server, many writers at once ---------------------- */

#define CONC_THREADS 8
#define CONC_EACH 6

struct conc {
    const char *base, *token;
    int t;
    int ok;
    char ids[CONC_EACH][33];
    char why[256];
};

static size_t conc_body(char *data, size_t size, size_t n, void *ctx)
{
    char **buf = ctx;
    size_t old = *buf ? strlen(*buf) : 0, add = size * n;
    char *nb = realloc(*buf, old + add + 1);

    if (!nb)
        return 0;
    memcpy(nb + old, data, add);
    nb[old + add] = '\0';
    *buf = nb;
    return add;
}

/* One request on the thread's own handle; the parsed body or NULL; *status. */
static json_t *conc_req(CURL *c, struct conc *w, const char *method, const char *path, const char *body,
                        long *status)
{
    char url[512], auth[128];
    struct curl_slist *h = NULL;
    char *buf = NULL;
    json_t *j = NULL;
    CURLcode cc;

    snprintf(url, sizeof(url), "%s%s", w->base, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", w->token);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Expect:");
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, conc_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &buf);
    if (body) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    cc = curl_easy_perform(c);
    *status = 0;
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    if (buf)
        j = json_loads(buf, 0, NULL);
    free(buf);
    curl_slist_free_all(h);
    return j;
}

static void *conc_worker(void *arg)
{
    struct conc *w = arg;
    CURL *c = curl_easy_init();
    int i;

    w->ok = 0;
    if (!c) {
        snprintf(w->why, sizeof(w->why), "curl_easy_init failed");
        return NULL;
    }
    for (i = 0; i < CONC_EACH; i++) {
        char body[256], path[256], email[64];
        long st;
        json_t *j;

        snprintf(email, sizeof(email), "conc-%d-%d@example.com", w->t, i);
        snprintf(body, sizeof(body), "{\"name\":\"동시%d-%d\",\"email\":\"%s\",\"phone\":\"010-%04d-%04d\"}",
                 w->t, i, email, w->t, i);
        j = conc_req(c, w, "POST", "/v1/subjects", body, &st);
        if (st != 201 || !cz_str(j, "id") || !cz_is_id(cz_str(j, "id"))) {
            snprintf(w->why, sizeof(w->why), "create %s: HTTP %ld", email, st);
            json_decref(j);
            goto done;
        }
        snprintf(w->ids[i], sizeof(w->ids[i]), "%s", cz_str(j, "id"));
        json_decref(j);
        snprintf(path, sizeof(path), "/v1/subjects/%s?purpose=account", w->ids[i]);
        j = conc_req(c, w, "GET", path, NULL, &st);
        if (st != 200 || !cz_str(j, "fields.email") || strcmp(cz_str(j, "fields.email"), email) != 0) {
            snprintf(w->why, sizeof(w->why), "read back %s: HTTP %ld or another subject's data", email, st);
            json_decref(j);
            goto done;
        }
        json_decref(j);
        snprintf(path, sizeof(path), "/v1/subjects?phone=010%04d%04d&purpose=account", w->t, i);
        j = conc_req(c, w, "GET", path, NULL, &st);
        if (st != 200 || json_array_size(cz_get(j, "ids")) != 1 ||
            strcmp(json_string_value(json_array_get(cz_get(j, "ids"), 0)), w->ids[i]) != 0) {
            snprintf(w->why, sizeof(w->why), "search %s: HTTP %ld or wrong ids", email, st);
            json_decref(j);
            goto done;
        }
        json_decref(j);
    }
    w->ok = 1;
done:
    curl_easy_cleanup(c);
    return NULL;
}

static void test_concurrent_clients(void **state)
{
    struct cz_server *s = *state;
    struct conc w[CONC_THREADS];
    pthread_t th[CONC_THREADS];
    int i, k, a, b;

    for (i = 0; i < CONC_THREADS; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].base = s->base;
        w[i].token = s->svc.token;
        w[i].t = i;
        assert_int_equal(pthread_create(&th[i], NULL, conc_worker, &w[i]), 0);
    }
    for (i = 0; i < CONC_THREADS; i++)
        pthread_join(th[i], NULL);
    for (i = 0; i < CONC_THREADS; i++)
        if (!w[i].ok)
            fail_msg("client %d: %s", i, w[i].why);
    for (i = 0; i < CONC_THREADS; i++)
        for (k = 0; k < CONC_EACH; k++)
            for (a = i; a < CONC_THREADS; a++)
                for (b = (a == i ? k + 1 : 0); b < CONC_EACH; b++)
                    assert_string_not_equal(w[i].ids[k], w[a].ids[b]);
    /* and the ledger recorded every one of them */
    {
        json_t *e = cz_ledger_entries(s);

        for (i = 0; i < CONC_THREADS; i++)
            for (k = 0; k < CONC_EACH; k++) {
                assert_non_null(cz_find_event(e, "action", "subject.create", "subject", w[i].ids[k], "result", "ok",
                                              NULL));
                assert_non_null(cz_find_event(e, "action", "subject.read", "subject", w[i].ids[k], "result", "ok",
                                              NULL));
            }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_random_ids, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_read_service_account, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_read_service_delivery, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_read_support_masked, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_read_purpose_rules, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_read_fields_filter, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_patch, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_search, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_erase, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_export, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_clients, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_id_spelling_is_canonical, cz_setup_std, cz_teardown),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests_name("api subjects", tests, NULL, NULL);
}

/*
 * test_auth.c - the request bodies of /v1/principals and /v1/auth (auth.c), parsed without a
 * vault: custos_token_issue_parse, custos_token_revoke_parse, custos_principal_create_parse.
 * Pins the codes and details the API answers (tests/api cover the same through HTTP), good and
 * bad input alike.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/policy.h"
#include "core/vault_int.h"
#include "custos/err.h"

#include "custos/banned.h"

#define TOKEN "cus_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
#define SECRET "cps_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"

#define S(lit) lit, sizeof(lit) - 1

static void expect_err(enum custos_err got, enum custos_err want, const char *detail)
{
    assert_int_equal(got, want);
    assert_string_equal(custos_err_msg(got), detail);
}

static enum custos_err issue(const char *body, const char **id, const char **secret)
{
    json_t *j = NULL;
    enum custos_err rc = custos_token_issue_parse(body, strlen(body), &j, id, secret);

    /* the strings live in j: compare them before it goes */
    if (!rc) {
        assert_string_equal(*id, "ops");
        assert_string_equal(*secret, SECRET);
    }
    json_decref(j);
    return rc;
}

static void test_token_issue_parse(void **state)
{
    const char *id, *secret;
    char big[CUSTOS_BODY_MAX + 2];
    json_t *j = NULL;

    (void)state;
    assert_int_equal(issue("{\"principal\":\"ops\",\"secret\":\"" SECRET "\"}", &id, &secret), CUSTOS_OK);
    /* the secret is not decoded here (custos_token_issue does it with the same work whatever it is) */
    assert_int_equal(custos_token_issue_parse(S("{\"principal\":\"ops\",\"secret\":\"x\"}"), &j, &id, &secret),
                     CUSTOS_OK);
    assert_string_equal(secret, "x");
    json_decref(j);
    expect_err(issue("", &id, &secret), CUSTOS_ERR_INVALID, "empty body: expected a JSON object");
    expect_err(issue("[]", &id, &secret), CUSTOS_ERR_INVALID, "expected a JSON object");
    expect_err(issue("{\"principal\":\"ops\"}", &id, &secret), CUSTOS_ERR_INVALID, "missing field 'secret'");
    expect_err(issue("{\"principal\":\"ops\",\"secret\":\"" SECRET "\",\"x\":1}", &id, &secret), CUSTOS_ERR_INVALID,
               "unknown field 'x' in request");
    expect_err(issue("{\"principal\":1,\"secret\":\"s\"}", &id, &secret), CUSTOS_ERR_INVALID,
               "field 'principal' must be a string");
    expect_err(issue("{\"principal\":\"Ops\",\"secret\":\"s\"}", &id, &secret), CUSTOS_ERR_INVALID,
               "malformed principal id");
    expect_err(issue("{\"principal\":\"ops\",\"secret\":\"" SECRET SECRET "\"}", &id, &secret), CUSTOS_ERR_INVALID,
               "field 'secret' is longer than 64 bytes");
    expect_err(issue("{\"principal\":\"ops\",\"principal\":\"ops\",\"secret\":\"s\"}", &id, &secret),
               CUSTOS_ERR_INVALID, "duplicate key in JSON object");
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    expect_err(issue(big, &id, &secret), CUSTOS_ERR_TOOBIG, "request body exceeds 65536 bytes");
}

static void test_token_revoke_parse(void **state)
{
    static const char good[] = "{\"token\":\"" TOKEN "\"}";
    uint8_t raw[32], want[32];
    size_t i;

    (void)state;
    for (i = 0; i < 32; i++)
        want[i] = (uint8_t)i;
    assert_int_equal(custos_token_revoke_parse(good, strlen(good), raw), CUSTOS_OK);
    assert_memory_equal(raw, want, 32);
    expect_err(custos_token_revoke_parse(S("{}"), raw), CUSTOS_ERR_INVALID, "missing field 'token'");
    expect_err(custos_token_revoke_parse(S("{\"token\":\"" SECRET "\"}"), raw),
               CUSTOS_ERR_INVALID, "malformed token");
    expect_err(custos_token_revoke_parse(S("{\"token\":\"cus_\"}"), raw), CUSTOS_ERR_INVALID, "malformed token");
    /* raw is wiped on failure */
    assert_memory_equal(raw, (uint8_t[32]){0}, 32);
    expect_err(custos_token_revoke_parse(S("{\"token\":\"" TOKEN "\",\"all\":true}"), raw), CUSTOS_ERR_INVALID,
               "unknown field 'all' in request");
    expect_err(custos_token_revoke_parse(S("{\"token\":"), raw), CUSTOS_ERR_INVALID,
               "invalid JSON at line 1 column 9");
}

/*
 * A credential that fails to parse leaves nothing of itself in the caller's buffer.  The last
 * character of a 43-character base64url value carries 2 bits that must be zero; with them set,
 * every byte decodes (the real token but for its last 2 bits: a mistyped or tampered token) and
 * only then is the value refused.  custos_authenticate's buffer is on the stack and returned
 * from without a wipe, so the parser itself must wipe what it wrote.
 */
static void test_credential_parse_wipes_on_failure(void **state)
{
    static const char noncanon[] = "cus_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9"; /* TOKEN, last bits 01 */
    uint8_t raw[32], want[32];
    size_t i;

    (void)state;
    for (i = 0; i < 32; i++)
        want[i] = (uint8_t)i;
    assert_int_equal(custos_credential_parse(TOKEN, "cus_", raw), CUSTOS_OK);
    assert_memory_equal(raw, want, 32);
    memset(raw, 0xa5, sizeof(raw));
    assert_int_equal(custos_credential_parse(noncanon, "cus_", raw), CUSTOS_ERR_INVALID);
    assert_memory_equal(raw, (uint8_t[32]){0}, 32);
    memset(raw, 0xa5, sizeof(raw));
    assert_int_equal(custos_credential_parse(TOKEN, "cps_", raw), CUSTOS_ERR_INVALID);
    assert_memory_equal(raw, (uint8_t[32]){0}, 32);
    memset(raw, 0xa5, sizeof(raw));
    assert_int_equal(custos_credential_parse(NULL, "cus_", raw), CUSTOS_ERR_INVALID);
    assert_memory_equal(raw, (uint8_t[32]){0}, 32);
}

static unsigned last_ttl; /* the secret_ttl_days the last create() parsed */

static enum custos_err create(const struct custos_policy *pol, const char *body, const char **id, char *roles)
{
    json_t *j = NULL;
    const char *kind = NULL;
    enum custos_err rc = custos_principal_create_parse(pol, body, strlen(body), &j, id, &kind, roles, 256, &last_ttl);

    if (*id)
        *id = strcmp(*id, "ops") == 0 ? "ops" : "other"; /* j goes now */
    if (!rc)
        assert_true(strcmp(kind, "staff") == 0 || strcmp(kind, "service") == 0);
    json_decref(j);
    return rc;
}

static void test_principal_create_parse(void **state)
{
    /* a role of 32 characters: 8 of them do not fit the 255 characters of a role list */
    static const char custom[] = "{\"roles\": {\"r2345678901234567890123456789012\": {\"ops\": [\"subject.read\"]}}}";
    struct custos_policy *pol = NULL, *big = NULL;
    const char *id;
    char roles[256], body[512];
    size_t i, n;

    (void)state;
    assert_int_equal(custos_policy_load(NULL, 0, &pol), CUSTOS_OK);
    assert_int_equal(create(pol, "{\"id\":\"ops\",\"kind\":\"staff\",\"roles\":[\"admin\",\"support\"]}", &id, roles),
                     CUSTOS_OK);
    assert_string_equal(id, "ops");
    assert_string_equal(roles, "admin,support");
    assert_int_equal(last_ttl, CUSTOS_SECRET_TTL_DAYS);
    assert_int_equal(create(pol, "{\"id\":\"ops\",\"kind\":\"staff\",\"roles\":[\"admin\"],\"secret_ttl_days\":30}", &id,
                            roles),
                     CUSTOS_OK);
    assert_int_equal(last_ttl, 30);
    assert_int_equal(create(pol, "{\"id\":\"ops\",\"kind\":\"staff\",\"roles\":[\"admin\"],\"secret_ttl_days\":3650}",
                            &id, roles),
                     CUSTOS_OK);
    assert_int_equal(last_ttl, 3650);
    expect_err(create(pol, "{\"id\":\"ops\",\"kind\":\"staff\",\"roles\":[\"admin\"],\"secret_ttl_days\":0}", &id, roles),
               CUSTOS_ERR_INVALID, "secret_ttl_days must be an integer from 1 to 3650");
    expect_err(create(pol, "{\"id\":\"ops\",\"kind\":\"staff\",\"roles\":[\"admin\"],\"secret_ttl_days\":3651}", &id,
                      roles),
               CUSTOS_ERR_INVALID, "secret_ttl_days must be an integer from 1 to 3650");
    expect_err(create(pol, "{\"id\":\"ops\",\"kind\":\"staff\",\"roles\":[\"admin\"],\"secret_ttl_days\":1.5}", &id,
                      roles),
               CUSTOS_ERR_INVALID, "secret_ttl_days must be an integer from 1 to 3650");
    expect_err(create(pol, "{\"id\":\"ops\",\"kind\":\"staff\",\"roles\":[\"admin\"],\"secret_ttl_days\":\"30\"}", &id,
                      roles),
               CUSTOS_ERR_INVALID, "secret_ttl_days must be an integer from 1 to 3650");
    assert_int_equal(create(pol, "{\"id\":\"ops\",\"kind\":\"service\",\"roles\":[\"service\"]}", &id, roles),
                     CUSTOS_OK);
    assert_string_equal(roles, "service");

    /* refused before the id is known: no id for the audit event */
    expect_err(create(pol, "{\"id\":\"ops\",\"kind\":\"staff\",\"roles\":[],\"x\":1}", &id, roles), CUSTOS_ERR_INVALID,
               "unknown field 'x' in principal");
    assert_null(id);
    expect_err(create(pol, "{\"id\":\"-ops\",\"kind\":\"staff\",\"roles\":[\"admin\"]}", &id, roles),
               CUSTOS_ERR_INVALID, "principal id must match [a-z][a-z0-9._-]{0,63}");
    assert_null(id);
    expect_err(create(pol, "{\"id\":\"ops\",\"roles\":[\"admin\"]}", &id, roles), CUSTOS_ERR_INVALID,
               "missing field 'kind'");
    assert_null(id);
    expect_err(create(pol, "{\"id\":\"ops\",\"kind\":\"staff-member-of-the-team\",\"roles\":[\"admin\"]}", &id, roles),
               CUSTOS_ERR_INVALID, "field 'kind' is longer than 16 bytes");

    /* refused after the id: the event names it */
    expect_err(create(pol, "{\"id\":\"ops\",\"kind\":\"customer\",\"roles\":[\"admin\"]}", &id, roles),
               CUSTOS_ERR_INVALID,
               "customers act through tokens minted for their own subject (POST /v1/subjects/{id}/token), not "
               "through principals");
    assert_string_equal(id, "ops");
    expect_err(create(pol, "{\"id\":\"ops\",\"kind\":\"robot\",\"roles\":[\"admin\"]}", &id, roles), CUSTOS_ERR_INVALID,
               "kind must be staff or service");
    expect_err(create(pol, "{\"id\":\"ops\",\"kind\":\"staff\"}", &id, roles), CUSTOS_ERR_INVALID,
               "roles must be an array of 1 to 8 role names");
    expect_err(create(pol, "{\"id\":\"ops\",\"kind\":\"staff\",\"roles\":\"admin\"}", &id, roles), CUSTOS_ERR_INVALID,
               "roles must be an array of 1 to 8 role names");
    expect_err(create(pol,
                      "{\"id\":\"ops\",\"kind\":\"staff\",\"roles\":[\"admin\",\"admin\",\"admin\",\"admin\",\"admin\","
                      "\"admin\",\"admin\",\"admin\",\"admin\"]}",
                      &id, roles),
               CUSTOS_ERR_INVALID, "roles must be an array of 1 to 8 role names");
    expect_err(create(pol, "{\"id\":\"ops\",\"kind\":\"staff\",\"roles\":[\"admin\",\"boss\"]}", &id, roles),
               CUSTOS_ERR_INVALID, "roles[1] is not a role of the policy");
    expect_err(create(pol, "{\"id\":\"ops\",\"kind\":\"staff\",\"roles\":[\"admin\",7]}", &id, roles),
               CUSTOS_ERR_INVALID, "roles[1] is not a role of the policy");
    expect_err(create(pol, "{\"id\":\"ops\",\"kind\":\"staff\",\"roles\":[\"customer\"]}", &id, roles),
               CUSTOS_ERR_INVALID, "the customer role is only for minted customer tokens");
    assert_string_equal(id, "ops");

    assert_int_equal(custos_policy_load(custom, strlen(custom), &big), CUSTOS_OK);
    n = (size_t)snprintf(body, sizeof(body), "{\"id\":\"ops\",\"kind\":\"staff\",\"roles\":[");
    for (i = 0; i < 8; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s\"r2345678901234567890123456789012\"", i ? "," : "");
    snprintf(body + n, sizeof(body) - n, "]}");
    expect_err(create(big, body, &id, roles), CUSTOS_ERR_INVALID, "roles list too long");
    custos_policy_free(big);
    custos_policy_free(pol);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_issue_parse),
        cmocka_unit_test(test_token_revoke_parse),
        cmocka_unit_test(test_credential_parse_wipes_on_failure),
        cmocka_unit_test(test_principal_create_parse),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}

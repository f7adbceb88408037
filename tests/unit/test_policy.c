/*
 * test_policy.c - policy documents and decisions (src/core/policy.c).
 *
 * The default decisions are the ones issue 2 fixes: service/account reads
 * every field plain; service/delivery reads name, phone and address_book
 * plain and nothing else; support/support reads everything masked except
 * address_book.entrance_code (hidden); a customer token with account reads
 * plain; admin, auditor and minter have no personal-data operation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/policy.h"
#include "custos/err.h"
#include "custos/banned.h"

#define PD (CUSTOS_OP_SUBJECT_CREATE | CUSTOS_OP_SUBJECT_READ | CUSTOS_OP_SUBJECT_UPDATE | \
            CUSTOS_OP_SUBJECT_SEARCH | CUSTOS_OP_SUBJECT_ERASE | CUSTOS_OP_SUBJECT_EXPORT | CUSTOS_OP_SUBJECT_LINK)

/* Every leaf policy path of the default schema. */
static const char *const all_paths[] = {
    "name", "email", "phone", "birth_date", "customs_code", "address_book.recipient", "address_book.phone",
    "address_book.address", "address_book.entrance_code", NULL,
};

static const uint32_t all_ops[] = {
    CUSTOS_OP_SUBJECT_CREATE, CUSTOS_OP_SUBJECT_READ,     CUSTOS_OP_SUBJECT_UPDATE, CUSTOS_OP_SUBJECT_SEARCH,
    CUSTOS_OP_SUBJECT_ERASE,  CUSTOS_OP_SUBJECT_EXPORT,   CUSTOS_OP_SUBJECT_LINK,   CUSTOS_OP_PRINCIPAL_MANAGE,
    CUSTOS_OP_TOKEN_REVOKE,   CUSTOS_OP_KEYS_MANAGE,      CUSTOS_OP_LEDGER_READ,    CUSTOS_OP_ALERT_READ,
    CUSTOS_OP_TOKEN_MINT,
};

static struct custos_policy *load(const char *text)
{
    struct custos_policy *p = NULL;
    enum custos_err rc;

    custos_err_clear();
    rc = custos_policy_load(text, text ? strlen(text) : 0, &p);
    if (rc != CUSTOS_OK)
        fail_msg("policy did not load: %s (%s)", custos_err_msg(rc), text ? text : "(default)");
    assert_non_null(p);
    return p;
}

static uint32_t role(const struct custos_policy *p, const char *name)
{
    int r = custos_policy_role(p, name);

    if (r < 0)
        fail_msg("no role '%s'", name);
    return 1u << r;
}

static void expect_vis(const struct custos_policy *p, uint32_t mask, uint32_t op, const char *purpose,
                       const char *path, enum custos_vis want)
{
    enum custos_vis got = custos_policy_vis(p, mask, op, purpose, path);

    if (got != want)
        fail_msg("vis(mask %#x, op %s, purpose %s, %s) = %d, want %d", mask, custos_op_name(op), purpose, path,
                 (int)got, (int)want);
}

static void expect_bad_policy(const char *text, const char *needle)
{
    struct custos_policy *p = (struct custos_policy *)0x1;
    enum custos_err rc;

    custos_err_clear();
    rc = custos_policy_load(text, strlen(text), &p);
    if (rc != CUSTOS_ERR_INVALID)
        fail_msg("policy accepted or wrong code %d: %s", rc, text);
    assert_null(p);
    if (needle && !strstr(custos_err_msg(rc), needle))
        fail_msg("message '%s' does not mention '%s' (policy %s)", custos_err_msg(rc), needle, text);
}

/* ---- the default policy -------------------------------------------------------------------- */

static void test_default_roles(void **state)
{
    struct custos_policy *p = load(NULL);
    static const char *const names[] = {"admin", "service", "support", "auditor", "minter", "customer", NULL};
    size_t i;

    (void)state;
    for (i = 0; names[i]; i++)
        assert_true(custos_policy_role(p, names[i]) >= 0);
    assert_int_equal(custos_policy_role(p, "root"), -1);
    assert_int_equal(custos_policy_role(p, ""), -1);
    assert_int_equal(custos_policy_role(p, "Admin"), -1);
    custos_policy_free(p);
    custos_policy_free(NULL); /* no-op */
}

static void test_default_service(void **state)
{
    struct custos_policy *p = load(NULL);
    uint32_t svc = role(p, "service");
    size_t i;

    (void)state;
    assert_true(custos_policy_allows(p, svc, CUSTOS_OP_SUBJECT_CREATE));
    assert_true(custos_policy_allows(p, svc, CUSTOS_OP_SUBJECT_READ));
    assert_true(custos_policy_allows(p, svc, CUSTOS_OP_SUBJECT_UPDATE));
    assert_true(custos_policy_allows(p, svc, CUSTOS_OP_SUBJECT_SEARCH));
    assert_false(custos_policy_allows(p, svc, CUSTOS_OP_PRINCIPAL_MANAGE));
    assert_false(custos_policy_allows(p, svc, CUSTOS_OP_KEYS_MANAGE));
    assert_false(custos_policy_allows(p, svc, CUSTOS_OP_LEDGER_READ));
    assert_false(custos_policy_allows(p, svc, CUSTOS_OP_TOKEN_MINT));
    assert_false(custos_policy_allows(p, svc, CUSTOS_OP_TOKEN_REVOKE));

    /* purposes: account and delivery, nothing else */
    assert_true(custos_policy_purpose(p, svc, CUSTOS_OP_SUBJECT_READ, "account"));
    assert_true(custos_policy_purpose(p, svc, CUSTOS_OP_SUBJECT_READ, "delivery"));
    assert_true(custos_policy_purpose(p, svc, CUSTOS_OP_SUBJECT_SEARCH, "delivery"));
    assert_false(custos_policy_purpose(p, svc, CUSTOS_OP_SUBJECT_READ, "support"));
    assert_false(custos_policy_purpose(p, svc, CUSTOS_OP_SUBJECT_READ, "marketing"));
    assert_false(custos_policy_purpose(p, svc, CUSTOS_OP_SUBJECT_READ, ""));
    assert_false(custos_policy_purpose(p, svc, CUSTOS_OP_LEDGER_READ, "account"));

    /* account: every field plain */
    for (i = 0; all_paths[i]; i++)
        expect_vis(p, svc, CUSTOS_OP_SUBJECT_READ, "account", all_paths[i], CUSTOS_VIS_PLAIN);
    /* delivery: name, phone, address_book plain; the rest hidden */
    expect_vis(p, svc, CUSTOS_OP_SUBJECT_READ, "delivery", "name", CUSTOS_VIS_PLAIN);
    expect_vis(p, svc, CUSTOS_OP_SUBJECT_READ, "delivery", "phone", CUSTOS_VIS_PLAIN);
    expect_vis(p, svc, CUSTOS_OP_SUBJECT_READ, "delivery", "address_book.recipient", CUSTOS_VIS_PLAIN);
    expect_vis(p, svc, CUSTOS_OP_SUBJECT_READ, "delivery", "address_book.phone", CUSTOS_VIS_PLAIN);
    expect_vis(p, svc, CUSTOS_OP_SUBJECT_READ, "delivery", "address_book.address", CUSTOS_VIS_PLAIN);
    expect_vis(p, svc, CUSTOS_OP_SUBJECT_READ, "delivery", "address_book.entrance_code", CUSTOS_VIS_PLAIN);
    expect_vis(p, svc, CUSTOS_OP_SUBJECT_READ, "delivery", "email", CUSTOS_VIS_HIDDEN);
    expect_vis(p, svc, CUSTOS_OP_SUBJECT_READ, "delivery", "birth_date", CUSTOS_VIS_HIDDEN);
    expect_vis(p, svc, CUSTOS_OP_SUBJECT_READ, "delivery", "customs_code", CUSTOS_VIS_HIDDEN);
    /* a purpose it lacks: hidden everywhere */
    for (i = 0; all_paths[i]; i++)
        expect_vis(p, svc, CUSTOS_OP_SUBJECT_READ, "support", all_paths[i], CUSTOS_VIS_HIDDEN);
    /* a field the schema does not have falls to "*" */
    expect_vis(p, svc, CUSTOS_OP_SUBJECT_READ, "account", "nickname", CUSTOS_VIS_PLAIN);
    expect_vis(p, svc, CUSTOS_OP_SUBJECT_READ, "delivery", "nickname", CUSTOS_VIS_HIDDEN);
    assert_int_equal(custos_policy_rate(p, svc, CUSTOS_OP_SUBJECT_READ, "account"), 0);
    custos_policy_free(p);
}

static void test_default_support(void **state)
{
    struct custos_policy *p = load(NULL);
    uint32_t sup = role(p, "support");
    size_t i;

    (void)state;
    assert_true(custos_policy_allows(p, sup, CUSTOS_OP_SUBJECT_READ));
    assert_true(custos_policy_allows(p, sup, CUSTOS_OP_SUBJECT_SEARCH));
    assert_false(custos_policy_allows(p, sup, CUSTOS_OP_SUBJECT_CREATE));
    assert_false(custos_policy_allows(p, sup, CUSTOS_OP_SUBJECT_UPDATE));
    assert_false(custos_policy_allows(p, sup, CUSTOS_OP_SUBJECT_ERASE));
    assert_false(custos_policy_allows(p, sup, CUSTOS_OP_SUBJECT_EXPORT));
    assert_false(custos_policy_allows(p, sup, CUSTOS_OP_PRINCIPAL_MANAGE));
    assert_true(custos_policy_purpose(p, sup, CUSTOS_OP_SUBJECT_READ, "support"));
    assert_false(custos_policy_purpose(p, sup, CUSTOS_OP_SUBJECT_READ, "account"));
    assert_false(custos_policy_purpose(p, sup, CUSTOS_OP_SUBJECT_READ, "delivery"));
    for (i = 0; all_paths[i]; i++)
        expect_vis(p, sup, CUSTOS_OP_SUBJECT_READ, "support", all_paths[i],
                   strcmp(all_paths[i], "address_book.entrance_code") == 0 ? CUSTOS_VIS_HIDDEN
                                                                           : CUSTOS_VIS_MASKED);
    for (i = 0; all_paths[i]; i++)
        expect_vis(p, sup, CUSTOS_OP_SUBJECT_READ, "account", all_paths[i], CUSTOS_VIS_HIDDEN);
    /* small velocity */
    assert_int_equal(custos_policy_rate(p, sup, CUSTOS_OP_SUBJECT_READ, "support"), 60);
    assert_int_equal(custos_policy_rate(p, sup, CUSTOS_OP_SUBJECT_SEARCH, "support"), 60);
    custos_policy_free(p);
}

static void test_default_customer(void **state)
{
    struct custos_policy *p = load(NULL);
    uint32_t cus = role(p, "customer");
    size_t i;

    (void)state;
    assert_true(custos_policy_allows(p, cus, CUSTOS_OP_SUBJECT_READ));
    assert_true(custos_policy_allows(p, cus, CUSTOS_OP_SUBJECT_EXPORT));
    assert_true(custos_policy_allows(p, cus, CUSTOS_OP_SUBJECT_ERASE));
    assert_false(custos_policy_allows(p, cus, CUSTOS_OP_SUBJECT_CREATE));
    assert_false(custos_policy_allows(p, cus, CUSTOS_OP_SUBJECT_UPDATE));
    assert_false(custos_policy_allows(p, cus, CUSTOS_OP_SUBJECT_SEARCH));
    assert_false(custos_policy_allows(p, cus, CUSTOS_OP_TOKEN_MINT));
    for (i = 0; all_paths[i]; i++)
        expect_vis(p, cus, CUSTOS_OP_SUBJECT_READ, "account", all_paths[i], CUSTOS_VIS_PLAIN);
    for (i = 0; all_paths[i]; i++)
        expect_vis(p, cus, CUSTOS_OP_SUBJECT_READ, "delivery", all_paths[i], CUSTOS_VIS_HIDDEN);
    assert_int_equal(custos_policy_rate(p, cus, CUSTOS_OP_SUBJECT_READ, "account"), 0);
    custos_policy_free(p);
}

static void test_default_no_personal_data(void **state)
{
    struct custos_policy *p = load(NULL);
    static const char *const names[] = {"admin", "auditor", "minter", NULL};
    static const char *const purposes[] = {"account", "delivery", "support", "fraud", NULL};
    size_t i, k, j;

    (void)state;
    for (i = 0; names[i]; i++) {
        uint32_t m = role(p, names[i]);

        for (k = 0; k < sizeof(all_ops) / sizeof(all_ops[0]); k++)
            if (all_ops[k] & PD)
                if (custos_policy_allows(p, m, all_ops[k]))
                    fail_msg("%s may %s", names[i], custos_op_name(all_ops[k]));
        for (j = 0; purposes[j]; j++) {
            assert_false(custos_policy_purpose(p, m, CUSTOS_OP_SUBJECT_READ, purposes[j]));
            for (k = 0; all_paths[k]; k++)
                expect_vis(p, m, CUSTOS_OP_SUBJECT_READ, purposes[j], all_paths[k], CUSTOS_VIS_HIDDEN);
        }
    }
    /* what they do have */
    assert_true(custos_policy_allows(p, role(p, "admin"), CUSTOS_OP_PRINCIPAL_MANAGE));
    assert_true(custos_policy_allows(p, role(p, "admin"), CUSTOS_OP_KEYS_MANAGE));
    assert_true(custos_policy_allows(p, role(p, "admin"), CUSTOS_OP_TOKEN_REVOKE));
    assert_true(custos_policy_allows(p, role(p, "admin"), CUSTOS_OP_LEDGER_READ));
    assert_false(custos_policy_allows(p, role(p, "admin"), CUSTOS_OP_TOKEN_MINT));
    assert_true(custos_policy_allows(p, role(p, "auditor"), CUSTOS_OP_LEDGER_READ));
    assert_true(custos_policy_allows(p, role(p, "auditor"), CUSTOS_OP_ALERT_READ));
    assert_false(custos_policy_allows(p, role(p, "auditor"), CUSTOS_OP_PRINCIPAL_MANAGE));
    assert_true(custos_policy_allows(p, role(p, "minter"), CUSTOS_OP_TOKEN_MINT));
    assert_false(custos_policy_allows(p, role(p, "minter"), CUSTOS_OP_LEDGER_READ));
    /* no role at all: nothing */
    for (k = 0; k < sizeof(all_ops) / sizeof(all_ops[0]); k++)
        assert_false(custos_policy_allows(p, 0, all_ops[k]));
    expect_vis(p, 0, CUSTOS_OP_SUBJECT_READ, "account", "name", CUSTOS_VIS_HIDDEN);
    custos_policy_free(p);
}

static void test_op_names(void **state)
{
    size_t k;

    (void)state;
    assert_string_equal(custos_op_name(CUSTOS_OP_SUBJECT_READ), "subject.read");
    assert_string_equal(custos_op_name(CUSTOS_OP_TOKEN_MINT), "token.mint");
    assert_string_equal(custos_op_name(CUSTOS_OP_KEYS_MANAGE), "keys.manage");
    assert_string_equal(custos_op_name(0), "unknown");
    assert_string_equal(custos_op_name(CUSTOS_OP_SUBJECT_READ | CUSTOS_OP_SUBJECT_CREATE), "unknown");
    for (k = 0; k < sizeof(all_ops) / sizeof(all_ops[0]); k++)
        assert_string_not_equal(custos_op_name(all_ops[k]), "unknown");
}

static void test_valid_name(void **state)
{
    char longn[80];

    (void)state;
    assert_true(custos_valid_name("a", 32));
    assert_true(custos_valid_name("fraud-review.v2_x", 32));
    assert_false(custos_valid_name("", 32));
    assert_false(custos_valid_name("Fraud", 32));
    assert_false(custos_valid_name("1fraud", 32));
    assert_false(custos_valid_name(".fraud", 32));
    assert_false(custos_valid_name("fraud review", 32));
    assert_false(custos_valid_name("fraud/x", 32));
    assert_false(custos_valid_name("사기", 32));
    memset(longn, 'a', 33);
    longn[33] = '\0';
    assert_false(custos_valid_name(longn, 32));
    longn[32] = '\0';
    assert_true(custos_valid_name(longn, 32));
}

/* ---- policy files -------------------------------------------------------------------------- */

static void test_file_adds_role(void **state)
{
    static const char text[] =
        "{\"roles\": {\"fraud\": {\"ops\": [\"subject.read\", \"subject.search\"], \"rate_per_minute\": 10,"
        "  \"purposes\": {\"fraud\": {\"*\": \"hidden\", \"email\": \"masked\", \"phone\": \"plain\","
        "                             \"address_book\": \"masked\", \"address_book.phone\": \"plain\"}}}}}";
    struct custos_policy *p = load(text);
    uint32_t fr = role(p, "fraud");

    (void)state;
    /* built-ins are still there, unchanged */
    assert_true(custos_policy_role(p, "service") >= 0);
    assert_true(custos_policy_role(p, "support") >= 0);
    expect_vis(p, role(p, "service"), CUSTOS_OP_SUBJECT_READ, "account", "customs_code", CUSTOS_VIS_PLAIN);
    assert_int_equal(custos_policy_rate(p, role(p, "support"), CUSTOS_OP_SUBJECT_READ, "support"), 60);

    assert_true(custos_policy_allows(p, fr, CUSTOS_OP_SUBJECT_READ));
    assert_false(custos_policy_allows(p, fr, CUSTOS_OP_SUBJECT_CREATE));
    assert_true(custos_policy_purpose(p, fr, CUSTOS_OP_SUBJECT_READ, "fraud"));
    assert_false(custos_policy_purpose(p, fr, CUSTOS_OP_SUBJECT_READ, "account"));
    expect_vis(p, fr, CUSTOS_OP_SUBJECT_READ, "fraud", "email", CUSTOS_VIS_MASKED);
    expect_vis(p, fr, CUSTOS_OP_SUBJECT_READ, "fraud", "phone", CUSTOS_VIS_PLAIN);
    expect_vis(p, fr, CUSTOS_OP_SUBJECT_READ, "fraud", "name", CUSTOS_VIS_HIDDEN);
    /* exact policy path beats the top-level field, which beats "*" */
    expect_vis(p, fr, CUSTOS_OP_SUBJECT_READ, "fraud", "address_book.phone", CUSTOS_VIS_PLAIN);
    expect_vis(p, fr, CUSTOS_OP_SUBJECT_READ, "fraud", "address_book.address", CUSTOS_VIS_MASKED);
    expect_vis(p, fr, CUSTOS_OP_SUBJECT_READ, "fraud", "address_book.entrance_code", CUSTOS_VIS_MASKED);
    /* visibility needs the operation, not just the purpose */
    expect_vis(p, fr, CUSTOS_OP_SUBJECT_EXPORT, "fraud", "phone", CUSTOS_VIS_HIDDEN);
    assert_int_equal(custos_policy_rate(p, fr, CUSTOS_OP_SUBJECT_READ, "fraud"), 10);
    custos_policy_free(p);
}

static void test_file_overrides_builtin(void **state)
{
    static const char text[] = "{\"roles\": {\"support\": {\"ops\": [\"subject.read\"],"
                               "  \"purposes\": {\"support\": {\"*\": \"hidden\", \"name\": \"masked\"}}}}}";
    struct custos_policy *p = load(text);
    uint32_t sup = role(p, "support");
    int before;
    struct custos_policy *d = load(NULL);

    (void)state;
    /* replaced whole: no search any more, no rate limit, only name masked */
    assert_false(custos_policy_allows(p, sup, CUSTOS_OP_SUBJECT_SEARCH));
    assert_true(custos_policy_allows(p, sup, CUSTOS_OP_SUBJECT_READ));
    expect_vis(p, sup, CUSTOS_OP_SUBJECT_READ, "support", "name", CUSTOS_VIS_MASKED);
    expect_vis(p, sup, CUSTOS_OP_SUBJECT_READ, "support", "email", CUSTOS_VIS_HIDDEN);
    expect_vis(p, sup, CUSTOS_OP_SUBJECT_READ, "support", "address_book.address", CUSTOS_VIS_HIDDEN);
    assert_int_equal(custos_policy_rate(p, sup, CUSTOS_OP_SUBJECT_READ, "support"), 0);
    /* same slot (role bits stored in principals keep their meaning), no new role */
    before = custos_policy_role(d, "support");
    assert_int_equal(custos_policy_role(p, "support"), before);
    assert_int_equal(p->nroles, d->nroles);
    custos_policy_free(d);
    custos_policy_free(p);
}

static void test_file_invalid(void **state)
{
    char big[16384];
    size_t o;
    int i;

    (void)state;
    expect_bad_policy("", "policy");
    expect_bad_policy("{", "policy");
    expect_bad_policy("[]", NULL);
    expect_bad_policy("{}", "roles");
    expect_bad_policy("{\"roles\": []}", "roles");
    expect_bad_policy("{\"roles\": {}, \"extra\": 1}", "extra");
    expect_bad_policy("{\"roles\": {\"x\": {\"ops\": []}}} trailing", "policy");
    expect_bad_policy("{\"roles\": {\"x\": {\"ops\": []}, \"x\": {\"ops\": []}}}", "policy");
    expect_bad_policy("{\"roles\": {\"Fraud\": {\"ops\": []}}}", "role name");
    expect_bad_policy("{\"roles\": {\"\": {\"ops\": []}}}", "role name");
    expect_bad_policy("{\"roles\": {\"fraud\": [\"subject.read\"]}}", "must be an object");
    expect_bad_policy("{\"roles\": {\"fraud\": {}}}", "ops");
    expect_bad_policy("{\"roles\": {\"fraud\": {\"ops\": \"subject.read\"}}}", "ops");
    expect_bad_policy("{\"roles\": {\"fraud\": {\"ops\": [\"subject.delete\"]}}}", "unknown operation");
    expect_bad_policy("{\"roles\": {\"fraud\": {\"ops\": [1]}}}", "unknown operation");
    expect_bad_policy("{\"roles\": {\"fraud\": {\"ops\": [], \"colour\": 1}}}", "colour");
    expect_bad_policy("{\"roles\": {\"fraud\": {\"ops\": [], \"rate_per_minute\": -1}}}", "rate_per_minute");
    expect_bad_policy("{\"roles\": {\"fraud\": {\"ops\": [], \"rate_per_minute\": 1000001}}}", "rate_per_minute");
    expect_bad_policy("{\"roles\": {\"fraud\": {\"ops\": [], \"rate_per_minute\": \"60\"}}}", "rate_per_minute");
    expect_bad_policy("{\"roles\": {\"fraud\": {\"ops\": [], \"purposes\": []}}}", "purposes");
    expect_bad_policy("{\"roles\": {\"fraud\": {\"ops\": [], \"purposes\": {\"Fraud\": {}}}}}", "purpose name");
    expect_bad_policy("{\"roles\": {\"fraud\": {\"ops\": [], \"purposes\": {\"fraud\": \"plain\"}}}}", "fraud");
    expect_bad_policy("{\"roles\": {\"fraud\": {\"ops\": [], \"purposes\": {\"fraud\": {\"name\": \"visible\"}}}}}",
                      "plain, masked or hidden");
    expect_bad_policy("{\"roles\": {\"fraud\": {\"ops\": [], \"purposes\": {\"fraud\": {\"name\": true}}}}}",
                      "plain, masked or hidden");
    expect_bad_policy("{\"roles\": {\"fraud\": {\"ops\": [], \"purposes\": {\"fraud\": {\"\": \"plain\"}}}}}",
                      "field path");
    /* a bad second purpose fails the whole document */
    expect_bad_policy("{\"roles\": {\"fraud\": {\"ops\": [\"subject.read\"], \"purposes\": {"
                      "\"fraud\": {\"*\": \"plain\"}, \"bad purpose\": {\"*\": \"plain\"}}}}}",
                      "purpose");
    /* a bad role after a good one: nothing is applied (the load fails whole) */
    expect_bad_policy("{\"roles\": {\"fraud\": {\"ops\": [\"subject.read\"]}, \"x\": {\"ops\": [\"nope\"]}}}",
                      "unknown operation");
    /* a path as long as the rule's buffer */
    o = (size_t)snprintf(big, sizeof(big), "{\"roles\": {\"fraud\": {\"ops\": [], \"purposes\": {\"fraud\": {\"");
    memset(big + o, 'a', 128);
    o += 128;
    snprintf(big + o, sizeof(big) - o, "\": \"plain\"}}}}}");
    expect_bad_policy(big, "field path");
    /* more roles than CUSTOS_POLICY_MAX_ROLES (the default policy holds 6) */
    o = (size_t)snprintf(big, sizeof(big), "{\"roles\": {");
    for (i = 0; i < CUSTOS_POLICY_MAX_ROLES; i++)
        o += (size_t)snprintf(big + o, sizeof(big) - o, "%s\"r%d\": {\"ops\": []}", i ? "," : "", i);
    snprintf(big + o, sizeof(big) - o, "}}");
    expect_bad_policy(big, "roles");
}

static void test_most_permissive_wins(void **state)
{
    static const char text[] =
        "{\"roles\": {"
        " \"fraud\": {\"ops\": [\"subject.read\"], \"rate_per_minute\": 10,"
        "            \"purposes\": {\"support\": {\"*\": \"hidden\", \"email\": \"plain\"},"
        "                           \"fraud\": {\"*\": \"masked\"}}},"
        " \"searcher\": {\"ops\": [\"subject.search\"],"
        "            \"purposes\": {\"support\": {\"*\": \"plain\"}}},"
        " \"slow\": {\"ops\": [\"subject.read\"], \"rate_per_minute\": 5,"
        "            \"purposes\": {\"fraud\": {\"*\": \"hidden\"}}}"
        "}}";
    struct custos_policy *p = load(text);
    uint32_t sup = role(p, "support"), fr = role(p, "fraud"), se = role(p, "searcher"), sl = role(p, "slow"),
             svc = role(p, "service");

    (void)state;
    /* support masks email, fraud shows it plain for the same purpose: plain wins */
    expect_vis(p, sup | fr, CUSTOS_OP_SUBJECT_READ, "support", "email", CUSTOS_VIS_PLAIN);
    /* masked (support) beats hidden (fraud's "*") */
    expect_vis(p, sup | fr, CUSTOS_OP_SUBJECT_READ, "support", "name", CUSTOS_VIS_MASKED);
    /* both hide it: hidden */
    expect_vis(p, sup | fr, CUSTOS_OP_SUBJECT_READ, "support", "address_book.entrance_code", CUSTOS_VIS_HIDDEN);
    /* a role that holds the purpose but not the operation does not count */
    expect_vis(p, sup | se, CUSTOS_OP_SUBJECT_READ, "support", "email", CUSTOS_VIS_MASKED);
    expect_vis(p, sup | se, CUSTOS_OP_SUBJECT_READ, "support", "address_book.entrance_code", CUSTOS_VIS_HIDDEN);
    /* the order of the roles does not matter */
    expect_vis(p, fr | sup, CUSTOS_OP_SUBJECT_READ, "support", "email", CUSTOS_VIS_PLAIN);
    /* service + support: each purpose keeps its own answer */
    expect_vis(p, svc | sup, CUSTOS_OP_SUBJECT_READ, "account", "email", CUSTOS_VIS_PLAIN);
    expect_vis(p, svc | sup, CUSTOS_OP_SUBJECT_READ, "support", "email", CUSTOS_VIS_MASKED);
    expect_vis(p, svc | sup, CUSTOS_OP_SUBJECT_READ, "delivery", "email", CUSTOS_VIS_HIDDEN);
    assert_true(custos_policy_purpose(p, svc | sup, CUSTOS_OP_SUBJECT_READ, "support"));
    assert_true(custos_policy_purpose(p, svc | sup, CUSTOS_OP_SUBJECT_READ, "account"));
    assert_false(custos_policy_purpose(p, se, CUSTOS_OP_SUBJECT_READ, "support"));
    assert_true(custos_policy_purpose(p, se, CUSTOS_OP_SUBJECT_SEARCH, "support"));
    assert_true(custos_policy_allows(p, sup | svc, CUSTOS_OP_SUBJECT_CREATE));

    /* rates: the smallest among granting roles, 0 (unlimited) when any granting role is unlimited */
    assert_int_equal(custos_policy_rate(p, sup | fr, CUSTOS_OP_SUBJECT_READ, "support"), 10);
    assert_int_equal(custos_policy_rate(p, fr | sl, CUSTOS_OP_SUBJECT_READ, "fraud"), 5);
    assert_int_equal(custos_policy_rate(p, fr, CUSTOS_OP_SUBJECT_READ, "fraud"), 10);
    assert_int_equal(custos_policy_rate(p, svc | sup, CUSTOS_OP_SUBJECT_READ, "support"), 60);
    assert_int_equal(custos_policy_rate(p, svc | sup, CUSTOS_OP_SUBJECT_READ, "account"), 0);
    /* a role that lacks the purpose does not lower the limit */
    assert_int_equal(custos_policy_rate(p, sup | sl, CUSTOS_OP_SUBJECT_READ, "support"), 60);
    /* nobody grants: 0 */
    assert_int_equal(custos_policy_rate(p, 0, CUSTOS_OP_SUBJECT_READ, "support"), 0);
    custos_policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_roles),
        cmocka_unit_test(test_default_service),
        cmocka_unit_test(test_default_support),
        cmocka_unit_test(test_default_customer),
        cmocka_unit_test(test_default_no_personal_data),
        cmocka_unit_test(test_op_names),
        cmocka_unit_test(test_valid_name),
        cmocka_unit_test(test_file_adds_role),
        cmocka_unit_test(test_file_overrides_builtin),
        cmocka_unit_test(test_file_invalid),
        cmocka_unit_test(test_most_permissive_wins),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

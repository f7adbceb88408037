/*
 * test_subject.c - subject operations (src/core/subject.c) on a real vault in a temporary
 * directory, for what the HTTP tests cannot make happen on cue: failures inside an operation
 * and the audit event they leave.  The vault's private header is used to cause them.
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_failure_names_no_subject, setup, teardown),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests_name("subject", tests, NULL, NULL);
}

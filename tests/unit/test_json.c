/*
 * test_json.c - bounded parsing of outside JSON (src/core/json.c): byte and
 * depth caps, duplicate keys, invalid UTF-8, trailing garbage, empty input,
 * the member helpers custos_json_only / custos_json_str, and custos_json_dump.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "core/json.h"
#include "custos/err.h"
#include "custos/vault.h"
#include "test_util.h"
#include "custos/banned.h"

static enum custos_err parse(const char *buf, size_t len, size_t max, int any, json_t **out)
{
    custos_err_clear();
    *out = (json_t *)0x1;
    return custos_json_parse(buf, len, max, any, out);
}

static void expect_bad(const char *buf, size_t len, enum custos_err want, const char *needle)
{
    json_t *j;
    enum custos_err rc = parse(buf, len, 65536, 0, &j);

    if (rc != want)
        fail_msg("parse of %zu bytes = %d, want %d (%s)", len, rc, want, custos_err_msg(rc));
    assert_null(j);
    if (needle && !strstr(custos_err_msg(rc), needle))
        fail_msg("message '%s' does not mention '%s'", custos_err_msg(rc), needle);
}

static void expect_bads(const char *s, enum custos_err want, const char *needle)
{
    expect_bad(s, strlen(s), want, needle);
}

static void expect_ok(const char *s, int any)
{
    json_t *j;
    enum custos_err rc = parse(s, strlen(s), 65536, any, &j);

    if (rc != CUSTOS_OK)
        fail_msg("parse of '%s' failed: %s", s, custos_err_msg(rc));
    assert_non_null(j);
    json_decref(j);
}

/* n nested arrays around a scalar: [[[1]]] */
static char *nested(size_t n, char open, char close)
{
    char *s = malloc(2 * n + 2);
    size_t i;

    assert_non_null(s);
    for (i = 0; i < n; i++)
        s[i] = open;
    s[n] = '1';
    for (i = 0; i < n; i++)
        s[n + 1 + i] = close;
    s[2 * n + 1] = '\0';
    return s;
}

static void test_size_cap(void **state)
{
    char buf[128];
    json_t *j;
    size_t n;

    (void)state;
    n = (size_t)snprintf(buf, sizeof(buf), "{\"a\":\"%s\"}", "0123456789");
    /* exactly at the cap: fine */
    assert_int_equal(parse(buf, n, n, 0, &j), CUSTOS_OK);
    json_decref(j);
    /* one byte over: TOOBIG, before parsing */
    assert_int_equal(parse(buf, n, n - 1, 0, &j), CUSTOS_ERR_TOOBIG);
    assert_null(j);
    assert_non_null(strstr(custos_err_msg(CUSTOS_ERR_TOOBIG), "exceeds"));
    /* a huge length is refused without reading it */
    assert_int_equal(parse(buf, (size_t)1 << 40, 65536, 0, &j), CUSTOS_ERR_TOOBIG);
    assert_null(j);
}

static void test_depth_cap(void **state)
{
    json_t *j;
    char *s;
    char obj[512];
    size_t o = 0;
    int i;

    (void)state;
    s = nested(CUSTOS_JSON_MAX_DEPTH, '[', ']');
    assert_int_equal(parse(s, strlen(s), 65536, 1, &j), CUSTOS_OK);
    json_decref(j);
    free(s);
    s = nested(CUSTOS_JSON_MAX_DEPTH + 1, '[', ']');
    assert_int_equal(parse(s, strlen(s), 65536, 1, &j), CUSTOS_ERR_INVALID);
    assert_null(j);
    assert_non_null(strstr(custos_err_msg(CUSTOS_ERR_INVALID), "deeper"));
    free(s);
    /* very deep input is refused by the scan, not by recursion */
    s = nested(100000, '[', ']');
    assert_int_equal(parse(s, strlen(s), 1 << 20, 1, &j), CUSTOS_ERR_INVALID);
    free(s);
    /* unbalanced: only opening brackets */
    s = malloc(50001);
    memset(s, '{', 50000);
    s[50000] = '\0';
    assert_int_equal(parse(s, 50000, 1 << 20, 0, &j), CUSTOS_ERR_INVALID);
    free(s);

    /* objects count too: depth 8 fine, 9 refused */
    for (i = 0; i < CUSTOS_JSON_MAX_DEPTH; i++)
        o += (size_t)snprintf(obj + o, sizeof(obj) - o, "{\"k\":");
    o += (size_t)snprintf(obj + o, sizeof(obj) - o, "1");
    for (i = 0; i < CUSTOS_JSON_MAX_DEPTH; i++)
        o += (size_t)snprintf(obj + o, sizeof(obj) - o, "}");
    expect_ok(obj, 0);
    o = 0;
    for (i = 0; i < CUSTOS_JSON_MAX_DEPTH + 1; i++)
        o += (size_t)snprintf(obj + o, sizeof(obj) - o, "{\"k\":");
    o += (size_t)snprintf(obj + o, sizeof(obj) - o, "1");
    for (i = 0; i < CUSTOS_JSON_MAX_DEPTH + 1; i++)
        o += (size_t)snprintf(obj + o, sizeof(obj) - o, "}");
    expect_bads(obj, CUSTOS_ERR_INVALID, "deeper");

    /* brackets inside strings do not count, escaped quotes do not end a string */
    expect_ok("{\"a\":\"[[[[[[[[[[[[[[[[{{{{{{{{{{{{\"}", 0);
    expect_ok("{\"a\":\"\\\"[[[[[[[[[[[[[[[[\\\\\",\"b\":[[1]]}", 0);
    /* siblings do not add up */
    expect_ok("{\"a\":[[[[1]]]],\"b\":[[[[2]]]],\"c\":[[[[3]]]]}", 0);
    /* mixed arrays and objects, ten levels */
    expect_bads("{\"a\":[{\"b\":[{\"c\":[{\"d\":[{\"e\":[1]}]}]}]}]}", CUSTOS_ERR_INVALID, "deeper");
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    expect_bads("{\"name\":\"a\",\"name\":\"b\"}", CUSTOS_ERR_INVALID, "duplicate");
    expect_bads("{\"a\":{\"x\":1,\"x\":2}}", CUSTOS_ERR_INVALID, "duplicate");
    expect_bads("{\"a\":[{\"x\":1,\"x\":1}]}", CUSTOS_ERR_INVALID, "duplicate");
    /* the same key in different objects is fine */
    expect_ok("{\"a\":{\"x\":1},\"b\":{\"x\":1}}", 0);
}

static void test_invalid_utf8(void **state)
{
    static const char *const bad[] = {
        "{\"a\":\"\xff\"}",                  /* invalid byte */
        "{\"a\":\"\xc0\xaf\"}",              /* overlong '/' */
        "{\"a\":\"\xed\xa0\x80\"}",          /* UTF-16 surrogate */
        "{\"a\":\"\xe3\x81\"}",              /* truncated sequence */
        "{\"a\":\"\x80\"}",                  /* lone continuation byte */
        "{\"a\":\"\xf4\x90\x80\x80\"}",      /* beyond U+10FFFF */
        "{\"\xff\":\"a\"}",                  /* in a key */
        NULL,
    };
    size_t i;

    (void)state;
    for (i = 0; bad[i]; i++)
        expect_bads(bad[i], CUSTOS_ERR_INVALID, "UTF-8");
    /* valid multi-byte text is fine */
    expect_ok("{\"name\":\"전성준\",\"e\":\"\xf0\x9f\x98\x80\"}", 0);
}

static void test_trailing_and_empty(void **state)
{
    json_t *j;

    (void)state;
    expect_bads("{} x", CUSTOS_ERR_INVALID, "invalid JSON");
    expect_bads("{}{}", CUSTOS_ERR_INVALID, "invalid JSON");
    expect_bads("{\"a\":1},", CUSTOS_ERR_INVALID, "invalid JSON");
    expect_bads("{\"a\":1}\n\n]", CUSTOS_ERR_INVALID, "invalid JSON");
    /* trailing whitespace is not garbage */
    expect_ok("{\"a\":1}\n", 0);
    expect_ok("  {\"a\":1}  \r\n", 0);
    /* empty */
    assert_int_equal(parse("", 0, 65536, 0, &j), CUSTOS_ERR_INVALID);
    assert_null(j);
    assert_non_null(strstr(custos_err_msg(CUSTOS_ERR_INVALID), "empty"));
    assert_int_equal(parse(NULL, 0, 65536, 0, &j), CUSTOS_ERR_INVALID);
    expect_bads("   ", CUSTOS_ERR_INVALID, NULL);
    expect_bads("\n", CUSTOS_ERR_INVALID, NULL);
    /* a raw NUL in the input */
    expect_bad("{\"a\":\"b\0c\"}", 11, CUSTOS_ERR_INVALID, NULL);
    expect_bad("{\"a\":1}\0", 8, CUSTOS_ERR_INVALID, NULL);
    /* an escaped NUL is refused (values must not hide a NUL) */
    expect_bads("{\"a\":\"b\\u0000c\"}", CUSTOS_ERR_INVALID, NULL);
    /* syntax errors */
    expect_bads("{\"a\":}", CUSTOS_ERR_INVALID, "invalid JSON");
    expect_bads("{'a':1}", CUSTOS_ERR_INVALID, "invalid JSON");
    expect_bads("{\"a\":1,}", CUSTOS_ERR_INVALID, "invalid JSON");
    expect_bads("{\"a\":NaN}", CUSTOS_ERR_INVALID, "invalid JSON");
}

static void test_types(void **state)
{
    json_t *j;

    (void)state;
    /* not an object when an object is wanted */
    expect_bads("[]", CUSTOS_ERR_INVALID, "object");
    expect_bads("[{\"a\":1}]", CUSTOS_ERR_INVALID, "object");
    expect_bads("\"text\"", CUSTOS_ERR_INVALID, NULL);
    expect_bads("42", CUSTOS_ERR_INVALID, NULL);
    expect_bads("null", CUSTOS_ERR_INVALID, NULL);
    /* any type */
    assert_int_equal(parse("[1,2]", 5, 100, 1, &j), CUSTOS_OK);
    assert_true(json_is_array(j));
    json_decref(j);
    assert_int_equal(parse("\"t\"", 3, 100, 1, &j), CUSTOS_OK);
    assert_true(json_is_string(j));
    json_decref(j);
    assert_int_equal(parse("7", 1, 100, 1, &j), CUSTOS_OK);
    assert_true(json_is_integer(j));
    json_decref(j);
}

/* Errors report positions, never input bytes (they may be personal data). */
static void test_no_input_in_messages(void **state)
{
    static const char *const docs[] = {
        "{\"email\":\"SECRETVALUE@example.com\"",
        "{\"email\":\"SECRETVALUE\" x}",
        "{\"SECRETVALUE\":1,\"SECRETVALUE\":2}",
        "{\"email\":\"SECRETVALUE\xff\"}",
        "SECRETVALUE",
        "{\"a\":SECRETVALUE}",
        NULL,
    };
    size_t i;

    (void)state;
    for (i = 0; docs[i]; i++) {
        json_t *j;
        enum custos_err rc = parse(docs[i], strlen(docs[i]), 65536, 0, &j);

        assert_int_equal(rc, CUSTOS_ERR_INVALID);
        if (strstr(custos_err_msg(rc), "SECRET"))
            fail_msg("message quotes input: %s", custos_err_msg(rc));
    }
}

static void test_json_only(void **state)
{
    static const char *const allowed[] = {"id", "kind", "roles", NULL};
    static const char *const none[] = {NULL};
    json_t *o = json_pack("{s:s, s:s}", "id", "svc", "kind", "service");
    char longkey[200];

    (void)state;
    assert_int_equal(custos_json_only(o, allowed, "principal"), CUSTOS_OK);
    json_object_set_new(o, "role", json_string("x"));
    custos_err_clear();
    assert_int_equal(custos_json_only(o, allowed, "principal"), CUSTOS_ERR_INVALID);
    assert_non_null(strstr(custos_err_msg(CUSTOS_ERR_INVALID), "'role'"));
    assert_non_null(strstr(custos_err_msg(CUSTOS_ERR_INVALID), "principal"));
    json_decref(o);
    /* empty object with nothing allowed */
    o = json_object();
    assert_int_equal(custos_json_only(o, none, "x"), CUSTOS_OK);
    /* a long unknown key is capped in the message */
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    json_object_set_new(o, longkey, json_true());
    custos_err_clear();
    assert_int_equal(custos_json_only(o, none, "x"), CUSTOS_ERR_INVALID);
    assert_true(strlen(custos_err_msg(CUSTOS_ERR_INVALID)) < 120);
    json_decref(o);
}

static void test_json_str(void **state)
{
    json_t *o = json_pack("{s:s, s:i, s:s, s:n}", "id", "svc", "n", 5, "long", "0123456789", "nul");
    const char *v = (const char *)0x1;

    (void)state;
    assert_int_equal(custos_json_str(o, "id", 1, 64, &v), CUSTOS_OK);
    assert_string_equal(v, "svc");
    /* missing */
    custos_err_clear();
    v = (const char *)0x1;
    assert_int_equal(custos_json_str(o, "secret", 1, 64, &v), CUSTOS_ERR_INVALID);
    assert_null(v);
    assert_non_null(strstr(custos_err_msg(CUSTOS_ERR_INVALID), "missing field 'secret'"));
    v = (const char *)0x1;
    assert_int_equal(custos_json_str(o, "secret", 0, 64, &v), CUSTOS_OK);
    assert_null(v);
    /* wrong type */
    custos_err_clear();
    assert_int_equal(custos_json_str(o, "n", 1, 64, &v), CUSTOS_ERR_INVALID);
    assert_non_null(strstr(custos_err_msg(CUSTOS_ERR_INVALID), "'n' must be a string"));
    assert_int_equal(custos_json_str(o, "n", 0, 64, &v), CUSTOS_ERR_INVALID);
    assert_int_equal(custos_json_str(o, "nul", 0, 64, &v), CUSTOS_ERR_INVALID);
    /* length cap: 10 bytes fit 10, not 9 */
    assert_int_equal(custos_json_str(o, "long", 1, 10, &v), CUSTOS_OK);
    assert_int_equal(custos_json_str(o, "long", 1, 9, &v), CUSTOS_ERR_INVALID);
    assert_non_null(strstr(custos_err_msg(CUSTOS_ERR_INVALID), "longer than 9"));
    /* an embedded NUL (possible in a jansson string built in memory) */
    json_object_set_new(o, "z", json_stringn("a\0b", 3));
    assert_int_equal(custos_json_str(o, "z", 1, 64, &v), CUSTOS_ERR_INVALID);
    assert_non_null(strstr(custos_err_msg(CUSTOS_ERR_INVALID), "NUL"));
    json_decref(o);
}

/* jansson frees through custos_free_wiped (installed before main), so decrypted values in a
   response tree or its serialised text do not stay in freed memory. */
static void test_wiped_on_free(void **state)
{
    json_malloc_t m = NULL;
    json_free_t f = NULL;
    json_t *j;
    char *s;

    (void)state;
    json_get_alloc_funcs(&m, &f);
    assert_ptr_equal(f, custos_free_wiped);
    assert_non_null(m);
    j = json_pack("{s:s}", "name", "가다연");
    assert_non_null(j);
    s = json_dumps(j, JSON_COMPACT);
    assert_non_null(s);
    assert_string_equal(s, "{\"name\":\"가다연\"}"); /* allocated by json_alloc: freed wiped below */
    custos_free_wiped(s);
    json_decref(j);
    custos_free_wiped(NULL); /* like free(NULL) */
}

static int in_arena(const struct custos_json_arena *a, const void *p)
{
    return (const uint8_t *)p >= a->p && (const uint8_t *)p < a->p + a->cap;
}

/* an ended arena's block is poisoned under AddressSanitizer (json.c) */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif


/* the block of an ended scope: wiped, and poisoned under AddressSanitizer */
static int ended_and_wiped(const uint8_t *p, size_t n)
{
    int z;

#ifdef TEST_ASAN
    assert_true(__asan_address_is_poisoned(p));
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
    z = all_zero(p, n);
#ifdef TEST_ASAN
    ASAN_POISON_MEMORY_REGION(p, n);
#endif
    return z;
}

/* A parse arena: a line's nodes come from one block, every free into it is counted, the end
   wipes what was used; what does not fit, and what was made outside the scope, is the heap's. */
static void test_parse_arena(void **state)
{
    static const char doc[] = "{\"name\":\"가다연\",\"address_book\":[{\"recipient\":\"나\","
                              "\"entrance_code\":\"#1234\"}]}";
    struct custos_json_arena a = {0};
    json_t *before = json_string("made before the scope"), *j = NULL, *after;
    char *big;
    size_t used, n = CUSTOS_JSON_ARENA_BYTES + 1000;

    (void)state;
    assert_non_null(before);
    assert_int_equal(custos_json_arena_begin(&a), CUSTOS_OK);
    assert_non_null(a.p);
    assert_int_equal(custos_json_parse(doc, strlen(doc), 4096, 0, &j), CUSTOS_OK);
    assert_true(in_arena(&a, j));
    assert_string_equal(json_string_value(json_object_get(j, "name")), "가다연");
    assert_true(a.live > 0);
    json_decref(before); /* a heap value freed inside the scope goes back to the heap */
    json_decref(j);
    assert_int_equal(a.live, 0);
    used = a.used;
    assert_true(used > 0);
    assert_false(all_zero(a.p, used));
    custos_json_arena_end(&a);
    assert_int_equal(a.used, 0);
    assert_true(ended_and_wiped(a.p, used)); /* the values are gone with the scope */

    /* bad input inside a scope: jansson frees what it built, nothing is left live */
    assert_int_equal(custos_json_arena_begin(&a), CUSTOS_OK);
    assert_int_equal(custos_json_parse("{\"a\":[1,2,", 9, 4096, 0, &j), CUSTOS_ERR_INVALID);
    assert_null(j);
    assert_int_equal(a.live, 0);
    custos_json_arena_end(&a);

    /* a document larger than the block: what does not fit comes from the heap */
    big = malloc(n + 16);
    assert_non_null(big);
    memcpy(big, "[\"", 2);
    memset(big + 2, 'x', n);
    memcpy(big + 2 + n, "\"]", 3);
    assert_int_equal(custos_json_arena_begin(&a), CUSTOS_OK);
    assert_int_equal(custos_json_parse(big, n + 4, n + 4, 1, &j), CUSTOS_OK);
    assert_int_equal(strlen(json_string_value(json_array_get(j, 0))), n);
    assert_false(in_arena(&a, json_string_value(json_array_get(j, 0))));
    json_decref(j);
    assert_int_equal(a.live, 0);
    custos_json_arena_end(&a);
    free(big);

    /* outside any scope, jansson allocates from the heap again */
    after = json_string("after");
    assert_non_null(after);
    assert_false(in_arena(&a, after));
    json_decref(after);
    custos_json_arena_release(&a);
    assert_null(a.p);
    custos_json_arena_release(&a); /* twice is harmless */
}

/* Runs fn in a child process; 1 when the child was stopped by SIGABRT. */
static int aborts(void (*fn)(void))
{
    int st = 0;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        fclose(stderr); /* the child's one-line message is expected, not news */
        fn();
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static void value_outlives_scope(void)
{
    struct custos_json_arena a = {0};
    json_t *j;

    custos_json_arena_begin(&a);
    j = json_string("kept past the scope");
    custos_json_arena_end(&a); /* j is still referenced */
    json_decref(j);
}

static void scope_inside_scope(void)
{
    struct custos_json_arena a = {0}, b = {0};

    custos_json_arena_begin(&a);
    custos_json_arena_begin(&b);
}

static void scope_kept_right(void)
{
    struct custos_json_arena a = {0};
    json_t *j;

    custos_json_arena_begin(&a);
    j = json_string("released in time");
    json_decref(j);
    custos_json_arena_end(&a);
    custos_json_arena_release(&a);
}

/* Breaking the scope rule stops the process in every build (not an assert): otherwise a value
   would be freed into the middle of the block, or stay unwiped. */
static void test_parse_arena_misuse(void **state)
{
    (void)state;
    assert_true(aborts(value_outlives_scope));
    assert_true(aborts(scope_inside_scope));
    assert_false(aborts(scope_kept_right));
}

/* custos_json_dump against jansson's own compact dump: the same text for everything custos
   builds (control characters aside: \u escapes differ only in the case of their hex digits). */
static void dump_same(json_t *j, int byte_equal)
{
    size_t len = 0;
    char *mine = custos_json_dump(j, &len), *ref = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *back;

    assert_non_null(mine);
    assert_non_null(ref);
    assert_int_equal(len, strlen(mine));
    if (byte_equal)
        assert_string_equal(mine, ref);
    back = json_loads(mine, JSON_DECODE_ANY, NULL);
    assert_non_null(back);
    assert_true(json_equal(back, j));
    json_decref(back);
    custos_free_wiped(mine);
    custos_free_wiped(ref);
    json_decref(j);
}

static void test_dump(void **state)
{
    size_t len = 99;
    char big[5000];

    (void)state;
    dump_same(json_pack("{s:s, s:{s:s, s:[{s:s, s:s}, {s:s}]}, s:[s, s]}", "id", "81517e9c", "fields",
                        "name", "지도은", "address_book", "recipient", "지도은", "address", "강원특별자치도 분당시",
                        "phone", "010-7043-4929", "masked", "fields.phone", "fields.name"),
              1);
    dump_same(json_pack("{s:I, s:I, s:I, s:b, s:b, s:n, s:{}, s:[]}", "a", (json_int_t)0, "b",
                        (json_int_t)-1234567890123LL, "c", (json_int_t)INT64_MIN, "t", 1, "f", 0, "z", "o", "e"),
              1);
    dump_same(json_pack("{s:s}", "q\"uo\\te/slash", "tab\there\nnew\rline\b\f end"), 1);
    dump_same(json_pack("[s, s]", "\x01\x1f", "\x7f é €"), 0);
    dump_same(json_string(""), 1);
    dump_same(json_pack("{s:f}", "real", 1.5), 1); /* reals: jansson's own dump */
    memset(big, 'x', sizeof(big) - 1); /* past the first buffer: grows */
    big[sizeof(big) - 1] = '\0';
    dump_same(json_pack("{s:s, s:s}", "big", big, "k", "v"), 1);
    {
        json_t *o = json_object(); /* members in insertion order, as jansson keeps them */

        json_object_set_new(o, "zeta", json_integer(1));
        json_object_set_new(o, "alpha", json_integer(2));
        json_object_set_new(o, "mid", json_integer(3));
        dump_same(o, 1);
    }
    assert_null(custos_json_dump(NULL, &len));
    assert_int_equal(len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_cap),
        cmocka_unit_test(test_depth_cap),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_trailing_and_empty),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_no_input_in_messages),
        cmocka_unit_test(test_json_only),
        cmocka_unit_test(test_wiped_on_free),
        cmocka_unit_test(test_parse_arena),
        cmocka_unit_test(test_parse_arena_misuse),
        cmocka_unit_test(test_json_str),
        cmocka_unit_test(test_dump),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * fuzz_subject.c - libFuzzer target: a subject body as it arrives over HTTP
 * (POST /v1/subjects, PATCH /v1/subjects/{id}) or as an import line.
 *
 * Input: the raw body bytes.  Path: custos_json_parse (CUSTOS_BODY_MAX,
 * objects only, and again with any_type) -> custos_schema_flatten against the
 * default schema in create mode (patch=0) and patch mode (patch=1) ->
 * custos_normalise and custos_mask_value (every style) over each string leaf.
 * The same body also goes through custos_json_only / custos_json_str the way
 * the auth and principal handlers read theirs ({"principal","secret"}, ...).
 *
 * Invariants checked beyond "no crash, no leak, no UB":
 *  - a parsed document is never nested deeper than CUSTOS_JSON_MAX_DEPTH;
 *  - any_type=0 succeeds exactly when any_type=1 yields an object;
 *  - every leaf is a declared field of the declared type within its caps,
 *    valid UTF-8 without NUL (fuzz_check_leaves);
 *  - a body valid for create is valid for patch, with the same leaves;
 *  - custos_json_str hands out a NUL-free string within its cap, or NULL
 *    only when the key is absent and optional;
 *  - an error detail never quotes a value: with the keys (which may be
 *    echoed) blanked out, it contains no non-ASCII or '@' string value of
 *    4+ bytes (names, emails, addresses).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/json.h"
#include "core/schema.h"
#include "custos/vault.h"

#include "fuzz_common.h"

static struct custos_schema *schema;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (custos_schema_parse(custos_default_schema_json, strlen(custos_default_schema_json), &schema)) {
        fprintf(stderr, "fuzz_subject: the default schema does not parse\n");
        abort();
    }
    return 0;
}

static size_t depth_of(json_t *j)
{
    size_t d = 0, i;
    const char *k;
    json_t *v;

    if (json_is_object(j)) {
        json_object_foreach(j, k, v) {
            size_t c = depth_of(v);

            if (c > d)
                d = c;
        }
        return d + 1;
    }
    if (json_is_array(j)) {
        json_array_foreach(j, i, v) {
            size_t c = depth_of(v);

            if (c > d)
                d = c;
        }
        return d + 1;
    }
    return 0;
}

/* Every key of j, nested ones too (at most cap). */
static void collect_keys(json_t *j, const char **keys, size_t *n, size_t cap)
{
    const char *k;
    json_t *v;
    size_t i;

    if (json_is_object(j)) {
        json_object_foreach(j, k, v) {
            if (*n < cap)
                keys[(*n)++] = k;
            collect_keys(v, keys, n, cap);
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) collect_keys(v, keys, n, cap);
    }
}

static int longer_first(const void *a, const void *b)
{
    size_t la = strlen(*(const char *const *)a), lb = strlen(*(const char *const *)b);

    return la < lb ? 1 : la > lb ? -1 : 0;
}

/* t as an error detail spells it: invalid UTF-8 (a character cut at a byte cap included) and
   control characters replaced by '?' (custos_err_set). */
static void as_echoed(char *t)
{
    custos_utf8_scrub(t);
    for (; *t; t++)
        if ((unsigned char)*t < 0x20 || *t == 0x7f)
            *t = '?';
}

/* Blank out of msg every key of j (whole, and cut at 64 bytes as "%.64s" echoes it, each as the
   detail spells it), longest first: a short key ("phone") must not blank the start of a longer
   one ("phone...") and leave the rest of it looking like a quoted value. */
static void strip_keys(json_t *j, char *msg)
{
    static const char *keys[4096];
    size_t nkeys = 0;

    collect_keys(j, keys, &nkeys, sizeof(keys) / sizeof(keys[0]));
    qsort(keys, nkeys, sizeof(keys[0]), longer_first);
    for (size_t x = 0; x < nkeys; x++) {
        const char *k = keys[x];
        size_t kl = strlen(k), cut;

        for (cut = 0; cut < 2; cut++) {
            static char e[CUSTOS_BODY_MAX + 1];
            size_t n = cut && kl > 64 ? 64 : kl;
            char *q = msg;

            memcpy(e, k, n);
            e[n] = '\0';
            as_echoed(e);
            while (n && *q) {
                if (strncmp(q, e, n) == 0) {
                    memset(q, 1, n);
                    q += n;
                } else
                    q++;
            }
        }
    }
}

static int looks_personal(const char *s, size_t n)
{
    size_t i;

    if (n < 4)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80 || s[i] == '@')
            return 1;
    return 0;
}

/* With the keys (which may be echoed) blanked out, the error detail must not contain a
   personal-looking string value of the document. */
static void check_values(json_t *j, const char *msg)
{
    const char *k;
    json_t *v;
    size_t i;

    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        size_t n = json_string_length(j);

        if (n == strlen(s) && looks_personal(s, n) && strstr(msg, s)) {
            fprintf(stderr, "fuzz_subject: error detail quotes a value\n");
            abort();
        }
    } else if (json_is_object(j)) {
        json_object_foreach(j, k, v) check_values(v, msg);
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) check_values(v, msg);
    }
}

static void check_no_quote(json_t *doc, const char *msg)
{
    char *m = strdup(msg);

    FUZZ_CHECK(m != NULL);
    strip_keys(doc, m);
    check_values(doc, m);
    free(m);
}

/* Request bodies of the auth handlers: allowed keys, then required/optional capped strings. */
static void request_fields(json_t *j)
{
    static const char *const keys[] = {"principal", "secret", "token", "id", "kind", NULL};
    static const size_t caps[] = {64, 64, 64, 16, 16};
    enum custos_err rc;
    size_t i;

    rc = custos_json_only(j, keys, "request");
    FUZZ_CHECK(rc == CUSTOS_OK || rc == CUSTOS_ERR_INVALID);
    if (rc)
        check_no_quote(j, custos_err_msg(rc));
    else {
        const char *k;
        json_t *v;
        size_t n;

        json_object_foreach(j, k, v) {
            for (n = 0; keys[n] && strcmp(keys[n], k) != 0; n++)
                ;
            FUZZ_CHECK(keys[n] != NULL);
        }
    }
    for (i = 0; keys[i]; i++) {
        const char *out = (const char *)1;
        json_t *v = json_object_get(j, keys[i]);
        int required = (int)(i & 1);

        rc = custos_json_str(j, keys[i], required, caps[i], &out);
        FUZZ_CHECK(rc == CUSTOS_OK || rc == CUSTOS_ERR_INVALID);
        if (rc == CUSTOS_OK && out) {
            FUZZ_CHECK(json_is_string(v) && out == json_string_value(v));
            FUZZ_CHECK(strlen(out) == json_string_length(v) && strlen(out) <= caps[i]);
        } else if (rc == CUSTOS_OK)
            FUZZ_CHECK(!v && !required);
        else {
            FUZZ_CHECK(out == NULL);
            check_no_quote(j, custos_err_msg(rc));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    json_t *j = NULL, *any = NULL;
    enum custos_err rc, rc_any, rc_patch;
    struct custos_leaves create = {0}, patch = {0};
    uint64_t removed_c = 0, removed_p = 0;
    size_t i;

    rc = custos_json_parse(buf, size, CUSTOS_BODY_MAX, 0, &j);
    FUZZ_CHECK(rc == CUSTOS_OK || rc == CUSTOS_ERR_INVALID || rc == CUSTOS_ERR_TOOBIG);
    FUZZ_CHECK((rc == CUSTOS_OK) == (j != NULL));
    rc_any = custos_json_parse(buf, size, CUSTOS_BODY_MAX, 1, &any);
    FUZZ_CHECK((rc_any == CUSTOS_OK) == (any != NULL));
    FUZZ_CHECK((rc == CUSTOS_OK) == (rc_any == CUSTOS_OK && json_is_object(any)));
    if (any) {
        FUZZ_CHECK(depth_of(any) <= CUSTOS_JSON_MAX_DEPTH);
        json_decref(any);
    }
    if (rc)
        return 0;
    request_fields(j);

    rc = custos_schema_flatten(schema, j, 0, &create, &removed_c);
    FUZZ_CHECK(rc == CUSTOS_OK || rc == CUSTOS_ERR_INVALID);
    if (rc)
        check_no_quote(j, custos_err_msg(rc));
    else
        fuzz_check_leaves(schema, &create, 0, removed_c);

    rc_patch = custos_schema_flatten(schema, j, 1, &patch, &removed_p);
    FUZZ_CHECK(rc_patch == CUSTOS_OK || rc_patch == CUSTOS_ERR_INVALID);
    if (rc_patch)
        check_no_quote(j, custos_err_msg(rc_patch));
    else
        fuzz_check_leaves(schema, &patch, 1, removed_p);

    if (rc == CUSTOS_OK) {
        /* whatever may be created may also be patched in, leaf for leaf */
        FUZZ_CHECK(rc_patch == CUSTOS_OK);
        FUZZ_CHECK(create.n == patch.n);
        for (i = 0; i < create.n; i++) {
            FUZZ_CHECK(strcmp(create.v[i].path, patch.v[i].path) == 0);
            FUZZ_CHECK(create.v[i].val == patch.v[i].val && create.v[i].len == patch.v[i].len);
        }
        fuzz_exercise_leaves(&create);
    } else if (rc_patch == CUSTOS_OK) {
        fuzz_exercise_leaves(&patch);
    }
    custos_leaves_release(&create);
    custos_leaves_release(&patch);
    json_decref(j);
    return 0;
}

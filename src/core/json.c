/*
 * json.c - bounded JSON parsing of outside input, jansson's allocator (wiped
 * frees, parse arenas) and the one-pass writer.  See json.h.
 * Must never: let jansson recurse deeper than CUSTOS_JSON_MAX_DEPTH, quote
 * input bytes in an error message, free or reuse memory a JSON value still
 * uses, or give memory back unwiped.
 */
#include "json.h"

#include "buf.h"

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "custos/vault.h"

#include "custos/banned.h"

/* Under AddressSanitizer an arena's block is poisoned outside its scopes: a value used after
   its scope ended is reported, not read back as zeros. */
#if defined(__SANITIZE_ADDRESS__)
#define ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_ASAN 1
#endif
#endif
#ifdef ARENA_ASAN
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif

/* Under AddressSanitizer each allocation is followed by a poisoned gap and only what was handed
   out is unpoisoned, so an overflow from one node into the next is reported too. */
#ifdef ARENA_ASAN
#define ARENA_GAP 16
#else
#define ARENA_GAP 0
#endif

/*
 * Every jansson allocation is wiped when freed: a read's response tree, and the string it is
 * serialised to, hold decrypted personal values, and freed heap memory must not keep them.
 * Installed before main() runs, so no jansson allocation predates it (freeing one with the
 * wrong function would be undefined).  Inside a parse arena's scope (json.h) they come from
 * the arena's block instead, wiped as a whole at the scope's end.
 */
static _Thread_local struct custos_json_arena *arena; /* this thread's, between begin and end */

/* A broken scope rule (a value released after its scope, a scope begun inside another) would
   free a pointer into the block, or leave values unwiped: stop, whatever the build. */
static void arena_misuse(const char *what)
{
    fprintf(stderr, "custos: internal error: %s\n", what);
    abort();
}

static void *json_alloc(size_t n)
{
    struct custos_json_arena *a = arena;

    if (a) {
        size_t at = (a->used + 15) & ~(size_t)15; /* max_align_t */

        if (at <= a->cap && n + ARENA_GAP >= n && n + ARENA_GAP <= a->cap - at) {
            a->used = at + n + ARENA_GAP;
            a->live++;
            ASAN_UNPOISON_MEMORY_REGION(a->p + at, n);
            return a->p + at;
        }
    }
    return malloc(n);
}

void custos_free_wiped(void *p)
{
    struct custos_json_arena *a = arena;

    if (a && (uint8_t *)p >= a->p && (uint8_t *)p < a->p + a->cap) {
        if (a->live == 0)
            arena_misuse("a JSON value freed twice in its arena");
        a->live--; /* wiped with the rest of the block at the scope's end */
        return;
    }
    if (p) {
        sodium_memzero(p, malloc_usable_size(p));
        free(p);
    }
}

enum custos_err custos_json_arena_begin(struct custos_json_arena *a)
{
    if (arena)
        arena_misuse("a JSON arena scope begun inside another");
    if (!a->p && !(a->p = malloc(a->cap = CUSTOS_JSON_ARENA_BYTES)))
        return CUSTOS_ERR_NOMEM;
    if (a->used) { /* a scope never ended: its bytes go now */
        ASAN_UNPOISON_MEMORY_REGION(a->p, a->used);
        sodium_memzero(a->p, a->used);
    }
    ASAN_POISON_MEMORY_REGION(a->p, a->cap);
    a->used = 0;
    a->live = 0;
    arena = a;
    return CUSTOS_OK;
}

void custos_json_arena_end(struct custos_json_arena *a)
{
    if (arena == a)
        arena = NULL;
    if (!a->p)
        return;
    if (a->live)
        arena_misuse("a JSON value outlived its arena scope");
    ASAN_UNPOISON_MEMORY_REGION(a->p, a->used);
    sodium_memzero(a->p, a->used);
    a->used = 0;
    ASAN_POISON_MEMORY_REGION(a->p, a->cap);
}

void custos_json_arena_release(struct custos_json_arena *a)
{
    if (arena == a)
        arena = NULL;
    if (a->p) {
        ASAN_UNPOISON_MEMORY_REGION(a->p, a->cap);
        sodium_memzero(a->p, a->used); /* nothing, unless a scope was never ended */
        free(a->p);
    }
    a->p = NULL;
    a->cap = a->used = 0;
}

__attribute__((constructor)) static void json_wipe_on_free(void)
{
    json_set_alloc_funcs(json_alloc, custos_free_wiped);
}

#define DUMP_MAX (256u << 20) /* no response comes near this */

/* 1: a value this writer does not handle (a real): the caller falls back to jansson's dump. */
static int dump_value(struct custos_buf *b, const json_t *j, int depth, enum custos_err *rc)
{
    const char *key;
    json_t *v;
    size_t i;

    if (depth > 64) /* trees are built by custos itself; parsed input is capped far lower */
        return 1;
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        *rc = custos_buf_addc(b, '{');
        i = 0;
        json_object_foreach((json_t *)j, key, v) {
            if (!*rc && i++)
                *rc = custos_buf_addc(b, ',');
            if (!*rc)
                *rc = custos_buf_add_json_str(b, key, strlen(key));
            if (!*rc)
                *rc = custos_buf_addc(b, ':');
            if (*rc || dump_value(b, v, depth + 1, rc))
                return *rc ? 0 : 1;
        }
        if (!*rc)
            *rc = custos_buf_addc(b, '}');
        return 0;
    case JSON_ARRAY:
        *rc = custos_buf_addc(b, '[');
        json_array_foreach((json_t *)j, i, v) {
            if (!*rc && i)
                *rc = custos_buf_addc(b, ',');
            if (*rc || dump_value(b, v, depth + 1, rc))
                return *rc ? 0 : 1;
        }
        if (!*rc)
            *rc = custos_buf_addc(b, ']');
        return 0;
    case JSON_STRING:
        *rc = custos_buf_add_json_str(b, json_string_value(j), json_string_length(j));
        return 0;
    case JSON_INTEGER:
        *rc = custos_buf_add_i64(b, json_integer_value(j));
        return 0;
    case JSON_TRUE:
        *rc = custos_buf_adds(b, "true");
        return 0;
    case JSON_FALSE:
        *rc = custos_buf_adds(b, "false");
        return 0;
    case JSON_NULL:
        *rc = custos_buf_adds(b, "null");
        return 0;
    default:
        return 1;
    }
}

char *custos_json_dump(const json_t *j, size_t *len)
{
    struct custos_buf b;
    enum custos_err rc = CUSTOS_OK;
    char *s;

    *len = 0;
    if (!j)
        return NULL;
    custos_buf_init(&b, DUMP_MAX);
    if (custos_buf_reserve(&b, 2047) != CUSTOS_OK)
        return NULL;
    if (dump_value(&b, j, 0, &rc) == 0 && rc == CUSTOS_OK) {
        *len = b.len;
        return (char *)b.p; /* malloc'ed: custos_free_wiped frees it */
    }
    custos_buf_release(&b);
    if (rc != CUSTOS_OK)
        return NULL;
    s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    *len = s ? strlen(s) : 0;
    return s;
}

/* Depth of the deepest container, scanning outside strings only. */
static size_t scan_depth(const char *p, size_t n, size_t cap)
{
    size_t i, depth = 0, max = 0;
    int in_str = 0;

    for (i = 0; i < n; i++) {
        char c = p[i];

        if (in_str) {
            /* to the next '"' not escaped: one after an even run of backslashes (the run
               starts after the opening quote at the earliest, which is no backslash) */
            const char *q = memchr(p + i, '"', n - i);
            size_t k;

            if (!q)
                break;
            i = (size_t)(q - p);
            for (k = i; k > 0 && p[k - 1] == '\\'; k--)
                ;
            in_str = (i - k) % 2 != 0;
            continue;
        }
        if (c == '"')
            in_str = 1;
        else if (c == '{' || c == '[') {
            if (++depth > max)
                max = depth;
            if (max > cap)
                return max;
        } else if ((c == '}' || c == ']') && depth)
            depth--;
    }
    return max;
}

enum custos_err custos_json_parse(const char *buf, size_t len, size_t max_bytes, int any_type, json_t **out)
{
    json_error_t jerr;
    json_t *j;

    *out = NULL;
    if (len > max_bytes)
        return custos_err_set(CUSTOS_ERR_TOOBIG, "request body exceeds %zu bytes", max_bytes);
    if (len == 0)
        return custos_err_set(CUSTOS_ERR_INVALID, "empty body: expected a JSON object");
    if (scan_depth(buf, len, CUSTOS_JSON_MAX_DEPTH) > CUSTOS_JSON_MAX_DEPTH)
        return custos_err_set(CUSTOS_ERR_INVALID, "JSON nested deeper than %d levels", CUSTOS_JSON_MAX_DEPTH);
    j = json_loadb(buf, len, JSON_REJECT_DUPLICATES | (any_type ? JSON_DECODE_ANY : 0), &jerr);
    if (!j) {
        if (json_error_code(&jerr) == json_error_invalid_utf8)
            return custos_err_set(CUSTOS_ERR_INVALID, "body is not valid UTF-8");
        if (json_error_code(&jerr) == json_error_duplicate_key)
            return custos_err_set(CUSTOS_ERR_INVALID, "duplicate key in JSON object");
        return custos_err_set(CUSTOS_ERR_INVALID, "invalid JSON at line %d column %d", jerr.line, jerr.column);
    }
    if (!any_type && !json_is_object(j)) {
        json_decref(j);
        return custos_err_set(CUSTOS_ERR_INVALID, "expected a JSON object");
    }
    *out = j;
    return CUSTOS_OK;
}

enum custos_err custos_json_only(json_t *obj, const char *const *allowed, const char *what)
{
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v) {
        const char *const *a;
        int ok = 0;

        for (a = allowed; *a; a++)
            if (strcmp(*a, key) == 0) {
                ok = 1;
                break;
            }
        if (!ok) {
            /* Keys are caller-chosen names, not values; still cap what we echo. */
            return custos_err_set(CUSTOS_ERR_INVALID, "unknown field '%.64s' in %s", key, what);
        }
    }
    return CUSTOS_OK;
}

enum custos_err custos_json_str(json_t *obj, const char *key, int required, size_t max_len, const char **out)
{
    json_t *v = json_object_get(obj, key);

    *out = NULL;
    if (!v) {
        if (required)
            return custos_err_set(CUSTOS_ERR_INVALID, "missing field '%s'", key);
        return CUSTOS_OK;
    }
    if (!json_is_string(v))
        return custos_err_set(CUSTOS_ERR_INVALID, "field '%s' must be a string", key);
    if (json_string_length(v) > max_len)
        return custos_err_set(CUSTOS_ERR_INVALID, "field '%s' is longer than %zu bytes", key, max_len);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return custos_err_set(CUSTOS_ERR_INVALID, "field '%s' contains a NUL character", key);
    *out = json_string_value(v);
    return CUSTOS_OK;
}

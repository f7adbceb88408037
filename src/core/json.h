/*
 * json.h - bounded JSON input for everything that comes from outside.
 *
 * custos_json_parse() is the one entry point for outside JSON: it enforces a
 * byte cap and a nesting-depth cap before jansson sees the text (so a deep
 * document cannot exhaust the stack), rejects duplicate keys, invalid UTF-8
 * and trailing garbage, and reports errors by position only (never quoting
 * input, which may be personal data).
 */
#ifndef CUSTOS_JSON_H
#define CUSTOS_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "custos/err.h"

#define CUSTOS_JSON_MAX_DEPTH 8

/* Parse len bytes into a new reference in *out (an object unless any_type).
   CUSTOS_ERR_INVALID / CUSTOS_ERR_TOOBIG with a detail on failure. */
enum custos_err custos_json_parse(const char *buf, size_t len, size_t max_bytes, int any_type, json_t **out);

/* Reject keys of obj not in the NULL-terminated list `allowed`. */
enum custos_err custos_json_only(json_t *obj, const char *const *allowed, const char *what);

/* Fetch a string member; CUSTOS_ERR_INVALID if missing (when required) or not a string.
   *out is NULL when absent and optional. */
enum custos_err custos_json_str(json_t *obj, const char *key, int required, size_t max_len, const char **out);

/*
 * A parse arena: between custos_json_arena_begin() and custos_json_arena_end(), jansson's
 * allocations on the calling thread are carved from one block, frees into it cost nothing, and
 * the end wipes the bytes used at once, instead of a malloc, a wipe and a free per node (a
 * fifth of an import line's parse).  Every value made in the scope must be released before its
 * end (json_decref as usual); what does not fit falls back to the heap.  One arena per thread,
 * scopes never nested; release frees the block.
 */
#define CUSTOS_JSON_ARENA_BYTES (64u << 10)

struct custos_json_arena {
    uint8_t *p;
    size_t cap, used;
    size_t live; /* allocations from the block not freed yet */
};

enum custos_err custos_json_arena_begin(struct custos_json_arena *a); /* a zeroed the first time */
void custos_json_arena_end(struct custos_json_arena *a);
void custos_json_arena_release(struct custos_json_arena *a);

#endif

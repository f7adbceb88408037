/*
 * schema.h - what a subject record may contain, and how each field is
 * classified, searched and masked.
 *
 * A schema is a JSON document (docs/schema.md); the default schema is the
 * shape of the sample data set and is itself stored as JSON below, parsed by
 * the same code as user schema files.  Records are validated against it and
 * flattened into leaves: one sealed value per leaf, addressed by its path:
 * "name", "address_book[2].entrance_code".  A leaf's policy path drops the
 * indices: "address_book.entrance_code".
 */
#ifndef CUSTOS_SCHEMA_H
#define CUSTOS_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"
#include "custos/err.h"

enum custos_ftype { CUSTOS_FT_STRING, CUSTOS_FT_DATE, CUSTOS_FT_INTEGER, CUSTOS_FT_BOOLEAN, CUSTOS_FT_ARRAY };
enum custos_fclass { CUSTOS_FC_PII, CUSTOS_FC_SENSITIVE };
enum custos_mask {
    CUSTOS_MASK_FULL,    /* "****" */
    CUSTOS_MASK_NAME,    /* 선*안: first and last character kept */
    CUSTOS_MASK_PHONE,   /* 010-****-6960 */
    CUSTOS_MASK_EMAIL,   /* ab****@gmail.com */
    CUSTOS_MASK_ADDRESS, /* first two words kept */
    CUSTOS_MASK_EDGES,   /* P**********81: first character and last two kept */
    CUSTOS_MASK_DATE     /* 1965-**-** */
};
enum custos_fformat { CUSTOS_FMT_NONE, CUSTOS_FMT_EMAIL, CUSTOS_FMT_PHONE, CUSTOS_FMT_PCCC };

#define CUSTOS_FIELD_NAME_MAX 48
#define CUSTOS_SCHEMA_MAX_FIELDS 64
#define CUSTOS_PATH_MAX 128
/* Policy paths in a schema (top-level fields plus array item fields): bounds the field lists of
   one audit event, so that it always fits a ledger entry. */
#define CUSTOS_SCHEMA_MAX_PATHS 256

struct custos_field {
    char name[CUSTOS_FIELD_NAME_MAX + 1];
    char ppath[2 * CUSTOS_FIELD_NAME_MAX + 2]; /* policy path: "name", or "top.name" for an item */
    enum custos_ftype type;
    enum custos_fclass cls;
    enum custos_mask mask;
    enum custos_fformat format;
    int searchable;
    size_t max_length;   /* bytes, strings */
    size_t max_items;    /* arrays */
    /* Legal retention (erasure keeps the value sealed under a retention key). */
    uint32_t retention_days;
    char legal_basis[128];
    char retention_role[33]; /* a policy role name: up to 32 characters */
    /* Array items (type == CUSTOS_FT_ARRAY): each item is an object of these. */
    struct custos_field *items;
    size_t nitems;
};

struct custos_schema {
    struct custos_field *fields;
    size_t nfields;
};

/* The built-in default schema as JSON text (documented in docs/schema.md). */
extern const char custos_default_schema_json[];

/* Parse a schema document (text); *out is heap-allocated (custos_schema_free). */
enum custos_err custos_schema_parse(const char *text, size_t len, struct custos_schema **out);
void custos_schema_free(struct custos_schema *s);

const struct custos_field *custos_schema_field(const struct custos_schema *s, const char *name, size_t nlen);

/* One flattened value. */
struct custos_leaf {
    char path[CUSTOS_PATH_MAX];
    const struct custos_field *field; /* the leaf's field (an item field inside arrays) */
    const struct custos_field *top;   /* the top-level field */
    char tag;                         /* 's' string/date, 'i' integer, 'b' boolean */
    const char *val;                  /* borrowed from the JSON document; NULL for integers */
    size_t len;
    long long ival;                   /* integers */
};

struct custos_leaves {
    struct custos_leaf *v;
    size_t n, cap;
};
void custos_leaves_release(struct custos_leaves *l);

/*
 * Validate record `obj` against the schema and flatten it into leaves
 * (ordered by path within each top-level field).  `patch` allows JSON null
 * for a top-level field (meaning: remove it); such fields are reported in
 * *removed (a bit per top-level field index) and produce no leaves.
 * The leaves borrow strings from obj: keep obj alive while using them.
 */
enum custos_err custos_schema_flatten(const struct custos_schema *s, json_t *obj, int patch,
                                      struct custos_leaves *out, uint64_t *removed);


/* The longest max_length a schema may give a string field, in bytes. */
#define CUSTOS_SCHEMA_MAX_LENGTH 4096

/* Normalise a searchable value for the blind index (trim; email and pccc lowercased; phone
   digits, a Korean +82 number in national form, another international one with its '+').
   Writes into out (NUL-terminated; cap > CUSTOS_SCHEMA_MAX_LENGTH + 1 holds any stored value),
   nothing past the NUL: a caller wipes *outlen + 1 bytes (blind_hash relies on it).
   CUSTOS_ERR_INVALID when nothing is left or it does not fit (out wiped).
   CUSTOS_BLIND_VERSION names this normalisation: change it whenever the output for some input
   changes, and every vault rebuilds its blind index at its next open (vault.c). */
#define CUSTOS_BLIND_VERSION 2
enum custos_err custos_normalise(const struct custos_field *f, const char *val, size_t len, char *out,
                                 size_t cap, size_t *outlen);

/* Masked form of a value (UTF-8 aware) appended to out. */
enum custos_err custos_mask_value(enum custos_mask m, const char *val, size_t len, struct custos_buf *out);

#endif

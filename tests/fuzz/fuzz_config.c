/*
 * fuzz_config.c - libFuzzer target: operator configuration files, the
 * schema (custos_schema_parse) and the policy (custos_policy_load).
 *
 * Input: "TEXT" or "TEXT\0RECORD".  TEXT is given to both parsers.  When
 * the schema parses and a RECORD follows the first NUL byte, the record is
 * parsed as a subject body and flattened against that custom schema
 * (create and patch), and its string leaves are normalised and masked -
 * which reaches the combinations a custom schema allows but the default
 * schema never uses (a date mask on a free-text field, ...).
 *
 * Invariants checked beyond "no crash, no leak, no UB":
 *  - a parsed schema respects its caps: at most CUSTOS_SCHEMA_MAX_FIELDS
 *    fields per level and CUSTOS_SCHEMA_MAX_PATHS in all, valid names,
 *    arrays only at the top with items, searchable only on top-level
 *    strings, max_length 1..4096; every field's policy path is its name,
 *    or "top.name" for an array item;
 *  - a loaded policy still has the built-in roles, at most
 *    CUSTOS_POLICY_MAX_ROLES, valid names, and its decisions are deny by
 *    default (no role -> nothing allowed, hidden; unknown purpose -> hidden).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/json.h"
#include "core/policy.h"
#include "core/schema.h"
#include "custos/vault.h"

#include "fuzz_common.h"

static const char *const builtin_roles[] = {"admin", "service", "support", "auditor", "minter", "customer", NULL};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct custos_policy *p = NULL;

    if (custos_policy_load(NULL, 0, &p)) {
        fprintf(stderr, "fuzz_config: the default policy does not load\n");
        abort();
    }
    custos_policy_free(p);
    return 0;
}

static void check_fields(const struct custos_field *f, size_t n, int nested)
{
    size_t i, k;

    FUZZ_CHECK(n >= 1 && n <= CUSTOS_SCHEMA_MAX_FIELDS);
    for (i = 0; i < n; i++) {
        size_t len = strnlen(f[i].name, sizeof(f[i].name));

        FUZZ_CHECK(len >= 1 && len <= CUSTOS_FIELD_NAME_MAX);
        FUZZ_CHECK(f[i].name[0] >= 'a' && f[i].name[0] <= 'z');
        for (k = 0; k < len; k++)
            FUZZ_CHECK((f[i].name[k] >= 'a' && f[i].name[k] <= 'z') || (f[i].name[k] >= '0' && f[i].name[k] <= '9') ||
                       f[i].name[k] == '_');
        FUZZ_CHECK(f[i].max_length >= 1 && f[i].max_length <= 4096);
        FUZZ_CHECK(!f[i].searchable || (!nested && f[i].type == CUSTOS_FT_STRING));
        FUZZ_CHECK(f[i].format == CUSTOS_FMT_NONE || f[i].type == CUSTOS_FT_STRING);
        FUZZ_CHECK(memchr(f[i].legal_basis, '\0', sizeof(f[i].legal_basis)) != NULL);
        FUZZ_CHECK(memchr(f[i].retention_role, '\0', sizeof(f[i].retention_role)) != NULL);
        FUZZ_CHECK(f[i].retention_days <= 36600 && (!nested || f[i].retention_days == 0));
        if (!nested)
            FUZZ_CHECK(strcmp(f[i].ppath, f[i].name) == 0);
        if (f[i].type == CUSTOS_FT_ARRAY) {
            FUZZ_CHECK(!nested);
            FUZZ_CHECK(f[i].items != NULL && f[i].max_items >= 1 && f[i].max_items <= 1000);
            check_fields(f[i].items, f[i].nitems, 1);
            for (k = 0; k < f[i].nitems; k++) {
                size_t tl = strlen(f[i].name);

                FUZZ_CHECK(strncmp(f[i].items[k].ppath, f[i].name, tl) == 0 && f[i].items[k].ppath[tl] == '.' &&
                           strcmp(f[i].items[k].ppath + tl + 1, f[i].items[k].name) == 0);
            }
        } else
            FUZZ_CHECK(f[i].items == NULL && f[i].nitems == 0);
        for (k = 0; k < i; k++)
            FUZZ_CHECK(strcmp(f[k].name, f[i].name) != 0);
    }
}

static void flatten_record(const struct custos_schema *s, const char *rec, size_t len)
{
    json_t *j = NULL;
    struct custos_leaves l = {0};
    uint64_t removed = 0;
    int patch;

    if (custos_json_parse(rec, len, CUSTOS_BODY_MAX, 0, &j))
        return;
    for (patch = 0; patch <= 1; patch++) {
        enum custos_err rc = custos_schema_flatten(s, j, patch, &l, &removed);

        FUZZ_CHECK(rc == CUSTOS_OK || rc == CUSTOS_ERR_INVALID);
        if (rc == CUSTOS_OK) {
            fuzz_check_leaves(s, &l, patch, removed);
            fuzz_exercise_leaves(&l);
        }
        custos_leaves_release(&l);
    }
    json_decref(j);
}

static void check_policy(const struct custos_policy *p)
{
    static const char *const probe_purposes[] = {"account", "delivery", "support", "", "no-such-purpose", NULL};
    static const char *const probe_paths[] = {"*", "name", "address_book.entrance_code", "", "a.b.c", NULL};
    size_t i, k, pu;
    uint32_t op, all = 0;

    FUZZ_CHECK(p->nroles >= 6 && p->nroles <= CUSTOS_POLICY_MAX_ROLES);
    for (i = 0; builtin_roles[i]; i++)
        FUZZ_CHECK(custos_policy_role(p, builtin_roles[i]) >= 0);
    for (i = 0; i < p->nroles; i++) {
        const struct custos_role *r = &p->roles[i];

        FUZZ_CHECK(custos_valid_name(r->name, CUSTOS_ROLE_NAME_MAX));
        FUZZ_CHECK(custos_policy_role(p, r->name) == (int)i);
        FUZZ_CHECK((r->ops & ~(((uint32_t)CUSTOS_OP_PRINCIPAL_READ << 1) - 1)) == 0); /* the highest op bit */
        FUZZ_CHECK(r->rate_per_minute <= 1000000);
        FUZZ_CHECK(r->npurposes == 0 || r->purposes != NULL);
        for (pu = 0; pu < r->npurposes; pu++) {
            const struct custos_purpose *pp = &r->purposes[pu];

            FUZZ_CHECK(custos_valid_name(pp->name, CUSTOS_PURPOSE_MAX));
            for (k = 0; k < pp->nrules; k++) {
                FUZZ_CHECK(memchr(pp->rules[k].path, '\0', sizeof(pp->rules[k].path)) != NULL);
                FUZZ_CHECK(pp->rules[k].path[0] != '\0');
                FUZZ_CHECK(pp->rules[k].vis <= CUSTOS_VIS_PLAIN);
                /* decisions over the paths the policy names */
                for (op = 1; op < (1u << 13); op <<= 1) {
                    enum custos_vis v = custos_policy_vis(p, 1u << i, op, pp->name, pp->rules[k].path);

                    FUZZ_CHECK(v <= CUSTOS_VIS_PLAIN);
                    FUZZ_CHECK(!(r->ops & op) || v >= pp->rules[k].vis);
                    FUZZ_CHECK((r->ops & op) || v == CUSTOS_VIS_HIDDEN);
                    FUZZ_CHECK(custos_policy_vis(p, 0, op, pp->name, pp->rules[k].path) == CUSTOS_VIS_HIDDEN);
                }
            }
        }
        all |= 1u << i;
    }
    for (op = 1; op < (1u << 13); op <<= 1) {
        FUZZ_CHECK(!custos_policy_allows(p, 0, op));
        FUZZ_CHECK(strcmp(custos_op_name(op), "unknown") != 0);
        for (i = 0; probe_purposes[i]; i++) {
            FUZZ_CHECK(!custos_policy_purpose(p, 0, op, probe_purposes[i]));
            FUZZ_CHECK(custos_policy_rate(p, 0, op, probe_purposes[i]) == 0);
            (void)custos_policy_purpose(p, all, op, probe_purposes[i]);
            (void)custos_policy_rate(p, all, op, probe_purposes[i]);
            for (k = 0; probe_paths[k]; k++) {
                enum custos_vis v = custos_policy_vis(p, all, op, probe_purposes[i], probe_paths[k]);

                FUZZ_CHECK(v <= CUSTOS_VIS_PLAIN);
                if (!custos_policy_purpose(p, all, op, probe_purposes[i]))
                    FUZZ_CHECK(v == CUSTOS_VIS_HIDDEN);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    size_t tlen = nul ? (size_t)(nul - text) : size;
    struct custos_schema *s = NULL;
    struct custos_policy *p = NULL;
    enum custos_err rc;

    /* Copy TEXT into a buffer of exactly its size, so a read past it is caught by ASan. */
    char *t = malloc(tlen ? tlen : 1);

    FUZZ_CHECK(t != NULL);
    memcpy(t, text, tlen);

    rc = custos_schema_parse(t, tlen, &s);
    FUZZ_CHECK(rc == CUSTOS_OK || rc == CUSTOS_ERR_INVALID);
    FUZZ_CHECK((rc == CUSTOS_OK) == (s != NULL));
    if (s) {
        check_fields(s->fields, s->nfields, 0);
        {
            size_t paths = s->nfields;

            for (size_t i = 0; i < s->nfields; i++)
                paths += s->fields[i].nitems;
            FUZZ_CHECK(paths <= CUSTOS_SCHEMA_MAX_PATHS);
        }
        if (nul)
            flatten_record(s, nul + 1, size - tlen - 1);
        custos_schema_free(s);
    }

    rc = custos_policy_load(t, tlen, &p);
    FUZZ_CHECK(rc == CUSTOS_OK || rc == CUSTOS_ERR_INVALID);
    FUZZ_CHECK((rc == CUSTOS_OK) == (p != NULL));
    if (p) {
        check_policy(p);
        custos_policy_free(p);
    }
    free(t);
    return 0;
}

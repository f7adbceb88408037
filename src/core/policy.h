/*
 * policy.h - roles, operations, purposes and per-field visibility.
 *
 * A policy is a JSON document (docs/policy.md).  The built-in default is
 * itself JSON (custos_default_policy_json); a policy file adds roles and
 * overrides built-in roles of the same name.  Decisions are pure functions
 * of (roles, operation, purpose, field path): no I/O.
 *
 * Visibility of a leaf for (role, purpose): the rule for its policy path
 * ("address_book.entrance_code"), else for its top-level field
 * ("address_book"), else "*", else hidden.  With several roles, the most
 * permissive answer among the roles granting the operation and purpose wins.
 */
#ifndef CUSTOS_POLICY_H
#define CUSTOS_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "custos/err.h"

enum custos_op {
    CUSTOS_OP_SUBJECT_CREATE = 1u << 0,
    CUSTOS_OP_SUBJECT_READ = 1u << 1,
    CUSTOS_OP_SUBJECT_UPDATE = 1u << 2,
    CUSTOS_OP_SUBJECT_SEARCH = 1u << 3,
    CUSTOS_OP_SUBJECT_ERASE = 1u << 4,
    CUSTOS_OP_SUBJECT_EXPORT = 1u << 5,
    CUSTOS_OP_SUBJECT_LINK = 1u << 6,
    CUSTOS_OP_PRINCIPAL_MANAGE = 1u << 7,
    CUSTOS_OP_TOKEN_REVOKE = 1u << 8, /* revoke any token (anyone may revoke their own) */
    CUSTOS_OP_KEYS_MANAGE = 1u << 9,
    CUSTOS_OP_LEDGER_READ = 1u << 10,
    CUSTOS_OP_ALERT_READ = 1u << 11,
    CUSTOS_OP_TOKEN_MINT = 1u << 12,
    CUSTOS_OP_PRINCIPAL_READ = 1u << 13, /* list principals and their live tokens (manage implies it); the
                                            highest: tests/fuzz/fuzz_config.c checks no role has a bit above */
};

enum custos_vis { CUSTOS_VIS_HIDDEN = 0, CUSTOS_VIS_MASKED = 1, CUSTOS_VIS_PLAIN = 2 };

#define CUSTOS_ROLE_NAME_MAX 32
#define CUSTOS_PURPOSE_MAX 32
#define CUSTOS_POLICY_MAX_ROLES 32

struct custos_rule {
    char path[128]; /* "*", "name", "address_book.entrance_code" */
    enum custos_vis vis;
};

struct custos_purpose {
    char name[CUSTOS_PURPOSE_MAX + 1];
    struct custos_rule *rules;
    size_t nrules;
};

struct custos_role {
    char name[CUSTOS_ROLE_NAME_MAX + 1];
    uint32_t ops;
    uint32_t rate_per_minute; /* reads of personal data per principal per minute; 0 = unlimited */
    struct custos_purpose *purposes;
    size_t npurposes;
};

struct custos_policy {
    struct custos_role roles[CUSTOS_POLICY_MAX_ROLES];
    size_t nroles;
};

extern const char custos_default_policy_json[];

/* Build the default policy, then apply the optional policy file text (may be NULL). */
enum custos_err custos_policy_load(const char *file_text, size_t len, struct custos_policy **out);
void custos_policy_free(struct custos_policy *p);

/* Index of a role by name, or -1. */
int custos_policy_role(const struct custos_policy *p, const char *name);

/* Operation name <-> bit. */
const char *custos_op_name(uint32_t op);

/* Does any role in role_mask grant op? */
int custos_policy_allows(const struct custos_policy *p, uint32_t role_mask, uint32_t op);

/* Does any role in role_mask grant op with this purpose? */
int custos_policy_purpose(const struct custos_policy *p, uint32_t role_mask, uint32_t op, const char *purpose);

/* Visibility of a policy path for (roles granting op, purpose). */
enum custos_vis custos_policy_vis(const struct custos_policy *p, uint32_t role_mask, uint32_t op,
                                  const char *purpose, const char *policy_path);

/* Velocity limit for a read with this purpose: 0 when any granting role is unlimited,
   else the smallest limit among the granting roles. */
uint32_t custos_policy_rate(const struct custos_policy *p, uint32_t role_mask, uint32_t op, const char *purpose);

/* Names must match [a-z][a-z0-9._-]{0,max-1}. */
int custos_valid_name(const char *s, size_t max);

#endif

/*
 * policy.c - policy documents and decisions.  See policy.h, docs/policy.md.
 *
 * Invariants: an operation not granted is denied; a purpose not listed for
 * a role is denied; a field without a rule is hidden (deny by default).
 * Must never: grant anything from a malformed document (parse fails whole).
 */
#include "policy.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "json.h"

#include "custos/banned.h"

const char custos_default_policy_json[] =
    "{\n"
    "  \"roles\": {\n"
    "    \"admin\":    {\"ops\": [\"principal.manage\", \"principal.read\", \"token.revoke\", \"keys.manage\",\n"
    "                            \"ledger.read\", \"alert.read\"]},\n"
    "    \"service\":  {\"ops\": [\"subject.create\", \"subject.read\", \"subject.update\", \"subject.search\",\n"
    "                            \"subject.erase\", \"subject.link\"],\n"
    "                  \"purposes\": {\n"
    "                    \"account\":  {\"*\": \"plain\"},\n"
    "                    \"delivery\": {\"*\": \"hidden\", \"name\": \"plain\", \"phone\": \"plain\",\n"
    "                                 \"address_book\": \"plain\"}}},\n"
    "    \"support\":  {\"ops\": [\"subject.read\", \"subject.search\"], \"rate_per_minute\": 60,\n"
    "                  \"purposes\": {\n"
    "                    \"support\":  {\"*\": \"masked\", \"address_book.entrance_code\": \"hidden\"}}},\n"
    "    \"auditor\":  {\"ops\": [\"ledger.read\", \"alert.read\", \"principal.read\"]},\n"
    "    \"minter\":   {\"ops\": [\"token.mint\"]},\n"
    "    \"customer\": {\"ops\": [\"subject.read\", \"subject.export\", \"subject.erase\"],\n"
    "                  \"purposes\": {\n"
    "                    \"account\":  {\"*\": \"plain\"}}}\n"
    "  }\n"
    "}\n";

static const struct {
    const char *name;
    uint32_t bit;
} ops[] = {
    {"subject.create", CUSTOS_OP_SUBJECT_CREATE}, {"subject.read", CUSTOS_OP_SUBJECT_READ},
    {"subject.update", CUSTOS_OP_SUBJECT_UPDATE}, {"subject.search", CUSTOS_OP_SUBJECT_SEARCH},
    {"subject.erase", CUSTOS_OP_SUBJECT_ERASE},   {"subject.export", CUSTOS_OP_SUBJECT_EXPORT},
    {"subject.link", CUSTOS_OP_SUBJECT_LINK},     {"principal.manage", CUSTOS_OP_PRINCIPAL_MANAGE},
    {"token.revoke", CUSTOS_OP_TOKEN_REVOKE},     {"keys.manage", CUSTOS_OP_KEYS_MANAGE},
    {"ledger.read", CUSTOS_OP_LEDGER_READ},       {"alert.read", CUSTOS_OP_ALERT_READ},
    {"token.mint", CUSTOS_OP_TOKEN_MINT},         {"principal.read", CUSTOS_OP_PRINCIPAL_READ},
};

const char *custos_op_name(uint32_t op)
{
    size_t i;

    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (ops[i].bit == op)
            return ops[i].name;
    return "unknown";
}

int custos_valid_name(const char *s, size_t max)
{
    size_t i, n = strlen(s);

    if (n == 0 || n > max || !islower((unsigned char)s[0]))
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!(islower(c) || isdigit(c) || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static void role_release(struct custos_role *r)
{
    size_t i;

    for (i = 0; i < r->npurposes; i++)
        free(r->purposes[i].rules);
    free(r->purposes);
    memset(r, 0, sizeof(*r));
}

void custos_policy_free(struct custos_policy *p)
{
    size_t i;

    if (!p)
        return;
    for (i = 0; i < p->nroles; i++)
        role_release(&p->roles[i]);
    free(p);
}

int custos_policy_role(const struct custos_policy *p, const char *name)
{
    size_t i;

    for (i = 0; i < p->nroles; i++)
        if (strcmp(p->roles[i].name, name) == 0)
            return (int)i;
    return -1;
}

static enum custos_err parse_purpose(const char *role, const char *name, json_t *rules, struct custos_purpose *pu)
{
    const char *path;
    json_t *v;
    size_t i = 0;

    if (!custos_valid_name(name, CUSTOS_PURPOSE_MAX))
        return custos_err_set(CUSTOS_ERR_INVALID, "policy: role '%s': purpose name '%.40s' is invalid", role, name);
    snprintf(pu->name, sizeof(pu->name), "%s", name);
    if (!json_is_object(rules))
        return custos_err_set(CUSTOS_ERR_INVALID, "policy: role '%s' purpose '%s' must map fields to plain, "
                              "masked or hidden", role, name);
    pu->rules = calloc(json_object_size(rules) + 1, sizeof(*pu->rules));
    if (!pu->rules)
        return CUSTOS_ERR_NOMEM;
    json_object_foreach(rules, path, v) {
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        struct custos_rule *r = &pu->rules[i++];

        if (strlen(path) == 0 || strlen(path) >= sizeof(r->path))
            return custos_err_set(CUSTOS_ERR_INVALID, "policy: role '%s' purpose '%s': bad field path", role, name);
        snprintf(r->path, sizeof(r->path), "%s", path);
        if (strcmp(s, "plain") == 0)
            r->vis = CUSTOS_VIS_PLAIN;
        else if (strcmp(s, "masked") == 0)
            r->vis = CUSTOS_VIS_MASKED;
        else if (strcmp(s, "hidden") == 0)
            r->vis = CUSTOS_VIS_HIDDEN;
        else
            return custos_err_set(CUSTOS_ERR_INVALID, "policy: role '%s' purpose '%s' field '%.64s': expected "
                                  "plain, masked or hidden", role, name, path);
        pu->nrules = i;
    }
    return CUSTOS_OK;
}

static enum custos_err parse_role(const char *name, json_t *def, struct custos_role *r)
{
    static const char *const keys[] = {"ops", "purposes", "rate_per_minute", NULL};
    json_t *v, *pv;
    const char *pname;
    size_t i;
    enum custos_err rc;

    memset(r, 0, sizeof(*r));
    if (!custos_valid_name(name, CUSTOS_ROLE_NAME_MAX))
        return custos_err_set(CUSTOS_ERR_INVALID, "policy: role name '%.40s' is invalid", name);
    snprintf(r->name, sizeof(r->name), "%s", name);
    if (!json_is_object(def))
        return custos_err_set(CUSTOS_ERR_INVALID, "policy: role '%s' must be an object", name);
    if ((rc = custos_json_only(def, keys, "policy role")))
        return rc;
    v = json_object_get(def, "ops");
    if (!json_is_array(v))
        return custos_err_set(CUSTOS_ERR_INVALID, "policy: role '%s' needs an ops array", name);
    for (i = 0; i < json_array_size(v); i++) {
        json_t *o = json_array_get(v, i);
        size_t k;
        int found = 0;

        for (k = 0; json_is_string(o) && k < sizeof(ops) / sizeof(ops[0]); k++)
            if (strcmp(ops[k].name, json_string_value(o)) == 0) {
                r->ops |= ops[k].bit;
                found = 1;
            }
        if (!found)
            return custos_err_set(CUSTOS_ERR_INVALID, "policy: role '%s': unknown operation", name);
    }
    if ((v = json_object_get(def, "rate_per_minute"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000)
            return custos_err_set(CUSTOS_ERR_INVALID, "policy: role '%s': rate_per_minute must be 0..1000000", name);
        r->rate_per_minute = (uint32_t)json_integer_value(v);
    }
    if ((v = json_object_get(def, "purposes"))) {
        if (!json_is_object(v))
            return custos_err_set(CUSTOS_ERR_INVALID, "policy: role '%s': purposes must be an object", name);
        r->purposes = calloc(json_object_size(v) + 1, sizeof(*r->purposes));
        if (!r->purposes)
            return CUSTOS_ERR_NOMEM;
        json_object_foreach(v, pname, pv) {
            rc = parse_purpose(name, pname, pv, &r->purposes[r->npurposes]);
            r->npurposes++;
            if (rc)
                return rc;
        }
    }
    return CUSTOS_OK;
}

static enum custos_err apply(struct custos_policy *p, const char *text, size_t len)
{
    static const char *const top[] = {"roles", NULL};
    json_error_t jerr;
    json_t *doc, *roles, *def;
    const char *name;
    enum custos_err rc = CUSTOS_OK;

    doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        return custos_err_set(CUSTOS_ERR_INVALID, "policy: invalid JSON at line %d: %s", jerr.line, jerr.text);
    if ((rc = custos_json_only(doc, top, "policy")))
        goto done;
    roles = json_object_get(doc, "roles");
    if (!json_is_object(roles)) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "policy: \"roles\" must be an object");
        goto done;
    }
    json_object_foreach(roles, name, def) {
        struct custos_role r;
        int at = custos_policy_role(p, name);

        rc = parse_role(name, def, &r);
        if (rc) {
            role_release(&r);
            goto done;
        }
        if (at >= 0) {
            role_release(&p->roles[at]);
            p->roles[at] = r;
        } else if (p->nroles == CUSTOS_POLICY_MAX_ROLES) {
            role_release(&r);
            rc = custos_err_set(CUSTOS_ERR_INVALID, "policy: more than %d roles", CUSTOS_POLICY_MAX_ROLES);
            goto done;
        } else
            p->roles[p->nroles++] = r;
    }
done:
    json_decref(doc);
    return rc;
}

enum custos_err custos_policy_load(const char *file_text, size_t len, struct custos_policy **out)
{
    struct custos_policy *p = calloc(1, sizeof(*p));
    enum custos_err rc;

    *out = NULL;
    if (!p)
        return CUSTOS_ERR_NOMEM;
    rc = apply(p, custos_default_policy_json, strlen(custos_default_policy_json));
    if (!rc && file_text)
        rc = apply(p, file_text, len);
    if (rc) {
        custos_policy_free(p);
        return rc;
    }
    *out = p;
    return CUSTOS_OK;
}

int custos_policy_allows(const struct custos_policy *p, uint32_t role_mask, uint32_t op)
{
    size_t i;

    for (i = 0; i < p->nroles; i++)
        if ((role_mask & (1u << i)) && (p->roles[i].ops & op))
            return 1;
    return 0;
}

static const struct custos_purpose *find_purpose(const struct custos_role *r, const char *purpose)
{
    size_t i;

    for (i = 0; i < r->npurposes; i++)
        if (strcmp(r->purposes[i].name, purpose) == 0)
            return &r->purposes[i];
    return NULL;
}

int custos_policy_purpose(const struct custos_policy *p, uint32_t role_mask, uint32_t op, const char *purpose)
{
    size_t i;

    for (i = 0; i < p->nroles; i++)
        if ((role_mask & (1u << i)) && (p->roles[i].ops & op) && find_purpose(&p->roles[i], purpose))
            return 1;
    return 0;
}

static int rule_vis(const struct custos_purpose *pu, const char *path, enum custos_vis *out)
{
    size_t i;

    for (i = 0; i < pu->nrules; i++)
        if (strcmp(pu->rules[i].path, path) == 0) {
            *out = pu->rules[i].vis;
            return 1;
        }
    return 0;
}

enum custos_vis custos_policy_vis(const struct custos_policy *p, uint32_t role_mask, uint32_t op,
                                  const char *purpose, const char *policy_path)
{
    enum custos_vis best = CUSTOS_VIS_HIDDEN, v;
    char top[128];
    const char *dot = strchr(policy_path, '.');
    size_t i;

    custos_strcopy(top, sizeof(top), policy_path, dot ? (size_t)(dot - policy_path) : strlen(policy_path));
    for (i = 0; i < p->nroles; i++) {
        const struct custos_purpose *pu;

        if (!(role_mask & (1u << i)) || !(p->roles[i].ops & op))
            continue;
        if (!(pu = find_purpose(&p->roles[i], purpose)))
            continue;
        if (!rule_vis(pu, policy_path, &v) && !rule_vis(pu, top, &v) && !rule_vis(pu, "*", &v))
            v = CUSTOS_VIS_HIDDEN;
        if (v > best)
            best = v;
    }
    return best;
}

uint32_t custos_policy_rate(const struct custos_policy *p, uint32_t role_mask, uint32_t op, const char *purpose)
{
    uint32_t lim = 0;
    size_t i;

    for (i = 0; i < p->nroles; i++) {
        const struct custos_role *r = &p->roles[i];

        if (!(role_mask & (1u << i)) || !(r->ops & op) || !find_purpose(r, purpose))
            continue;
        if (r->rate_per_minute == 0)
            return 0;
        if (lim == 0 || r->rate_per_minute < lim)
            lim = r->rate_per_minute;
    }
    return lim;
}

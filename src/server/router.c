/*
 * router.c - the route table and path matching.
 *
 * Routes are data: {method, pattern, handler, auth, audit action, allowed
 * query parameters}.  Matching is a pure function of (method, path) so the
 * libFuzzer target tests/fuzz/fuzz_router.c can drive it directly.
 *
 * Must never: copy a path segment without a bound, accept a parameter with
 * characters outside [A-Za-z0-9._-].
 */
#include "server/server.h"

#include <string.h>

#include "custos/banned.h"

static const char *const q_read[] = {"purpose", "fields", NULL};
const char *const custos_query_any[] = {NULL};
static const char *const q_entries[] = {"start", "count", NULL};
static const char *const q_inclusion[] = {"index", "size", NULL};
static const char *const q_consistency[] = {"from", "to", NULL};

static const struct route routes[] = {
    {"GET", "/v1/health", h_health, ROUTE_PUBLIC, NULL, NULL, 0},
    {"POST", "/v1/principals", h_principal_create, ROUTE_AUTH, "principal.create", NULL, 1},
    {"GET", "/v1/principals", h_principal_list, ROUTE_AUTH, "principal.list", NULL, 0},
    {"GET", "/v1/principals/{id}/tokens", h_principal_tokens, ROUTE_AUTH, "token.list", NULL, 0},
    {"DELETE", "/v1/principals/{id}/tokens/{token}", h_principal_token_revoke, ROUTE_AUTH, "token.revoke", NULL, 0},
    {"POST", "/v1/principals/{id}/disable", h_principal_disable, ROUTE_AUTH, "principal.disable", NULL, 0},
    {"POST", "/v1/principals/{id}/rotate", h_principal_rotate, ROUTE_AUTH, "principal.rotate", NULL, 1},
    {"GET", "/v1/keys", h_keys_status, ROUTE_AUTH, "keys.status", NULL, 0},
    {"POST", "/v1/keys/rotate", h_keys_rotate, ROUTE_AUTH, "keys.rotate", NULL, 1},
    {"POST", "/v1/auth/token", h_auth_token, ROUTE_PUBLIC, "token.issue", NULL, 1},
    {"POST", "/v1/auth/revoke", h_auth_revoke, ROUTE_AUTH, "token.revoke", NULL, 1},
    {"POST", "/v1/subjects", h_subject_create, ROUTE_AUTH, "subject.create", NULL, 1},
    /* search: purpose plus one searchable field of the schema, which the core checks */
    {"GET", "/v1/subjects", h_subject_search, ROUTE_AUTH, "subject.search", custos_query_any, 0},
    {"GET", "/v1/subjects/{id}", h_subject_read, ROUTE_AUTH, "subject.read", q_read, 0},
    {"PATCH", "/v1/subjects/{id}", h_subject_update, ROUTE_AUTH, "subject.update", NULL, 1},
    {"DELETE", "/v1/subjects/{id}", h_subject_erase, ROUTE_AUTH, "subject.erase", NULL, 0},
    {"POST", "/v1/subjects/{id}/token", h_subject_token, ROUTE_AUTH, "token.mint", NULL, 0},
    {"GET", "/v1/subjects/{id}/export", h_subject_export, ROUTE_AUTH, "subject.export", NULL, 0},
    {"PUT", "/v1/subjects/{id}/links/{name}", h_link_put, ROUTE_AUTH, "link.put", NULL, 1},
    {"GET", "/v1/subjects/{id}/erasure", h_erasure_status, ROUTE_AUTH, "subject.erasure_status", NULL, 0},
    {"GET", "/v1/ledger/checkpoint", h_ledger_checkpoint, ROUTE_PUBLIC, NULL, NULL, 0},
    {"GET", "/v1/ledger/entries", h_ledger_entries, ROUTE_AUTH, "ledger.read", q_entries, 0},
    {"GET", "/v1/ledger/proof/inclusion", h_ledger_inclusion, ROUTE_PUBLIC, NULL, q_inclusion, 0},
    {"GET", "/v1/ledger/proof/consistency", h_ledger_consistency, ROUTE_PUBLIC, NULL, q_consistency, 0},
};

static int param_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

/* Match one pattern; 1 on match with params filled. */
static int match(const char *pat, const char *path, char params[][ROUTE_PARAM_LEN])
{
    int np = 0;

    while (*pat && *path) {
        if (*pat == '{') {
            size_t n = 0;

            while (*pat && *pat != '}')
                pat++;
            if (*pat == '}')
                pat++;
            while (path[n] && path[n] != '/') {
                if (!param_char(path[n]))
                    return 0;
                n++;
            }
            if (n == 0 || n >= ROUTE_PARAM_LEN || np == ROUTE_PARAM_MAX)
                return 0;
            memcpy(params[np], path, n);
            params[np][n] = '\0';
            np++;
            path += n;
            continue;
        }
        if (*pat != *path)
            return 0;
        pat++;
        path++;
    }
    return *pat == '\0' && *path == '\0';
}

const struct route *custos_route_match(const char *method, const char *path, char params[][ROUTE_PARAM_LEN],
                                       int *path_known)
{
    size_t i;
    char scratch[ROUTE_PARAM_MAX][ROUTE_PARAM_LEN];

    *path_known = 0;
    if (!method || !path)
        return NULL;
    for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (!match(routes[i].pattern, path, scratch))
            continue;
        if (strcmp(routes[i].method, method) != 0) {
            *path_known = 1;
            continue;
        }
        memcpy(params, scratch, sizeof(scratch));
        return &routes[i];
    }
    return NULL;
}

void custos_route_allowed(const char *path, char *out, size_t cap)
{
    char scratch[ROUTE_PARAM_MAX][ROUTE_PARAM_LEN];
    size_t i, o = 0;

    if (cap)
        out[0] = '\0';
    for (i = 0; path && i < sizeof(routes) / sizeof(routes[0]); i++) {
        int n;

        if (!match(routes[i].pattern, path, scratch))
            continue;
        n = snprintf(out + o, cap - o, "%s%s", o ? ", " : "", routes[i].method);
        if (n < 0 || (size_t)n >= cap - o)
            break;
        o += (size_t)n;
    }
}

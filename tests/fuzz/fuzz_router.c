/*
 * fuzz_router.c - libFuzzer target: request method and path against the
 * route table (custos_route_match), as libmicrohttpd hands them over.
 *
 * Input: one selector byte, then the path.  Selector values 0..6 pick GET,
 * POST, PATCH, DELETE, PUT, HEAD, OPTIONS; any other value means the method
 * is the input up to the first '\n' after the selector and the path is the
 * rest.  Both strings end at their first NUL (they are C strings in MHD).
 *
 * Invariants checked beyond "no crash, no leak, no UB":
 *  - a matched route has the requested method;
 *  - each path parameter is NUL-terminated, non-empty, shorter than
 *    ROUTE_PARAM_LEN and made of [A-Za-z0-9._-] only;
 *  - substituting the parameters into the route's pattern gives back the
 *    exact path (nothing dropped, nothing added);
 *  - *path_known is 1 exactly when another method would have matched;
 *  - custos_route_allowed (the Allow header of a 405) lists exactly the
 *    methods that match the path, fits its buffer, and with a short buffer
 *    gives a NUL-terminated prefix, never an overrun.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

#include "fuzz_common.h"

static const char *const methods[] = {"GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS"};
#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    return 0;
}

static int param_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

static void check_match(const struct route *rt, const char *method, const char *path,
                        char params[ROUTE_PARAM_MAX][ROUTE_PARAM_LEN])
{
    const char *pat = rt->pattern, *pp = path;
    int np = 0;

    FUZZ_CHECK(strcmp(rt->method, method) == 0);
    FUZZ_CHECK(rt->fn != NULL);
    while (*pat) {
        if (*pat == '{') {
            const char *prm;
            size_t n;

            FUZZ_CHECK(np < ROUTE_PARAM_MAX);
            prm = params[np++];
            FUZZ_CHECK(memchr(prm, '\0', ROUTE_PARAM_LEN) != NULL);
            n = strlen(prm);
            FUZZ_CHECK(n >= 1 && n < ROUTE_PARAM_LEN);
            for (size_t i = 0; i < n; i++)
                FUZZ_CHECK(param_char(prm[i]));
            FUZZ_CHECK(strncmp(pp, prm, n) == 0);
            pp += n;
            pat = strchr(pat, '}');
            FUZZ_CHECK(pat != NULL);
            pat++;
            continue;
        }
        FUZZ_CHECK(*pp == *pat);
        pp++;
        pat++;
    }
    FUZZ_CHECK(*pp == '\0');
}

/* The Allow list against route matching; then the same with every shorter buffer. */
static void check_allowed(const char *path)
{
    char full[64], *buf;
    const char *p;
    size_t i, n, cap;

    custos_route_allowed(path, full, sizeof(full)); /* the size of struct req's allow[] */
    FUZZ_CHECK(memchr(full, '\0', sizeof(full)) != NULL);
    for (i = 0; i < NMETHODS; i++) {
        char p2[ROUTE_PARAM_MAX][ROUTE_PARAM_LEN];
        int k2, listed = 0;

        for (p = full; *p; p += n + (p[n] ? 2 : 0)) {
            n = strcspn(p, ",");
            listed |= n == strlen(methods[i]) && memcmp(p, methods[i], n) == 0;
            FUZZ_CHECK(!p[n] || p[n + 1] == ' ');
        }
        FUZZ_CHECK(listed == (custos_route_match(methods[i], path, p2, &k2) != NULL));
    }
    n = strlen(full);
    for (cap = 0; cap <= n; cap++) {
        buf = malloc(cap ? cap : 1);
        FUZZ_CHECK(buf != NULL);
        custos_route_allowed(path, buf, cap);
        if (cap) {
            FUZZ_CHECK(memchr(buf, '\0', cap) != NULL);
            FUZZ_CHECK(strncmp(buf, full, strlen(buf)) == 0);
        }
        free(buf);
    }
    custos_route_allowed(NULL, full, sizeof(full));
    FUZZ_CHECK(full[0] == '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char params[ROUTE_PARAM_MAX][ROUTE_PARAM_LEN];
    char *method, *path;
    const struct route *rt;
    int known = -1, other = 0;
    size_t i;

    if (size < 1)
        return 0;
    if (data[0] < NMETHODS) {
        method = fuzz_cstr((const uint8_t *)methods[data[0]], strlen(methods[data[0]]));
        path = fuzz_cstr(data + 1, size - 1);
    } else {
        const uint8_t *nl = memchr(data + 1, '\n', size - 1);
        size_t ml = nl ? (size_t)(nl - data - 1) : size - 1;

        method = fuzz_cstr(data + 1, ml);
        path = nl ? fuzz_cstr(nl + 1, size - 2 - ml) : fuzz_cstr((const uint8_t *)"", 0);
    }

    memset(params, 0xa5, sizeof(params)); /* not NUL: an unterminated parameter shows */
    rt = custos_route_match(method, path, params, &known);
    FUZZ_CHECK(known == 0 || known == 1);
    if (rt)
        check_match(rt, method, path, params);

    /* Does the path match with some other method? */
    for (i = 0; i < NMETHODS; i++) {
        char p2[ROUTE_PARAM_MAX][ROUTE_PARAM_LEN];
        int k2;
        const struct route *r2;

        if (strcmp(methods[i], method) == 0)
            continue;
        r2 = custos_route_match(methods[i], path, p2, &k2);
        if (r2) {
            check_match(r2, methods[i], path, p2);
            other = 1;
        }
    }
    if (!rt)
        FUZZ_CHECK(known == other);

    check_allowed(path);

    FUZZ_CHECK(custos_route_match(NULL, path, params, &known) == NULL && known == 0);
    FUZZ_CHECK(custos_route_match(method, NULL, params, &known) == NULL && known == 0);
    free(method);
    free(path);
    return 0;
}

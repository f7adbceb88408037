/*
 * fuzz_request.c - libFuzzer target: the small parsers of the HTTP side that
 * read a request's head, query or body before any store work:
 *   0 custos_fields_mask: GET /v1/subjects/{id}?fields=a,b against the
 *     default schema;
 *   1 custos_valid_name (a link name, at most 64) and custos_link_body_parse
 *     on {"webhook": URL}, the body built here from the URL;
 *   2 custos_link_body_parse on the raw body of PUT .../links/{name};
 *   3 custos_token_issue_parse: POST /v1/auth/token {"principal","secret"};
 *   4 custos_token_revoke_parse: POST /v1/auth/revoke {"token"};
 *   5 custos_principal_create_parse: POST /v1/principals {"id","kind",
 *     "roles"}, against the default policy, or (odd second byte) a policy
 *     with a role of 32 characters, so the role list can outgrow its buffer;
 *   6 custos_head_add / custos_head_verdict: a request head's framing;
 *   7 custos_principal_rotate_parse: POST /v1/principals/{id}/rotate, empty
 *     or {"revoke_tokens": bool, "secret_ttl_days": 1..3650}; and on the same
 *     body custos_keys_rotate_parse: POST /v1/keys/rotate, empty or {}.
 *
 * Input: one selector byte (value % 8 picks the parser above), then:
 *   0 the fields value (up to its first NUL: a query value is a C string);
 *   1 the link name, '\n', the URL (any bytes: JSON-escaped into the body);
 *   2-5, 7 the body (one more byte first for 5);
 *   6 header lines "Name:value" split at '\n' (a line without ':' is a name
 *     with an empty value; names and values end at a NUL, as in
 *     libmicrohttpd).
 *
 * Invariants checked beyond "no crash, no leak, no UB":
 *  - every refusal is CUSTOS_ERR_INVALID (CUSTOS_ERR_TOOBIG for a body over
 *    CUSTOS_BODY_MAX, and only then) with a one-line UTF-8 detail;
 *  - fields: accepted exactly when the list is non-empty and every
 *    comma-separated name is a top-level field of the schema (a second
 *    implementation); the mask has one bit per named field; the list
 *    rebuilt from the mask gives the same mask;
 *  - link name: accepted exactly when it matches [a-z][a-z0-9._-]{0,63};
 *  - webhook: accepted exactly when the URL is http:// or https://, 8 to
 *    2048 bytes of printable ASCII without spaces, with an authority
 *    [userinfo@]host[:port] (a second implementation of docs/api.md's rule),
 *    and then it is the input unchanged and fits a link row (2049 bytes with
 *    its NUL); libcurl, which delivers the notices, parses every accepted URL
 *    as http(s) with a host (webhook.c would otherwise retry a notice that
 *    cannot go out for days);
 *  - token issue: an accepted body has exactly the two members, the id
 *    matches the name rule, the secret is at most 64 bytes without NUL;
 *  - token revoke: accepted only when the token member is the canonical
 *    text of the 32 bytes handed back (credential format round trip); on a
 *    refusal those bytes are zero;
 *  - principal: accepted only with kind staff or service, and a role list
 *    that is the roles array joined by commas, 1 to 8 roles of the policy,
 *    none "customer", within its buffer; an id handed back (also on a
 *    refusal, for the audit event) always matches the name rule;
 *  - rotate: accepted exactly when the body is empty, or a JSON object
 *    (custos_json_parse) whose members, if any, are "revoke_tokens" with
 *    a boolean value and "secret_ttl_days" with an integer 1..3650; the
 *    flag handed back is that value (0 when absent), the lifetime that
 *    integer (the default when absent or refused);
 *  - keys rotate: accepted exactly when the body is empty or a JSON object
 *    with no member;
 *  - principal and rotate: an accepted secret_ttl_days is an integer in
 *    1..3650 and is what is handed back;
 *  - head: the verdict is a second implementation's (repeated
 *    Content-Length, Transfer-Encoding with Content-Length, Transfer-Encoding
 *    other than one "chunked", a length over CUSTOS_BODY_MAX: for the
 *    decimal lengths libmicrohttpd lets through), the Authorization count
 *    is exact, and the verdict does not depend on the order of the headers.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <curl/curl.h>
#include <sodium.h>

#include "core/json.h"
#include "core/policy.h"
#include "core/vault_int.h"
#include "server/server.h"

#include "fuzz_common.h"

static struct custos_schema *schema;
static struct custos_policy *pol_default, *pol_long;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char long_role[] =
        "{\"roles\": {\"r2345678901234567890123456789012\": {\"ops\": [\"subject.read\"]}}}";

    (void)argc;
    (void)argv;
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
        custos_schema_parse(custos_default_schema_json, strlen(custos_default_schema_json), &schema) != CUSTOS_OK ||
        custos_policy_load(NULL, 0, &pol_default) != CUSTOS_OK ||
        custos_policy_load(long_role, strlen(long_role), &pol_long) != CUSTOS_OK)
        abort();
    return 0;
}

/* Heap copy of exactly n bytes (a body is not a C string). */
static char *bytes(const uint8_t *p, size_t n)
{
    char *s = malloc(n ? n : 1);

    FUZZ_CHECK(s != NULL);
    memcpy(s, p, n);
    return s;
}

static void check_refusal(enum custos_err rc, size_t body_len)
{
    FUZZ_CHECK(rc == CUSTOS_ERR_INVALID || rc == CUSTOS_ERR_TOOBIG);
    FUZZ_CHECK((rc == CUSTOS_ERR_TOOBIG) == (body_len > CUSTOS_BODY_MAX));
    fuzz_check_detail(rc);
}

/* [a-z][a-z0-9._-]{0,max-1} */
static int name_ok(const char *s, size_t max)
{
    size_t i, n = strlen(s);

    if (n == 0 || n > max || !(s[0] >= 'a' && s[0] <= 'z'))
        return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' ||
              s[i] == '-'))
            return 0;
    return 1;
}

/* ---- 0: ?fields= ----------------------------------------------------------------------------- */

static void fuzz_fields(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size), back[CUSTOS_SCHEMA_MAX_FIELDS * (CUSTOS_FIELD_NAME_MAX + 1) + 1];
    uint64_t mask = 12345, want = 0, again;
    const char *p = s;
    size_t i, o = 0;
    int ok = *s != '\0';
    enum custos_err rc = custos_fields_mask(schema, s, &mask);

    /* the second implementation: every piece between commas names a field */
    while (ok) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p), k;

        for (k = 0; k < schema->nfields; k++)
            if (strlen(schema->fields[k].name) == n && memcmp(schema->fields[k].name, p, n) == 0)
                break;
        ok = n > 0 && k < schema->nfields;
        if (ok)
            want |= (uint64_t)1 << k;
        if (!e)
            break;
        p = e + 1;
    }
    FUZZ_CHECK((rc == CUSTOS_OK) == ok);
    if (rc) {
        check_refusal(rc, 0);
        free(s);
        return;
    }
    FUZZ_CHECK(mask == want && mask != 0);
    for (i = 0; i < schema->nfields; i++)
        if (mask & ((uint64_t)1 << i))
            o += (size_t)snprintf(back + o, sizeof(back) - o, "%s%s", o ? "," : "", schema->fields[i].name);
    FUZZ_CHECK(custos_fields_mask(schema, back, &again) == CUSTOS_OK && again == mask);
    FUZZ_CHECK(custos_fields_mask(schema, NULL, &again) == CUSTOS_OK && again == 0);
    free(s);
}

/* ---- 1, 2: links ----------------------------------------------------------------------------- */

/* The rule docs/api.md states, written apart from erase.c's valid_url: http:// or https:// (the
   scheme in any case), 8 to 2048 bytes of printable ASCII without spaces, [userinfo@]host[:port]
   with one '@' at most, the host a name of [A-Za-z0-9-._~] or a bracketed IPv6 address, the port
   1-65535. */
static int url_ok(const char *u, size_t n)
{
    char auth[2049], *hp, *port = NULL;
    size_t i, hlen;

    if (n < 8 || n > 2048 || (strncasecmp(u, "http://", 7) != 0 && strncasecmp(u, "https://", 8) != 0))
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)u[i] < 0x21 || (unsigned char)u[i] > 0x7e)
            return 0;
    i = u[4] == ':' ? 7 : 8;
    memcpy(auth, u + i, n - i);
    auth[n - i] = '\0';
    auth[strcspn(auth, "/?#")] = '\0';
    hp = strrchr(auth, '@');
    if (hp && strchr(auth, '@') != hp)
        return 0;
    hp = hp ? hp + 1 : auth;
    if (hp[0] == '[') {
        char *close = strchr(hp, ']');
        unsigned char a6[16];

        if (!close)
            return 0;
        *close = '\0';
        if (inet_pton(AF_INET6, hp + 1, a6) != 1)
            return 0;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0')
            return 0;
    } else {
        hlen = strspn(hp, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~");
        if (hlen == 0)
            return 0;
        if (hp[hlen] == ':')
            port = hp + hlen + 1;
        else if (hp[hlen] != '\0')
            return 0;
    }
    if (port) {
        size_t pl = strlen(port);
        unsigned long x = 0;

        if (pl == 0 || pl > 5 || strspn(port, "0123456789") != pl)
            return 0;
        for (i = 0; i < pl; i++)
            x = x * 10 + (unsigned long)(port[i] - '0');
        if (x == 0 || x > 65535)
            return 0;
    }
    return 1;
}

/* What delivers the notices makes of an accepted URL: 1 when libcurl takes it as http(s) with a host. */
static int curl_takes(const char *url)
{
    CURLU *h = curl_url();
    char *scheme = NULL, *host = NULL;
    int ok;

    FUZZ_CHECK(h != NULL);
    ok = curl_url_set(h, CURLUPART_URL, url, 0) == CURLUE_OK &&
         curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
         curl_url_get(h, CURLUPART_HOST, &host, 0) == CURLUE_OK && host[0] != '\0' &&
         (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(h);
    return ok;
}

static void check_link(const char *body, size_t len, const uint8_t *want_url, size_t want_len)
{
    json_t *j = NULL;
    const char *url = (const char *)1;
    enum custos_err rc = custos_link_body_parse(body, len, &j, &url);

    if (rc) {
        check_refusal(rc, len);
        FUZZ_CHECK(url == NULL);
        if (want_url) /* the body is built here: only the URL can be wrong */
            FUZZ_CHECK(memchr(want_url, '\0', want_len) || !url_ok((const char *)want_url, want_len));
    } else {
        size_t n = strlen(url), k;

        FUZZ_CHECK(j != NULL && json_object_size(j) == 1);
        FUZZ_CHECK(url_ok(url, n));
        FUZZ_CHECK(n + 1 <= sizeof(((struct custos_delivery *)0)->url));
        /* the URL given, its scheme lowercase (the rest as it was) */
        FUZZ_CHECK(strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0);
        k = url[4] == ':' ? 4 : 5;
        if (want_url)
            FUZZ_CHECK(n == want_len && strncasecmp(url, (const char *)want_url, k) == 0 &&
                       memcmp(url + k, want_url + k, n - k) == 0);
        FUZZ_CHECK(curl_takes(url));
    }
    json_decref(j);
}

static void fuzz_link(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t nlen = nl ? (size_t)(nl - data) : size, i, o;
    char *name = fuzz_cstr(data, nlen), *body;
    const uint8_t *u = nl ? nl + 1 : data + size;
    size_t ulen = nl ? size - nlen - 1 : 0;

    FUZZ_CHECK(custos_valid_name(name, 64) == name_ok(name, 64));
    /* {"webhook":"<the URL, escaped>"}: control characters, quote and backslash as \u00XX */
    body = malloc(14 + 6 * ulen + 2);
    FUZZ_CHECK(body != NULL);
    o = (size_t)snprintf(body, 14, "{\"webhook\":\"");
    for (i = 0; i < ulen; i++) {
        if (u[i] < 0x20 || u[i] == '"' || u[i] == '\\') {
            snprintf(body + o, 7, "\\u%04x", u[i]);
            o += 6;
        } else
            body[o++] = (char)u[i];
    }
    body[o++] = '"';
    body[o++] = '}';
    check_link(body, o, u, ulen);
    free(body);
    free(name);
}

/* ---- 3, 4, 5: principals and tokens ---------------------------------------------------------- */

static void fuzz_issue(const uint8_t *data, size_t size)
{
    char *body = bytes(data, size);
    json_t *j = NULL;
    const char *id = NULL, *secret = NULL;
    enum custos_err rc = custos_token_issue_parse(body, size, &j, &id, &secret);

    if (rc)
        check_refusal(rc, size);
    else {
        FUZZ_CHECK(json_object_size(j) == 2);
        FUZZ_CHECK(name_ok(id, CUSTOS_PRINCIPAL_ID_MAX));
        FUZZ_CHECK(strcmp(json_string_value(json_object_get(j, "principal")), id) == 0);
        FUZZ_CHECK(secret == json_string_value(json_object_get(j, "secret")));
        FUZZ_CHECK(strlen(secret) <= 64 && strlen(secret) == json_string_length(json_object_get(j, "secret")));
    }
    json_decref(j);
    free(body);
}

/* An accepted body's secret lifetime: its "secret_ttl_days" (an integer 1..3650) or the default. */
static void check_ttl(json_t *j, unsigned ttl)
{
    json_t *t = json_object_get(j, "secret_ttl_days");

    if (!t)
        FUZZ_CHECK(ttl == CUSTOS_SECRET_TTL_DAYS);
    else
        FUZZ_CHECK(json_is_integer(t) && json_integer_value(t) >= 1 &&
                   json_integer_value(t) <= CUSTOS_SECRET_TTL_DAYS_MAX && ttl == (unsigned)json_integer_value(t));
}

static void fuzz_rotate(const uint8_t *data, size_t size)
{
    char *body = bytes(data, size);
    json_t *j = NULL, *flag, *ttlj;
    int revoke = -1, want_ok, want = 0;
    unsigned ttl = 0;
    enum custos_err rc = custos_principal_rotate_parse(body, size, &revoke, &ttl);

    if (size == 0)
        want_ok = 1;
    else if (custos_json_parse(body, size, CUSTOS_BODY_MAX, 0, &j) != CUSTOS_OK || !json_is_object(j))
        want_ok = 0;
    else {
        flag = json_object_get(j, "revoke_tokens");
        ttlj = json_object_get(j, "secret_ttl_days");
        want_ok = json_object_size(j) == (flag ? 1u : 0u) + (ttlj ? 1u : 0u) && (!flag || json_is_boolean(flag)) &&
                  (!ttlj || (json_is_integer(ttlj) && json_integer_value(ttlj) >= 1 &&
                             json_integer_value(ttlj) <= CUSTOS_SECRET_TTL_DAYS_MAX));
        want = flag && json_is_true(flag);
    }
    custos_err_clear();
    FUZZ_CHECK((rc == CUSTOS_OK) == want_ok);
    if (rc) {
        check_refusal(rc, size);
        FUZZ_CHECK(ttl == CUSTOS_SECRET_TTL_DAYS);
    } else {
        FUZZ_CHECK(revoke == want);
        check_ttl(j, ttl);
    }
    rc = custos_keys_rotate_parse(body, size);
    custos_err_clear();
    FUZZ_CHECK((rc == CUSTOS_OK) == (size == 0 || (json_is_object(j) && json_object_size(j) == 0)));
    if (rc)
        check_refusal(rc, size);
    json_decref(j);
    free(body);
}

static void fuzz_revoke(const uint8_t *data, size_t size)
{
    static const uint8_t zero[32];
    char *body = bytes(data, size), text[48];
    uint8_t raw[32];
    enum custos_err rc;

    memset(raw, 0xa5, sizeof(raw));
    rc = custos_token_revoke_parse(body, size, raw);
    if (rc) {
        check_refusal(rc, size);
        FUZZ_CHECK(memcmp(raw, zero, 32) == 0);
    } else {
        json_t *j = NULL;

        FUZZ_CHECK(custos_json_parse(body, size, CUSTOS_BODY_MAX, 0, &j) == CUSTOS_OK);
        custos_credential_format(text, "cus_", raw);
        FUZZ_CHECK(json_object_size(j) == 1);
        FUZZ_CHECK(strcmp(json_string_value(json_object_get(j, "token")), text) == 0);
        json_decref(j);
    }
    free(body);
}

static void fuzz_principal(const uint8_t *data, size_t size)
{
    const struct custos_policy *pol = size && (data[0] & 1) ? pol_long : pol_default;
    char *body = bytes(data + (size ? 1 : 0), size ? size - 1 : 0), roles[256], joined[300];
    size_t len = size ? size - 1 : 0, i, o = 0;
    json_t *j = NULL, *arr;
    const char *id = NULL, *kind = NULL;
    unsigned ttl = 0;
    enum custos_err rc;

    memset(roles, 'x', sizeof(roles));
    rc = custos_principal_create_parse(pol, body, len, &j, &id, &kind, roles, sizeof(roles), &ttl);
    FUZZ_CHECK(id == NULL || name_ok(id, CUSTOS_PRINCIPAL_ID_MAX));
    if (rc) {
        check_refusal(rc, len);
        goto done;
    }
    FUZZ_CHECK(strcmp(kind, "staff") == 0 || strcmp(kind, "service") == 0);
    FUZZ_CHECK(memchr(roles, '\0', sizeof(roles)) != NULL);
    arr = json_object_get(j, "roles");
    FUZZ_CHECK(json_is_array(arr) && json_array_size(arr) >= 1 && json_array_size(arr) <= 8);
    for (i = 0; i < json_array_size(arr); i++) {
        const char *r = json_string_value(json_array_get(arr, i));

        FUZZ_CHECK(r != NULL && custos_policy_role(pol, r) >= 0 && strcmp(r, "customer") != 0);
        FUZZ_CHECK(strchr(r, ',') == NULL);
        o += (size_t)snprintf(joined + o, sizeof(joined) - o, "%s%s", i ? "," : "", r);
    }
    FUZZ_CHECK(strcmp(roles, joined) == 0);
    check_ttl(j, ttl);
done:
    json_decref(j);
    free(body);
}

/* ---- 6: the request head --------------------------------------------------------------------- */

struct hdr {
    char *name, *value;
};

/* Case-insensitive equality with a lowercase literal, byte by byte (not strcasecmp). */
static int same_name(const char *s, const char *lower)
{
    for (; *s && *lower; s++, lower++) {
        char c = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;

        if (c != *lower)
            return 0;
    }
    return *s == *lower;
}

/* An RFC 9110 token, by its grammar's classes (a table of the 15 symbols, byte by byte). */
static int token_name(const char *s)
{
    static const char sym[] = "!#$%&'*+-.^_`|~";
    size_t n = 0;

    for (; *s; s++, n++) {
        int ok = (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z');

        for (size_t k = 0; !ok && k < sizeof(sym) - 1; k++)
            ok = *s == sym[k];
        if (!ok)
            return 0;
    }
    return n > 0;
}

/* s begins with lowercase literal `lower` (without case) and has more after it */
static int begins_and_more(const char *s, const char *lower)
{
    for (; *lower; s++, lower++) {
        char c = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;

        if (c != *lower)
            return 0;
    }
    return *s != '\0';
}

static enum custos_head_verdict verdict_of(const struct hdr *h, size_t n, int reverse, unsigned *auth)
{
    struct custos_head head;
    size_t i;

    memset(&head, 0, sizeof(head));
    for (i = 0; i < n; i++) {
        const struct hdr *x = &h[reverse ? n - 1 - i : i];

        custos_head_add(&head, x->name, x->value);
    }
    *auth = head.authorization;
    return custos_head_verdict(&head);
}

static void fuzz_head(const uint8_t *data, size_t size)
{
    struct hdr h[64];
    size_t n = 0, off = 0, i;
    unsigned cl = 0, te = 0, auth = 0, got_auth, got_auth2;
    int expect = 0, bad_name = 0, host = 0;
    const char *cl_value = NULL, *te_value = NULL;
    enum custos_head_verdict v, v2, want;

    while (off < size && n < 64) {
        const uint8_t *p = data + off, *e = memchr(p, '\n', size - off), *colon;
        size_t len = e ? (size_t)(e - p) : size - off;

        colon = memchr(p, ':', len);
        h[n].name = fuzz_cstr(p, colon ? (size_t)(colon - p) : len);
        h[n].value = colon ? fuzz_cstr(colon + 1, len - (size_t)(colon + 1 - p)) : fuzz_cstr(p, 0);
        n++;
        off += len + 1;
    }
    for (i = 0; i < n; i++) {
        if (same_name(h[i].name, "content-length")) {
            cl++;
            cl_value = h[i].value;
        } else if (same_name(h[i].name, "transfer-encoding")) {
            te++;
            te_value = h[i].value;
        } else if (same_name(h[i].name, "authorization"))
            auth++;
        else if (same_name(h[i].name, "expect"))
            expect |= same_name(h[i].value, "100-continue");
        else if (same_name(h[i].name, "host"))
            host++;
        if (!token_name(h[i].name) || begins_and_more(h[i].name, "content-length") ||
            begins_and_more(h[i].name, "transfer-encoding") || begins_and_more(h[i].name, "authorization"))
            bad_name = 1;
    }
    v = verdict_of(h, n, 0, &got_auth);
    v2 = verdict_of(h, n, 1, &got_auth2);
    FUZZ_CHECK(got_auth == auth && got_auth2 == auth);
    FUZZ_CHECK(v == v2);
    if (bad_name)
        want = CUSTOS_HEAD_BAD_NAME;
    else if (host > 1)
        want = CUSTOS_HEAD_HOST;
    else if (cl > 1)
        want = CUSTOS_HEAD_LENGTH_REPEATED;
    else if (cl && te)
        want = CUSTOS_HEAD_LENGTH_AND_ENCODING;
    else if (te > 1 || (te && !same_name(te_value, "chunked")))
        want = CUSTOS_HEAD_ENCODING_UNSUPPORTED;
    else if (cl) {
        /* libmicrohttpd answers 400 itself unless the one length is decimal digits */
        size_t k, len = strlen(cl_value);
        unsigned long long x = 0;
        int over = 0;

        for (k = 0; k < len; k++) {
            if (cl_value[k] < '0' || cl_value[k] > '9')
                break;
            if (x > (~0ULL - 9) / 10)
                over = 1;
            else
                x = x * 10 + (unsigned)(cl_value[k] - '0');
        }
        if (len == 0 || k < len)
            goto done; /* never reaches the server */
        if (!over && x <= CUSTOS_BODY_MAX)
            want = CUSTOS_HEAD_OK;
        else
            want = over || expect || x > CUSTOS_BODY_DRAIN_MAX ? CUSTOS_HEAD_TOO_BIG : CUSTOS_HEAD_TOO_BIG_DRAIN;
    } else
        want = CUSTOS_HEAD_OK;
    FUZZ_CHECK(v == want);
done:
    for (i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    custos_err_clear();
    switch (data[0] % 8) {
    case 0: fuzz_fields(data + 1, size - 1); break;
    case 1: fuzz_link(data + 1, size - 1); break;
    case 2: {
        char *body = bytes(data + 1, size - 1);

        check_link(body, size - 1, NULL, 0);
        free(body);
        break;
    }
    case 3: fuzz_issue(data + 1, size - 1); break;
    case 4: fuzz_revoke(data + 1, size - 1); break;
    case 5: fuzz_principal(data + 1, size - 1); break;
    case 6: fuzz_head(data + 1, size - 1); break;
    default: fuzz_rotate(data + 1, size - 1); break;
    }
    return 0;
}

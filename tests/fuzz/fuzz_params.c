/*
 * fuzz_params.c - libFuzzer target: the small parsers of single outside
 * strings: the listen address (custos_parse_listen, --listen), decimal query
 * parameters (custos_parse_u64: ?start= ?count= ?index= ...), subject ids
 * in paths (custos_id_parse), token ids in paths (custos_token_id_parse) and
 * bearer tokens / principal secrets (custos_credential_parse, prefixes
 * "cus_" and "cps_").
 *
 * Input: the string (up to its first NUL), given to every parser.
 *
 * Invariants checked beyond "no crash, no leak, no UB": each parser accepts
 * exactly the canonical form and round-trips it -
 *  - parse_u64: accepted iff canonical decimal (no sign, space or leading
 *    zero) of a value <= UINT64_MAX, and printing the value gives the input;
 *  - id_parse: accepted iff 32 lowercase hex digits (the one spelling of an
 *    id); hex of the id is the input;
 *  - token_id_parse: accepted iff 16 lowercase hex digits; hex of the 8
 *    bytes is the input;
 *  - credential_parse: accepted only if formatting the decoded bytes gives
 *    the input back (one text per token), and format -> parse round-trips
 *    for 32 bytes taken from the input;
 *  - parse_listen: the address family, length and loopback flag agree, the
 *    port is the decimal after the last ':'.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/crypto.h"
#include "core/vault_int.h"
#include "custos/vault.h"
#include "server/server.h"

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (sodium_init() < 0)
        abort();
    return 0;
}

static int canonical_u64(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > 20 || (s[0] == '0' && n > 1))
        return 0;
    for (i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return n < 20 || strcmp(s, "18446744073709551615") <= 0;
}

static void fuzz_u64(const char *s)
{
    uint64_t x = 12345;
    char back[32];
    enum custos_err rc = custos_parse_u64(s, "count", &x);

    FUZZ_CHECK(rc == CUSTOS_OK || rc == CUSTOS_ERR_INVALID);
    FUZZ_CHECK((rc == CUSTOS_OK) == canonical_u64(s));
    if (rc == CUSTOS_OK) {
        snprintf(back, sizeof(back), "%llu", (unsigned long long)x);
        FUZZ_CHECK(strcmp(back, s) == 0);
    } else
        FUZZ_CHECK(x == 12345); /* untouched on failure */
}

static void fuzz_id(const char *s)
{
    uint8_t id[CUSTOS_ID_BYTES];
    char hex[CUSTOS_ID_HEX + 1];
    size_t n = strlen(s), i;
    int want = n == CUSTOS_ID_HEX;
    enum custos_err rc;

    for (i = 0; want && i < n; i++)
        want = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
    rc = custos_id_parse(id, s);
    FUZZ_CHECK(rc == CUSTOS_OK || rc == CUSTOS_ERR_INVALID);
    FUZZ_CHECK((rc == CUSTOS_OK) == want);
    if (rc == CUSTOS_OK) {
        custos_id_hex(hex, id);
        FUZZ_CHECK(strcmp(hex, s) == 0);
    }
    FUZZ_CHECK(custos_id_parse(id, NULL) == CUSTOS_ERR_INVALID);
}

static void fuzz_token_id(const char *s)
{
    uint8_t prefix[8];
    char hex[17];
    size_t n = strlen(s), i;
    int want = n == 16;
    enum custos_err rc;

    for (i = 0; want && i < n; i++)
        want = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
    rc = custos_token_id_parse(s, prefix);
    FUZZ_CHECK(rc == CUSTOS_OK || rc == CUSTOS_ERR_INVALID);
    FUZZ_CHECK((rc == CUSTOS_OK) == want);
    if (rc == CUSTOS_OK) {
        sodium_bin2hex(hex, sizeof(hex), prefix, sizeof(prefix));
        FUZZ_CHECK(strcmp(hex, s) == 0);
    }
    FUZZ_CHECK(custos_token_id_parse(NULL, prefix) == CUSTOS_ERR_INVALID);
}

static void fuzz_credential(const char *s, const uint8_t *data, size_t size)
{
    static const char *const prefixes[] = {"cus_", "cps_"};
    uint8_t raw[32], raw2[32];
    char text[48];
    size_t i;

    for (i = 0; i < 2; i++) {
        enum custos_err rc = custos_credential_parse(s, prefixes[i], raw);

        FUZZ_CHECK(rc == CUSTOS_OK || rc == CUSTOS_ERR_INVALID);
        if (rc == CUSTOS_OK) {
            custos_credential_format(text, prefixes[i], raw);
            FUZZ_CHECK(strlen(text) == 47);
            /* F2 (fixed): one accepted spelling per credential */
            FUZZ_CHECK(strcmp(text, s) == 0);
        }
    }
    /* format -> parse round trip over bytes from the input */
    memset(raw, 0, sizeof(raw));
    memcpy(raw, data, size < 32 ? size : 32);
    custos_credential_format(text, "cus_", raw);
    FUZZ_CHECK(custos_credential_parse(text, "cus_", raw2) == CUSTOS_OK);
    FUZZ_CHECK(memcmp(raw, raw2, 32) == 0);
    FUZZ_CHECK(custos_credential_parse(text, "cps_", raw2) == CUSTOS_ERR_INVALID);
    FUZZ_CHECK(custos_credential_parse(NULL, "cus_", raw2) == CUSTOS_ERR_INVALID);
}

static void fuzz_listen(const char *s)
{
    struct sockaddr_storage ss;
    unsigned len = 0;
    int loopback = -1;
    enum custos_err rc = custos_parse_listen(s, &ss, &len, &loopback);
    const char *colon;
    char *end;
    long port;

    FUZZ_CHECK(rc == CUSTOS_OK || rc == CUSTOS_ERR_INVALID);
    if (rc)
        return;
    colon = strrchr(s, ':');
    FUZZ_CHECK(colon != NULL);
    port = strtol(colon + 1, &end, 10);
    FUZZ_CHECK(*end == '\0' && port >= 0 && port <= 65535);
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)&ss;

        FUZZ_CHECK(len == sizeof(*a4));
        FUZZ_CHECK(ntohs(a4->sin_port) == port);
        FUZZ_CHECK(loopback == ((ntohl(a4->sin_addr.s_addr) >> 24) == 127));
    } else {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&ss;

        FUZZ_CHECK(ss.ss_family == AF_INET6);
        FUZZ_CHECK(len == sizeof(*a6));
        FUZZ_CHECK(ntohs(a6->sin6_port) == port);
        FUZZ_CHECK(loopback == (IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr) != 0));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *z = memchr(data, '\0', size);
    size_t n = z ? (size_t)(z - data) : size;
    char *s = malloc(n + 1);

    FUZZ_CHECK(s != NULL);
    memcpy(s, data, n);
    s[n] = '\0';
    fuzz_u64(s);
    fuzz_id(s);
    fuzz_token_id(s);
    fuzz_credential(s, data, size);
    fuzz_listen(s);
    free(s);
    return 0;
}

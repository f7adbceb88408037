/*
 * fuzz_proof.c - libFuzzer target: a proof route's JSON answer as a witness
 * receives it (`custos ledger witness` fetches it from a server it does not
 * trust: a compromised vault may answer anything).
 *
 * Input: the raw body.  Path: custos_proof_json_parse, then, for a parsed
 * proof, custos_merkle_verify_consistency and custos_merkle_verify_inclusion
 * with sizes and roots taken from the input's first bytes.
 *
 * Invariants checked beyond "no crash, no leak, no UB":
 *  - an accepted proof holds at most CUSTOS_PROOF_MAX hashes;
 *  - an accepted proof is exactly the "hashes" array of the body: each hash
 *    is the base64 decoding of its string (re-encoded and compared);
 *  - a rejected body leaves *n at 0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "custos/merkle.h"
#include "custos/vault.h"

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0)
        abort();
    return 0;
}

static uint64_t u64_of(const uint8_t *p)
{
    uint64_t x = 0;

    for (int i = 0; i < 8; i++)
        x = x << 8 | p[i];
    return x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t proof[CUSTOS_PROOF_MAX][CUSTOS_HASH_BYTES];
    /* a heap copy of exactly `size` bytes: ASan catches any read past the end */
    char *buf = malloc(size ? size : 1);
    size_t n = 99;
    enum custos_err rc;

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    rc = custos_proof_json_parse(buf, size, proof, &n);
    if (rc) {
        FUZZ_CHECK(n == 0);
    } else {
        json_t *j = json_loadb(buf, size, 0, NULL), *h = json_object_get(j, "hashes");
        char b64[sodium_base64_ENCODED_LEN(CUSTOS_HASH_BYTES, sodium_base64_VARIANT_ORIGINAL)];

        FUZZ_CHECK(n <= CUSTOS_PROOF_MAX);
        FUZZ_CHECK(json_is_array(h) && json_array_size(h) == n);
        for (size_t i = 0; i < n; i++) {
            sodium_bin2base64(b64, sizeof(b64), proof[i], CUSTOS_HASH_BYTES, sodium_base64_VARIANT_ORIGINAL);
            FUZZ_CHECK(strcmp(b64, json_string_value(json_array_get(h, i))) == 0);
        }
        json_decref(j);
        if (size >= 16 + 2 * CUSTOS_HASH_BYTES) {
            /* sizes and roots from the body's own bytes: the verifiers must cope with any */
            uint64_t a = u64_of(data), b = u64_of(data + 8);
            const uint8_t *r1 = data + 16, *r2 = data + 16 + CUSTOS_HASH_BYTES;

            (void)custos_merkle_verify_consistency(a, b, r1, r2, (const uint8_t(*)[CUSTOS_HASH_BYTES])proof, n);
            (void)custos_merkle_verify_inclusion(a % (b ? b : 1), b, r1, (const uint8_t(*)[CUSTOS_HASH_BYTES])proof, n,
                                                 r2);
        }
    }
    free(buf);
    return 0;
}

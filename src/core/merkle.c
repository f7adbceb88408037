/*
 * merkle.c - RFC 6962 Merkle tree hashing, RFC 9162 proof verification and
 * the compact range (incremental root) used by the ledger.
 *
 * Owns: nothing but code.  Every function works on caller buffers, keeps no
 * state, touches no file and never allocates.
 *
 * Hash rules (RFC 6962 section 2.1, SHA-256 from libsodium):
 *   MTH({})       = SHA-256("")
 *   leaf hash     = SHA-256(0x00 || entry)
 *   node hash     = SHA-256(0x01 || left || right)
 *   MTH(D[0:n])   = node(MTH(D[0:k]), MTH(D[k:n])), k = largest power of two < n
 *
 * Verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2) walks the proof from
 * the leaf (or from the old tree's right edge) to the root, tracking the
 * node's index `fn` and the last index `sn` of its level, and accepts only
 * when the walk ends exactly at the root (sn == 0) with a matching hash, so
 * a proof with extra, missing or reordered hashes fails.  Roots are compared
 * with sodium_memcmp (constant time; not a secret, but cheap hygiene).
 *
 * Policy for consistency from size 0: rejected, always, including 0 -> 0.
 * The empty tree commits to nothing, so a "proof" from it proves nothing; we
 * follow the current transparency-dev/merkle behaviour (docs/format.md).
 *
 * Must never: accept a proof whose length differs from the one the sizes
 * imply, or read past the `n` hashes it was given.
 */
#include "custos/merkle.h"

#include <string.h>

#include <sodium.h>

#include "custos/banned.h"

void custos_merkle_leaf_hash(uint8_t out[CUSTOS_HASH_BYTES], const void *entry, size_t len)
{
    crypto_hash_sha256_state st;
    static const uint8_t prefix = 0x00;

    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, &prefix, 1);
    if (len > 0)
        crypto_hash_sha256_update(&st, entry, len);
    crypto_hash_sha256_final(&st, out);
}

void custos_merkle_node_hash(uint8_t out[CUSTOS_HASH_BYTES], const uint8_t left[CUSTOS_HASH_BYTES],
                             const uint8_t right[CUSTOS_HASH_BYTES])
{
    uint8_t buf[1 + 2 * CUSTOS_HASH_BYTES];

    /* One contiguous buffer: cheaper than three updates, and `out` may alias
       `left` or `right`. */
    buf[0] = 0x01;
    memcpy(buf + 1, left, CUSTOS_HASH_BYTES);
    memcpy(buf + 1 + CUSTOS_HASH_BYTES, right, CUSTOS_HASH_BYTES);
    crypto_hash_sha256(out, buf, sizeof(buf));
}

void custos_merkle_empty_root(uint8_t out[CUSTOS_HASH_BYTES])
{
    crypto_hash_sha256(out, (const unsigned char *)"", 0);
}

static int same_hash(const uint8_t a[CUSTOS_HASH_BYTES], const uint8_t b[CUSTOS_HASH_BYTES])
{
    return sodium_memcmp(a, b, CUSTOS_HASH_BYTES) == 0;
}

enum custos_err custos_merkle_verify_inclusion(uint64_t index, uint64_t size,
                                               const uint8_t leaf_hash[CUSTOS_HASH_BYTES],
                                               const uint8_t (*proof)[CUSTOS_HASH_BYTES], size_t n,
                                               const uint8_t root[CUSTOS_HASH_BYTES])
{
    uint8_t r[CUSTOS_HASH_BYTES];
    uint64_t fn, sn;
    size_t i;

    if (index >= size)
        return custos_err_set(CUSTOS_ERR_INVALID, "inclusion proof: index %llu is not below size %llu",
                              (unsigned long long)index, (unsigned long long)size);
    if (n > CUSTOS_PROOF_MAX || (n > 0 && proof == NULL))
        return custos_err_set(CUSTOS_ERR_INVALID, "inclusion proof: bad proof length");

    fn = index;
    sn = size - 1;
    memcpy(r, leaf_hash, CUSTOS_HASH_BYTES);
    for (i = 0; i < n; i++) {
        if (sn == 0)
            return custos_err_set(CUSTOS_ERR_INVALID, "inclusion proof: too long");
        if ((fn & 1) || fn == sn) {
            custos_merkle_node_hash(r, proof[i], r);
            /* A right-edge node with no right sibling moves up without hashing. */
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            custos_merkle_node_hash(r, r, proof[i]);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0)
        return custos_err_set(CUSTOS_ERR_INVALID, "inclusion proof: too short");
    if (!same_hash(r, root))
        return custos_err_set(CUSTOS_ERR_INVALID, "inclusion proof: root mismatch");
    return CUSTOS_OK;
}

enum custos_err custos_merkle_verify_consistency(uint64_t size1, uint64_t size2,
                                                 const uint8_t root1[CUSTOS_HASH_BYTES],
                                                 const uint8_t root2[CUSTOS_HASH_BYTES],
                                                 const uint8_t (*proof)[CUSTOS_HASH_BYTES], size_t n)
{
    uint8_t fr[CUSTOS_HASH_BYTES], sr[CUSTOS_HASH_BYTES];
    uint64_t fn, sn;
    size_t i, start;

    if (size1 == 0)
        return custos_err_set(CUSTOS_ERR_INVALID, "consistency proof: from size 0 is never accepted");
    if (size1 > size2)
        return custos_err_set(CUSTOS_ERR_INVALID, "consistency proof: size1 %llu exceeds size2 %llu",
                              (unsigned long long)size1, (unsigned long long)size2);
    if (n > CUSTOS_PROOF_MAX || (n > 0 && proof == NULL))
        return custos_err_set(CUSTOS_ERR_INVALID, "consistency proof: bad proof length");
    if (size1 == size2) {
        if (n != 0)
            return custos_err_set(CUSTOS_ERR_INVALID, "consistency proof: must be empty for equal sizes");
        if (!same_hash(root1, root2))
            return custos_err_set(CUSTOS_ERR_INVALID, "consistency proof: roots differ for equal sizes");
        return CUSTOS_OK;
    }
    if (n == 0)
        return custos_err_set(CUSTOS_ERR_INVALID, "consistency proof: empty");

    /* When size1 is a power of two the old root is itself a node of the new
       tree and the proof omits it: start from root1 instead of proof[0]. */
    if ((size1 & (size1 - 1)) == 0) {
        memcpy(fr, root1, CUSTOS_HASH_BYTES);
        start = 0;
    } else {
        memcpy(fr, proof[0], CUSTOS_HASH_BYTES);
        start = 1;
    }
    memcpy(sr, fr, CUSTOS_HASH_BYTES);
    fn = size1 - 1;
    sn = size2 - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    for (i = start; i < n; i++) {
        if (sn == 0)
            return custos_err_set(CUSTOS_ERR_INVALID, "consistency proof: too long");
        if ((fn & 1) || fn == sn) {
            custos_merkle_node_hash(fr, proof[i], fr);
            custos_merkle_node_hash(sr, proof[i], sr);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            custos_merkle_node_hash(sr, sr, proof[i]);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0)
        return custos_err_set(CUSTOS_ERR_INVALID, "consistency proof: too short");
    if (!same_hash(fr, root1))
        return custos_err_set(CUSTOS_ERR_INVALID, "consistency proof: old root mismatch");
    if (!same_hash(sr, root2))
        return custos_err_set(CUSTOS_ERR_INVALID, "consistency proof: new root mismatch");
    return CUSTOS_OK;
}

void custos_merkle_range_init(struct custos_merkle_range *r)
{
    memset(r, 0, sizeof(*r));
}

void custos_merkle_range_append(struct custos_merkle_range *r, const uint8_t leaf_hash[CUSTOS_HASH_BYTES],
                                void (*merged)(void *ctx, unsigned level, uint64_t index,
                                               const uint8_t hash[CUSTOS_HASH_BYTES]),
                                void *ctx)
{
    uint64_t s = r->size;
    unsigned level;

    /* n == popcount(size) <= 64; a full stack means size == 2^64 - 1, which
       no ledger reaches; refuse rather than overflow. */
    if (r->n >= 64 || s == UINT64_MAX)
        return;
    memcpy(r->hashes[r->n], leaf_hash, CUSTOS_HASH_BYTES);
    r->n++;
    if (merged)
        merged(ctx, 0, s, leaf_hash);
    /* Every trailing 1 bit of the old size is a complete subtree that the
       new leaf's subtree now pairs with. */
    for (level = 0; (s >> level) & 1; level++) {
        custos_merkle_node_hash(r->hashes[r->n - 2], r->hashes[r->n - 2], r->hashes[r->n - 1]);
        r->n--;
        if (merged)
            merged(ctx, level + 1, s >> (level + 1), r->hashes[r->n - 1]);
    }
    r->size = s + 1;
}

void custos_merkle_range_root(const struct custos_merkle_range *r, uint8_t out[CUSTOS_HASH_BYTES])
{
    uint8_t h[CUSTOS_HASH_BYTES];
    unsigned i;

    if (r->n == 0) {
        custos_merkle_empty_root(out);
        return;
    }
    memcpy(h, r->hashes[r->n - 1], CUSTOS_HASH_BYTES);
    for (i = r->n - 1; i-- > 0;)
        custos_merkle_node_hash(h, r->hashes[i], h);
    memcpy(out, h, CUSTOS_HASH_BYTES);
}

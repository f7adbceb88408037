/*
 * merkle.h - RFC 6962 Merkle tree hashing and proof verification.
 *
 * Pure functions over caller-provided buffers: nothing here allocates,
 * touches a file, or keeps state.  Hashes are SHA-256 (libsodium):
 *   leaf hash = SHA-256(0x00 || entry bytes)
 *   node hash = SHA-256(0x01 || left || right)
 * and the tree shape is RFC 6962 section 2.1 (the left subtree of a tree of
 * n > 1 leaves holds the largest power of two smaller than n).
 *
 * Proof verification follows RFC 9162 section 2.1.3.2 / 2.1.4.2 (the
 * algorithms transparency-dev/merkle implements).  Policy for consistency
 * from size 0: every proof is rejected, including 0 -> 0 (the current
 * transparency-dev/merkle behaviour); docs/format.md says so.
 */
#ifndef CUSTOS_MERKLE_H
#define CUSTOS_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#include "custos/err.h"

#define CUSTOS_HASH_BYTES 32
/* Longest proof for a tree of up to 2^64 leaves; consistency proofs can be one longer. */
#define CUSTOS_PROOF_MAX 65

void custos_merkle_leaf_hash(uint8_t out[CUSTOS_HASH_BYTES], const void *entry, size_t len);
void custos_merkle_node_hash(uint8_t out[CUSTOS_HASH_BYTES], const uint8_t left[CUSTOS_HASH_BYTES],
                             const uint8_t right[CUSTOS_HASH_BYTES]);
/* Root of the empty tree: SHA-256 of the empty string. */
void custos_merkle_empty_root(uint8_t out[CUSTOS_HASH_BYTES]);

/*
 * Verify that `leaf_hash` is at `index` in the tree of `size` leaves whose
 * root is `root`, given `n` proof hashes.  CUSTOS_OK when it holds,
 * CUSTOS_ERR_INVALID otherwise (including index >= size, wrong proof length).
 */
enum custos_err custos_merkle_verify_inclusion(uint64_t index, uint64_t size,
                                               const uint8_t leaf_hash[CUSTOS_HASH_BYTES],
                                               const uint8_t (*proof)[CUSTOS_HASH_BYTES], size_t n,
                                               const uint8_t root[CUSTOS_HASH_BYTES]);

/*
 * Verify that the tree of size `size1` with root `root1` is a prefix of the
 * tree of size `size2` with root `root2`.  CUSTOS_OK or CUSTOS_ERR_INVALID.
 * size1 == size2 requires an empty proof and equal roots; size1 == 0 is
 * always rejected (see the file header); size1 > size2 is rejected.
 */
enum custos_err custos_merkle_verify_consistency(uint64_t size1, uint64_t size2,
                                                 const uint8_t root1[CUSTOS_HASH_BYTES],
                                                 const uint8_t root2[CUSTOS_HASH_BYTES],
                                                 const uint8_t (*proof)[CUSTOS_HASH_BYTES], size_t n);

/*
 * Compact range / incremental root: the stack of complete-subtree roots
 * covering leaves [0, size).  Appending is O(1) amortised, computing the
 * root O(log n).  Used by the ledger writer and by the verifier so that
 * nothing proportional to the tree's size is held in memory.
 */
struct custos_merkle_range {
    uint64_t size;
    unsigned n;                                   /* number of stacked subtree roots = popcount(size) */
    uint8_t hashes[64][CUSTOS_HASH_BYTES];        /* left to right, biggest subtree first */
};

void custos_merkle_range_init(struct custos_merkle_range *r);
/* Append one leaf hash.  If `merged` is not NULL, it is called for every
 * complete subtree formed, with (level, index at that level, hash), so the
 * caller can persist interior nodes; level 0 is the leaf itself. */
void custos_merkle_range_append(struct custos_merkle_range *r, const uint8_t leaf_hash[CUSTOS_HASH_BYTES],
                                void (*merged)(void *ctx, unsigned level, uint64_t index,
                                               const uint8_t hash[CUSTOS_HASH_BYTES]),
                                void *ctx);
/* Root of the range (the empty root when size == 0). */
void custos_merkle_range_root(const struct custos_merkle_range *r, uint8_t out[CUSTOS_HASH_BYTES]);

#endif

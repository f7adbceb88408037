/*
 * crypto.h - the vault's use of libsodium: key wrapping, field sealing,
 * keyed hashes, identifiers, per-thread secure scratch memory.
 *
 * Algorithms: XChaCha20-Poly1305-IETF (AEAD) for key wrapping and field
 * sealing: random 192-bit nonces for keys, and for the values of one record
 * a random 128-bit prefix and a 64-bit counter (struct custos_run); BLAKE2b (crypto_generichash) keyed for
 * token, secret and blind-index hashes; crypto_kdf for subkeys.
 *
 * Sealed layout: nonce (24) || ciphertext || tag (16).
 * Must never: return partial plaintext on failure (outputs are wiped), keep
 * a key outside sodium_malloc'd memory longer than one call, say more than
 * "failed" about why an open failed.
 */
#ifndef CUSTOS_CRYPTO_H
#define CUSTOS_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "custos/err.h"

#define CUSTOS_KEY_BYTES 32
#define CUSTOS_NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES /* 24 */
#define CUSTOS_TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES      /* 16 */
#define CUSTOS_SEAL_OVERHEAD (CUSTOS_NONCE_BYTES + CUSTOS_TAG_BYTES)
#define CUSTOS_WRAPPED_BYTES (CUSTOS_KEY_BYTES + CUSTOS_SEAL_OVERHEAD) /* 72 */
#define CUSTOS_ID_BYTES 16
#define CUSTOS_ID_HEX 32

/* Seal pt under key with associated data; out must hold ptlen + CUSTOS_SEAL_OVERHEAD.
   The nonce is taken from `nonce` (random, caller-supplied so it can batch randomness). */
void custos_seal(uint8_t *out, const uint8_t nonce[CUSTOS_NONCE_BYTES], const uint8_t key[CUSTOS_KEY_BYTES],
                 const void *pt, size_t ptlen, const void *ad, size_t adlen);

/* Open a sealed value; pt must hold inlen - CUSTOS_SEAL_OVERHEAD.  CUSTOS_ERR_CRYPTO on any failure
   (pt then wiped). */
enum custos_err custos_open(uint8_t *pt, const uint8_t key[CUSTOS_KEY_BYTES], const uint8_t *in, size_t inlen,
                            const void *ad, size_t adlen);

/*
 * A run: several values sealed or opened under one key, with XChaCha20's HChaCha20 subkey
 * derived once for all the nonces that share their first 16 bytes.  What is sealed and opened
 * is exactly custos_seal / custos_open's format: libsodium's XChaCha20-Poly1305-IETF is
 * ChaCha20-Poly1305-IETF under HChaCha20(key, nonce[0..16]) with nonce 0^4 || nonce[16..24],
 * and a run calls those two libsodium functions itself.  A run seals with one random 128-bit
 * prefix drawn at its first seal and the values numbered after it (64-bit big-endian
 * counter), so its nonces are unique under the key; it opens any nonce, reusing the subkey
 * while the prefix repeats (records a run sealed) and deriving it anew when it does not.
 *
 * The subkey lives in the thread's secure scratch memory, in a slot before custos_scratch();
 * custos_run_end and custos_scratch_wipe wipe it.  One run at a time per thread keeps it: a run
 * begun inside another only makes the outer one derive its subkey again, never use another's.
 * The key is not copied: it must stay in place until custos_run_end.
 */
struct custos_run {
    const uint8_t *key;
    uint8_t *sub;        /* the subkey slot; NULL when scratch memory could not be had */
    uint8_t prefix[16];  /* sealing: this run's, drawn at its first seal and never changed */
    int sealing;         /* prefix is drawn */
    uint8_t held[16];    /* the prefix sub was derived for */
    uint64_t next;       /* sealing: the next value's number */
    uint64_t id;         /* this run, among the thread's: sub is ours while the thread's owner is id */
};
void custos_run_begin(struct custos_run *r, const uint8_t key[CUSTOS_KEY_BYTES]);
/* As custos_seal, with the run's next nonce. */
void custos_run_seal(struct custos_run *r, uint8_t *out, const void *pt, size_t ptlen, const void *ad, size_t adlen);
/* As custos_open. */
enum custos_err custos_run_open(struct custos_run *r, uint8_t *pt, const uint8_t *in, size_t inlen, const void *ad,
                                size_t adlen);
void custos_run_end(struct custos_run *r);

/* Key wrapping = sealing a 32-byte key. */
void custos_wrap(uint8_t out[CUSTOS_WRAPPED_BYTES], const uint8_t kek[CUSTOS_KEY_BYTES],
                 const uint8_t key[CUSTOS_KEY_BYTES], const void *ad, size_t adlen);
enum custos_err custos_unwrap(uint8_t key[CUSTOS_KEY_BYTES], const uint8_t kek[CUSTOS_KEY_BYTES],
                              const uint8_t in[CUSTOS_WRAPPED_BYTES], const void *ad, size_t adlen);

/* Associated data builders (write into ad, return length).  Formats are in docs/security.md. */
size_t custos_ad_subject_key(uint8_t ad[64], const uint8_t id[CUSTOS_ID_BYTES], uint32_t gen, uint32_t kv);
size_t custos_ad_system_key(uint8_t ad[64], const char *name, uint32_t kv);

/*
 * Per-thread secure scratch: CUSTOS_SCRATCH_BYTES of sodium_malloc'd, mlocked
 * memory for transient keys.  Allocated on first use per thread, freed at
 * thread exit.  NULL when it cannot be allocated.  The caller wipes what it
 * used (custos_scratch_wipe) before returning.
 */
#define CUSTOS_SCRATCH_BYTES 256
uint8_t *custos_scratch(void);
void custos_scratch_wipe(void);

/*
 * Random bytes served from a per-thread pool of 16 KiB, refilled by libsodium's
 * randombytes_buf_deterministic (ChaCha20) from a fresh 256-bit seed drawn from the kernel's
 * CSPRNG (randombytes_buf) each time, so sealing a record costs a fraction of a system call, not
 * one per nonce and key.  The pool and its seed live in sodium_malloc'd memory; the seed is
 * wiped once used and every byte handed out is wiped from the pool.
 */
void custos_random(void *buf, size_t n);

/* Random 128-bit identifier and its lowercase hex form. */
void custos_id_random(uint8_t id[CUSTOS_ID_BYTES]);
void custos_id_hex(char out[CUSTOS_ID_HEX + 1], const uint8_t id[CUSTOS_ID_BYTES]);
/* Parse exactly 32 lowercase hex digits (the one spelling of an id); CUSTOS_ERR_INVALID otherwise. */
enum custos_err custos_id_parse(uint8_t id[CUSTOS_ID_BYTES], const char *hex);

/* Milliseconds since the epoch (real clock). */
uint64_t custos_clock_ms(void);

#endif

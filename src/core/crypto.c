/*
 * crypto.c - see crypto.h.
 *
 * Owns: the per-thread secure scratch area (a pthread key whose destructor
 * wipes and frees it).
 * Must never: use a nonce twice under one key on purpose (nonces are 192-bit
 * random, or within a run a fresh random 128-bit prefix and a counter), keep a
 * run's subkey past its end or the scratch's wipe, or leak plaintext from a
 * failed open.
 */
#include "crypto.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "custos/banned.h"

void custos_seal(uint8_t *out, const uint8_t nonce[CUSTOS_NONCE_BYTES], const uint8_t key[CUSTOS_KEY_BYTES],
                 const void *pt, size_t ptlen, const void *ad, size_t adlen)
{
    memcpy(out, nonce, CUSTOS_NONCE_BYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + CUSTOS_NONCE_BYTES, NULL, pt, ptlen, ad, adlen, NULL,
                                               nonce, key);
}

enum custos_err custos_open(uint8_t *pt, const uint8_t key[CUSTOS_KEY_BYTES], const uint8_t *in, size_t inlen,
                            const void *ad, size_t adlen)
{
    if (inlen < CUSTOS_SEAL_OVERHEAD)
        return CUSTOS_ERR_CRYPTO;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, NULL, NULL, in + CUSTOS_NONCE_BYTES,
                                                   inlen - CUSTOS_NONCE_BYTES, ad, adlen, in, key) != 0) {
        sodium_memzero(pt, inlen - CUSTOS_SEAL_OVERHEAD);
        return CUSTOS_ERR_CRYPTO;
    }
    return CUSTOS_OK;
}

/* ---- runs ---------------------------------------------------------------------------------- */

#define RUN_SUB_BYTES crypto_core_hchacha20_OUTPUTBYTES /* 32, after the scratch proper */
#define RUN_PREFIX_BYTES crypto_core_hchacha20_INPUTBYTES /* 16 */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
    sodium_free(p); /* sodium_free wipes before unmapping */
}

static void scratch_setup(void)
{
    pthread_key_create(&scratch_key, scratch_free);
}

/* The thread's block: the run subkey slot (RUN_SUB_BYTES), then the scratch proper, whose end
   is the block's end, next to libsodium's guard page, so that running past the scratch faults. */
static uint8_t *scratch_block(void)
{
    uint8_t *p;

    pthread_once(&scratch_once, scratch_setup);
    p = pthread_getspecific(scratch_key);
    if (!p) {
        p = sodium_malloc(RUN_SUB_BYTES + CUSTOS_SCRATCH_BYTES);
        if (!p)
            return NULL;
        if (pthread_setspecific(scratch_key, p) != 0) {
            sodium_free(p);
            return NULL;
        }
    }
    return p;
}

static _Thread_local uint64_t run_count; /* runs begun on this thread */
static _Thread_local uint64_t run_owner; /* the run whose subkey the slot holds; 0: none */

void custos_run_begin(struct custos_run *r, const uint8_t key[CUSTOS_KEY_BYTES])
{
    uint8_t *block = scratch_block();

    r->key = key;
    r->sub = block; /* the slot before the scratch proper */
    r->next = 0;
    r->id = ++run_count;
    r->sealing = 0; /* the prefix is drawn at the first seal: a read draws nothing */
}

/* The run's subkey for nonce prefix p, derived when the slot does not hold it; NULL without a
   slot (the caller then goes through libsodium's XChaCha20 functions). */
static const uint8_t *run_subkey(struct custos_run *r, const uint8_t *p)
{
    if (!r->sub)
        return NULL;
    if (run_owner == r->id && memcmp(r->held, p, RUN_PREFIX_BYTES) == 0)
        return r->sub;
    memcpy(r->held, p, RUN_PREFIX_BYTES);
    crypto_core_hchacha20(r->sub, r->held, r->key, NULL);
    run_owner = r->id;
    return r->sub;
}

void custos_run_seal(struct custos_run *r, uint8_t *out, const void *pt, size_t ptlen, const void *ad, size_t adlen)
{
    uint8_t nonce[CUSTOS_NONCE_BYTES], inner[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = {0};
    const uint8_t *sub;
    uint64_t n = r->next++;

    /* always the prefix drawn at the first seal, whatever the run opened: another record's
       prefix under this key would repeat that record's nonces */
    if (!r->sealing) {
        custos_random(r->prefix, sizeof(r->prefix));
        r->sealing = 1;
    }
    memcpy(nonce, r->prefix, RUN_PREFIX_BYTES);
    for (int i = 0; i < 8; i++)
        nonce[RUN_PREFIX_BYTES + i] = (uint8_t)(n >> (56 - 8 * i));
    if (!(sub = run_subkey(r, nonce))) {
        custos_seal(out, nonce, r->key, pt, ptlen, ad, adlen);
        return;
    }
    memcpy(out, nonce, CUSTOS_NONCE_BYTES);
    memcpy(inner + 4, nonce + RUN_PREFIX_BYTES, 8);
    crypto_aead_chacha20poly1305_ietf_encrypt(out + CUSTOS_NONCE_BYTES, NULL, pt, ptlen, ad, adlen, NULL, inner,
                                              sub);
}

enum custos_err custos_run_open(struct custos_run *r, uint8_t *pt, const uint8_t *in, size_t inlen, const void *ad,
                                size_t adlen)
{
    uint8_t inner[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = {0};
    const uint8_t *sub;

    if (inlen < CUSTOS_SEAL_OVERHEAD)
        return CUSTOS_ERR_CRYPTO;
    if (!(sub = run_subkey(r, in)))
        return custos_open(pt, r->key, in, inlen, ad, adlen);
    memcpy(inner + 4, in + RUN_PREFIX_BYTES, 8);
    if (crypto_aead_chacha20poly1305_ietf_decrypt(pt, NULL, NULL, in + CUSTOS_NONCE_BYTES, inlen - CUSTOS_NONCE_BYTES,
                                                  ad, adlen, inner, sub) != 0) {
        sodium_memzero(pt, inlen - CUSTOS_SEAL_OVERHEAD);
        return CUSTOS_ERR_CRYPTO;
    }
    return CUSTOS_OK;
}

void custos_run_end(struct custos_run *r)
{
    if (r->sub && run_owner == r->id) {
        sodium_memzero(r->sub, RUN_SUB_BYTES);
        run_owner = 0;
    }
    sodium_memzero(r->prefix, sizeof(r->prefix));
    sodium_memzero(r->held, sizeof(r->held));
    r->key = NULL;
}

void custos_wrap(uint8_t out[CUSTOS_WRAPPED_BYTES], const uint8_t kek[CUSTOS_KEY_BYTES],
                 const uint8_t key[CUSTOS_KEY_BYTES], const void *ad, size_t adlen)
{
    uint8_t nonce[CUSTOS_NONCE_BYTES];

    custos_random(nonce, sizeof(nonce));
    custos_seal(out, nonce, kek, key, CUSTOS_KEY_BYTES, ad, adlen);
}

enum custos_err custos_unwrap(uint8_t key[CUSTOS_KEY_BYTES], const uint8_t kek[CUSTOS_KEY_BYTES],
                              const uint8_t in[CUSTOS_WRAPPED_BYTES], const void *ad, size_t adlen)
{
    return custos_open(key, kek, in, CUSTOS_WRAPPED_BYTES, ad, adlen);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

size_t custos_ad_subject_key(uint8_t ad[64], const uint8_t id[CUSTOS_ID_BYTES], uint32_t gen, uint32_t kv)
{
    static const char tag[] = "custos/subject-key/v1";
    size_t n = sizeof(tag) - 1;

    memcpy(ad, tag, n);
    memcpy(ad + n, id, CUSTOS_ID_BYTES);
    put_be32(ad + n + CUSTOS_ID_BYTES, gen);
    put_be32(ad + n + CUSTOS_ID_BYTES + 4, kv);
    return n + CUSTOS_ID_BYTES + 8;
}

size_t custos_ad_system_key(uint8_t ad[64], const char *name, uint32_t kv)
{
    static const char tag[] = "custos/system-key/v1/";
    size_t n = sizeof(tag) - 1, nl = strlen(name);

    if (nl > 64 - n - 4)
        nl = 64 - n - 4;
    memcpy(ad, tag, n);
    memcpy(ad + n, name, nl);
    put_be32(ad + n + nl, kv);
    return n + nl + 4;
}

uint8_t *custos_scratch(void)
{
    uint8_t *p = scratch_block();

    return p ? p + RUN_SUB_BYTES : NULL;
}

void custos_scratch_wipe(void)
{
    uint8_t *p;

    pthread_once(&scratch_once, scratch_setup);
    p = pthread_getspecific(scratch_key);
    if (p)
        sodium_memzero(p, RUN_SUB_BYTES + CUSTOS_SCRATCH_BYTES);
    run_owner = 0;
}

#define POOL_BYTES 16384

struct pool {
    uint8_t b[POOL_BYTES];
    uint8_t k[randombytes_SEEDBYTES];
    size_t off; /* bytes [off, POOL_BYTES) are unused */
};

/* Refill from a fresh 256-bit kernel seed expanded by libsodium's randombytes_buf_deterministic
   (the ChaCha20 keystream of the seed), the seed wiped at once.  randombytes_buf asks the kernel
   for 256 bytes per system call; an import draws ~400 random bytes a subject, so filling the
   pool from the kernel directly cost more than a system call a subject.  Every pool has its own
   kernel seed: nothing carries over from one pool to the next. */
static void pool_refill(struct pool *p)
{
    randombytes_buf(p->k, sizeof(p->k));
    randombytes_buf_deterministic(p->b, POOL_BYTES, p->k);
    sodium_memzero(p->k, sizeof(p->k));
    p->off = 0;
}

static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_setup(void)
{
    pthread_key_create(&pool_key, scratch_free);
}

void custos_random(void *buf, size_t n)
{
    struct pool *p;

    pthread_once(&pool_once, pool_setup);
    p = pthread_getspecific(pool_key);
    if (!p && n <= POOL_BYTES / 4) {
        p = sodium_malloc(sizeof(*p));
        if (p && pthread_setspecific(pool_key, p) != 0) {
            sodium_free(p);
            p = NULL;
        }
        if (p)
            p->off = POOL_BYTES;
    }
    if (!p || n > POOL_BYTES / 4) {
        randombytes_buf(buf, n);
        return;
    }
    if (POOL_BYTES - p->off < n)
        pool_refill(p);
    memcpy(buf, p->b + p->off, n);
    sodium_memzero(p->b + p->off, n);
    p->off += n;
}

void custos_id_random(uint8_t id[CUSTOS_ID_BYTES])
{
    custos_random(id, CUSTOS_ID_BYTES);
}

void custos_id_hex(char out[CUSTOS_ID_HEX + 1], const uint8_t id[CUSTOS_ID_BYTES])
{
    sodium_bin2hex(out, CUSTOS_ID_HEX + 1, id, CUSTOS_ID_BYTES);
}

enum custos_err custos_id_parse(uint8_t id[CUSTOS_ID_BYTES], const char *hex)
{
    size_t binlen = 0;
    const char *end = NULL;

    size_t i;

    if (!hex || strlen(hex) != CUSTOS_ID_HEX)
        return custos_err_set(CUSTOS_ERR_INVALID, "malformed subject id: expected 32 lowercase hex digits");
    for (i = 0; i < CUSTOS_ID_HEX; i++)
        if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
            return custos_err_set(CUSTOS_ERR_INVALID, "malformed subject id: expected 32 lowercase hex digits");
    if (sodium_hex2bin(id, CUSTOS_ID_BYTES, hex, CUSTOS_ID_HEX, NULL, &binlen, &end) != 0 ||
        binlen != CUSTOS_ID_BYTES || *end != '\0')
        return custos_err_set(CUSTOS_ERR_INVALID, "malformed subject id: expected 32 lowercase hex digits");
    return CUSTOS_OK;
}

uint64_t custos_clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * keycache.c - recently used subject keys, unwrapped, in locked memory.
 *
 * A read needs the subject's key; unwrapping it means a control-plane read
 * (a second database transaction per request).  The vault keeps the keys of
 * recently read subjects in a fixed table in sodium_malloc'd (mlocked,
 * guarded) memory, next to the master key that could unwrap them anyway.
 *
 * Invariants: an entry is (subject id, key generation, key).  Erasure and
 * re-keying drop the subject's entry (wiping it) and bump the epoch, and an
 * entry is only stored if no drop happened since its key was read (checked
 * under the slot's lock, which the drop holds too), so a key destroyed in the
 * control plane is never kept here.  The table never grows.
 *
 * Must never: hand out a key of another generation, keep a key after its
 * subject's erasure, live outside sodium memory.
 */
#include "core/vault_int.h"

#include <stdatomic.h>
#include <string.h>

#include "custos/banned.h"

#define KC_SLOTS 4096
#define KC_STRIPES 16

struct kc_entry {
    uint8_t id[16];
    uint32_t gen; /* 0 = empty */
    uint8_t key[CUSTOS_KEY_BYTES];
};

struct custos_keycache {
    pthread_mutex_t mu[KC_STRIPES];
    /* Bumped by every drop while it holds the dropped slot's lock; a put compares it while holding
       the slot's lock too, so a drop either comes first (the put sees it and stores nothing) or
       after (and wipes what the put stored). */
    atomic_uint_least64_t epoch;
    struct kc_entry *e; /* KC_SLOTS, sodium memory */
};

struct custos_keycache *custos_keycache_new(void)
{
    struct custos_keycache *k = calloc(1, sizeof(*k));
    int i;

    if (!k)
        return NULL;
    k->e = sodium_malloc(KC_SLOTS * sizeof(*k->e));
    if (!k->e) {
        free(k);
        return NULL;
    }
    sodium_memzero(k->e, KC_SLOTS * sizeof(*k->e));
    atomic_init(&k->epoch, 0);
    for (i = 0; i < KC_STRIPES; i++)
        pthread_mutex_init(&k->mu[i], NULL);
    return k;
}

void custos_keycache_free(struct custos_keycache *k)
{
    int i;

    if (!k)
        return;
    sodium_free(k->e); /* wipes */
    for (i = 0; i < KC_STRIPES; i++)
        pthread_mutex_destroy(&k->mu[i]);
    free(k);
}

static size_t slot_of(const uint8_t id[16])
{
    return ((size_t)id[0] | (size_t)id[1] << 8) % KC_SLOTS; /* ids are random */
}

uint64_t custos_keycache_epoch(struct custos_keycache *k)
{
    return atomic_load(&k->epoch);
}

int custos_keycache_get(struct custos_keycache *k, const uint8_t id[16], uint32_t gen, uint8_t *key)
{
    size_t s = slot_of(id);
    pthread_mutex_t *mu = &k->mu[s % KC_STRIPES];
    int hit;

    pthread_mutex_lock(mu);
    hit = k->e[s].gen == gen && gen && sodium_memcmp(k->e[s].id, id, 16) == 0;
    if (hit)
        memcpy(key, k->e[s].key, CUSTOS_KEY_BYTES);
    pthread_mutex_unlock(mu);
    return hit;
}

void custos_keycache_put(struct custos_keycache *k, uint64_t epoch, const uint8_t id[16], uint32_t gen,
                         const uint8_t *key)
{
    size_t s = slot_of(id);
    pthread_mutex_t *mu = &k->mu[s % KC_STRIPES];

    pthread_mutex_lock(mu);
    /* something was dropped since this key was read: do not bring it back */
    if (atomic_load(&k->epoch) == epoch) {
        memcpy(k->e[s].id, id, 16);
        k->e[s].gen = gen;
        memcpy(k->e[s].key, key, CUSTOS_KEY_BYTES);
    }
    pthread_mutex_unlock(mu);
}

void custos_keycache_drop(struct custos_keycache *k, const uint8_t id[16])
{
    size_t s = slot_of(id);
    pthread_mutex_t *mu = &k->mu[s % KC_STRIPES];

    pthread_mutex_lock(mu);
    atomic_fetch_add(&k->epoch, 1);
    if (sodium_memcmp(k->e[s].id, id, 16) == 0)
        sodium_memzero(&k->e[s], sizeof(k->e[s]));
    pthread_mutex_unlock(mu);
}

/*
 * ledger_gen.c - build an N-entry ledger through the normal append path
 * (custos_ledger_enqueue: hashing, group commit, fdatasync per batch,
 * checkpoints every second), then measure it:
 *   on-disk size per file, open/recovery time,
 *   root latency at random sizes,
 *   inclusion and consistency proof latency (generation, and verification),
 *   custos_ledger_verify over the whole ledger.
 * Latencies are medians and 99th percentiles of K random requests (default
 * 1000) with a warm page cache, as a running server would see them.
 *
 * usage: bench_ledger_gen DIR N [K]
 *   DIR must not hold a ledger yet (it is created); it is left in place.
 * There is no fast path: the files are exactly those the vault writes.
 * The signing key comes from a fixed seed: benchmark-only, not secret.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "custos/ledger.h"
#include "custos/merkle.h"
#include "custos/note.h"
#include "custos/banned.h"

#define ORIGIN "bench.custos.example/ledger"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static size_t gen(char *buf, size_t cap, uint64_t i)
{
    uint64_t x = i * 0x9e3779b97f4a7c15ULL;
    int n = snprintf(buf, cap,
                     "{\"v\":1,\"ts\":%llu,\"op\":\"read\",\"principal\":\"svc-delivery-%02u\",\"token\":\"tk_%016llx\","
                     "\"source\":\"10.1.%u.%u\",\"subject\":\"%016llx%016llx\",\"purpose\":\"delivery\","
                     "\"fields\":[\"name\",\"phone\",\"address\"],\"result\":\"ok\"}",
                     1767225600000ULL + i, (unsigned)(x % 64), (unsigned long long)x, (unsigned)((x >> 8) % 256),
                     (unsigned)((x >> 16) % 256), (unsigned long long)(x * 31), (unsigned long long)i);
    return (size_t)n;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void report(const char *what, double *t, size_t k)
{
    qsort(t, k, sizeof(double), cmp_d);
    printf("%-34s median %8.1f us   p99 %8.1f us\n", what, t[k / 2] * 1e6, t[k * 99 / 100] * 1e6);
}

static void die(const char *what, enum custos_err e)
{
    fprintf(stderr, "%s: %s\n", what, custos_err_msg(e));
    exit(1);
}

int main(int argc, char **argv)
{
    struct custos_ledger_config c;
    struct custos_ledger *l = NULL;
    struct custos_ledger_recovery rec;
    struct custos_ledger_verify_report rep;
    struct custos_note_verifier v;
    uint8_t seed[32], pk[32], sk[64], root[CUSTOS_HASH_BYTES], root2[CUSTOS_HASH_BYTES], lh[CUSTOS_HASH_BYTES];
    uint8_t proof[CUSTOS_PROOF_MAX][CUSTOS_HASH_BYTES];
    char vkey[512], e[512], p[4096];
    uint64_t n, i, idx = 0, s = 88172645463325252ULL, total = 0;
    size_t k, j, np;
    double t0, *lat, *lat2;
    enum custos_err err;
    DIR *d;
    struct dirent *de;
    struct rusage ru;

    if (argc < 3) {
        fprintf(stderr, "usage: %s DIR N [K]\n", argv[0]);
        return 2;
    }
    n = strtoull(argv[2], NULL, 10);
    k = argc > 3 ? (size_t)strtoul(argv[3], NULL, 10) : 1000;
    if (sodium_init() < 0 || n < 2 || k == 0)
        return 2;
    lat = calloc(k, sizeof(double));
    lat2 = calloc(k, sizeof(double));
    if (!lat || !lat2)
        return 1;
    memset(seed, 0xbe, sizeof(seed));
    crypto_sign_seed_keypair(pk, sk, seed);
    if (custos_note_vkey_format(vkey, sizeof(vkey), ORIGIN, pk) != CUSTOS_OK ||
        custos_note_vkey_parse(&v, vkey) != CUSTOS_OK)
        return 1;
    memset(&c, 0, sizeof(c));
    c.dir = argv[1];
    c.origin = ORIGIN;
    c.sign_sk = sk;
    c.checkpoint_interval_ms = 1000;

    /* generate */
    if ((err = custos_ledger_open(&c, &l, &rec)) != CUSTOS_OK)
        die("open", err);
    if (rec.size != 0) {
        fprintf(stderr, "%s already holds a ledger of %llu entries\n", argv[1], (unsigned long long)rec.size);
        return 1;
    }
    t0 = now_s();
    for (i = 0; i < n; i++) {
        size_t len = gen(e, sizeof(e), i);

        if ((err = custos_ledger_enqueue(l, e, len, &idx)) != CUSTOS_OK)
            die("enqueue", err);
        if (i % 10000000 == 9999999) {
            printf("  %llu entries, %.0f entries/s\n", (unsigned long long)(i + 1), (double)(i + 1) / (now_s() - t0));
            fflush(stdout);
        }
    }
    if ((err = custos_ledger_wait(l, idx)) != CUSTOS_OK)
        die("wait", err);
    printf("generated %llu entries in %.1f s: %.0f entries/s\n", (unsigned long long)n, now_s() - t0,
           (double)n / (now_s() - t0));
    t0 = now_s();
    custos_ledger_free(l);
    printf("close (final checkpoint): %.3f s\n", now_s() - t0);

    /* on-disk size */
    d = opendir(argv[1]);
    while (d && (de = readdir(d)) != NULL) {
        struct stat st;

        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", argv[1], de->d_name);
        if (stat(p, &st) == 0) {
            printf("  %-12s %14llu bytes\n", de->d_name, (unsigned long long)st.st_size);
            total += (uint64_t)st.st_size;
        }
    }
    if (d)
        closedir(d);
    printf("on disk: %llu bytes, %.1f bytes/entry\n", (unsigned long long)total, (double)total / (double)n);

    /* reopen and measure */
    t0 = now_s();
    if ((err = custos_ledger_open(&c, &l, &rec)) != CUSTOS_OK)
        die("reopen", err);
    printf("reopen: %.3f s (size %llu, rebuilt %llu, truncated %llu bytes)\n", now_s() - t0,
           (unsigned long long)rec.size, (unsigned long long)rec.rebuilt, (unsigned long long)rec.truncated_bytes);

    for (j = 0; j < k; j++) {
        uint64_t sz = 1 + rnd(&s) % n;

        t0 = now_s();
        if ((err = custos_ledger_root(l, sz, root)) != CUSTOS_OK)
            die("root", err);
        lat[j] = now_s() - t0;
    }
    report("root(random size)", lat, k);

    if ((err = custos_ledger_root(l, n, root)) != CUSTOS_OK)
        die("root", err);
    for (j = 0; j < k; j++) {
        uint64_t m = rnd(&s) % n;

        t0 = now_s();
        if ((err = custos_ledger_prove_inclusion(l, m, n, proof, &np)) != CUSTOS_OK)
            die("prove inclusion", err);
        lat[j] = now_s() - t0;
        custos_merkle_leaf_hash(lh, e, gen(e, sizeof(e), m));
        t0 = now_s();
        if (custos_merkle_verify_inclusion(m, n, lh, (const uint8_t(*)[CUSTOS_HASH_BYTES])proof, np, root) != CUSTOS_OK)
            die("verify inclusion", CUSTOS_ERR_INTERNAL);
        lat2[j] = now_s() - t0;
    }
    report("inclusion proof (size N)", lat, k);
    report("inclusion verify", lat2, k);

    for (j = 0; j < k; j++) {
        uint64_t m = 1 + rnd(&s) % n;

        t0 = now_s();
        if ((err = custos_ledger_prove_consistency(l, m, n, proof, &np)) != CUSTOS_OK)
            die("prove consistency", err);
        lat[j] = now_s() - t0;
        if ((err = custos_ledger_root(l, m, root2)) != CUSTOS_OK)
            die("root", err);
        t0 = now_s();
        if (custos_merkle_verify_consistency(m, n, root2, root, (const uint8_t(*)[CUSTOS_HASH_BYTES])proof, np) !=
            CUSTOS_OK)
            die("verify consistency", CUSTOS_ERR_INTERNAL);
        lat2[j] = now_s() - t0;
    }
    report("consistency proof (random -> N)", lat, k);
    report("consistency verify", lat2, k);
    custos_ledger_free(l);

    t0 = now_s();
    if ((err = custos_ledger_verify(argv[1], &v, &rep)) != CUSTOS_OK)
        die("verify", err);
    printf("custos_ledger_verify: %.1f s, %s, %llu entries, %llu checkpoints%s%s\n", now_s() - t0,
           rep.intact ? "intact" : "NOT INTACT", (unsigned long long)rep.size, (unsigned long long)rep.checkpoints,
           rep.intact ? "" : ": ", rep.intact ? "" : rep.what);
    getrusage(RUSAGE_SELF, &ru);
    printf("peak rss: %ld KiB\n", ru.ru_maxrss);
    free(lat);
    free(lat2);
    return rep.intact ? 0 : 1;
}

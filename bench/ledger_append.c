/*
 * ledger_append.c - in-process append throughput of the ledger (hashing,
 * group commit, fdatasync per batch, checkpoints every second), against
 * baselines measured in the same run on the same entries:
 *   hash   generate + RFC 6962 leaf hash (SHA-256) of every entry
 *   write  generate + write() of the same framed bytes in 1 MiB chunks + one fdatasync
 * Entries are realistic ~210-byte JSON audit events, generated on the fly
 * (nothing proportional to N is kept in memory, so peak RSS is the ledger's).
 *
 * usage: bench_ledger_append [DIR] [N] [THREADS]
 *   DIR      scratch directory on the disk under test (default ./bench-ledger-append.tmp);
 *            removed and recreated
 *   N        entries (default 2000000)
 *   THREADS  0 (default): one producer thread enqueues, then waits for the last entry;
 *            T > 0: also run T threads calling custos_ledger_append (synchronous
 *            acknowledgement per entry, as HTTP handler threads do)
 * Run pinned to one core: taskset -c 0 bench_ledger_append ...
 *
 * The signing key is derived from a fixed seed: benchmark-only, not secret.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "custos/ledger.h"
#include "custos/merkle.h"
#include "custos/banned.h"

static const char tmpl[] =
    "{\"v\":1,\"ts\":1767225600000,\"op\":\"read\",\"principal\":\"svc-delivery-00\","
    "\"token\":\"tk_0000000000000000\",\"source\":\"10.1.0.0\",\"subject\":\"00000000000000000000000000000000\","
    "\"purpose\":\"delivery\",\"fields\":[\"name\",\"phone\",\"address\"],\"result\":\"ok\"}";

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long rss_kb(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* CPU seconds (user + system) used by the whole process so far. */
static double cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

static void put_hex(char *p, uint64_t v, int digits)
{
    static const char hx[] = "0123456789abcdef";
    int i;

    for (i = digits - 1; i >= 0; i--) {
        p[i] = hx[v & 15];
        v >>= 4;
    }
}

static void put_dec(char *p, uint64_t v, int digits)
{
    int i;

    for (i = digits - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* Offsets of the varied fields in the template, found once. */
static size_t o_ts, o_pr, o_tk, o_src, o_sub;

static void gen_init(void)
{
    o_ts = (size_t)(strstr(tmpl, "1767225600000") - tmpl) + 8;
    o_pr = (size_t)(strstr(tmpl, "svc-delivery-") - tmpl) + 13;
    o_tk = (size_t)(strstr(tmpl, "tk_") - tmpl) + 3;
    o_src = (size_t)(strstr(tmpl, "10.1.0.0") - tmpl) + 5;
    o_sub = (size_t)(strstr(tmpl, "\"subject\":\"") - tmpl) + 11;
}

/* Entry i: the template with its timestamp, principal, token, source and subject varied. */
static size_t gen(char *buf, uint64_t i)
{
    uint64_t x = i * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;

    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 29;
    memcpy(buf, tmpl, sizeof(tmpl) - 1);
    put_dec(buf + o_ts, i % 100000, 5);
    put_dec(buf + o_pr, x % 64, 2);
    put_hex(buf + o_tk, x, 16);
    put_dec(buf + o_src, (x >> 8) % 10, 1);
    buf[o_src + 2] = (char)('0' + (x >> 16) % 10);
    put_hex(buf + o_sub, x * 31, 16);
    put_hex(buf + o_sub + 16, i, 16);
    return sizeof(tmpl) - 1;
}

static void rm_ledger(const char *dir)
{
    static const char *files[] = {"lock", "entries", "tree", "index", "checkpoints", "state", "state.tmp",
                                  "baseline.bin"};
    char p[4096];
    size_t i;

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static double bench_hash(uint64_t n, double *per_cpu)
{
    char e[512];
    uint8_t h[CUSTOS_HASH_BYTES], acc = 0;
    uint64_t i;
    double t0 = now_s(), c0 = cpu_s();

    for (i = 0; i < n; i++) {
        size_t len = gen(e, i);

        custos_merkle_leaf_hash(h, e, len);
        acc ^= h[0];
    }
    if (acc == 0x5a)
        fputc(' ', stderr); /* keep the loop */
    *per_cpu = (double)n / (cpu_s() - c0);
    return (double)n / (now_s() - t0);
}

static double bench_write(const char *dir, uint64_t n)
{
    char p[4096], *buf = malloc(1 << 20);
    size_t used = 0;
    uint64_t i;
    double t0;
    int fd;

    if (buf == NULL)
        return 0;
    mkdir(dir, 0700);
    snprintf(p, sizeof(p), "%s/baseline.bin", dir);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        free(buf);
        return 0;
    }
    t0 = now_s();
    for (i = 0; i < n; i++) {
        if (used + 512 > (1 << 20)) {
            if (write(fd, buf, used) != (ssize_t)used)
                break;
            used = 0;
        }
        used += 4;
        used += gen(buf + used, i);
        used += 8;
    }
    if (write(fd, buf, used) != (ssize_t)used || fdatasync(fd) != 0)
        fprintf(stderr, "baseline write failed: %s\n", strerror(errno));
    t0 = (double)n / (now_s() - t0);
    close(fd);
    unlink(p);
    free(buf);
    return t0;
}

static uint8_t sk[64];

static struct custos_ledger *open_ledger(const char *dir)
{
    struct custos_ledger_config c;
    struct custos_ledger *l = NULL;
    enum custos_err e;

    memset(&c, 0, sizeof(c));
    c.dir = dir;
    c.origin = "bench.custos.example/ledger";
    c.sign_sk = sk;
    c.checkpoint_interval_ms = 1000;
    e = custos_ledger_open(&c, &l, NULL);
    if (e != CUSTOS_OK) {
        fprintf(stderr, "open %s: %s\n", dir, custos_err_msg(e));
        exit(1);
    }
    return l;
}

static double bench_enqueue(const char *dir, uint64_t n, double *close_s, double *busy)
{
    struct custos_ledger *l;
    char e[512];
    uint64_t i, idx = 0;
    double t0, c0, rate;

    rm_ledger(dir);
    l = open_ledger(dir);
    t0 = now_s();
    c0 = cpu_s();
    for (i = 0; i < n; i++) {
        size_t len = gen(e, i);

        if (custos_ledger_enqueue(l, e, len, &idx) != CUSTOS_OK) {
            fprintf(stderr, "enqueue: %s\n", custos_err_msg(CUSTOS_ERR_UNAVAILABLE));
            exit(1);
        }
    }
    if (custos_ledger_wait(l, idx) != CUSTOS_OK) {
        fprintf(stderr, "wait failed\n");
        exit(1);
    }
    rate = (double)n / (now_s() - t0);
    *busy = cpu_s() - c0;
    t0 = now_s();
    custos_ledger_free(l);
    *close_s = now_s() - t0;
    return rate;
}

struct worker {
    struct custos_ledger *l;
    uint64_t from, to;
    int failed;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char e[512];
    uint64_t i;

    for (i = w->from; i < w->to; i++) {
        size_t len = gen(e, i);

        if (custos_ledger_append(w->l, e, len, NULL) != CUSTOS_OK) {
            w->failed = 1;
            break;
        }
    }
    return NULL;
}

static double bench_threads(const char *dir, uint64_t n, int threads)
{
    struct custos_ledger *l;
    struct worker *w = calloc((size_t)threads, sizeof(*w));
    pthread_t *th = calloc((size_t)threads, sizeof(*th));
    double t0, rate;
    int i;

    if (!w || !th)
        exit(1);
    rm_ledger(dir);
    l = open_ledger(dir);
    t0 = now_s();
    for (i = 0; i < threads; i++) {
        w[i].l = l;
        w[i].from = n * (uint64_t)i / (uint64_t)threads;
        w[i].to = n * (uint64_t)(i + 1) / (uint64_t)threads;
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    for (i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        if (w[i].failed) {
            fprintf(stderr, "append failed\n");
            exit(1);
        }
    }
    rate = (double)n / (now_s() - t0);
    custos_ledger_free(l);
    free(w);
    free(th);
    return rate;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "./bench-ledger-append.tmp";
    uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 2000000;
    int threads = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 0;
    uint8_t seed[32], pk[32];
    double hash_rate, hash_cpu = 0, write_rate, rate, close_s, busy = 0, trate = 0;
    char e[512];

    if (sodium_init() < 0 || n == 0)
        return 1;
    gen_init();
    memset(seed, 0xbe, sizeof(seed));
    crypto_sign_seed_keypair(pk, sk, seed);

    printf("entries: %llu, %zu bytes each (e.g. %.*s...)\n", (unsigned long long)n, gen(e, 1), 60, e);
    hash_rate = bench_hash(n, &hash_cpu);
    printf("baseline hash  (generate + leaf SHA-256): %12.0f entries/s (%.0f entries per cpu-second)\n", hash_rate,
           hash_cpu);
    write_rate = bench_write(dir, n);
    printf("baseline write (generate + write + 1 fdatasync): %5.0f entries/s\n", write_rate);
    printf("rss after baselines: %ld KiB\n", rss_kb());
    rate = bench_enqueue(dir, n, &close_s, &busy);
    printf("ledger enqueue (1 producer, group commit, fdatasync per batch): %10.0f entries/s  (close %.3f s)\n", rate,
           close_s);
    printf("  cpu used by the process meanwhile: %.2f s = %.0f%% of the core; %.0f entries per cpu-second\n", busy,
           100.0 * busy * rate / (double)n, (double)n / busy);
    printf("ratio ledger / hash baseline: %.2f (per cpu-second: %.2f), ledger / write baseline: %.2f\n",
           rate / hash_rate, (double)n / busy / hash_cpu, rate / write_rate);
    if (threads > 0) {
        trate = bench_threads(dir, n, threads);
        printf("ledger append  (%d threads, each waits for durability): %10.0f entries/s\n", threads, trate);
    }
    printf("peak rss: %ld KiB\n", rss_kb());
    rm_ledger(dir);
    return 0;
}

/*
 * ledger.c - the tamper-evident ledger: an append-only entries log arranged
 * as an RFC 6962 Merkle tree, with group commit and signed C2SP checkpoints.
 *
 * Owns: the files of one ledger directory (format in ledger_int.h and
 * docs/format.md), the exclusive lock on it, the signing key copy (sodium
 * memory), two threads (writer, checkpointer) and a bounded queue.
 *
 *   lock         flock()ed exclusively by the one writing process, which
 *                first writes a fresh 16-byte generation into it
 *   entries      16-byte header, then batches: 32-byte header + records
 *                (len u32 | entry | first 8 bytes of the leaf hash)
 *   tree         32-byte node hashes in post-order (Merkle mountain range):
 *                2n - popcount(n) slots after n leaves; derived
 *   index        u64 offset of each record in `entries`; derived
 *   checkpoints  every signed checkpoint note ever made, append-only
 *   state        origin, public key and the markers: derived files are
 *                fsync'ed up to entry D (log offset DL), checkpoints file
 *                up to byte CPB; replaced by write, fsync, rename, fsync dir
 *
 * Durability: a batch is one pwrite of the entries log and one fdatasync;
 * only then is it acknowledged.  tree/index are written to the page cache
 * after that and fsync'ed at checkpoint time, when `state` records the new
 * marker; recovery recomputes them past the marker from the log alone,
 * after checking in O(1) that the record just below the marker is in the
 * log where the marker puts it (the file's size, which includes the zeros
 * written ahead, proves nothing).
 *
 * Invariants:
 *  - the writer thread is the only writer of entries/tree/index; the
 *    checkpointer thread the only writer of checkpoints/state (open and
 *    free write them only while no thread runs);
 *  - a batch is written only after the previous one was fdatasync'ed, so
 *    at most one batch (<= LEDGER_BATCH_BYTES_MAX) can be torn by a crash;
 *  - `durable` only grows, and every entry below it is fsync'ed in the log
 *    and present in the (page-cached) tree and index files;
 *  - a checkpoint is signed only for a durable size, sizes never decrease,
 *    and all come from one in-order compact range: no two are inconsistent;
 *  - the derived marker D in `state` never runs past the latest signed
 *    checkpoint, so the peaks open reads at D are vouched for by a signed
 *    root (or, past it, recomputed from the log);
 *  - memory is bounded: two queue buffers, staging buffers, a compact range
 *    of <= 64 hashes; nothing grows with the ledger.
 *
 * Verify trusts only the log and the checkpoints' signatures, and checks the
 * derived files against them; custos_ledger_rebuild recomputes the derived
 * files from the whole log (operator repair, O(n), no key, signs nothing).
 *
 * Must never: acknowledge an entry before its batch is fdatasync'ed; sign a
 * checkpoint over entries that are not durable; truncate anything but a
 * torn tail (a bad record that a later durable write follows is corruption,
 * reported, never repaired); trust stored data without its check (corrupt
 * data is CUSTOS_ERR_CORRUPT, never an assert); keep the key outside sodium
 * memory.
 */
#include "custos/ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/ledger_int.h"
#include "core/thread.h"
#include "custos/banned.h"

#define CP_RECORD_MAX (LEDGER_CPREC_HDR + CUSTOS_NOTE_MAX + LEDGER_CHECK_BYTES)
#define TREE_STAGE_SLOTS (2 * LEDGER_BATCH_COUNT_MAX + 64)
#define WAIT_SLICE_MS 50 /* writer re-reads the (possibly injected) clock at least this often */
#define LOCK_WAIT_NS (1000u * 1000u * 1000u) /* a writer tries the lock this long (open_ledger) */

/*
 * Group commit under load.  Each batch costs one fdatasync, and in a virtual machine an
 * fdatasync costs far more CPU than writing the entries does.  When the last batch was not a
 * lone entry (concurrent producers are waiting) and producers have announced entries that are
 * on their way (custos_ledger_expect: a request being handled, or an HTTP worker's turn over
 * the requests its sockets delivered together), the writer lets a batch gather
 * them until they are all in, LINGER_COUNT entries, or LINGER_US after the previous batch
 * began, whichever is first.  So a batch waits for work already under way, never for clients
 * that have not asked yet, and a lone producer (one request at a time) is never delayed.
 */
#define LINGER_US 1000
#define LINGER_COUNT 256
#define LINGER_PREV_MIN 4

struct qbuf {
    uint8_t *data;                      /* LEDGER_BATCH_HDR + LEDGER_BATCH_BYTES_MAX */
    uint8_t (*leaf)[CUSTOS_HASH_BYTES]; /* LEDGER_BATCH_COUNT_MAX leaf hashes */
    uint32_t used;                      /* record bytes after the header */
    uint32_t count;
    uint64_t first;                     /* leaf index of the first record */
    pthread_cond_t done;                /* waiters for entries of this buffer's batch: woken
                                           when that batch is durable, and no one else is */
};

struct custos_ledger {
    /* fixed after open */
    int dirfd, lockfd, logfd, treefd, idxfd, cpfd;
    int read_only;
    int rebuild; /* custos_ledger_rebuild: writable, no key, no threads */
    char origin[CUSTOS_NOTE_NAME_MAX + 1];
    uint8_t pk[32];
    uint8_t *sk; /* 64 bytes of sodium_malloc memory, read-only; NULL when read_only */
    struct custos_note_verifier self;
    unsigned interval_ms;
    uint64_t (*now_fn)(void *ctx);
    void *now_ctx;
    int (*fault)(void *ctx, const char *op);
    void *fault_ctx;
    void (*notify)(void *ctx, uint64_t durable, int failed); /* under mu */
    void *notify_ctx;
    int notifying;                                           /* a call is in flight (under mu) */

    pthread_mutex_t mu;
    pthread_cond_t work;   /* writer waits: queue empty (monotonic clock) */
    pthread_cond_t space;  /* producers wait: queue full */
    pthread_cond_t done;   /* waiters: checkpoints, failure (appends wait on their buffer) */
    pthread_cond_t cpwork; /* checkpointer waits */
    int sync_init, writer_started, cp_started;
    pthread_t writer, cpthread;

    /* under mu */
    struct qbuf q[2];
    struct qbuf *fill;   /* producers append here */
    struct qbuf *spare;  /* the other buffer, NULL while the writer writes it */
    uint64_t next_index; /* index of the next enqueued entry */
    uint64_t durable;    /* entries durable and published */
    uint64_t batch_start_ns; /* monotonic time the last batch write began */
    uint32_t batch_prev;     /* entries in the last batch written */
    atomic_int lingering;    /* the writer waits for a batch to fill (LINGER_*) */
    atomic_int expected;     /* producers about to enqueue (custos_ledger_expect) */
    atomic_uint_least64_t durable_pub; /* a copy of durable, read without the lock */
    int failed;
    char fail_msg[128];
    int stop;
    int cp_req;            /* checkpoint_now pending */
    uint64_t cp_req_target;
    int cp_pending;        /* writer -> checkpointer handoff */
    uint64_t cp_pend_size, cp_pend_log;
    uint8_t cp_pend_root[CUSTOS_HASH_BYTES];
    int cp_stop;
    int handed;            /* a checkpoint exists or was handed off */
    uint64_t handed_size;
    uint64_t last_cp_ms;
    int have_cp;           /* latest signed checkpoint, for custos_ledger_checkpoint */
    uint64_t cp_size;
    size_t cp_len;
    char cp_note[CUSTOS_NOTE_MAX + 1];

    /* writer only (and open) */
    struct custos_merkle_range range;
    uint64_t log_end;   /* bytes */
    uint64_t log_alloc; /* bytes of `entries` written: batches, then zeros ahead (LEDGER_LOG_AHEAD) */
    uint64_t tree_end;  /* slots */
    uint64_t idx_end;   /* entries */
    uint8_t (*tree_stage)[CUSTOS_HASH_BYTES];
    size_t tree_staged;
    uint8_t *idx_stage;

    /* checkpointer only (and open/free) */
    uint64_t st_derived, st_derived_log, cp_end, cp_last;
    /* open only: the marker recovery may record, the last batch boundary the scan passed at or
       below the latest checkpoint (the marker never runs ahead of a signed checkpoint) */
    uint64_t mark_target, mark_d, mark_dl;
};

/* ------------------------------------------------------------------ I/O */

static int fault_hit(struct custos_ledger *l, const char *op)
{
    if (l && l->fault && l->fault(l->fault_ctx, op)) {
        errno = EIO;
        return 1;
    }
    return 0;
}

/* 0 on success, 1 on a short read (end of file), -1 on error (errno set). */
static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t r = pread(fd, p, len, (off_t)off);

        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            return 1;
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int pwrite_full(struct custos_ledger *l, int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;

    if (fault_hit(l, "write"))
        return -1;
    while (len > 0) {
        ssize_t w = pwrite(fd, p, len, (off_t)off);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int datasync(struct custos_ledger *l, int fd)
{
    if (fault_hit(l, "fsync"))
        return -1;
    return fdatasync(fd);
}

static int fullsync(struct custos_ledger *l, int fd)
{
    if (fault_hit(l, "fsync"))
        return -1;
    return fsync(fd);
}

static int truncate_to(struct custos_ledger *l, int fd, uint64_t len)
{
    if (fault_hit(l, "write"))
        return -1;
    return ftruncate(fd, (off_t)len);
}

static int file_size(int fd, uint64_t *size)
{
    struct stat st;

    if (fstat(fd, &st) != 0)
        return -1;
    *size = (uint64_t)st.st_size;
    return 0;
}

static enum custos_err io_err(const char *what)
{
    return custos_err_set(CUSTOS_ERR_IO, "ledger: %s: %s", what, strerror(errno));
}

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ms(struct custos_ledger *l)
{
    struct timespec ts;

    if (l->now_fn)
        return l->now_fn(l->now_ctx);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------- framing */

enum hdr_kind { HDR_OK, HDR_GARBAGE, HDR_WRONG_INDEX };

static enum hdr_kind batch_header_parse(const uint8_t h[LEDGER_BATCH_HDR], uint64_t expect_first,
                                        uint32_t *count, uint32_t *bytes)
{
    uint8_t chk[LEDGER_CHECK_BYTES];
    uint32_t c, b;

    if (ledger_get32(h) != LEDGER_BATCH_MAGIC)
        return HDR_GARBAGE;
    ledger_check8(chk, h, 24);
    if (memcmp(chk, h + 24, LEDGER_CHECK_BYTES) != 0)
        return HDR_GARBAGE;
    c = ledger_get32(h + 4);
    b = ledger_get32(h + 8);
    /* A header with a good check that we would never write is not torn: treat it as misplaced. */
    if (c == 0 || c > LEDGER_BATCH_COUNT_MAX || b > LEDGER_BATCH_BYTES_MAX ||
        (uint64_t)c * LEDGER_REC_OVERHEAD > b || ledger_get32(h + 12) != 0)
        return HDR_WRONG_INDEX;
    if (ledger_get64(h + 16) != expect_first)
        return HDR_WRONG_INDEX;
    *count = c;
    *bytes = b;
    return HDR_OK;
}

/*
 * Check the `count` records in recs[0..bytes): framing and each record's
 * check; fill leaf[i].  Returns -1 and *bad (0-based record) when one fails.
 */
static int batch_records_parse(const uint8_t *recs, uint32_t bytes, uint32_t count,
                               uint8_t (*leaf)[CUSTOS_HASH_BYTES], uint32_t *bad, const char **why)
{
    uint32_t i, off = 0;

    for (i = 0; i < count; i++) {
        uint32_t len;

        if (bytes - off < LEDGER_REC_OVERHEAD) {
            *why = "record framing overruns its batch";
            goto fail;
        }
        len = ledger_get32(recs + off);
        if (len > CUSTOS_LEDGER_ENTRY_MAX || (uint64_t)len + LEDGER_REC_OVERHEAD > bytes - off) {
            *why = "record length is out of range";
            goto fail;
        }
        custos_merkle_leaf_hash(leaf[i], recs + off + 4, len);
        if (memcmp(leaf[i], recs + off + 4 + len, LEDGER_CHECK_BYTES) != 0) {
            *why = "record check does not match its entry";
            goto fail;
        }
        off += LEDGER_REC_OVERHEAD + len;
    }
    if (off != bytes) {
        i = count - 1;
        *why = "batch length does not match its records";
        goto fail;
    }
    return 0;
fail:
    *bad = i;
    return -1;
}

/*
 * Where the data of `entries` ends at or after `from`: the offset just past
 * its last non-zero byte, or `from` when [from, eof) is all zeros (the space
 * the writer fills ahead, LEDGER_LOG_AHEAD).  Reads backwards, `cap` bytes
 * at a time.  0; 1 when the file ends in more zeros than the writer ever
 * leaves (the space ahead after a torn batch: LEDGER_TAIL_ZEROS_MAX), which is
 * damage, not a crash; -1 on a read error.
 */
static int data_end(int fd, uint64_t from, uint64_t eof, uint8_t *scratch, size_t cap, uint64_t *end)
{
    uint64_t hi = eof;

    while (hi > from) {
        if (eof - hi > LEDGER_TAIL_ZEROS_MAX)
            return 1;
        size_t n = hi - from < cap ? (size_t)(hi - from) : cap;
        uint64_t lo = hi - n;
        int r = pread_full(fd, scratch, n, lo);

        if (r < 0)
            return -1;
        if (r > 0) { /* shrank under us (a writer truncating a torn tail): go on below its new end */
            struct stat st;

            if (fstat(fd, &st) != 0)
                return -1;
            hi = (uint64_t)st.st_size < hi ? (uint64_t)st.st_size : hi - 1;
            continue;
        }
        while (n > 0 && scratch[n - 1] == 0)
            n--;
        if (n > 0) {
            hi = lo + n;
            break;
        }
        hi = lo;
    }
    if (hi < from)
        hi = from;
    /* The check above only stops reading early: the zeros found may still run past the bound
       (up to one more read's worth), and that is damage too. */
    if (eof - hi > LEDGER_TAIL_ZEROS_MAX)
        return 1;
    *end = hi;
    return 0;
}

/*
 * A batch at `x` failed.  Decide whether it is the torn tail of an unsynced
 * write (returns 1) or damage to durable data (returns 0); `eof` is where the
 * file's data ends (data_end: zeros after it are space written ahead).  The
 * writer fsyncs every batch before writing the next, so a torn batch is the
 * last thing in the file: nothing may follow a batch whose header is intact,
 * and after a damaged header nothing may follow that parses as a batch
 * header, within at most one maximal batch.  `scratch` holds
 * LEDGER_BATCH_HDR + LEDGER_BATCH_BYTES_MAX bytes.  -1 on a read error.
 */
static int batch_is_torn(int fd, uint64_t x, uint64_t eof, enum hdr_kind kind, uint32_t bytes,
                         uint8_t *scratch)
{
    uint64_t span, i;
    int r;

    if (kind == HDR_WRONG_INDEX)
        return 0;
    if (kind == HDR_OK)
        return x + LEDGER_BATCH_HDR + bytes >= eof;
    span = eof - x;
    if (span > (uint64_t)LEDGER_BATCH_HDR + LEDGER_BATCH_BYTES_MAX)
        return 0;
    if (span <= 1)
        return 1;
    r = pread_full(fd, scratch, (size_t)(span - 1), x + 1);
    if (r < 0)
        return -1;
    if (r > 0)
        return 1; /* shrank under us: nothing durable follows */
    for (i = 0; i + LEDGER_BATCH_HDR <= span - 1; i++) {
        uint8_t chk[LEDGER_CHECK_BYTES];

        if (ledger_get32(scratch + i) != LEDGER_BATCH_MAGIC)
            continue;
        ledger_check8(chk, scratch + i, 24);
        if (memcmp(chk, scratch + i + 24, LEDGER_CHECK_BYTES) == 0)
            return 0;
    }
    return 1;
}

/* One checkpoint record at `off`: 0 good (note copied, NUL-terminated), 1 bad/short, -1 error. */
static int cp_record_read(int fd, uint64_t off, uint64_t eof, char *note, size_t *note_len, uint64_t *size,
                          uint64_t *rec_len)
{
    uint8_t hdr[LEDGER_CPREC_HDR], chk[LEDGER_CHECK_BYTES], want[LEDGER_CHECK_BYTES];
    crypto_hash_sha256_state st;
    uint8_t h[crypto_hash_sha256_BYTES];
    uint32_t len;
    int r;

    if (off + LEDGER_CPREC_HDR > eof)
        return 1;
    r = pread_full(fd, hdr, sizeof(hdr), off);
    if (r != 0)
        return r;
    len = ledger_get32(hdr + 4);
    if (ledger_get32(hdr) != LEDGER_CPREC_MAGIC || len == 0 || len > CUSTOS_NOTE_MAX ||
        off + LEDGER_CPREC_HDR + len + LEDGER_CHECK_BYTES > eof)
        return 1;
    r = pread_full(fd, note, len, off + LEDGER_CPREC_HDR);
    if (r != 0)
        return r;
    r = pread_full(fd, chk, sizeof(chk), off + LEDGER_CPREC_HDR + len);
    if (r != 0)
        return r;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, hdr, sizeof(hdr));
    crypto_hash_sha256_update(&st, (const unsigned char *)note, len);
    crypto_hash_sha256_final(&st, h);
    memcpy(want, h, LEDGER_CHECK_BYTES);
    if (memcmp(want, chk, LEDGER_CHECK_BYTES) != 0)
        return 1;
    note[len] = '\0';
    *note_len = len;
    *size = ledger_get64(hdr + 8);
    *rec_len = LEDGER_CPREC_HDR + (uint64_t)len + LEDGER_CHECK_BYTES;
    return 0;
}

/* Is there a valid checkpoint record anywhere in (x, eof)?  1 yes, 0 no, -1 error. */
static int cp_valid_after(int fd, uint64_t x, uint64_t eof, char *note)
{
    uint8_t buf[CP_RECORD_MAX];
    uint64_t span = eof - x, i;
    size_t nlen;
    uint64_t size, rlen;
    int r;

    if (span <= 1)
        return 0;
    if (span - 1 > sizeof(buf))
        return 1; /* longer than one record: more than one write followed */
    r = pread_full(fd, buf, (size_t)(span - 1), x + 1);
    if (r < 0)
        return -1;
    for (i = 0; i + 4 <= span - 1; i++) {
        if (ledger_get32(buf + i) != LEDGER_CPREC_MAGIC)
            continue;
        r = cp_record_read(fd, x + 1 + i, eof, note, &nlen, &size, &rlen);
        if (r <= 0)
            return r == 0 ? 1 : -1;
    }
    return 0;
}

/* ---------------------------------------------------------- tree reads */

static enum custos_err read_slot(int treefd, uint64_t slot, uint8_t out[CUSTOS_HASH_BYTES])
{
    int r = pread_full(treefd, out, CUSTOS_HASH_BYTES, slot * CUSTOS_HASH_BYTES);

    if (r < 0)
        return io_err("reading the tree file");
    if (r > 0)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: tree file is shorter than the ledger");
    return CUSTOS_OK;
}

/* The compact range (peaks) of the first n leaves, read from the tree file. */
static enum custos_err read_peaks(int treefd, uint64_t n, struct custos_merkle_range *r)
{
    uint64_t start = 0;
    int bit;
    enum custos_err e;

    custos_merkle_range_init(r);
    for (bit = 63; bit >= 0; bit--) {
        uint64_t w = (uint64_t)1 << bit;

        if (!(n & w))
            continue;
        e = read_slot(treefd, ledger_tree_pos((unsigned)bit, start >> bit), r->hashes[r->n]);
        if (e != CUSTOS_OK)
            return e;
        r->n++;
        start += w;
    }
    r->size = n;
    return CUSTOS_OK;
}

/*
 * Proof nodes of the tree of size n are either complete aligned subtrees
 * (one stored slot) or right-edge subtrees [lo, n), which start at a peak
 * boundary and are the fold of the peaks from there on.
 */
struct prover {
    int treefd;
    uint64_t n;
    struct custos_merkle_range peaks;
    uint64_t bound[65]; /* bound[j] = first leaf of peak j */
    uint8_t suffix[64][CUSTOS_HASH_BYTES];
    int have_suffix;
};

static enum custos_err prover_init(struct prover *p, int treefd, uint64_t n)
{
    uint64_t start = 0;
    unsigned j = 0;
    int bit;
    enum custos_err e;

    p->treefd = treefd;
    p->n = n;
    p->have_suffix = 0;
    e = read_peaks(treefd, n, &p->peaks);
    if (e != CUSTOS_OK)
        return e;
    for (bit = 63; bit >= 0; bit--) {
        if (n & ((uint64_t)1 << bit)) {
            p->bound[j++] = start;
            start += (uint64_t)1 << bit;
        }
    }
    p->bound[j] = n;
    return CUSTOS_OK;
}

static enum custos_err prover_hash(struct prover *p, uint64_t lo, uint64_t hi, uint8_t out[CUSTOS_HASH_BYTES])
{
    uint64_t w = hi - lo;
    unsigned j;

    if (w == 0 || hi > p->n)
        return custos_err_set(CUSTOS_ERR_INTERNAL, "ledger: bad proof range");
    if ((w & (w - 1)) == 0 && (lo & (w - 1)) == 0) {
        unsigned level = (unsigned)__builtin_ctzll(w);

        return read_slot(p->treefd, ledger_tree_pos(level, lo >> level), out);
    }
    if (hi != p->n)
        return custos_err_set(CUSTOS_ERR_INTERNAL, "ledger: proof range is not a tree node");
    if (!p->have_suffix) {
        unsigned k = p->peaks.n;

        memcpy(p->suffix[k - 1], p->peaks.hashes[k - 1], CUSTOS_HASH_BYTES);
        for (j = k - 1; j-- > 0;)
            custos_merkle_node_hash(p->suffix[j], p->peaks.hashes[j], p->suffix[j + 1]);
        p->have_suffix = 1;
    }
    for (j = 0; j < p->peaks.n; j++) {
        if (p->bound[j] == lo) {
            memcpy(out, p->suffix[j], CUSTOS_HASH_BYTES);
            return CUSTOS_OK;
        }
    }
    return custos_err_set(CUSTOS_ERR_INTERNAL, "ledger: proof range is not a tree node");
}

static uint64_t split_point(uint64_t w) /* largest power of two < w, w >= 2 */
{
    return (uint64_t)1 << (63 - __builtin_clzll(w - 1));
}

/* ---------------------------------------------------------------- state */

static void state_encode(const struct custos_ledger *l, uint8_t s[LEDGER_STATE_BYTES])
{
    size_t olen = strlen(l->origin);

    memset(s, 0, LEDGER_STATE_BYTES);
    memcpy(s, LEDGER_STATE_MAGIC, 8);
    ledger_put32(s + LEDGER_ST_VERSION, LEDGER_STATE_VERSION);
    ledger_put32(s + LEDGER_ST_ORIGIN_LEN, (uint32_t)olen);
    memcpy(s + LEDGER_ST_ORIGIN, l->origin, olen);
    memcpy(s + LEDGER_ST_PUBKEY, l->pk, 32);
    ledger_put64(s + LEDGER_ST_DERIVED, l->st_derived);
    ledger_put64(s + LEDGER_ST_DERIVED_LOG, l->st_derived_log);
    ledger_put64(s + LEDGER_ST_CP_BYTES, l->cp_end);
    ledger_put64(s + LEDGER_ST_CP_LAST, l->cp_last);
    ledger_check8(s + LEDGER_ST_CHECK, s, LEDGER_ST_CHECK);
}

static enum custos_err state_write(struct custos_ledger *l)
{
    uint8_t s[LEDGER_STATE_BYTES];
    enum custos_err e = CUSTOS_OK;
    int fd;

    state_encode(l, s);
    fd = openat(l->dirfd, LEDGER_F_STATE_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return io_err("creating state.tmp");
    if (pwrite_full(l, fd, s, sizeof(s), 0) != 0) {
        e = io_err("writing state.tmp");
        goto done;
    }
    if (fullsync(l, fd) != 0) {
        e = io_err("syncing state.tmp");
        goto done;
    }
    if (fault_hit(l, "rename") || renameat(l->dirfd, LEDGER_F_STATE_TMP, l->dirfd, LEDGER_F_STATE) != 0) {
        e = io_err("renaming the state file");
        goto done;
    }
    if (fullsync(l, l->dirfd) != 0)
        e = io_err("syncing the ledger directory");
done:
    close(fd);
    return e;
}

/* Read and check `state`; CUSTOS_ERR_NOTFOUND when absent. */
static enum custos_err state_read(int dirfd, uint8_t s[LEDGER_STATE_BYTES])
{
    uint8_t chk[LEDGER_CHECK_BYTES], extra;
    int fd, r;
    uint32_t olen;

    fd = openat(dirfd, LEDGER_F_STATE, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return custos_err_set(CUSTOS_ERR_NOTFOUND, "ledger: no ledger in this directory");
        return io_err("opening the state file");
    }
    r = pread_full(fd, s, LEDGER_STATE_BYTES, 0);
    if (r == 0)
        r = pread_full(fd, &extra, 1, LEDGER_STATE_BYTES) == 1 ? 0 : 2;
    close(fd);
    if (r < 0)
        return io_err("reading the state file");
    if (r > 0)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: state file has the wrong length");
    ledger_check8(chk, s, LEDGER_ST_CHECK);
    olen = ledger_get32(s + LEDGER_ST_ORIGIN_LEN);
    if (memcmp(s, LEDGER_STATE_MAGIC, 8) != 0 || memcmp(chk, s + LEDGER_ST_CHECK, LEDGER_CHECK_BYTES) != 0 ||
        olen == 0 || olen > CUSTOS_NOTE_NAME_MAX || memchr(s + LEDGER_ST_ORIGIN, 0, olen) != NULL)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: state file fails its check");
    if (ledger_get32(s + LEDGER_ST_VERSION) != LEDGER_STATE_VERSION)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: unsupported state version %u",
                              (unsigned)ledger_get32(s + LEDGER_ST_VERSION));
    return CUSTOS_OK;
}

/* ---------------------------------------------------- derived staging */

static void on_merged(void *ctx, unsigned level, uint64_t index, const uint8_t hash[CUSTOS_HASH_BYTES])
{
    struct custos_ledger *l = ctx;

    (void)level;
    (void)index;
    /* post-order: the leaf, then each subtree it completes, bottom up */
    memcpy(l->tree_stage[l->tree_staged++], hash, CUSTOS_HASH_BYTES);
}

/* Extend the compact range and stage tree slots and index offsets for the
   records of one batch whose records start at log offset rec_base. */
static void stage_batch(struct custos_ledger *l, const uint8_t *recs, uint32_t count,
                        const uint8_t (*leaf)[CUSTOS_HASH_BYTES], uint64_t rec_base)
{
    uint32_t i, off = 0;

    l->tree_staged = 0;
    for (i = 0; i < count; i++) {
        ledger_put64(l->idx_stage + 8 * (size_t)i, rec_base + off);
        off += LEDGER_REC_OVERHEAD + ledger_get32(recs + off);
        custos_merkle_range_append(&l->range, leaf[i], on_merged, l);
    }
}

static enum custos_err flush_stage(struct custos_ledger *l, uint32_t count)
{
    if (pwrite_full(l, l->treefd, l->tree_stage, l->tree_staged * CUSTOS_HASH_BYTES,
                    l->tree_end * CUSTOS_HASH_BYTES) != 0)
        return io_err("writing the tree file");
    if (pwrite_full(l, l->idxfd, l->idx_stage, (size_t)count * 8, l->idx_end * 8) != 0)
        return io_err("writing the index file");
    l->tree_end += l->tree_staged;
    l->idx_end += count;
    return CUSTOS_OK;
}

/* ------------------------------------------------------------- threads */

static void set_failed(struct custos_ledger *l, const char *msg) /* under mu */
{
    if (!l->failed) {
        l->failed = 1;
        snprintf(l->fail_msg, sizeof(l->fail_msg), "%s", msg);
    }
    l->cp_stop = 1;
    pthread_cond_broadcast(&l->done);
    pthread_cond_broadcast(&l->q[0].done);
    pthread_cond_broadcast(&l->q[1].done);
    pthread_cond_broadcast(&l->space);
    pthread_cond_broadcast(&l->work);
    pthread_cond_signal(&l->cpwork);
}

static enum custos_err unavailable(struct custos_ledger *l) /* under mu */
{
    return custos_err_set(CUSTOS_ERR_UNAVAILABLE, "ledger unavailable: %s",
                          l->failed ? l->fail_msg : "closing");
}

/* Hand the durable size to the checkpointer when due.  Under mu. */
static void maybe_handoff(struct custos_ledger *l, int final)
{
    uint64_t now = now_ms(l);
    int timer = l->durable > l->handed_size && now - l->last_cp_ms >= l->interval_ms;
    int req = l->cp_req && l->durable >= l->cp_req_target;
    int fin = final && l->durable > l->handed_size;

    if (!timer && !req && !fin)
        return;
    if (req)
        l->cp_req = 0;
    if (l->handed && l->durable <= l->handed_size)
        return; /* already signed or in flight */
    l->cp_pending = 1;
    l->cp_pend_size = l->durable;
    l->cp_pend_log = l->log_end;
    custos_merkle_range_root(&l->range, l->cp_pend_root);
    l->handed = 1;
    l->handed_size = l->durable;
    l->last_cp_ms = now;
    pthread_cond_signal(&l->cpwork);
}

/*
 * Zeros after a small batch that reaches past the written space, in the same
 * fdatasync: the next batches overwrite them, and an fdatasync that neither
 * grows the file nor allocates blocks skips the inode write (in a VM, about
 * half of its CPU and latency).  Batches too big to gain are written alone.
 */
static void write_ahead(struct custos_ledger *l, uint64_t end, size_t len)
{
    static const uint8_t zeros[1u << 16];
    uint64_t off;

    if (end <= l->log_alloc)
        return;
    if (len > LEDGER_LOG_AHEAD_BATCH_MAX) {
        l->log_alloc = end;
        return;
    }
    /* best effort: a disk too full for the zeros still takes the batch */
    for (off = 0; off < LEDGER_LOG_AHEAD; off += sizeof(zeros))
        if (pwrite_full(l, l->logfd, zeros, sizeof(zeros), end + off) != 0)
            break;
    l->log_alloc = end + off;
}

static enum custos_err write_batch(struct custos_ledger *l, struct qbuf *b)
{
    uint64_t at = l->log_end;
    size_t len = LEDGER_BATCH_HDR + (size_t)b->used;
    enum custos_err e;

    ledger_batch_header(b->data, b->count, b->used, b->first);
    stage_batch(l, b->data + LEDGER_BATCH_HDR, b->count, (const uint8_t(*)[CUSTOS_HASH_BYTES])b->leaf,
                at + LEDGER_BATCH_HDR);
    if (pwrite_full(l, l->logfd, b->data, len, at) != 0)
        return io_err("writing the entries log");
    write_ahead(l, at + len, len);
    if (datasync(l, l->logfd) != 0)
        return io_err("syncing the entries log");
    l->log_end = at + len;
    e = flush_stage(l, b->count);
    return e;
}

static void timed_wait_ms(pthread_cond_t *c, pthread_mutex_t *m, uint64_t ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(c, m, &ts);
}

/* Report progress to the notify hook, outside the lock.  Under mu. */
static void call_notify(struct custos_ledger *l, int failed)
{
    void (*fn)(void *, uint64_t, int) = l->notify;
    void *ctx = l->notify_ctx;
    uint64_t d = l->durable;

    if (!fn)
        return;
    l->notifying = 1;
    pthread_mutex_unlock(&l->mu);
    fn(ctx, d, failed);
    pthread_mutex_lock(&l->mu);
    l->notifying = 0;
    pthread_cond_broadcast(&l->done);
}

static void *writer_main(void *arg)
{
    struct custos_ledger *l = arg;

    pthread_mutex_lock(&l->mu);
    for (;;) {
        if (l->failed) {
            /* failed elsewhere (the checkpointer; set_failed woke the blocked waiters): entries
               still queued will never be durable, and the front end must hear it too */
            call_notify(l, 1);
            break;
        }
        if (l->fill->count > 0 && l->spare != NULL) {
            struct qbuf *b = l->fill;
            enum custos_err e;
            uint64_t now = mono_ns();

            if (!l->stop && l->batch_prev >= LINGER_PREV_MIN && b->count < LINGER_COUNT &&
                b->used + LEDGER_REC_OVERHEAD + CUSTOS_LEDGER_ENTRY_MAX <= LEDGER_BATCH_BYTES_MAX &&
                now < l->batch_start_ns + LINGER_US * 1000u) {
                struct timespec ts;
                uint64_t until = l->batch_start_ns + LINGER_US * 1000u;

                atomic_store(&l->lingering, 1); /* before reading expected: see custos_ledger_expect */
                if (atomic_load(&l->expected) > 0) {
                    ts.tv_sec = (time_t)(until / 1000000000u);
                    ts.tv_nsec = (long)(until % 1000000000u);
                    pthread_cond_timedwait(&l->work, &l->mu, &ts);
                    atomic_store(&l->lingering, 0);
                    continue;
                }
                atomic_store(&l->lingering, 0);
            }
            l->batch_start_ns = now;
            l->batch_prev = b->count;
            l->fill = l->spare;
            l->spare = NULL;
            pthread_cond_broadcast(&l->space);
            pthread_mutex_unlock(&l->mu);
            e = write_batch(l, b);
            pthread_mutex_lock(&l->mu);
            if (e != CUSTOS_OK) {
                set_failed(l, custos_err_msg(e));
                call_notify(l, 1);
                break;
            }
            l->durable = b->first + b->count;
            atomic_store(&l->durable_pub, l->durable);
            b->used = 0;
            b->count = 0;
            l->spare = b;
            /* wake exactly the waiters of this batch: one wake-up each, none wasted */
            pthread_cond_broadcast(&b->done);
            pthread_cond_broadcast(&l->done);
            maybe_handoff(l, 0);
            call_notify(l, 0);
            continue;
        }
        if (l->stop) {
            maybe_handoff(l, 1);
            break;
        }
        maybe_handoff(l, 0);
        if (l->durable > l->handed_size) {
            uint64_t now = now_ms(l), left = WAIT_SLICE_MS;

            if (now - l->last_cp_ms < l->interval_ms && l->interval_ms - (now - l->last_cp_ms) < left)
                left = l->interval_ms - (now - l->last_cp_ms);
            timed_wait_ms(&l->work, &l->mu, left ? left : 1);
        } else {
            pthread_cond_wait(&l->work, &l->mu);
        }
    }
    l->cp_stop = 1;
    pthread_cond_signal(&l->cpwork);
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Sign and store a checkpoint at `size` (root given), then advance the derived marker. */
static enum custos_err do_checkpoint(struct custos_ledger *l, uint64_t size, const uint8_t root[CUSTOS_HASH_BYTES],
                                     uint64_t log_off, char *note, size_t *note_len)
{
    struct custos_checkpoint cp;
    char body[CUSTOS_NOTE_NAME_MAX + 128];
    uint8_t rec[CP_RECORD_MAX];
    size_t blen = 0, nlen = 0;
    enum custos_err e;

    /* The derived files cover `size` (the writer wrote them before handing
       off): make them durable first so the marker never runs ahead. */
    if (datasync(l, l->treefd) != 0)
        return io_err("syncing the tree file");
    if (datasync(l, l->idxfd) != 0)
        return io_err("syncing the index file");

    memset(&cp, 0, sizeof(cp));
    memcpy(cp.origin, l->origin, sizeof(cp.origin));
    cp.size = size;
    memcpy(cp.root, root, CUSTOS_HASH_BYTES);
    e = custos_checkpoint_format(body, sizeof(body), &blen, &cp);
    if (e != CUSTOS_OK)
        return e;
    e = custos_note_sign(note, CUSTOS_NOTE_MAX + 1, &nlen, body, blen, l->origin, l->sk);
    if (e != CUSTOS_OK)
        return e;

    ledger_put32(rec, LEDGER_CPREC_MAGIC);
    ledger_put32(rec + 4, (uint32_t)nlen);
    ledger_put64(rec + 8, size);
    memcpy(rec + LEDGER_CPREC_HDR, note, nlen);
    ledger_check8(rec + LEDGER_CPREC_HDR + nlen, rec, LEDGER_CPREC_HDR + nlen);
    if (pwrite_full(l, l->cpfd, rec, LEDGER_CPREC_HDR + nlen + LEDGER_CHECK_BYTES, l->cp_end) != 0)
        return io_err("writing the checkpoints file");
    if (datasync(l, l->cpfd) != 0)
        return io_err("syncing the checkpoints file");
    l->cp_last = l->cp_end;
    l->cp_end += LEDGER_CPREC_HDR + nlen + LEDGER_CHECK_BYTES;
    l->st_derived = size;
    l->st_derived_log = log_off;
    *note_len = nlen;
    return state_write(l);
}

static void *checkpointer_main(void *arg)
{
    struct custos_ledger *l = arg;
    char *note = malloc(CUSTOS_NOTE_MAX + 1);

    pthread_mutex_lock(&l->mu);
    if (note == NULL)
        set_failed(l, "out of memory in the checkpointer");
    for (;;) {
        while (!l->cp_pending && !l->cp_stop)
            pthread_cond_wait(&l->cpwork, &l->mu);
        if (l->cp_pending && !l->failed) {
            uint64_t size = l->cp_pend_size, log_off = l->cp_pend_log;
            uint8_t root[CUSTOS_HASH_BYTES];
            size_t nlen = 0;
            enum custos_err e;

            memcpy(root, l->cp_pend_root, CUSTOS_HASH_BYTES);
            l->cp_pending = 0;
            pthread_mutex_unlock(&l->mu);
            e = do_checkpoint(l, size, root, log_off, note, &nlen);
            pthread_mutex_lock(&l->mu);
            if (e != CUSTOS_OK) {
                set_failed(l, custos_err_msg(e));
                break;
            }
            memcpy(l->cp_note, note, nlen + 1);
            l->cp_len = nlen;
            l->cp_size = size;
            l->have_cp = 1;
            pthread_cond_broadcast(&l->done);
            continue;
        }
        if (l->cp_stop)
            break;
    }
    pthread_mutex_unlock(&l->mu);
    free(note);
    return NULL;
}

/* ---------------------------------------------------------------- open */

static enum custos_err open_file(struct custos_ledger *l, const char *name, int *fd)
{
    int derived = strcmp(name, LEDGER_F_TREE) == 0 || strcmp(name, LEDGER_F_INDEX) == 0;

    /* a rebuild recomputes the derived files: one that was lost is made anew */
    if (l->rebuild && derived)
        *fd = openat(l->dirfd, name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    else
        *fd = openat(l->dirfd, name, (l->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (*fd < 0) {
        if (errno == ENOENT)
            return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: %s file is missing", name);
        return io_err(name);
    }
    return CUSTOS_OK;
}

static enum custos_err create_file(struct custos_ledger *l, const char *name, const void *hdr, size_t hlen)
{
    enum custos_err e = CUSTOS_OK;
    int fd = openat(l->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (fd < 0)
        return io_err(name);
    if (hlen > 0 && pwrite_full(l, fd, hdr, hlen, 0) != 0)
        e = io_err(name);
    else if (fullsync(l, fd) != 0)
        e = io_err(name);
    close(fd);
    return e;
}

/* A file that must be absent or hold no more than its header for a fresh ledger. */
static int file_has_data(int dirfd, const char *name, uint64_t hdr)
{
    struct stat st;

    if (fstatat(dirfd, name, &st, 0) != 0)
        return 0;
    return (uint64_t)st.st_size > hdr;
}

static enum custos_err create_ledger(struct custos_ledger *l)
{
    enum custos_err e;

    if (file_has_data(l->dirfd, LEDGER_F_ENTRIES, LEDGER_LOG_HDR) ||
        file_has_data(l->dirfd, LEDGER_F_CHECKPOINTS, LEDGER_CP_HDR))
        return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: state file is missing but the ledger holds data");
    if ((e = create_file(l, LEDGER_F_ENTRIES, LEDGER_LOG_MAGIC, LEDGER_LOG_HDR)) != CUSTOS_OK ||
        (e = create_file(l, LEDGER_F_TREE, NULL, 0)) != CUSTOS_OK ||
        (e = create_file(l, LEDGER_F_INDEX, NULL, 0)) != CUSTOS_OK ||
        (e = create_file(l, LEDGER_F_CHECKPOINTS, LEDGER_CP_MAGIC, LEDGER_CP_HDR)) != CUSTOS_OK)
        return e;
    l->st_derived = 0;
    l->st_derived_log = LEDGER_LOG_HDR;
    l->cp_end = LEDGER_CP_HDR;
    l->cp_last = 0;
    return state_write(l);
}

static enum custos_err check_file_header(int fd, const char *magic, size_t len, const char *name)
{
    uint8_t h[16];
    int r = pread_full(fd, h, len, 0);

    if (r < 0)
        return io_err(name);
    if (r > 0 || memcmp(h, magic, len) != 0)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: %s file header is damaged", name);
    return CUSTOS_OK;
}

/* Latest checkpoint at open: the record at state's cp_last, then any fsynced
   later ones past cp_end.  Sets *trunc_at (0: none) for a torn tail. */
static enum custos_err load_checkpoints(struct custos_ledger *l, uint64_t *trunc_at, uint64_t *cp_eof)
{
    uint64_t eof, off, size = 0, rlen = 0;
    size_t nlen = 0;
    char *note = l->cp_note;
    enum custos_err e;
    int r;

    *trunc_at = 0;
    if (file_size(l->cpfd, &eof) != 0)
        return io_err("checkpoints");
    *cp_eof = eof;
    if ((e = check_file_header(l->cpfd, LEDGER_CP_MAGIC, LEDGER_CP_HDR, LEDGER_F_CHECKPOINTS)) != CUSTOS_OK)
        return e;
    if (l->cp_end < LEDGER_CP_HDR || l->cp_end > eof || (l->cp_last != 0 && l->cp_last >= l->cp_end))
        return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: checkpoints file is shorter than its durable marker");
    if (l->cp_last != 0) {
        r = cp_record_read(l->cpfd, l->cp_last, l->cp_end, note, &nlen, &size, &rlen);
        if (r < 0)
            return io_err("reading the checkpoints file");
        if (r > 0 || l->cp_last + rlen != l->cp_end)
            return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: latest checkpoint record is damaged");
        l->have_cp = 1;
        l->cp_len = nlen;
        l->cp_size = size;
    }
    for (off = l->cp_end; off < eof; off += rlen) {
        char tmp[CUSTOS_NOTE_MAX + 1];

        r = cp_record_read(l->cpfd, off, eof, tmp, &nlen, &size, &rlen);
        if (r < 0)
            return io_err("reading the checkpoints file");
        if (r > 0) {
            if (l->read_only)
                break;
            r = cp_valid_after(l->cpfd, off, eof, tmp);
            if (r < 0)
                return io_err("reading the checkpoints file");
            if (r > 0)
                return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: damaged checkpoint record at offset %llu",
                                      (unsigned long long)off);
            *trunc_at = off;
            break;
        }
        memcpy(l->cp_note, tmp, nlen + 1);
        l->cp_len = nlen;
        l->cp_size = size;
        l->have_cp = 1;
        l->cp_last = off;
        l->cp_end = off + rlen;
    }
    return CUSTOS_OK;
}

/*
 * Scan the log from the derived marker, extend tree/index (writable) or
 * compare with them (read-only).  Sets l->durable, l->log_end; for a torn
 * tail *torn_at and the end of its data *torn_end (else both 0).  Zeros
 * after the last batch are space written ahead, not a torn tail.
 */
static enum custos_err scan_log(struct custos_ledger *l, uint64_t *torn_at, uint64_t *torn_end, uint64_t *rebuilt)
{
    uint8_t *buf = l->q[0].data, *scratch = l->q[1].data, *cmp = NULL;
    uint8_t (*leaf)[CUSTOS_HASH_BYTES] = l->q[0].leaf;
    uint64_t eof, off = l->st_derived_log, index = l->st_derived;
    enum custos_err e = CUSTOS_OK;
    int r;

    *torn_at = *torn_end = 0;
    *rebuilt = 0;
    if (file_size(l->logfd, &eof) != 0)
        return io_err("entries");
    if (l->read_only && (cmp = malloc((size_t)TREE_STAGE_SLOTS * CUSTOS_HASH_BYTES)) == NULL)
        return custos_err_set(CUSTOS_ERR_NOMEM, "ledger: out of memory");
    while (off < eof) {
        uint32_t count = 0, bytes = 0, bad = 0;
        enum hdr_kind kind = HDR_GARBAGE;
        const char *why = NULL;
        int good = 0;

        if (off + LEDGER_BATCH_HDR <= eof) {
            r = pread_full(l->logfd, buf, LEDGER_BATCH_HDR, off);
            if (r < 0) {
                e = io_err("reading the entries log");
                goto done;
            }
            kind = r == 0 ? batch_header_parse(buf, index, &count, &bytes) : HDR_GARBAGE;
        }
        if (kind == HDR_OK && off + LEDGER_BATCH_HDR + bytes <= eof) {
            r = pread_full(l->logfd, buf + LEDGER_BATCH_HDR, bytes, off + LEDGER_BATCH_HDR);
            if (r < 0) {
                e = io_err("reading the entries log");
                goto done;
            }
            good = r == 0 && batch_records_parse(buf + LEDGER_BATCH_HDR, bytes, count, leaf, &bad, &why) == 0;
        }
        if (!good) {
            uint64_t dend;

            if (l->read_only)
                break; /* a writer may be mid-batch: serve what is complete */
            r = data_end(l->logfd, off, eof, scratch, LEDGER_BATCH_HDR + (size_t)LEDGER_BATCH_BYTES_MAX, &dend);
            if (r != 0) {
                e = r < 0 ? io_err("reading the entries log")
                          : custos_err_set(CUSTOS_ERR_CORRUPT,
                                           "ledger: the entries log ends in more zero bytes than its writer leaves "
                                           "(from offset %llu, entry %llu)",
                                           (unsigned long long)off, (unsigned long long)index);
                goto done;
            }
            if (dend == off)
                break; /* zeros written ahead: the log ends here */
            r = batch_is_torn(l->logfd, off, dend, kind, bytes, scratch);
            if (r < 0) {
                e = io_err("reading the entries log");
                goto done;
            }
            if (r == 0) {
                e = custos_err_set(CUSTOS_ERR_CORRUPT,
                                   "ledger: damaged batch at offset %llu (entry %llu) with data after it",
                                   (unsigned long long)off, (unsigned long long)index);
                goto done;
            }
            *torn_at = off;
            *torn_end = dend;
            break;
        }
        stage_batch(l, buf + LEDGER_BATCH_HDR, count, (const uint8_t(*)[CUSTOS_HASH_BYTES])leaf,
                    off + LEDGER_BATCH_HDR);
        if (l->read_only) {
            /* Serve only what the derived files already hold, and hold correctly. */
            size_t tb = l->tree_staged * CUSTOS_HASH_BYTES;

            r = pread_full(l->treefd, cmp, tb, l->tree_end * CUSTOS_HASH_BYTES);
            if (r != 0 || memcmp(cmp, l->tree_stage, tb) != 0)
                break;
            r = pread_full(l->idxfd, cmp, (size_t)count * 8, l->idx_end * 8);
            if (r != 0 || memcmp(cmp, l->idx_stage, (size_t)count * 8) != 0)
                break;
            l->tree_end += l->tree_staged;
            l->idx_end += count;
        } else {
            if ((e = flush_stage(l, count)) != CUSTOS_OK)
                goto done;
            *rebuilt += count;
        }
        index += count;
        off += LEDGER_BATCH_HDR + bytes;
        if (index <= l->mark_target) {
            l->mark_d = index;
            l->mark_dl = off;
        }
        l->durable = index;
        atomic_store(&l->durable_pub, index);
        l->log_end = off;
    }
done:
    free(cmp);
    return e;
}

/*
 * The compact range at the derived marker D is read from `tree` and must be
 * vouched for: by a signed checkpoint of size >= D, whose root open checks
 * (the rebuilt nodes past D are folded from the peaks at D), or by the log.
 * Recovery never moves the marker past the latest checkpoint, but a state
 * written by older versions may have: then start again from the latest
 * checkpoint's size (its batch found through `index` and checked), or from
 * the start of the log when no checkpoint exists, and rebuild from the log.
 */
static enum custos_err rewind_marker(struct custos_ledger *l)
{
    uint8_t b8[8], hdr[LEDGER_BATCH_HDR];
    uint64_t to = l->have_cp ? l->cp_size : 0, off;
    uint32_t count, bytes;
    int r;

    if (l->st_derived <= to)
        return CUSTOS_OK;
    if (to == 0) {
        l->st_derived = 0;
        l->st_derived_log = LEDGER_LOG_HDR;
        return CUSTOS_OK;
    }
    r = pread_full(l->idxfd, b8, 8, to * 8);
    if (r < 0)
        return io_err("reading the index file");
    off = r == 0 ? ledger_get64(b8) : 0;
    if (off < LEDGER_LOG_HDR + LEDGER_BATCH_HDR || off > l->st_derived_log)
        goto bad;
    if ((r = pread_full(l->logfd, hdr, sizeof(hdr), off - LEDGER_BATCH_HDR)) < 0)
        return io_err("reading the entries log");
    if (r > 0 || batch_header_parse(hdr, to, &count, &bytes) != HDR_OK)
        goto bad;
    l->st_derived = to;
    l->st_derived_log = off - LEDGER_BATCH_HDR;
    return CUSTOS_OK;
bad:
    return custos_err_set(CUSTOS_ERR_CORRUPT,
                          "ledger: no batch starts at entry %llu (the latest checkpoint) where the index "
                          "puts it: damaged derived files or log (custos ledger verify tells which)",
                          (unsigned long long)to);
}

/*
 * The record just below the derived marker D, read in O(1): index[D-1] names
 * its offset; it must end exactly at DL (the marker's log offset), pass its
 * check, and hash to the leaf stored in `tree`.  The size of `entries` alone
 * proves nothing (it includes the zeros written ahead), so without this an
 * older copy of `entries`, or its last batches zeroed in place, would open as
 * "space ahead" and the writer would sign over entries that are gone.
 */
static enum custos_err check_marker_record(struct custos_ledger *l)
{
    uint8_t b8[8], leaf[CUSTOS_HASH_BYTES], stored[CUSTOS_HASH_BYTES];
    uint8_t *entry = l->q[1].data; /* scratch at open: holds CUSTOS_LEDGER_ENTRY_MAX */
    uint64_t d = l->st_derived, dl = l->st_derived_log, off;
    uint32_t len;
    enum custos_err e;
    int r;

    if (d == 0) {
        if (dl != LEDGER_LOG_HDR)
            return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: state file holds inconsistent markers");
        return CUSTOS_OK;
    }
    r = pread_full(l->idxfd, b8, 8, (d - 1) * 8);
    if (r < 0)
        return io_err("reading the index file");
    off = r == 0 ? ledger_get64(b8) : 0;
    if (off < LEDGER_LOG_HDR + LEDGER_BATCH_HDR || off > dl || dl - off < LEDGER_REC_OVERHEAD)
        goto bad;
    if ((r = pread_full(l->logfd, b8, 4, off)) < 0)
        return io_err("reading the entries log");
    len = r == 0 ? ledger_get32(b8) : UINT32_MAX;
    if (len > CUSTOS_LEDGER_ENTRY_MAX || off + LEDGER_REC_OVERHEAD + len != dl)
        goto bad;
    if ((r = pread_full(l->logfd, entry, (size_t)len + LEDGER_CHECK_BYTES, off + 4)) < 0)
        return io_err("reading the entries log");
    if (r > 0)
        goto bad;
    custos_merkle_leaf_hash(leaf, entry, len);
    if (memcmp(leaf, entry + len, LEDGER_CHECK_BYTES) != 0)
        goto bad;
    if ((e = read_slot(l->treefd, ledger_tree_pos(0, d - 1), stored)) != CUSTOS_OK)
        return e;
    if (sodium_memcmp(leaf, stored, CUSTOS_HASH_BYTES) != 0)
        goto bad;
    return CUSTOS_OK;
bad:
    return custos_err_set(CUSTOS_ERR_CORRUPT,
                          "ledger: entry %llu, the last below the durable marker, is missing or differs in the "
                          "entries log (an older or damaged copy of entries, or damaged derived files: "
                          "custos ledger verify tells which)",
                          (unsigned long long)(d - 1));
}

static enum custos_err check_latest_checkpoint(struct custos_ledger *l)
{
    struct custos_checkpoint cp;
    struct prover *p = NULL;
    uint8_t root[CUSTOS_HASH_BYTES];
    size_t tlen = 0;
    enum custos_err e;

    if (!l->have_cp)
        return CUSTOS_OK;
    if (custos_note_open(l->cp_note, l->cp_len, &l->self, &tlen) != CUSTOS_OK ||
        custos_checkpoint_parse(&cp, l->cp_note, tlen) != CUSTOS_OK || strcmp(cp.origin, l->origin) != 0 ||
        cp.size != l->cp_size)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: latest checkpoint does not verify");
    if (cp.size > l->durable)
        return custos_err_set(CUSTOS_ERR_CORRUPT,
                              "ledger: latest checkpoint covers %llu entries but the log holds %llu",
                              (unsigned long long)cp.size, (unsigned long long)l->durable);
    if (cp.size == 0) {
        custos_merkle_empty_root(root);
    } else {
        p = malloc(sizeof(*p));
        if (p == NULL)
            return custos_err_set(CUSTOS_ERR_NOMEM, "ledger: out of memory");
        e = prover_init(p, l->treefd, cp.size);
        if (e == CUSTOS_OK)
            custos_merkle_range_root(&p->peaks, root);
        free(p);
        if (e != CUSTOS_OK)
            return e;
    }
    if (sodium_memcmp(root, cp.root, CUSTOS_HASH_BYTES) != 0)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: latest checkpoint root differs from the log");
    return CUSTOS_OK;
}

static enum custos_err recover(struct custos_ledger *l, struct custos_ledger_recovery *rec)
{
    uint64_t log_eof, tree_len, idx_len, torn_at = 0, torn_end = 0, cp_trunc = 0, cp_eof = 0, rebuilt = 0;
    uint64_t cp_end0 = l->cp_end, d0 = l->st_derived;
    enum custos_err e;
    int rewound;

    if ((e = check_file_header(l->logfd, LEDGER_LOG_MAGIC, LEDGER_LOG_HDR, LEDGER_F_ENTRIES)) != CUSTOS_OK)
        return e;
    if (file_size(l->logfd, &log_eof) != 0 || file_size(l->treefd, &tree_len) != 0 ||
        file_size(l->idxfd, &idx_len) != 0)
        return io_err("stat");
    if (l->st_derived_log < LEDGER_LOG_HDR || l->st_derived_log > log_eof)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: entries log is shorter than its durable marker");
    if (tree_len < ledger_tree_nodes(l->st_derived) * CUSTOS_HASH_BYTES || idx_len < l->st_derived * 8)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: derived files are shorter than their durable marker");
    if ((e = load_checkpoints(l, &cp_trunc, &cp_eof)) != CUSTOS_OK)
        return e;
    if ((e = rewind_marker(l)) != CUSTOS_OK)
        return e;
    rewound = l->st_derived != d0;
    if ((e = check_marker_record(l)) != CUSTOS_OK)
        return e;
    l->mark_target = l->have_cp ? l->cp_size : 0;
    l->mark_d = l->st_derived;
    l->mark_dl = l->st_derived_log;

    l->tree_end = ledger_tree_nodes(l->st_derived);
    l->idx_end = l->st_derived;
    if ((e = read_peaks(l->treefd, l->st_derived, &l->range)) != CUSTOS_OK)
        return e;
    l->durable = l->st_derived;
    atomic_store(&l->durable_pub, l->durable);
    l->log_end = l->st_derived_log;
    /* Past the marker the derived files may hold anything: recompute, over it in place, and only
       then cut what is left past the new end.  A live verify (which cannot tell this open, or a
       rebuild, from the running writer) may be reading them: they never get shorter than the
       marker it read, nor lose a slot that was right. */
    if ((e = scan_log(l, &torn_at, &torn_end, &rebuilt)) != CUSTOS_OK)
        return e;
    if (!l->read_only && (truncate_to(l, l->treefd, l->tree_end * CUSTOS_HASH_BYTES) != 0 ||
                          truncate_to(l, l->idxfd, l->idx_end * 8) != 0))
        return io_err("truncating derived files");
    if ((e = check_latest_checkpoint(l)) != CUSTOS_OK)
        return e;

    if (rec) {
        rec->size = l->durable;
        rec->rebuilt = rebuilt;
        rec->truncated_bytes = (torn_end - torn_at) + (cp_trunc ? cp_eof - cp_trunc : 0);
    }
    if (l->read_only)
        return CUSTOS_OK;
    if (torn_at && (truncate_to(l, l->logfd, torn_at) != 0 || datasync(l, l->logfd) != 0))
        return io_err("truncating the torn tail of the entries log");
    l->log_alloc = torn_at ? torn_at : log_eof;
    if (cp_trunc && (truncate_to(l, l->cpfd, cp_trunc) != 0 || datasync(l, l->cpfd) != 0))
        return io_err("truncating the torn tail of the checkpoints file");
    if (rebuilt > 0 || torn_at || cp_trunc || l->cp_end != cp_end0 || rewound) {
        /* Batches read back past the marker may never have reached the disk (a process killed
           between a batch's write and its fdatasync leaves it in the page cache): make them
           durable before the marker, and any checkpoint, covers them. */
        if (rebuilt > 0 && datasync(l, l->logfd) != 0)
            return io_err("syncing the entries log");
        if (datasync(l, l->treefd) != 0 || datasync(l, l->idxfd) != 0)
            return io_err("syncing derived files");
        /* The marker stays at a signed checkpoint (the writer signs one at the durable size
           within checkpoint_interval_ms): the peaks the next open reads from `tree` at the
           marker are then vouched for by that checkpoint's root, and whatever lies past it is
           recomputed from the log again. */
        l->st_derived = l->mark_d;
        l->st_derived_log = l->mark_dl;
        if ((e = state_write(l)) != CUSTOS_OK)
            return e;
    }
    return CUSTOS_OK;
}

static enum custos_err key_load(struct custos_ledger *l, const uint8_t *sk)
{
    uint8_t *seed_pk = NULL, *seed_sk = NULL;
    enum custos_err e = CUSTOS_OK;

    l->sk = sodium_malloc(crypto_sign_ed25519_SECRETKEYBYTES);
    seed_sk = sodium_malloc(crypto_sign_ed25519_SECRETKEYBYTES + crypto_sign_ed25519_PUBLICKEYBYTES);
    if (l->sk == NULL || seed_sk == NULL) {
        e = custos_err_set(CUSTOS_ERR_NOMEM, "ledger: cannot allocate key memory");
        goto done;
    }
    seed_pk = seed_sk + crypto_sign_ed25519_SECRETKEYBYTES;
    memcpy(l->sk, sk, crypto_sign_ed25519_SECRETKEYBYTES);
    /* The 64-byte form is seed || pk: re-derive to be sure the halves agree. */
    if (crypto_sign_ed25519_seed_keypair(seed_pk, seed_sk, l->sk) != 0 ||
        sodium_memcmp(seed_pk, l->sk + 32, 32) != 0) {
        e = custos_err_set(CUSTOS_ERR_INVALID, "ledger: signing key is inconsistent");
        goto done;
    }
    memcpy(l->pk, seed_pk, 32);
    sodium_mprotect_readonly(l->sk);
done:
    if (seed_sk) {
        sodium_memzero(seed_sk, crypto_sign_ed25519_SECRETKEYBYTES + crypto_sign_ed25519_PUBLICKEYBYTES);
        sodium_free(seed_sk);
    }
    return e;
}

static enum custos_err alloc_buffers(struct custos_ledger *l)
{
    int i;

    for (i = 0; i < 2; i++) {
        l->q[i].data = malloc(LEDGER_BATCH_HDR + (size_t)LEDGER_BATCH_BYTES_MAX);
        l->q[i].leaf = malloc((size_t)LEDGER_BATCH_COUNT_MAX * CUSTOS_HASH_BYTES);
        if (!l->q[i].data || !l->q[i].leaf)
            return custos_err_set(CUSTOS_ERR_NOMEM, "ledger: out of memory");
    }
    l->tree_stage = malloc((size_t)TREE_STAGE_SLOTS * CUSTOS_HASH_BYTES);
    l->idx_stage = malloc((size_t)LEDGER_BATCH_COUNT_MAX * 8);
    if (!l->tree_stage || !l->idx_stage)
        return custos_err_set(CUSTOS_ERR_NOMEM, "ledger: out of memory");
    l->fill = &l->q[0];
    l->spare = &l->q[1];
    return CUSTOS_OK;
}

static enum custos_err sync_init(struct custos_ledger *l)
{
    pthread_condattr_t ca;

    if (pthread_condattr_init(&ca) != 0)
        return custos_err_set(CUSTOS_ERR_NOMEM, "ledger: cannot create a condition variable");
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work, &ca);
    pthread_cond_init(&l->space, NULL);
    pthread_cond_init(&l->done, NULL);
    pthread_cond_init(&l->q[0].done, NULL);
    pthread_cond_init(&l->q[1].done, NULL);
    pthread_cond_init(&l->cpwork, NULL);
    pthread_condattr_destroy(&ca);
    l->sync_init = 1;
    return CUSTOS_OK;
}

static void release(struct custos_ledger *l)
{
    int i;

    if (l->dirfd >= 0)
        close(l->dirfd);
    if (l->logfd >= 0)
        close(l->logfd);
    if (l->treefd >= 0)
        close(l->treefd);
    if (l->idxfd >= 0)
        close(l->idxfd);
    if (l->cpfd >= 0)
        close(l->cpfd);
    if (l->lockfd >= 0) {
        flock(l->lockfd, LOCK_UN);
        close(l->lockfd);
    }
    if (l->sk) {
        sodium_mprotect_readwrite(l->sk);
        sodium_memzero(l->sk, crypto_sign_ed25519_SECRETKEYBYTES);
        sodium_free(l->sk);
    }
    for (i = 0; i < 2; i++) {
        free(l->q[i].data);
        free(l->q[i].leaf);
    }
    free(l->tree_stage);
    free(l->idx_stage);
    if (l->sync_init) {
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->work);
        pthread_cond_destroy(&l->space);
        pthread_cond_destroy(&l->done);
        pthread_cond_destroy(&l->q[0].done);
        pthread_cond_destroy(&l->q[1].done);
        pthread_cond_destroy(&l->cpwork);
    }
    free(l);
}

/*
 * Open, or with `rebuild` (a verifier for the ledger's key) recompute `tree` and `index` from the
 * whole log under the exclusive lock, without the signing key and without starting threads:
 * *out is then a ledger that only custos_ledger_free may be called on.
 */
static enum custos_err open_ledger(const struct custos_ledger_config *cfg, struct custos_ledger **out,
                                   struct custos_ledger_recovery *rec, const struct custos_note_verifier *rebuild)
{
    struct custos_ledger *l = NULL;
    uint8_t st[LEDGER_STATE_BYTES];
    char vkey[CUSTOS_NOTE_NAME_MAX + 128];
    enum custos_err e;
    uint32_t olen;

    *out = NULL;
    if (rec)
        memset(rec, 0, sizeof(*rec));
    if (sodium_init() < 0)
        return custos_err_set(CUSTOS_ERR_CRYPTO, "ledger: libsodium failed to initialise");
    if (cfg == NULL || cfg->dir == NULL || cfg->dir[0] == '\0')
        return custos_err_set(CUSTOS_ERR_INVALID, "ledger: no directory");
    if (!cfg->read_only && !rebuild && (cfg->sign_sk == NULL || cfg->origin == NULL))
        return custos_err_set(CUSTOS_ERR_INVALID, "ledger: a writable ledger needs an origin and a signing key");
    if (cfg->origin && strlen(cfg->origin) > CUSTOS_NOTE_NAME_MAX)
        return custos_err_set(CUSTOS_ERR_INVALID, "ledger: origin too long");

    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return custos_err_set(CUSTOS_ERR_NOMEM, "ledger: out of memory");
    l->dirfd = l->lockfd = l->logfd = l->treefd = l->idxfd = l->cpfd = -1;
    l->read_only = cfg->read_only != 0 && !rebuild;
    l->rebuild = rebuild != NULL;
    l->interval_ms = cfg->checkpoint_interval_ms ? cfg->checkpoint_interval_ms : 1000;
    l->now_fn = cfg->now_ms;
    l->now_ctx = cfg->now_ctx;
    l->fault = cfg->fault;
    l->fault_ctx = cfg->fault_ctx;
    if ((e = sync_init(l)) != CUSTOS_OK || (e = alloc_buffers(l)) != CUSTOS_OK)
        goto fail;

    if (!l->read_only && !l->rebuild && mkdir(cfg->dir, 0700) != 0 && errno != EEXIST) {
        e = io_err("creating the ledger directory");
        goto fail;
    }
    l->dirfd = open(cfg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (l->dirfd < 0) {
        e = errno == ENOENT ? custos_err_set(CUSTOS_ERR_NOTFOUND, "ledger: directory does not exist")
                            : io_err("opening the ledger directory");
        goto fail;
    }
    if (!l->read_only) {
        uint64_t deadline = mono_ns() + LOCK_WAIT_NS;
        int locked;

        l->lockfd = openat(l->dirfd, LEDGER_F_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (l->lockfd < 0) {
            e = io_err("opening the lock file");
            goto fail;
        }
        /* a verify probes the lock (LOCK_SH, released at once): tries for LOCK_WAIT_NS tell its
           instant, even a descheduled one, from another writer, which holds the lock for as long
           as it runs */
        while ((locked = flock(l->lockfd, LOCK_EX | LOCK_NB)) != 0 &&
               (errno == EINTR || (errno == EWOULDBLOCK && mono_ns() < deadline)))
            if (errno == EWOULDBLOCK)
                nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
        if (locked != 0) {
            e = errno == EWOULDBLOCK ? custos_err_set(CUSTOS_ERR_LOCKED, "ledger: held by another process")
                                     : io_err("locking the ledger");
            close(l->lockfd);
            l->lockfd = -1;
            goto fail;
        }
        /* A new generation in the lock file before anything else is written: a verify that
           ran meanwhile without seeing a writer learns from it that one came (and maybe went,
           even killed before it signed anything: state alone would not say). */
        {
            uint8_t gen[LEDGER_LOCK_GEN];

            randombytes_buf(gen, sizeof(gen));
            if (pwrite(l->lockfd, gen, sizeof(gen), 0) != (ssize_t)sizeof(gen)) {
                e = io_err("writing the lock file");
                goto fail;
            }
        }
    }
    if (!l->read_only && !l->rebuild) {
        if ((e = key_load(l, cfg->sign_sk)) != CUSTOS_OK)
            goto fail;
        if (custos_note_vkey_format(vkey, sizeof(vkey), cfg->origin, l->pk) != CUSTOS_OK) {
            e = custos_err_set(CUSTOS_ERR_INVALID, "ledger: origin is not a valid key name");
            goto fail;
        }
        snprintf(l->origin, sizeof(l->origin), "%s", cfg->origin);
    }

    e = state_read(l->dirfd, st);
    if (e == CUSTOS_ERR_NOTFOUND && !l->read_only && !l->rebuild) {
        e = create_ledger(l);
        if (e == CUSTOS_OK)
            e = state_read(l->dirfd, st);
    }
    if (e != CUSTOS_OK)
        goto fail;
    olen = ledger_get32(st + LEDGER_ST_ORIGIN_LEN);
    if (l->read_only || l->rebuild) {
        memcpy(l->origin, st + LEDGER_ST_ORIGIN, olen);
        l->origin[olen] = '\0';
        memcpy(l->pk, st + LEDGER_ST_PUBKEY, 32);
        if (cfg->origin && strcmp(cfg->origin, l->origin) != 0) {
            e = custos_err_set(CUSTOS_ERR_INVALID, "ledger: origin does not match the ledger's");
            goto fail;
        }
        if (rebuild && (strcmp(rebuild->name, l->origin) != 0 || sodium_memcmp(rebuild->pubkey, l->pk, 32) != 0)) {
            e = custos_err_set(CUSTOS_ERR_INVALID, "ledger: the verifier key is not this ledger's key");
            goto fail;
        }
    } else if (olen != strlen(l->origin) || memcmp(st + LEDGER_ST_ORIGIN, l->origin, olen) != 0) {
        e = custos_err_set(CUSTOS_ERR_INVALID, "ledger: origin does not match the ledger's");
        goto fail;
    } else if (sodium_memcmp(st + LEDGER_ST_PUBKEY, l->pk, 32) != 0) {
        e = custos_err_set(CUSTOS_ERR_INVALID, "ledger: signing key does not match the ledger's key");
        goto fail;
    }
    l->st_derived = ledger_get64(st + LEDGER_ST_DERIVED);
    l->st_derived_log = ledger_get64(st + LEDGER_ST_DERIVED_LOG);
    l->cp_end = ledger_get64(st + LEDGER_ST_CP_BYTES);
    l->cp_last = ledger_get64(st + LEDGER_ST_CP_LAST);
    if (l->st_derived > ((uint64_t)1 << 56)) {
        e = custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: state file holds an impossible size");
        goto fail;
    }
    if (l->rebuild) { /* trust nothing derived: recompute from the first entry */
        l->st_derived = 0;
        l->st_derived_log = LEDGER_LOG_HDR;
    }
    snprintf(l->self.name, sizeof(l->self.name), "%s", l->origin);
    memcpy(l->self.pubkey, l->pk, 32);
    custos_note_key_id(l->self.key_id, l->origin, l->pk);

    if ((e = open_file(l, LEDGER_F_ENTRIES, &l->logfd)) != CUSTOS_OK ||
        (e = open_file(l, LEDGER_F_TREE, &l->treefd)) != CUSTOS_OK ||
        (e = open_file(l, LEDGER_F_INDEX, &l->idxfd)) != CUSTOS_OK ||
        (e = open_file(l, LEDGER_F_CHECKPOINTS, &l->cpfd)) != CUSTOS_OK)
        goto fail;
    if ((e = recover(l, rec)) != CUSTOS_OK)
        goto fail;

    l->next_index = l->durable;
    l->handed = l->have_cp;
    l->handed_size = l->have_cp ? l->cp_size : 0;
    if (!l->read_only && !l->rebuild) {
        l->last_cp_ms = now_ms(l);
        if (custos_thread_create(&l->cpthread, checkpointer_main, l) != 0) {
            e = custos_err_set(CUSTOS_ERR_NOMEM, "ledger: cannot start the checkpointer");
            goto fail;
        }
        l->cp_started = 1;
        if (custos_thread_create(&l->writer, writer_main, l) != 0) {
            e = custos_err_set(CUSTOS_ERR_NOMEM, "ledger: cannot start the writer");
            goto fail;
        }
        l->writer_started = 1;
    }
    *out = l;
    return CUSTOS_OK;
fail:
    if (l->cp_started) {
        pthread_mutex_lock(&l->mu);
        l->cp_stop = 1;
        pthread_cond_signal(&l->cpwork);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->cpthread, NULL);
    }
    release(l);
    return e;
}

enum custos_err custos_ledger_open(const struct custos_ledger_config *cfg, struct custos_ledger **out,
                                   struct custos_ledger_recovery *rec)
{
    return open_ledger(cfg, out, rec, NULL);
}

enum custos_err custos_ledger_rebuild(const char *dir, const struct custos_note_verifier *v,
                                      struct custos_ledger_recovery *rec)
{
    struct custos_ledger_config cfg;
    struct custos_ledger *l = NULL;
    enum custos_err e;

    if (v == NULL)
        return custos_err_set(CUSTOS_ERR_INVALID, "ledger rebuild: no verifier");
    memset(&cfg, 0, sizeof(cfg));
    cfg.dir = dir;
    e = open_ledger(&cfg, &l, rec, v);
    custos_ledger_free(l);
    return e;
}

void custos_ledger_free(struct custos_ledger *l)
{
    if (l == NULL)
        return;
    if (l->writer_started) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->work);
        pthread_cond_broadcast(&l->space);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->writer, NULL);
    }
    if (l->cp_started)
        pthread_join(l->cpthread, NULL);
    release(l);
}

/* ------------------------------------------------------------- appends */

static enum custos_err enqueue(struct custos_ledger *l, const void *entry, size_t len,
                               const uint8_t leaf_in[CUSTOS_HASH_BYTES], uint64_t *index)
{
    uint8_t leaf[CUSTOS_HASH_BYTES];
    size_t need = LEDGER_REC_OVERHEAD + len;
    struct qbuf *b;
    uint8_t *p;
    uint64_t idx;

    if (l == NULL || (entry == NULL && len > 0))
        return custos_err_set(CUSTOS_ERR_INVALID, "ledger: no entry");
    if (len > CUSTOS_LEDGER_ENTRY_MAX)
        return custos_err_set(CUSTOS_ERR_TOOBIG, "ledger: entry of %zu bytes exceeds %d", len,
                              CUSTOS_LEDGER_ENTRY_MAX);
    if (l->read_only)
        return custos_err_set(CUSTOS_ERR_INVALID, "ledger: opened read-only");
    /* Hash outside the lock: with many producers on many cores this is the
       parallel part of an append. */
    if (leaf_in)
        memcpy(leaf, leaf_in, CUSTOS_HASH_BYTES);
    else
        custos_merkle_leaf_hash(leaf, entry, len);

    pthread_mutex_lock(&l->mu);
    for (;;) {
        if (l->failed || l->stop) {
            enum custos_err e = unavailable(l);

            pthread_mutex_unlock(&l->mu);
            return e;
        }
        b = l->fill;
        if (b->used + need <= LEDGER_BATCH_BYTES_MAX && b->count < LEDGER_BATCH_COUNT_MAX)
            break;
        if (atomic_load(&l->lingering))
            pthread_cond_signal(&l->work); /* full: write it now */
        pthread_cond_wait(&l->space, &l->mu);
    }
    if (b->count == 0)
        b->first = l->next_index;
    p = b->data + LEDGER_BATCH_HDR + b->used;
    ledger_put32(p, (uint32_t)len);
    if (len > 0)
        memcpy(p + 4, entry, len);
    memcpy(p + 4 + len, leaf, LEDGER_CHECK_BYTES);
    memcpy(b->leaf[b->count], leaf, CUSTOS_HASH_BYTES);
    b->used += (uint32_t)need;
    b->count++;
    idx = l->next_index++;
    if (b->count == 1 || (atomic_load(&l->lingering) && b->count == LINGER_COUNT))
        pthread_cond_signal(&l->work);
    pthread_mutex_unlock(&l->mu);
    if (index)
        *index = idx;
    return CUSTOS_OK;
}

enum custos_err custos_ledger_enqueue(struct custos_ledger *l, const void *entry, size_t len, uint64_t *index)
{
    return enqueue(l, entry, len, NULL, index);
}

enum custos_err custos_ledger_enqueue_hashed(struct custos_ledger *l, const void *entry, size_t len,
                                             const uint8_t leaf[CUSTOS_HASH_BYTES], uint64_t *index)
{
    uint8_t check[CUSTOS_HASH_BYTES];

    /* the caller's hash is trusted only if it is the entry's: recomputed in checking builds */
#ifndef NDEBUG
    custos_merkle_leaf_hash(check, entry, len);
    if (leaf == NULL || sodium_memcmp(check, leaf, CUSTOS_HASH_BYTES) != 0)
        return custos_err_set(CUSTOS_ERR_INTERNAL, "ledger: leaf hash does not match its entry");
#else
    (void)check;
#endif
    return enqueue(l, entry, len, leaf, index);
}

static _Thread_local int expecting; /* this thread announced an entry (custos_ledger_expect) */

enum custos_err custos_ledger_wait(struct custos_ledger *l, uint64_t index)
{
    enum custos_err e = CUSTOS_OK;
    int reannounce = 0;

    if (l == NULL)
        return custos_err_set(CUSTOS_ERR_INVALID, "ledger: no ledger");
    /* A producer that announced entries and now waits sends nothing more meanwhile: the
       writer must not linger for it. */
    if (expecting > 0) {
        reannounce = expecting;
        custos_ledger_expect(l, -reannounce);
    }
    pthread_mutex_lock(&l->mu);
    if (index >= l->next_index) {
        e = custos_err_set(CUSTOS_ERR_INVALID, "ledger: entry %llu was never queued", (unsigned long long)index);
        goto done;
    }
    while (l->durable <= index && !l->failed) {
        /* the entry is in the buffer being filled, or else in the one being written */
        struct qbuf *b = l->fill;

        if (!(b->count && index >= b->first && index < b->first + b->count))
            b = b == &l->q[0] ? &l->q[1] : &l->q[0];
        pthread_cond_wait(&b->done, &l->mu);
    }
    /* An entry made durable before a failure stays acknowledged. */
    if (l->durable <= index)
        e = unavailable(l);
done:
    pthread_mutex_unlock(&l->mu);
    if (reannounce)
        custos_ledger_expect(l, reannounce);
    return e;
}

void custos_ledger_expect(struct custos_ledger *l, int delta)
{
    if (l == NULL)
        return;
    expecting += delta;
    /* The last expected entry is in (or will not come): a lingering writer goes now.  The
       writer sets lingering before it reads expected, and this reads lingering after changing
       expected, so one of the two always sees the other. */
    if (atomic_fetch_add(&l->expected, delta) + delta == 0 && atomic_load(&l->lingering)) {
        pthread_mutex_lock(&l->mu);
        pthread_cond_signal(&l->work);
        pthread_mutex_unlock(&l->mu);
    }
}

void custos_ledger_on_durable(struct custos_ledger *l, void (*fn)(void *ctx, uint64_t durable, int failed),
                              void *ctx)
{
    pthread_mutex_lock(&l->mu);
    while (l->notifying) /* a call in flight keeps the old ctx alive until it returns */
        pthread_cond_wait(&l->done, &l->mu);
    l->notify = fn;
    l->notify_ctx = ctx;
    pthread_mutex_unlock(&l->mu);
}

enum custos_err custos_ledger_append(struct custos_ledger *l, const void *entry, size_t len, uint64_t *index)
{
    uint64_t idx = 0;
    enum custos_err e = custos_ledger_enqueue(l, entry, len, &idx);

    if (e != CUSTOS_OK)
        return e;
    e = custos_ledger_wait(l, idx);
    if (e == CUSTOS_OK && index)
        *index = idx;
    return e;
}

enum custos_err custos_ledger_checkpoint_now(struct custos_ledger *l)
{
    enum custos_err e = CUSTOS_OK;
    uint64_t target;

    if (l == NULL || l->read_only)
        return custos_err_set(CUSTOS_ERR_INVALID, "ledger: opened read-only");
    pthread_mutex_lock(&l->mu);
    target = l->next_index;
    if (!l->failed && !(l->have_cp && l->cp_size >= target)) {
        l->cp_req = 1;
        if (target > l->cp_req_target)
            l->cp_req_target = target;
        pthread_cond_signal(&l->work);
        while (!l->failed && !(l->have_cp && l->cp_size >= target))
            pthread_cond_wait(&l->done, &l->mu);
    }
    if (!(l->have_cp && l->cp_size >= target))
        e = unavailable(l);
    pthread_mutex_unlock(&l->mu);
    return e;
}

uint64_t custos_ledger_size(struct custos_ledger *l)
{
    return (uint64_t)atomic_load(&l->durable_pub); /* the request path asks this often: no lock */
}

/* --------------------------------------------------------------- reads */

enum custos_err custos_ledger_read(struct custos_ledger *l, uint64_t index, void *buf, size_t cap, size_t *len)
{
    uint8_t off8[8], len4[4], chk[LEDGER_CHECK_BYTES], leaf[CUSTOS_HASH_BYTES], stored[CUSTOS_HASH_BYTES];
    uint64_t off, n = custos_ledger_size(l);
    uint32_t elen;
    enum custos_err e;
    int r;

    if (index >= n)
        return custos_err_set(CUSTOS_ERR_NOTFOUND, "ledger: no entry %llu", (unsigned long long)index);
    r = pread_full(l->idxfd, off8, 8, index * 8);
    if (r != 0)
        return r < 0 ? io_err("reading the index") : custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: index is short");
    off = ledger_get64(off8);
    if (off < LEDGER_LOG_HDR + LEDGER_BATCH_HDR)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: index entry %llu is out of range",
                              (unsigned long long)index);
    r = pread_full(l->logfd, len4, 4, off);
    if (r != 0)
        return r < 0 ? io_err("reading the entries log")
                     : custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: entry %llu is beyond the log",
                                      (unsigned long long)index);
    elen = ledger_get32(len4);
    if (elen > CUSTOS_LEDGER_ENTRY_MAX)
        return custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: entry %llu has a bad length", (unsigned long long)index);
    *len = elen;
    if (cap < elen)
        return custos_err_set(CUSTOS_ERR_TOOBIG, "ledger: entry %llu needs %u bytes", (unsigned long long)index,
                              (unsigned)elen);
    if ((elen > 0 && (r = pread_full(l->logfd, buf, elen, off + 4)) != 0) ||
        (r = pread_full(l->logfd, chk, sizeof(chk), off + 4 + elen)) != 0) {
        e = r < 0 ? io_err("reading the entries log")
                  : custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: entry %llu is cut short", (unsigned long long)index);
        goto fail;
    }
    custos_merkle_leaf_hash(leaf, buf, elen);
    if ((e = read_slot(l->treefd, ledger_tree_pos(0, index), stored)) != CUSTOS_OK)
        goto fail;
    if (memcmp(leaf, chk, LEDGER_CHECK_BYTES) != 0 || sodium_memcmp(leaf, stored, CUSTOS_HASH_BYTES) != 0) {
        e = custos_err_set(CUSTOS_ERR_CORRUPT, "ledger: entry %llu fails its check", (unsigned long long)index);
        goto fail;
    }
    return CUSTOS_OK;
fail:
    if (elen > 0)
        memset(buf, 0, elen);
    return e;
}

enum custos_err custos_ledger_root(struct custos_ledger *l, uint64_t size, uint8_t root[CUSTOS_HASH_BYTES])
{
    struct custos_merkle_range r;
    enum custos_err e;

    if (size > custos_ledger_size(l))
        return custos_err_set(CUSTOS_ERR_INVALID, "ledger: size %llu exceeds the ledger", (unsigned long long)size);
    e = read_peaks(l->treefd, size, &r);
    if (e != CUSTOS_OK)
        return e;
    custos_merkle_range_root(&r, root);
    return CUSTOS_OK;
}

enum custos_err custos_ledger_prove_inclusion(struct custos_ledger *l, uint64_t index, uint64_t size,
                                              uint8_t proof[][CUSTOS_HASH_BYTES], size_t *n)
{
    struct prover p;
    uint64_t lo = 0, hi = size, sib_lo[CUSTOS_PROOF_MAX], sib_hi[CUSTOS_PROOF_MAX];
    size_t k = 0, i;
    enum custos_err e;

    *n = 0;
    if (index >= size || size > custos_ledger_size(l))
        return custos_err_set(CUSTOS_ERR_INVALID, "ledger: no leaf %llu in a tree of %llu",
                              (unsigned long long)index, (unsigned long long)size);
    /* RFC 6962 PATH(m, D[lo:hi]), top-down; emitted bottom-up. */
    while (hi - lo > 1) {
        uint64_t s = split_point(hi - lo);

        if (index < lo + s) {
            sib_lo[k] = lo + s;
            sib_hi[k] = hi;
            hi = lo + s;
        } else {
            sib_lo[k] = lo;
            sib_hi[k] = lo + s;
            lo += s;
        }
        k++;
    }
    if ((e = prover_init(&p, l->treefd, size)) != CUSTOS_OK)
        return e;
    for (i = 0; i < k; i++)
        if ((e = prover_hash(&p, sib_lo[k - 1 - i], sib_hi[k - 1 - i], proof[i])) != CUSTOS_OK)
            return e;
    *n = k;
    return CUSTOS_OK;
}

enum custos_err custos_ledger_prove_consistency(struct custos_ledger *l, uint64_t from, uint64_t to,
                                                uint8_t proof[][CUSTOS_HASH_BYTES], size_t *n)
{
    struct prover p;
    uint64_t lo = 0, hi = to, st_lo[CUSTOS_PROOF_MAX], st_hi[CUSTOS_PROOF_MAX];
    size_t k = 0, i, out = 0;
    int whole = 1, first = 0;
    enum custos_err e;

    *n = 0;
    if (from == 0 || from > to || to > custos_ledger_size(l))
        return custos_err_set(CUSTOS_ERR_INVALID, "ledger: no consistency proof from %llu to %llu",
                              (unsigned long long)from, (unsigned long long)to);
    /* RFC 6962 SUBPROOF(m, D[lo:hi], b) unrolled: the pushes are emitted in reverse. */
    for (;;) {
        uint64_t w = hi - lo, s;

        if (from - lo == w) {
            first = !whole; /* the node itself is part of the proof unless it is the old root */
            break;
        }
        s = split_point(w);
        if (from - lo <= s) {
            st_lo[k] = lo + s;
            st_hi[k] = hi;
            hi = lo + s;
        } else {
            st_lo[k] = lo;
            st_hi[k] = lo + s;
            lo += s;
            whole = 0;
        }
        k++;
    }
    if ((e = prover_init(&p, l->treefd, to)) != CUSTOS_OK)
        return e;
    if (first && (e = prover_hash(&p, lo, hi, proof[out++])) != CUSTOS_OK)
        return e;
    for (i = 0; i < k; i++)
        if ((e = prover_hash(&p, st_lo[k - 1 - i], st_hi[k - 1 - i], proof[out++])) != CUSTOS_OK)
            return e;
    *n = out;
    return CUSTOS_OK;
}

enum custos_err custos_ledger_checkpoint(struct custos_ledger *l, char *out, size_t cap, size_t *len)
{
    enum custos_err e = CUSTOS_OK;

    pthread_mutex_lock(&l->mu);
    if (!l->have_cp)
        e = custos_err_set(CUSTOS_ERR_NOTFOUND, "ledger: no checkpoint signed yet");
    else if (cap < l->cp_len + 1)
        e = custos_err_set(CUSTOS_ERR_TOOBIG, "ledger: checkpoint needs %zu bytes", l->cp_len + 1);
    else {
        memcpy(out, l->cp_note, l->cp_len + 1);
        *len = l->cp_len;
    }
    pthread_mutex_unlock(&l->mu);
    return e;
}

enum custos_err custos_ledger_sign(struct custos_ledger *l, const void *msg, size_t len, uint8_t sig[64])
{
    size_t olen = strlen(l->origin);

    if (l->sk == NULL)
        return custos_err_set(CUSTOS_ERR_INVALID, "ledger: no signing key (read-only)");
    /* Never sign something that reads as a checkpoint body under our name:
       that would let a caller mint a checkpoint the writer did not make. */
    if (len > olen && memcmp(msg, l->origin, olen) == 0 && ((const char *)msg)[olen] == '\n')
        return custos_err_set(CUSTOS_ERR_INVALID, "ledger: refusing to sign a message that starts like a checkpoint");
    if (crypto_sign_ed25519_detached(sig, NULL, msg, len, l->sk) != 0)
        return custos_err_set(CUSTOS_ERR_CRYPTO, "ledger: signing failed");
    return CUSTOS_OK;
}

void custos_ledger_pubkey(struct custos_ledger *l, uint8_t pk[32])
{
    memcpy(pk, l->pk, 32);
}

const char *custos_ledger_origin(struct custos_ledger *l)
{
    return l->origin;
}

/* -------------------------------------------------------------- verify */

/* Forward-mostly buffered reader of a derived file (tree slots, index offsets). */
struct fwd {
    int fd;
    uint64_t len;
    uint8_t *buf;
    uint64_t at; /* file offset of buf[0] */
    size_t have;
};

#define FWD_BUF (256u * 1024u)

/* n bytes at off into out: 1, or 0 when the file is absent or too short.  The read-ahead keeps
   what a short read got: a live verify's length may be older than the file (a starting writer
   cuts and rewrites past its marker), and only the bytes asked for must be there. */
static int fwd_get(struct fwd *f, uint64_t off, void *out, size_t n)
{
    if (f->fd < 0 || off + n > f->len)
        return 0;
    if (off < f->at || off + n > f->at + f->have) {
        uint64_t want = f->len - off < FWD_BUF ? f->len - off : FWD_BUF;
        size_t got = 0;

        while (got < want) {
            ssize_t r = pread(f->fd, f->buf + got, (size_t)want - got, (off_t)(off + got));

            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        f->at = off;
        f->have = got;
        if (got < n)
            return 0;
    }
    memcpy(out, f->buf + (off - f->at), n);
    return 1;
}

static int fwd_slot(struct fwd *f, uint64_t slot, uint8_t out[CUSTOS_HASH_BYTES])
{
    return fwd_get(f, slot * CUSTOS_HASH_BYTES, out, CUSTOS_HASH_BYTES);
}

struct vstate {
    struct custos_ledger_verify_report *rep;
    int cpfd;
    uint64_t cp_eof, cp_off;
    const struct custos_note_verifier *v;
    int have_next;          /* next checkpoint parsed and waiting for its size */
    struct custos_checkpoint next;
    uint64_t last_size;     /* size of the previous checkpoint (sizes never decrease) */
    uint64_t vouched;       /* entries covered by a verified checkpoint */
    uint64_t hint;          /* first leaf that differs from the stored tree, or UINT64_MAX */
    struct fwd *tree, *idx; /* the derived files */
    uint64_t tree_limit;    /* tree slots below the durable marker: must equal the recomputed nodes */
    uint64_t idx_limit;     /* index entries below the durable marker: must equal the record offsets */
    uint64_t cp_durable;    /* checkpoints-file length state says was fsync'ed (LEDGER_CP_HDR without state) */
    uint64_t cp_torn;       /* offset of a torn last checkpoint record, or 0 */
    char note[CUSTOS_NOTE_MAX + 1];
};

static void bad(struct vstate *vs, uint64_t index, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void bad(struct vstate *vs, uint64_t index, const char *fmt, ...)
{
    va_list ap;

    if (!vs->rep->intact)
        return;
    vs->rep->intact = 0;
    vs->rep->first_bad_index = index;
    va_start(ap, fmt);
    vsnprintf(vs->rep->what, sizeof(vs->rep->what), fmt, ap);
    va_end(ap);
}

static void derived_bad(struct vstate *vs, uint64_t slot, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void derived_bad(struct vstate *vs, uint64_t slot, const char *fmt, ...)
{
    va_list ap;

    if (!vs->rep->derived_intact)
        return;
    vs->rep->derived_intact = 0;
    vs->rep->derived_bad_slot = slot;
    va_start(ap, fmt);
    vsnprintf(vs->rep->derived_what, sizeof(vs->rep->derived_what), fmt, ap);
    va_end(ap);
}

/* Each node the compact range produces, in post-order (the tree file's order): the leaf for
   the hint, and every node below the durable marker compared with the stored one, since open
   and the proofs read them from there. */
static void verify_node(void *ctx, unsigned level, uint64_t index, const uint8_t hash[CUSTOS_HASH_BYTES])
{
    struct vstate *vs = ctx;
    uint64_t slot = ledger_tree_pos(level, index);
    uint8_t stored[CUSTOS_HASH_BYTES];
    int have = fwd_slot(vs->tree, slot, stored), same = have && memcmp(stored, hash, CUSTOS_HASH_BYTES) == 0;

    if (level == 0 && !same && vs->hint == UINT64_MAX)
        vs->hint = index;
    if (same || slot >= vs->tree_limit)
        return;
    if (!have)
        derived_bad(vs, slot, "derived tree is shorter than its durable marker (slot %llu missing)",
                    (unsigned long long)slot);
    else
        derived_bad(vs, slot, "derived tree damaged at slot %llu (level %u over entries %llu..%llu)",
                    (unsigned long long)slot, level, (unsigned long long)(index << level),
                    (unsigned long long)(((index + 1) << level) - 1));
}

/* Load the next checkpoint record into vs->next.  0 ok (or none left), -1 bad (reported), -2 i/o. */
static int next_checkpoint(struct vstate *vs)
{
    size_t nlen = 0, tlen = 0;
    uint64_t size = 0, rlen = 0;
    int r;

    vs->have_next = 0;
    if (vs->cp_off >= vs->cp_eof)
        return 0;
    r = cp_record_read(vs->cpfd, vs->cp_off, vs->cp_eof, vs->note, &nlen, &size, &rlen);
    if (r < 0)
        return -2;
    if (r > 0) {
        /* As for entries: the last record, past what state says was fsync'ed, with nothing
           valid after it, is the torn tail of a crash (open truncates it); else damage. */
        if (vs->cp_off >= vs->cp_durable) {
            r = cp_valid_after(vs->cpfd, vs->cp_off, vs->cp_eof, vs->note);
            if (r < 0)
                return -2;
            if (r == 0) {
                vs->cp_torn = vs->cp_off;
                return 0;
            }
        }
        bad(vs, vs->vouched, "checkpoint %llu: damaged record at offset %llu",
            (unsigned long long)vs->rep->checkpoints, (unsigned long long)vs->cp_off);
        return -1;
    }
    if (custos_note_open(vs->note, nlen, vs->v, &tlen) != CUSTOS_OK) {
        /* Say which: a line by this key that fails (an edited checkpoint), or no line by this
           key at all (a checkpoint by another key spliced in, or the vault's ledger key itself
           replaced since: every checkpoint then fails, starting with the first). */
        if (!custos_note_names_key(vs->note, nlen, vs->v))
            bad(vs, vs->vouched, "checkpoint %llu: not signed by this vault's ledger key %s+%02x%02x%02x%02x "
                "(signed by another key, or the ledger key was replaced)",
                (unsigned long long)vs->rep->checkpoints, vs->v->name, vs->v->key_id[0], vs->v->key_id[1],
                vs->v->key_id[2], vs->v->key_id[3]);
        else
            bad(vs, vs->vouched, "checkpoint %llu: signature does not verify", (unsigned long long)vs->rep->checkpoints);
        return -1;
    }
    if (custos_checkpoint_parse(&vs->next, vs->note, tlen) != CUSTOS_OK || vs->next.size != size) {
        bad(vs, vs->vouched, "checkpoint %llu: malformed body", (unsigned long long)vs->rep->checkpoints);
        return -1;
    }
    if (strcmp(vs->next.origin, vs->v->name) != 0) {
        bad(vs, vs->vouched, "checkpoint %llu: origin differs from the key name",
            (unsigned long long)vs->rep->checkpoints);
        return -1;
    }
    if (size < vs->last_size) {
        bad(vs, vs->vouched, "checkpoint %llu: size %llu is below the previous %llu",
            (unsigned long long)vs->rep->checkpoints, (unsigned long long)size, (unsigned long long)vs->last_size);
        return -1;
    }
    vs->cp_off += rlen;
    vs->have_next = 1;
    return 0;
}

/* Compare every checkpoint of the current size with the recomputed root. */
static int match_checkpoints(struct vstate *vs, const struct custos_merkle_range *range)
{
    uint8_t root[CUSTOS_HASH_BYTES];
    int r;

    while (vs->have_next && vs->next.size == range->size) {
        custos_merkle_range_root(range, root);
        if (sodium_memcmp(root, vs->next.root, CUSTOS_HASH_BYTES) != 0) {
            uint64_t at = vs->hint != UINT64_MAX && vs->hint >= vs->vouched ? vs->hint : vs->vouched;

            bad(vs, at, "checkpoint %llu (size %llu): root differs from the entries",
                (unsigned long long)vs->rep->checkpoints, (unsigned long long)vs->next.size);
            return -1;
        }
        vs->rep->checkpoints++;
        vs->vouched = vs->last_size = vs->next.size;
        r = next_checkpoint(vs);
        if (r != 0)
            return r;
    }
    return 0;
}

/* One pass of custos_ledger_verify: everything (live 0: no writer was there when it began) or
   the prefix the latest stored checkpoint vouches for (live 1). */
static enum custos_err verify_pass(const char *dir, const struct custos_note_verifier *v,
                                   struct custos_ledger_verify_report *rep, int live)
{
    struct vstate *vs = NULL;
    struct custos_merkle_range *range = NULL;
    struct fwd tree = {.fd = -1}, idx = {.fd = -1};
    uint8_t *buf = NULL, *scratch = NULL, (*leaf)[CUSTOS_HASH_BYTES] = NULL;
    uint8_t hdr[LEDGER_LOG_HDR], cph[LEDGER_CP_HDR], stored[CUSTOS_HASH_BYTES], st[LEDGER_STATE_BYTES];
    int have_state = 0;
    int dirfd = -1, logfd = -1, cpfd = -1, r;
    uint64_t eof, off = LEDGER_LOG_HDR;
    enum custos_err e = CUSTOS_OK;

    memset(rep, 0, sizeof(*rep));
    rep->intact = 1;
    rep->derived_intact = 1;
    if (sodium_init() < 0)
        return custos_err_set(CUSTOS_ERR_CRYPTO, "ledger: libsodium failed to initialise");
    if (dir == NULL || v == NULL)
        return custos_err_set(CUSTOS_ERR_INVALID, "ledger verify: missing directory or verifier");
    vs = calloc(1, sizeof(*vs));
    range = malloc(sizeof(*range));
    buf = malloc(LEDGER_BATCH_HDR + (size_t)LEDGER_BATCH_BYTES_MAX);
    scratch = malloc(LEDGER_BATCH_HDR + (size_t)LEDGER_BATCH_BYTES_MAX);
    leaf = malloc((size_t)LEDGER_BATCH_COUNT_MAX * CUSTOS_HASH_BYTES);
    tree.buf = malloc(FWD_BUF);
    idx.buf = malloc(FWD_BUF);
    if (!vs || !range || !buf || !scratch || !leaf || !tree.buf || !idx.buf) {
        e = custos_err_set(CUSTOS_ERR_NOMEM, "ledger verify: out of memory");
        goto done;
    }
    vs->rep = rep;
    dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        e = errno == ENOENT ? custos_err_set(CUSTOS_ERR_NOTFOUND, "ledger verify: no such directory")
                            : io_err("opening the ledger directory");
        goto done;
    }
    rep->live = live;
    logfd = openat(dirfd, LEDGER_F_ENTRIES, O_RDONLY | O_CLOEXEC);
    cpfd = openat(dirfd, LEDGER_F_CHECKPOINTS, O_RDONLY | O_CLOEXEC);
    if (logfd < 0 || cpfd < 0) {
        e = errno == ENOENT ? custos_err_set(CUSTOS_ERR_NOTFOUND, "ledger verify: no ledger in this directory")
                            : io_err("opening ledger files");
        goto done;
    }
    switch (state_read(dirfd, st)) {
    case CUSTOS_OK:
        have_state = 1;
        vs->idx_limit = ledger_get64(st + LEDGER_ST_DERIVED);
        if (vs->idx_limit > ((uint64_t)1 << 56))
            vs->idx_limit = (uint64_t)1 << 56; /* impossible; the log runs out first */
        vs->tree_limit = ledger_tree_nodes(vs->idx_limit);
        vs->cp_durable = ledger_get64(st + LEDGER_ST_CP_BYTES);
        break;
    case CUSTOS_ERR_NOTFOUND:
        if (live) { /* being created (its files' headers not yet written), or state removed */
            e = custos_err_set(CUSTOS_ERR_NOTFOUND, "ledger verify: a writer holds a ledger without a "
                                                    "state file (being created?); run it again");
            goto done;
        }
        break;
    default:
        derived_bad(vs, UINT64_MAX, "state file is damaged or unreadable (open refuses the ledger)");
        break;
    }
    /* The derived files are checked, never trusted: may be absent.  Measured after state, so
       that they reach its marker even while a writer runs. */
    tree.fd = openat(dirfd, LEDGER_F_TREE, O_RDONLY | O_CLOEXEC);
    if (tree.fd >= 0 && file_size(tree.fd, &tree.len) != 0)
        tree.len = 0;
    idx.fd = openat(dirfd, LEDGER_F_INDEX, O_RDONLY | O_CLOEXEC);
    if (idx.fd >= 0 && file_size(idx.fd, &idx.len) != 0)
        idx.len = 0;
    /* state, then the checkpoints, then the log: while a writer runs, each covers what the one
       read before it says (a checkpoint is stored after its entries are durable, state after it) */
    if (file_size(cpfd, &vs->cp_eof) != 0 || file_size(logfd, &eof) != 0) {
        e = io_err("stat");
        goto done;
    }

    vs->tree = &tree;
    vs->idx = &idx;
    if (!have_state)
        vs->cp_durable = LEDGER_CP_HDR;
    vs->rep = rep;
    vs->cpfd = cpfd;
    vs->v = v;
    vs->hint = UINT64_MAX;
    vs->cp_off = LEDGER_CP_HDR;
    custos_merkle_range_init(range);

    r = pread_full(cpfd, cph, sizeof(cph), 0);
    if (r < 0) {
        e = io_err("reading the checkpoints file");
        goto done;
    }
    if (r > 0 || memcmp(cph, LEDGER_CP_MAGIC, LEDGER_CP_HDR) != 0) {
        bad(vs, 0, "checkpoints file header is damaged");
        goto done;
    }
    r = pread_full(logfd, hdr, sizeof(hdr), 0);
    if (r < 0) {
        e = io_err("reading the entries log");
        goto done;
    }
    if (r > 0 || memcmp(hdr, LEDGER_LOG_MAGIC, LEDGER_LOG_HDR) != 0) {
        bad(vs, 0, "entries log header is damaged");
        goto done;
    }
    if ((r = next_checkpoint(vs)) == -2 || (r == 0 && (r = match_checkpoints(vs, range)) == -2)) {
        e = io_err("reading the checkpoints file");
        goto done;
    }
    if (r < 0)
        goto done;

    /* live: stop at the last checkpoint; what follows it may be half written */
    while (off < eof && !(live && !vs->have_next)) {
        uint32_t count = 0, bytes = 0, badrec = 0, i;
        enum hdr_kind kind = HDR_GARBAGE;
        const char *why = "batch header is damaged";
        int torn;

        if (off + LEDGER_BATCH_HDR <= eof) {
            if (pread_full(logfd, buf, LEDGER_BATCH_HDR, off) != 0) {
                e = io_err("reading the entries log");
                goto done;
            }
            kind = batch_header_parse(buf, range->size, &count, &bytes);
            if (kind == HDR_WRONG_INDEX)
                why = "batch header is out of sequence (entries deleted, moved or reordered)";
        } else {
            why = "batch header is cut short";
        }
        if (kind == HDR_OK) {
            if (off + LEDGER_BATCH_HDR + bytes > eof) {
                /* name the first record that is missing or cut */
                uint32_t avail = (uint32_t)(eof - off - LEDGER_BATCH_HDR);

                if (pread_full(logfd, buf + LEDGER_BATCH_HDR, avail, off + LEDGER_BATCH_HDR) != 0) {
                    e = io_err("reading the entries log");
                    goto done;
                }
                batch_records_parse(buf + LEDGER_BATCH_HDR, avail, count, leaf, &badrec, &why);
                why = "batch is cut short";
            } else if (pread_full(logfd, buf + LEDGER_BATCH_HDR, bytes, off + LEDGER_BATCH_HDR) != 0) {
                e = io_err("reading the entries log");
                goto done;
            } else if (batch_records_parse(buf + LEDGER_BATCH_HDR, bytes, count, leaf, &badrec, &why) == 0) {
                uint64_t rec_off = off + LEDGER_BATCH_HDR;

                for (i = 0; i < count; i++) {
                    uint64_t index = range->size;

                    if (index < vs->idx_limit && rep->derived_intact) {
                        uint8_t b8[8];

                        if (!fwd_get(&idx, index * 8, b8, 8))
                            derived_bad(vs, UINT64_MAX, "derived index is shorter than its durable marker "
                                        "(entry %llu missing)", (unsigned long long)index);
                        else if (ledger_get64(b8) != rec_off)
                            derived_bad(vs, UINT64_MAX, "derived index damaged at entry %llu",
                                        (unsigned long long)index);
                    }
                    rec_off += LEDGER_REC_OVERHEAD + ledger_get32(buf + (rec_off - off));
                    custos_merkle_range_append(range, leaf[i], verify_node, vs);
                    if ((r = match_checkpoints(vs, range)) == -2) {
                        e = io_err("reading the checkpoints file");
                        goto done;
                    }
                    if (r < 0)
                        goto done;
                    if (live && !vs->have_next)
                        break;
                }
                off += LEDGER_BATCH_HDR + bytes;
                continue;
            }
        }
        /* Damaged here.  Name the entry, and say whether it looks like the torn
           tail of a crash (then opening the ledger recovers) or damage.  When
           records before the break parse but differ from the stored tree,
           entries were removed or moved: name the first of those instead. */
        {
            uint64_t dend;

            r = data_end(logfd, off, eof, scratch, LEDGER_BATCH_HDR + (size_t)LEDGER_BATCH_BYTES_MAX, &dend);
            if (r < 0) {
                e = io_err("reading the entries log");
                goto done;
            }
            if (r > 0) {
                bad(vs, range->size, "entry %llu: the log ends in more zero bytes than its writer leaves",
                    (unsigned long long)range->size);
                rep->size = range->size;
                goto done;
            }
            if (dend == off)
                break; /* zeros written ahead: the log ends here */
            torn = batch_is_torn(logfd, off, dend, kind, bytes, scratch);
        }
        if (torn < 0) {
            e = io_err("reading the entries log");
            goto done;
        }
        {
            uint64_t brk = range->size + badrec, at = brk;

            for (i = 0; i < badrec; i++) {
                if (!fwd_slot(&tree, ledger_tree_pos(0, range->size + i), stored) ||
                    memcmp(stored, leaf[i], CUSTOS_HASH_BYTES) != 0) {
                    at = range->size + i;
                    break;
                }
            }
            if (vs->have_next && vs->next.size > at)
                bad(vs, at, "checkpoint %llu covers %llu entries; entry %llu: %s",
                    (unsigned long long)rep->checkpoints, (unsigned long long)vs->next.size,
                    (unsigned long long)brk, why);
            else if (torn)
                bad(vs, at, "torn tail at offset %llu (entry %llu: %s); opening the ledger truncates it",
                    (unsigned long long)off, (unsigned long long)brk, why);
            else
                bad(vs, at, "entry %llu: %s", (unsigned long long)brk, why);
            rep->size = at;
        }
        goto done;
    }
    rep->size = range->size;
    if (vs->have_next)
        bad(vs, range->size, "checkpoint %llu covers %llu entries but the log holds %llu",
            (unsigned long long)rep->checkpoints, (unsigned long long)vs->next.size,
            (unsigned long long)range->size);
    /* The markers in `state` are unkeyed, but they are what open goes by: files shorter than
       them were cut (with the checkpoints that covered the missing entries, or without). */
    if (have_state && range->size < vs->idx_limit)
        bad(vs, range->size, "the log holds %llu entries but state says %llu were durable (state is unkeyed "
            "evidence: entries cut, perhaps with the checkpoints that covered them)",
            (unsigned long long)range->size, (unsigned long long)vs->idx_limit);
    if (have_state && vs->cp_eof < vs->cp_durable)
        bad(vs, vs->vouched, "checkpoints file holds %llu bytes but state says %llu were durable (state is "
            "unkeyed evidence: checkpoints cut)",
            (unsigned long long)vs->cp_eof, (unsigned long long)vs->cp_durable);
    if (vs->cp_torn && !live) /* live: the record being written */
        bad(vs, vs->vouched, "torn checkpoint record at offset %llu; opening the ledger truncates it",
            (unsigned long long)vs->cp_torn);
done:
    if (rep->size == 0 && range)
        rep->size = range->size;
    if (e == CUSTOS_OK && vs && !have_state && rep->size > 0)
        derived_bad(vs, UINT64_MAX, "state file is missing (open refuses a ledger that holds entries without it)");
    if (tree.fd >= 0)
        close(tree.fd);
    if (idx.fd >= 0)
        close(idx.fd);
    if (cpfd >= 0)
        close(cpfd);
    if (logfd >= 0)
        close(logfd);
    if (dirfd >= 0)
        close(dirfd);
    free(tree.buf);
    free(idx.buf);
    free(leaf);
    free(scratch);
    free(buf);
    free(range);
    free(vs);
    return e;
}

/* 1 when a writer (a server, one starting, a rebuild) holds the ledger's lock, 0 when none does
   (or there is no lock file), -1 when it cannot be told.  Probed, never kept: a verify must not keep a server
   from starting. */
static int writer_holds(const char *dir)
{
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd, r = 0;

    if (dirfd < 0)
        return 0; /* the pass says what is wrong with the directory */
    fd = openat(dirfd, LEDGER_F_LOCK, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (flock(fd, LOCK_SH | LOCK_NB) == 0)
            flock(fd, LOCK_UN);
        else
            r = errno == EWOULDBLOCK ? 1 : -1;
        close(fd);
    } else if (errno != ENOENT)
        r = -1; /* unreadable: whether a writer runs is unknown */
    close(dirfd);
    return r;
}

/* The writers' generation in the lock file (zeros when there is none or it is short): every
   writer draws a new one as soon as it holds the lock, before it changes anything.  0, or -1
   when it cannot be read (then a writer's coming cannot be ruled out). */
static int lock_generation(const char *dir, uint8_t gen[LEDGER_LOCK_GEN])
{
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd = -1, r = 0;

    memset(gen, 0, LEDGER_LOCK_GEN);
    if (dirfd < 0)
        return 0; /* the pass says what is wrong with the directory */
    if ((fd = openat(dirfd, LEDGER_F_LOCK, O_RDONLY | O_CLOEXEC)) >= 0) {
        if ((r = pread_full(fd, gen, LEDGER_LOCK_GEN, 0)) != 0)
            memset(gen, 0, LEDGER_LOCK_GEN);
        r = r < 0 ? -1 : 0;
        close(fd);
    } else if (errno != ENOENT)
        r = -1;
    close(dirfd);
    return r;
}

enum custos_err custos_ledger_verify(const char *dir, const struct custos_note_verifier *v,
                                     struct custos_ledger_verify_report *rep)
{
    uint8_t g0[LEDGER_LOCK_GEN], g1[LEDGER_LOCK_GEN];
    enum custos_err e;

    if (!dir)
        return verify_pass(dir, v, rep, 0); /* refuses it */
    /* the generation before the probe: a writer that locks after the probe changes it */
    if (lock_generation(dir, g0) != 0 || writer_holds(dir) != 0)
        return verify_pass(dir, v, rep, 1); /* a writer, or no telling: live */
    /* No writer: check everything, without holding a lock.  A writer that starts meanwhile
       (recovering a torn tail, appending into the zeros ahead) may move what lies past the
       latest checkpoint under the pass; if one holds the lock now, or one came (and went: the
       generation changed), the pass is done again, live. */
    e = verify_pass(dir, v, rep, 0);
    if (lock_generation(dir, g1) == 0 && writer_holds(dir) == 0 && memcmp(g0, g1, sizeof(g0)) == 0)
        return e;
    return verify_pass(dir, v, rep, 1);
}

/*
 * ledger_int.h - the ledger's on-disk format, private to src/core/ledger.c
 * and to the tests that craft damaged files (tests/unit/test_ledger.c).
 *
 * docs/format.md is the prose version of this header; keep them in step.
 * All integers are little-endian.  Nothing here is exported from the core.
 */
#ifndef CUSTOS_LEDGER_INT_H
#define CUSTOS_LEDGER_INT_H

#include <stdint.h>
#include <string.h>

#include <sodium.h>

/* File names inside the ledger directory. */
#define LEDGER_F_LOCK "lock" /* flock()ed by the writer, which puts a fresh generation in it */
#define LEDGER_LOCK_GEN 16   /* bytes of that generation, at offset 0 */
#define LEDGER_F_ENTRIES "entries"
#define LEDGER_F_TREE "tree"
#define LEDGER_F_INDEX "index"
#define LEDGER_F_CHECKPOINTS "checkpoints"
#define LEDGER_F_STATE "state"
#define LEDGER_F_STATE_TMP "state.tmp"

/* entries: 16-byte file header, then batches. */
#define LEDGER_LOG_MAGIC "CSTS-LEDGER-LOG\x01" /* 15 chars + version byte 1 */
#define LEDGER_LOG_HDR 16
/* batch header: magic u32 | count u32 | bytes u32 | zero u32 | first_index u64 | check[8]
   check = SHA-256(header bytes 0..23)[:8]; `bytes` is the length of the records that follow. */
#define LEDGER_BATCH_MAGIC 0x48435442u /* "BTCH" */
#define LEDGER_BATCH_HDR 32
/* record: len u32 | entry[len] | check[8] = leaf hash (SHA-256(0x00 || entry))[:8] */
#define LEDGER_REC_OVERHEAD 12
#define LEDGER_CHECK_BYTES 8
/* A batch never holds more than this many record bytes or records: recovery
   relies on it (a torn, unsynced tail is at most one batch long). */
#define LEDGER_BATCH_BYTES_MAX (4u << 20)
#define LEDGER_BATCH_COUNT_MAX 65536u
/* The entries file may end in zero bytes after its last batch: space the writer
   fills ahead (an fdatasync that does not grow the file need not write the
   inode).  A batch header is never zero (its magic), so the first zero header
   ends the log.  A small batch that crosses the end of the written space is
   followed by this many zero bytes in the same write; the batch and its zeros
   stay within LEDGER_BATCH_BYTES_MAX, so what a crash can leave half written
   after the last durable batch is still at most that long. */
#define LEDGER_LOG_AHEAD (1u << 20)
#define LEDGER_LOG_AHEAD_BATCH_MAX (64u << 10) /* larger batches are written without zeros */
/* The most zeros the writer can leave after the last intact batch: the space ahead, then a
   maximal batch lost in a crash.  A file whose data ends in more zeros than this is damage. */
#define LEDGER_TAIL_ZEROS_MAX ((uint64_t)LEDGER_LOG_AHEAD + LEDGER_BATCH_HDR + LEDGER_BATCH_BYTES_MAX)

/* checkpoints: 16-byte file header, then records:
   magic u32 | len u32 | size u64 | note[len] | check[8] = SHA-256(header || note)[:8] */
#define LEDGER_CP_MAGIC "CSTS-LEDGER-CPS\x01"
#define LEDGER_CP_HDR 16
#define LEDGER_CPREC_MAGIC 0x54504b43u /* "CKPT" */
#define LEDGER_CPREC_HDR 16

/* state: a fixed 344-byte record replaced atomically (write tmp, fsync, rename, fsync dir). */
#define LEDGER_STATE_MAGIC "CSTSLST1"
#define LEDGER_STATE_VERSION 1u
#define LEDGER_STATE_BYTES 344
/* offsets inside the state record */
#define LEDGER_ST_VERSION 8      /* u32 */
#define LEDGER_ST_ORIGIN_LEN 12  /* u32 */
#define LEDGER_ST_ORIGIN 16      /* 256 bytes, zero padded */
#define LEDGER_ST_PUBKEY 272     /* 32 bytes */
#define LEDGER_ST_DERIVED 304    /* u64 entries covered by fsynced tree and index files (<= latest checkpoint) */
#define LEDGER_ST_DERIVED_LOG 312/* u64 entries-file offset just after entry DERIVED-1 */
#define LEDGER_ST_CP_BYTES 320   /* u64 checkpoints-file length when last fsynced */
#define LEDGER_ST_CP_LAST 328    /* u64 offset of the latest checkpoint record (0: none) */
#define LEDGER_ST_CHECK 336      /* SHA-256(bytes 0..335)[:8] */

/* tree: 32-byte node hashes in post-order (a Merkle mountain range): after n
   leaves the file holds exactly 2n - popcount(n) hashes. */
static inline uint64_t ledger_tree_nodes(uint64_t n)
{
    return 2 * n - (uint64_t)__builtin_popcountll(n);
}

/* Slot of the complete subtree at `level` covering leaves [i*2^level, (i+1)*2^level). */
static inline uint64_t ledger_tree_pos(unsigned level, uint64_t i)
{
    uint64_t m = ((i + 1) << level) - 1; /* leaves before the subtree's last leaf */
    return ledger_tree_nodes(m) + level;
}

static inline void ledger_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void ledger_put64(uint8_t *p, uint64_t v)
{
    ledger_put32(p, (uint32_t)v);
    ledger_put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t ledger_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t ledger_get64(const uint8_t *p)
{
    return (uint64_t)ledger_get32(p) | (uint64_t)ledger_get32(p + 4) << 32;
}

/* First 8 bytes of SHA-256(data): the framing check of batch headers, checkpoint records and state. */
static inline void ledger_check8(uint8_t out[8], const void *data, size_t len)
{
    uint8_t h[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(h, (const unsigned char *)data, len);
    memcpy(out, h, 8);
}

/* Fill a batch header (the check included). */
static inline void ledger_batch_header(uint8_t h[LEDGER_BATCH_HDR], uint32_t count, uint32_t bytes,
                                       uint64_t first_index)
{
    ledger_put32(h, LEDGER_BATCH_MAGIC);
    ledger_put32(h + 4, count);
    ledger_put32(h + 8, bytes);
    ledger_put32(h + 12, 0);
    ledger_put64(h + 16, first_index);
    ledger_check8(h + 24, h, 24);
}

#endif

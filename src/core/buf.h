/*
 * buf.h - growable byte buffer with a hard cap (after curl's dynbuf).
 *
 * Owns: its heap storage.  Every buffer has a cap fixed at init; growth past
 * it fails with CUSTOS_ERR_TOOBIG and leaves the contents unchanged.  The
 * contents are always NUL-terminated (not counted in len) so text can be
 * used as a C string.  custos_buf_release() wipes before freeing, so a
 * buffer may hold plaintext briefly.
 */
#ifndef CUSTOS_BUF_H
#define CUSTOS_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "custos/err.h"

struct custos_buf {
    uint8_t *p;
    size_t len;
    size_t cap;   /* allocated */
    size_t limit; /* hard cap on len */
};

void custos_buf_init(struct custos_buf *b, size_t limit);
void custos_buf_release(struct custos_buf *b); /* wipe and free; reusable after init */
void custos_buf_reset(struct custos_buf *b);   /* wipe contents, keep storage */
enum custos_err custos_buf_add(struct custos_buf *b, const void *p, size_t n);
enum custos_err custos_buf_adds(struct custos_buf *b, const char *s);
enum custos_err custos_buf_addc(struct custos_buf *b, char c);
enum custos_err custos_buf_printf(struct custos_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s as a JSON string literal (quotes included), escaping per RFC 8259. */
enum custos_err custos_buf_add_json_str(struct custos_buf *b, const char *s, size_t n);
/* Append v in decimal. */
enum custos_err custos_buf_add_u64(struct custos_buf *b, uint64_t v);
enum custos_err custos_buf_add_i64(struct custos_buf *b, int64_t v);
/* Copy at most n bytes of s (fewer at a NUL) into dst of cap bytes, truncating to cap - 1, and
   NUL-terminate; returns the length copied.  snprintf(dst, cap, "%.*s", n, s) without the format
   interpreter, for the per-field paths of the read path. */
size_t custos_strcopy(char *dst, size_t cap, const char *s, size_t n);
/* Decode one UTF-8 sequence at s[0..len); returns its length (0 when invalid) and the code
   point in *cp.  Rejects overlongs, surrogates, > U+10FFFF. */
size_t custos_utf8_decode(const unsigned char *s, size_t len, unsigned long *cp);
/* 1 when s[0..len) is valid UTF-8 (custos_utf8_decode's rules throughout), else 0. */
int custos_utf8_valid(const char *s, size_t len);
/* Strict standard base64 (RFC 4648 alphabet, padding required, nothing else) of at most cap
   bytes: 1 and *outlen on success, 0 otherwise.  libsodium 1.0.18's decoder alone would also
   take bytes >= 0x80 as alphabet characters: every outside base64 goes through this instead. */
int custos_base64_decode(uint8_t *out, size_t cap, size_t *outlen, const char *s, size_t len);
/* Reserve n more bytes; the caller writes them at p + len and then bumps len. */
enum custos_err custos_buf_reserve(struct custos_buf *b, size_t n);

/* 64-bit big-endian integers in stored rows (control/data-plane meta values). */
static inline void custos_put_be64(uint8_t *p, uint64_t x)
{
    for (int i = 7; i >= 0; i--, x >>= 8)
        p[i] = (uint8_t)x;
}

static inline uint64_t custos_get_be64(const uint8_t *p)
{
    uint64_t x = 0;

    for (int i = 0; i < 8; i++)
        x = x << 8 | p[i];
    return x;
}

/*
 * Per-thread scratch buffers, released (wiped and freed) when the thread
 * exits.  Slots keep independent users apart; returned buffers are reset.
 */
enum custos_buf_slot { CUSTOS_TLS_AUDIT, CUSTOS_TLS_RECORD, CUSTOS_TLS_WORK, CUSTOS_TLS_PLAIN, CUSTOS_TLS__COUNT };
struct custos_buf *custos_buf_thread(enum custos_buf_slot slot, size_t limit);

#endif

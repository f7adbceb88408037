/*
 * buf.c - capped growable buffer.  See buf.h.
 * Must never: grow past the cap, leave old contents unwiped when it moves them.
 */
#include "buf.h"

#include "custos/vault.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "custos/banned.h"

void custos_buf_init(struct custos_buf *b, size_t limit)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->limit = limit;
}

void custos_buf_release(struct custos_buf *b)
{
    if (b->p) {
        sodium_memzero(b->p, b->cap);
        free(b->p);
    }
    b->p = NULL;
    b->len = b->cap = 0;
}

void custos_buf_reset(struct custos_buf *b)
{
    if (b->p) {
        sodium_memzero(b->p, b->len);
        b->p[0] = 0;
    }
    b->len = 0;
}

enum custos_err custos_buf_reserve(struct custos_buf *b, size_t n)
{
    size_t need, ncap;
    uint8_t *np;

    if (n > b->limit || b->len > b->limit - n)
        return custos_err_set(CUSTOS_ERR_TOOBIG, "value exceeds the %zu byte limit", b->limit);
    need = b->len + n + 1;
    if (need <= b->cap)
        return CUSTOS_OK;
    ncap = b->cap ? b->cap : 64;
    while (ncap < need)
        ncap *= 2;
    /* Grow by copy, never realloc: realloc could leave plaintext in freed memory. */
    np = malloc(ncap);
    if (!np)
        return CUSTOS_ERR_NOMEM;
    if (b->p) {
        memcpy(np, b->p, b->len);
        sodium_memzero(b->p, b->cap);
        free(b->p);
    }
    b->p = np;
    b->cap = ncap;
    b->p[b->len] = 0;
    return CUSTOS_OK;
}

enum custos_err custos_buf_add(struct custos_buf *b, const void *p, size_t n)
{
    enum custos_err rc = custos_buf_reserve(b, n);

    if (rc)
        return rc;
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
    return CUSTOS_OK;
}

enum custos_err custos_buf_adds(struct custos_buf *b, const char *s)
{
    return custos_buf_add(b, s, strlen(s));
}

enum custos_err custos_buf_addc(struct custos_buf *b, char c)
{
    return custos_buf_add(b, &c, 1);
}

enum custos_err custos_buf_printf(struct custos_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    enum custos_err rc;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return CUSTOS_ERR_INTERNAL;
    rc = custos_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return CUSTOS_OK;
}

enum custos_err custos_buf_add_u64(struct custos_buf *b, uint64_t v)
{
    char d[20];
    size_t i = sizeof(d);

    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return custos_buf_add(b, d + i, sizeof(d) - i);
}

enum custos_err custos_buf_add_i64(struct custos_buf *b, int64_t v)
{
    enum custos_err rc;

    if (v < 0 && (rc = custos_buf_addc(b, '-')))
        return rc;
    return custos_buf_add_u64(b, v < 0 ? 0u - (uint64_t)v : (uint64_t)v);
}

size_t custos_strcopy(char *dst, size_t cap, const char *s, size_t n)
{
    const char *z;

    if (cap == 0)
        return 0;
    if (n > cap - 1)
        n = cap - 1;
    if ((z = memchr(s, '\0', n)) != NULL)
        n = (size_t)(z - s);
    memcpy(dst, s, n);
    dst[n] = '\0';
    return n;
}

enum custos_err custos_buf_add_json_str(struct custos_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    enum custos_err rc;
    size_t i, run = 0;

    if ((rc = custos_buf_addc(b, '"')))
        return rc;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t elen = 0;

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c < 0x20) {
            esc[0] = '\\';
            switch (c) {
            case '\n': esc[1] = 'n'; elen = 2; break;
            case '\r': esc[1] = 'r'; elen = 2; break;
            case '\t': esc[1] = 't'; elen = 2; break;
            case '\b': esc[1] = 'b'; elen = 2; break;
            case '\f': esc[1] = 'f'; elen = 2; break;
            default:
                esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
                esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
                elen = 6;
            }
        } else {
            run++;
            continue;
        }
        if (run && (rc = custos_buf_add(b, s + i - run, run)))
            return rc;
        run = 0;
        if ((rc = custos_buf_add(b, esc, elen)))
            return rc;
    }
    if (run && (rc = custos_buf_add(b, s + n - run, run)))
        return rc;
    return custos_buf_addc(b, '"');
}

/* Decode one UTF-8 sequence at s[0..len); returns its length (0 when invalid)
   and the code point in *cp.  Rejects overlongs, surrogates, > U+10FFFF. */
size_t custos_utf8_decode(const unsigned char *s, size_t len, unsigned long *cp)
{
    unsigned long c;
    size_t n, i;

    if (len == 0)
        return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    } else if ((s[0] & 0xe0) == 0xc0) {
        n = 2;
        c = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        n = 3;
        c = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        n = 4;
        c = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if ((n == 2 && c < 0x80) || (n == 3 && c < 0x800) || (n == 4 && c < 0x10000) || c > 0x10ffff ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

int custos_base64_decode(uint8_t *out, size_t cap, size_t *outlen, const char *s, size_t len)
{
    const char *end = NULL;
    size_t i, got = 0;

    if (len == 0)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/' ||
              c == '='))
            return 0;
    }
    if (sodium_base642bin(out, cap, s, len, NULL, &got, &end, sodium_base64_VARIANT_ORIGINAL) != 0 || end != s + len)
        return 0;
    *outlen = got;
    return 1;
}

int custos_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n;
    unsigned long cp;

    while (i < len) {
        if ((n = custos_utf8_decode(p + i, len - i, &cp)) == 0)
            return 0;
        i += n;
    }
    return 1;
}

/* Replace every byte that does not start a valid UTF-8 sequence with '?', in place. */
void custos_utf8_scrub(char *s)
{
    unsigned char *p = (unsigned char *)s;
    size_t len = strlen(s), i = 0, n;
    unsigned long cp;

    while (i < len) {
        if ((n = custos_utf8_decode(p + i, len - i, &cp)) == 0) {
            p[i] = '?';
            n = 1;
        }
        i += n;
    }
}

/* Characters that end a line, move the cursor or reorder text for some reader of a log, a
   terminal or a script: C0 and C1 controls, DEL, the Unicode line and paragraph separators, the
   bidirectional marks, embeddings, overrides and isolates. */
static int unsafe_in_line(unsigned long cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 || cp == 0x061c ||
           cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

void custos_text_oneline(char *s)
{
    unsigned char *r = (unsigned char *)s, *w = r;
    size_t left = strlen(s), n;
    unsigned long cp;

    while (left) {
        n = custos_utf8_decode(r, left, &cp);
        if (n == 0 || unsafe_in_line(cp)) {
            *w++ = '?'; /* an invalid byte, or the whole character */
            n = n ? n : 1;
        } else {
            memmove(w, r, n);
            w += n;
        }
        r += n;
        left -= n;
    }
    *w = '\0';
}

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_free(void *p)
{
    struct custos_buf *b = p;
    int i;

    for (i = 0; i < CUSTOS_TLS__COUNT; i++)
        custos_buf_release(&b[i]);
    free(b);
}

static void tls_setup(void)
{
    pthread_key_create(&tls_key, tls_free);
}

struct custos_buf *custos_buf_thread(enum custos_buf_slot slot, size_t limit)
{
    struct custos_buf *b;

    pthread_once(&tls_once, tls_setup);
    b = pthread_getspecific(tls_key);
    if (!b) {
        b = calloc(CUSTOS_TLS__COUNT, sizeof(*b));
        if (!b || pthread_setspecific(tls_key, b) != 0) {
            free(b);
            return NULL;
        }
    }
    custos_buf_reset(&b[slot]);
    b[slot].limit = limit;
    return &b[slot];
}

const char *custos_url_authority(const char *url, size_t *len)
{
    const char *p = strstr(url, "://"), *end, *h, *q;

    p = p ? p + 3 : url;
    end = p + strcspn(p, "/?#");
    for (h = q = p; q < end; q++)
        if (*q == '@')
            h = q + 1; /* user info */
    *len = (size_t)(end - h);
    return h;
}

void custos_url_origin(const char *url, char *out, size_t cap)
{
    const char *scheme_end = strstr(url, "://"), *h;
    size_t n;

    if (!scheme_end) {
        snprintf(out, cap, "%s", "");
        return;
    }
    h = custos_url_authority(url, &n);
    snprintf(out, cap, "%.*s%.*s", (int)(scheme_end + 3 - url), url, (int)n, h);
}

void custos_ipv4_text(char out[16], const uint8_t a[4])
{
    char *p = out;

    for (int i = 0; i < 4; i++) {
        if (i)
            *p++ = '.';
        if (a[i] >= 100)
            *p++ = (char)('0' + a[i] / 100);
        if (a[i] >= 10)
            *p++ = (char)('0' + a[i] / 10 % 10);
        *p++ = (char)('0' + a[i] % 10);
    }
    *p = '\0';
}

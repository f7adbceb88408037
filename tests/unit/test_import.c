/*
 * test_import.c - the line reader of custos import (import.c) without a vault:
 * custos_import_split (the input cut into jobs of whole lines, read in pieces of given sizes),
 * custos_import_line (a job cut into lines) and custos_import_parse (one line against the
 * default schema).  Blank lines, CRLF, a missing final newline, NUL bytes, lines over the cap,
 * read errors.  The import itself (threads, store, ledger) is in test_vault.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/schema.h"
#include "core/vault_int.h"
#include "custos/err.h"

#include "custos/banned.h"

/* An input in memory, read in pieces of the sizes in `sizes` (cycled); -1 is a read error with
   errno `err`.  What the reader hands on is written down in `out`, one line per input line:
   "N:text" (non-printable bytes as \xHH), "N:too long". */
struct feed {
    const char *in;
    size_t len, pos;
    const int *sizes;
    size_t nsizes, turn;
    int err;
    size_t max_line;
    char out[4096];
    size_t outlen;
    uint64_t jobs, next; /* jobs handed on; the line number the next one must start at */
    size_t job_lines;
    int fail_lines;      /* `lines` returns CUSTOS_ERR_NOMEM */
    int lengths;         /* write down "N:=length" instead of the text */
};

static ssize_t feed_read(void *ctx, void *buf, size_t n)
{
    struct feed *f = ctx;
    int want = f->sizes[f->turn++ % f->nsizes];
    size_t k;

    assert_true(n > 0);
    if (want < 0) {
        errno = f->err;
        return -1;
    }
    k = f->len - f->pos;
    if (k > n)
        k = n;
    if (k > (size_t)want)
        k = (size_t)want;
    memcpy(buf, f->in + f->pos, k);
    f->pos += k;
    return (ssize_t)k;
}

static void say(struct feed *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct feed *f, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(f->out + f->outlen, sizeof(f->out) - f->outlen, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof(f->out) - f->outlen);
    f->outlen += (size_t)n;
}

static void put(struct feed *f, const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x20 && c < 0x7f && c != '\\')
            say(f, "%c", c);
        else
            say(f, "\\x%02x", c);
    }
}

static enum custos_err feed_lines(void *ctx, const char *text, size_t len, uint64_t first, uint64_t nlines)
{
    struct feed *f = ctx;
    size_t off = 0, n;
    const char *p;
    uint64_t line = first;

    if (f->fail_lines)
        return CUSTOS_ERR_NOMEM;
    assert_int_equal(first, f->next);
    assert_true(nlines >= 1 && nlines <= f->job_lines);
    while ((p = custos_import_line(text, len, &off, &n)) != NULL) {
        say(f, "%llu:", (unsigned long long)line++);
        if (f->lengths)
            say(f, "=%zu", n);
        else
            put(f, p, n);
        say(f, "\n");
    }
    assert_int_equal(line - first, nlines);
    f->next = line;
    f->jobs++;
    return CUSTOS_OK;
}

static void feed_too_long(void *ctx, uint64_t line)
{
    struct feed *f = ctx;

    assert_int_equal(line, f->next);
    f->next = line + 1;
    say(f, "%llu:too long\n", (unsigned long long)line);
}

/* Split `in` (len bytes) with the given cap, read sizes and job size; the transcript in f->out. */
static enum custos_err split(struct feed *f, const char *in, size_t len, size_t max_line, const int *sizes,
                             size_t nsizes, size_t job_lines, uint64_t *bytes)
{
    struct custos_import_split sp = {feed_read, feed_lines, feed_too_long, NULL, NULL, NULL, f, 8, max_line, job_lines};
    int fail_lines = f->fail_lines, err = f->err, lengths = f->lengths;

    memset(f, 0, sizeof(*f));
    f->in = in;
    f->len = len;
    f->sizes = sizes;
    f->nsizes = nsizes;
    f->max_line = max_line;
    f->job_lines = job_lines;
    f->next = 1;
    f->fail_lines = fail_lines;
    f->err = err;
    f->lengths = lengths;
    return custos_import_split(&sp, bytes);
}

#define IN(lit) lit, sizeof(lit) - 1

static const int all[] = {1 << 20}, ones[] = {1}, threes[] = {3}, mixed[] = {2, 5, 1, 7};

static void test_split_lines(void **state)
{
    static const char text[] = "{\"a\":1}\n\n{\"b\":2}\r\n\r\n \nlast";
    static const char *const want = "1:{\"a\":1}\n2:\n3:{\"b\":2}\n4:\n5: \n6:last\n";
    const int *sizes[] = {all, ones, threes, mixed};
    const size_t nsizes[] = {1, 1, 1, 4};
    struct feed f = {0};
    uint64_t bytes;
    size_t i;

    (void)state;
    /* the same lines whatever the read sizes and job sizes */
    for (i = 0; i < 4; i++) {
        assert_int_equal(split(&f, IN(text), 64, sizes[i], nsizes[i], 256, &bytes), CUSTOS_OK);
        assert_string_equal(f.out, want);
        assert_int_equal(bytes, sizeof(text) - 1);
        assert_int_equal(split(&f, IN(text), 64, sizes[i], nsizes[i], 1, &bytes), CUSTOS_OK);
        assert_string_equal(f.out, want);
        assert_int_equal(f.jobs, 6);
    }
    assert_int_equal(split(&f, IN(text), 64, all, 1, 4, &bytes), CUSTOS_OK);
    assert_int_equal(f.jobs, 3); /* 4 + 1 lines before the end of the input is seen, then the last */

    /* a final newline ends the last line, it does not start one */
    assert_int_equal(split(&f, IN("a\nb\n"), 64, ones, 1, 256, &bytes), CUSTOS_OK);
    assert_string_equal(f.out, "1:a\n2:b\n");
    assert_int_equal(split(&f, IN(""), 64, ones, 1, 256, &bytes), CUSTOS_OK);
    assert_string_equal(f.out, "");
    assert_int_equal(split(&f, IN("\n"), 64, all, 1, 256, &bytes), CUSTOS_OK);
    assert_string_equal(f.out, "1:\n");
    /* one '\r' before the '\n' goes, others stay; NUL bytes are bytes of the line */
    assert_int_equal(split(&f, IN("a\r\r\nb\rc\n\r"), 64, threes, 1, 256, &bytes), CUSTOS_OK);
    assert_string_equal(f.out, "1:a\\x0d\n2:b\\x0dc\n3:\n");
    assert_int_equal(split(&f, IN("a\0b\n\0\n"), 64, ones, 1, 256, &bytes), CUSTOS_OK);
    assert_string_equal(f.out, "1:a\\x00b\n2:\\x00\n");
}

static void test_split_long_lines(void **state)
{
    struct feed f = {0};
    uint64_t bytes;

    (void)state;
    /* cap 4, buffer 8 + 4 + 1: a line the buffer holds without its newline is reported, not held */
    assert_int_equal(split(&f, IN("ab\n0123456789abcdef\ncd\n"), 4, ones, 1, 256, &bytes), CUSTOS_OK);
    assert_string_equal(f.out, "1:ab\n2:too long\n3:cd\n");
    assert_int_equal(bytes, 23);
    /* ... also when it ends the input */
    assert_int_equal(split(&f, IN("ab\n0123456789abcdef"), 4, ones, 1, 256, &bytes), CUSTOS_OK);
    assert_string_equal(f.out, "1:ab\n2:too long\n");
    /* one that came whole with its newline is handed on as it is: the caller checks its length */
    assert_int_equal(split(&f, IN("ab\n012345\ncd\n"), 4, all, 1, 256, &bytes), CUSTOS_OK);
    assert_string_equal(f.out, "1:ab\n2:012345\n3:cd\n");
}

/* A line at the cap is a line, whatever pieces read(2) hands it in: it was reported too long when
   the buffer held exactly the cap (a pipe hands 64 KiB at a time) or the cap and its '\r'. */
static void test_split_line_at_the_cap(void **state)
{
    static const int pipe_sized[] = {65536};
    static char big[65536 + 5];
    struct feed f = {0};
    struct custos_import_split sp = {feed_read, feed_lines, feed_too_long, NULL, NULL, NULL, &f, 1u << 20, 65536, 256};
    uint64_t bytes;
    size_t i;

    (void)state;
    for (i = 0; i < 4; i++) {
        const int *sizes = i == 0 ? ones : i == 1 ? threes : i == 2 ? mixed : all;
        size_t nsizes = i == 3 ? 1 : i == 2 ? 4 : 1;

        assert_int_equal(split(&f, IN("0123\n0123\r\n012\r\r\n0123"), 4, sizes, nsizes, 256, &bytes), CUSTOS_OK);
        assert_string_equal(f.out, "1:0123\n2:0123\n3:012\\x0d\n4:0123\n");
    }
    /* one byte more, read in pieces: reported */
    assert_int_equal(split(&f, IN("01234\n"), 4, ones, 1, 256, &bytes), CUSTOS_OK);
    assert_string_equal(f.out, "1:too long\n");
    assert_int_equal(split(&f, IN("0123\r\r\n"), 4, ones, 1, 256, &bytes), CUSTOS_OK);
    assert_string_equal(f.out, "1:too long\n");

    /* custos import's sizes, a pipe's reads: 65,536 bytes and then the '\n' */
    memset(big, 'a', 65536);
    memcpy(big + 65536, "\nb\r\n", 5);
    f.lengths = 1;
    assert_int_equal(split(&f, big, sizeof(big) - 1, 65536, pipe_sized, 1, 256, &bytes), CUSTOS_OK);
    assert_string_equal(f.out, "1:=65536\n2:=1\n");
    memset(&f, 0, sizeof(f));
    f.sizes = pipe_sized;
    f.nsizes = 1;
    f.in = big;
    f.len = sizeof(big) - 1;
    f.next = 1;
    f.job_lines = 256;
    f.lengths = 1;
    assert_int_equal(custos_import_split(&sp, &bytes), CUSTOS_OK);
    assert_string_equal(f.out, "1:=65536\n2:=1\n");
    f.lengths = 0;
}

static void test_split_errors(void **state)
{
    static const int fail_third[] = {2, 2, -1}, fail_in_skip[] = {2, 6, -1};
    struct feed f = {0};
    uint64_t bytes;

    (void)state;
    f.err = EIO;
    custos_err_clear();
    assert_int_equal(split(&f, IN("a\nb\nc\nd\n"), 64, fail_third, 3, 256, &bytes), CUSTOS_ERR_IO);
    assert_string_equal(custos_err_msg(CUSTOS_ERR_IO), "read error: Input/output error");
    assert_string_equal(f.out, "1:a\n2:b\n");
    assert_int_equal(bytes, 4);
    /* EINTR: read again */
    f.err = EINTR;
    assert_int_equal(split(&f, IN("a\nb\nc\nd\n"), 64, fail_third, 3, 256, &bytes), CUSTOS_OK);
    assert_string_equal(f.out, "1:a\n2:b\n3:c\n4:d\n");
    /* ... also while skipping a line over the cap: it was taken for the end of the input, and
       the import reported success without the lines after it */
    f.err = EIO;
    assert_int_equal(split(&f, IN("a\n0123456789\nb\n"), 4, fail_in_skip, 3, 256, &bytes), CUSTOS_ERR_IO);
    assert_string_equal(custos_err_msg(CUSTOS_ERR_IO), "read error: Input/output error");
    assert_string_equal(f.out, "1:a\n2:too long\n");
    f.err = EINTR;
    assert_int_equal(split(&f, IN("a\n0123456789\nb\n"), 4, fail_in_skip, 3, 256, &bytes), CUSTOS_OK);
    assert_string_equal(f.out, "1:a\n2:too long\n3:b\n");
    assert_int_equal(bytes, 15);
    /* what `lines` returns ends the reading */
    f.fail_lines = 1;
    assert_int_equal(split(&f, IN("a\nb\n"), 64, all, 1, 256, &bytes), CUSTOS_ERR_NOMEM);
    assert_string_equal(f.out, "");
}

static void test_import_line(void **state)
{
    static const char job[] = "ab\r\n\ncd\r";
    size_t off = 0, n = 99;
    const char *p;

    (void)state;
    p = custos_import_line(job, sizeof(job) - 1, &off, &n);
    assert_ptr_equal(p, job);
    assert_int_equal(n, 2);
    assert_int_equal(off, 4);
    p = custos_import_line(job, sizeof(job) - 1, &off, &n);
    assert_ptr_equal(p, job + 4);
    assert_int_equal(n, 0);
    p = custos_import_line(job, sizeof(job) - 1, &off, &n);
    assert_ptr_equal(p, job + 5);
    assert_int_equal(n, 2);
    assert_int_equal(off, 8);
    assert_null(custos_import_line(job, sizeof(job) - 1, &off, &n));
    off = 0;
    assert_null(custos_import_line(job, 0, &off, &n));
}

static void expect_parse(const struct custos_schema *s, const char *line, enum custos_err want, const char *detail,
                         size_t leaves_n)
{
    struct custos_leaves leaves = {0};
    json_t *obj = NULL;
    enum custos_err rc;

    custos_err_clear();
    rc = custos_import_parse(s, line, strlen(line), &obj, &leaves);
    assert_int_equal(rc, want);
    if (detail)
        assert_string_equal(custos_err_msg(rc), detail);
    if (!rc)
        assert_int_equal(leaves.n, leaves_n);
    custos_leaves_release(&leaves);
    json_decref(obj);
}

static void test_import_parse(void **state)
{
    struct custos_schema *s = NULL;
    static char big[65538];

    (void)state;
    assert_int_equal(custos_schema_parse(custos_default_schema_json, strlen(custos_default_schema_json), &s),
                     CUSTOS_OK);
    expect_parse(s, "{\"name\":\"Kim\",\"email\":\"kim@example.com\"}", CUSTOS_OK, NULL, 2);
    expect_parse(s, "{}", CUSTOS_ERR_INVALID, "a subject needs at least one field", 0);
    expect_parse(s, "{\"nick\":\"x\"}", CUSTOS_ERR_INVALID, "unknown field 'nick'", 0);
    expect_parse(s, "not json", CUSTOS_ERR_INVALID, "invalid JSON at line 1 column 3", 0);
    expect_parse(s, " ", CUSTOS_ERR_INVALID, "invalid JSON at line 1 column 1", 0);
    expect_parse(s, "[1]", CUSTOS_ERR_INVALID, "expected a JSON object", 0);
    expect_parse(s, "{\"name\":\"Kim\"} x", CUSTOS_ERR_INVALID, NULL, 0);
    memset(big, ' ', sizeof(big) - 1);
    big[0] = '{';
    big[65535] = '}';
    big[65536] = '\0'; /* 65,536 bytes: at the cap */
    expect_parse(s, big, CUSTOS_ERR_INVALID, "a subject needs at least one field", 0);
    big[65536] = ' '; /* 65,537: the reason the reader gives a line it skips */
    expect_parse(s, big, CUSTOS_ERR_TOOBIG, "line exceeds 65536 bytes", 0);
    custos_schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_lines),
        cmocka_unit_test(test_split_long_lines),
        cmocka_unit_test(test_split_line_at_the_cap),
        cmocka_unit_test(test_split_errors),
        cmocka_unit_test(test_import_line),
        cmocka_unit_test(test_import_parse),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * fuzz_import.c - libFuzzer target: the line reader of `custos import FILE`
 * (src/core/import.c): custos_import_split cutting the file into jobs of
 * whole lines as read(2) hands it over, custos_import_line cutting a job into
 * lines as the workers do, and custos_import_parse on every non-blank line
 * against the default schema.  The file comes from whoever exported it.
 *
 * Input: four parameter bytes, then the file's bytes.
 *   byte 0: the line cap: 1 + b % 32, or 65,536 (custos import's) for 0xff;
 *   byte 1: the read chunk, 1 + b % 32 bytes (custos import: 1 MiB);
 *   byte 2: lines per job, 1 + b % 8 (custos import: 256);
 *   byte 3: seeds the sizes read(2) returns (1 byte up to all that was asked
 *           for); bit 7 set: some reads fail with EINTR first; bit 6 set: one
 *           read fails with EIO.
 * Small caps and chunks put every boundary (a line at the cap, across two
 * reads, at the end of the buffer) within reach of small inputs.
 *
 * Invariants checked beyond "no crash, no leak, no UB" (the model is the
 * file split at '\n' here, in one piece):
 *  - every line of the file gets exactly one outcome, in order, numbered
 *    from 1: blank (nothing but one '\r': skipped), too long (over the cap
 *    without its '\n' and one '\r' before it: rejected), or its bytes,
 *    exactly, without the '\n' and one '\r' before it; a missing final
 *    newline still ends a line, a final newline does not start one;
 *  - the outcomes do not depend on how read(2) splits the file, nor on the
 *    job size; EINTR is read again;
 *  - a read error ends the reading with CUSTOS_ERR_IO, never as the end of
 *    the file, and the outcomes until then are the model's first ones;
 *  - every byte is read once (the byte count is the file's size), read(2)
 *    is never asked for 0 bytes, nor asked again after it gave the end;
 *  - the jobs' texts and the bytes of the lines skipped as too long are the
 *    file, every byte once, in order (what a resumed import's digest hashes);
 *  - a job holds at most job-size lines, at most chunk + cap + 1 bytes, starts
 *    at the line after the previous one;
 *  - each line that is handed on is imported or rejected: custos_import_parse
 *    gives CUSTOS_OK with at least one leaf (checked as in fuzz_subject), or
 *    CUSTOS_ERR_INVALID / CUSTOS_ERR_TOOBIG with a one-line UTF-8 reason.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/vault_int.h"

#include "fuzz_common.h"

#define LINE_CAP 65536 /* custos import's LINE_MAX_BYTES */

static struct custos_schema *schema;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0 ||
        custos_schema_parse(custos_default_schema_json, strlen(custos_default_schema_json), &schema) != CUSTOS_OK)
        abort();
    return 0;
}

enum kind { BLANK, TOO_LONG, TEXT };

struct outcome {
    uint64_t line;
    enum kind kind;
    const char *p; /* TEXT: its bytes (in the file for the model, in a copy for the reader) */
    size_t n;
};

struct run {
    const uint8_t *file;
    size_t size, pos;
    size_t max_line, chunk, job_lines;
    uint32_t rng;
    int eintr, eio_at, reads, at_end, failed;
    struct outcome *got;
    size_t ngot, cap;
    uint64_t next;
    size_t seen; /* bytes handed on in jobs or as skipped, a prefix of the file */
};

static uint32_t next_rand(struct run *r)
{
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 17;
    r->rng ^= r->rng << 5;
    return r->rng;
}

static ssize_t fuzz_read(void *ctx, void *buf, size_t n)
{
    struct run *r = ctx;
    size_t k = r->size - r->pos, want;

    FUZZ_CHECK(n > 0);
    FUZZ_CHECK(!r->at_end && !r->failed);
    r->reads++;
    if (r->eintr && next_rand(r) % 4 == 0) {
        errno = EINTR;
        return -1;
    }
    if (r->eio_at && r->reads == r->eio_at) {
        r->failed = 1;
        errno = EIO;
        return -1;
    }
    want = next_rand(r) % 3 == 0 ? n : 1 + next_rand(r) % 16;
    if (k > n)
        k = n;
    if (k > want)
        k = want;
    memcpy(buf, r->file + r->pos, k);
    r->pos += k;
    r->at_end = k == 0;
    return (ssize_t)k;
}

static void add(struct run *r, uint64_t line, enum kind kind, const char *p, size_t n)
{
    struct outcome *o;

    if (r->ngot == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        r->got = realloc(r->got, r->cap * sizeof(*r->got));
        FUZZ_CHECK(r->got != NULL);
    }
    o = &r->got[r->ngot++];
    o->line = line;
    o->kind = kind;
    o->p = NULL;
    o->n = n;
    if (kind == TEXT) {
        char *c = malloc(n ? n : 1);

        FUZZ_CHECK(c != NULL);
        memcpy(c, p, n);
        o->p = c;
    }
}

/* One non-blank line as a worker takes it: imported, or rejected with a clear reason. */
static void parse_line(const char *p, size_t n)
{
    char *line = malloc(n ? n : 1);
    struct custos_leaves leaves = {0};
    json_t *obj = NULL;
    enum custos_err rc;

    FUZZ_CHECK(line != NULL);
    memcpy(line, p, n);
    custos_err_clear();
    rc = custos_import_parse(schema, line, n, &obj, &leaves);
    if (rc == CUSTOS_OK) {
        FUZZ_CHECK(leaves.n > 0);
        fuzz_check_leaves(schema, &leaves, 0, 0);
    } else {
        FUZZ_CHECK(rc == CUSTOS_ERR_INVALID || rc == CUSTOS_ERR_TOOBIG);
        FUZZ_CHECK((rc == CUSTOS_ERR_TOOBIG) == (n > LINE_CAP));
        fuzz_check_detail(rc);
    }
    custos_leaves_release(&leaves);
    json_decref(obj);
    free(line);
}

static enum custos_err fuzz_lines(void *ctx, const char *text, size_t len, uint64_t first, uint64_t nlines)
{
    struct run *r = ctx;
    size_t off = 0, n;
    const char *p;
    uint64_t line = first;

    FUZZ_CHECK(first == r->next);
    FUZZ_CHECK(nlines >= 1 && nlines <= r->job_lines);
    FUZZ_CHECK(len > 0 && len <= r->chunk + r->max_line + 1);
    FUZZ_CHECK(len <= r->size - r->seen && memcmp(text, r->file + r->seen, len) == 0);
    r->seen += len;
    while ((p = custos_import_line(text, len, &off, &n)) != NULL) {
        FUZZ_CHECK(p >= text && p + n <= text + len && off <= len);
        /* as the worker: blank lines are skipped, a line over the cap is rejected */
        add(r, line++, n == 0 ? BLANK : n > r->max_line ? TOO_LONG : TEXT, p, n);
    }
    FUZZ_CHECK(line - first == nlines);
    r->next = line;
    return CUSTOS_OK;
}

static void fuzz_too_long(void *ctx, uint64_t line)
{
    struct run *r = ctx;

    FUZZ_CHECK(line == r->next);
    r->next = line + 1;
    add(r, line, TOO_LONG, NULL, 0);
}

static void fuzz_skipped(void *ctx, const char *p, size_t n)
{
    struct run *r = ctx;

    FUZZ_CHECK(n > 0 && n <= r->size - r->seen && memcmp(p, r->file + r->seen, n) == 0);
    r->seen += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct custos_import_split sp = {fuzz_read, fuzz_lines, fuzz_too_long, fuzz_skipped, NULL, NULL, NULL, 0, 0, 0};
    struct run r;
    uint8_t *file;
    size_t i, start, nmodel = 0, fsize;
    uint64_t bytes = 12345;
    enum custos_err rc;

    if (size < 4)
        return 0;
    fsize = size - 4;
    file = malloc(fsize ? fsize : 1);
    FUZZ_CHECK(file != NULL);
    memcpy(file, data + 4, fsize);
    memset(&r, 0, sizeof(r));
    r.file = file;
    r.size = fsize;
    r.max_line = data[0] == 0xff ? LINE_CAP : 1 + data[0] % 32u;
    r.chunk = 1 + data[1] % 32u;
    r.job_lines = 1 + data[2] % 8u;
    r.rng = 0x9e3779b9u ^ data[3];
    r.eintr = (data[3] & 0x80) != 0;
    r.eio_at = (data[3] & 0x40) ? 1 + (int)(data[3] & 0x0f) : 0;
    r.next = 1;
    sp.ctx = &r;
    sp.chunk = r.chunk;
    sp.max_line = r.max_line;
    sp.job_lines = r.job_lines;

    custos_err_clear();
    rc = custos_import_split(&sp, &bytes);
    if (r.failed) {
        FUZZ_CHECK(rc == CUSTOS_ERR_IO);
        fuzz_check_detail(rc);
    } else {
        FUZZ_CHECK(rc == CUSTOS_OK);
        FUZZ_CHECK(bytes == fsize && r.pos == fsize && r.at_end);
        FUZZ_CHECK(r.seen == fsize);
    }

    /* the model: the file split at '\n', in one piece */
    for (start = 0, i = 0; start < fsize; start = i + 1) {
        const uint8_t *nl = memchr(file + start, '\n', fsize - start);
        size_t n;

        i = nl ? (size_t)(nl - file) : fsize;
        n = i - start;
        if (n && file[start + n - 1] == '\r')
            n--;
        nmodel++;
        if (r.failed) {
            if (nmodel > r.ngot)
                break; /* the reading ended early: a prefix of the outcomes */
        } else
            FUZZ_CHECK(nmodel <= r.ngot);
        {
            const struct outcome *o = &r.got[nmodel - 1];
            enum kind want = n == 0 ? BLANK : n > r.max_line ? TOO_LONG : TEXT;

            FUZZ_CHECK(o->line == nmodel);
            FUZZ_CHECK(o->kind == want);
            if (want == TEXT)
                FUZZ_CHECK(o->n == n && memcmp(o->p, file + start, n) == 0);
        }
    }
    FUZZ_CHECK(r.ngot <= nmodel);
    if (!r.failed)
        FUZZ_CHECK(r.ngot == nmodel);

    for (i = 0; i < r.ngot; i++) {
        if (r.got[i].kind == TEXT)
            parse_line(r.got[i].p, r.got[i].n);
        free((void *)r.got[i].p);
    }
    free(r.got);
    free(file);
    return 0;
}

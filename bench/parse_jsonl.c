/*
 * parse_jsonl.c - the import benchmark's baseline: read a JSON-lines file
 * in 1 MiB chunks and parse every line with jansson (the parser custos
 * import uses), on one thread, keeping nothing.  This is the least work any
 * import must do per line before validating, sealing and storing it, so
 * "import rate / parse rate" says how much the rest costs.
 *
 * usage: bench_parse_jsonl FILE.jsonl
 * Prints: "parsed N lines (B bytes) in S s: R lines/s"; exit 1 if a line does not parse.
 *
 * Must never: print a line's content.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "custos/banned.h"

#define CHUNK (1u << 20)
#define LINE_CAP (1u << 16)

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Parse one line; 0 when it is a JSON object. */
static int parse_line(const char *p, size_t n)
{
    json_error_t err;
    json_t *j;
    int ok;

    if (n && p[n - 1] == '\r')
        n--;
    if (n == 0)
        return 0;
    j = json_loadb(p, n, JSON_REJECT_DUPLICATES, &err);
    ok = j && json_is_object(j);
    json_decref(j);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    char *buf;
    size_t have = 0;
    unsigned long long lines = 0, bytes = 0;
    double t0, secs;
    int fd, eof = 0;

    if (argc != 2) {
        fputs("usage: bench_parse_jsonl FILE.jsonl\n", stderr);
        return 2;
    }
    fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    buf = malloc(CHUNK + LINE_CAP);
    if (fd < 0 || !buf) {
        fprintf(stderr, "bench_parse_jsonl: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    t0 = now_s();
    while (!eof) {
        ssize_t r = read(fd, buf + have, CHUNK + LINE_CAP - have);
        size_t off = 0;

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "bench_parse_jsonl: read: %s\n", strerror(errno));
            return 1;
        }
        eof = r == 0;
        have += (size_t)r;
        bytes += (unsigned long long)r;
        for (;;) {
            char *nl = memchr(buf + off, '\n', have - off);
            size_t n;

            if (!nl && !(eof && off < have))
                break;
            n = nl ? (size_t)(nl - (buf + off)) : have - off;
            if (parse_line(buf + off, n)) {
                fprintf(stderr, "bench_parse_jsonl: line %llu is not a JSON object\n", lines + 1);
                return 1;
            }
            lines++;
            off += n + (nl ? 1 : 0);
        }
        if (off == 0 && have == CHUNK + LINE_CAP) {
            fprintf(stderr, "bench_parse_jsonl: line %llu is too long\n", lines + 1);
            return 1;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
    secs = now_s() - t0;
    printf("parsed %llu lines (%llu bytes) in %.2f s: %.0f lines/s\n", lines, bytes, secs,
           secs > 0 ? (double)lines / secs : 0.0);
    free(buf);
    close(fd);
    return 0;
}

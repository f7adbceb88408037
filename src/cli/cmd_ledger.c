/*
 * cmd_ledger.c - custos ledger verify|export|key|witness.
 *
 * verify  recomputes the whole tree from the entries and checks every stored
 *         checkpoint, and the derived files against them; exit 0 when intact,
 *         1 with the first bad index (or the damaged derived slot) otherwise.
 * rebuild recomputes the derived files (tree, index) from the entries.
 * export  writes entries as JSON lines {"index","data","event"}.
 * key     prints the ledger's verifier key (vkey) alone on the last line.
 * witness fetches a server's checkpoint, checks its signature against a
 *         vkey and its consistency with the last checkpoint it saw (kept in
 *         a state file), and exits non-zero on a rollback, a fork or a bad
 *         signature.  Run from another machine, it is what makes a deleted
 *         or rewritten ledger detectable.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include "cli/cli.h"
#include "custos/ledger.h"
#include "custos/merkle.h"
#include "custos/note.h"

#include "custos/banned.h"

#define EXIT_TAMPERED 1
#define EXIT_FETCH 3

static const char help[] =
    "usage: custos ledger verify --data DIR\n"
    "       custos ledger rebuild --data DIR\n"
    "       custos ledger export --data DIR [--start S] [--count C]\n"
    "       custos ledger key --data DIR\n"
    "       custos ledger witness --url URL --vkey VKEY --state FILE [--max-age SECONDS]\n"
    "\n"
    "verify   recompute the Merkle tree from every entry, check every stored checkpoint's\n"
    "         signature and root, and that the derived files (tree, index) agree; exit 0\n"
    "         when intact, 1 and the first bad index (or the damaged derived file) otherwise;\n"
    "         while the server runs, up to the latest checkpoint stored when it starts\n"
    "rebuild  recompute the derived files from the entries (after verify reports them\n"
    "         damaged); the server must be stopped\n"
    "export   entries as JSON lines {\"index\",\"data\"(base64 of the exact bytes),\"event\"}\n"
    "key      print the ledger's verifier key (vkey), alone on the last line\n"
    "witness  fetch URL/v1/ledger/checkpoint, check its signature with VKEY and that it is\n"
    "         consistent with the checkpoint recorded in FILE (then record it); exit 1 on a\n"
    "         bad signature, a rollback, a fork, or a consistency proof the server will not\n"
    "         give (UNPROVEN), 3 when the server cannot be reached or does not answer 200;\n"
    "         with --max-age, also 1 when the ledger has not grown for longer than that (STALE);\n"
    "         a signed checkpoint it refuses is kept in FILE.evidence\n";

struct args {
    const char *dir, *url, *vkey, *state, *start, *count, *max_age;
};

/* the options of an action */
#define OPT_DATA 1u
#define OPT_URL 2u
#define OPT_VKEY 4u
#define OPT_STATE 8u
#define OPT_START 16u
#define OPT_COUNT 32u
#define OPT_MAX_AGE 64u

/* Parse the options `which` allows (any other is refused, not ignored); no argument may be left. */
static int parse(int argc, char **argv, unsigned which, struct args *a)
{
    const struct cli_opt all[] = {{"data", &a->dir, NULL},   {"url", &a->url, NULL},     {"vkey", &a->vkey, NULL},
                                  {"state", &a->state, NULL}, {"start", &a->start, NULL}, {"count", &a->count, NULL},
                                  {"max-age", &a->max_age, NULL}};
    struct cli_opt opts[8];
    size_t i, n = 0;
    int r;

    memset(a, 0, sizeof(*a));
    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (which & (1u << i))
            opts[n++] = all[i];
    opts[n] = (struct cli_opt){NULL, NULL, NULL};
    r = cli_options(argc, argv, "ledger", help, opts);
    if (!r && optind < argc)
        return cli_usage("ledger", "unexpected argument");
    return r;
}

static enum custos_err identity(const char *dir, struct custos_note_verifier *v, char *vkey, size_t cap)
{
    char origin[256];
    uint8_t pk[32];
    enum custos_err rc;

    if ((rc = custos_vault_ledger_identity(dir, origin, sizeof(origin), pk)))
        return rc;
    if ((rc = custos_note_vkey_format(vkey, cap, origin, pk)))
        return rc;
    return custos_note_vkey_parse(v, vkey);
}

static int do_key(const struct args *a)
{
    struct custos_note_verifier v;
    char vkey[512];
    enum custos_err rc;

    if (!a->dir)
        return cli_usage("ledger", "--data DIR is required");
    if ((rc = identity(a->dir, &v, vkey, sizeof(vkey))))
        return cli_fail(rc);
    printf("%s\n", vkey);
    return 0;
}

/* The vault's ledger directory and verifier (verify, rebuild): 0, or the exit code of the failure. */
static int ledger_of(const struct args *a, struct custos_note_verifier *v, char ldir[4096])
{
    char vkey[512];
    enum custos_err rc;

    if (!a->dir)
        return cli_usage("ledger", "--data DIR is required");
    if ((rc = identity(a->dir, v, vkey, sizeof(vkey))))
        return cli_fail(rc);
    snprintf(ldir, 4096, "%s/ledger", a->dir);
    return 0;
}

static int do_verify(const struct args *a)
{
    struct custos_ledger_verify_report rep;
    struct custos_note_verifier v;
    char ldir[4096];
    enum custos_err rc;
    int ret;

    if ((ret = ledger_of(a, &v, ldir)))
        return ret;
    memset(&rep, 0, sizeof(rep));
    if ((rc = custos_ledger_verify(ldir, &v, &rep)))
        return cli_fail(rc);
    if (!rep.intact) {
        printf("ledger NOT intact: first bad index %llu: %s%s\n", (unsigned long long)rep.first_bad_index, rep.what,
               rep.live ? " (live check, the server running)" : "");
        if (!rep.derived_intact)
            printf("and: %s\n", rep.derived_what);
        fprintf(stderr, "custos: ledger verification failed at index %llu\n",
                (unsigned long long)rep.first_bad_index);
        return EXIT_TAMPERED;
    }
    if (!rep.derived_intact) {
        /* the log is sound, but what the server builds proofs from is not */
        printf("ledger entries intact (%llu entries, %llu checkpoints verified%s), derived files NOT: %s\n",
               (unsigned long long)rep.size, (unsigned long long)rep.checkpoints,
               rep.live ? "; live check, the server running" : "", rep.derived_what);
        cli_error(0, "ledger derived files damaged; 'custos ledger rebuild --data %.200s' recomputes them from "
                     "the entries", a->dir);
        return EXIT_TAMPERED;
    }
    printf("ledger intact: %llu entries, %llu checkpoints verified%s\n", (unsigned long long)rep.size,
           (unsigned long long)rep.checkpoints,
           rep.live ? " (live: a server was writing; checked up to its latest checkpoint)" : "");
    return 0;
}

static int do_rebuild(const struct args *a)
{
    struct custos_ledger_recovery rec;
    struct custos_note_verifier v;
    char ldir[4096];
    enum custos_err rc;
    int ret;

    if ((ret = ledger_of(a, &v, ldir)))
        return ret;
    if ((rc = custos_ledger_rebuild(ldir, &v, &rec)))
        return cli_fail(rc);
    if (rec.truncated_bytes > 0)
        fprintf(stderr, "custos: ledger: truncated a torn tail of %llu bytes\n",
                (unsigned long long)rec.truncated_bytes);
    printf("ledger derived files rebuilt: %llu entries\n", (unsigned long long)rec.size);
    return 0;
}

static int do_export(const struct args *a)
{
    struct custos_ledger_config lc;
    struct custos_ledger *l = NULL;
    char ldir[4096], origin[256];
    uint8_t pk[32], *buf = NULL;
    char *b64 = NULL;
    uint64_t start = 0, count = UINT64_MAX, size, i;
    size_t b64cap = sodium_base64_ENCODED_LEN(CUSTOS_LEDGER_ENTRY_MAX, sodium_base64_VARIANT_ORIGINAL);
    enum custos_err rc;
    int ret = 1;

    if (!a->dir)
        return cli_usage("ledger", "--data DIR is required");
    if ((a->start && custos_parse_u64(a->start, "--start", &start)) ||
        (a->count && custos_parse_u64(a->count, "--count", &count)))
        return cli_usage("ledger", custos_err_msg(CUSTOS_ERR_INVALID));
    if ((rc = custos_vault_ledger_identity(a->dir, origin, sizeof(origin), pk)))
        return cli_fail(rc);
    snprintf(ldir, sizeof(ldir), "%s/ledger", a->dir);
    memset(&lc, 0, sizeof(lc));
    lc.dir = ldir;
    lc.origin = origin;
    lc.read_only = 1;
    if ((rc = custos_ledger_open(&lc, &l, NULL)))
        return cli_fail(rc);
    buf = malloc(CUSTOS_LEDGER_ENTRY_MAX);
    b64 = malloc(b64cap);
    if (!buf || !b64) {
        rc = CUSTOS_ERR_NOMEM;
        goto done;
    }
    size = custos_ledger_size(l);
    for (i = start; i < size && i - start < count; i++) {
        size_t len = 0;
        json_t *ev, *line;
        char *s;

        if ((rc = custos_ledger_read(l, i, buf, CUSTOS_LEDGER_ENTRY_MAX, &len)))
            goto done;
        sodium_bin2base64(b64, b64cap, buf, len, sodium_base64_VARIANT_ORIGINAL);
        ev = json_loadb((const char *)buf, len, 0, NULL);
        line = json_pack("{s:I, s:s, s:o}", "index", (json_int_t)i, "data", b64, "event", ev ? ev : json_null());
        s = line ? json_dumps(line, JSON_COMPACT) : NULL;
        json_decref(line);
        if (!s) {
            rc = CUSTOS_ERR_NOMEM;
            goto done;
        }
        puts(s);
        free(s);
    }
    ret = 0;
done:
    free(buf);
    free(b64);
    custos_ledger_free(l);
    if (fflush(stdout) != 0)
        return cli_fail(custos_err_set(CUSTOS_ERR_IO, "write error on standard output"));
    return ret ? cli_fail(rc) : 0;
}

/* ---- witness ------------------------------------------------------------------------------- */

struct fetch {
    char *p;
    size_t n, cap;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct fetch *f = ud;
    size_t n = size * nmemb;

    if (n > f->cap - f->n)
        return 0; /* too large: abort the transfer */
    memcpy(f->p + f->n, ptr, n);
    f->n += n;
    return n;
}

/* GET url into f (capped); returns 0, or -1 with a message printed. */
static int http_get(const char *url, struct fetch *f, long *status)
{
    CURL *c = curl_easy_init();
    CURLcode cc;

    if (!c)
        return -1;
    f->n = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(c);
    if (cc != CURLE_OK) {
        cli_error(0, "cannot fetch %.400s: %s", url, curl_easy_strerror(cc));
        return -1;
    }
    f->p[f->n] = '\0';
    return 0;
}

/* Open and parse a signed checkpoint. */
static enum custos_err open_checkpoint(const char *note, size_t len, const struct custos_note_verifier *v,
                                       struct custos_checkpoint *cp)
{
    size_t tl = 0;
    enum custos_err rc;

    if ((rc = custos_note_open(note, len, v, &tl)))
        return rc;
    if ((rc = custos_checkpoint_parse(cp, note, tl)))
        return rc;
    if (strcmp(cp->origin, v->name) != 0)
        return custos_err_set(CUSTOS_ERR_INVALID, "checkpoint origin does not match the key name");
    return CUSTOS_OK;
}

/* The directory holding `path`, fsync'ed: a rename in it survives a power loss. */
static int sync_dir_of(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    int fd, r;

    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else
        snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    r = fsync(fd);
    close(fd);
    return r;
}

/*
 * Replace the state file with `note`: a new file of its own (mkstemp: never one that exists or a
 * symlink someone left in a shared directory), fsync'ed, renamed over the old one, and the
 * directory fsync'ed.  The old state stays whole until the rename.
 */
static enum custos_err save_state(const char *path, const char *note, size_t len)
{
    char tmp[4096];
    int fd, n = snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
    size_t off = 0;

    if (n < 0 || (size_t)n >= sizeof(tmp))
        return custos_err_set(CUSTOS_ERR_INVALID, "state file path is too long");
    fd = mkstemp(tmp);
    if (fd < 0)
        return custos_err_set(CUSTOS_ERR_IO, "cannot create a file next to %s: %s", path, strerror(errno));
    while (off < len) {
        ssize_t w = write(fd, note + off, len - off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    if (off != len || fsync(fd) != 0) {
        close(fd);
        unlink(tmp);
        return custos_err_set(CUSTOS_ERR_IO, "cannot write %s", tmp);
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return custos_err_set(CUSTOS_ERR_IO, "cannot replace %s: %s", path, strerror(errno));
    }
    if (sync_dir_of(path) != 0)
        return custos_err_set(CUSTOS_ERR_IO, "cannot sync the directory of %s: %s", path, strerror(errno));
    return CUSTOS_OK;
}

/*
 * One witness at a time per state file, for the whole run: two overlapping runs would each check
 * their checkpoint against the same old state, and one of two forked roots would never be
 * compared with the other.  The lock is on FILE.lock (the state file itself is replaced by
 * rename); a second run waits.  -1 on failure.
 */
static int lock_state(const char *path)
{
    char lk[4096];
    int fd, n = snprintf(lk, sizeof(lk), "%s.lock", path);

    if (n < 0 || (size_t)n >= sizeof(lk))
        return -1;
    fd = open(lk, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

/*
 * Keep a signed checkpoint the witness refused (a rollback, a fork, a larger tree the server
 * will not prove): appended to FILE.evidence, 0600, after a line with the time and the verdict.
 * Two conflicting notes signed by one key are what shows a third party that the log was
 * rewritten; without them, a server that went back to its old view left nothing to show
 * (red-team finding).  Best effort: the verdict stands whether or not the note could be kept.
 */
static void keep_evidence(const char *state, const char *verdict, const char *note, size_t len)
{
    char path[4200], head[128];
    time_t t = time(NULL);
    struct tm tm;
    int fd, hl;

    if ((size_t)snprintf(path, sizeof(path), "%s.evidence", state) >= sizeof(path)) {
        cli_error(0, "cannot keep the refused checkpoint: the state's path is too long");
        return;
    }
    if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
        cli_error(0, "cannot keep the refused checkpoint in %.200s: %s", path, strerror(errno));
        return;
    }
    gmtime_r(&t, &tm);
    hl = snprintf(head, sizeof(head), "# %04d-%02d-%02dT%02d:%02d:%02dZ %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, verdict);
    if (write(fd, head, (size_t)hl) != hl || write(fd, note, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
        fsync(fd) != 0)
        cli_error(0, "cannot keep the refused checkpoint in %.200s: %s", path, strerror(errno));
    else
        printf("the refused checkpoint, signed by the vault's key, is kept in %s\n", path);
    close(fd);
}

/* The checkpoint's root in base64, as its note writes it: printed with every "ok", so that
   witnesses can compare what they were shown (a server can show each witness a view of its own,
   each consistent in itself: only witnesses that compare roots for a size catch it). */
static const char *root_b64(const struct custos_checkpoint *cp, char out[64])
{
    return sodium_bin2base64(out, 64, cp->root, CUSTOS_HASH_BYTES, sodium_base64_VARIANT_ORIGINAL);
}

/* 1 when a signed checkpoint of size 0 claims a root other than the empty tree's, SHA-256(""):
   from it, any tree would pass for an extension without a proof (red-team finding). */
static int empty_root_wrong(const struct custos_checkpoint *cp)
{
    uint8_t h[CUSTOS_HASH_BYTES];

    if (cp->size != 0)
        return 0;
    crypto_hash_sha256(h, NULL, 0);
    return sodium_memcmp(h, cp->root, CUSTOS_HASH_BYTES) != 0;
}

static int do_witness(const struct args *a)
{
    struct custos_note_verifier v;
    struct custos_checkpoint now, old;
    struct fetch f = {NULL, 0, CUSTOS_NOTE_MAX}, pf = {NULL, 0, 65536};
    char base[2048], url[2300], *state = NULL;
    uint8_t proof[CUSTOS_PROOF_MAX][CUSTOS_HASH_BYTES];
    size_t n, blen;
    long status = 0;
    char b64[64];
    int ret = EXIT_TAMPERED, have_old = 0, lockfd = -1, r;
    unsigned max_age = 0;
    time_t grown = 0; /* when the recorded checkpoint was recorded: the state file's mtime */
    enum custos_err rc;
    FILE *sf;

    if (!a->url || !a->vkey || !a->state)
        return cli_usage("ledger", "witness needs --url, --vkey and --state");
    if (a->max_age && (r = cli_count("ledger", "max-age", a->max_age, 1, 10L * 366 * 86400, &max_age)))
        return r;
    if (custos_note_vkey_parse(&v, a->vkey))
        return cli_usage("ledger", "--vkey is not a valid Ed25519 verifier key");
    /* a longer URL would be cut (base[] below) and another one fetched; anything but http(s) is
       refused by curl anyway, and an unreachable server means exit 3, not a typo */
    if ((strncasecmp(a->url, "http://", 7) != 0 && strncasecmp(a->url, "https://", 8) != 0) ||
        !cli_text_ok(a->url, 2000) || strchr(a->url, ' '))
        return cli_usage("ledger", "--url must be an http:// or https:// URL of at most 2000 bytes");
    snprintf(base, sizeof(base), "%s", a->url);
    blen = strlen(base);
    while (blen && base[blen - 1] == '/')
        base[--blen] = '\0';
    if (blen >= 21 && strcmp(base + blen - 21, "/v1/ledger/checkpoint") == 0)
        base[blen - 21] = '\0';
    f.p = malloc(f.cap + 1);
    pf.p = malloc(pf.cap + 1);
    if (!f.p || !pf.p) {
        ret = cli_fail(CUSTOS_ERR_NOMEM);
        goto done;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    {
        struct stat lsb;

        /* the lock is per name and the state is replaced by a rename: a second name for one
           state (a symbolic link) would split it in two, each run holding its own view
           (red-team finding) */
        if (lstat(a->state, &lsb) == 0 && S_ISLNK(lsb.st_mode)) {
            cli_error(0, "witness state %.200s is a symbolic link: give the file itself", a->state);
            goto done;
        }
    }
    if ((lockfd = lock_state(a->state)) < 0) {
        cli_error(0, "cannot lock %.200s.lock: %s", a->state, strerror(errno));
        goto done;
    }
    /* the state first: an unreadable state must not silently reset the witness */
    sf = fopen(a->state, "rb");
    if (sf) {
        struct stat sb;
        int err = fstat(fileno(sf), &sb) != 0 ? errno : S_ISDIR(sb.st_mode) ? EISDIR : 0;

        grown = err ? 0 : sb.st_mtime;
        state = calloc(1, CUSTOS_NOTE_MAX + 1);
        n = state && !err ? fread(state, 1, CUSTOS_NOTE_MAX, sf) : 0;
        if (!err && ferror(sf))
            err = errno;
        fclose(sf);
        if (err) {
            cli_error(0, "cannot read %.200s: %s", a->state, strerror(err));
            goto done;
        }
        if (!state || (rc = open_checkpoint(state, n, &v, &old)) || empty_root_wrong(&old)) {
            cli_error(0, "witness state %.200s does not hold a checkpoint signed by this key", a->state);
            goto done;
        }
        have_old = 1;
    } else if (errno != ENOENT) {
        cli_error(0, "cannot read %.200s: %s", a->state, strerror(errno));
        goto done;
    }
    snprintf(url, sizeof(url), "%s/v1/ledger/checkpoint", base);
    if (http_get(url, &f, &status) || status != 200) {
        if (status && status != 200)
            cli_error(0, "%.400s answered HTTP %ld", url, status);
        ret = EXIT_FETCH;
        goto done;
    }
    if ((rc = open_checkpoint(f.p, f.n, &v, &now))) {
        printf("BAD SIGNATURE: the checkpoint from %s does not verify under the given key\n", base);
        fprintf(stderr, "custos: witness: bad checkpoint signature\n");
        goto done;
    }
    if (empty_root_wrong(&now)) {
        printf("BAD CHECKPOINT: size 0 with a root that is not the empty tree's\n");
        fprintf(stderr, "custos: witness: bad checkpoint\n");
        keep_evidence(a->state, "BAD CHECKPOINT", f.p, f.n);
        goto done;
    }
    if (have_old) {
        if (now.size < old.size) {
            printf("ROLLBACK: the ledger shrank from %llu to %llu entries\n", (unsigned long long)old.size,
                   (unsigned long long)now.size);
            fprintf(stderr, "custos: witness: rollback detected\n");
            keep_evidence(a->state, "ROLLBACK", f.p, f.n);
            goto done;
        }
        if (now.size == old.size) {
            time_t t = time(NULL);

            if (sodium_memcmp(now.root, old.root, CUSTOS_HASH_BYTES) != 0) {
                printf("FORK: two different roots signed for size %llu\n", (unsigned long long)now.size);
                fprintf(stderr, "custos: witness: fork detected\n");
                keep_evidence(a->state, "FORK", f.p, f.n);
                goto done;
            }
            /* the same tree: the state is left as it is, so its mtime stays the time it grew */
            /* a time in the future (a clock that was ahead, a touched file) says nothing about
               when the ledger grew: more than max-age ahead, it could hide a frozen ledger for
               as long as it is ahead, so it is stale too (within it, skew is tolerated) */
            if (max_age && grown - t > (time_t)max_age) {
                printf("STALE: the witness state was recorded %lld s in the future (clock skew?); the "
                       "ledger's growth cannot be timed (--max-age %u)\n",
                       (long long)(grown - t), max_age);
                fprintf(stderr, "custos: witness: stale ledger\n");
                goto done;
            }
            if (max_age && t - grown > (time_t)max_age) {
                printf("STALE: the ledger has not grown past %llu entries for %lld s (--max-age %u)\n",
                       (unsigned long long)now.size, (long long)(t - grown), max_age);
                fprintf(stderr, "custos: witness: stale ledger\n");
                goto done;
            }
            printf("ok: %s size %llu root %s (consistent with the recorded checkpoint: unchanged for %lld s)\n",
                   now.origin, (unsigned long long)now.size, root_b64(&now, b64),
                   (long long)(t > grown ? t - grown : 0));
            ret = 0;
            goto done;
        } else if (old.size > 0) {
            snprintf(url, sizeof(url), "%s/v1/ledger/proof/consistency?from=%llu&to=%llu", base,
                     (unsigned long long)old.size, (unsigned long long)now.size);
            /* The server has just answered and signed a larger tree: whatever keeps the proof
               from coming (another status, a cut or oversize body, a closed connection, a
               timeout, a body that is no proof) is its refusal to prove that tree extends the
               one recorded, not an unreachable server (red-team finding: exit 3, and the
               signed note dropped) */
            status = 0;
            if (http_get(url, &pf, &status) || status != 200 || custos_proof_json_parse(pf.p, pf.n, proof, &n)) {
                if (status && status != 200)
                    printf("UNPROVEN: checkpoint %llu is signed, but the server answered HTTP %ld to the "
                           "consistency proof from %llu\n",
                           (unsigned long long)now.size, status, (unsigned long long)old.size);
                else
                    printf("UNPROVEN: checkpoint %llu is signed, but the server gave no consistency proof from "
                           "%llu (%s)\n",
                           (unsigned long long)now.size, (unsigned long long)old.size,
                           status ? "its answer is not a proof" : "no answer");
                fprintf(stderr, "custos: witness: no consistency proof\n");
                keep_evidence(a->state, "UNPROVEN", f.p, f.n);
                goto done;
            }
            if (custos_merkle_verify_consistency(old.size, now.size, old.root, now.root,
                                                 (const uint8_t(*)[CUSTOS_HASH_BYTES])proof, n)) {
                printf("FORK: checkpoint %llu is not an extension of the recorded checkpoint %llu\n",
                       (unsigned long long)now.size, (unsigned long long)old.size);
                fprintf(stderr, "custos: witness: inconsistent ledger (fork or rewrite)\n");
                keep_evidence(a->state, "FORK", f.p, f.n);
                goto done;
            }
        }
    }
    if ((rc = save_state(a->state, f.p, f.n))) {
        ret = cli_fail(rc);
        goto done;
    }
    printf("ok: %s size %llu root %s%s\n", now.origin, (unsigned long long)now.size, root_b64(&now, b64),
           have_old ? " (consistent with the recorded checkpoint)" : " (first checkpoint recorded)");
    ret = 0;
done:
    if (lockfd >= 0)
        close(lockfd);
    free(f.p);
    free(pf.p);
    free(state);
    curl_global_cleanup();
    return ret;
}

int cmd_ledger(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(const struct args *);
        unsigned opts;
    } actions[] = {
        {"verify", do_verify, OPT_DATA},
        {"rebuild", do_rebuild, OPT_DATA},
        {"export", do_export, OPT_DATA | OPT_START | OPT_COUNT},
        {"key", do_key, OPT_DATA},
        {"witness", do_witness, OPT_URL | OPT_VKEY | OPT_STATE | OPT_MAX_AGE},
    };
    struct args a;
    size_t i;
    int r;

    if (argc < 2 || cli_wants_help(2, argv)) {
        fputs(help, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    for (i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
        if (strcmp(argv[1], actions[i].name) == 0) {
            if ((r = parse(argc - 1, argv + 1, actions[i].opts, &a)))
                return r;
            return actions[i].fn(&a);
        }
    return cli_usage("ledger", "expected verify, rebuild, export, key or witness");
}

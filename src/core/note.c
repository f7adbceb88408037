/*
 * note.c - C2SP signed notes (signed-note v1.0.0, Ed25519 only) and
 * tlog-checkpoint v1.0.0 bodies.
 *
 * Owns: nothing but code.  Parsers read caller buffers, producers write
 * caller buffers; nothing allocates and nothing keeps a key.
 *
 * Format (see docs/format.md):
 *   note      = text "\n" 1*sigline          text ends in "\n", may hold blank lines;
 *                                            the LAST "\n\n" separates text and signatures
 *   sigline   = U+2014 " " name " " base64(key id[4] || signature) "\n"
 *   name      = non-empty, valid UTF-8, no Unicode space, no "+"
 *   key id    = SHA-256(name || 0x0A || 0x01 || ed25519 pubkey)[:4]
 *   vkey      = name "+" hex(key id) "+" base64(0x01 || pubkey)
 *   checkpoint body = origin "\n" decimal size "\n" base64(root) "\n" *(non-empty extension line "\n")
 * The whole note must be valid UTF-8 without ASCII control characters other
 * than "\n".  Base64 is RFC 4648 standard with padding (libsodium ORIGINAL).
 *
 * Invariants: a note is accepted only if at least one line from the
 * verifier's (name, key id) verifies and no such line fails; lines from other
 * keys are ignored but must still be well formed.  Inputs are capped at
 * CUSTOS_NOTE_MAX bytes and MAX_SIGS signature lines.
 *
 * Must never: read past `len` (inputs are not NUL-terminated), accept a
 * note whose signature text differs by one byte from what was signed, or
 * hand-roll crypto or base64 (libsodium does both).
 */
#include "custos/note.h"

#include <string.h>

#include <sodium.h>

#include "core/buf.h"

#include "custos/banned.h"

#define MAX_SIGS 100          /* signature lines per note; the spec asks for at least 16 */
#define SIG_RAW_MAX (CUSTOS_NOTE_MAX / 4 * 3) /* any signature payload that fits in a capped note */
#define ED25519_TYPE 0x01

static const char emdash[] = "\xe2\x80\x94"; /* U+2014 */

/* Valid UTF-8 with no control character other than '\n'. */
static int text_ok(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned long cp;
    size_t i = 0, n;

    while (i < len) {
        n = custos_utf8_decode(p + i, len - i, &cp);
        if (n == 0)
            return 0;
        if (cp < 0x20 && cp != '\n')
            return 0;
        if (cp == 0x7f)
            return 0; /* DEL: not below U+0020, but no reason to let it through */
        i += n;
    }
    return 1;
}

/* unicode.IsSpace (Go), which the reference implementation uses for names. */
static int is_unicode_space(unsigned long cp)
{
    switch (cp) {
    case '\t': case '\n': case '\v': case '\f': case '\r': case ' ':
    case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029: case 0x202f: case 0x205f: case 0x3000:
        return 1;
    default:
        return cp >= 0x2000 && cp <= 0x200a;
    }
}

static int name_ok(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned long cp;
    size_t i = 0, n;

    if (len == 0 || len > CUSTOS_NOTE_NAME_MAX)
        return 0;
    while (i < len) {
        n = custos_utf8_decode(p + i, len - i, &cp);
        if (n == 0 || cp < 0x20 || cp == 0x7f || cp == '+' || is_unicode_space(cp))
            return 0;
        i += n;
    }
    return 1;
}

void custos_note_key_id(uint8_t out[4], const char *name, const uint8_t pubkey[32])
{
    crypto_hash_sha256_state st;
    uint8_t h[crypto_hash_sha256_BYTES];
    static const uint8_t sep[2] = {'\n', ED25519_TYPE};

    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)name, strlen(name));
    crypto_hash_sha256_update(&st, sep, sizeof(sep));
    crypto_hash_sha256_update(&st, pubkey, 32);
    crypto_hash_sha256_final(&st, h);
    memcpy(out, h, 4);
}

enum custos_err custos_note_vkey_format(char *out, size_t outlen, const char *name, const uint8_t pubkey[32])
{
    uint8_t id[4], key[33];
    char hex[9], b64[sodium_base64_ENCODED_LEN(33, sodium_base64_VARIANT_ORIGINAL)];
    size_t nlen;
    int w;

    nlen = name ? strlen(name) : 0;
    if (!name_ok(name, nlen))
        return custos_err_set(CUSTOS_ERR_INVALID, "vkey: invalid key name");
    custos_note_key_id(id, name, pubkey);
    sodium_bin2hex(hex, sizeof(hex), id, sizeof(id));
    key[0] = ED25519_TYPE;
    memcpy(key + 1, pubkey, 32);
    sodium_bin2base64(b64, sizeof(b64), key, sizeof(key), sodium_base64_VARIANT_ORIGINAL);
    w = snprintf(out, outlen, "%s+%s+%s", name, hex, b64);
    if (w < 0 || (size_t)w >= outlen)
        return custos_err_set(CUSTOS_ERR_TOOBIG, "vkey: output buffer too small");
    return CUSTOS_OK;
}

enum custos_err custos_note_vkey_parse(struct custos_note_verifier *v, const char *vkey)
{
    const char *p1, *p2;
    size_t len, nlen, klen = 0;
    uint8_t id[4], want[4], key[40];
    size_t idlen = 0;

    if (vkey == NULL)
        return custos_err_set(CUSTOS_ERR_INVALID, "vkey: missing");
    len = strnlen(vkey, CUSTOS_NOTE_MAX + 1);
    if (len > CUSTOS_NOTE_MAX)
        return custos_err_set(CUSTOS_ERR_TOOBIG, "vkey: too long");
    p1 = memchr(vkey, '+', len);
    if (p1 == NULL)
        return custos_err_set(CUSTOS_ERR_INVALID, "vkey: malformed");
    nlen = (size_t)(p1 - vkey);
    p2 = memchr(p1 + 1, '+', len - nlen - 1);
    if (p2 == NULL || p2 - p1 - 1 != 8)
        return custos_err_set(CUSTOS_ERR_INVALID, "vkey: malformed key id");
    if (!name_ok(vkey, nlen))
        return custos_err_set(CUSTOS_ERR_INVALID, "vkey: invalid key name");
    if (sodium_hex2bin(id, sizeof(id), p1 + 1, 8, NULL, &idlen, NULL) != 0 || idlen != 4)
        return custos_err_set(CUSTOS_ERR_INVALID, "vkey: malformed key id");
    if (!custos_base64_decode(key, sizeof(key), &klen, p2 + 1, len - (size_t)(p2 + 1 - vkey)))
        return custos_err_set(CUSTOS_ERR_INVALID, "vkey: malformed key");
    if (klen != 33 || key[0] != ED25519_TYPE)
        return custos_err_set(CUSTOS_ERR_INVALID, "vkey: not an ed25519 key");

    memset(v, 0, sizeof(*v));
    memcpy(v->name, vkey, nlen);
    v->name[nlen] = '\0';
    memcpy(v->pubkey, key + 1, 32);
    custos_note_key_id(want, v->name, v->pubkey);
    if (memcmp(want, id, 4) != 0) {
        memset(v, 0, sizeof(*v));
        return custos_err_set(CUSTOS_ERR_INVALID, "vkey: key id does not match the key");
    }
    memcpy(v->key_id, id, 4);
    return CUSTOS_OK;
}

enum custos_err custos_note_sign(char *out, size_t outcap, size_t *outlen, const char *text, size_t len,
                                 const char *name, const uint8_t sk[64])
{
    uint8_t payload[4 + crypto_sign_ed25519_BYTES];
    char b64[sodium_base64_ENCODED_LEN(sizeof(payload), sodium_base64_VARIANT_ORIGINAL)];
    size_t nlen, b64len, total;
    char *p;

    if (text == NULL || len == 0 || text[len - 1] != '\n')
        return custos_err_set(CUSTOS_ERR_INVALID, "note: text must be non-empty and end in a newline");
    if (len > CUSTOS_NOTE_MAX)
        return custos_err_set(CUSTOS_ERR_TOOBIG, "note: text too long");
    if (!text_ok(text, len))
        return custos_err_set(CUSTOS_ERR_INVALID, "note: text is not utf-8 without control characters");
    nlen = name ? strlen(name) : 0;
    if (!name_ok(name, nlen))
        return custos_err_set(CUSTOS_ERR_INVALID, "note: invalid key name");

    custos_note_key_id(payload, name, sk + 32);
    if (crypto_sign_ed25519_detached(payload + 4, NULL, (const unsigned char *)text, len, sk) != 0)
        return custos_err_set(CUSTOS_ERR_CRYPTO, "note: signing failed");
    sodium_bin2base64(b64, sizeof(b64), payload, sizeof(payload), sodium_base64_VARIANT_ORIGINAL);
    b64len = strlen(b64);

    /* text "\n" "— " name " " b64 "\n" NUL */
    total = len + 1 + 4 + nlen + 1 + b64len + 1;
    if (total + 1 > outcap || total > CUSTOS_NOTE_MAX)
        return custos_err_set(CUSTOS_ERR_TOOBIG, "note: output buffer too small");
    p = out;
    memcpy(p, text, len);
    p += len;
    *p++ = '\n';
    memcpy(p, emdash, 3);
    p += 3;
    *p++ = ' ';
    memcpy(p, name, nlen);
    p += nlen;
    *p++ = ' ';
    memcpy(p, b64, b64len);
    p += b64len;
    *p++ = '\n';
    *p = '\0';
    *outlen = total;
    return CUSTOS_OK;
}

/*
 * Shape check shared by custos_note_open and custos_note_text_len: caps,
 * UTF-8, the text/signature split and the framing of every signature line.
 * When `v` is not NULL, also verifies the lines from v (only finds them when `check` is 0);
 * *verified counts them.
 */
static enum custos_err note_scan(const char *note, size_t len, const struct custos_note_verifier *v, int check,
                                 size_t *text_len, unsigned *verified)
{
    const char *sigs, *end, *line, *nl, *sp, *b64;
    size_t tlen, i, nlen, b64len, rawlen = 0, vnlen = 0;
    uint8_t raw[SIG_RAW_MAX];
    unsigned nsig = 0, ok = 0;

    if (note == NULL)
        return custos_err_set(CUSTOS_ERR_INVALID, "note: missing");
    if (len > CUSTOS_NOTE_MAX)
        return custos_err_set(CUSTOS_ERR_TOOBIG, "note: longer than %d bytes", CUSTOS_NOTE_MAX);
    if (len < 2 || !text_ok(note, len))
        return custos_err_set(CUSTOS_ERR_INVALID, "note: not utf-8 text without control characters");

    /* The last "\n\n" separates text and signatures. */
    for (i = len - 1; i > 0; i--)
        if (note[i] == '\n' && note[i - 1] == '\n')
            break;
    if (i == 0)
        return custos_err_set(CUSTOS_ERR_INVALID, "note: no blank line before the signatures");
    tlen = i; /* text = note[0..i), ending in note[i-1] == '\n' */
    sigs = note + i + 1;
    end = note + len;
    if (sigs == end || end[-1] != '\n')
        return custos_err_set(CUSTOS_ERR_INVALID, "note: signature block missing or not newline-terminated");
    if (v)
        vnlen = strnlen(v->name, sizeof(v->name));

    for (line = sigs; line < end; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(end - line));
        if (nl == NULL)
            return custos_err_set(CUSTOS_ERR_INVALID, "note: unterminated signature line");
        if (++nsig > MAX_SIGS)
            return custos_err_set(CUSTOS_ERR_INVALID, "note: more than %d signatures", MAX_SIGS);
        if (nl - line < 5 || memcmp(line, emdash, 3) != 0 || line[3] != ' ')
            return custos_err_set(CUSTOS_ERR_INVALID, "note: malformed signature line");
        line += 4;
        sp = memchr(line, ' ', (size_t)(nl - line));
        if (sp == NULL)
            return custos_err_set(CUSTOS_ERR_INVALID, "note: malformed signature line");
        nlen = (size_t)(sp - line);
        b64 = sp + 1;
        b64len = (size_t)(nl - b64);
        if (!name_ok(line, nlen))
            return custos_err_set(CUSTOS_ERR_INVALID, "note: invalid key name in signature line");
        if (!custos_base64_decode(raw, sizeof(raw), &rawlen, b64, b64len) || rawlen < 5)
            return custos_err_set(CUSTOS_ERR_INVALID, "note: malformed signature");
        if (v == NULL || nlen != vnlen || memcmp(line, v->name, nlen) != 0 || memcmp(raw, v->key_id, 4) != 0)
            continue; /* not from v: ignored */
        if (check && (rawlen != 4 + crypto_sign_ed25519_BYTES ||
            crypto_sign_ed25519_verify_detached(raw + 4, (const unsigned char *)note, tlen, v->pubkey) != 0))
            return custos_err_set(CUSTOS_ERR_INVALID, "note: signature by %s does not verify", v->name);
        ok++;
    }
    *text_len = tlen;
    *verified = ok;
    return CUSTOS_OK;
}

enum custos_err custos_note_text_len(const char *note, size_t len, size_t *text_len)
{
    unsigned verified = 0;

    return note_scan(note, len, NULL, 0, text_len, &verified);
}

enum custos_err custos_note_open(const char *note, size_t len, const struct custos_note_verifier *v,
                                 size_t *text_len)
{
    enum custos_err e;
    unsigned verified = 0;
    size_t tlen = 0;

    if (v == NULL)
        return custos_err_set(CUSTOS_ERR_INVALID, "note: no verifier");
    e = note_scan(note, len, v, 1, &tlen, &verified);
    if (e != CUSTOS_OK)
        return e;
    if (verified == 0)
        return custos_err_set(CUSTOS_ERR_INVALID, "note: no signature by %s", v->name);
    *text_len = tlen;
    return CUSTOS_OK;
}

int custos_note_names_key(const char *note, size_t len, const struct custos_note_verifier *v)
{
    unsigned found = 0;
    size_t tlen;

    return v != NULL && note_scan(note, len, v, 0, &tlen, &found) == CUSTOS_OK && found > 0;
}

enum custos_err custos_checkpoint_format(char *out, size_t outcap, size_t *outlen,
                                         const struct custos_checkpoint *cp)
{
    char b64[sodium_base64_ENCODED_LEN(CUSTOS_HASH_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    size_t olen;
    int w;

    olen = strnlen(cp->origin, sizeof(cp->origin));
    if (olen == 0 || olen > CUSTOS_NOTE_NAME_MAX || memchr(cp->origin, '\n', olen) != NULL ||
        !text_ok(cp->origin, olen))
        return custos_err_set(CUSTOS_ERR_INVALID, "checkpoint: invalid origin");
    sodium_bin2base64(b64, sizeof(b64), cp->root, CUSTOS_HASH_BYTES, sodium_base64_VARIANT_ORIGINAL);
    w = snprintf(out, outcap, "%s\n%llu\n%s\n", cp->origin, (unsigned long long)cp->size, b64);
    if (w < 0 || (size_t)w >= outcap)
        return custos_err_set(CUSTOS_ERR_TOOBIG, "checkpoint: output buffer too small");
    *outlen = (size_t)w;
    return CUSTOS_OK;
}

enum custos_err custos_checkpoint_parse(struct custos_checkpoint *cp, const char *text, size_t len)
{
    const char *p = text, *end = text + len, *nl;
    size_t olen, slen, i, rlen = 0;
    uint64_t size = 0;
    uint8_t root[CUSTOS_HASH_BYTES + 8];
    const char *origin;

    if (text == NULL || len == 0)
        return custos_err_set(CUSTOS_ERR_INVALID, "checkpoint: empty");
    if (len > CUSTOS_NOTE_MAX)
        return custos_err_set(CUSTOS_ERR_TOOBIG, "checkpoint: too long");
    if (text[len - 1] != '\n' || !text_ok(text, len))
        return custos_err_set(CUSTOS_ERR_INVALID, "checkpoint: not newline-terminated utf-8 text");

    /* origin */
    nl = memchr(p, '\n', (size_t)(end - p));
    olen = (size_t)(nl - p);
    if (olen == 0 || olen > CUSTOS_NOTE_NAME_MAX)
        return custos_err_set(CUSTOS_ERR_INVALID, "checkpoint: bad origin line");
    origin = p;
    p = nl + 1;

    /* size: ASCII decimal, no leading zero unless "0", fits in 64 bits */
    if (p == end)
        return custos_err_set(CUSTOS_ERR_INVALID, "checkpoint: missing size line");
    nl = memchr(p, '\n', (size_t)(end - p));
    slen = (size_t)(nl - p);
    if (slen == 0 || slen > 20 || (slen > 1 && p[0] == '0'))
        return custos_err_set(CUSTOS_ERR_INVALID, "checkpoint: bad size line");
    for (i = 0; i < slen; i++) {
        unsigned d;

        if (p[i] < '0' || p[i] > '9')
            return custos_err_set(CUSTOS_ERR_INVALID, "checkpoint: bad size line");
        d = (unsigned)(p[i] - '0');
        if (size > (UINT64_MAX - d) / 10)
            return custos_err_set(CUSTOS_ERR_INVALID, "checkpoint: size overflows");
        size = size * 10 + d;
    }
    p = nl + 1;

    /* root hash */
    if (p == end)
        return custos_err_set(CUSTOS_ERR_INVALID, "checkpoint: missing root line");
    nl = memchr(p, '\n', (size_t)(end - p));
    if (!custos_base64_decode(root, sizeof(root), &rlen, p, (size_t)(nl - p)) || rlen != CUSTOS_HASH_BYTES)
        return custos_err_set(CUSTOS_ERR_INVALID, "checkpoint: bad root line");
    p = nl + 1;

    /* extension lines: opaque, each non-empty */
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == p)
            return custos_err_set(CUSTOS_ERR_INVALID, "checkpoint: empty extension line");
        p = nl + 1;
    }
    memcpy(cp->origin, origin, olen);
    cp->origin[olen] = '\0';
    cp->size = size;
    memcpy(cp->root, root, CUSTOS_HASH_BYTES);
    return CUSTOS_OK;
}

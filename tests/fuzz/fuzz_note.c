/*
 * fuzz_note.c - libFuzzer target for the signed-note and checkpoint parsers.
 *
 * Feeds arbitrary bytes (not NUL-terminated, up to and past the caps) to
 * custos_note_open (with a fixed verifier, and with the verifier named after
 * the note's first signature line so signature checking is reached),
 * custos_note_text_len, custos_checkpoint_parse and custos_note_vkey_parse.
 * Invariants checked: an accepted note's text is a prefix ending in "\n"
 * followed by the blank line; an accepted checkpoint formats back and
 * parses to the same values.
 *
 * build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
 *          tests/fuzz/fuzz_note.c src/core/note.c src/core/merkle.c src/core/err.c -lsodium
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "custos/merkle.h"
#include "custos/note.h"
#include "custos/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct custos_note_verifier fixed;
static int ready;

static void setup(void)
{
    uint8_t seed[32], pk[32], sk[64];
    char vkey[512];

    if (sodium_init() < 0)
        abort();
    memset(seed, 7, sizeof(seed));
    crypto_sign_seed_keypair(pk, sk, seed);
    if (custos_note_vkey_format(vkey, sizeof(vkey), "fuzz.example/log", pk) != CUSTOS_OK ||
        custos_note_vkey_parse(&fixed, vkey) != CUSTOS_OK)
        abort();
    ready = 1;
}

static void check_text(const char *note, size_t len, size_t tlen)
{
    if (tlen == 0 || tlen + 1 >= len || note[tlen - 1] != '\n' || note[tlen] != '\n')
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a heap copy of exactly `size` bytes: ASan catches any read past the end */
    char *buf = malloc(size ? size : 1);
    char *z = malloc(size + 1);
    struct custos_note_verifier v;
    struct custos_checkpoint cp, back;
    char out[CUSTOS_NOTE_MAX + 1];
    size_t tlen = 0, olen = 0;

    if (!ready)
        setup();
    if (buf == NULL || z == NULL)
        abort();
    memcpy(buf, data, size);

    if (custos_note_open(buf, size, &fixed, &tlen) == CUSTOS_OK)
        check_text(buf, size, tlen);
    if (custos_note_text_len(buf, size, &tlen) == CUSTOS_OK) {
        const char *sig;

        check_text(buf, size, tlen);
        /* a verifier named like the first signature line, with that line's key id */
        sig = buf + tlen + 1;
        if ((size_t)(buf + size - sig) > 4) {
            const char *sp = memchr(sig + 4, ' ', (size_t)(buf + size - sig - 4));

            if (sp && (size_t)(sp - sig - 4) <= CUSTOS_NOTE_NAME_MAX) {
                v = fixed;
                memcpy(v.name, sig + 4, (size_t)(sp - sig - 4));
                v.name[sp - sig - 4] = '\0';
                memcpy(v.key_id, fixed.key_id, 4);
                if (custos_note_open(buf, size, &v, &tlen) == CUSTOS_OK)
                    check_text(buf, size, tlen);
            }
        }
        if (custos_checkpoint_parse(&cp, buf, tlen) == CUSTOS_OK) {
            if (custos_checkpoint_format(out, sizeof(out), &olen, &cp) != CUSTOS_OK)
                abort();
            if (custos_checkpoint_parse(&back, out, olen) != CUSTOS_OK || back.size != cp.size ||
                memcmp(back.root, cp.root, CUSTOS_HASH_BYTES) != 0 || strcmp(back.origin, cp.origin) != 0)
                abort();
        }
    }
    if (custos_checkpoint_parse(&cp, buf, size) == CUSTOS_OK) {
        if (custos_checkpoint_format(out, sizeof(out), &olen, &cp) != CUSTOS_OK)
            abort();
    }
    memcpy(z, data, size);
    z[size] = '\0';
    if (custos_note_vkey_parse(&v, z) == CUSTOS_OK) {
        uint8_t id[4];

        custos_note_key_id(id, v.name, v.pubkey);
        if (memcmp(id, v.key_id, 4) != 0)
            abort();
        if (custos_note_vkey_format(out, sizeof(out), v.name, v.pubkey) != CUSTOS_OK)
            abort();
    }
    free(z);
    free(buf);
    return 0;
}

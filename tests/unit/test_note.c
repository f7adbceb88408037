/*
 * test_note.c - C2SP signed notes and tlog checkpoints against the public
 * vectors in tests/vectors/signed-note/vectors.json (C2SP spec examples,
 * golang.org/x/mod sumdb/note test vectors), plus malformed inputs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "custos/merkle.h"
#include "custos/note.h"
#include "custos/banned.h"

static json_t *vectors;

static const char *str(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);

    assert_true(json_is_string(v));
    return json_string_value(v);
}

static int setup(void **state)
{
    char p[512];
    json_error_t err;

    (void)state;
    snprintf(p, sizeof(p), "%s/signed-note/vectors.json", CUSTOS_TEST_VECTORS);
    vectors = json_load_file(p, 0, &err);
    return vectors == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    json_decref(vectors);
    return 0;
}

static json_t *note_vec(size_t i)
{
    json_t *a = json_object_get(vectors, "ed25519_notes");

    assert_true(json_array_size(a) == 3);
    return json_array_get(a, i);
}

/* Go skey: PRIVATE+KEY+name+hex(key id)+base64(0x01 || seed) -> libsodium 64-byte sk. */
static void skey_parse(const char *skey, char *name, size_t namecap, uint8_t id[4], uint8_t pk[32], uint8_t sk[64])
{
    const char *p = skey, *plus1, *plus2;
    uint8_t raw[33];
    size_t n = 0;

    assert_int_equal(strncmp(p, "PRIVATE+KEY+", 12), 0);
    p += 12;
    plus1 = strchr(p, '+');
    assert_non_null(plus1);
    plus2 = strchr(plus1 + 1, '+');
    assert_non_null(plus2);
    assert_true((size_t)(plus1 - p) < namecap);
    memcpy(name, p, (size_t)(plus1 - p));
    name[plus1 - p] = '\0';
    assert_int_equal(sodium_hex2bin(id, 4, plus1 + 1, 8, NULL, &n, NULL), 0);
    assert_int_equal(n, 4);
    assert_int_equal(sodium_base642bin(raw, sizeof(raw), plus2 + 1, strlen(plus2 + 1), NULL, &n, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(n, 33);
    assert_int_equal(raw[0], 0x01);
    assert_int_equal(crypto_sign_seed_keypair(pk, sk, raw + 1), 0);
    sodium_memzero(raw, sizeof(raw));
}

static void test_vkeys(void **state)
{
    struct custos_note_verifier v;
    char out[512];
    uint8_t id[4];
    size_t i;

    (void)state;
    for (i = 0; i < 3; i++) {
        const char *vkey = str(note_vec(i), "vkey");

        assert_int_equal(custos_note_vkey_parse(&v, vkey), CUSTOS_OK);
        custos_note_key_id(id, v.name, v.pubkey);
        assert_memory_equal(id, v.key_id, 4);
        assert_int_equal(custos_note_vkey_format(out, sizeof(out), v.name, v.pubkey), CUSTOS_OK);
        assert_string_equal(out, vkey);
        assert_int_equal(custos_note_vkey_format(out, 10, v.name, v.pubkey), CUSTOS_ERR_TOOBIG);
    }
    assert_string_equal(v.name, "EnochRoot");
}

static void test_deterministic_signature(void **state)
{
    json_t *vec = note_vec(1);
    struct custos_note_verifier v;
    char name[256], out[CUSTOS_NOTE_MAX + 1];
    uint8_t id[4], pk[32], *sk = sodium_malloc(64);
    const char *text = str(vec, "text"), *want = str(vec, "signed_note");
    size_t len = 0;

    (void)state;
    assert_non_null(sk);
    skey_parse(str(vec, "skey"), name, sizeof(name), id, pk, sk);
    assert_string_equal(name, "PeterNeumann");
    assert_int_equal(custos_note_vkey_parse(&v, str(vec, "vkey")), CUSTOS_OK);
    assert_memory_equal(pk, v.pubkey, 32);
    assert_memory_equal(id, v.key_id, 4);

    /* byte for byte the published note */
    assert_int_equal(custos_note_sign(out, sizeof(out), &len, text, strlen(text), name, sk), CUSTOS_OK);
    assert_int_equal(len, strlen(want));
    assert_string_equal(out, want);
    /* and it opens */
    assert_int_equal(custos_note_open(out, len, &v, &len), CUSTOS_OK);
    assert_int_equal(len, strlen(text));

    /* too small an output buffer */
    assert_int_equal(custos_note_sign(out, strlen(want), &len, text, strlen(text), name, sk), CUSTOS_ERR_TOOBIG);
    /* unsignable texts and names */
    assert_int_equal(custos_note_sign(out, sizeof(out), &len, "no newline", 10, name, sk), CUSTOS_ERR_INVALID);
    assert_int_equal(custos_note_sign(out, sizeof(out), &len, "", 0, name, sk), CUSTOS_ERR_INVALID);
    assert_int_equal(custos_note_sign(out, sizeof(out), &len, "tab\there\n", 9, name, sk), CUSTOS_ERR_INVALID);
    assert_int_equal(custos_note_sign(out, sizeof(out), &len, "bad \xff utf8\n", 11, name, sk), CUSTOS_ERR_INVALID);
    assert_int_equal(custos_note_sign(out, sizeof(out), &len, "x\n", 2, "a+b", sk), CUSTOS_ERR_INVALID);
    assert_int_equal(custos_note_sign(out, sizeof(out), &len, "x\n", 2, "a b", sk), CUSTOS_ERR_INVALID);
    assert_int_equal(custos_note_sign(out, sizeof(out), &len, "x\n", 2, "", sk), CUSTOS_ERR_INVALID);
    assert_int_equal(custos_note_sign(out, sizeof(out), &len, "x\n", 2, "a\xe2\x80\x83" "b", sk), CUSTOS_ERR_INVALID);
    sodium_free(sk);
}

static void test_vector_notes_open(void **state)
{
    struct custos_note_verifier v[3], other;
    size_t i, tlen;
    uint8_t pk[32], sk[64];

    (void)state;
    for (i = 0; i < 3; i++)
        assert_int_equal(custos_note_vkey_parse(&v[i], str(note_vec(i), "vkey")), CUSTOS_OK);
    for (i = 0; i < 3; i++) {
        const char *note = str(note_vec(i), "signed_note");

        tlen = 0;
        assert_int_equal(custos_note_open(note, strlen(note), &v[i], &tlen), CUSTOS_OK);
        if (json_object_get(note_vec(i), "text"))
            assert_int_equal(tlen, strlen(str(note_vec(i), "text")));
        assert_int_equal(note[tlen], '\n');
        assert_int_equal(note[tlen - 1], '\n');
    }
    /* the two-signature note: each key alone verifies, ignoring the other line */
    {
        const char *multi = str(note_vec(2), "signed_note");

        assert_int_equal(custos_note_open(multi, strlen(multi), &v[1], &tlen), CUSTOS_OK);
        assert_int_equal(custos_note_open(multi, strlen(multi), &v[2], &tlen), CUSTOS_OK);
        /* a key with no line in the note: rejected */
        assert_int_equal(custos_note_open(multi, strlen(multi), &v[0], &tlen), CUSTOS_ERR_INVALID);
        /* same name as a signer, different key (so different key id): ignored, hence no signature */
        crypto_sign_keypair(pk, sk);
        memset(&other, 0, sizeof(other));
        snprintf(other.name, sizeof(other.name), "PeterNeumann");
        memcpy(other.pubkey, pk, 32);
        custos_note_key_id(other.key_id, other.name, pk);
        assert_int_equal(custos_note_open(multi, strlen(multi), &other, &tlen), CUSTOS_ERR_INVALID);
        /* same name and key id as a signer but a different key: the line is "ours" and fails */
        memcpy(other.key_id, v[1].key_id, 4);
        assert_int_equal(custos_note_open(multi, strlen(multi), &other, &tlen), CUSTOS_ERR_INVALID);
    }
}

static void test_tampered_notes(void **state)
{
    const char *good = str(note_vec(1), "signed_note");
    struct custos_note_verifier v;
    char buf[CUSTOS_NOTE_MAX + 256];
    size_t len = strlen(good), i, tlen, text_len = strlen(str(note_vec(1), "text"));
    const char *sigline;

    (void)state;
    assert_int_equal(custos_note_vkey_parse(&v, str(note_vec(1), "vkey")), CUSTOS_OK);
    /* every byte of the signed text matters */
    for (i = 0; i < text_len; i++) {
        memcpy(buf, good, len);
        buf[i] ^= 0x01;
        assert_int_equal(custos_note_open(buf, len, &v, &tlen), CUSTOS_ERR_INVALID);
    }
    /* one changed base64 character of the signature */
    memcpy(buf, good, len);
    buf[len - 10] = buf[len - 10] == 'A' ? 'B' : 'A';
    assert_int_equal(custos_note_open(buf, len, &v, &tlen), CUSTOS_ERR_INVALID);
    /* a second, bad line from the same key makes the whole note fail */
    sigline = strstr(good, "\n\n") + 2;
    memcpy(buf, good, len);
    memcpy(buf + len, sigline, strlen(sigline));
    buf[len + strlen(sigline) - 10] ^= 0x01;
    assert_int_equal(custos_note_open(buf, len + strlen(sigline), &v, &tlen), CUSTOS_ERR_INVALID);
    /* a duplicate good line is fine */
    memcpy(buf, good, len);
    memcpy(buf + len, sigline, strlen(sigline));
    assert_int_equal(custos_note_open(buf, len + strlen(sigline), &v, &tlen), CUSTOS_OK);
    /* no final newline / no blank line / lost em dash / trailing garbage */
    assert_int_equal(custos_note_open(good, len - 1, &v, &tlen), CUSTOS_ERR_INVALID);
    snprintf(buf, sizeof(buf), "%.*s%s", (int)text_len, good, sigline);
    assert_int_equal(custos_note_open(buf, strlen(buf), &v, &tlen), CUSTOS_ERR_INVALID);
    snprintf(buf, sizeof(buf), "%.*s- %s", (int)(text_len + 1), good, sigline + 4);
    assert_int_equal(custos_note_open(buf, strlen(buf), &v, &tlen), CUSTOS_ERR_INVALID);
    snprintf(buf, sizeof(buf), "%sgarbage\n", good);
    assert_int_equal(custos_note_open(buf, strlen(buf), &v, &tlen), CUSTOS_ERR_INVALID);
    /* a NUL byte or CR in the text */
    memcpy(buf, good, len);
    buf[3] = '\0';
    assert_int_equal(custos_note_open(buf, len, &v, &tlen), CUSTOS_ERR_INVALID);
    buf[3] = '\r';
    assert_int_equal(custos_note_open(buf, len, &v, &tlen), CUSTOS_ERR_INVALID);
    /* over the cap */
    memset(buf, 'a', CUSTOS_NOTE_MAX + 1);
    assert_int_equal(custos_note_open(buf, CUSTOS_NOTE_MAX + 1, &v, &tlen), CUSTOS_ERR_TOOBIG);
    assert_int_equal(custos_note_text_len(buf, CUSTOS_NOTE_MAX + 1, &tlen), CUSTOS_ERR_TOOBIG);
}

static void test_many_signatures(void **state)
{
    const char *good = str(note_vec(1), "signed_note");
    const char *sigline = strstr(good, "\n\n") + 2;
    struct custos_note_verifier v;
    char *buf = malloc(CUSTOS_NOTE_MAX);
    size_t len, tlen, i;

    (void)state;
    assert_non_null(buf);
    assert_int_equal(custos_note_vkey_parse(&v, str(note_vec(1), "vkey")), CUSTOS_OK);
    /* 16 unknown-key lines before ours: accepted (the spec's minimum) */
    len = (size_t)(sigline - good);
    memcpy(buf, good, len);
    for (i = 0; i < 16; i++)
        len += (size_t)snprintf(buf + len, CUSTOS_NOTE_MAX - len,
                                "\xe2\x80\x94 witness%zu.example AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", i);
    len += (size_t)snprintf(buf + len, CUSTOS_NOTE_MAX - len, "%s", sigline);
    assert_int_equal(custos_note_open(buf, len, &v, &tlen), CUSTOS_OK);
    /* 101 lines: over our limit */
    len = (size_t)(sigline - good);
    for (i = 0; i < 101; i++)
        len += (size_t)snprintf(buf + len, CUSTOS_NOTE_MAX - len, "\xe2\x80\x94 w%zu AAAAAAAA\n", i);
    assert_true(len < CUSTOS_NOTE_MAX);
    assert_int_equal(custos_note_text_len(buf, len, &tlen), CUSTOS_ERR_INVALID);
    free(buf);
}

static void b64root(uint8_t out[32], const char *line, size_t len)
{
    size_t n = 0;

    assert_int_equal(sodium_base642bin(out, 32, line, len, NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL), 0);
    assert_int_equal(n, 32);
}

static void test_checkpoint_examples(void **state)
{
    json_t *ex = json_object_get(vectors, "format_examples_no_public_key");
    json_t *body = json_object_get(vectors, "sumdb_tree_note_body");
    struct custos_checkpoint cp;
    struct custos_note_verifier v;
    const char *note, *root_line;
    uint8_t want[32];
    size_t tlen;

    (void)state;
    assert_int_equal(json_array_size(ex), 2);
    note = str(json_array_get(ex, 0), "checkpoint");
    assert_int_equal(custos_note_text_len(note, strlen(note), &tlen), CUSTOS_OK);
    assert_int_equal(custos_checkpoint_parse(&cp, note, tlen), CUSTOS_OK);
    assert_string_equal(cp.origin, "example.com/behind-the-sofa");
    assert_int_equal(cp.size, 20852163);
    root_line = strchr(strchr(note, '\n') + 1, '\n') + 1;
    b64root(want, root_line, (size_t)(strchr(root_line, '\n') - root_line));
    assert_memory_equal(cp.root, want, 32);

    note = str(json_array_get(ex, 1), "cosigned_checkpoint");
    assert_int_equal(custos_note_text_len(note, strlen(note), &tlen), CUSTOS_OK);
    memset(&cp, 0, sizeof(cp));
    assert_int_equal(custos_checkpoint_parse(&cp, note, tlen), CUSTOS_OK);
    assert_int_equal(cp.size, 20852163);
    assert_memory_equal(cp.root, want, 32);
    /* we do not hold the log's key: a verifier for someone else finds no signature */
    assert_int_equal(custos_note_vkey_parse(&v, str(note_vec(1), "vkey")), CUSTOS_OK);
    assert_int_equal(custos_note_open(note, strlen(note), &v, &tlen), CUSTOS_ERR_INVALID);

    /* sumdb tree body: root is the RFC 6962 leaf hash of "hello world" */
    note = str(body, "body");
    assert_int_equal(custos_checkpoint_parse(&cp, note, strlen(note)), CUSTOS_OK);
    assert_string_equal(cp.origin, "go.sum database tree");
    assert_int_equal(cp.size, 123456789012ULL);
    custos_merkle_leaf_hash(want, "hello world", 11);
    assert_memory_equal(cp.root, want, 32);
}

static void test_checkpoint_format_parse(void **state)
{
    struct custos_checkpoint cp, back;
    char out[512];
    size_t len = 0;
    static const char *bad[] = {
        "",
        "origin\n",
        "origin\n5\n",
        "\n5\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=\n",
        "o\n05\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=\n",
        "o\n-5\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=\n",
        "o\n5x\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=\n",
        "o\n18446744073709551616\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=\n",
        "o\n5\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0\n",
        "o\n5\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevo=\n",
        "o\n5\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=",
        "o\n5\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=\n\n",
        "o\n5\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=\next\n\n",
        "o\n5\n bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=\n",
    };
    size_t i;

    (void)state;
    memset(&cp, 0, sizeof(cp));
    snprintf(cp.origin, sizeof(cp.origin), "custos.example/ledger");
    cp.size = 18446744073709551615ULL;
    memset(cp.root, 0xab, 32);
    assert_int_equal(custos_checkpoint_format(out, sizeof(out), &len, &cp), CUSTOS_OK);
    assert_int_equal(len, strlen(out));
    assert_int_equal(custos_checkpoint_parse(&back, out, len), CUSTOS_OK);
    assert_string_equal(back.origin, cp.origin);
    assert_int_equal(back.size, cp.size);
    assert_memory_equal(back.root, cp.root, 32);
    assert_int_equal(custos_checkpoint_format(out, 20, &len, &cp), CUSTOS_ERR_TOOBIG);
    cp.size = 0;
    assert_int_equal(custos_checkpoint_format(out, sizeof(out), &len, &cp), CUSTOS_OK);
    assert_non_null(strstr(out, "\n0\n"));
    {
        const char *ext = "o\n0\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=\next one\n";

        assert_int_equal(custos_checkpoint_parse(&back, ext, strlen(ext)), CUSTOS_OK);
    }
    assert_int_equal(back.size, 0);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (custos_checkpoint_parse(&back, bad[i], strlen(bad[i])) != CUSTOS_ERR_INVALID)
            fail_msg("bad checkpoint body %zu accepted", i);
    snprintf(cp.origin, sizeof(cp.origin), "two\nlines");
    assert_int_equal(custos_checkpoint_format(out, sizeof(out), &len, &cp), CUSTOS_ERR_INVALID);
}

static void test_vkey_malformed(void **state)
{
    struct custos_note_verifier v;
    static const char *bad[] = {
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  /* wrong key id */
        "PeterNeumann+c74f20a3+AhpcxQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  /* wrong type byte */
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",   /* bad base64 */
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWAA==",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+zz4f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    };
    size_t i;

    (void)state;
    assert_int_equal(custos_note_vkey_parse(&v, "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
                     CUSTOS_OK);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (custos_note_vkey_parse(&v, bad[i]) == CUSTOS_OK)
            fail_msg("bad vkey %zu accepted", i);
}

static void test_sign_open_roundtrip_utf8(void **state)
{
    uint8_t pk[32], *sk = sodium_malloc(64);
    struct custos_note_verifier v;
    char out[CUSTOS_NOTE_MAX + 1];
    const char *text = "Ognuno sta solo sul cuor della terra\n\ned \xc3\xa8 subito sera.\n";
    size_t len, tlen;

    (void)state;
    assert_non_null(sk);
    crypto_sign_keypair(pk, sk);
    memset(&v, 0, sizeof(v));
    snprintf(v.name, sizeof(v.name), "quasimodo.example/salvatore");
    memcpy(v.pubkey, pk, 32);
    custos_note_key_id(v.key_id, v.name, pk);
    assert_int_equal(custos_note_sign(out, sizeof(out), &len, text, strlen(text), v.name, sk), CUSTOS_OK);
    /* the text holds a blank line: the LAST one separates the signatures */
    assert_int_equal(custos_note_open(out, len, &v, &tlen), CUSTOS_OK);
    assert_int_equal(tlen, strlen(text));
    assert_int_equal(custos_note_text_len(out, len, &tlen), CUSTOS_OK);
    assert_int_equal(tlen, strlen(text));
    sodium_free(sk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vkeys),
        cmocka_unit_test(test_deterministic_signature),
        cmocka_unit_test(test_vector_notes_open),
        cmocka_unit_test(test_tampered_notes),
        cmocka_unit_test(test_many_signatures),
        cmocka_unit_test(test_checkpoint_examples),
        cmocka_unit_test(test_checkpoint_format_parse),
        cmocka_unit_test(test_vkey_malformed),
        cmocka_unit_test(test_sign_open_roundtrip_utf8),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * test_api_ledger.c - the ledger routes, checked the way an outside witness
 * would: the public checkpoint is a C2SP signed note that verifies with the
 * vkey printed by `custos ledger key` (run while the server holds the data
 * directory); entries (auditor/admin only) carry the exact bytes whose RFC
 * 6962 leaf hashes the public inclusion proofs tie to the signed root;
 * consistency proofs tie two signed checkpoints together.  The events name
 * subject, purpose, fields, actor and result, record denials and failed
 * authentications, and never hold a personal value, token or secret.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "custos/merkle.h"
#include "custos/note.h"

#include "custos/banned.h"

static const char ALICE[] =
    "{\"name\":\"선우안\",\"email\":\"ledger.alice@gmail.com\",\"phone\":\"010-1234-6960\",\"birth_date\":\"1990-04-01\","
    "\"customs_code\":\"P123456789081\",\"address_book\":[{\"recipient\":\"남궁민수\",\"phone\":\"010-9876-5432\","
    "\"address\":\"서울특별시 강남구 테헤란로 123\",\"entrance_code\":\"#7319*\"}]}";
static const char BOB[] = "{\"name\":\"박보검\",\"email\":\"ledger.bob@example.com\",\"phone\":\"010-5555-0101\"}";

/* Every personal value above, plus the forms a search carries. */
static const char *const PERSONAL[] = {"선우안", "ledger.alice", "LEDGER.ALICE", "010-1234-6960", "01012346960",
                                       "1234-6960", "1990-04-01", "P123456789081", "남궁민수", "010-9876-5432",
                                       "테헤란로", "#7319*", "박보검", "ledger.bob", "010-5555-0101",
                                       "01055550101", "gmail.com", "example.com", NULL};

struct cp {
    struct custos_checkpoint c;
    char *text; /* the whole signed note, owned by the fixture */
};

static void b64_hash(const char *b64, uint8_t out[CUSTOS_HASH_BYTES])
{
    size_t n = 0;

    assert_non_null(b64);
    assert_int_equal(sodium_base642bin(out, CUSTOS_HASH_BYTES, b64, strlen(b64), NULL, &n, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(n, CUSTOS_HASH_BYTES);
}

/* Exact entry bytes from an entries item; *len. Owned by the fixture. */
static const uint8_t *entry_bytes(struct cz_server *s, json_t *item, size_t *len)
{
    const char *b64 = cz_str(item, "data");
    uint8_t *buf;

    assert_non_null(b64);
    buf = (uint8_t *)cz_fmt(s, "%s", b64); /* decoded is shorter than encoded: reuse the copy */
    assert_int_equal(sodium_base642bin(buf, strlen(b64), b64, strlen(b64), NULL, len, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    return buf;
}

/* GET the checkpoint; check its shape and signature; parse it. */
static void get_checkpoint(struct cz_server *s, struct cp *out)
{
    const struct cz_resp *r = cz_req(s, "GET", "/v1/ledger/checkpoint", NULL, NULL);
    struct custos_note_verifier v;
    size_t tl = 0;
    const char *sig, *nl;
    char line[64];

    cz_expect(r, 200);
    assert_non_null(strstr(r->content_type, "text/plain"));
    assert_int_equal(strlen(r->body), r->len);
    assert_int_equal(custos_note_vkey_parse(&v, s->vkey), CUSTOS_OK);
    if (custos_note_open(r->body, r->len, &v, &tl) != CUSTOS_OK)
        fail_msg("checkpoint does not verify with the ledger vkey:\n%s", r->body);
    assert_int_equal(custos_checkpoint_parse(&out->c, r->body, tl), CUSTOS_OK);
    assert_string_equal(out->c.origin, v.name);
    /* C2SP layout: origin\n size\n base64 root\n \n "— " name " " base64(keyid||sig)\n */
    nl = strchr(r->body, '\n');
    assert_non_null(nl);
    assert_int_equal((size_t)(nl - r->body), strlen(v.name));
    assert_int_equal(memcmp(r->body, v.name, strlen(v.name)), 0);
    snprintf(line, sizeof(line), "%llu\n", (unsigned long long)out->c.size);
    assert_int_equal(strncmp(nl + 1, line, strlen(line)), 0);
    assert_true(tl < r->len && r->body[tl] == '\n' && r->body[tl - 1] == '\n');
    sig = r->body + tl + 1;
    assert_int_equal(strncmp(sig, "\xe2\x80\x94 ", 4), 0);
    assert_int_equal(strncmp(sig + 4, v.name, strlen(v.name)), 0);
    assert_int_equal(sig[4 + strlen(v.name)], ' ');
    assert_int_equal(r->body[r->len - 1], '\n');
    {
        /* the base64 root line is the root the struct holds */
        const char *rootline = strchr(nl + 1, '\n') + 1;
        char b64[64];
        uint8_t root[CUSTOS_HASH_BYTES];

        snprintf(b64, sizeof(b64), "%.*s", (int)strcspn(rootline, "\n"), rootline);
        b64_hash(b64, root);
        assert_memory_equal(root, out->c.root, CUSTOS_HASH_BYTES);
    }
    out->text = (char *)cz_fmt(s, "%s", r->body);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Poll the checkpoint until it covers more than `than` entries (new ones are signed within a second). */
static void checkpoint_beyond(struct cz_server *s, uint64_t than, struct cp *out)
{
    int i;

    for (i = 0; i < 1000; i++) {
        get_checkpoint(s, out);
        assert_true(out->c.size >= than); /* never goes back */
        if (out->c.size > than)
            return;
        sleep_ms(10);
    }
    fail_msg("no new checkpoint beyond size %llu after 10 s", (unsigned long long)than);
}

static void test_checkpoint_public_and_signed(void **state)
{
    struct cz_server *s = *state;
    struct cp cp;
    char out[2048], vkey[512];

    get_checkpoint(s, &cp);
    assert_true(cp.c.size > 0); /* init and setup already produced entries */
    /* `custos ledger key` works while the server holds the data directory, and agrees */
    assert_int_equal(cz_cli(s, out, sizeof(out), "ledger", "key", "--data", s->data, NULL), 0);
    cz_last_line(out, vkey, sizeof(vkey));
    assert_string_equal(vkey, s->vkey);
    /* a bad token on a public route changes nothing */
    cz_expect(cz_req(s, "GET", "/v1/ledger/checkpoint", "cus_nope", NULL), 200);
    /* a note signed by another key does not verify under ours */
    {
        struct custos_note_verifier other;
        char okey[512];
        uint8_t pk[32], sk[64];
        size_t tl;

        crypto_sign_keypair(pk, sk);
        assert_int_equal(custos_note_vkey_format(okey, sizeof(okey), cp.c.origin, pk), CUSTOS_OK);
        assert_int_equal(custos_note_vkey_parse(&other, okey), CUSTOS_OK);
        assert_int_not_equal(custos_note_open(cp.text, strlen(cp.text), &other, &tl), CUSTOS_OK);
        sodium_memzero(sk, sizeof(sk));
    }
}

static void test_entries_access(void **state)
{
    struct cz_server *s = *state;
    const struct cz_resp *r;
    json_t *e;
    size_t i;

    cz_expect_error(cz_req(s, "GET", "/v1/ledger/entries", NULL, NULL), 401, "unauthenticated");
    cz_expect_error(cz_req(s, "GET", "/v1/ledger/entries", s->svc.token, NULL), 403, "forbidden");
    cz_expect_error(cz_req(s, "GET", "/v1/ledger/entries", s->sup.token, NULL), 403, "forbidden");
    cz_expect_error(cz_req(s, "GET", "/v1/ledger/entries", s->mint.token, NULL), 403, "forbidden");
    r = cz_req(s, "GET", "/v1/ledger/entries?start=0&count=3", s->aud.token, NULL);
    cz_expect(r, 200);
    assert_non_null(strstr(r->cache_control, "no-store"));
    e = cz_get(r->json, "entries");
    assert_int_equal(json_array_size(e), 3);
    for (i = 0; i < 3; i++) {
        json_t *item = json_array_get(e, i), *decoded;
        const uint8_t *bytes;
        size_t len = 0;

        assert_int_equal(json_integer_value(json_object_get(item, "index")), i);
        bytes = entry_bytes(s, item, &len);
        decoded = cz_keep_json(s, json_loadb((const char *)bytes, len, 0, NULL));
        assert_non_null(decoded);
        assert_true(json_equal(decoded, json_object_get(item, "event")));
        assert_true(json_is_string(json_object_get(decoded, "action")));
        assert_true(json_is_string(json_object_get(decoded, "result")));
        assert_true(json_is_integer(json_object_get(decoded, "time")));
    }
    r = cz_req(s, "GET", "/v1/ledger/entries?start=1&count=2", s->admin_token, NULL);
    cz_expect(r, 200);
    assert_int_equal(json_array_size(cz_get(r->json, "entries")), 2);
    assert_int_equal(json_integer_value(cz_get(json_array_get(cz_get(r->json, "entries"), 0), "index")), 1);
    /* count past the end is clipped to the size the same response reports */
    r = cz_req(s, "GET", "/v1/ledger/entries?start=2&count=1000", s->aud.token, NULL);
    cz_expect(r, 200);
    assert_true(json_integer_value(cz_get(r->json, "size")) > 2);
    assert_int_equal(json_array_size(cz_get(r->json, "entries")), json_integer_value(cz_get(r->json, "size")) - 2);
    /* and without parameters: from 0, at most 100 */
    r = cz_req(s, "GET", "/v1/ledger/entries", s->aud.token, NULL);
    cz_expect(r, 200);
    assert_int_equal(json_integer_value(cz_get(json_array_get(cz_get(r->json, "entries"), 0), "index")), 0);
    assert_true(json_array_size(cz_get(r->json, "entries")) <= 100);
    /* the reads of the ledger are themselves recorded, and the denials too */
    e = cz_ledger_entries(s);
    assert_non_null(cz_find_event(e, "action", "ledger.read", "actor", "aud", "result", "ok", NULL));
    assert_non_null(cz_find_event(e, "action", "ledger.read", "actor", "svc", "result", "denied", NULL));
}

static void test_entries_bad_params(void **state)
{
    struct cz_server *s = *state;
    static const char *const q[] = {"start=abc", "start=-1", "start=01", "start=1.0", "start=",
                                    "count=0", "count=1001", "count=-5", "count=x", "start=99999999",
                                    "start=18446744073709551616", "start=0&start=1", "begin=0", NULL};
    size_t i;

    for (i = 0; q[i]; i++)
        cz_expect_error(cz_req(s, "GET", cz_fmt(s, "/v1/ledger/entries?%s", q[i]), s->aud.token, NULL), 400,
                        "bad_request");
    cz_expect(cz_req(s, "GET", "/v1/ledger/entries?count=1000", s->aud.token, NULL), 200);
}

static void test_events(void **state)
{
    struct cz_server *s = *state;
    const char *a = cz_create_subject(s, s->svc.token, ALICE);
    const char *rpath = cz_fmt(s, "/v1/subjects/%s?purpose=delivery&fields=name,phone", a);
    char forged[48];
    uint8_t raw[32];
    json_t *e, *ev, *f;
    size_t i;

    cz_expect(cz_req(s, "GET", rpath, s->svc.token, NULL), 200);
    cz_expect(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=support", a), s->sup.token, NULL), 200);
    cz_expect_error(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=support", a), s->svc.token, NULL), 403,
                    "forbidden");
    cz_expect(cz_req(s, "GET", "/v1/subjects?email=ledger.alice%40gmail.com&purpose=account", s->svc.token, NULL),
              200);
    randombytes_buf(raw, sizeof(raw));
    memcpy(forged, "cus_", 4);
    sodium_bin2base64(forged + 4, 44, raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    cz_expect_error(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=account", a), forged, NULL), 401,
                    "unauthenticated");
    cz_expect_error(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=account", a), "garbage", NULL), 401,
                    "unauthenticated");
    cz_expect_error(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=account", a), NULL, NULL), 401,
                    "unauthenticated");
    e = cz_ledger_entries(s);

    /* the plain read: who, which token, from where, which subject, why, which fields */
    ev = cz_find_event(e, "action", "subject.read", "actor", "svc", "subject", a, "purpose", "delivery", "result",
                       "ok", NULL);
    assert_non_null(ev);
    f = json_object_get(ev, "fields");
    assert_int_equal(json_array_size(f), 2);
    for (i = 0; i < 2; i++) {
        const char *p = json_string_value(json_array_get(f, i));

        assert_true(strcmp(p, "name") == 0 || strcmp(p, "phone") == 0);
    }
    assert_string_equal(cz_str(ev, "source"), "127.0.0.1");
    assert_non_null(cz_str(ev, "token"));
    assert_int_equal(strlen(cz_str(ev, "token")), 16);
    assert_null(strstr(s->svc.token, cz_str(ev, "token"))); /* a hash prefix, not the token */
    assert_true(json_is_integer(json_object_get(ev, "time")));

    /* the masked read lists what was masked */
    ev = cz_find_event(e, "action", "subject.read", "actor", "sup", "subject", a, "result", "ok", NULL);
    assert_non_null(ev);
    assert_string_equal(cz_str(ev, "purpose"), "support");
    assert_true(json_array_size(json_object_get(ev, "masked")) >= 5);

    /* the denied read */
    ev = cz_find_event(e, "action", "subject.read", "actor", "svc", "subject", a, "purpose", "support", NULL);
    assert_non_null(ev);
    assert_string_equal(cz_str(ev, "result"), "denied");

    /* the search names the field, never the value */
    ev = cz_find_event(e, "action", "subject.search", "actor", "svc", "result", "ok", NULL);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_array_get(json_object_get(ev, "fields"), 0)), "email");
    assert_int_equal(json_integer_value(json_object_get(ev, "count")), 1);

    /* failed authentications, each with its reason */
    ev = cz_find_event(e, "action", "auth.fail", "reason", "unknown_token", NULL);
    assert_non_null(ev);
    assert_string_equal(cz_str(ev, "result"), "denied");
    assert_string_equal(cz_str(ev, "source"), "127.0.0.1");
    assert_int_equal(strlen(cz_str(ev, "token")), 16);
    assert_non_null(cz_find_event(e, "action", "auth.fail", "reason", "malformed_token", "result", "denied", NULL));
    assert_non_null(cz_find_event(e, "action", "auth.fail", "reason", "missing_token", "result", "denied", NULL));

    /* principal and token administration; a create names the secret made and its lifetime (the
       first one the admin made: svc, the default 365 days) */
    ev = cz_find_event(e, "action", "principal.create", "actor", "admin", "result", "ok", NULL);
    assert_non_null(ev);
    assert_int_equal(strncmp(cz_str(ev, "target"), "svc secret ", 11), 0);
    assert_int_equal(strspn(cz_str(ev, "target") + 11, "0123456789abcdef"), 16);
    assert_string_equal(cz_str(ev, "target") + 27, " for 365 days");
    assert_non_null(cz_find_event(e, "action", "token.issue", "actor", "svc", "result", "ok", NULL));
    assert_non_null(cz_find_event(e, "action", "subject.create", "actor", "svc", "subject", a, "result", "ok", NULL));

    /* indexes are dense and the decoded event is the entry's bytes */
    for (i = 0; i < json_array_size(e); i++) {
        json_t *item = json_array_get(e, i);
        size_t len = 0;
        const uint8_t *bytes = entry_bytes(s, item, &len);
        json_t *d = cz_keep_json(s, json_loadb((const char *)bytes, len, 0, NULL));

        assert_int_equal(json_integer_value(json_object_get(item, "index")), i);
        assert_true(json_equal(d, json_object_get(item, "event")));
    }
}

static void test_no_personal_values_in_ledger(void **state)
{
    struct cz_server *s = *state;
    const char *a = cz_create_subject(s, s->svc.token, ALICE);
    const char *b = cz_create_subject(s, s->svc.token, BOB);
    const char *secrets[8];
    json_t *e;
    size_t i, k, n = 0;

    /* every kind of access, including failures that echo input back */
    cz_expect(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=account", a), s->svc.token, NULL), 200);
    cz_expect(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s?purpose=support", a), s->sup.token, NULL), 200);
    cz_expect(cz_req(s, "GET", "/v1/subjects?email=LEDGER.ALICE%40gmail.com&purpose=account", s->svc.token, NULL), 200);
    cz_expect(cz_req(s, "GET", "/v1/subjects?phone=01012346960&purpose=account", s->svc.token, NULL), 200);
    cz_expect(cz_req(s, "GET", "/v1/subjects?phone=010-5555-0101&purpose=support", s->sup.token, NULL), 200);
    cz_expect(cz_req(s, "PATCH", cz_fmt(s, "/v1/subjects/%s", b), s->svc.token, "{\"phone\":\"010-1234-6960\"}"), 200);
    cz_expect_error(cz_req(s, "PATCH", cz_fmt(s, "/v1/subjects/%s", b), s->svc.token, "{\"phone\":\"ledger.alice\"}"),
                    400, "bad_request");
    cz_expect_error(cz_req(s, "POST", "/v1/subjects", s->svc.token,
                           "{\"name\":\"남궁민수\",\"email\":\"gmail.com\"}"),
                    400, "bad_request");
    cz_expect_error(cz_req(s, "GET", "/v1/subjects?email=ledger.bob%40example.com&purpose=support", s->svc.token, NULL),
                    403, "forbidden");
    cz_expect(cz_req(s, "GET", cz_fmt(s, "/v1/subjects/%s/export", a), cz_mint(s, a), NULL), 200);
    cz_expect(cz_req(s, "POST", cz_fmt(s, "/v1/subjects/%s/token", b), s->mint.token, NULL), 200);
    cz_expect(cz_req(s, "DELETE", cz_fmt(s, "/v1/subjects/%s", a), s->svc.token, NULL), 200);
    cz_expect_error(cz_req(s, "POST", "/v1/auth/token", NULL, "{\"principal\":\"svc\",\"secret\":\"cps_guess\"}"), 401,
                    "unauthenticated");

    secrets[n++] = s->admin_token;
    secrets[n++] = s->admin_secret;
    secrets[n++] = s->svc.token;
    secrets[n++] = s->svc.secret;
    secrets[n++] = s->sup.token;
    secrets[n++] = "cps_guess";
    e = cz_ledger_entries(s);
    assert_true(json_array_size(e) > 20);
    for (i = 0; i < json_array_size(e); i++) {
        size_t len = 0;
        const uint8_t *bytes = entry_bytes(s, json_array_get(e, i), &len);
        const char *text = cz_fmt(s, "%.*s", (int)len, (const char *)bytes);

        assert_int_equal(strlen(text), len); /* no NUL inside an entry */
        for (k = 0; PERSONAL[k]; k++)
            if (strstr(text, PERSONAL[k]))
                fail_msg("ledger entry %zu holds the personal value '%s': %s", i, PERSONAL[k], text);
        for (k = 0; k < n; k++)
            if (strstr(text, secrets[k]) || strstr(text, secrets[k] + 4))
                fail_msg("ledger entry %zu holds a token or secret: %s", i, text);
    }
}

static void test_inclusion_proofs_verify(void **state)
{
    struct cz_server *s = *state;
    struct cp cp;
    json_t *e;
    uint64_t i;

    cz_create_subject(s, s->svc.token, ALICE);
    cz_expect(cz_req(s, "GET", "/v1/subjects?email=ledger.alice%40gmail.com&purpose=account", s->svc.token, NULL), 200);
    checkpoint_beyond(s, 0, &cp);
    e = cz_ledger_entries(s);
    assert_true(json_array_size(e) >= cp.c.size);
    for (i = 0; i < cp.c.size; i++) {
        const struct cz_resp *r = cz_req(
            s, "GET", cz_fmt(s, "/v1/ledger/proof/inclusion?index=%llu&size=%llu", (unsigned long long)i,
                             (unsigned long long)cp.c.size),
            NULL, NULL);
        uint8_t proof[CUSTOS_PROOF_MAX][CUSTOS_HASH_BYTES], leaf[CUSTOS_HASH_BYTES];
        json_t *h;
        size_t k, len = 0;
        const uint8_t *bytes;

        cz_expect(r, 200);
        assert_int_equal(json_integer_value(cz_get(r->json, "leaf_index")), i);
        assert_int_equal(json_integer_value(cz_get(r->json, "tree_size")), cp.c.size);
        h = cz_get(r->json, "hashes");
        assert_true(json_is_array(h));
        assert_true(json_array_size(h) <= CUSTOS_PROOF_MAX);
        for (k = 0; k < json_array_size(h); k++)
            b64_hash(json_string_value(json_array_get(h, k)), proof[k]);
        bytes = entry_bytes(s, json_array_get(e, (size_t)i), &len);
        custos_merkle_leaf_hash(leaf, bytes, len);
        if (custos_merkle_verify_inclusion(i, cp.c.size, leaf, (const uint8_t(*)[CUSTOS_HASH_BYTES])proof,
                                           json_array_size(h), cp.c.root) != CUSTOS_OK)
            fail_msg("inclusion proof for entry %llu in tree %llu does not verify", (unsigned long long)i,
                     (unsigned long long)cp.c.size);
        /* and the check has teeth: one flipped byte of the entry fails */
        if (len) {
            uint8_t *copy = (uint8_t *)cz_fmt(s, "%.*s", (int)len, (const char *)bytes);

            copy[len / 2] ^= 1;
            custos_merkle_leaf_hash(leaf, copy, len);
            assert_int_not_equal(custos_merkle_verify_inclusion(i, cp.c.size, leaf,
                                                                (const uint8_t(*)[CUSTOS_HASH_BYTES])proof,
                                                                json_array_size(h), cp.c.root),
                                 CUSTOS_OK);
        }
    }
}

static void test_consistency_proof_verifies(void **state)
{
    struct cz_server *s = *state;
    struct cp one, two;
    const struct cz_resp *r;
    uint8_t proof[CUSTOS_PROOF_MAX][CUSTOS_HASH_BYTES];
    json_t *h;
    size_t k;

    checkpoint_beyond(s, 0, &one);
    cz_create_subject(s, s->svc.token, ALICE);
    cz_create_subject(s, s->svc.token, BOB);
    cz_expect(cz_req(s, "GET", "/v1/subjects?email=ledger.bob%40example.com&purpose=account", s->svc.token, NULL), 200);
    checkpoint_beyond(s, one.c.size, &two);

    r = cz_req(s, "GET", cz_fmt(s, "/v1/ledger/proof/consistency?from=%llu&to=%llu", (unsigned long long)one.c.size,
                                (unsigned long long)two.c.size),
               NULL, NULL);
    cz_expect(r, 200);
    h = cz_get(r->json, "hashes");
    assert_true(json_is_array(h));
    assert_true(json_array_size(h) >= 1 && json_array_size(h) <= CUSTOS_PROOF_MAX);
    for (k = 0; k < json_array_size(h); k++)
        b64_hash(json_string_value(json_array_get(h, k)), proof[k]);
    if (custos_merkle_verify_consistency(one.c.size, two.c.size, one.c.root, two.c.root,
                                         (const uint8_t(*)[CUSTOS_HASH_BYTES])proof, json_array_size(h)) != CUSTOS_OK)
        fail_msg("consistency proof %llu -> %llu does not verify", (unsigned long long)one.c.size,
                 (unsigned long long)two.c.size);
    /* with teeth: another root for the old tree fails */
    {
        uint8_t bad[CUSTOS_HASH_BYTES];

        memcpy(bad, one.c.root, sizeof(bad));
        bad[0] ^= 0x80;
        assert_int_not_equal(custos_merkle_verify_consistency(one.c.size, two.c.size, bad, two.c.root,
                                                              (const uint8_t(*)[CUSTOS_HASH_BYTES])proof,
                                                              json_array_size(h)),
                             CUSTOS_OK);
    }
    /* a tree is consistent with itself: empty proof */
    r = cz_req(s, "GET", cz_fmt(s, "/v1/ledger/proof/consistency?from=%llu&to=%llu", (unsigned long long)two.c.size,
                                (unsigned long long)two.c.size),
               NULL, NULL);
    cz_expect(r, 200);
    assert_int_equal(json_array_size(cz_get(r->json, "hashes")), 0);
    assert_int_equal(custos_merkle_verify_consistency(two.c.size, two.c.size, two.c.root, two.c.root, NULL, 0),
                     CUSTOS_OK);
    /* and from size 1 to now, the longest-reaching proof */
    r = cz_req(s, "GET", cz_fmt(s, "/v1/ledger/proof/consistency?from=1&to=%llu", (unsigned long long)two.c.size), NULL,
               NULL);
    cz_expect(r, 200);
    {
        json_t *e = cz_ledger_entries(s);
        uint8_t leaf0[CUSTOS_HASH_BYTES];
        size_t len = 0;
        const uint8_t *bytes = entry_bytes(s, json_array_get(e, 0), &len);

        h = cz_get(r->json, "hashes");
        for (k = 0; k < json_array_size(h); k++)
            b64_hash(json_string_value(json_array_get(h, k)), proof[k]);
        custos_merkle_leaf_hash(leaf0, bytes, len); /* the root of the 1-leaf tree is its leaf hash */
        assert_int_equal(custos_merkle_verify_consistency(1, two.c.size, leaf0, two.c.root,
                                                          (const uint8_t(*)[CUSTOS_HASH_BYTES])proof,
                                                          json_array_size(h)),
                         CUSTOS_OK);
    }
}

static void test_proof_bad_params(void **state)
{
    struct cz_server *s = *state;
    struct cp cp;
    const char *q[40];
    size_t i, n = 0;
    unsigned long long size;

    checkpoint_beyond(s, 0, &cp);
    size = (unsigned long long)cp.c.size;
    q[n++] = "/v1/ledger/proof/inclusion";
    q[n++] = "/v1/ledger/proof/inclusion?index=0";
    q[n++] = "/v1/ledger/proof/inclusion?size=1";
    q[n++] = "/v1/ledger/proof/inclusion?index=abc&size=1";
    q[n++] = "/v1/ledger/proof/inclusion?index=-1&size=1";
    q[n++] = "/v1/ledger/proof/inclusion?index=00&size=1";
    q[n++] = "/v1/ledger/proof/inclusion?index=0&size=0";
    q[n++] = cz_fmt(s, "/v1/ledger/proof/inclusion?index=%llu&size=%llu", size, size);
    q[n++] = cz_fmt(s, "/v1/ledger/proof/inclusion?index=0&size=%llu", size + 1000000);
    q[n++] = "/v1/ledger/proof/inclusion?index=0&size=18446744073709551615";
    q[n++] = "/v1/ledger/proof/inclusion?index=0&size=99999999999999999999";
    q[n++] = "/v1/ledger/proof/inclusion?index=0&size=1&size=1";
    q[n++] = "/v1/ledger/proof/inclusion?index=0&size=1&from=1";
    q[n++] = "/v1/ledger/proof/inclusion?index=%200&size=1";
    q[n++] = "/v1/ledger/proof/consistency";
    q[n++] = "/v1/ledger/proof/consistency?from=1";
    q[n++] = "/v1/ledger/proof/consistency?to=1";
    q[n++] = "/v1/ledger/proof/consistency?from=0&to=1";
    q[n++] = "/v1/ledger/proof/consistency?from=2&to=1";
    q[n++] = cz_fmt(s, "/v1/ledger/proof/consistency?from=1&to=%llu", size + 1000000);
    q[n++] = "/v1/ledger/proof/consistency?from=x&to=1";
    q[n++] = "/v1/ledger/proof/consistency?from=1&to=1e3";
    q[n++] = "/v1/ledger/proof/consistency?from=+1&to=1";
    q[n++] = "/v1/ledger/proof/consistency?from=1&to=1&index=0";
    for (i = 0; i < n; i++) {
        const struct cz_resp *r = cz_req(s, "GET", q[i], NULL, NULL);

        if (r->status != 400)
            fail_msg("GET %s: expected 400, got %ld %s", q[i], r->status, r->body);
        cz_expect_error(r, 400, "bad_request");
    }
    /* the good forms of the same requests work without a token */
    cz_expect(cz_req(s, "GET", cz_fmt(s, "/v1/ledger/proof/inclusion?index=0&size=%llu", size), NULL, NULL), 200);
    cz_expect(cz_req(s, "GET", cz_fmt(s, "/v1/ledger/proof/consistency?from=1&to=%llu", size), NULL, NULL), 200);
}

static void test_final_checkpoint_and_verify(void **state)
{
    struct cz_server *s = *state;
    const struct cz_resp *r;
    struct cp before, after;
    uint64_t at_least;
    char out[4096];

    get_checkpoint(s, &before);
    r = cz_req(s, "GET", "/v1/ledger/entries?count=1", s->aud.token, NULL);
    cz_expect(r, 200);
    /* entries so far, + the ledger.read just made, + the create below */
    at_least = (uint64_t)json_integer_value(cz_get(r->json, "size")) + 2;
    cz_create_subject(s, s->svc.token, BOB);
    /* stop at once: the last entries are younger than the checkpoint interval */
    cz_server_stop(s);
    assert_int_equal(cz_cli(s, out, sizeof(out), "ledger", "verify", "--data", s->data, NULL), 0);
    cz_server_start(s);
    get_checkpoint(s, &after);
    if (after.c.size < at_least)
        fail_msg("the checkpoint after a clean stop covers %llu entries, the ledger had at least %llu",
                 (unsigned long long)after.c.size, (unsigned long long)at_least);
    /* across the restart the new checkpoint extends the old one */
    r = cz_req(s, "GET", cz_fmt(s, "/v1/ledger/proof/consistency?from=%llu&to=%llu", (unsigned long long)before.c.size,
                                (unsigned long long)after.c.size),
               NULL, NULL);
    cz_expect(r, 200);
    {
        uint8_t proof[CUSTOS_PROOF_MAX][CUSTOS_HASH_BYTES];
        json_t *h = cz_get(r->json, "hashes");
        size_t k;

        for (k = 0; k < json_array_size(h); k++)
            b64_hash(json_string_value(json_array_get(h, k)), proof[k]);
        assert_int_equal(custos_merkle_verify_consistency(before.c.size, after.c.size, before.c.root, after.c.root,
                                                          (const uint8_t(*)[CUSTOS_HASH_BYTES])proof,
                                                          json_array_size(h)),
                         CUSTOS_OK);
    }
    /* tokens and data survive the restart */
    cz_expect(cz_req(s, "GET", "/v1/subjects?email=ledger.bob%40example.com&purpose=account", s->svc.token, NULL),
              200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_checkpoint_public_and_signed, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_entries_access, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_entries_bad_params, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_events, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_no_personal_values_in_ledger, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_inclusion_proofs_verify, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_consistency_proof_verifies, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_proof_bad_params, cz_setup_std, cz_teardown),
        cmocka_unit_test_setup_teardown(test_final_checkpoint_and_verify, cz_setup_std, cz_teardown),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests_name("api ledger", tests, NULL, NULL);
}

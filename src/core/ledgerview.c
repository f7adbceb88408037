/*
 * ledgerview.c - reading the ledger through the vault: entries with their
 * decoded events for auditors, under policy and audited like any read.
 *
 * Also the parser of a proof route's answer, for witnesses (custos_proof_json_parse).
 *
 * Must never: return entries to a caller without ledger.read, allocate in
 * proportion to anything but the capped count.
 */
#include "core/vault_int.h"
#include "core/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "custos/banned.h"

#define ENTRIES_MAX 1000
#define ENTRIES_DEFAULT 100

enum custos_err custos_parse_u64(const char *s, const char *what, uint64_t *out)
{
    unsigned long long x;
    char *end;

    if (!s || !*s || strlen(s) > 20 || s[0] < '0' || s[0] > '9' || (s[0] == '0' && s[1]))
        return custos_err_set(CUSTOS_ERR_INVALID, "%s must be a non-negative decimal integer", what);
    errno = 0;
    x = strtoull(s, &end, 10);
    if (errno || *end)
        return custos_err_set(CUSTOS_ERR_INVALID, "%s must be a non-negative decimal integer", what);
    *out = (uint64_t)x;
    return CUSTOS_OK;
}

enum custos_err custos_ledger_entries_json(struct custos_vault *v, const struct custos_caller *c, const char *start_s,
                                           const char *count_s, json_t **out)
{
    struct custos_event e;
    uint64_t start = 0, count = ENTRIES_DEFAULT, size, i;
    uint8_t *buf = NULL;
    char *b64 = NULL;
    json_t *arr = NULL;
    enum custos_err rc;

    *out = NULL;
    custos_event_init(&e, "ledger.read", c);
    if (!custos_caller_may(v, c, CUSTOS_OP_LEDGER_READ)) {
        rc = custos_err_set(CUSTOS_ERR_FORBIDDEN, "reading ledger entries needs the auditor or admin role");
        goto done;
    }
    if ((start_s && (rc = custos_parse_u64(start_s, "start", &start))) ||
        (count_s && (rc = custos_parse_u64(count_s, "count", &count))))
        goto done;
    if (count == 0 || count > ENTRIES_MAX) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "count must be 1..%d", ENTRIES_MAX);
        goto done;
    }
    size = custos_ledger_size(v->ledger);
    if (start > size) {
        rc = custos_err_set(CUSTOS_ERR_INVALID, "start is beyond the ledger size %llu", (unsigned long long)size);
        goto done;
    }
    if (count > size - start)
        count = size - start;
    buf = malloc(CUSTOS_LEDGER_ENTRY_MAX);
    b64 = malloc(sodium_base64_ENCODED_LEN(CUSTOS_LEDGER_ENTRY_MAX, sodium_base64_VARIANT_ORIGINAL));
    arr = json_array();
    if (!buf || !b64 || !arr) {
        rc = CUSTOS_ERR_NOMEM;
        goto done;
    }
    for (i = 0; i < count; i++) {
        size_t len = 0;
        json_t *ev;

        if ((rc = custos_ledger_read(v->ledger, start + i, buf, CUSTOS_LEDGER_ENTRY_MAX, &len)))
            goto done;
        sodium_bin2base64(b64, sodium_base64_ENCODED_LEN(CUSTOS_LEDGER_ENTRY_MAX, sodium_base64_VARIANT_ORIGINAL), buf,
                          len, sodium_base64_VARIANT_ORIGINAL);
        ev = json_loadb((const char *)buf, len, 0, NULL);
        if (!ev)
            ev = json_null();
        if (json_array_append_new(arr, json_pack("{s:I, s:s, s:o}", "index", (json_int_t)(start + i), "data", b64,
                                                 "event", ev))) {
            rc = CUSTOS_ERR_NOMEM;
            goto done;
        }
    }
    e.count = (int64_t)count;
    if (!(*out = json_pack("{s:o, s:I}", "entries", arr, "size", (json_int_t)size)))
        rc = CUSTOS_ERR_NOMEM;
    arr = NULL;
done:
    free(buf);
    free(b64);
    json_decref(arr);
    return custos_audit_finish(v, &e, rc, out);
}

enum custos_err custos_proof_json_parse(const char *body, size_t len, uint8_t proof[][32], size_t *n)
{
    json_t *j = NULL, *h;
    enum custos_err rc;
    size_t i;

    *n = 0;
    if ((rc = custos_json_parse(body, len, 65536, 0, &j)))
        return rc;
    h = json_object_get(j, "hashes");
    if (!json_is_array(h) || json_array_size(h) > CUSTOS_PROOF_MAX) {
        json_decref(j);
        return custos_err_set(CUSTOS_ERR_INVALID, "proof: hashes must be an array of at most %d", CUSTOS_PROOF_MAX);
    }
    for (i = 0; i < json_array_size(h); i++) {
        const char *s = json_string_value(json_array_get(h, i));
        size_t bl = 0;

        if (!s || !custos_base64_decode(proof[i], 32, &bl, s, strlen(s)) || bl != 32) {
            json_decref(j);
            return custos_err_set(CUSTOS_ERR_INVALID, "proof: hashes[%zu] is not the base64 of 32 bytes", i);
        }
    }
    *n = json_array_size(h);
    json_decref(j);
    return CUSTOS_OK;
}

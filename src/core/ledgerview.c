/*
 * ledgerview.c - reading the ledger through the vault: entries with their
 * decoded events for auditors, under policy and audited like any read.
 *
 * Must never: return entries to a caller without ledger.read, allocate in
 * proportion to anything but the capped count.
 */
#include "core/vault_int.h"

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

/*
 * h_ledger.c - /v1/ledger routes.  Checkpoint and proofs are public (hashes
 * only, as in Certificate Transparency) so outside witnesses need no
 * credential; entries need ledger.read (the core checks and audits).
 */
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "custos/ledger.h"

#include "custos/banned.h"

void h_ledger_checkpoint(struct req *r)
{
    char buf[CUSTOS_NOTE_MAX];
    size_t len = 0;
    struct custos_ledger *l = custos_vault_ledger(r->vault);
    enum custos_err rc = custos_ledger_checkpoint(l, buf, sizeof(buf), &len);

    if (rc == CUSTOS_ERR_NOTFOUND) {
        /* nothing signed yet: sign one now rather than make a witness wait */
        if ((rc = custos_ledger_checkpoint_now(l)) == CUSTOS_OK)
            rc = custos_ledger_checkpoint(l, buf, sizeof(buf), &len);
    }
    if (rc)
        custos_reply_error(r, rc);
    else
        custos_reply_text(r, 200, buf, len, "text/plain; charset=utf-8");
}

void h_ledger_entries(struct req *r)
{
    json_t *out = NULL;
    enum custos_err rc = custos_ledger_entries_json(r->vault, &r->caller, custos_req_query(r, "start"),
                                                    custos_req_query(r, "count"), &out);

    custos_reply_result(r, rc, out, 200);
}

static json_t *hashes_json(uint8_t (*h)[CUSTOS_HASH_BYTES], size_t n)
{
    json_t *arr = json_array();
    char b64[sodium_base64_ENCODED_LEN(CUSTOS_HASH_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    size_t i;

    for (i = 0; arr && i < n; i++) {
        sodium_bin2base64(b64, sizeof(b64), h[i], CUSTOS_HASH_BYTES, sodium_base64_VARIANT_ORIGINAL);
        if (json_array_append_new(arr, json_string(b64))) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

void h_ledger_inclusion(struct req *r)
{
    uint8_t proof[CUSTOS_PROOF_MAX][CUSTOS_HASH_BYTES];
    uint64_t index, size;
    size_t n = 0;
    enum custos_err rc;
    json_t *h;

    if ((rc = custos_parse_u64(custos_req_query(r, "index"), "index", &index)) ||
        (rc = custos_parse_u64(custos_req_query(r, "size"), "size", &size))) {
        custos_reply_error(r, rc);
        return;
    }
    if (index >= size || size > custos_ledger_size(custos_vault_ledger(r->vault))) {
        custos_err_set(CUSTOS_ERR_INVALID, "need index < size <= %llu",
                       (unsigned long long)custos_ledger_size(custos_vault_ledger(r->vault)));
        custos_reply_error(r, CUSTOS_ERR_INVALID);
        return;
    }
    if ((rc = custos_ledger_prove_inclusion(custos_vault_ledger(r->vault), index, size, proof, &n))) {
        custos_reply_error(r, rc);
        return;
    }
    h = hashes_json(proof, n);
    custos_reply_json(r, 200, h ? json_pack("{s:I, s:I, s:o}", "leaf_index", (json_int_t)index, "tree_size",
                                            (json_int_t)size, "hashes", h)
                                : NULL);
}

void h_ledger_consistency(struct req *r)
{
    uint8_t proof[CUSTOS_PROOF_MAX][CUSTOS_HASH_BYTES];
    uint64_t from, to;
    size_t n = 0;
    enum custos_err rc;
    json_t *h;

    if ((rc = custos_parse_u64(custos_req_query(r, "from"), "from", &from)) ||
        (rc = custos_parse_u64(custos_req_query(r, "to"), "to", &to))) {
        custos_reply_error(r, rc);
        return;
    }
    if (from == 0 || from > to || to > custos_ledger_size(custos_vault_ledger(r->vault))) {
        custos_err_set(CUSTOS_ERR_INVALID, "need 0 < from <= to <= %llu",
                       (unsigned long long)custos_ledger_size(custos_vault_ledger(r->vault)));
        custos_reply_error(r, CUSTOS_ERR_INVALID);
        return;
    }
    if ((rc = custos_ledger_prove_consistency(custos_vault_ledger(r->vault), from, to, proof, &n))) {
        custos_reply_error(r, rc);
        return;
    }
    h = hashes_json(proof, n);
    custos_reply_json(r, 200, h ? json_pack("{s:o}", "hashes", h) : NULL);
}

/*
 * fuzz_receipt.c - libFuzzer target: an erasure receipt as `custos receipt
 * verify FILE --data DIR` reads it (the file comes from a customer, or from
 * anyone claiming to be one).
 *
 * Input: the receipt text.  Paths: custos_receipt_verify against a vault made
 * once in a temporary directory at start (its own random ledger key), and
 * custos_receipt_verify_key under that vault's verifier key (`receipt verify
 * --vkey`): bounded JSON parse, members and types, the subject id, the
 * retained entries and the canonical text they form, the Ed25519 signature.
 *
 * Invariants checked beyond "no crash, no leak, no UB":
 *  - nothing verifies: the vault's ledger key is fresh, so no input (the
 *    checked-in seeds included) carries its signature;
 *  - the explanation written to `what` is a NUL-terminated line within its
 *    buffer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "custos/note.h"
#include "custos/vault.h"

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256];
static struct custos_note_verifier vk;

static void cleanup(void)
{
    char cmd[300];

    if (dir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "fuzz_receipt: could not remove %s\n", dir);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char secret[CUSTOS_SECRET_LEN + 1], token[CUSTOS_TOKEN_LEN + 1];
    const char *tmp = getenv("TMPDIR");

    (void)argc;
    (void)argv;
    if (sodium_init() < 0)
        abort();
    snprintf(dir, sizeof(dir), "%s/custos-fuzz-receipt-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(dir) || rmdir(dir) != 0 ||
        custos_vault_init(dir, NULL, 0, NULL, 0, "fuzz.example/receipt", secret, token) != CUSTOS_OK) {
        fprintf(stderr, "fuzz_receipt: cannot make a vault in %s\n", dir);
        abort();
    }
    atexit(cleanup);
    {
        char origin[256], vkey[512];
        uint8_t pk[32];

        if (custos_vault_ledger_identity(dir, origin, sizeof(origin), pk) != CUSTOS_OK ||
            custos_note_vkey_format(vkey, sizeof(vkey), origin, pk) != CUSTOS_OK ||
            custos_note_vkey_parse(&vk, vkey) != CUSTOS_OK) {
            fprintf(stderr, "fuzz_receipt: no verifier key for %s\n", dir);
            abort();
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1), what[256];

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    memset(what, 'x', sizeof(what));
    FUZZ_CHECK(custos_receipt_verify(dir, buf, size, what, sizeof(what)) != CUSTOS_OK);
    FUZZ_CHECK(memchr(what, '\0', sizeof(what)) != NULL);
    FUZZ_CHECK(strchr(what, '\n') == NULL);
    memset(what, 'x', sizeof(what));
    FUZZ_CHECK(custos_receipt_verify_key(&vk, buf, size, what, sizeof(what)) != CUSTOS_OK);
    FUZZ_CHECK(memchr(what, '\0', sizeof(what)) != NULL);
    FUZZ_CHECK(strchr(what, '\n') == NULL);
    free(buf);
    return 0;
}

/*
 * note.h - C2SP signed notes (signed-note v1.0.0) with Ed25519 and
 * tlog-checkpoint v1.0.0 bodies.
 *
 * A signed note is: text (one or more lines, each ending in '\n'), a blank
 * line, then one or more signature lines
 *   "\u2014 " name " " base64(4-byte key id || 64-byte signature) "\n".
 * Ed25519 key id = SHA-256(name || 0x0A || 0x01 || pubkey)[:4].
 * vkey = name "+" hex(key id) "+" base64(0x01 || pubkey).
 *
 * Functions that produce text write into caller buffers and return
 * CUSTOS_ERR_TOOBIG when the buffer is short; nothing allocates.
 */
#ifndef CUSTOS_NOTE_H
#define CUSTOS_NOTE_H

#include <stddef.h>
#include <stdint.h>

#include "custos/err.h"
#include "custos/merkle.h"

#define CUSTOS_NOTE_NAME_MAX 255
#define CUSTOS_NOTE_MAX 8192 /* cap on a note we parse or produce */

struct custos_note_verifier {
    char name[CUSTOS_NOTE_NAME_MAX + 1];
    uint8_t key_id[4];
    uint8_t pubkey[32];
};

/* Key id of an Ed25519 key named `name`. */
void custos_note_key_id(uint8_t out[4], const char *name, const uint8_t pubkey[32]);

/* Format the vkey of (name, pubkey) into out (NUL-terminated). */
enum custos_err custos_note_vkey_format(char *out, size_t outlen, const char *name, const uint8_t pubkey[32]);

/* Parse a vkey; CUSTOS_ERR_INVALID when malformed, wrong type byte or key id mismatch. */
enum custos_err custos_note_vkey_parse(struct custos_note_verifier *v, const char *vkey);

/*
 * Sign `text` (len bytes, must be non-empty and end in '\n', no blank-line
 * issues) with Ed25519 secret key `sk` (libsodium 64-byte form) under
 * `name`; write the complete signed note (text, blank line, one signature
 * line) to out, NUL-terminated, and its length (without NUL) to *outlen.
 */
enum custos_err custos_note_sign(char *out, size_t outcap, size_t *outlen, const char *text, size_t len,
                                 const char *name, const uint8_t sk[64]);

/*
 * Open a signed note: check its shape, find the signature line(s) whose name
 * and key id match `v`, verify.  Lines for other keys are ignored.  On
 * success *text_len is the length of the signed text (the text is the
 * prefix of `note`).  CUSTOS_ERR_INVALID when malformed or when no line
 * from `v` verifies (a line from `v` that fails to verify is an error).
 */
enum custos_err custos_note_open(const char *note, size_t len, const struct custos_note_verifier *v,
                                 size_t *text_len);

/*
 * Check a signed note's shape without verifying any signature (caps, UTF-8,
 * the text/signature split, every signature line well formed) and set
 * *text_len to the length of its text.  For reading notes signed by keys the
 * caller does not hold (e.g. to parse a checkpoint before choosing its
 * verifier); the text MUST NOT be trusted until custos_note_open succeeds.
 * CUSTOS_ERR_INVALID when malformed, CUSTOS_ERR_TOOBIG over CUSTOS_NOTE_MAX.
 */
enum custos_err custos_note_text_len(const char *note, size_t len, size_t *text_len);

/*
 * 1 when the note is well formed and has a signature line with v's key name and key id,
 * whether or not its signature verifies (for telling a note signed by another key from an
 * edited one in error messages); 0 otherwise.  Proves nothing: use custos_note_open.
 */
int custos_note_names_key(const char *note, size_t len, const struct custos_note_verifier *v);

/* tlog-checkpoint v1.0.0 body: origin line, decimal size, base64 root, each ending in '\n'. */
struct custos_checkpoint {
    char origin[CUSTOS_NOTE_NAME_MAX + 1];
    uint64_t size;
    uint8_t root[CUSTOS_HASH_BYTES];
};

enum custos_err custos_checkpoint_format(char *out, size_t outcap, size_t *outlen,
                                         const struct custos_checkpoint *cp);
/* Parse a checkpoint body (the signed text); extension lines after the root are allowed and ignored. */
enum custos_err custos_checkpoint_parse(struct custos_checkpoint *cp, const char *text, size_t len);

#endif

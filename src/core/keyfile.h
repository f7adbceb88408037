/*
 * keyfile.h - key files in DIR/keys/: the master key versions and the ledger key.
 *
 * Format (text, so an operator can see what a file is without exposing it):
 *   "custos <label> v1\n" <64 lowercase hex digits> "\n"
 * Mode 0600 in a 0700 directory; created with O_EXCL (never overwritten),
 * written, fsync'ed, then the directory fsync'ed.  Destroying a key file
 * renames it aside (<name>.destroy) and fsyncs the directory, then overwrites
 * it with zeros, fsyncs, unlinks and fsyncs the directory.
 */
#ifndef CUSTOS_KEYFILE_H
#define CUSTOS_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

#include "custos/err.h"

enum custos_err custos_keyfile_write(const char *path, const char *label, const uint8_t key[32]);
/* key must point to secure memory. */
enum custos_err custos_keyfile_read(const char *path, const char *label, uint8_t key[32]);
/* Destroy a key file (see above); CUSTOS_OK when it does not exist. */
enum custos_err custos_keyfile_destroy(const char *path);
/* The name a key file is destroyed under, after its own. */
#define CUSTOS_KEYFILE_ASIDE ".destroy"
/* Overwrite path with zeros, fsync, unlink, fsync the directory (a file set aside by
   custos_keyfile_destroy); CUSTOS_OK when it does not exist. */
enum custos_err custos_keyfile_shred(const char *path);
/* 1 when path holds nothing but zero bytes (at most 128): a key file overwritten by a destroy
   that was interrupted before its unlink (releases before the rename aside). */
int custos_keyfile_zeroed(const char *path);

/* fsync a directory (after creating, renaming or unlinking in it). */
enum custos_err custos_fsync_dir(const char *dir);
/* fsync the directory that holds `path`. */
enum custos_err custos_fsync_parent(const char *path);
/* Write a whole small file atomically: tmp, fsync, rename, fsync dir. */
enum custos_err custos_file_replace(const char *path, const void *data, size_t len, int mode);
/* Read a whole small file (cap bytes) into a malloc'd NUL-terminated buffer. */
enum custos_err custos_file_read(const char *path, size_t cap, char **out, size_t *len);

#endif

/*
 * keyfile.c - key files and small durable files.  See keyfile.h.
 * Must never: overwrite an existing key file, leave key bytes in a buffer
 * outside secure memory after returning.
 */
#include "keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "custos/banned.h"

enum custos_err custos_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    int r;

    if (fd < 0)
        return custos_err_set(CUSTOS_ERR_IO, "cannot open directory %s: %s", dir, strerror(errno));
    r = fsync(fd);
    close(fd);
    return r == 0 ? CUSTOS_OK : custos_err_set(CUSTOS_ERR_IO, "fsync %s: %s", dir, strerror(errno));
}

enum custos_err custos_fsync_parent(const char *path)
{
    char tmp[PATH_MAX];

    snprintf(tmp, sizeof(tmp), "%s", path);
    return custos_fsync_dir(dirname(tmp));
}

static enum custos_err write_all(int fd, const void *p, size_t n, const char *path)
{
    const uint8_t *b = p;

    while (n) {
        ssize_t w = write(fd, b, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return custos_err_set(CUSTOS_ERR_IO, "write %s: %s", path, strerror(errno));
        b += w;
        n -= (size_t)w;
    }
    return CUSTOS_OK;
}

enum custos_err custos_keyfile_write(const char *path, const char *label, const uint8_t key[32])
{
    char head[64], tmp[PATH_MAX];
    char *hex = sodium_malloc(65);
    int fd = -1;
    enum custos_err rc;

    if (!hex)
        return CUSTOS_ERR_NOMEM;
    snprintf(head, sizeof(head), "custos %s v1\n", label);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    sodium_bin2hex(hex, 65, key, 32);
    unlink(tmp); /* a torn attempt from an earlier crash */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = custos_err_set(CUSTOS_ERR_IO, "cannot create key file %s: %s", tmp, strerror(errno));
        goto done;
    }
    if ((rc = write_all(fd, head, strlen(head), tmp)) || (rc = write_all(fd, hex, 64, tmp)) ||
        (rc = write_all(fd, "\n", 1, tmp)))
        goto done;
    if (fsync(fd) != 0) {
        rc = custos_err_set(CUSTOS_ERR_IO, "fsync %s: %s", tmp, strerror(errno));
        goto done;
    }
    /* the final name appears only with complete, durable contents; link() never overwrites */
    if (link(tmp, path) != 0) {
        rc = custos_err_set(errno == EEXIST ? CUSTOS_ERR_EXISTS : CUSTOS_ERR_IO, "cannot create key file %s: %s",
                            path, strerror(errno));
        goto done;
    }
    rc = custos_fsync_parent(path);
done:
    if (fd >= 0)
        close(fd);
    if (fd >= 0)
        unlink(tmp);
    sodium_free(hex);
    return rc;
}

enum custos_err custos_keyfile_read(const char *path, const char *label, uint8_t key[32])
{
    char head[64];
    size_t hl, binlen = 0;
    char *buf = sodium_malloc(256);
    const char *end = NULL;
    enum custos_err rc = CUSTOS_OK;
    struct stat st;
    ssize_t n;
    int fd;

    if (!buf)
        return CUSTOS_ERR_NOMEM;
    snprintf(head, sizeof(head), "custos %s v1\n", label);
    hl = strlen(head);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = custos_err_set(errno == ENOENT ? CUSTOS_ERR_NOTFOUND : CUSTOS_ERR_IO, "cannot read key file %s: %s",
                            path, strerror(errno));
        goto done;
    }
    if (fstat(fd, &st) == 0 && (st.st_mode & 077))
        rc = custos_err_set(CUSTOS_ERR_CORRUPT, "key file %s is readable by group or others (want 0600)", path);
    n = rc ? -1 : read(fd, buf, 255);
    close(fd);
    if (rc)
        goto done;
    if (n != (ssize_t)(hl + 65) || memcmp(buf, head, hl) != 0 || buf[hl + 64] != '\n' ||
        sodium_hex2bin(key, 32, buf + hl, 64, NULL, &binlen, &end) != 0 || binlen != 32) {
        rc = custos_err_set(CUSTOS_ERR_CORRUPT, "key file %s is malformed", path);
        sodium_memzero(key, 32);
    }
done:
    sodium_free(buf);
    return rc;
}

enum custos_err custos_keyfile_shred(const char *path)
{
    uint8_t zeros[128] = {0};
    struct stat st;
    int fd = open(path, O_WRONLY | O_CLOEXEC);

    if (fd < 0)
        return errno == ENOENT ? CUSTOS_OK : custos_err_set(CUSTOS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) == 0 && st.st_size > 0 && (size_t)st.st_size <= sizeof(zeros)) {
        if (pwrite(fd, zeros, (size_t)st.st_size, 0) != st.st_size || fsync(fd) != 0) {
            close(fd);
            return custos_err_set(CUSTOS_ERR_IO, "cannot overwrite %s: %s", path, strerror(errno));
        }
    }
    close(fd);
    if (unlink(path) != 0)
        return custos_err_set(CUSTOS_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    return custos_fsync_parent(path);
}

/* The file is first renamed aside (<path>.destroy, durable), then shredded: a crash part-way
   never leaves a zeroed or half-zeroed file under a key file's name (the vault refused to open
   with one), and a file left aside is shredded by the next open (custos_vault_open). */
enum custos_err custos_keyfile_destroy(const char *path)
{
    char aside[PATH_MAX];
    enum custos_err rc;

    if ((size_t)snprintf(aside, sizeof(aside), "%s" CUSTOS_KEYFILE_ASIDE, path) >= sizeof(aside))
        return custos_err_set(CUSTOS_ERR_INVALID, "path too long");
    if (rename(path, aside) != 0) {
        if (errno != ENOENT)
            return custos_err_set(CUSTOS_ERR_IO, "cannot rename %s: %s", path, strerror(errno));
        return CUSTOS_OK; /* gone already */
    }
    if ((rc = custos_fsync_parent(path)))
        return rc;
    return custos_keyfile_shred(aside);
}

int custos_keyfile_zeroed(const char *path)
{
    uint8_t buf[129];
    ssize_t n, i;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n <= 0 || (size_t)n == sizeof(buf))
        return 0;
    for (i = 0; i < n; i++)
        if (buf[i])
            return 0;
    return 1;
}

enum custos_err custos_file_replace(const char *path, const void *data, size_t len, int mode)
{
    char tmp[PATH_MAX];
    int fd;
    enum custos_err rc;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return custos_err_set(CUSTOS_ERR_INVALID, "path too long");
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return custos_err_set(CUSTOS_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    rc = write_all(fd, data, len, tmp);
    if (!rc && fsync(fd) != 0)
        rc = custos_err_set(CUSTOS_ERR_IO, "fsync %s: %s", tmp, strerror(errno));
    close(fd);
    if (!rc && rename(tmp, path) != 0)
        rc = custos_err_set(CUSTOS_ERR_IO, "rename %s: %s", tmp, strerror(errno));
    if (rc) {
        unlink(tmp);
        return rc;
    }
    return custos_fsync_parent(path);
}

enum custos_err custos_file_read(const char *path, size_t cap, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    *out = NULL;
    if (!f)
        return custos_err_set(errno == ENOENT ? CUSTOS_ERR_NOTFOUND : CUSTOS_ERR_IO, "cannot read %s: %s", path,
                              strerror(errno));
    buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return CUSTOS_ERR_NOMEM;
    }
    n = fread(buf, 1, cap + 1, f);
    fclose(f);
    if (n > cap) {
        free(buf);
        return custos_err_set(CUSTOS_ERR_TOOBIG, "%s is larger than %zu bytes", path, cap);
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return CUSTOS_OK;
}

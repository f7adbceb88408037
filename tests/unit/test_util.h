/*
 * test_util.h - small helpers shared by the unit tests (header-only, static).
 */
#ifndef CUSTOS_TEST_UTIL_H
#define CUSTOS_TEST_UTIL_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Remove a file or a directory tree (best effort: a test's temp directory). */
static inline void rm_rf(const char *p)
{
    struct stat st;
    DIR *d;
    struct dirent *de;
    char sub[1024];

    if (lstat(p, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode) && (d = opendir(p)) != NULL) {
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            snprintf(sub, sizeof(sub), "%s/%s", p, de->d_name);
            rm_rf(sub);
        }
        closedir(d);
        rmdir(p);
    } else
        unlink(p);
}

/* 1 when the n bytes at p are all zero. */
static inline int all_zero(const uint8_t *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

#endif

/*
 * backup.c - backups that cannot resurrect an erased subject.
 *
 * A backup is a consistent copy of the data plane only: sealed records and
 * links.  No key of any kind is in it, so it cannot be read with the master
 * key alone, and once a subject's key is destroyed its sealed values in
 * every backup are noise.  No blind-index hash is in it either: the blind
 * key survives erasures, so a hash in a backup would let anyone holding the
 * live keys test guesses against an erased subject's email or phone.
 * Restore replaces the data plane and then opens the vault, which re-applies
 * every erasure tombstone (and every erasure the ledger records) to the
 * restored data and then rebuilds the blind index from the records whose
 * keys still exist (custos_blind_rebuild; an interrupted rebuild is finished
 * by the next open).  See erase.c for why this holds even against an older
 * control plane.
 *
 * Must never: copy keys or blind-index hashes, restore into a vault that is
 * in use, restore a backup of another vault.
 */
#include "core/vault_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "core/keyfile.h"

#include "custos/banned.h"

static enum custos_err origin_of(const char *dir, char *origin, size_t cap)
{
    uint8_t pk[32];

    return custos_vault_ledger_identity(dir, origin, cap, pk);
}

enum custos_err custos_backup(const char *dir, const char *out)
{
    char origin[256];
    enum custos_err rc;

    if ((rc = origin_of(dir, origin, sizeof(origin))))
        return rc;
    return custos_store_sqlite.backup(dir, out, origin, (int64_t)custos_clock_ms());
}

enum custos_err custos_restore(const char *dir, const char *in, struct custos_restore_report *rep)
{
    struct custos_vault_opts o;
    struct custos_vault *v = NULL;
    struct custos_caller sys;
    struct custos_event e;
    char origin[256], path[PATH_MAX];
    enum custos_err rc;
    int fd;

    if (rep)
        memset(rep, 0, sizeof(*rep));
    if ((rc = origin_of(dir, origin, sizeof(origin))))
        return rc;
    snprintf(path, sizeof(path), "%s/lock", dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return custos_err_set(CUSTOS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return custos_err_set(CUSTOS_ERR_LOCKED, "the vault in %s is in use: stop the server before a restore", dir);
    }
    rc = custos_store_sqlite.restore(dir, in, origin);
    if (rc) {
        close(fd);
        return rc;
    }
    /* the open that re-applies erasures and rebuilds the index keeps the lock: no other command
       may open the vault between the replacement of data.db and that open */
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    if ((rc = custos_vault_open_locked(&o, fd, &v)))
        return rc;
    if (rep) {
        rep->reapplied = v->reapplied_at_open;
        rep->ledger_recovered = custos_vault_ledger_recovered(v, &rep->torn_bytes);
        rep->ledger_missing = custos_vault_ledger_missing(v);
    }
    custos_caller_system(&sys);
    custos_event_init(&e, "backup.restore", &sys);
    e.count = (int64_t)v->reapplied_at_open;
    rc = custos_audit_outcome(v, &e, CUSTOS_OK);
    custos_vault_free(v);
    return rc;
}

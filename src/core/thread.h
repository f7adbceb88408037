/*
 * thread.h - the one way custos starts a thread.
 *
 * Owns: nothing; a helper.
 * Must never: let a thread of its own take an asynchronous signal meant for the process.  The
 * program's main thread handles SIGTERM and SIGINT (custos serve stops, custos import finishes
 * its group); a worker, ledger or webhook thread that the kernel picked to take one left the
 * main thread unaware of it: under ThreadSanitizer, whose runtime defers a signal to a point
 * where its thread is ready for it, a worker idle in epoll_wait kept a SIGTERM for over a
 * minute (CI finding: "custos serve did not stop within 60000 ms of SIGTERM").  Each thread is
 * created with those signals blocked, and the creator's own mask is left as it was.
 */
#ifndef CUSTOS_THREAD_H
#define CUSTOS_THREAD_H

#include <pthread.h>
#include <signal.h>

static inline int custos_thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t block, old;
    int rc;

    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGQUIT);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGUSR2);
    sigaddset(&block, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

#endif

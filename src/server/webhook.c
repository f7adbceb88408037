/*
 * webhook.c - delivers subject.erased notices from the core's durable
 * outbox to linked services (libcurl), while the server runs.
 *
 * One thread: take the notices due (custos_outbox_next), POST each as JSON
 * with a Custos-Signature header (Ed25519 by the ledger key, base64), and
 * report the answer (custos_outbox_done), which marks a 2xx delivered and
 * schedules anything else for a retry with backoff.  No redirects, a 10 s
 * timeout, the receiver's body discarded.
 *
 * Must never: block an erasure (it only reads the outbox), follow a
 * redirect, put anything but the notice in the request.
 */
#include "server/server.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "custos/banned.h"

#define BATCH 16

struct webhook {
    struct custos_vault *v;
    volatile sig_atomic_t *stop;
    pthread_t th;
    int running;
};

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static void deliver(struct custos_vault *v, const struct custos_delivery *d)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char sig[160], err[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURLcode cc = CURLE_FAILED_INIT;

    if (c) {
        snprintf(sig, sizeof(sig), "Custos-Signature: ed25519=%s", d->signature);
        h = curl_slist_append(h, "Content-Type: application/json");
        h = curl_slist_append(h, sig);
        curl_easy_setopt(c, CURLOPT_URL, d->url);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, d->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)d->body_len);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
        cc = curl_easy_perform(c);
        if (cc == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
    }
    custos_outbox_done(v, d, cc == CURLE_OK ? (int)status : 0,
                       cc == CURLE_OK ? NULL : err[0] ? err : curl_easy_strerror(cc));
}

static void *run(void *arg)
{
    struct webhook *w = arg;
    static struct custos_delivery batch[BATCH];
    struct timespec pause = {0, 250 * 1000 * 1000};

    while (!*w->stop) {
        size_t n = 0, i;

        if (custos_outbox_next(w->v, batch, BATCH, &n) != CUSTOS_OK)
            n = 0;
        for (i = 0; i < n && !*w->stop; i++)
            deliver(w->v, &batch[i]);
        if (n < BATCH)
            nanosleep(&pause, NULL);
    }
    return NULL;
}

static struct webhook hook;

enum custos_err custos_webhook_start(struct custos_vault *v, volatile sig_atomic_t *stop)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    hook.v = v;
    hook.stop = stop;
    if (pthread_create(&hook.th, NULL, run, &hook) != 0)
        return custos_err_set(CUSTOS_ERR_INTERNAL, "cannot start the webhook thread");
    hook.running = 1;
    return CUSTOS_OK;
}

void custos_webhook_stop(void)
{
    if (hook.running)
        pthread_join(hook.th, NULL);
    hook.running = 0;
    curl_global_cleanup();
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The object store of kube-test-server: objects under one mutex, one global resourceVersion
 * counter (as etcd's revision) and a bounded history of write events that watches replay.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ks.h"

struct entry {
        char *res;
        char *ns;
        char *name;
        cJSON *obj;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed;
static struct entry *entries;
static size_t n_entries, cap_entries;
static uint64_t current_rv;
static struct ks_event *history; /* ring of history_cap events */
static size_t history_cap, history_start, history_len;
static uint64_t history_floor;

void ks_store_init(size_t cap)
{
        pthread_condattr_t a;

        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(&changed, &a);
        pthread_condattr_destroy(&a);
        history_cap = cap < 16 ? 16 : cap;
        history = calloc(history_cap, sizeof(*history));
        if (!history)
                abort();
}

static void event_release(struct ks_event *e)
{
        free(e->res);
        free(e->ns);
        free(e->name);
        free(e->json);
        *e = (struct ks_event){0};
}

void ks_store_free(void)
{
        for (size_t i = 0; i < n_entries; i++) {
                free(entries[i].res);
                free(entries[i].ns);
                free(entries[i].name);
                cJSON_Delete(entries[i].obj);
        }
        free(entries);
        entries = NULL;
        n_entries = cap_entries = 0;
        for (size_t i = 0; i < history_len; i++)
                event_release(&history[(history_start + i) % history_cap]);
        free(history);
        history = NULL;
        history_len = 0;
        pthread_cond_destroy(&changed);
}

void ks_store_lock(void)
{
        pthread_mutex_lock(&lock);
}

void ks_store_unlock(void)
{
        pthread_mutex_unlock(&lock);
}

static int key_cmp(const char *res, const char *ns, const char *name, const struct entry *e)
{
        int c = strcmp(res, e->res);
        if (c == 0)
                c = strcmp(ns, e->ns);
        if (c == 0)
                c = strcmp(name, e->name);
        return c;
}

/* Binary search: the index of the key, or where it would go (*found false). */
static size_t find(const char *res, const char *ns, const char *name, bool *found)
{
        size_t lo = 0, hi = n_entries;

        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                int c = key_cmp(res, ns, name, &entries[mid]);
                if (c == 0) {
                        *found = true;
                        return mid;
                }
                if (c < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        *found = false;
        return lo;
}

cJSON *ks_store_get(const char *res, const char *ns, const char *name)
{
        bool found;
        size_t i = find(res, ns, name, &found);
        return found ? entries[i].obj : NULL;
}

uint64_t ks_store_next_rv(void)
{
        return ++current_rv;
}

uint64_t ks_store_current_rv(void)
{
        return current_rv;
}

static char *xstrdup(const char *s)
{
        char *d = strdup(s);
        if (!d)
                abort();
        return d;
}

static void record(const char *res, const char *ns, const char *name, const cJSON *obj, uint64_t rv,
                   const char *type)
{
        struct ks_event *e;

        if (history_len == history_cap) {
                /* The oldest event falls out: watches from before it are now too old. */
                e = &history[history_start];
                history_floor = e->rv;
                event_release(e);
                history_start = (history_start + 1) % history_cap;
                history_len--;
        }
        e = &history[(history_start + history_len) % history_cap];
        history_len++;
        e->rv = rv;
        e->res = xstrdup(res);
        e->ns = xstrdup(ns);
        e->name = xstrdup(name);
        e->type = type;
        e->json = ks_print(obj);
        if (!e->json)
                abort();
        pthread_cond_broadcast(&changed);
}

void ks_store_put(const char *res, const char *ns, const char *name, cJSON *obj, uint64_t rv,
                  const char *type)
{
        bool found;
        size_t i = find(res, ns, name, &found);

        /* First: the key strings may belong to the object being replaced. */
        record(res, ns, name, obj, rv, type);
        if (found) {
                cJSON_Delete(entries[i].obj);
                entries[i].obj = obj;
        } else {
                if (n_entries == cap_entries) {
                        size_t cap = cap_entries ? cap_entries * 2 : 64;
                        struct entry *n = realloc(entries, cap * sizeof(*n));
                        if (!n)
                                abort();
                        entries = n;
                        cap_entries = cap;
                }
                memmove(&entries[i + 1], &entries[i], (n_entries - i) * sizeof(*entries));
                entries[i] = (struct entry){xstrdup(res), xstrdup(ns), xstrdup(name), obj};
                n_entries++;
        }
}

void ks_store_delete(const char *res, const char *ns, const char *name, cJSON *last, uint64_t rv)
{
        bool found;
        size_t i = find(res, ns, name, &found);

        record(res, ns, name, last, rv, "DELETED");
        cJSON_Delete(last);
        if (found) {
                free(entries[i].res);
                free(entries[i].ns);
                free(entries[i].name);
                cJSON_Delete(entries[i].obj);
                memmove(&entries[i], &entries[i + 1], (n_entries - i - 1) * sizeof(*entries));
                n_entries--;
        }
}

void ks_store_foreach(const char *res, const char *ns, void (*fn)(cJSON *obj, void *ctx), void *ctx)
{
        for (size_t i = 0; i < n_entries; i++)
                if (streq(entries[i].res, res) && (!ns || streq(entries[i].ns, ns)))
                        fn(entries[i].obj, ctx);
}

uint64_t ks_store_history_floor(void)
{
        return history_floor;
}

const struct ks_event *ks_store_event_after(uint64_t after)
{
        /* Binary search over the ring, which is ordered by rv. */
        size_t lo = 0, hi = history_len;

        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (history[(history_start + mid) % history_cap].rv <= after)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < history_len ? &history[(history_start + lo) % history_cap] : NULL;
}

void ks_store_compact(void)
{
        while (history_len > 0) {
                event_release(&history[history_start]);
                history_start = (history_start + 1) % history_cap;
                history_len--;
        }
        history_floor = current_rv;
        pthread_cond_broadcast(&changed);
}

void ks_store_wait(int64_t deadline_us)
{
        struct timespec ts = {(time_t)(deadline_us / 1000000),
                              (long)(deadline_us % 1000000) * 1000};
        pthread_cond_timedwait(&changed, &lock, &ts);
}

void ks_store_broadcast(void)
{
        pthread_mutex_lock(&lock);
        pthread_cond_broadcast(&changed);
        pthread_mutex_unlock(&lock);
}

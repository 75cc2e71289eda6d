/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Watch streams: a chunked HTTP/1.1 answer whose reader callback blocks (in the connection's
 * own thread) until the store records a matching event, the timeout passes, the user is
 * partitioned away or the server stops. Too-old resourceVersions get one ERROR event (410).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ks.h"

struct stream {
        char *store_res;
        char *ns;
        char *name;
        char *field_selector;
        struct ks_selector *labels;
        char *user;
        cJSON *(*convert)(const cJSON *stored);
        uint64_t last_rv;
        uint64_t generation;
        int64_t deadline_us;
        char *buf; /* pending output */
        size_t len, off;
        bool end_after_buf;
};

static void append(struct stream *s, const char *text, size_t n)
{
        char *b = realloc(s->buf, s->len + n + 1);
        if (!b)
                abort();
        memcpy(b + s->len, text, n);
        s->buf = b;
        s->len += n;
        s->buf[s->len] = '\0';
}

static void append_event(struct stream *s, const char *type, const cJSON *obj)
{
        cJSON *conv = s->convert ? s->convert(obj) : NULL;
        char *json = ks_print(conv ? conv : obj);
        char *line;
        int n;

        cJSON_Delete(conv);
        if (!json)
                abort();
        n = asprintf(&line, "{\"type\":\"%s\",\"object\":%s}\n", type, json);
        free(json);
        if (n < 0)
                abort();
        append(s, line, (size_t)n);
        free(line);
}

static bool matches(const struct stream *s, const cJSON *obj)
{
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
        const char *ns = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "namespace"));
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "name"));

        if (s->ns && !streq(s->ns, ns ? ns : ""))
                return false;
        if (s->name && !streq(s->name, name ? name : ""))
                return false;
        if (s->field_selector && !ks_field_match(s->field_selector, obj))
                return false;
        return !s->labels ||
               ks_selector_match(s->labels, cJSON_GetObjectItemCaseSensitive(meta, "labels"));
}

static void add_initial(cJSON *obj, void *ctx)
{
        struct stream *s = ctx;
        if (matches(s, obj))
                append_event(s, "ADDED", obj);
}

/* Move every recorded event after last_rv into the buffer (lock held). */
static void drain_history(struct stream *s)
{
        const struct ks_event *e;

        while ((e = ks_store_event_after(s->last_rv))) {
                s->last_rv = e->rv;
                if (!streq(e->res, s->store_res))
                        continue;
                cJSON *obj = cJSON_Parse(e->json);
                if (obj && matches(s, obj))
                        append_event(s, e->type, obj);
                cJSON_Delete(obj);
        }
}

static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max)
{
        struct stream *s = cls;

        for (;;) {
                if (s->off < s->len) {
                        size_t n = MIN(max, s->len - s->off);
                        memcpy(out, s->buf + s->off, n);
                        s->off += n;
                        if (s->off == s->len) {
                                s->off = s->len = 0;
                        }
                        return (ssize_t)n;
                }
                if (s->end_after_buf || ks_stopping() || ks_now_us() >= s->deadline_us)
                        return MHD_CONTENT_READER_END_OF_STREAM;
                if ((s->user && ks_faults_partitioned(s->user)) ||
                    ks_faults_generation() != s->generation)
                        return MHD_CONTENT_READER_END_WITH_ERROR;
                ks_store_lock();
                if (s->last_rv < ks_store_history_floor()) {
                        /* Compacted while we were streaming: the client must re-list. */
                        char line[256];
                        int n = snprintf(line, sizeof(line),
                                         "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\","
                                         "\"apiVersion\":\"v1\",\"metadata\":{},\"status\":"
                                         "\"Failure\",\"message\":\"too old resource version: "
                                         "%llu (%llu)\",\"reason\":\"Expired\",\"code\":410}}\n",
                                         (unsigned long long)s->last_rv,
                                         (unsigned long long)ks_store_history_floor() + 1);
                        append(s, line, (size_t)n);
                        s->end_after_buf = true;
                } else {
                        drain_history(s);
                        if (s->len == 0) {
                                int64_t wake = MIN(s->deadline_us, ks_now_us() + 200000);
                                ks_store_wait(wake);
                                drain_history(s);
                        }
                }
                ks_store_unlock();
        }
}

static void stream_free(void *cls)
{
        struct stream *s = cls;

        free(s->store_res);
        free(s->ns);
        free(s->name);
        free(s->field_selector);
        ks_selector_free(s->labels);
        free(s->user);
        free(s->buf);
        free(s);
}

static char *dup_or_null(const char *v)
{
        char *d;
        if (!v)
                return NULL;
        d = strdup(v);
        if (!d)
                abort();
        return d;
}

enum MHD_Result ks_watch_serve(struct MHD_Connection *c, const struct ks_watch_request *w)
{
        struct stream *s = calloc(1, sizeof(*s));
        char *err = NULL;

        if (!s)
                return MHD_NO;
        s->store_res = dup_or_null(w->store_res);
        s->ns = dup_or_null(w->ns);
        s->name = dup_or_null(w->name);
        s->field_selector = dup_or_null(w->field_selector);
        s->labels = w->label_text && *w->label_text ? ks_selector_parse(w->label_text, &err) : NULL;
        free(err);
        s->user = dup_or_null(w->user);
        s->convert = w->convert;
        s->generation = ks_faults_generation();
        s->deadline_us = ks_now_us() + (int64_t)w->timeout_s * 1000000;

        ks_store_lock();
        if (strempty(w->resource_version) || streq(w->resource_version, "0")) {
                ks_store_foreach(s->store_res, s->ns, add_initial, s);
                s->last_rv = ks_store_current_rv();
        } else {
                char *end;
                unsigned long long rv = strtoull(w->resource_version, &end, 10);
                s->last_rv = *end ? 0 : rv;
                if (s->last_rv < ks_store_history_floor()) {
                        char line[256];
                        int n = snprintf(line, sizeof(line),
                                         "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\","
                                         "\"apiVersion\":\"v1\",\"metadata\":{},\"status\":"
                                         "\"Failure\",\"message\":\"too old resource version: "
                                         "%llu (%llu)\",\"reason\":\"Expired\",\"code\":410}}\n",
                                         rv, (unsigned long long)ks_store_history_floor() + 1);
                        append(s, line, (size_t)n);
                        s->end_after_buf = true;
                }
        }
        ks_store_unlock();

        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, reader, s, stream_free);
        if (!r) {
                stream_free(s);
                return MHD_NO;
        }
        ks_api_common_headers(r);
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
}

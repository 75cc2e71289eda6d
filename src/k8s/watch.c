/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The watch of one Lease: LIST for a collection resourceVersion, then a chunked stream of JSON
 * lines parsed as they arrive, re-watched when the server ends it and re-listed after a 410.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/strbuf.h"
#include "k8s/k8s-internal.h"

#define LOG_MODULE "k8s"
#include "core/log.h"

/* A stream that ends sooner than this is followed by a pause, so a misbehaving server that
 * closes every watch at once is not hammered. */
#define MIN_STREAM_US     (1 * USEC_PER_SEC)
#define SHORT_STREAM_WAIT (1 * USEC_PER_SEC)

struct k8s_watch {
        struct k8s_client *client;
        char *name;
        char *rv; /* where the next watch starts */

        struct strbuf line; /* the incomplete line received so far */
        k8s_watch_fn fn;
        void *userdata;
        bool expired;   /* an ERROR event with 410 ended the stream */
        int stop_error; /* the callback's or an ERROR event's errno */
};

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);

const char *k8s_watch_event_to_string(enum k8s_watch_event e)
{
        switch (e) {
        case K8S_WATCH_SYNC:
                return "SYNC";
        case K8S_WATCH_ADDED:
                return "ADDED";
        case K8S_WATCH_MODIFIED:
                return "MODIFIED";
        case K8S_WATCH_DELETED:
                return "DELETED";
        }
        return "?";
}

int k8s_watch_new(const struct k8s_config *cfg, const struct k8s_client_options *opts,
                  const char *name, struct k8s_watch **ret)
{
        _cleanup_(k8s_watch_freep) struct k8s_watch *w = NULL;
        int r;

        if (strempty(name))
                return -EINVAL;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->line = (struct strbuf)STRBUF_INIT;
        r = k8s_client_new(cfg, opts, &w->client);
        if (r < 0)
                return r;
        w->name = strdup(name);
        if (!w->name)
                return -ENOMEM;
        *ret = TAKE_PTR(w);
        return 0;
}

void k8s_watch_free(struct k8s_watch *w)
{
        if (!w)
                return;
        k8s_client_free(w->client);
        free(w->name);
        free(w->rv);
        strbuf_release(&w->line);
        free(w);
}

void k8s_watch_cancel(struct k8s_watch *w)
{
        k8s_client_interrupt(w->client);
}

struct k8s_client *k8s_watch_client(struct k8s_watch *w)
{
        return w->client;
}

static int set_rv(struct k8s_watch *w, const char *rv)
{
        if (strempty(rv))
                return 0;
        char *n = strdup(rv);
        if (!n)
                return -ENOMEM;
        free(w->rv);
        w->rv = n;
        return 0;
}

static int handle_line(struct k8s_watch *w, const char *s, size_t len)
{
        _cleanup_(cJSON_Deletep) cJSON *j = NULL;
        enum k8s_watch_event ev;
        struct k8s_lease lease;
        int r;

        while (len > 0 && (s[len - 1] == '\r' || s[len - 1] == ' '))
                len--;
        if (len == 0)
                return 0;
        j = cJSON_ParseWithLength(s, len);
        const char *type = k8s_json_str(j, "type");
        const cJSON *obj = cJSON_GetObjectItemCaseSensitive(j, "object");
        if (!type || !cJSON_IsObject(obj))
                return k8s_client_fail(w->client, -EBADMSG, "Watch of Lease \"%s\": malformed line",
                                       w->name);

        if (streq(type, "ERROR")) {
                struct k8s_error err = {.retry_after_s = -1};
                k8s_status_decode(obj, &err);
                if (err.http_status == 410) {
                        log_debug("Watch of Lease \"%s\" expired: %s", w->name, err.message);
                        w->expired = true;
                        return -ESTALE; /* ends this stream; the run loop re-lists */
                }
                r = k8s_status_to_errno(err.http_status, err.reason);
                return k8s_client_fail(w->client, r, "Watch of Lease \"%s\": %d %s: %s", w->name,
                                       err.http_status, err.reason, err.message);
        }
        if (streq(type, "BOOKMARK"))
                return set_rv(w, k8s_json_str(cJSON_GetObjectItemCaseSensitive(obj, "metadata"),
                                              "resourceVersion"));
        if (streq(type, "ADDED"))
                ev = K8S_WATCH_ADDED;
        else if (streq(type, "MODIFIED"))
                ev = K8S_WATCH_MODIFIED;
        else if (streq(type, "DELETED"))
                ev = K8S_WATCH_DELETED;
        else
                return 0; /* a type from a future server: nothing we act on */

        r = k8s_lease_from_cjson(obj, &lease);
        if (r < 0)
                return k8s_client_fail(w->client, r, "Watch of Lease \"%s\": malformed Lease",
                                       w->name);
        r = set_rv(w, lease.resource_version);
        if (r == 0 && streq(lease.name, w->name)) {
                r = w->fn(ev, &lease, w->userdata);
                if (r < 0)
                        w->stop_error = r;
        }
        k8s_lease_release(&lease);
        return r < 0 ? r : 0;
}

/* Called with each piece of the chunked body: cut it into lines, whatever the chunking. */
static int on_stream(const char *data, size_t len, void *userdata)
{
        struct k8s_watch *w = userdata;

        while (len > 0) {
                const char *nl = memchr(data, '\n', len);
                size_t take = nl ? (size_t)(nl - data) : len;
                if (w->line.len + take > K8S_MAX_BODY)
                        return k8s_client_fail(w->client, -EFBIG,
                                               "Watch of Lease \"%s\": line longer than %zu bytes",
                                               w->name, K8S_MAX_BODY);
                strbuf_add(&w->line, data, take);
                if (w->line.oom)
                        return -ENOMEM;
                if (!nl)
                        break;
                int r = handle_line(w, strbuf_str(&w->line), w->line.len);
                strbuf_reset(&w->line);
                if (r < 0)
                        return r;
                data = nl + 1;
                len -= take + 1;
        }
        return 0;
}

static int watch_once(struct k8s_watch *w)
{
        _cleanup_free_ char *path = NULL, *rv = NULL;
        struct k8s_client *c = w->client;

        rv = k8s_url_escape(w->rv ? w->rv : "");
        if (!rv)
                return -ENOMEM;
        if (asprintf(&path,
                     "/apis/coordination.k8s.io/v1/namespaces/%s/leases?watch=1"
                     "&fieldSelector=metadata.name%%3D%s&resourceVersion=%s"
                     "&allowWatchBookmarks=true&timeoutSeconds=%d",
                     k8s_client_namespace(c), w->name, rv, k8s_client_watch_timeout_s(c)) < 0)
                return path = NULL, -ENOMEM;
        strbuf_reset(&w->line);
        w->expired = false;
        return k8s_request(c,
                           &(struct k8s_request){.method = "GET",
                                                 .path = path,
                                                 .no_timeout = true,
                                                 .stream = on_stream,
                                                 .stream_userdata = w},
                           NULL, NULL);
}

static int relist(struct k8s_watch *w)
{
        struct k8s_lease lease = {0};
        char *rv = NULL;
        bool found;
        int r;

        r = k8s_lease_list_one(w->client, w->name, &lease, &found, &rv);
        if (r < 0)
                return r;
        free(w->rv);
        w->rv = rv;
        r = w->fn(K8S_WATCH_SYNC, found ? &lease : NULL, w->userdata);
        k8s_lease_release(&lease);
        return r;
}

int k8s_watch_run(struct k8s_watch *w, k8s_watch_fn fn, void *userdata)
{
        bool need_list = true;
        int r;

        w->fn = fn;
        w->userdata = userdata;
        for (;;) {
                if (need_list) {
                        r = relist(w);
                        if (r < 0)
                                return r;
                        need_list = false;
                }
                w->stop_error = 0;
                int64_t started = clock_mono_us();
                r = watch_once(w);
                if (w->stop_error < 0)
                        return w->stop_error;
                if (w->expired) {
                        need_list = true;
                        continue;
                }
                if (r < 0)
                        return r;
                /* The server's timeoutSeconds ended the stream: watch again from where we are. */
                if (clock_mono_us() - started < MIN_STREAM_US) {
                        r = k8s_client_wait_us(w->client, SHORT_STREAM_WAIT);
                        if (r < 0)
                                return r;
                }
        }
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The objects persistd reads and writes: MicroTime, Leases (get, create, compare-and-set
 * update, list of one), Pods (get, list by label, one-label merge patch), one Secret key and
 * core/v1 Events, encoded and decoded with cJSON.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/util.h"
#include "k8s/k8s-internal.h"

#define LEASES_PATH "/apis/coordination.k8s.io/v1/namespaces/%s/leases"
#define PODS_PATH   "/api/v1/namespaces/%s/pods"

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);

/* ---- MicroTime -------------------------------------------------------------------------- */

char *k8s_microtime_format(int64_t us, char buf[static K8S_MICROTIME_MAX])
{
        return clock_format_rfc3339(us, 6, buf);
}

int k8s_microtime_parse(const char *s, int64_t *ret_us)
{
        /* Go's layout 2006-01-02T15:04:05.000000Z07:00: check the shape, then convert. */
        static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddddd";
        size_t n = strlen(s);

        if (n < sizeof(shape) - 1 + 1)
                return -EINVAL;
        for (size_t i = 0; i < sizeof(shape) - 1; i++) {
                if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i])
                        return -EINVAL;
        }
        const char *zone = s + sizeof(shape) - 1;
        if (!streq(zone, "Z") &&
            !(strlen(zone) == 6 && (zone[0] == '+' || zone[0] == '-') && isdigit(zone[1]) &&
              isdigit(zone[2]) && zone[3] == ':' && isdigit(zone[4]) && isdigit(zone[5])))
                return -EINVAL;
        return clock_parse_rfc3339(s, false, ret_us);
}

/* ---- JSON helpers ----------------------------------------------------------------------- */

static int dup_json_str(const cJSON *obj, const char *name, char **ret)
{
        const char *s = k8s_json_str(obj, name);
        *ret = NULL;
        if (!s)
                return 0;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static bool json_int(const cJSON *obj, const char *name, int64_t *ret)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
        if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble)
                return false;
        *ret = (int64_t)v->valuedouble;
        return true;
}

/* A MicroTime member: false when absent or null; -EBADMSG when malformed. */
static int json_microtime(const cJSON *obj, const char *name, bool *has, int64_t *ret)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
        *has = false;
        *ret = 0;
        if (!v || cJSON_IsNull(v))
                return 0;
        if (!cJSON_IsString(v) || k8s_microtime_parse(v->valuestring, ret) < 0)
                return -EBADMSG;
        *has = true;
        return 0;
}

static cJSON *parse_body(struct k8s_client *c, const char *body, size_t len, const char *what)
{
        cJSON *j = cJSON_ParseWithLength(body, len);
        if (!j || !cJSON_IsObject(j)) {
                cJSON_Delete(j);
                k8s_client_fail(c, -EBADMSG, "Malformed %s in the API server's response", what);
                return NULL;
        }
        return j;
}

static int check_name(struct k8s_client *c, const char *what, const char *name)
{
        if (strempty(name) || !is_dns1123_subdomain(name))
                return k8s_client_fail(c, -EINVAL, "%s name \"%s\" is not valid", what,
                                       name ? name : "");
        return 0;
}

/* ---- Leases ----------------------------------------------------------------------------- */

void k8s_lease_release(struct k8s_lease *l)
{
        if (!l)
                return;
        free(l->name);
        free(l->resource_version);
        free(l->holder_identity);
        *l = (struct k8s_lease){0};
}

int k8s_lease_from_cjson(const cJSON *obj, struct k8s_lease *ret)
{
        struct k8s_lease l = {0};
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
        const cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
        const char *kind = k8s_json_str(obj, "kind");
        int r;

        /* List items carry no kind; a single object says Lease. */
        if (!cJSON_IsObject(meta) || (kind && !streq(kind, "Lease")) || !k8s_json_str(meta, "name"))
                return -EBADMSG;
        if (dup_json_str(meta, "name", &l.name) < 0 ||
            dup_json_str(meta, "resourceVersion", &l.resource_version) < 0)
                goto oom;
        if (cJSON_IsObject(spec)) {
                const cJSON *h = cJSON_GetObjectItemCaseSensitive(spec, "holderIdentity");
                if (cJSON_IsString(h)) {
                        l.has_holder_identity = true;
                        if (!(l.holder_identity = strdup(h->valuestring)))
                                goto oom;
                }
                l.has_lease_duration = json_int(spec, "leaseDurationSeconds", &l.lease_duration_s);
                l.has_lease_transitions = json_int(spec, "leaseTransitions", &l.lease_transitions);
                r = json_microtime(spec, "acquireTime", &l.has_acquire_time, &l.acquire_time_us);
                if (r == 0)
                        r = json_microtime(spec, "renewTime", &l.has_renew_time, &l.renew_time_us);
                if (r < 0) {
                        k8s_lease_release(&l);
                        return r;
                }
        }
        *ret = l;
        return 0;
oom:
        k8s_lease_release(&l);
        return -ENOMEM;
}

int k8s_lease_from_json(const char *json, size_t len, struct k8s_lease *ret)
{
        _cleanup_(cJSON_Deletep) cJSON *j = cJSON_ParseWithLength(json, len);
        if (!j)
                return -EBADMSG;
        return k8s_lease_from_cjson(j, ret);
}

static char *lease_to_json(const struct k8s_lease *l, const char *ns, bool with_rv)
{
        _cleanup_(cJSON_Deletep) cJSON *root = cJSON_CreateObject();
        char t[K8S_MICROTIME_MAX];
        cJSON *meta, *spec;

        if (!root)
                return NULL;
        bool ok =
            cJSON_AddStringToObject(root, "apiVersion", "coordination.k8s.io/v1") &&
            cJSON_AddStringToObject(root, "kind", "Lease") &&
            (meta = cJSON_AddObjectToObject(root, "metadata")) &&
            cJSON_AddStringToObject(meta, "name", l->name) &&
            cJSON_AddStringToObject(meta, "namespace", ns) &&
            (!with_rv || cJSON_AddStringToObject(meta, "resourceVersion", l->resource_version)) &&
            (spec = cJSON_AddObjectToObject(root, "spec"));
        if (!ok)
                return NULL;
        if (l->has_holder_identity &&
            !cJSON_AddStringToObject(spec, "holderIdentity",
                                     l->holder_identity ? l->holder_identity : ""))
                return NULL;
        if (l->has_lease_duration &&
            !cJSON_AddNumberToObject(spec, "leaseDurationSeconds", (double)l->lease_duration_s))
                return NULL;
        if (l->has_acquire_time &&
            !cJSON_AddStringToObject(spec, "acquireTime",
                                     k8s_microtime_format(l->acquire_time_us, t)))
                return NULL;
        if (l->has_renew_time &&
            !cJSON_AddStringToObject(spec, "renewTime", k8s_microtime_format(l->renew_time_us, t)))
                return NULL;
        if (l->has_lease_transitions &&
            !cJSON_AddNumberToObject(spec, "leaseTransitions", (double)l->lease_transitions))
                return NULL;
        return cJSON_PrintUnformatted(root);
}

static int lease_response(struct k8s_client *c, char *body, size_t len, struct k8s_lease *ret)
{
        _cleanup_(cJSON_Deletep) cJSON *j = parse_body(c, body, len, "Lease");
        if (!j)
                return -EBADMSG;
        if (!ret)
                return 0;
        int r = k8s_lease_from_cjson(j, ret);
        if (r < 0)
                return k8s_client_fail(c, r, "Malformed Lease in the API server's response");
        return 0;
}

int k8s_lease_get(struct k8s_client *c, const char *name, struct k8s_lease *ret)
{
        _cleanup_free_ char *path = NULL, *body = NULL;
        size_t len;
        int r;

        r = check_name(c, "Lease", name);
        if (r < 0)
                return r;
        if (asprintf(&path, LEASES_PATH "/%s", k8s_client_namespace(c), name) < 0)
                return path = NULL, -ENOMEM;
        r = k8s_request(c, &(struct k8s_request){.method = "GET", .path = path}, &body, &len);
        if (r < 0)
                return r;
        return lease_response(c, body, len, ret);
}

static int lease_write(struct k8s_client *c, const struct k8s_lease *l, bool update,
                       struct k8s_lease *ret)
{
        _cleanup_free_ char *path = NULL, *body = NULL, *json = NULL;
        size_t len;
        int r;

        r = check_name(c, "Lease", l->name);
        if (r < 0)
                return r;
        if (update && strempty(l->resource_version))
                return k8s_client_fail(c, -EINVAL,
                                       "Lease \"%s\": an update needs a resourceVersion", l->name);
        json = lease_to_json(l, k8s_client_namespace(c), update);
        if (!json)
                return k8s_client_fail(c, -ENOMEM, "Out of memory");
        if (update)
                r = asprintf(&path, LEASES_PATH "/%s", k8s_client_namespace(c), l->name);
        else
                r = asprintf(&path, LEASES_PATH, k8s_client_namespace(c));
        if (r < 0)
                return path = NULL, -ENOMEM;
        r = k8s_request(c,
                        &(struct k8s_request){.method = update ? "PUT" : "POST",
                                              .path = path,
                                              .content_type = "application/json",
                                              .body = json,
                                              .body_len = strlen(json)},
                        &body, &len);
        if (r < 0)
                return r;
        return lease_response(c, body, len, ret);
}

int k8s_lease_create(struct k8s_client *c, const struct k8s_lease *l, struct k8s_lease *ret)
{
        return lease_write(c, l, false, ret);
}

int k8s_lease_update(struct k8s_client *c, const struct k8s_lease *l, struct k8s_lease *ret)
{
        return lease_write(c, l, true, ret);
}

int k8s_lease_list_one(struct k8s_client *c, const char *name, struct k8s_lease *ret,
                       bool *ret_found, char **ret_list_rv)
{
        _cleanup_free_ char *path = NULL, *body = NULL, *rv = NULL;
        _cleanup_(cJSON_Deletep) cJSON *j = NULL;
        struct k8s_lease l = {0};
        bool found = false;
        size_t len;
        int r;

        r = check_name(c, "Lease", name);
        if (r < 0)
                return r;
        if (asprintf(&path, LEASES_PATH "?fieldSelector=metadata.name%%3D%s",
                     k8s_client_namespace(c), name) < 0)
                return path = NULL, -ENOMEM;
        r = k8s_request(c, &(struct k8s_request){.method = "GET", .path = path}, &body, &len);
        if (r < 0)
                return r;
        j = parse_body(c, body, len, "LeaseList");
        if (!j)
                return -EBADMSG;
        const char *list_rv =
            k8s_json_str(cJSON_GetObjectItemCaseSensitive(j, "metadata"), "resourceVersion");
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "items");
        if (!list_rv || (items && !cJSON_IsArray(items) && !cJSON_IsNull(items)))
                return k8s_client_fail(c, -EBADMSG,
                                       "Malformed LeaseList in the API server's response");
        const cJSON *item;
        cJSON_ArrayForEach(item, items)
        {
                struct k8s_lease one;
                r = k8s_lease_from_cjson(item, &one);
                if (r < 0) {
                        k8s_lease_release(&l);
                        return k8s_client_fail(c, r, "Malformed Lease in a LeaseList");
                }
                if (!found && one.name && streq(one.name, name)) {
                        l = one;
                        found = true;
                } else {
                        k8s_lease_release(&one);
                }
        }
        rv = strdup(list_rv);
        if (!rv) {
                k8s_lease_release(&l);
                return -ENOMEM;
        }
        if (ret && found)
                *ret = l;
        else
                k8s_lease_release(&l);
        *ret_found = found;
        if (ret_list_rv)
                *ret_list_rv = TAKE_PTR(rv);
        return 0;
}

/* ---- Pods ------------------------------------------------------------------------------- */

void k8s_pod_release(struct k8s_pod *p)
{
        if (!p)
                return;
        free(p->name);
        free(p->resource_version);
        free(p->phase);
        free(p->pod_ip);
        for (size_t i = 0; i < p->n_labels; i++) {
                free(p->labels[i].key);
                free(p->labels[i].value);
        }
        free(p->labels);
        *p = (struct k8s_pod){0};
}

void k8s_pod_array_free(struct k8s_pod *pods, size_t n)
{
        for (size_t i = 0; pods && i < n; i++)
                k8s_pod_release(&pods[i]);
        free(pods);
}

const char *k8s_pod_label(const struct k8s_pod *p, const char *key)
{
        for (size_t i = 0; i < p->n_labels; i++)
                if (streq(p->labels[i].key, key))
                        return p->labels[i].value;
        return NULL;
}

static int pod_from_cjson(const cJSON *obj, struct k8s_pod *ret)
{
        struct k8s_pod p = {0};
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(obj, "status");
        const char *kind = k8s_json_str(obj, "kind");

        if (!cJSON_IsObject(meta) || (kind && !streq(kind, "Pod")) || !k8s_json_str(meta, "name"))
                return -EBADMSG;
        if (dup_json_str(meta, "name", &p.name) < 0 ||
            dup_json_str(meta, "resourceVersion", &p.resource_version) < 0 ||
            dup_json_str(status, "phase", &p.phase) < 0 ||
            dup_json_str(status, "podIP", &p.pod_ip) < 0)
                goto oom;
        const cJSON *labels = cJSON_GetObjectItemCaseSensitive(meta, "labels");
        int n = cJSON_IsObject(labels) ? cJSON_GetArraySize(labels) : 0;
        if (n > 0) {
                p.labels = calloc((size_t)n, sizeof(*p.labels));
                if (!p.labels)
                        goto oom;
                const cJSON *lab;
                cJSON_ArrayForEach(lab, labels)
                {
                        if (!cJSON_IsString(lab) || !lab->string)
                                continue;
                        struct k8s_label *d = &p.labels[p.n_labels];
                        d->key = strdup(lab->string);
                        d->value = strdup(lab->valuestring);
                        p.n_labels++;
                        if (!d->key || !d->value)
                                goto oom;
                }
        }
        *ret = p;
        return 0;
oom:
        k8s_pod_release(&p);
        return -ENOMEM;
}

int k8s_pod_from_json(const char *json, size_t len, struct k8s_pod *ret)
{
        _cleanup_(cJSON_Deletep) cJSON *j = cJSON_ParseWithLength(json, len);
        if (!j)
                return -EBADMSG;
        return pod_from_cjson(j, ret);
}

int k8s_pod_get(struct k8s_client *c, const char *name, struct k8s_pod *ret)
{
        _cleanup_free_ char *path = NULL, *body = NULL;
        size_t len;
        int r;

        r = check_name(c, "Pod", name);
        if (r < 0)
                return r;
        if (asprintf(&path, PODS_PATH "/%s", k8s_client_namespace(c), name) < 0)
                return path = NULL, -ENOMEM;
        r = k8s_request(c, &(struct k8s_request){.method = "GET", .path = path}, &body, &len);
        if (r < 0)
                return r;
        _cleanup_(cJSON_Deletep) cJSON *j = parse_body(c, body, len, "Pod");
        if (!j)
                return -EBADMSG;
        r = pod_from_cjson(j, ret);
        if (r < 0)
                return k8s_client_fail(c, r, "Malformed Pod in the API server's response");
        return 0;
}

int k8s_pod_list(struct k8s_client *c, const char *label_selector, struct k8s_pod **ret,
                 size_t *ret_n)
{
        _cleanup_free_ char *path = NULL, *body = NULL, *sel = NULL;
        size_t len;
        int r;

        if (!strempty(label_selector)) {
                sel = k8s_url_escape(label_selector);
                if (!sel)
                        return -ENOMEM;
                r = asprintf(&path, PODS_PATH "?labelSelector=%s", k8s_client_namespace(c), sel);
        } else {
                r = asprintf(&path, PODS_PATH, k8s_client_namespace(c));
        }
        if (r < 0)
                return path = NULL, -ENOMEM;
        r = k8s_request(c, &(struct k8s_request){.method = "GET", .path = path}, &body, &len);
        if (r < 0)
                return r;
        _cleanup_(cJSON_Deletep) cJSON *j = parse_body(c, body, len, "PodList");
        if (!j)
                return -EBADMSG;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "items");
        if (items && !cJSON_IsArray(items) && !cJSON_IsNull(items))
                return k8s_client_fail(c, -EBADMSG,
                                       "Malformed PodList in the API server's response");
        int n = cJSON_IsArray(items) ? cJSON_GetArraySize(items) : 0;
        struct k8s_pod *pods = NULL;
        size_t got = 0;
        if (n > 0) {
                pods = calloc((size_t)n, sizeof(*pods));
                if (!pods)
                        return -ENOMEM;
                const cJSON *item;
                cJSON_ArrayForEach(item, items)
                {
                        r = pod_from_cjson(item, &pods[got]);
                        if (r < 0) {
                                k8s_pod_array_free(pods, got);
                                return k8s_client_fail(c, r, "Malformed Pod in a PodList");
                        }
                        got++;
                }
        }
        *ret = pods;
        *ret_n = got;
        return 0;
}

int k8s_pod_set_label(struct k8s_client *c, const char *name, const char *key, const char *value)
{
        _cleanup_free_ char *path = NULL, *json = NULL;
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        cJSON *meta, *labels;
        int r;

        r = check_name(c, "Pod", name);
        if (r < 0)
                return r;
        if (!key || !is_label_key(key))
                return k8s_client_fail(c, -EINVAL, "Label key \"%s\" is not valid", key ? key : "");
        if (value && !is_label_value(value))
                return k8s_client_fail(c, -EINVAL, "Label value \"%s\" is not valid", value);
        /* cJSON escapes the key; a "/" needs no escaping in JSON (only in a JSON patch path). */
        root = cJSON_CreateObject();
        if (!root || !(meta = cJSON_AddObjectToObject(root, "metadata")) ||
            !(labels = cJSON_AddObjectToObject(meta, "labels")) ||
            !(value ? cJSON_AddStringToObject(labels, key, value)
                    : cJSON_AddNullToObject(labels, key)) ||
            !(json = cJSON_PrintUnformatted(root)))
                return k8s_client_fail(c, -ENOMEM, "Out of memory");
        if (asprintf(&path, PODS_PATH "/%s", k8s_client_namespace(c), name) < 0)
                return path = NULL, -ENOMEM;
        return k8s_request(c,
                           &(struct k8s_request){.method = "PATCH",
                                                 .path = path,
                                                 .content_type = "application/merge-patch+json",
                                                 .body = json,
                                                 .body_len = strlen(json)},
                           NULL, NULL);
}

/* ---- Secrets ---------------------------------------------------------------------------- */

int k8s_secret_get_key(struct k8s_client *c, const char *name, const char *key, size_t max_size,
                       char **ret, size_t *ret_len)
{
        _cleanup_free_ char *path = NULL;
        char *body = NULL;
        size_t len;
        int r;

        r = check_name(c, "Secret", name);
        if (r < 0)
                return r;
        if (asprintf(&path, "/api/v1/namespaces/%s/secrets/%s", k8s_client_namespace(c), name) < 0)
                return path = NULL, -ENOMEM;
        r = k8s_request(c, &(struct k8s_request){.method = "GET", .path = path}, &body, &len);
        if (r < 0)
                return r;
        cJSON *j = parse_body(c, body, len, "Secret");
        explicit_bzero(body, len);
        free(body);
        if (!j)
                return -EBADMSG;
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
        const char *b64 = k8s_json_str(data, key);
        if (!b64) {
                r = k8s_client_fail(c, -ENODATA, "Secret \"%s\" has no key \"%s\"", name, key);
        } else {
                unsigned char *out = NULL;
                r = k8s_base64_decode(b64, strlen(b64), max_size, &out, ret_len);
                if (r == -EFBIG)
                        k8s_client_fail(c, r, "Secret \"%s\" key \"%s\" is larger than %zu bytes",
                                        name, key, max_size);
                else if (r < 0)
                        k8s_client_fail(c, r, "Secret \"%s\" key \"%s\" is not valid base64", name,
                                        key);
                else
                        *ret = (char *)out;
        }
        /* Wipe every string of the tree: it held the Secret's values. */
        for (cJSON *d = cJSON_IsObject(data) ? data->child : NULL; d; d = d->next)
                if (cJSON_IsString(d))
                        explicit_bzero(d->valuestring, strlen(d->valuestring));
        cJSON_Delete(j);
        return r;
}

/* ---- Events ----------------------------------------------------------------------------- */

/* Cut `s` to at most `max` bytes without splitting a UTF-8 sequence. */
static char *utf8_truncate(const char *s, size_t max)
{
        size_t n = strlen(s);
        if (n > max) {
                n = max;
                while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
                        n--;
        }
        return strndup(s, n);
}

int k8s_event_create(struct k8s_client *c, const struct k8s_event *e)
{
        _cleanup_free_ char *path = NULL, *json = NULL, *gen = NULL, *message = NULL;
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        const char *api_version;
        char ts[CLOCK_RFC3339_MAX];
        cJSON *meta, *inv, *src;
        int r;

        if (!e->involved_kind || !e->reason || !e->message || strempty(e->component))
                return k8s_client_fail(c, -EINVAL,
                                       "Event: kind, reason, message and component "
                                       "are required");
        if (streq(e->involved_kind, "Lease"))
                api_version = "coordination.k8s.io/v1";
        else if (streq(e->involved_kind, "Pod"))
                api_version = "v1";
        else
                return k8s_client_fail(c, -EINVAL, "Event: unsupported involved kind \"%s\"",
                                       e->involved_kind);
        r = check_name(c, e->involved_kind, e->involved_name);
        if (r < 0)
                return r;

        int64_t us = e->time_us;
        if (us == 0) {
                /* Events carry real time, whatever the schedule clock says. */
                struct timespec now;
                clock_gettime(CLOCK_REALTIME, &now);
                us = (int64_t)now.tv_sec * USEC_PER_SEC + now.tv_nsec / 1000;
        }
        clock_format_rfc3339(us, 0, ts);
        /* generateName: the server appends 5 random characters; a name is at most 253. */
        gen = strndup(e->involved_name, 240);
        message = utf8_truncate(e->message, 1024);
        root = cJSON_CreateObject();
        if (!gen || !message || !root)
                return k8s_client_fail(c, -ENOMEM, "Out of memory");
        _cleanup_free_ char *gen_name = NULL;
        if (asprintf(&gen_name, "%s.", gen) < 0)
                return gen_name = NULL, -ENOMEM;

        /* involvedObject.namespace must equal the Event's namespace (422 otherwise), and no
         * eventTime: with it, reportingComponent and reportingInstance become required. */
        bool ok =
            cJSON_AddStringToObject(root, "apiVersion", "v1") &&
            cJSON_AddStringToObject(root, "kind", "Event") &&
            (meta = cJSON_AddObjectToObject(root, "metadata")) &&
            cJSON_AddStringToObject(meta, "generateName", gen_name) &&
            cJSON_AddStringToObject(meta, "namespace", k8s_client_namespace(c)) &&
            (inv = cJSON_AddObjectToObject(root, "involvedObject")) &&
            cJSON_AddStringToObject(inv, "apiVersion", api_version) &&
            cJSON_AddStringToObject(inv, "kind", e->involved_kind) &&
            cJSON_AddStringToObject(inv, "name", e->involved_name) &&
            cJSON_AddStringToObject(inv, "namespace", k8s_client_namespace(c)) &&
            (strempty(e->involved_uid) || cJSON_AddStringToObject(inv, "uid", e->involved_uid)) &&
            cJSON_AddStringToObject(root, "reason", e->reason) &&
            cJSON_AddStringToObject(root, "message", message) &&
            cJSON_AddStringToObject(root, "type",
                                    e->type == K8S_EVENT_WARNING ? "Warning" : "Normal") &&
            (src = cJSON_AddObjectToObject(root, "source")) &&
            cJSON_AddStringToObject(src, "component", e->component) &&
            (strempty(e->host) || cJSON_AddStringToObject(src, "host", e->host)) &&
            cJSON_AddStringToObject(root, "firstTimestamp", ts) &&
            cJSON_AddStringToObject(root, "lastTimestamp", ts) &&
            cJSON_AddNumberToObject(root, "count", 1) && (json = cJSON_PrintUnformatted(root));
        if (!ok)
                return k8s_client_fail(c, -ENOMEM, "Out of memory");
        if (asprintf(&path, "/api/v1/namespaces/%s/events", k8s_client_namespace(c)) < 0)
                return path = NULL, -ENOMEM;
        return k8s_request(c,
                           &(struct k8s_request){.method = "POST",
                                                 .path = path,
                                                 .content_type = "application/json",
                                                 .body = json,
                                                 .body_len = strlen(json)},
                           NULL, NULL);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The REST side of kube-test-server: routing of /api and /apis paths, authentication and
 * RBAC, fault injection, and the handlers for Leases, Pods, Secrets, Events (both groups),
 * Namespaces and RBAC objects with kube-apiserver 1.26's answers (see the transcripts in
 * ../shared/k8s-api-transcripts and docs/kube-test-server.md).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ks.h"

enum ktype {
        K_LEASE,
        K_POD,
        K_EVENT_CORE,
        K_EVENT_NEW,
        K_NAMESPACE,
        K_SECRET,
        K_ROLE,
        K_BINDING,
        K_GENERIC
};

struct kind {
        const char *group, *version, *res, *kind, *list_kind, *store_res;
        bool namespaced;
        enum ktype type;
};

static const struct kind kinds[] = {
    {"", "v1", "namespaces", "Namespace", "NamespaceList", "namespaces", false, K_NAMESPACE},
    {"", "v1", "pods", "Pod", "PodList", "pods", true, K_POD},
    {"", "v1", "secrets", "Secret", "SecretList", "secrets", true, K_SECRET},
    {"", "v1", "configmaps", "ConfigMap", "ConfigMapList", "configmaps", true, K_GENERIC},
    {"", "v1", "events", "Event", "EventList", "events", true, K_EVENT_CORE},
    {"events.k8s.io", "v1", "events", "Event", "EventList", "events", true, K_EVENT_NEW},
    {"coordination.k8s.io", "v1", "leases", "Lease", "LeaseList", "leases", true, K_LEASE},
    {"rbac.authorization.k8s.io", "v1", "roles", "Role", "RoleList", "roles", true, K_ROLE},
    {"rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", "RoleBindingList",
     "rolebindings", true, K_BINDING},
    {"rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", "ClusterRoleList",
     "clusterroles", false, K_ROLE},
    {"rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
     "ClusterRoleBindingList", "clusterrolebindings", false, K_BINDING},
};

struct req {
        struct MHD_Connection *c;
        const char *method;
        char *url;
        char *body;
        size_t len;
        bool too_big;
        const struct ks_user *user;
        char manager[128];
        const struct kind *k;
        char ns[256];
        char name[256];
        bool watch;
        bool strict;
        char *warnings[16];
        size_t n_warn;
        /* for the request log */
        int64_t start_us;
        int status;
        bool routed;
        char log_user[64];
        char log_verb[24];
        char log_res[48];
        char log_method[16];
        bool pretty;
};

/* ---- answers ------------------------------------------------------------------------------ */

void ks_api_common_headers(struct MHD_Response *r)
{
        char id[37];

        ks_uuid(id);
        MHD_add_response_header(r, "Audit-Id", id);
        MHD_add_response_header(r, "Cache-Control", "no-cache, private");
        MHD_add_response_header(r, "Content-Type", "application/json");
}

struct chunked {
        char *data;
        size_t len;
};

static ssize_t chunked_read(void *cls, uint64_t pos, char *out, size_t max)
{
        struct chunked *b = cls;
        if (pos >= b->len)
                return MHD_CONTENT_READER_END_OF_STREAM;
        size_t n = MIN(max, b->len - (size_t)pos);
        memcpy(out, b->data + pos, n);
        return (ssize_t)n;
}

static void chunked_free(void *cls)
{
        struct chunked *b = cls;
        free(b->data);
        free(b);
}

/* Send `obj` (taken) with a trailing newline: Content-Length up to 2048 bytes, else chunked,
 * as Go's net/http does for a handler that does not set Content-Length. */
static enum MHD_Result send_json(struct req *r, unsigned code, cJSON *obj)
{
        char *json = ks_print(obj);
        struct MHD_Response *resp;
        size_t n;

        cJSON_Delete(obj);
        if (!json)
                return MHD_NO;
        if (r->pretty) {
                char *p = ks_pretty(json);
                free(json);
                if (!p)
                        return MHD_NO;
                json = p;
        }
        n = strlen(json);
        char *body = realloc(json, n + 2);
        if (!body) {
                free(json);
                return MHD_NO;
        }
        body[n++] = '\n';
        body[n] = '\0';
        if (n <= 2048) {
                resp = MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_FREE);
        } else {
                struct chunked *b = malloc(sizeof(*b));
                if (!b) {
                        free(body);
                        return MHD_NO;
                }
                *b = (struct chunked){body, n};
                resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 8192, chunked_read, b,
                                                         chunked_free);
        }
        if (!resp)
                return MHD_NO;
        ks_api_common_headers(resp);
        for (size_t i = 0; i < r->n_warn; i++)
                MHD_add_response_header(resp, "Warning", r->warnings[i]);
        if (code == 403)
                MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        r->status = (int)code;
        enum MHD_Result ret = MHD_queue_response(r->c, code, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* Send a Status object (taken); its "code" member is the HTTP status. */
static enum MHD_Result send_status_obj(struct req *r, cJSON *status)
{
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(status, "code");
        return send_json(r, cJSON_IsNumber(code) ? (unsigned)code->valuedouble : 200u, status);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
        va_list ap;
        char *s;

        va_start(ap, f);
        if (vasprintf(&s, f, ap) < 0)
                abort();
        va_end(ap);
        return s;
}

/* A Status with a formatted message (taken) and details (taken, may be NULL). */
static cJSON *status(int code, const char *reason, char *message, cJSON *details)
{
        cJSON *s = ks_status(code, reason, message, details);
        free(message);
        return s;
}

/* "leases.coordination.k8s.io" or "pods" (static buffer per thread). */
static const char *qres(const struct kind *k)
{
        static __thread char buf[128];
        snprintf(buf, sizeof(buf), "%s%s%s", k->res, *k->group ? "." : "", k->group);
        return buf;
}

static cJSON *not_found(const struct kind *k, const char *name)
{
        return status(404, "NotFound", fmt("%s \"%s\" not found", qres(k), name),
                      ks_details(name, k->group, k->res));
}

static cJSON *already_exists(const struct kind *k, const char *name)
{
        return status(409, "AlreadyExists", fmt("%s \"%s\" already exists", qres(k), name),
                      ks_details(name, k->group, k->res));
}

static cJSON *conflict(const struct kind *k, const char *name)
{
        return status(409, "Conflict",
                      fmt("Operation cannot be fulfilled on %s \"%s\": the object has been "
                          "modified; please apply your changes to the latest version and try "
                          "again",
                          qres(k), name),
                      ks_details(name, k->group, k->res));
}

static cJSON *bad_request(char *message)
{
        return status(400, "BadRequest", message, NULL);
}

static cJSON *forbidden(const struct req *r, const char *verb, const char *group, const char *res,
                        const char *q, const char *ns, const char *name)
{
        char *scope = *ns ? fmt("in the namespace \"%s\"", ns) : fmt("at the cluster scope");
        char *m;

        if (*name)
                m = fmt("%s \"%s\" is forbidden: User \"%s\" cannot %s resource \"%s\" in API "
                        "group \"%s\" %s",
                        q, name, r->user->name, verb, res, group, scope);
        else
                m = fmt("%s is forbidden: User \"%s\" cannot %s resource \"%s\" in API group "
                        "\"%s\" %s",
                        q, r->user->name, verb, res, group, scope);
        free(scope);
        return status(403, "Forbidden", m, ks_details(name, group, res));
}

/* ---- field errors (422 Invalid) ----------------------------------------------------------- */

struct errlist {
        cJSON *causes;
        char *msgs[32];
        size_t n;
};

static void err_add(struct errlist *e, bool required, const char *field, char *body)
{
        cJSON *c = cJSON_CreateObject();

        if (!e->causes)
                e->causes = cJSON_CreateArray();
        cJSON_AddStringToObject(c, "reason", required ? "FieldValueRequired" : "FieldValueInvalid");
        cJSON_AddStringToObject(c, "message", body);
        cJSON_AddStringToObject(c, "field", field);
        cJSON_AddItemToArray(e->causes, c);
        char *m = fmt("%s: %s", field, body);
        free(body);
        for (size_t i = 0; i < e->n; i++)
                if (streq(e->msgs[i], m)) {
                        free(m); /* the aggregate message lists each text once */
                        return;
                }
        if (e->n < ELEMENTSOF(e->msgs))
                e->msgs[e->n++] = m;
        else
                free(m);
}

static void err_release(struct errlist *e)
{
        for (size_t i = 0; i < e->n; i++)
                free(e->msgs[i]);
        cJSON_Delete(e->causes);
        *e = (struct errlist){0};
}

/* `what` is e.g. "Lease.coordination.k8s.io" or "Pod"; the details kind is `kind`. */
static cJSON *invalid_status(struct errlist *e, const char *what, const char *name,
                             const char *group, const char *kind)
{
        size_t total = 0;
        for (size_t i = 0; i < e->n; i++)
                total += strlen(e->msgs[i]) + 2;
        char *list = calloc(1, total + 3), *p = list;
        if (!list)
                abort();
        if (e->n > 1)
                *p++ = '[';
        for (size_t i = 0; i < e->n; i++)
                p += sprintf(p, "%s%s", i ? ", " : "", e->msgs[i]);
        if (e->n > 1)
                *p++ = ']';
        cJSON *d = ks_details(name, group, kind);
        cJSON_AddItemToObject(d, "causes", e->causes);
        e->causes = NULL;
        cJSON *s = status(422, "Invalid", fmt("%s \"%s\" is invalid: %s", what, name, list), d);
        free(list);
        err_release(e);
        return s;
}

/* The group a 422 names: Events of both groups are validated as the internal core type. */
static const char *invalid_group(const struct kind *k)
{
        return k->type == K_EVENT_NEW ? "" : k->group;
}

static char *kind_what(const struct kind *k)
{
        return *invalid_group(k) ? fmt("%s.%s", k->kind, k->group) : fmt("%s", k->kind);
}

/* ---- object helpers ----------------------------------------------------------------------- */

static cJSON *item(const cJSON *o, const char *key)
{
        return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const char *str(const cJSON *o, const char *key)
{
        return cJSON_GetStringValue(item(o, key));
}

static void set_str(cJSON *o, const char *key, const char *v)
{
        if (item(o, key))
                cJSON_ReplaceItemInObjectCaseSensitive(o, key, cJSON_CreateString(v));
        else
                cJSON_AddStringToObject(o, key, v);
}

static void set_item(cJSON *o, const char *key, cJSON *v)
{
        if (item(o, key))
                cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
        else
                cJSON_AddItemToObject(o, key, v);
}

/* Copy the members named in `keys` from src into dst in that order (nulls skipped). */
static void copy_ordered(cJSON *dst, const cJSON *src, const char *const *keys)
{
        for (size_t i = 0; keys[i]; i++) {
                const cJSON *v = item(src, keys[i]);
                if (v && !cJSON_IsNull(v))
                        cJSON_AddItemToObject(dst, keys[i], cJSON_Duplicate(v, true));
        }
}

static bool in_list(const char *s, const char *const *keys)
{
        for (size_t i = 0; keys[i]; i++)
                if (streq(s, keys[i]))
                        return true;
        return false;
}

/* Copy the members not named in `skip`, in input order. */
static void copy_rest(cJSON *dst, const cJSON *src, const char *const *skip)
{
        for (const cJSON *v = src ? src->child : NULL; v; v = v->next)
                if (!in_list(v->string, skip) && !cJSON_IsNull(v) && !item(dst, v->string))
                        cJSON_AddItemToObject(dst, v->string, cJSON_Duplicate(v, true));
}

static const char *const meta_keys[] = {"name",
                                        "generateName",
                                        "namespace",
                                        "selfLink",
                                        "uid",
                                        "resourceVersion",
                                        "generation",
                                        "creationTimestamp",
                                        "deletionTimestamp",
                                        "deletionGracePeriodSeconds",
                                        "labels",
                                        "annotations",
                                        "ownerReferences",
                                        "finalizers",
                                        "managedFields",
                                        NULL};

static cJSON *event_to_new(const cJSON *stored);

/* A set of fieldsV1 leaf paths, members joined by 0x1f ("f:spec", "f:renewTime"). */
struct leafset {
        char **paths;
        size_t n;
};

static void leafset_add(struct leafset *s, const char *path)
{
        for (size_t i = 0; i < s->n; i++)
                if (streq(s->paths[i], path))
                        return;
        char **n = realloc(s->paths, (s->n + 1) * sizeof(*n));
        if (!n)
                abort();
        s->paths = n;
        s->paths[s->n++] = fmt("%s", path);
}

static bool leafset_has(const struct leafset *s, const char *path)
{
        for (size_t i = 0; i < s->n; i++)
                if (streq(s->paths[i], path))
                        return true;
        return false;
}

static void leafset_release(struct leafset *s)
{
        for (size_t i = 0; i < s->n; i++)
                free(s->paths[i]);
        free(s->paths);
        *s = (struct leafset){0};
}

/* The leaves of a fieldsV1 tree, "." markers included. */
static void leaves_of(const cJSON *fv, const char *prefix, struct leafset *out)
{
        for (const cJSON *c = fv ? fv->child : NULL; c; c = c->next) {
                char *path = *prefix ? fmt("%s\x1f%s", prefix, c->string) : fmt("%s", c->string);
                if (c->child)
                        leaves_of(c, path, out);
                else
                        leafset_add(out, path);
                free(path);
        }
}

/*
 * How the members of an object become fields, as structured-merge-diff tracks them for the
 * kinds served: a leaf, a struct of leaves, a map or pointer struct (with its "." marker), a
 * list keyed by "name", or not tracked (set by admission, not by the request).
 */
enum fmode { F_DEFAULT, F_LEAF, F_STRUCT, F_DOT, F_KEYED, F_SKIP };

static const struct {
        enum ktype type;
        const char *path;
        enum fmode mode;
} frules[] = {
    {K_POD, "spec.containers", F_KEYED},
    {K_POD, "spec.initContainers", F_KEYED},
    {K_POD, "spec.tolerations", F_SKIP},
    {K_POD, "spec.priority", F_SKIP},
    {K_POD, "spec.preemptionPolicy", F_SKIP},
    {K_NAMESPACE, "spec", F_SKIP},
    {K_EVENT_CORE, "involvedObject", F_LEAF},
    {K_EVENT_CORE, "related", F_LEAF},
    {K_EVENT_NEW, "regarding", F_LEAF},
    {K_EVENT_NEW, "related", F_LEAF},
    {K_BINDING, "roleRef", F_LEAF},
    {K_BINDING, "subjects", F_LEAF},
    {K_SECRET, "data", F_DOT},
    {K_GENERIC, "data", F_DOT},
    {K_GENERIC, "spec.resourceAttributes", F_DOT},
};

static enum fmode fmode_of(enum ktype type, const char *path, int depth, const cJSON *v)
{
        for (size_t i = 0; i < ELEMENTSOF(frules); i++)
                if (frules[i].type == type && streq(frules[i].path, path))
                        return frules[i].mode;
        /* top-level structs are tracked member by member, anything deeper as a whole */
        return depth == 0 && cJSON_IsObject(v) ? F_STRUCT : F_LEAF;
}

static void member_leaves(enum ktype type, const cJSON *obj, const char *jpath, const char *fpath,
                          int depth, struct leafset *out)
{
        bool events = type == K_EVENT_CORE || type == K_EVENT_NEW;

        for (const cJSON *v = obj->child; v; v = v->next) {
                if (cJSON_IsNull(v) || (events && cJSON_IsString(v) && !*v->valuestring))
                        continue; /* zero values are not fields */
                if (depth == 0 && (streq(v->string, "kind") || streq(v->string, "apiVersion") ||
                                   streq(v->string, "metadata") || streq(v->string, "status")))
                        continue;
                _cleanup_free_ char *jp =
                    *jpath ? fmt("%s.%s", jpath, v->string) : fmt("%s", v->string);
                _cleanup_free_ char *fp = *fpath ? fmt("%s\x1f"
                                                       "f:%s",
                                                       fpath, v->string)
                                                 : fmt("f:%s", v->string);
                switch (fmode_of(type, jp, depth, v)) {
                case F_SKIP:
                        break;
                case F_DEFAULT:
                case F_LEAF:
                        leafset_add(out, fp);
                        break;
                case F_DOT:
                case F_STRUCT:
                        if (!cJSON_IsObject(v)) {
                                leafset_add(out, fp);
                                break;
                        }
                        if (fmode_of(type, jp, depth, v) == F_DOT) {
                                char *dot = fmt("%s\x1f.", fp);
                                leafset_add(out, dot);
                                free(dot);
                        }
                        member_leaves(type, v, jp, fp, depth + 1, out);
                        break;
                case F_KEYED: {
                        const cJSON *e;
                        cJSON_ArrayForEach(e, v)
                        {
                                const char *name = str(e, "name");
                                if (!name)
                                        continue;
                                cJSON *key = cJSON_CreateObject();
                                cJSON_AddStringToObject(key, "name", name);
                                char *ks = cJSON_PrintUnformatted(key);
                                cJSON_Delete(key);
                                char *ep = fmt("%s\x1fk:%s", fp, ks);
                                char *dot = fmt("%s\x1f.", ep);
                                leafset_add(out, dot);
                                /* an element's members are leaves */
                                for (const cJSON *m = e->child; m; m = m->next) {
                                        char *mp = fmt("%s\x1f"
                                                       "f:%s",
                                                       ep, m->string);
                                        if (!cJSON_IsNull(m))
                                                leafset_add(out, mp);
                                        free(mp);
                                }
                                free(dot);
                                free(ep);
                                free(ks);
                        }
                        break;
                }
                }
        }
}

/* The fields set in an object (as its API version shows it). */
static void object_leaves(enum ktype type, const cJSON *view, struct leafset *out)
{
        const cJSON *meta = item(view, "metadata");
        static const char *const maps[] = {"annotations", "labels"};

        if (str(meta, "generateName"))
                leafset_add(out, "f:metadata\x1f"
                                 "f:generateName");
        for (size_t i = 0; i < ELEMENTSOF(maps); i++) {
                const cJSON *m = item(meta, maps[i]);
                if (!cJSON_IsObject(m) || !m->child)
                        continue;
                char *dot = fmt("f:metadata\x1f"
                                "f:%s\x1f.",
                                maps[i]);
                leafset_add(out, dot);
                free(dot);
                for (const cJSON *l = m->child; l; l = l->next) {
                        char *p = fmt("f:metadata\x1f"
                                      "f:%s\x1f"
                                      "f:%s",
                                      maps[i], l->string);
                        leafset_add(out, p);
                        free(p);
                }
        }
        member_leaves(type, view, "", "", 0, out);
}

/* The member of `obj` a leaf path names, or NULL; "." names the container itself. */
static const cJSON *value_at(const cJSON *obj, const char *path)
{
        const cJSON *node = obj;
        const char *p = path;

        while (node && *p) {
                const char *sep = strchr(p, '\x1f');
                size_t n = sep ? (size_t)(sep - p) : strlen(p);
                char *key = fmt("%.*s", (int)n, p);
                if (streq(key, ".")) {
                        /* the container */
                } else if (strncmp(key, "k:", 2) == 0) {
                        cJSON *want = cJSON_Parse(key + 2);
                        const cJSON *e, *found = NULL;
                        cJSON_ArrayForEach(e, node)
                        {
                                const char *want_name = str(want, "name");
                                if (!found && want_name && str(e, "name") &&
                                    streq(str(e, "name"), want_name))
                                        found = e;
                        }
                        cJSON_Delete(want);
                        node = found;
                } else {
                        node = item(node, key + 2);
                }
                free(key);
                p += n + (sep ? 1 : 0);
        }
        return node;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The fieldsV1 tree of a set, keys sorted ("." sorts first). */
static cJSON *tree_of(const struct leafset *s)
{
        cJSON *root = cJSON_CreateObject();
        char **sorted = calloc(s->n ? s->n : 1, sizeof(*sorted));

        if (!sorted)
                abort();
        memcpy(sorted, s->paths, s->n * sizeof(*sorted));
        qsort(sorted, s->n, sizeof(*sorted), cmp_str);
        for (size_t i = 0; i < s->n; i++) {
                _cleanup_free_ char *copy = fmt("%s", sorted[i]);
                cJSON *node = root;
                char *save = NULL;
                for (char *tok = strtok_r(copy, "\x1f", &save); tok;
                     tok = strtok_r(NULL, "\x1f", &save)) {
                        cJSON *next = item(node, tok);
                        if (!next)
                                next = cJSON_AddObjectToObject(node, tok);
                        node = next;
                }
        }
        free(sorted);
        return root;
}

static cJSON *managed_entry(const char *manager, const char *api_version, const char *time,
                            cJSON *fields)
{
        cJSON *n = cJSON_CreateObject();
        cJSON_AddStringToObject(n, "manager", manager);
        cJSON_AddStringToObject(n, "operation", "Update");
        cJSON_AddStringToObject(n, "apiVersion", api_version);
        cJSON_AddStringToObject(n, "time", time);
        cJSON_AddStringToObject(n, "fieldsType", "FieldsV1");
        cJSON_AddItemToObject(n, "fieldsV1", fields);
        return n;
}

/*
 * Refresh metadata.managedFields of `obj` after a write by `manager` through `api_version`,
 * `old` being the state before (NULL for a create). As for an Update in kube: the writer owns
 * what it changed (and keeps what it owned that still exists); the others lose the fields that
 * changed; an entry without fields disappears.
 */
static void managed_fields(cJSON *obj, const cJSON *old_obj, enum ktype type, const char *manager,
                           const char *api_version)
{
        cJSON *meta = item(obj, "metadata");
        cJSON *entries = cJSON_DetachItemFromObjectCaseSensitive(meta, "managedFields");
        /* events.k8s.io writers own fields of that version's shape */
        _cleanup_json_ cJSON *view = type == K_EVENT_NEW ? event_to_new(obj) : NULL;
        _cleanup_json_ cJSON *old_view =
            type == K_EVENT_NEW && old_obj ? event_to_new(old_obj) : NULL;
        const cJSON *now_v = view ? view : obj, *old = old_view ? old_view : old_obj;
        struct leafset all = {0}, changed = {0}, mine = {0};
        cJSON *list = cJSON_CreateArray();
        int mine_at = -1;
        char now[32];

        ks_time_now(now, sizeof(now));
        object_leaves(type, now_v, &all);
        for (size_t i = 0; i < all.n; i++) {
                const char *p = all.paths[i];
                size_t n = strlen(p);
                const cJSON *was = old ? value_at(old, p) : NULL;
                bool marker = n >= 2 && streq(p + n - 2, "\x1f.");
                /* a "." changes hands only when its map or struct is new */
                if (!was || (!marker && !cJSON_Compare(was, value_at(now_v, p), true)))
                        leafset_add(&changed, p);
        }
        for (cJSON *e = entries ? entries->child : NULL; e; e = e->next) {
                struct leafset owned = {0}, keep = {0};
                leaves_of(item(e, "fieldsV1"), "", &owned);
                bool is_mine = streq(str(e, "manager") ? str(e, "manager") : "", manager) &&
                               streq(str(e, "operation") ? str(e, "operation") : "", "Update");
                for (size_t i = 0; i < owned.n; i++)
                        if (leafset_has(&all, owned.paths[i]) &&
                            (is_mine || !leafset_has(&changed, owned.paths[i])))
                                leafset_add(is_mine ? &mine : &keep, owned.paths[i]);
                if (is_mine) {
                        mine_at = cJSON_GetArraySize(list);
                        cJSON_AddItemToArray(list, cJSON_CreateNull()); /* its place */
                } else if (keep.n > 0) {
                        cJSON *copy = cJSON_Duplicate(e, true);
                        cJSON_ReplaceItemInObjectCaseSensitive(copy, "fieldsV1", tree_of(&keep));
                        cJSON_AddItemToArray(list, copy);
                }
                leafset_release(&owned);
                leafset_release(&keep);
        }
        for (size_t i = 0; i < changed.n; i++)
                leafset_add(&mine, changed.paths[i]);
        if (mine.n > 0) {
                cJSON *n = managed_entry(manager, api_version, now, tree_of(&mine));
                if (mine_at >= 0)
                        cJSON_ReplaceItemInArray(list, mine_at, n);
                else
                        cJSON_AddItemToArray(list, n);
        } else if (mine_at >= 0) {
                cJSON_DeleteItemFromArray(list, mine_at);
        }
        leafset_release(&all);
        leafset_release(&changed);
        leafset_release(&mine);
        cJSON_Delete(entries);
        if (cJSON_GetArraySize(list) > 0)
                cJSON_AddItemToObject(meta, "managedFields", list);
        else
                cJSON_Delete(list);
}

/* ---- decoding ----------------------------------------------------------------------------- */

static const char *const lease_spec_keys[] = {
    "holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions", NULL};
static const char *const event_core_keys[] = {"involvedObject",
                                              "reason",
                                              "message",
                                              "source",
                                              "firstTimestamp",
                                              "lastTimestamp",
                                              "count",
                                              "type",
                                              "eventTime",
                                              "series",
                                              "action",
                                              "related",
                                              "reportingComponent",
                                              "reportingInstance",
                                              NULL};
static const char *const event_new_keys[] = {"eventTime",
                                             "series",
                                             "reportingController",
                                             "reportingInstance",
                                             "action",
                                             "reason",
                                             "regarding",
                                             "related",
                                             "note",
                                             "type",
                                             "deprecatedSource",
                                             "deprecatedFirstTimestamp",
                                             "deprecatedLastTimestamp",
                                             "deprecatedCount",
                                             NULL};
static const char *const envelope_keys[] = {"kind", "apiVersion", "metadata", NULL};

static void unknown_field(struct req *r, char **strict_list, const char *path)
{
        char *q = fmt("unknown field \"%s\"", path);
        if (r->strict) {
                char *n = *strict_list ? fmt("%s, %s", *strict_list, q) : fmt("%s", q);
                free(*strict_list);
                *strict_list = n;
        } else if (r->n_warn < ELEMENTSOF(r->warnings)) {
                /* Warning: 299 - "unknown field \"spec.bogusField\"" */
                char *esc = fmt("unknown field \\\"%s\\\"", path);
                r->warnings[r->n_warn++] = fmt("299 - \"%s\"", esc);
                free(esc);
        }
        free(q);
}

static void check_unknown(struct req *r, char **strict_list, const cJSON *obj, const char *prefix,
                          const char *const *known)
{
        for (const cJSON *v = obj ? obj->child : NULL; v; v = v->next)
                if (!in_list(v->string, known)) {
                        char *p = *prefix ? fmt("%s.%s", prefix, v->string) : fmt("%s", v->string);
                        unknown_field(r, strict_list, p);
                        free(p);
                }
}

/* Normalise the MicroTime member `key` of `o` in place; an error message or NULL. */
static char *microtime_member(cJSON *o, const char *key)
{
        cJSON *v = item(o, key);
        char out[32];

        if (!v || cJSON_IsNull(v))
                return NULL;
        if (!cJSON_IsString(v))
                return fmt("json: cannot unmarshal %s into Go value of type string",
                           cJSON_IsNumber(v) ? "number" : "object");
        char *e = ks_microtime_parse(v->valuestring, out);
        if (e)
                return e;
        /* in place: callers iterate over the members of `o` */
        if (!cJSON_SetValuestring(v, out))
                abort();
        return NULL;
}

/* Type checks and MicroTime parsing for the decoded body; a 400 Status or NULL. */
static cJSON *typed_decode(struct req *r, const struct kind *k, cJSON *body)
{
        _cleanup_free_ char *strict_list = NULL;
        char *e = NULL;
        cJSON *spec = item(body, "spec");

        if (!cJSON_IsObject(body))
                return bad_request(fmt("the object provided is unrecognized (must be of type %s): "
                                       "couldn't get version/kind; json parse error: json: "
                                       "cannot unmarshal %s into Go value of type struct { "
                                       "APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; "
                                       "Kind string \"json:\\\"kind,omitempty\\\"\" }",
                                       k->kind, cJSON_IsArray(body) ? "array" : "string"));
        const char *kind = str(body, "kind");
        if (kind && *kind && !streq(kind, k->kind))
                return bad_request(fmt("the object provided is unrecognized (must be of type %s): "
                                       "no kind \"%s\" is registered for version \"%s%s%s\" in "
                                       "scheme \"pkg/api/legacyscheme/scheme.go:30\"",
                                       k->kind, kind, k->group, *k->group ? "/" : "", k->version));
        const cJSON *meta = item(body, "metadata");
        if (meta && !cJSON_IsObject(meta) && !cJSON_IsNull(meta))
                e = fmt("json: cannot unmarshal %s into Go struct field %s.metadata of type "
                        "v1.ObjectMeta",
                        cJSON_IsArray(meta)    ? "array"
                        : cJSON_IsString(meta) ? "string"
                                               : "number",
                        k->kind);
        if (!e && cJSON_IsObject(meta)) {
                check_unknown(r, &strict_list, meta, "metadata", meta_keys);
                const cJSON *labels = item(meta, "labels");
                const cJSON *l;
                cJSON_ArrayForEach(l, labels)
                {
                        if (!cJSON_IsString(l) && !cJSON_IsNull(l)) {
                                e = fmt("json: cannot unmarshal %s into Go struct field "
                                        "ObjectMeta.metadata.labels of type string",
                                        cJSON_IsNumber(l) ? "number" : "object");
                                break;
                        }
                }
        }
        if (!e && k->type == K_LEASE) {
                static const char *const lease_keys[] = {"kind", "apiVersion", "metadata", "spec",
                                                         NULL};
                check_unknown(r, &strict_list, body, "", lease_keys);
                if (spec && !cJSON_IsNull(spec) && !cJSON_IsObject(spec))
                        e = fmt("json: cannot unmarshal %s into Go struct field Lease.spec of type "
                                "v1.LeaseSpec",
                                cJSON_IsArray(spec) ? "array" : "string");
                if (!e && cJSON_IsObject(spec)) {
                        for (cJSON *v = spec->child; v && !e; v = v->next) {
                                if (!in_list(v->string, lease_spec_keys)) {
                                        char *p = fmt("spec.%s", v->string);
                                        unknown_field(r, &strict_list, p);
                                        free(p);
                                        continue;
                                }
                                if (cJSON_IsNull(v))
                                        continue;
                                bool is_int = streq(v->string, "leaseDurationSeconds") ||
                                              streq(v->string, "leaseTransitions");
                                if (is_int && (!cJSON_IsNumber(v) ||
                                               v->valuedouble != (double)(int)v->valuedouble))
                                        e = fmt("json: cannot unmarshal %s into Go struct field "
                                                "LeaseSpec.spec.%s of type int32",
                                                cJSON_IsString(v) ? "string" : "number", v->string);
                                else if (streq(v->string, "holderIdentity") && !cJSON_IsString(v))
                                        e = fmt("json: cannot unmarshal %s into Go struct field "
                                                "LeaseSpec.spec.holderIdentity of type string",
                                                cJSON_IsNumber(v) ? "number" : "object");
                                else if (streq(v->string, "acquireTime") ||
                                         streq(v->string, "renewTime"))
                                        e = microtime_member(spec, v->string);
                        }
                }
        }
        if (!e && (k->type == K_EVENT_CORE || k->type == K_EVENT_NEW)) {
                const char *const *keys =
                    k->type == K_EVENT_CORE ? event_core_keys : event_new_keys;
                for (const cJSON *v = body->child; v; v = v->next)
                        if (!in_list(v->string, envelope_keys) && !in_list(v->string, keys)) {
                                unknown_field(r, &strict_list, v->string);
                        }
                e = microtime_member(body, "eventTime");
        }
        if (e) {
                cJSON *s = bad_request(fmt("%s in version \"%s\" cannot be handled as a %s: %s",
                                           k->kind, k->version, k->kind, e));
                free(e);
                return s;
        }
        if (strict_list)
                return bad_request(fmt("%s in version \"%s\" cannot be handled as a %s: strict "
                                       "decoding error: %s",
                                       k->kind, k->version, k->kind, strict_list));
        return NULL;
}

/* True when a JSON text stops inside a string or an open object or array. */
static bool truncated(const char *s, size_t n)
{
        int depth = 0;
        bool in_str = false;

        for (size_t i = 0; s && i < n; i++) {
                if (in_str) {
                        if (s[i] == '\\')
                                i++;
                        else if (s[i] == '"')
                                in_str = false;
                } else if (s[i] == '"') {
                        in_str = true;
                } else if (s[i] == '{' || s[i] == '[') {
                        depth++;
                } else if (s[i] == '}' || s[i] == ']') {
                        depth--;
                }
        }
        return in_str || depth > 0;
}

/* Parse the request body as JSON; a 400 Status or NULL. */
static cJSON *parse_body(const struct req *r, const struct kind *k, cJSON **out)
{
        const char *end = NULL;

        *out = cJSON_ParseWithLengthOpts(r->body ? r->body : "", r->len, &end, false);
        if (*out)
                return NULL;
        char snippet[64];
        snprintf(snippet, sizeof(snippet), "%.30s%s", r->body ? r->body : "",
                 r->len > 30 ? " ..." : "");
        bool at_end = !end || (size_t)(end - r->body) >= r->len || truncated(r->body, r->len);
        char *what = at_end ? fmt("unexpected end of JSON input")
                            : fmt("invalid character '%c' looking for beginning of value", *end);
        cJSON *s = bad_request(fmt("the object provided is unrecognized (must be of type %s): "
                                   "couldn't get version/kind; json parse error: %s (%s)",
                                   k->kind, what, snippet));
        free(what);
        return s;
}

/* ---- per-type canonical form ---------------------------------------------------------------- */

static cJSON *object_reference(const cJSON *ref)
{
        static const char *const keys[] = {"kind",       "namespace",       "name",      "uid",
                                           "apiVersion", "resourceVersion", "fieldPath", NULL};
        cJSON *o = cJSON_CreateObject();
        for (size_t i = 0; keys[i]; i++) {
                const char *v = str(ref, keys[i]);
                if (v && *v)
                        cJSON_AddStringToObject(o, keys[i], v);
        }
        return o;
}

static void add_or_default(cJSON *dst, const cJSON *src, const char *key, cJSON *dflt)
{
        const cJSON *v = item(src, key);
        if (v && !cJSON_IsNull(v)) {
                cJSON_AddItemToObject(dst, key, cJSON_Duplicate(v, true));
                cJSON_Delete(dflt);
        } else if (dflt) {
                cJSON_AddItemToObject(dst, key, dflt);
        }
}

static void add_nonempty_str(cJSON *dst, const cJSON *src, const char *key, const char *as)
{
        const char *v = str(src, key);
        if (v && *v)
                cJSON_AddStringToObject(dst, as, v);
}

static void add_nonzero_num(cJSON *dst, const cJSON *src, const char *key, const char *as)
{
        const cJSON *v = item(src, key);
        if (cJSON_IsNumber(v) && v->valuedouble != 0)
                cJSON_AddNumberToObject(dst, as, v->valuedouble);
}

/* The stored (core/v1) body of an Event from a core/v1 body. */
static void event_core_body(cJSON *dst, const cJSON *src)
{
        cJSON_AddItemToObject(dst, "involvedObject", object_reference(item(src, "involvedObject")));
        add_nonempty_str(dst, src, "reason", "reason");
        add_nonempty_str(dst, src, "message", "message");
        cJSON *source = cJSON_CreateObject();
        add_nonempty_str(source, item(src, "source"), "component", "component");
        add_nonempty_str(source, item(src, "source"), "host", "host");
        cJSON_AddItemToObject(dst, "source", source);
        add_or_default(dst, src, "firstTimestamp", cJSON_CreateNull());
        add_or_default(dst, src, "lastTimestamp", cJSON_CreateNull());
        add_nonzero_num(dst, src, "count", "count");
        add_nonempty_str(dst, src, "type", "type");
        add_or_default(dst, src, "eventTime", cJSON_CreateNull());
        add_or_default(dst, src, "series", NULL);
        add_nonempty_str(dst, src, "action", "action");
        if (cJSON_IsObject(item(src, "related")))
                cJSON_AddItemToObject(dst, "related", object_reference(item(src, "related")));
        const char *rc = str(src, "reportingComponent");
        cJSON_AddStringToObject(dst, "reportingComponent", rc ? rc : "");
        const char *ri = str(src, "reportingInstance");
        cJSON_AddStringToObject(dst, "reportingInstance", ri ? ri : "");
}

/* The stored (core/v1) body of an Event from an events.k8s.io/v1 body. */
static void event_core_from_new_body(cJSON *dst, const cJSON *src)
{
        cJSON *tmp = cJSON_CreateObject();

        set_item(tmp, "involvedObject", cJSON_Duplicate(item(src, "regarding"), true));
        if (str(src, "reason"))
                set_str(tmp, "reason", str(src, "reason"));
        if (str(src, "note"))
                set_str(tmp, "message", str(src, "note"));
        if (item(src, "deprecatedSource"))
                set_item(tmp, "source", cJSON_Duplicate(item(src, "deprecatedSource"), true));
        if (item(src, "deprecatedFirstTimestamp"))
                set_item(tmp, "firstTimestamp",
                         cJSON_Duplicate(item(src, "deprecatedFirstTimestamp"), true));
        if (item(src, "deprecatedLastTimestamp"))
                set_item(tmp, "lastTimestamp",
                         cJSON_Duplicate(item(src, "deprecatedLastTimestamp"), true));
        if (item(src, "deprecatedCount"))
                set_item(tmp, "count", cJSON_Duplicate(item(src, "deprecatedCount"), true));
        static const char *const same[] = {"type",    "eventTime",         "series", "action",
                                           "related", "reportingInstance", NULL};
        for (size_t i = 0; same[i]; i++)
                if (item(src, same[i]))
                        set_item(tmp, same[i], cJSON_Duplicate(item(src, same[i]), true));
        if (str(src, "reportingController"))
                set_str(tmp, "reportingComponent", str(src, "reportingController"));
        event_core_body(dst, tmp);
        cJSON_Delete(tmp);
}

/* An events.k8s.io/v1 view of a stored Event (caller frees). */
static cJSON *event_to_new(const cJSON *stored)
{
        cJSON *o = cJSON_CreateObject();

        cJSON_AddStringToObject(o, "kind", "Event");
        cJSON_AddStringToObject(o, "apiVersion", "events.k8s.io/v1");
        cJSON_AddItemToObject(o, "metadata", cJSON_Duplicate(item(stored, "metadata"), true));
        add_or_default(o, stored, "eventTime", cJSON_CreateNull());
        add_or_default(o, stored, "series", NULL);
        add_nonempty_str(o, stored, "reportingComponent", "reportingController");
        add_nonempty_str(o, stored, "reportingInstance", "reportingInstance");
        add_nonempty_str(o, stored, "action", "action");
        add_nonempty_str(o, stored, "reason", "reason");
        cJSON_AddItemToObject(o, "regarding", object_reference(item(stored, "involvedObject")));
        if (item(stored, "related"))
                cJSON_AddItemToObject(o, "related", object_reference(item(stored, "related")));
        add_nonempty_str(o, stored, "message", "note");
        add_nonempty_str(o, stored, "type", "type");
        add_or_default(o, stored, "source", NULL);
        if (!item(o, "source"))
                cJSON_AddObjectToObject(o, "deprecatedSource");
        else
                cJSON_AddItemToObject(o, "deprecatedSource",
                                      cJSON_DetachItemFromObjectCaseSensitive(o, "source"));
        add_or_default(o, stored, "firstTimestamp", cJSON_CreateNull());
        cJSON_AddItemToObject(o, "deprecatedFirstTimestamp",
                              cJSON_DetachItemFromObjectCaseSensitive(o, "firstTimestamp"));
        add_or_default(o, stored, "lastTimestamp", cJSON_CreateNull());
        cJSON_AddItemToObject(o, "deprecatedLastTimestamp",
                              cJSON_DetachItemFromObjectCaseSensitive(o, "lastTimestamp"));
        add_nonzero_num(o, stored, "count", "deprecatedCount");
        return o;
}

static const char *const pod_spec_order[] = {"volumes",
                                             "initContainers",
                                             "containers",
                                             "restartPolicy",
                                             "terminationGracePeriodSeconds",
                                             "activeDeadlineSeconds",
                                             "dnsPolicy",
                                             "nodeSelector",
                                             "serviceAccountName",
                                             "serviceAccount",
                                             "nodeName",
                                             "hostNetwork",
                                             "securityContext",
                                             "imagePullSecrets",
                                             "hostname",
                                             "subdomain",
                                             "affinity",
                                             "schedulerName",
                                             "tolerations",
                                             "priority",
                                             "enableServiceLinks",
                                             "preemptionPolicy",
                                             NULL};

static cJSON *pod_spec_defaults(const cJSON *spec)
{
        cJSON *in = cJSON_IsObject(spec) ? cJSON_Duplicate(spec, true) : cJSON_CreateObject();
        cJSON *out = cJSON_CreateObject();
        cJSON *c;

        cJSON_ArrayForEach(c, item(in, "containers"))
        {
                const char *image = str(c, "image");
                if (!item(c, "resources"))
                        cJSON_AddObjectToObject(c, "resources");
                if (!item(c, "terminationMessagePath"))
                        cJSON_AddStringToObject(c, "terminationMessagePath",
                                                "/dev/termination-log");
                if (!item(c, "terminationMessagePolicy"))
                        cJSON_AddStringToObject(c, "terminationMessagePolicy", "File");
                if (!item(c, "imagePullPolicy")) {
                        const char *colon = image ? strrchr(image, ':') : NULL;
                        bool latest = !colon || strchr(colon, '/') || streq(colon, ":latest");
                        cJSON_AddStringToObject(c, "imagePullPolicy",
                                                latest ? "Always" : "IfNotPresent");
                }
        }
        if (!item(in, "restartPolicy"))
                cJSON_AddStringToObject(in, "restartPolicy", "Always");
        if (!item(in, "terminationGracePeriodSeconds"))
                cJSON_AddNumberToObject(in, "terminationGracePeriodSeconds", 30);
        if (!item(in, "dnsPolicy"))
                cJSON_AddStringToObject(in, "dnsPolicy", "ClusterFirst");
        if (!item(in, "securityContext"))
                cJSON_AddObjectToObject(in, "securityContext");
        if (!item(in, "schedulerName"))
                cJSON_AddStringToObject(in, "schedulerName", "default-scheduler");
        if (!item(in, "tolerations")) {
                cJSON *t = cJSON_Parse(
                    "[{\"key\":\"node.kubernetes.io/not-ready\",\"operator\":\"Exists\","
                    "\"effect\":\"NoExecute\",\"tolerationSeconds\":300},{\"key\":\"node."
                    "kubernetes.io/unreachable\",\"operator\":\"Exists\",\"effect\":"
                    "\"NoExecute\",\"tolerationSeconds\":300}]");
                cJSON_AddItemToObject(in, "tolerations", t);
        }
        if (!item(in, "priority"))
                cJSON_AddNumberToObject(in, "priority", 0);
        if (!item(in, "enableServiceLinks"))
                cJSON_AddTrueToObject(in, "enableServiceLinks");
        if (!item(in, "preemptionPolicy"))
                cJSON_AddStringToObject(in, "preemptionPolicy", "PreemptLowerPriority");
        copy_ordered(out, in, pod_spec_order);
        copy_rest(out, in, pod_spec_order);
        cJSON_Delete(in);
        return out;
}

static cJSON *role_rules(const cJSON *rules)
{
        static const char *const order[] = {"verbs",         "apiGroups",       "resources",
                                            "resourceNames", "nonResourceURLs", NULL};
        cJSON *out = cJSON_CreateArray();
        const cJSON *r;
        cJSON_ArrayForEach(r, rules)
        {
                cJSON *o = cJSON_CreateObject();
                copy_ordered(o, r, order);
                cJSON_AddItemToArray(out, o);
        }
        return out;
}

/* Build the canonical object for kind `k` from `body` and the server-set `meta` (taken). */
static cJSON *canonical(const struct kind *k, const cJSON *body, cJSON *meta, const char *api)
{
        cJSON *o = cJSON_CreateObject();

        cJSON_AddStringToObject(o, "kind", k->kind);
        cJSON_AddStringToObject(o, "apiVersion", api);
        cJSON_AddItemToObject(o, "metadata", meta);
        switch (k->type) {
        case K_LEASE: {
                cJSON *spec = cJSON_AddObjectToObject(o, "spec");
                copy_ordered(spec, item(body, "spec"), lease_spec_keys);
                break;
        }
        case K_POD: {
                cJSON_AddItemToObject(o, "spec", pod_spec_defaults(item(body, "spec")));
                const cJSON *st = item(body, "status");
                cJSON_AddItemToObject(o, "status",
                                      cJSON_IsObject(st) && st->child
                                          ? cJSON_Duplicate(st, true)
                                          : cJSON_Parse("{\"phase\":\"Pending\",\"qosClass\":"
                                                        "\"BestEffort\"}"));
                break;
        }
        case K_NAMESPACE:
                cJSON_AddItemToObject(o, "spec", cJSON_Parse("{\"finalizers\":[\"kubernetes\"]}"));
                cJSON_AddItemToObject(o, "status", cJSON_Parse("{\"phase\":\"Active\"}"));
                break;
        case K_EVENT_CORE:
                event_core_body(o, body);
                break;
        case K_EVENT_NEW:
                event_core_from_new_body(o, body);
                break;
        case K_SECRET: {
                cJSON *data = cJSON_IsObject(item(body, "data"))
                                  ? cJSON_Duplicate(item(body, "data"), true)
                                  : cJSON_CreateObject();
                const cJSON *sd;
                cJSON_ArrayForEach(sd, item(body, "stringData"))
                {
                        /* stringData is folded into data, base64-encoded */
                        static const char b64[] =
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                        const unsigned char *s = (const unsigned char *)cJSON_GetStringValue(sd);
                        size_t n = s ? strlen((const char *)s) : 0;
                        char *enc = malloc(4 * (n / 3 + 1) + 1), *p = enc;
                        if (!enc)
                                abort();
                        for (size_t i = 0; i < n; i += 3) {
                                unsigned v = (unsigned)s[i] << 16 |
                                             (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) |
                                             (i + 2 < n ? s[i + 2] : 0);
                                *p++ = b64[v >> 18 & 63];
                                *p++ = b64[v >> 12 & 63];
                                *p++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
                                *p++ = i + 2 < n ? b64[v & 63] : '=';
                        }
                        *p = '\0';
                        set_item(data, sd->string, cJSON_CreateString(enc));
                        free(enc);
                }
                if (data->child)
                        cJSON_AddItemToObject(o, "data", data);
                else
                        cJSON_Delete(data);
                const char *type = str(body, "type");
                cJSON_AddStringToObject(o, "type", type && *type ? type : "Opaque");
                break;
        }
        case K_ROLE:
                cJSON_AddItemToObject(o, "rules", role_rules(item(body, "rules")));
                copy_rest(o, body,
                          (const char *const[]){"kind", "apiVersion", "metadata", "rules", NULL});
                break;
        case K_BINDING: {
                static const char *const order[] = {"kind", "apiGroup", "name", "namespace", NULL};
                cJSON *subs = cJSON_CreateArray();
                const cJSON *s;
                cJSON_ArrayForEach(s, item(body, "subjects"))
                {
                        cJSON *n = cJSON_CreateObject();
                        copy_ordered(n, s, order);
                        cJSON_AddItemToArray(subs, n);
                }
                cJSON_AddItemToObject(o, "subjects", subs);
                cJSON *ref = cJSON_CreateObject();
                copy_ordered(ref, item(body, "roleRef"),
                             (const char *const[]){"apiGroup", "kind", "name", NULL});
                cJSON_AddItemToObject(o, "roleRef", ref);
                break;
        }
        case K_GENERIC:
                copy_rest(o, body, envelope_keys);
                break;
        }
        return o;
}

/* Metadata in kube's member order from the client's metadata and the server's values. */
static cJSON *make_meta(const cJSON *in, const char *name, const char *ns, const char *uid,
                        uint64_t rv, const char *created)
{
        cJSON *m = cJSON_CreateObject();
        char rvs[32];

        snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)rv);
        cJSON_AddStringToObject(m, "name", name);
        if (str(in, "generateName") && *str(in, "generateName"))
                cJSON_AddStringToObject(m, "generateName", str(in, "generateName"));
        if (ns && *ns)
                cJSON_AddStringToObject(m, "namespace", ns);
        cJSON_AddStringToObject(m, "uid", uid);
        cJSON_AddStringToObject(m, "resourceVersion", rvs);
        cJSON_AddStringToObject(m, "creationTimestamp", created);
        static const char *const rest[] = {"labels",     "annotations",   "ownerReferences",
                                           "finalizers", "managedFields", NULL};
        for (size_t i = 0; rest[i]; i++) {
                const cJSON *v = item(in, rest[i]);
                if (v && !cJSON_IsNull(v) &&
                    !((cJSON_IsObject(v) || cJSON_IsArray(v)) && !v->child))
                        cJSON_AddItemToObject(m, rest[i], cJSON_Duplicate(v, true));
        }
        /* labels: a null value inside the map means no label */
        cJSON *labels = item(m, "labels");
        for (cJSON *l = labels ? labels->child : NULL; l;) {
                cJSON *next = l->next;
                if (cJSON_IsNull(l))
                        cJSON_Delete(cJSON_DetachItemViaPointer(labels, l));
                l = next;
        }
        if (labels && !labels->child)
                cJSON_DeleteItemFromObjectCaseSensitive(m, "labels");
        return m;
}

/* ---- validation (422) ----------------------------------------------------------------------- */

static void validate_labels(struct errlist *e, const cJSON *meta, int repeat)
{
        const cJSON *l;
        cJSON_ArrayForEach(l, item(meta, "labels"))
        {
                char *ek = ks_check_label_key(l->string);
                char *ev = cJSON_IsString(l) ? ks_check_label_value(l->valuestring) : NULL;
                for (int i = 0; i < repeat; i++) {
                        if (ek)
                                err_add(e, false, "metadata.labels", fmt("%s", ek));
                        if (ev)
                                err_add(e, false, "metadata.labels", fmt("%s", ev));
                }
                free(ek);
                free(ev);
        }
}

static void qualified_name(struct errlist *e, const char *field, const char *v)
{
        if (!*v) {
                err_add(e, false, field, fmt("Invalid value: \"\": name part must be non-empty"));
                err_add(e, false, field,
                        fmt("Invalid value: \"\": name part must consist of alphanumeric "
                            "characters, '-', '_' or '.', and must start and end with an "
                            "alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
                            "'123-abc', regex used for validation is "
                            "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"));
                return;
        }
        char *m = ks_check_label_key(v);
        if (m)
                err_add(e, false, field, m);
}

/* Validate the canonical object `o`; fills `e`. `update`: pods repeat label errors. */
static void validate(const struct kind *k, const cJSON *o, const cJSON *raw, bool update,
                     struct errlist *e)
{
        const cJSON *meta = item(o, "metadata");
        const char *name = str(meta, "name");

        if (!update && k->type != K_EVENT_CORE && k->type != K_EVENT_NEW) {
                char *m = ks_check_dns_subdomain(name);
                if (m)
                        err_add(e, false, "metadata.name", m);
        }
        validate_labels(e, meta, update && k->type == K_POD ? 4 : 1);
        if (k->type == K_LEASE) {
                const cJSON *spec = item(o, "spec");
                const cJSON *d = item(spec, "leaseDurationSeconds");
                const cJSON *t = item(spec, "leaseTransitions");
                if (d && d->valuedouble <= 0)
                        err_add(e, false, "spec.leaseDurationSeconds",
                                fmt("Invalid value: %d: must be greater than 0", d->valueint));
                if (t && t->valuedouble < 0)
                        err_add(e, false, "spec.leaseTransitions",
                                fmt("Invalid value: %d: must be greater than or equal to 0",
                                    t->valueint));
        }
        if (k->type == K_EVENT_CORE || k->type == K_EVENT_NEW) {
                const char *ns = str(meta, "namespace");
                const char *ion = str(item(o, "involvedObject"), "namespace");
                bool has_time = !cJSON_IsNull(item(o, "eventTime"));
                const char *rc_field =
                    k->type == K_EVENT_CORE ? "reportingComponent" : "reportingController";
                if (!has_time) {
                        if (ion ? !streq(ion, ns ? ns : "")
                                : !(streq(ns ? ns : "", "") || streq(ns, "default")))
                                err_add(e, false, "involvedObject.namespace",
                                        fmt("Invalid value: \"%s\": does not match "
                                            "event.namespace",
                                            ion ? ion : ""));
                } else {
                        if (!ion && !streq(ns, "default") && !streq(ns, "kube-system"))
                                err_add(e, false, "involvedObject.namespace",
                                        fmt("Invalid value: \"\": does not match "
                                            "event.namespace"));
                        else if (ion && !streq(ion, ns ? ns : ""))
                                err_add(e, false, "involvedObject.namespace",
                                        fmt("Invalid value: \"%s\": does not match "
                                            "event.namespace",
                                            ion));
                        const char *rc = str(o, "reportingComponent");
                        if (!rc || !*rc)
                                err_add(e, true, rc_field, fmt("Required value"));
                        qualified_name(e, rc_field, rc ? rc : "");
                        const char *ri = str(o, "reportingInstance");
                        if (!ri || !*ri)
                                err_add(e, true, "reportingInstance", fmt("Required value"));
                }
                if (k->type == K_EVENT_NEW) {
                        const char *type = str(raw, "type");
                        if (!has_time)
                                err_add(e, true, "eventTime", fmt("Required value"));
                        if (!type || (!streq(type, "Normal") && !streq(type, "Warning")))
                                err_add(e, false, "type",
                                        fmt("Invalid value: \"\": has invalid value: %s",
                                            type ? type : ""));
                        if (strempty(str(raw, "action")))
                                err_add(e, true, "action", fmt("Required value"));
                        if (strempty(str(raw, "reason")))
                                err_add(e, true, "reason", fmt("Required value"));
                }
        }
}

/* ---- handlers ----------------------------------------------------------------------------- */

static const char *api_version(const struct kind *k)
{
        static __thread char buf[96];
        snprintf(buf, sizeof(buf), "%s%s%s", k->group, *k->group ? "/" : "", k->version);
        return buf;
}

/* The stored object as the client's API version shows it (caller frees). */
static cJSON *present(const struct kind *k, const cJSON *stored)
{
        if (k->type == K_EVENT_NEW)
                return event_to_new(stored);
        return cJSON_Duplicate(stored, true);
}

static cJSON *present_new_event(const cJSON *stored)
{
        return event_to_new(stored);
}

static const char *query(const struct req *r, const char *key)
{
        return MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, key);
}

static bool ns_exists(const char *ns)
{
        return ks_store_get("namespaces", "", ns) != NULL;
}

/* 415 for bodies that are not JSON (POST, PUT). */
static cJSON *check_body_type(const struct req *r)
{
        const char *ct = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, "Content-Type");
        if (!ct || strncasecmp(ct, "application/json", 16) == 0 || strncasecmp(ct, "*/*", 3) == 0)
                return NULL;
        return status(415, "UnsupportedMediaType",
                      fmt("the body of the request was in an unknown format - accepted media "
                          "types include: application/json, application/yaml, "
                          "application/vnd.kubernetes.protobuf"),
                      NULL);
}

static void random_suffix(char out[6])
{
        static const char alphabet[] = "bcdfghjklmnpqrstvwxz2456789";
        char id[37];
        ks_uuid(id);
        for (int i = 0; i < 5; i++)
                out[i] = alphabet[(unsigned char)id[i * 3] % (sizeof(alphabet) - 1)];
        out[5] = '\0';
}

static enum MHD_Result do_create(struct req *r, const struct kind *k, bool via_put,
                                 cJSON *body /* taken */)
{
        _cleanup_json_ cJSON *b = body;
        const cJSON *meta = item(b, "metadata");
        char name[300];
        char uid[37], created[32];
        struct errlist e = {0};

        const char *bns = str(meta, "namespace");
        if (k->namespaced && bns && *bns && !streq(bns, r->ns))
                return send_status_obj(r, bad_request(fmt("the namespace of the provided object "
                                                          "does not match the namespace sent "
                                                          "on the request")));
        const char *rv = str(meta, "resourceVersion");
        if (!via_put && rv && *rv)
                return send_status_obj(r, status(500, NULL,
                                                 fmt("resourceVersion should not be set on "
                                                     "objects to be created"),
                                                 NULL));
        const char *n = str(meta, "name"), *gen = str(meta, "generateName");
        if (n && *n) {
                snprintf(name, sizeof(name), "%s", n);
        } else if (gen && *gen) {
                char suffix[6];
                random_suffix(suffix);
                snprintf(name, sizeof(name), "%.*s%s", 58, gen, suffix);
        } else {
                char *what = kind_what(k);
                err_add(&e, true, "metadata.name",
                        fmt("Required value: name or generateName is required"));
                cJSON *s = invalid_status(&e, what, "", invalid_group(k), k->kind);
                free(what);
                return send_status_obj(r, s);
        }

        _cleanup_json_ cJSON *meta_in =
            cJSON_IsObject(meta) ? cJSON_Duplicate(meta, true) : cJSON_CreateObject();
        if (k->type == K_NAMESPACE) {
                cJSON *labels = item(meta_in, "labels");
                if (!cJSON_IsObject(labels)) {
                        cJSON_DeleteItemFromObjectCaseSensitive(meta_in, "labels");
                        labels = cJSON_AddObjectToObject(meta_in, "labels");
                }
                set_str(labels, "kubernetes.io/metadata.name", name);
        }
        cJSON_DeleteItemFromObjectCaseSensitive(meta_in, "managedFields");
        ks_store_lock();
        uint64_t rv_new = ks_store_current_rv() + 1;
        ks_uuid(uid);
        ks_time_now(created, sizeof(created));
        cJSON *o = canonical(
            k, b, make_meta(meta_in, name, k->namespaced ? r->ns : NULL, uid, rv_new, created),
            k->type == K_EVENT_NEW ? "v1" : api_version(k));
        validate(k, o, b, false, &e);
        if (e.n > 0) {
                ks_store_unlock();
                cJSON_Delete(o);
                char *what = kind_what(k);
                cJSON *s = invalid_status(&e, what, name, invalid_group(k), k->kind);
                free(what);
                return send_status_obj(r, s);
        }
        if (k->namespaced && !ns_exists(r->ns)) {
                ks_store_unlock();
                cJSON_Delete(o);
                return send_status_obj(r, status(404, "NotFound",
                                                 fmt("namespaces \"%s\" not found", r->ns),
                                                 ks_details(r->ns, NULL, "namespaces")));
        }
        if (ks_store_get(k->store_res, k->namespaced ? r->ns : "", name)) {
                ks_store_unlock();
                cJSON_Delete(o);
                return send_status_obj(r, already_exists(k, name));
        }
        managed_fields(o, NULL, k->type, r->manager, api_version(k));
        ks_store_next_rv();
        cJSON *reply = present(k, o);
        ks_store_put(k->store_res, k->namespaced ? r->ns : "", name, o, rv_new, "ADDED");
        ks_store_unlock();
        return send_json(r, 201, reply);
}

static enum MHD_Result handle_create(struct req *r, const struct kind *k)
{
        cJSON *body, *err;

        if ((err = check_body_type(r)))
                return send_status_obj(r, err);
        if ((err = parse_body(r, k, &body)))
                return send_status_obj(r, err);
        if ((err = typed_decode(r, k, body))) {
                cJSON_Delete(body);
                return send_status_obj(r, err);
        }
        return do_create(r, k, false, body);
}

/* Compare two objects ignoring metadata.managedFields. */
static bool same_content(const cJSON *a, const cJSON *b)
{
        _cleanup_json_ cJSON *x = cJSON_Duplicate(a, true);
        _cleanup_json_ cJSON *y = cJSON_Duplicate(b, true);
        cJSON_DeleteItemFromObjectCaseSensitive(item(x, "metadata"), "managedFields");
        cJSON_DeleteItemFromObjectCaseSensitive(item(y, "metadata"), "managedFields");
        return cJSON_Compare(x, y, true);
}

/*
 * Store `next` (taken) as the new state of `cur` unless nothing changed; validation first.
 * Lock held; unlocks before answering.
 */
static enum MHD_Result commit_update(struct req *r, const struct kind *k, const cJSON *cur,
                                     cJSON *next, const cJSON *raw)
{
        struct errlist e = {0};
        const char *name = str(item(cur, "metadata"), "name");

        validate(k, next, raw, true, &e);
        if (e.n > 0) {
                ks_store_unlock();
                cJSON_Delete(next);
                char *what = kind_what(k);
                cJSON *s = invalid_status(&e, what, name, invalid_group(k), k->kind);
                free(what);
                return send_status_obj(r, s);
        }
        if (same_content(cur, next)) {
                /* A no-op: nothing is written, the resourceVersion stays, no watch event. */
                cJSON *reply = present(k, cur);
                ks_store_unlock();
                cJSON_Delete(next);
                return send_json(r, 200, reply);
        }
        uint64_t rv = ks_store_next_rv();
        char rvs[32];
        snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)rv);
        set_str(item(next, "metadata"), "resourceVersion", rvs);
        managed_fields(next, cur, k->type, r->manager, api_version(k));
        cJSON *reply = present(k, next);
        ks_store_put(k->store_res, k->namespaced ? r->ns : "", name, next, rv, "MODIFIED");
        ks_store_unlock();
        return send_json(r, 200, reply);
}

/* The client's new state rebuilt on the stored object's identity (caller frees). */
static cJSON *rebuild(const struct kind *k, const cJSON *cur, const cJSON *body)
{
        const cJSON *cm = item(cur, "metadata");
        cJSON *meta_in = cJSON_Duplicate(item(body, "metadata"), true);
        if (!meta_in)
                meta_in = cJSON_CreateObject();
        /* managedFields sent by the client are ignored; the server keeps its own */
        cJSON_DeleteItemFromObjectCaseSensitive(meta_in, "managedFields");
        if (item(cm, "managedFields"))
                cJSON_AddItemToObject(meta_in, "managedFields",
                                      cJSON_Duplicate(item(cm, "managedFields"), true));
        if (str(cm, "generateName") && !item(meta_in, "generateName"))
                cJSON_AddStringToObject(meta_in, "generateName", str(cm, "generateName"));
        const char *rv_s = str(cm, "resourceVersion");
        char *end;
        uint64_t rv = strtoull(rv_s ? rv_s : "0", &end, 10);
        cJSON *meta = make_meta(meta_in, str(cm, "name"), str(cm, "namespace"), str(cm, "uid"), rv,
                                str(cm, "creationTimestamp"));
        cJSON_Delete(meta_in);
        cJSON *o;
        if (k->type == K_EVENT_NEW) {
                o = canonical(k, body, meta, "v1");
                set_str(o, "apiVersion", "v1");
        } else {
                o = canonical(k, body, meta, api_version(k));
        }
        if (k->type == K_POD || k->type == K_NAMESPACE) {
                /* status is not changed through the main resource */
                if (item(cur, "status"))
                        set_item(o, "status", cJSON_Duplicate(item(cur, "status"), true));
        }
        return o;
}

static enum MHD_Result handle_update(struct req *r, const struct kind *k)
{
        cJSON *body, *err;

        if ((err = check_body_type(r)))
                return send_status_obj(r, err);
        if ((err = parse_body(r, k, &body)))
                return send_status_obj(r, err);
        _cleanup_json_ cJSON *b = body;
        if ((err = typed_decode(r, k, b)))
                return send_status_obj(r, err);
        const cJSON *meta = item(b, "metadata");
        const char *bname = str(meta, "name");
        if (bname && !streq(bname, r->name))
                return send_status_obj(r, bad_request(fmt("the name of the object (%s) does not "
                                                          "match the name on the URL (%s)",
                                                          bname, r->name)));
        const char *bns = str(meta, "namespace");
        if (k->namespaced && bns && *bns && !streq(bns, r->ns))
                return send_status_obj(r, bad_request(fmt("the namespace of the provided object "
                                                          "does not match the namespace sent "
                                                          "on the request")));
        const char *rv = str(meta, "resourceVersion");
        if (rv && *rv) {
                char *end;
                strtoull(rv, &end, 10);
                if (*end || *rv == '-' || *rv == '+')
                        return send_status_obj(
                            r, status(500, NULL,
                                      fmt("strconv.ParseUint: parsing \"%s\": invalid syntax", rv),
                                      NULL));
        }
        ks_store_lock();
        const cJSON *cur = ks_store_get(k->store_res, k->namespaced ? r->ns : "", r->name);
        if (!cur) {
                ks_store_unlock();
                /* PUT creates a missing object, whatever resourceVersion it carries. */
                cJSON *copy = cJSON_Duplicate(b, true);
                cJSON *m = item(copy, "metadata");
                if (!m)
                        m = cJSON_AddObjectToObject(copy, "metadata");
                cJSON_DeleteItemFromObjectCaseSensitive(m, "resourceVersion");
                set_str(m, "name", r->name);
                return do_create(r, k, true, copy);
        }
        const cJSON *cm = item(cur, "metadata");
        if (!rv || !*rv) {
                ks_store_unlock();
                struct errlist e = {0};
                err_add(&e, false, "metadata.resourceVersion",
                        fmt("Invalid value: 0x0: must be specified for an update"));
                return send_status_obj(r, invalid_status(&e, qres(k), r->name, k->group, k->res));
        }
        const char *uid = str(meta, "uid");
        if (uid && *uid && !streq(uid, str(cm, "uid"))) {
                char *m = fmt("Operation cannot be fulfilled on %s \"%s\": StorageError: invalid "
                              "object, Code: 4, Key: /registry/%s/%s%s%s, ResourceVersion: 0, "
                              "AdditionalErrorMsg: Precondition failed: UID in precondition: %s, "
                              "UID in object meta: %s",
                              qres(k), r->name, k->res, k->namespaced ? r->ns : "",
                              k->namespaced ? "/" : "", r->name, uid, str(cm, "uid"));
                ks_store_unlock();
                return send_status_obj(
                    r, status(409, "Conflict", m, ks_details(r->name, k->group, k->res)));
        }
        if (!streq(rv, str(cm, "resourceVersion"))) {
                ks_store_unlock();
                return send_status_obj(r, conflict(k, r->name));
        }
        cJSON *next = rebuild(k, cur, b);
        return commit_update(r, k, cur, next, b);
}

static enum MHD_Result handle_patch(struct req *r, const struct kind *k)
{
        const char *ct = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, "Content-Type");
        enum { MERGE, STRATEGIC, JSONPATCH, APPLY } type;
        cJSON *err;

        if (ct && strncasecmp(ct, "application/merge-patch+json", 28) == 0)
                type = MERGE;
        else if (ct && strncasecmp(ct, "application/strategic-merge-patch+json", 38) == 0)
                type = STRATEGIC;
        else if (ct && strncasecmp(ct, "application/json-patch+json", 27) == 0)
                type = JSONPATCH;
        else if (ct && strncasecmp(ct, "application/apply-patch+yaml", 28) == 0)
                type = APPLY;
        else
                return send_status_obj(r, status(415, "UnsupportedMediaType",
                                                 fmt("415: Unsupported Media Type"),
                                                 cJSON_CreateObject()));
        if (type == APPLY && strempty(query(r, "fieldManager"))) {
                struct errlist e = {0};
                err_add(&e, true, "fieldManager",
                        fmt("Required value: is required for apply "
                            "patch"));
                return send_status_obj(r, invalid_status(&e, "PatchOptions.meta.k8s.io", "",
                                                         "meta.k8s.io", "PatchOptions"));
        }
        const char *end = NULL;
        _cleanup_json_ cJSON *patch =
            cJSON_ParseWithLengthOpts(r->body ? r->body : "", r->len, &end, false);
        if (!patch)
                return send_status_obj(r, bad_request(fmt("error decoding patch: unexpected end "
                                                          "of JSON input")));
        ks_store_lock();
        const cJSON *cur = ks_store_get(k->store_res, k->namespaced ? r->ns : "", r->name);
        if (!cur) {
                ks_store_unlock();
                return send_status_obj(r, not_found(k, r->name));
        }
        _cleanup_json_ cJSON *view = present(k, cur);
        cJSON *patched;
        if (type == JSONPATCH) {
                patched = cJSON_Duplicate(view, true);
                if (ks_json_patch(patched, patch) < 0) {
                        ks_store_unlock();
                        cJSON_Delete(patched);
                        return send_status_obj(r, status(422, "Invalid",
                                                         fmt("the server rejected our request "
                                                             "due to an error in our request"),
                                                         cJSON_CreateObject()));
                }
        } else {
                const char *prv = str(item(patch, "metadata"), "resourceVersion");
                if (prv && !streq(prv, str(item(cur, "metadata"), "resourceVersion"))) {
                        ks_store_unlock();
                        return send_status_obj(r, conflict(k, r->name));
                }
                patched = ks_merge_patch(view, patch);
        }
        _cleanup_json_ cJSON *p = patched;
        if ((err = typed_decode(r, k, p))) {
                ks_store_unlock();
                return send_status_obj(r, err);
        }
        cJSON *next = rebuild(k, cur, p);
        return commit_update(r, k, cur, next, p);
}

static enum MHD_Result handle_get(struct req *r, const struct kind *k)
{
        ks_store_lock();
        const cJSON *cur = ks_store_get(k->store_res, k->namespaced ? r->ns : "", r->name);
        cJSON *reply = cur ? present(k, cur) : NULL;
        ks_store_unlock();
        if (!reply)
                return send_status_obj(r, not_found(k, r->name));
        return send_json(r, 200, reply);
}

static enum MHD_Result handle_delete(struct req *r, const struct kind *k)
{
        ks_store_lock();
        const cJSON *cur = ks_store_get(k->store_res, k->namespaced ? r->ns : "", r->name);
        if (!cur) {
                ks_store_unlock();
                return send_status_obj(r, not_found(k, r->name));
        }
        cJSON *details = ks_details(r->name, k->group, k->res);
        cJSON_AddStringToObject(details, "uid", str(item(cur, "metadata"), "uid"));
        uint64_t rv = ks_store_next_rv();
        cJSON *last = cJSON_Duplicate(cur, true);
        char rvs[32];
        snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)rv);
        set_str(item(last, "metadata"), "resourceVersion", rvs);
        ks_store_delete(k->store_res, k->namespaced ? r->ns : "", r->name, last, rv);
        ks_store_unlock();
        return send_json(r, 200, ks_status(200, NULL, NULL, details));
}

struct list_ctx {
        const struct kind *k;
        const struct ks_selector *labels;
        const char *fields;
        cJSON *items;
};

static void list_one(cJSON *obj, void *ctx)
{
        struct list_ctx *l = ctx;
        const cJSON *meta = item(obj, "metadata");

        if (!ks_selector_match(l->labels, item(meta, "labels")))
                return;
        if (l->fields && !ks_field_match(l->fields, obj))
                return;
        cJSON *v = present(l->k, obj);
        cJSON_DeleteItemFromObjectCaseSensitive(v, "kind");
        cJSON_DeleteItemFromObjectCaseSensitive(v, "apiVersion");
        cJSON_AddItemToArray(l->items, v);
}

static enum MHD_Result handle_list(struct req *r, const struct kind *k, bool all_ns)
{
        const char *ls = query(r, "labelSelector");
        char *err = NULL;
        struct ks_selector *sel = ls && *ls ? ks_selector_parse(ls, &err) : NULL;

        if (err)
                return send_status_obj(r, bad_request(err));
        cJSON *list = cJSON_CreateObject();
        cJSON_AddStringToObject(list, "kind", k->list_kind);
        cJSON_AddStringToObject(list, "apiVersion", api_version(k));
        cJSON *meta = cJSON_AddObjectToObject(list, "metadata");
        struct list_ctx l = {k, sel, query(r, "fieldSelector"), cJSON_CreateArray()};
        ks_store_lock();
        char rvs[32];
        snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)ks_store_current_rv());
        cJSON_AddStringToObject(meta, "resourceVersion", rvs);
        ks_store_foreach(k->store_res, all_ns || !k->namespaced ? NULL : r->ns, list_one, &l);
        ks_store_unlock();
        cJSON_AddItemToObject(list, "items", l.items);
        ks_selector_free(sel);
        return send_json(r, 200, list);
}

static enum MHD_Result handle_watch(struct req *r, const struct kind *k, bool all_ns)
{
        const char *ls = query(r, "labelSelector");
        char *err = NULL;
        struct ks_selector *sel = ls && *ls ? ks_selector_parse(ls, &err) : NULL;
        const char *to = query(r, "timeoutSeconds");
        const char *fs = query(r, "fieldSelector");
        char name_filter[300] = "";

        ks_selector_free(sel);
        if (err)
                return send_status_obj(r, bad_request(err));
        if (fs && strncmp(fs, "metadata.name=", 14) == 0 && !strchr(fs, ','))
                snprintf(name_filter, sizeof(name_filter), "%s", fs + (fs[14] == '=' ? 15 : 14));
        if (*r->name)
                snprintf(name_filter, sizeof(name_filter), "%s", r->name);
        int timeout = to ? atoi(to) : 0;
        if (timeout <= 0)
                timeout = 1800;
        struct ks_watch_request w = {
            .store_res = k->store_res,
            .ns = all_ns || !k->namespaced ? NULL : r->ns,
            .name = *name_filter ? name_filter : NULL,
            .field_selector = *name_filter ? NULL : fs,
            .label_text = ls,
            .resource_version = query(r, "resourceVersion"),
            .timeout_s = timeout,
            .user = r->user->name,
            .convert = k->type == K_EVENT_NEW ? present_new_event : NULL,
        };
        r->status = 200;
        return ks_watch_serve(r->c, &w);
}

static enum MHD_Result handle_access_review(struct req *r)
{
        cJSON *body;
        const struct kind fake = {"authorization.k8s.io",
                                  "v1",
                                  "selfsubjectaccessreviews",
                                  "SelfSubjectAccessReview",
                                  "",
                                  "",
                                  false,
                                  K_GENERIC};
        cJSON *err = parse_body(r, &fake, &body);
        if (err)
                return send_status_obj(r, err);
        _cleanup_json_ cJSON *b = body;
        const cJSON *ra = item(item(b, "spec"), "resourceAttributes");
        char *why = NULL;
        const char *s_ns = str(ra, "namespace"), *s_verb = str(ra, "verb");
        const char *s_group = str(ra, "group"), *s_res = str(ra, "resource");
        const char *s_name = str(ra, "name");
        bool ok = ks_authorize(r->user, s_verb ? s_verb : "", s_group ? s_group : "",
                               s_res ? s_res : "", s_ns ? s_ns : "", s_name ? s_name : "", &why);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", "SelfSubjectAccessReview");
        cJSON_AddStringToObject(o, "apiVersion", "authorization.k8s.io/v1");
        cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
        cJSON_AddNullToObject(meta, "creationTimestamp");
        cJSON *spec = cJSON_AddObjectToObject(o, "spec");
        if (ra)
                cJSON_AddItemToObject(spec, "resourceAttributes", cJSON_Duplicate(ra, true));
        managed_fields(o, NULL, K_GENERIC, r->manager, "authorization.k8s.io/v1");
        cJSON *st = cJSON_AddObjectToObject(o, "status");
        cJSON_AddBoolToObject(st, "allowed", ok);
        if (why)
                cJSON_AddStringToObject(st, "reason", why);
        free(why);
        return send_json(r, 201, o);
}

static enum MHD_Result send_version(struct req *r)
{
        static const char v[] = "{\n  \"major\": \"1\",\n  \"minor\": \"26\",\n  \"gitVersion\": "
                                "\"v1.26.4\",\n  \"gitCommit\": "
                                "\"636f2be6157d45217eb99744b72cc51e5e9c7e10\",\n  "
                                "\"gitTreeState\": \"clean\",\n  \"buildDate\": "
                                "\"2026-11-21T13:40:38Z\",\n  \"goVersion\": \"go1.19.8\",\n  "
                                "\"compiler\": \"gc\",\n  \"platform\": \"linux/amd64\"\n}";
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(sizeof(v) - 1, (void *)v, MHD_RESPMEM_PERSISTENT);
        ks_api_common_headers(resp);
        r->status = 200;
        enum MHD_Result ret = MHD_queue_response(r->c, 200, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* ---- routing ------------------------------------------------------------------------------ */

static const struct kind *find_kind(const char *group, const char *version, const char *res)
{
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++)
                if (streq(kinds[i].group, group) && streq(kinds[i].version, version) &&
                    streq(kinds[i].res, res))
                        return &kinds[i];
        return NULL;
}

static cJSON *not_found_generic(void)
{
        return status(404, "NotFound", fmt("the server could not find the requested resource"),
                      cJSON_CreateObject());
}

static enum MHD_Result send_fault(struct req *r, const struct ks_fault_decision *d)
{
        cJSON *s;
        char ra[16];

        switch (d->status) {
        case 429:
                s = ks_status(429, "TooManyRequests", "Too many requests, please try again later.",
                              NULL);
                break;
        case 503:
                s = ks_status(503, "ServiceUnavailable",
                              "the server is currently unable to "
                              "handle the request",
                              NULL);
                break;
        case 504:
                s = ks_status(504, "Timeout",
                              "the server was unable to return a response in "
                              "the time allotted, but may still be processing the request",
                              NULL);
                break;
        default:
                s = ks_status(d->status, "InternalError", "Internal error occurred: injected fault",
                              NULL);
                break;
        }
        if (d->retry_after > 0) {
                /* details go before code */
                cJSON *code = cJSON_DetachItemFromObjectCaseSensitive(s, "code");
                cJSON *det = cJSON_AddObjectToObject(s, "details");
                cJSON_AddNumberToObject(det, "retryAfterSeconds", d->retry_after);
                cJSON_AddItemToObject(s, "code", code);
        }
        char *json = ks_print(s);
        cJSON_Delete(s);
        if (!json)
                return MHD_NO;
        char *body = fmt("%s\n", json);
        free(json);
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        ks_api_common_headers(resp);
        if (d->retry_after > 0) {
                snprintf(ra, sizeof(ra), "%d", d->retry_after);
                MHD_add_response_header(resp, "Retry-After", ra);
        }
        r->status = d->status;
        enum MHD_Result ret = MHD_queue_response(r->c, (unsigned)d->status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result route(struct req *r)
{
        char path[1024];
        char *seg[16];
        size_t n = 0;
        const char *group, *version;
        bool watch_path = false;
        const struct kind *k = NULL;
        bool all_ns = false;

        snprintf(path, sizeof(path), "%s", r->url);
        char *q = strchr(path, '?');
        if (q)
                *q = '\0';
        for (char *save = NULL, *s = strtok_r(path, "/", &save); s && n < ELEMENTSOF(seg);
             s = strtok_r(NULL, "/", &save))
                seg[n++] = s;

        const char *auth = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, "Authorization");
        r->user = ks_auth_user(auth);
        const char *ua = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, "User-Agent");
        snprintf(r->manager, sizeof(r->manager), "%.*s", ua && *ua ? (int)strcspn(ua, "/") : 7,
                 ua && *ua ? ua : "unknown");
        /* kube-apiserver indents for browsers and command-line tools, or when asked to. */
        const char *pretty = query(r, "pretty");
        r->pretty = pretty ? (streq(pretty, "true") || streq(pretty, "1"))
                           : ua && (strncmp(ua, "curl", 4) == 0 || strncmp(ua, "Wget", 4) == 0 ||
                                    strncmp(ua, "Mozilla/5.0", 11) == 0);
        const char *fv = query(r, "fieldValidation");
        r->strict = fv && streq(fv, "Strict");

        /* Which verb and resource, for statistics, faults and RBAC. */
        size_t i = 0;
        if (n >= 2 && streq(seg[0], "api")) {
                group = "";
                version = seg[1];
                i = 2;
        } else if (n >= 3 && streq(seg[0], "apis")) {
                group = seg[1];
                version = seg[2];
                i = 3;
        } else {
                group = version = NULL;
        }
        if (group && i < n && streq(seg[i], "watch")) {
                watch_path = true;
                i++;
        }
        if (group && i < n) {
                if (streq(seg[i], "namespaces") && i + 2 < n) {
                        snprintf(r->ns, sizeof(r->ns), "%s", seg[i + 1]);
                        k = find_kind(group, version, seg[i + 2]);
                        if (i + 3 < n)
                                snprintf(r->name, sizeof(r->name), "%s", seg[i + 3]);
                        if (i + 4 < n || (k && !k->namespaced))
                                k = NULL; /* subresources are not served */
                } else {
                        k = find_kind(group, version, seg[i]);
                        if (i + 1 < n)
                                snprintf(r->name, sizeof(r->name), "%s", seg[i + 1]);
                        if (i + 2 < n)
                                k = NULL;
                        if (k && k->namespaced) {
                                if (*r->name)
                                        k = NULL;
                                else
                                        all_ns = true;
                        }
                }
        }
        const char *verb = "get";
        const char *m = r->method;
        if (streq(m, "GET") || streq(m, "HEAD")) {
                const char *w = query(r, "watch");
                bool watch_q = w && (streq(w, "1") || streq(w, "true"));
                if (watch_path || (!*r->name && watch_q))
                        verb = "watch";
                else
                        verb = *r->name ? "get" : "list";
        } else if (streq(m, "POST")) {
                verb = "create";
        } else if (streq(m, "PUT")) {
                verb = "update";
        } else if (streq(m, "PATCH")) {
                verb = "patch";
        } else if (streq(m, "DELETE")) {
                verb = *r->name ? "delete" : "deletecollection";
        }

        struct ks_fault_decision d;
        r->routed = true;
        snprintf(r->log_user, sizeof(r->log_user), "%s", r->user ? r->user->name : "(bad token)");
        snprintf(r->log_verb, sizeof(r->log_verb), "%s", verb);
        snprintf(r->log_res, sizeof(r->log_res), "%s", k ? k->res : (n ? seg[n - 1] : "/"));
        ks_faults_on_request(r->log_user, m, r->url, verb, r->log_res, &d);
        if (d.action == KS_FAULT_DROP)
                return MHD_NO;
        if (!r->user)
                return send_status_obj(r, ks_status(401, "Unauthorized", "Unauthorized", NULL));
        if (d.action == KS_FAULT_ERROR)
                return send_fault(r, &d);
        if (r->too_big)
                return send_status_obj(r, status(413, "RequestEntityTooLarge",
                                                 fmt("the request body is too large"), NULL));

        if (n == 1 && streq(seg[0], "version"))
                return send_version(r);
        if (n == 1 &&
            (streq(seg[0], "healthz") || streq(seg[0], "readyz") || streq(seg[0], "livez"))) {
                struct MHD_Response *resp =
                    MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
                MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
                r->status = 200;
                enum MHD_Result ret = MHD_queue_response(r->c, 200, resp);
                MHD_destroy_response(resp);
                return ret;
        }
        if (n == 4 && streq(seg[0], "apis") && streq(seg[1], "authorization.k8s.io") &&
            streq(seg[3], "selfsubjectaccessreviews") && streq(m, "POST"))
                return handle_access_review(r);
        if (!k)
                return send_status_obj(r, not_found_generic());

        /* kube authorizes a request on namespace X in namespace X */
        const char *authz_ns = k->namespaced ? r->ns : k->type == K_NAMESPACE ? r->name : "";
        if (!ks_authorize(r->user, verb, k->group, k->res, authz_ns, r->name, NULL))
                return send_status_obj(
                    r, forbidden(r, verb, k->group, k->res, qres(k), authz_ns, r->name));
        if (streq(verb, "watch"))
                return handle_watch(r, k, all_ns);
        if (streq(verb, "get"))
                return handle_get(r, k);
        if (streq(verb, "list"))
                return handle_list(r, k, all_ns);
        if (streq(verb, "create") && !*r->name && !all_ns)
                return handle_create(r, k);
        if (streq(verb, "update") && *r->name)
                return handle_update(r, k);
        if (streq(verb, "patch") && *r->name)
                return handle_patch(r, k);
        if (streq(verb, "delete"))
                return handle_delete(r, k);
        return send_status_obj(r, status(405, "MethodNotAllowed",
                                         fmt("the server does not allow this method on the "
                                             "requested resource"),
                                         cJSON_CreateObject()));
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *c, const char *url,
                                      const char *method, const char *version, const char *data,
                                      size_t *data_size, void **ctx)
{
        struct req *r = *ctx;

        if (!r) {
                r = calloc(1, sizeof(*r));
                if (!r)
                        return MHD_NO;
                r->c = c;
                r->method = method;
                r->start_us = ks_now_us();
                snprintf(r->log_method, sizeof(r->log_method), "%s", method);
                r->url = strdup(url); /* the path; MHD keeps the query arguments apart */
                if (!r->url) {
                        free(r);
                        return MHD_NO;
                }
                *ctx = r;
                return MHD_YES;
        }
        if (*data_size) {
                if (r->len + *data_size > KS_MAX_BODY) {
                        r->too_big = true;
                } else {
                        char *b = realloc(r->body, r->len + *data_size + 1);
                        if (!b)
                                return MHD_NO;
                        memcpy(b + r->len, data, *data_size);
                        r->body = b;
                        r->len += *data_size;
                        r->body[r->len] = '\0';
                }
                *data_size = 0;
                return MHD_YES;
        }
        return route(r);
}

static void request_done(void *cls, struct MHD_Connection *c, void **ctx,
                         enum MHD_RequestTerminationCode toe)
{
        struct req *r = *ctx;

        if (!r)
                return;
        if (r->routed)
                ks_faults_log_request(r->log_user, r->log_method, r->url, r->log_verb, r->log_res,
                                      toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? r->status : 0,
                                      r->start_us, ks_now_us());
        for (size_t i = 0; i < r->n_warn; i++)
                free(r->warnings[i]);
        free(r->url);
        free(r->body);
        free(r);
        *ctx = NULL;
}

struct MHD_Daemon *ks_api_start(const struct ks_api_options *o)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(o->port)};
        unsigned flags =
            MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (o->cert_pem) {
                if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
                        return NULL;
                return MHD_start_daemon(flags | MHD_USE_TLS, o->port, NULL, NULL, access_handler,
                                        NULL, MHD_OPTION_SOCK_ADDR, &a, MHD_OPTION_NOTIFY_COMPLETED,
                                        request_done, NULL, MHD_OPTION_HTTPS_MEM_CERT, o->cert_pem,
                                        MHD_OPTION_HTTPS_MEM_KEY, o->key_pem,
                                        MHD_OPTION_CONNECTION_TIMEOUT, 120u,
                                        MHD_OPTION_CONNECTION_LIMIT, 512u, MHD_OPTION_END);
        }
        return MHD_start_daemon(flags, o->port, NULL, NULL, access_handler, NULL,
                                MHD_OPTION_SOCK_ADDR, &a, MHD_OPTION_NOTIFY_COMPLETED, request_done,
                                NULL, MHD_OPTION_CONNECTION_TIMEOUT, 120u,
                                MHD_OPTION_CONNECTION_LIMIT, 512u, MHD_OPTION_END);
}

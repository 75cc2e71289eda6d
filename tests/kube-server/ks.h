/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal interfaces of kube-test-server, the project's own stand-in for kube-apiserver 1.26
 * (see docs/kube-test-server.md): the object store with its global resourceVersion and watch
 * history, authentication and RBAC, fault injection, and the JSON helpers shared by the REST
 * handlers. Test tooling, one program; every module below may be called from any connection
 * thread unless it says otherwise.
 */
#pragma once

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/macro.h"

#define KS_MAX_BODY (3u * 1024u * 1024u) /* kube-apiserver's request body limit */

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);
#define _cleanup_json_ _cleanup_(cJSON_Deletep)

/* True once the server is shutting down: long-running handlers (watches, hangs) return. */
bool ks_stopping(void);

/* Microseconds of CLOCK_MONOTONIC. */
int64_t ks_now_us(void);

/* Sleep `ms` milliseconds, returning early when the server stops. */
void ks_sleep_ms(int64_t ms);

/* ---- store.c: objects, the global resourceVersion, watch history ---------------------- */

/*
 * Objects are cJSON trees keyed by (storage resource, namespace, name); "" is the namespace of
 * cluster-scoped objects. Every write takes the next value of one global resourceVersion and
 * appends an event (ADDED, MODIFIED, DELETED) with the serialized object to a bounded history
 * that watches replay. All functions except ks_store_init/free require ks_store_lock() held.
 */
void ks_store_init(size_t history_cap);
void ks_store_free(void);
void ks_store_lock(void);
void ks_store_unlock(void);

/* The object, borrowed (valid while the lock is held and the object is not replaced), or NULL. */
cJSON *ks_store_get(const char *res, const char *ns, const char *name);

/* Take the next resourceVersion (the caller writes it into the object it then stores). */
uint64_t ks_store_next_rv(void);

/* The last resourceVersion handed out. */
uint64_t ks_store_current_rv(void);

/* Store `obj` (taken) under its key, replacing any previous object, and record `type`. */
void ks_store_put(const char *res, const char *ns, const char *name, cJSON *obj, uint64_t rv,
                  const char *type);

/* Remove the object; `last` (taken) is the final state recorded in the DELETED event. */
void ks_store_delete(const char *res, const char *ns, const char *name, cJSON *last, uint64_t rv);

/* Call `fn` for each object of `res` in `ns` (NULL: every namespace), in key order. */
void ks_store_foreach(const char *res, const char *ns, void (*fn)(cJSON *obj, void *ctx),
                      void *ctx);

struct ks_event {
        uint64_t rv;
        char *res;
        char *ns;
        char *name;
        const char *type; /* static string */
        char *json;       /* the object, compact */
};

/* Events with rv > `after` exist back to this: a watch from an older version gets 410. */
uint64_t ks_store_history_floor(void);

/* The first event with rv > `after`, borrowed, or NULL. */
const struct ks_event *ks_store_event_after(uint64_t after);

/* Make every resourceVersion up to now too old for a watch (etcd compaction). */
void ks_store_compact(void);

/* Wait (lock held; it is released while waiting) until a write or `deadline_us`. */
void ks_store_wait(int64_t deadline_us);

/* Wake every waiting watch (after a fault change, at shutdown). */
void ks_store_broadcast(void);

/* ---- auth.c: bearer tokens and RBAC ----------------------------------------------------- */

struct ks_user {
        char *name;
        char *uid;
        char **groups;
        size_t n_groups;
};

/* Load a kube-apiserver --token-auth-file: token,user,uid[,"group1,group2"]. 0 or -errno. */
int ks_auth_load(const char *path);
void ks_auth_free(void);

/*
 * Resolve an Authorization header value (NULL: none). Returns the user (borrowed, static for
 * the process), the anonymous user when there is no bearer token, or NULL for a bad token.
 */
const struct ks_user *ks_auth_user(const char *authorization);

/*
 * RBAC decision for (verb, API group, resource, namespace ("" cluster scope), name ("" none)),
 * from the Role/ClusterRole/RoleBinding/ClusterRoleBinding objects in the store (takes the
 * store lock itself). system:masters may do anything. `why` (may be NULL) receives the
 * SelfSubjectAccessReview reason (caller frees).
 */
bool ks_authorize(const struct ks_user *u, const char *verb, const char *group, const char *res,
                  const char *ns, const char *name, char **why);

/* ---- faults.c: fault injection, request statistics, the control endpoint -------------- */

enum ks_fault_action {
        KS_FAULT_NONE,
        KS_FAULT_ERROR, /* answer with *status (500, 503, 429 ...) */
        KS_FAULT_DROP,  /* close the connection without an answer */
};

struct ks_fault_decision {
        enum ks_fault_action action;
        int status;
        int retry_after; /* seconds, 0: no Retry-After header */
};

/*
 * Apply the faults to a request of `user` (name, borrowed) on `path`: sleeps for configured
 * latency, hangs while the user is partitioned (then drops), and decides on an injected error
 * or a dropped connection. Counts the request in the statistics as "verb resource".
 */
void ks_faults_on_request(const char *user, const char *method, const char *path, const char *verb,
                          const char *res, struct ks_fault_decision *d);

/*
 * Append a finished request to the request log (GET /requests on the control port): `status`
 * 0 for a dropped connection, times from ks_now_us().
 */
void ks_faults_log_request(const char *user, const char *method, const char *path, const char *verb,
                           const char *res, int status, int64_t start_us, int64_t end_us);

/* Bumped by POST /restart: watches opened before it end as when kube-apiserver restarts. */
uint64_t ks_faults_generation(void);

/* True while requests and watches of `user` are partitioned away. */
bool ks_faults_partitioned(const char *user);

/* Start the plain-HTTP control server on 127.0.0.1:`port`. NULL on failure. */
struct MHD_Daemon *ks_control_start(uint16_t port);

/* ---- json.c: Status bodies, times, validation, patches, selectors ---------------------- */

/*
 * Compact JSON as Go's encoder writes it: cJSON's text with <, > and & escaped as \u003c,
 * \u003e and \u0026. Caller frees; NULL only when out of memory.
 */
char *ks_print(const cJSON *j);

/* The compact text `json` indented as Go's json.Indent(prefix "", indent "  "). Caller frees. */
char *ks_pretty(const char *json);

/* A kube Status object (details taken, may be NULL: omitted; reason may be NULL). */
cJSON *ks_status(int code, const char *reason, const char *message, cJSON *details);

/* {"name":..,"group":..,"kind":..} with empty members left out (caller frees). */
cJSON *ks_details(const char *name, const char *group, const char *kind);

/* "2026-11-21T13:41:23Z" for now (buf of at least 32 bytes). */
void ks_time_now(char *buf, size_t size);

/*
 * Parse a MicroTime as Go's "2006-01-02T15:04:05.000000Z07:00" does; on success writes the
 * normalised UTC form to out (32 bytes) and returns NULL, otherwise returns Go's error text
 * (caller frees).
 */
char *ks_microtime_parse(const char *value, char out[32]);

/* A random RFC 4122 version 4 UUID (37 bytes). */
void ks_uuid(char out[37]);

/* Validation messages, NULL when valid (caller frees). */
char *ks_check_dns_subdomain(const char *name);
char *ks_check_label_value(const char *value);
char *ks_check_label_key(const char *key);

/* RFC 7386 merge patch: returns the patched copy (caller frees); target is not changed. */
cJSON *ks_merge_patch(const cJSON *target, const cJSON *patch);

/* RFC 6902 JSON patch applied to `doc` in place. 0 or -EINVAL (any failing operation). */
int ks_json_patch(cJSON *doc, const cJSON *ops);

/* A parsed label selector; NULL when the text is empty. */
struct ks_selector;
/* Parse; on error returns NULL and sets *err (caller frees). */
struct ks_selector *ks_selector_parse(const char *text, char **err);
bool ks_selector_match(const struct ks_selector *s, const cJSON *labels);
void ks_selector_free(struct ks_selector *s);

/* A field selector "a.b=x,c!=y" matched against an object's dotted string fields. */
bool ks_field_match(const char *selector, const cJSON *obj);

/* ---- api.c: the REST server ------------------------------------------------------------ */

struct ks_api_options {
        uint16_t port;
        const char *cert_pem; /* NULL: plain HTTP */
        const char *key_pem;
};

/*
 * Start the API server (a thread per connection) on 127.0.0.1:o->port; the PEM strings are
 * borrowed and must outlive the daemon. NULL when the port is taken or TLS is unavailable.
 */
struct MHD_Daemon *ks_api_start(const struct ks_api_options *o);

/* Headers every API answer carries (Content-Type, Cache-Control, Audit-Id). */
void ks_api_common_headers(struct MHD_Response *r);

/* ---- watch.c: watch streams -------------------------------------------------------------- */

struct ks_watch_request {
        const char *store_res; /* storage resource */
        const char *ns;        /* NULL: every namespace */
        const char *name;      /* NULL: any name (fieldSelector metadata.name or the path) */
        const char *field_selector;
        const struct ks_selector *labels; /* borrowed for the call only, may be NULL */
        const char *label_text;           /* re-parsed by the stream */
        const char *resource_version;     /* NULL or "": start with the current state */
        int timeout_s;
        const char *user; /* for partitions */
        /* Convert a stored object to the requested API version (NULL: as stored), caller frees. */
        cJSON *(*convert)(const cJSON *stored);
};

/* Queue a watch response on `c`: HTTP 200, chunked, one JSON event per line. */
enum MHD_Result ks_watch_serve(struct MHD_Connection *c, const struct ks_watch_request *w);

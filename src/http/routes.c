/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The API's resources: the routing table, and one handler per route that validates the request
 * completely (query parameters, body through the field tables), calls one backend operation
 * and encodes its plain-data answer as JSON.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/util.h"
#include "http/handlers.h"
#include "http/json.h"
#include "http/metrics.h"
#include "http/server.h"
#include "persistd-version.h"

#define DEFAULT_LIMIT             100
#define DEFAULT_PERSIST_TIMEOUT_S 60
#define MAX_PERSIST_TIMEOUT_S     3600
#define POLL_SLICE_US             (200 * USEC_PER_MSEC)

static const char *const task_actions[] = {"bgsave", "bgrewriteaof", NULL};
static const char *const misfire_policies[] = {"run_once", "skip", NULL};
static const char *const run_kinds[] = {"scheduled", "nightly", "manual", "persist", NULL};
static const char *const run_states[] = {"claimed", "running", "succeeded", "failed",
                                         "skipped", "missed",  "timed_out", NULL};

/* ---- encoding ------------------------------------------------------------------------------ */

static void add_optional_string(cJSON *o, const char *name, const char *v)
{
        if (v[0])
                cJSON_AddStringToObject(o, name, v);
        else
                cJSON_AddNullToObject(o, name);
}

static void add_optional_int(cJSON *o, const char *name, int64_t v)
{
        if (v)
                cJSON_AddNumberToObject(o, name, (double)v);
        else
                cJSON_AddNullToObject(o, name);
}

static void add_seconds(cJSON *o, const char *name, int64_t us)
{
        if (us)
                cJSON_AddNumberToObject(o, name, round((double)us / 1000.0) / 1000.0);
        else
                cJSON_AddNullToObject(o, name);
}

static cJSON *task_json(const struct api_task *t)
{
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", t->id);
        cJSON_AddStringToObject(o, "instance_id", t->instance_id);
        cJSON_AddStringToObject(o, "action", t->action);
        cJSON_AddStringToObject(o, "schedule", t->schedule);
        cJSON_AddBoolToObject(o, "enabled", t->enabled);
        cJSON_AddStringToObject(o, "misfire", t->misfire);
        cJSON_AddNumberToObject(o, "starting_deadline_s", t->starting_deadline_s);
        cJSON_AddStringToObject(o, "description", t->description);
        json_add_time(o, "created_at", t->created_us);
        json_add_time(o, "updated_at", t->updated_us);
        return o;
}

static cJSON *instance_json(const struct api_instance *in)
{
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", in->id);
        cJSON_AddStringToObject(o, "address", in->address);
        cJSON_AddStringToObject(o, "pool", in->pool);
        cJSON_AddBoolToObject(o, "enabled", in->enabled);
        cJSON *ls = cJSON_AddObjectToObject(o, "last_save");
        add_optional_int(ls, "run_id", in->last_run_id);
        add_optional_string(ls, "state", in->last_state);
        add_optional_string(ls, "error", in->last_error);
        json_add_time(ls, "finished_at", in->last_finished_us);
        add_optional_int(ls, "lastsave", in->lastsave);
        cJSON *c = cJSON_AddObjectToObject(o, "capabilities");
        add_optional_string(c, "redis_version", in->redis_version);
        cJSON_AddBoolToObject(c, "bgsave", in->can_bgsave);
        cJSON_AddBoolToObject(c, "bgrewriteaof", in->can_bgrewriteaof);
        cJSON_AddBoolToObject(c, "config", in->can_config);
        cJSON_AddBoolToObject(c, "save_config_ok", in->save_config_ok);
        cJSON *e = cJSON_AddObjectToObject(o, "estimate");
        cJSON_AddNumberToObject(e, "used_memory", (double)in->used_memory);
        cJSON_AddNumberToObject(e, "write_rate_bytes_s", in->write_rate_bytes_s);
        cJSON_AddNumberToObject(e, "fork_ms_per_gb", in->fork_ms_per_gb);
        add_seconds(e, "duration_s", in->estimate_us);
        return o;
}

static cJSON *run_json(const struct api_run *r)
{
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)r->id);
        add_optional_string(o, "task_id", r->task_id);
        cJSON_AddStringToObject(o, "instance_id", r->instance_id);
        cJSON_AddStringToObject(o, "kind", r->kind);
        cJSON_AddStringToObject(o, "state", r->state);
        json_add_time(o, "scheduled_for", r->scheduled_for_us);
        json_add_time(o, "planned_start", r->planned_start_us);
        json_add_time(o, "started_at", r->started_us);
        json_add_time(o, "finished_at", r->finished_us);
        cJSON_AddNumberToObject(o, "epoch", (double)r->epoch);
        add_optional_string(o, "leader", r->leader);
        add_optional_int(o, "used_memory", r->used_memory);
        add_seconds(o, "estimated_s", r->estimated_us);
        add_seconds(o, "actual_s", r->actual_us);
        add_optional_string(o, "error", r->error);
        add_optional_string(o, "request_id", r->request_id);
        return o;
}

static cJSON *nightly_json(const struct api_nightly *n)
{
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "state", n->state[0] ? n->state : "idle");
        add_optional_string(o, "date", n->date);
        add_optional_int(o, "pass_id", n->pass_id);
        cJSON_AddNumberToObject(o, "total", n->total);
        cJSON_AddNumberToObject(o, "done", n->done);
        cJSON_AddNumberToObject(o, "failed", n->failed);
        cJSON_AddNumberToObject(o, "pending", n->pending);
        json_add_time(o, "started_at", n->started_us);
        json_add_time(o, "finished_at", n->finished_us);
        json_add_time(o, "eta", n->eta_us);
        cJSON_AddBoolToObject(o, "overrun", n->overrun);
        cJSON *cur = cJSON_AddArrayToObject(o, "current");
        for (size_t i = 0; i < n->n_current; i++) {
                cJSON *c = cJSON_CreateObject();
                cJSON_AddStringToObject(c, "pool", n->current[i].pool);
                cJSON_AddStringToObject(c, "instance_id", n->current[i].instance_id);
                cJSON_AddItemToArray(cur, c);
        }
        return o;
}

void api_nightly_release(struct api_nightly *n)
{
        if (!n)
                return;
        free(n->current);
        n->current = NULL;
        n->n_current = 0;
}

void api_status_release(struct api_status *s)
{
        if (!s)
                return;
        free(s->pools);
        s->pools = NULL;
        s->n_pools = 0;
        api_nightly_release(&s->pass);
}

void api_plan_release(struct api_plan *p)
{
        if (!p)
                return;
        free(p->pools);
        free(p->slots);
        p->pools = NULL;
        p->slots = NULL;
        p->n_pools = p->n_slots = 0;
}

/* ---- query parameters ---------------------------------------------------------------------- */

static int query_id(struct http_request *rq, struct http_response *rs, const char *name, char *out,
                    size_t size)
{
        const char *v = http_query(rq, name);
        if (!v)
                return 0;
        if (v[0] == '\0' || strlen(v) >= size) {
                http_error(rs, 400, "out_of_range", name, "%s: must be 1 to %zu bytes long", name,
                           size - 1);
                return -EINVAL;
        }
        snprintf(out, size, "%s", v);
        return 0;
}

static int query_bool(struct http_request *rq, struct http_response *rs, const char *name, int *out)
{
        const char *v = http_query(rq, name);
        if (!v)
                return 0;
        if (streq(v, "true") || streq(v, "1")) {
                *out = 1;
                return 0;
        }
        if (streq(v, "false") || streq(v, "0")) {
                *out = 0;
                return 0;
        }
        http_error(rs, 400, "invalid_value", name, "%s: expected true or false, got \"%.64s\"",
                   name, v);
        return -EINVAL;
}

static int query_choice(struct http_request *rq, struct http_response *rs, const char *name,
                        const char *const *choices, char *out, size_t size)
{
        const char *v = http_query(rq, name);
        if (!v)
                return 0;
        for (size_t i = 0; choices[i]; i++)
                if (streq(v, choices[i])) {
                        snprintf(out, size, "%s", v);
                        return 0;
                }
        char list[160] = "";
        for (size_t i = 0; choices[i]; i++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "", choices[i]);
        }
        http_error(rs, 400, "invalid_value", name, "%s: \"%.64s\" is not one of %s", name, v, list);
        return -EINVAL;
}

static int query_time(struct http_request *rq, struct http_response *rs, const char *name,
                      int64_t *out)
{
        const char *v = http_query(rq, name);
        if (!v)
                return 0;
        if (clock_parse_rfc3339(v, false, out) < 0) {
                http_error(rs, 400, "invalid_value", name,
                           "%s: \"%.64s\" is not an RFC 3339 instant (like "
                           "2026-11-21T23:00:00Z)",
                           name, v);
                return -EINVAL;
        }
        return 0;
}

static int query_limit(struct http_request *rq, struct http_response *rs, int *out)
{
        const char *v = http_query(rq, "limit");
        int64_t n;
        *out = DEFAULT_LIMIT;
        if (!v)
                return 0;
        if (parse_int64(v, &n) < 0 || n < 1 || n > API_LIST_LIMIT_MAX) {
                http_error(rs, 400, "out_of_range", "limit",
                           "limit: expected an integer from 1 to %d, got \"%.64s\"",
                           API_LIST_LIMIT_MAX, v);
                return -EINVAL;
        }
        *out = (int)n;
        return 0;
}

static int query_cursor(struct http_request *rq, struct http_response *rs, char *out)
{
        const char *v = http_query(rq, "cursor");
        if (!v)
                return 0;
        if (strlen(v) >= API_CURSOR_MAX) {
                http_error(rs, 400, "invalid_value", "cursor",
                           "cursor: not a cursor returned by "
                           "this server");
                return -EINVAL;
        }
        snprintf(out, API_CURSOR_MAX, "%s", v);
        return 0;
}

static const char *param(struct http_request *rq, size_t i)
{
        return rq->match->params[i];
}

/* A path id must fit the backend's id size. */
static bool path_id_ok(struct http_request *rq, struct http_response *rs, const char *what)
{
        if (strlen(param(rq, 0)) >= API_ID_MAX) {
                http_error(rs, 414, "too_long", NULL, "the %s id is longer than %d bytes", what,
                           API_ID_MAX - 1);
                return false;
        }
        return true;
}

static void add_cursor(cJSON *o, const char *cursor)
{
        add_optional_string(o, "next_cursor", cursor);
}

static void bad_body(struct http_response *rs, const struct json_error *e)
{
        http_error(rs, 400, e->code, e->field, "%s", e->message);
}

/* ---- health and metrics ------------------------------------------------------------------- */

static void get_healthz(struct http_request *rq, struct http_response *rs)
{
        struct api_probe p = {0};
        rq->be->probe(rq->be->userdata, &p);
        cJSON *o = cJSON_CreateObject();
        if (p.believes_leader && p.since_renew_us > p.lease_duration_us) {
                char reason[200];
                snprintf(reason, sizeof(reason),
                         "wedged: this replica believes it leads but its last successful renew "
                         "was %.1f s ago (lease %.1f s)",
                         (double)p.since_renew_us / 1e6, (double)p.lease_duration_us / 1e6);
                cJSON_AddStringToObject(o, "status", "failing");
                cJSON_AddStringToObject(o, "reason", reason);
                http_json(rs, 503, o);
                return;
        }
        cJSON_AddStringToObject(o, "status", "ok");
        cJSON_AddBoolToObject(o, "leader", p.believes_leader);
        http_json(rs, 200, o);
}

static void get_readyz(struct http_request *rq, struct http_response *rs)
{
        struct api_probe p = {0};
        rq->be->probe(rq->be->userdata, &p);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "ready", p.config_loaded && p.postgres_ok);
        cJSON *checks = cJSON_AddObjectToObject(o, "checks");
        cJSON *failed = cJSON_CreateArray();
        cJSON_AddStringToObject(checks, "config", p.config_loaded ? "ok" : "not loaded");
        if (!p.config_loaded)
                cJSON_AddItemToArray(failed, cJSON_CreateString("config"));
        if (p.postgres_ok) {
                cJSON_AddStringToObject(checks, "postgres", "ok");
        } else {
                char msg[API_TEXT_MAX + 16];
                snprintf(msg, sizeof(msg), "unreachable%s%s", p.postgres_error[0] ? ": " : "",
                         p.postgres_error);
                cJSON_AddStringToObject(checks, "postgres", msg);
                cJSON_AddItemToArray(failed, cJSON_CreateString("postgres"));
        }
        cJSON_AddItemToObject(o, "failed", failed);
        http_json(rs, p.config_loaded && p.postgres_ok ? 200 : 503, o);
}

static void get_metrics(struct http_request *rq, struct http_response *rs)
{
        struct metrics *m = http_server_metrics(rq->server);
        if (!m) {
                http_error(rs, 503, "unavailable", NULL, "metrics are not enabled");
                return;
        }
        rs->body = metrics_render(m);
        rs->status = 200;
        rs->content_type = METRICS_CONTENT_TYPE;
}

/* ---- status -------------------------------------------------------------------------------- */

static void get_status(struct http_request *rq, struct http_response *rs)
{
        struct api_status st = {0};
        struct api_error err = {0};
        int r = rq->be->status(rq->be->userdata, &st, &err);
        if (r < 0) {
                api_status_release(&st);
                http_backend_error(rq, rs, r, &err);
                return;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "version", PERSISTD_VERSION);
        cJSON_AddStringToObject(o, "identity", st.identity);
        cJSON_AddBoolToObject(o, "is_leader", st.is_leader);
        add_optional_string(o, "leader", st.leader);
        cJSON_AddNumberToObject(o, "epoch", (double)st.epoch);
        char now[CLOCK_RFC3339_MAX];
        cJSON_AddStringToObject(o, "now", clock_format_rfc3339(clock_wall_us(), 3, now));
        cJSON *l = cJSON_AddObjectToObject(o, "lease");
        add_optional_string(l, "holder", st.lease.holder);
        cJSON_AddNumberToObject(l, "duration_s", st.lease.duration_s);
        json_add_time(l, "acquire_time", st.lease.acquire_us);
        json_add_time(l, "renew_time", st.lease.renew_us);
        cJSON_AddNumberToObject(l, "transitions", st.lease.transitions);
        cJSON *hours = cJSON_AddArrayToObject(o, "loaded_hours");
        for (size_t i = 0; i < st.n_loaded_hours && i < ELEMENTSOF(st.loaded_hours_us); i++) {
                char buf[CLOCK_RFC3339_MAX];
                cJSON_AddItemToArray(
                    hours, cJSON_CreateString(clock_format_rfc3339(st.loaded_hours_us[i], 0, buf)));
        }
        cJSON *pools = cJSON_AddArrayToObject(o, "pools");
        for (size_t i = 0; i < st.n_pools; i++) {
                cJSON *p = cJSON_CreateObject();
                cJSON_AddStringToObject(p, "name", st.pools[i].name);
                cJSON_AddNumberToObject(p, "limit", st.pools[i].limit);
                cJSON_AddNumberToObject(p, "running", st.pools[i].running);
                cJSON_AddNumberToObject(p, "queued", st.pools[i].queued);
                cJSON_AddItemToArray(pools, p);
        }
        cJSON_AddItemToObject(o, "pass", nightly_json(&st.pass));
        api_status_release(&st);
        http_json(rs, 200, o);
}

/* ---- tasks ----------------------------------------------------------------------------------- */

struct task_body {
        char id[API_ID_MAX];
        char instance_id[API_ID_MAX];
        char action[16];
        char schedule[API_SCHEDULE_MAX];
        bool enabled;
        char misfire[16];
        int64_t starting_deadline_s;
        char description[API_TEXT_MAX];
};

#define TF(f) .offset = offsetof(struct task_body, f), .size = sizeof(((struct task_body *)0)->f)
#define TASK_FIELDS(req)                                                                           \
        {.name = "instance_id",                                                                    \
         .type = JSON_T_STRING,                                                                    \
         .required = (req),                                                                        \
         TF(instance_id),                                                                          \
         .min = 1,                                                                                 \
         .present_bit = API_TASK_INSTANCE},                                                        \
            {.name = "action",                                                                     \
             .type = JSON_T_ENUM,                                                                  \
             TF(action),                                                                           \
             .choices = task_actions,                                                              \
             .present_bit = API_TASK_ACTION},                                                      \
            {.name = "schedule",                                                                   \
             .type = JSON_T_STRING,                                                                \
             .required = (req),                                                                    \
             TF(schedule),                                                                         \
             .min = 1,                                                                             \
             .present_bit = API_TASK_SCHEDULE},                                                    \
            {.name = "enabled",                                                                    \
             .type = JSON_T_BOOL,                                                                  \
             TF(enabled),                                                                          \
             .present_bit = API_TASK_ENABLED},                                                     \
            {.name = "misfire",                                                                    \
             .type = JSON_T_ENUM,                                                                  \
             TF(misfire),                                                                          \
             .choices = misfire_policies,                                                          \
             .present_bit = API_TASK_MISFIRE},                                                     \
            {.name = "starting_deadline_s",                                                        \
             .type = JSON_T_INT,                                                                   \
             TF(starting_deadline_s),                                                              \
             .min = 0,                                                                             \
             .max = 86400,                                                                         \
             .present_bit = API_TASK_DEADLINE},                                                    \
        {                                                                                          \
                .name = "description", .type = JSON_T_STRING, TF(description), .min = 0,           \
                .present_bit = API_TASK_DESCRIPTION                                                \
        }

#define TASK_ID_BIT (1U << 16)
static const struct json_field task_create_fields[] = {
    {.name = "id", .type = JSON_T_STRING, TF(id), .min = 1, .present_bit = TASK_ID_BIT},
    TASK_FIELDS(true),
};
static const struct json_field task_patch_fields[] = {
    {.name = "id", .type = JSON_T_STRING, TF(id), .min = 1, .present_bit = TASK_ID_BIT},
    TASK_FIELDS(false),
};

static void task_body_defaults(struct task_body *b)
{
        memset(b, 0, sizeof(*b));
        snprintf(b->action, sizeof(b->action), "bgsave");
        snprintf(b->misfire, sizeof(b->misfire), "run_once");
        b->enabled = true;
        b->starting_deadline_s = 0; /* no deadline */
}

static void task_from_body(const struct task_body *b, struct api_task *t)
{
        memset(t, 0, sizeof(*t));
        snprintf(t->id, sizeof(t->id), "%s", b->id);
        snprintf(t->instance_id, sizeof(t->instance_id), "%s", b->instance_id);
        snprintf(t->action, sizeof(t->action), "%s", b->action);
        snprintf(t->schedule, sizeof(t->schedule), "%s", b->schedule);
        t->enabled = b->enabled;
        snprintf(t->misfire, sizeof(t->misfire), "%s", b->misfire);
        t->starting_deadline_s = (int)b->starting_deadline_s;
        snprintf(t->description, sizeof(t->description), "%s", b->description);
}

static const char *const task_list_query[] = {"instance", "enabled", "limit", "cursor", NULL};

static void list_tasks(struct http_request *rq, struct http_response *rs)
{
        struct api_task_filter f = {.enabled = -1};
        if (query_id(rq, rs, "instance", f.instance_id, sizeof(f.instance_id)) < 0 ||
            query_bool(rq, rs, "enabled", &f.enabled) < 0 || query_limit(rq, rs, &f.limit) < 0 ||
            query_cursor(rq, rs, f.cursor) < 0)
                return;
        struct api_task *tasks = NULL;
        size_t n = 0;
        char next[API_CURSOR_MAX] = "";
        struct api_error err = {0};
        int r = rq->be->task_list(rq->be->userdata, &f, &tasks, &n, next, &err);
        if (r < 0) {
                free(tasks);
                http_backend_error(rq, rs, r, &err);
                return;
        }
        cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "tasks");
        for (size_t i = 0; i < n; i++)
                cJSON_AddItemToArray(a, task_json(&tasks[i]));
        free(tasks);
        add_cursor(o, next);
        http_json(rs, 200, o);
}

static void create_task(struct http_request *rq, struct http_response *rs)
{
        struct task_body b;
        struct json_error je = {0};
        task_body_defaults(&b);
        int r = json_parse_object(rq->body, rq->body_len, false, task_create_fields,
                                  ELEMENTSOF(task_create_fields), &b, NULL, &je);
        if (r < 0) {
                bad_body(rs, &je);
                return;
        }
        struct api_task in, out = {0};
        struct api_error err = {0};
        task_from_body(&b, &in);
        r = rq->be->task_create(rq->be->userdata, &in, &out, &err);
        if (r < 0) {
                http_backend_error(rq, rs, r, &err);
                return;
        }
        http_json(rs, 201, task_json(&out));
}

static void get_task(struct http_request *rq, struct http_response *rs)
{
        if (!path_id_ok(rq, rs, "task"))
                return;
        struct api_task t = {0};
        struct api_error err = {0};
        int r = rq->be->task_get(rq->be->userdata, param(rq, 0), &t, &err);
        if (r < 0) {
                http_backend_error(rq, rs, r, &err);
                return;
        }
        http_json(rs, 200, task_json(&t));
}

/* PUT replaces the task (defaults for what it omits); PATCH sets what it gives. */
static void update_task(struct http_request *rq, struct http_response *rs, bool replace)
{
        if (!path_id_ok(rq, rs, "task"))
                return;
        struct task_body b;
        struct json_error je = {0};
        unsigned present = 0;
        task_body_defaults(&b);
        int r = replace ? json_parse_object(rq->body, rq->body_len, false, task_create_fields,
                                            ELEMENTSOF(task_create_fields), &b, &present, &je)
                        : json_parse_object(rq->body, rq->body_len, false, task_patch_fields,
                                            ELEMENTSOF(task_patch_fields), &b, &present, &je);
        if (r < 0) {
                bad_body(rs, &je);
                return;
        }
        if ((present & TASK_ID_BIT) && !streq(b.id, param(rq, 0))) {
                http_error(rs, 400, "invalid_value", "id",
                           "id: \"%s\" does not match the task in the path (\"%s\"); a task's id "
                           "cannot change",
                           b.id, param(rq, 0));
                return;
        }
        unsigned mask = replace ? API_TASK_ALL : present & API_TASK_ALL;
        if (mask == 0) {
                http_error(rs, 400, "missing_field", NULL,
                           "the body sets no field (give at least one of instance_id, action, "
                           "schedule, enabled, misfire, starting_deadline_s, description)");
                return;
        }
        struct api_task in, out = {0};
        struct api_error err = {0};
        task_from_body(&b, &in);
        r = rq->be->task_update(rq->be->userdata, param(rq, 0), &in, mask, &out, &err);
        if (r < 0) {
                http_backend_error(rq, rs, r, &err);
                return;
        }
        http_json(rs, 200, task_json(&out));
}

static void put_task(struct http_request *rq, struct http_response *rs)
{
        update_task(rq, rs, true);
}

static void patch_task(struct http_request *rq, struct http_response *rs)
{
        update_task(rq, rs, false);
}

static void delete_task(struct http_request *rq, struct http_response *rs)
{
        if (!path_id_ok(rq, rs, "task"))
                return;
        struct api_error err = {0};
        int r = rq->be->task_delete(rq->be->userdata, param(rq, 0), &err);
        if (r < 0) {
                http_backend_error(rq, rs, r, &err);
                return;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "deleted", param(rq, 0));
        http_json(rs, 200, o);
}

static void run_task(struct http_request *rq, struct http_response *rs)
{
        if (!path_id_ok(rq, rs, "task"))
                return;
        struct json_error je = {0};
        char dummy;
        if (json_parse_object(rq->body, rq->body_len, true, NULL, 0, &dummy, NULL, &je) < 0) {
                bad_body(rs, &je);
                return;
        }
        struct api_run run = {0};
        struct api_error err = {0};
        int r = rq->be->task_run(rq->be->userdata, param(rq, 0), &run, &err);
        if (r < 0) {
                http_backend_error(rq, rs, r, &err);
                return;
        }
        http_json(rs, 202, run_json(&run));
}

/* ---- instances ------------------------------------------------------------------------------- */

static const char *const instance_list_query[] = {"pool", "enabled", "limit", "cursor", NULL};

static void list_instances(struct http_request *rq, struct http_response *rs)
{
        struct api_instance_filter f = {.enabled = -1};
        if (query_id(rq, rs, "pool", f.pool, sizeof(f.pool)) < 0 ||
            query_bool(rq, rs, "enabled", &f.enabled) < 0 || query_limit(rq, rs, &f.limit) < 0 ||
            query_cursor(rq, rs, f.cursor) < 0)
                return;
        struct api_instance *list = NULL;
        size_t n = 0;
        char next[API_CURSOR_MAX] = "";
        struct api_error err = {0};
        int r = rq->be->instance_list(rq->be->userdata, &f, &list, &n, next, &err);
        if (r < 0) {
                free(list);
                http_backend_error(rq, rs, r, &err);
                return;
        }
        cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "instances");
        for (size_t i = 0; i < n; i++)
                cJSON_AddItemToArray(a, instance_json(&list[i]));
        free(list);
        add_cursor(o, next);
        http_json(rs, 200, o);
}

static void get_instance(struct http_request *rq, struct http_response *rs)
{
        if (!path_id_ok(rq, rs, "instance"))
                return;
        struct api_instance in = {0};
        struct api_error err = {0};
        int r = rq->be->instance_get(rq->be->userdata, param(rq, 0), &in, &err);
        if (r < 0) {
                http_backend_error(rq, rs, r, &err);
                return;
        }
        http_json(rs, 200, instance_json(&in));
}

/* ---- persist now ----------------------------------------------------------------------------- */

struct persist_body {
        char **instances;
        size_t n_instances;
        char pool[API_ID_MAX];
        bool all;
        bool wait;
        int64_t timeout_s;
        char request_id[API_ID_MAX];
};

#define PF(f) .offset = offsetof(struct persist_body, f)
#define PERSIST_COMMON_FIELDS                                                                      \
        {.name = "wait", .type = JSON_T_BOOL, PF(wait)},                                           \
            {.name = "timeout_s",                                                                  \
             .type = JSON_T_INT,                                                                   \
             PF(timeout_s),                                                                        \
             .min = 1,                                                                             \
             .max = MAX_PERSIST_TIMEOUT_S},                                                        \
        {                                                                                          \
                .name = "request_id", .type = JSON_T_STRING, PF(request_id), .size = API_ID_MAX,   \
                .min = 1                                                                           \
        }

enum {
        PERSIST_INSTANCES = 1U << 0,
        PERSIST_POOL = 1U << 1,
        PERSIST_ALL = 1U << 2,
};

static const struct json_field persist_fields[] = {
    {.name = "instances",
     .type = JSON_T_STRING_ARRAY,
     PF(instances),
     .size = API_ID_MAX,
     .min = 1,
     .max = API_PERSIST_TARGETS_MAX,
     .count_offset = offsetof(struct persist_body, n_instances),
     .present_bit = PERSIST_INSTANCES},
    {.name = "pool",
     .type = JSON_T_STRING,
     PF(pool),
     .size = API_ID_MAX,
     .min = 1,
     .present_bit = PERSIST_POOL},
    {.name = "all", .type = JSON_T_BOOL, PF(all), .present_bit = PERSIST_ALL},
    PERSIST_COMMON_FIELDS,
};

static const struct json_field persist_one_fields[] = {
    PERSIST_COMMON_FIELDS,
};

static cJSON *persist_result_json(const struct api_persist_result *p, bool timed_out)
{
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "instance_id", p->instance_id);
        cJSON_AddBoolToObject(o, "success", p->done && p->success);
        cJSON_AddBoolToObject(o, "done", p->done);
        cJSON_AddStringToObject(o, "state",
                                p->done ? (p->success ? "succeeded" : "failed")
                                        : (timed_out ? "timed_out" : "pending"));
        if (p->done && !p->success)
                cJSON_AddStringToObject(o, "error_message",
                                        p->error[0] ? p->error : "the save failed");
        else if (!p->done && timed_out)
                cJSON_AddStringToObject(o, "error_message",
                                        "timed out waiting for the save (it goes on)");
        else
                cJSON_AddStringToObject(o, "error_message", "");
        cJSON_AddBoolToObject(o, "joined", p->joined);
        json_add_time(o, "requested_at", p->requested_us);
        json_add_time(o, "started_at", p->started_us);
        json_add_time(o, "finished_at", p->finished_us);
        add_optional_int(o, "lastsave", p->lastsave);
        add_optional_int(o, "run_id", p->run_id);
        return o;
}

static void persist(struct http_request *rq, struct http_response *rs, struct persist_body *b)
{
        struct api_persist_request req = {
            .instances = b->instances,
            .n_instances = b->n_instances,
            .all = b->all,
            .wait = b->wait,
        };
        int64_t timeout_us = b->timeout_s * USEC_PER_SEC;
        if (timeout_us > http_server_max_wait_us(rq->server))
                timeout_us = http_server_max_wait_us(rq->server);
        req.timeout_us = timeout_us;
        snprintf(req.pool, sizeof(req.pool), "%s", b->pool);
        snprintf(req.request_id, sizeof(req.request_id), "%s", b->request_id);

        void *handle = NULL;
        size_t n = 0;
        struct api_error err = {0};
        int r = rq->be->persist_begin(rq->be->userdata, &req, &handle, &n, &err);
        if (r < 0) {
                http_backend_error(rq, rs, r, &err);
                return;
        }
        struct api_persist_result *results = calloc(n ? n : 1, sizeof(*results));
        if (!results) {
                rq->be->persist_end(rq->be->userdata, handle);
                http_error(rs, 500, "internal", NULL, "out of memory");
                return;
        }
        bool all_done = false;
        if (!b->wait) {
                all_done = rq->be->persist_poll(rq->be->userdata, handle, 0, results) == 0;
        } else {
                /* Wait in slices, so that a stopping server answers at once. */
                int64_t deadline = clock_mono_us() + timeout_us;
                for (;;) {
                        int64_t left = deadline - clock_mono_us();
                        int64_t slice =
                            left < POLL_SLICE_US ? (left > 0 ? left : 0) : POLL_SLICE_US;
                        all_done =
                            rq->be->persist_poll(rq->be->userdata, handle, slice, results) == 0;
                        if (all_done || left <= 0 || http_server_is_stopping(rq->server))
                                break;
                }
        }
        rq->be->persist_end(rq->be->userdata, handle);

        bool success = all_done;
        cJSON *o = cJSON_CreateObject(), *a = cJSON_CreateArray();
        for (size_t i = 0; i < n; i++) {
                success = success && results[i].success;
                cJSON_AddItemToArray(a, persist_result_json(&results[i], b->wait));
        }
        free(results);
        cJSON_AddBoolToObject(o, "success", success);
        cJSON_AddBoolToObject(o, "done", all_done);
        add_optional_string(o, "request_id", b->request_id);
        cJSON_AddItemToObject(o, "results", a);
        http_json(rs, b->wait || all_done ? 200 : 202, o);
}

static void persist_many(struct http_request *rq, struct http_response *rs)
{
        struct persist_body b = {.timeout_s = DEFAULT_PERSIST_TIMEOUT_S};
        struct json_error je = {0};
        unsigned present = 0;
        int r = json_parse_object(rq->body, rq->body_len, false, persist_fields,
                                  ELEMENTSOF(persist_fields), &b, &present, &je);
        if (r < 0) {
                json_string_array_free(b.instances, b.n_instances);
                bad_body(rs, &je);
                return;
        }
        if (!b.all)
                present &= ~(unsigned)PERSIST_ALL;
        if (__builtin_popcount(present & (PERSIST_INSTANCES | PERSIST_POOL | PERSIST_ALL)) != 1) {
                json_string_array_free(b.instances, b.n_instances);
                http_error(rs, 400, present ? "invalid_value" : "missing_field", "instances",
                           "give exactly one of instances (a list of ids), pool (a pool name) or "
                           "all (true)");
                return;
        }
        persist(rq, rs, &b);
        json_string_array_free(b.instances, b.n_instances);
}

static void persist_one(struct http_request *rq, struct http_response *rs)
{
        if (!path_id_ok(rq, rs, "instance"))
                return;
        struct persist_body b = {.timeout_s = DEFAULT_PERSIST_TIMEOUT_S};
        struct json_error je = {0};
        int r = json_parse_object(rq->body, rq->body_len, true, persist_one_fields,
                                  ELEMENTSOF(persist_one_fields), &b, NULL, &je);
        if (r < 0) {
                bad_body(rs, &je);
                return;
        }
        char *ids[1] = {(char *)param(rq, 0)};
        b.instances = ids;
        b.n_instances = 1;
        persist(rq, rs, &b);
}

/* ---- runs and the plan ----------------------------------------------------------------------- */

static const char *const run_list_query[] = {"task",  "instance", "kind",   "state", "since",
                                             "until", "limit",    "cursor", NULL};

static void list_runs(struct http_request *rq, struct http_response *rs)
{
        struct api_run_filter f = {0};
        if (query_id(rq, rs, "task", f.task_id, sizeof(f.task_id)) < 0 ||
            query_id(rq, rs, "instance", f.instance_id, sizeof(f.instance_id)) < 0 ||
            query_choice(rq, rs, "kind", run_kinds, f.kind, sizeof(f.kind)) < 0 ||
            query_choice(rq, rs, "state", run_states, f.state, sizeof(f.state)) < 0 ||
            query_time(rq, rs, "since", &f.since_us) < 0 ||
            query_time(rq, rs, "until", &f.until_us) < 0 || query_limit(rq, rs, &f.limit) < 0 ||
            query_cursor(rq, rs, f.cursor) < 0)
                return;
        if (f.since_us && f.until_us && f.until_us <= f.since_us) {
                http_error(rs, 400, "out_of_range", "until", "until: must be after since");
                return;
        }
        struct api_run *runs = NULL;
        size_t n = 0;
        char next[API_CURSOR_MAX] = "";
        struct api_error err = {0};
        int r = rq->be->run_list(rq->be->userdata, &f, &runs, &n, next, &err);
        if (r < 0) {
                free(runs);
                http_backend_error(rq, rs, r, &err);
                return;
        }
        cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "runs");
        for (size_t i = 0; i < n; i++)
                cJSON_AddItemToArray(a, run_json(&runs[i]));
        free(runs);
        add_cursor(o, next);
        http_json(rs, 200, o);
}

static const char *const plan_query[] = {"hour", NULL};

static void get_plan(struct http_request *rq, struct http_response *rs)
{
        int64_t at = 0;
        if (query_time(rq, rs, "hour", &at) < 0)
                return;
        if (!http_query(rq, "hour"))
                at = clock_wall_us();
        struct api_plan p = {0};
        struct api_error err = {0};
        int r = rq->be->plan(rq->be->userdata, at, &p, &err);
        if (r < 0) {
                api_plan_release(&p);
                http_backend_error(rq, rs, r, &err);
                return;
        }
        cJSON *o = cJSON_CreateObject();
        json_add_time(o, "hour", p.hour_us);
        cJSON_AddBoolToObject(o, "loaded", p.loaded);
        cJSON *pools = cJSON_AddArrayToObject(o, "pools");
        for (size_t i = 0; i < p.n_pools; i++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "name", p.pools[i].name);
                cJSON_AddNumberToObject(e, "limit", p.pools[i].limit);
                json_add_time(e, "expected_end", p.pools[i].expected_end_us);
                cJSON_AddNumberToObject(e, "overrun_s",
                                        round((double)p.pools[i].overrun_us / 1000.0) / 1000.0);
                cJSON_AddItemToArray(pools, e);
        }
        cJSON *slots = cJSON_AddArrayToObject(o, "slots");
        for (size_t i = 0; i < p.n_slots; i++) {
                const struct api_plan_slot *s = &p.slots[i];
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "task_id", s->task_id);
                cJSON_AddStringToObject(e, "instance_id", s->instance_id);
                cJSON_AddStringToObject(e, "pool", s->pool);
                json_add_time(e, "slot", s->slot_us);
                json_add_time(e, "expected_start", s->expected_start_us);
                json_add_time(e, "expected_end", s->expected_end_us);
                cJSON_AddItemToArray(slots, e);
        }
        api_plan_release(&p);
        http_json(rs, 200, o);
}

/* ---- nightly ------------------------------------------------------------------------------- */

static void get_nightly(struct http_request *rq, struct http_response *rs)
{
        struct api_nightly n = {0};
        struct api_error err = {0};
        int r = rq->be->nightly_status(rq->be->userdata, &n, &err);
        if (r < 0) {
                api_nightly_release(&n);
                http_backend_error(rq, rs, r, &err);
                return;
        }
        cJSON *o = nightly_json(&n);
        api_nightly_release(&n);
        http_json(rs, 200, o);
}

static void nightly_control(struct http_request *rq, struct http_response *rs,
                            enum api_nightly_action action)
{
        struct json_error je = {0};
        char dummy;
        if (json_parse_object(rq->body, rq->body_len, true, NULL, 0, &dummy, NULL, &je) < 0) {
                bad_body(rs, &je);
                return;
        }
        struct api_nightly n = {0};
        struct api_error err = {0};
        int r = rq->be->nightly_control(rq->be->userdata, action, &n, &err);
        if (r < 0) {
                api_nightly_release(&n);
                http_backend_error(rq, rs, r, &err);
                return;
        }
        cJSON *o = nightly_json(&n);
        api_nightly_release(&n);
        http_json(rs, 200, o);
}

static void nightly_start(struct http_request *rq, struct http_response *rs)
{
        nightly_control(rq, rs, API_NIGHTLY_START);
}

static void nightly_pause(struct http_request *rq, struct http_response *rs)
{
        nightly_control(rq, rs, API_NIGHTLY_PAUSE);
}

static void nightly_resume(struct http_request *rq, struct http_response *rs)
{
        nightly_control(rq, rs, API_NIGHTLY_RESUME);
}

/* ---- the table ------------------------------------------------------------------------------ */

#define H(fn_, q_) (&(const struct http_handler){.fn = (fn_), .query = (q_)})

const struct router_route http_routes[] = {
    {"GET", "/healthz", H(get_healthz, NULL)},
    {"GET", "/readyz", H(get_readyz, NULL)},
    {"GET", "/metrics", H(get_metrics, NULL)},
    {"GET", "/v1/status", H(get_status, NULL)},
    {"GET", "/v1/tasks", H(list_tasks, task_list_query)},
    {"POST", "/v1/tasks", H(create_task, NULL)},
    {"GET", "/v1/tasks/{id}", H(get_task, NULL)},
    {"PUT", "/v1/tasks/{id}", H(put_task, NULL)},
    {"PATCH", "/v1/tasks/{id}", H(patch_task, NULL)},
    {"DELETE", "/v1/tasks/{id}", H(delete_task, NULL)},
    {"POST", "/v1/tasks/{id}/run", H(run_task, NULL)},
    {"GET", "/v1/instances", H(list_instances, instance_list_query)},
    {"GET", "/v1/instances/{id}", H(get_instance, NULL)},
    {"POST", "/v1/instances/{id}/persist", H(persist_one, NULL)},
    {"POST", "/v1/persist", H(persist_many, NULL)},
    {"GET", "/v1/runs", H(list_runs, run_list_query)},
    {"GET", "/v1/plan", H(get_plan, plan_query)},
    {"GET", "/v1/nightly", H(get_nightly, NULL)},
    {"POST", "/v1/nightly/start", H(nightly_start, NULL)},
    {"POST", "/v1/nightly/pause", H(nightly_pause, NULL)},
    {"POST", "/v1/nightly/resume", H(nightly_resume, NULL)},
};
const size_t http_routes_count = ELEMENTSOF(http_routes);

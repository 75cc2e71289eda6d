/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP transport: libmicrohttpd in thread-per-connection mode. Each request passes the same
 * gates in the same order — path length, route (404/405), token (401), leader-only rule (503),
 * query parameters (400/414), body size (413) — before its handler runs, so a handler only sees
 * requests it may act on.
 */
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "http/handlers.h"
#include "http/server.h"

#define LOG_MODULE "http"

#define DEFAULT_MAX_BODY        65536
#define DEFAULT_MAX_CONNECTIONS 512
#define DEFAULT_IDLE_TIMEOUT_S  30
#define DEFAULT_MAX_WAIT_US     (3600 * USEC_PER_SEC)
#define TOKEN_MAX               4096

struct http_server {
        char *listen;
        char *token;
        size_t max_body;
        unsigned max_connections;
        unsigned idle_timeout_s;
        int64_t max_wait_us;
        struct api_backend be;
        struct metrics *metrics;
        struct MHD_Daemon *mhd;
        uint16_t port;
        atomic_bool stopping;
        char errstr[256];
};

/* Per request, kept in MHD's *con_cls between calls. */
struct request_ctx {
        struct router_match match;
        const struct http_handler *handler;
        struct strbuf body;
        bool too_large;
        bool refused; /* an early answer is queued */
};

bool http_token_equal(const char *presented, size_t presented_len, const char *expected)
{
        size_t expected_len = expected ? strlen(expected) : 0;
        if (expected_len == 0)
                return false;
        /*
         * Walk the presented bytes only, cycling over the expected token: the time depends on
         * what the client sent, never on the secret's length or content.
         */
        unsigned char diff = (unsigned char)(presented_len != expected_len);
        for (size_t i = 0; i < presented_len; i++)
                diff |= (unsigned char)((unsigned char)presented[i] ^
                                        (unsigned char)expected[i % expected_len]);
        return diff == 0;
}

bool http_server_is_stopping(struct http_server *s)
{
        return atomic_load(&s->stopping);
}

int64_t http_server_max_wait_us(struct http_server *s)
{
        return s->max_wait_us;
}

struct metrics *http_server_metrics(struct http_server *s)
{
        return s->metrics;
}

const char *http_server_errstr(const struct http_server *s)
{
        return s->errstr;
}

uint16_t http_server_port(const struct http_server *s)
{
        return s->port;
}

/* ---- responses --------------------------------------------------------------------------- */

void json_add_time(cJSON *obj, const char *name, int64_t us)
{
        char buf[CLOCK_RFC3339_MAX];
        if (us == 0)
                cJSON_AddNullToObject(obj, name);
        else
                cJSON_AddStringToObject(obj, name, clock_format_rfc3339(us, 3, buf));
}

void http_json(struct http_response *rs, unsigned status, cJSON *json)
{
        free(rs->body);
        rs->body = json ? cJSON_PrintUnformatted(json) : NULL;
        cJSON_Delete(json);
        rs->status = rs->body ? status : 500;
}

void http_error(struct http_response *rs, unsigned status, const char *code, const char *field,
                const char *fmt, ...)
{
        char message[API_TEXT_MAX + 128];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);

        cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
        cJSON_AddStringToObject(e, "code", code);
        cJSON_AddStringToObject(e, "message", message);
        if (!strempty(field))
                cJSON_AddStringToObject(e, "field", field);
        http_json(rs, status, root);
}

static void not_leader(struct http_request *rq, struct http_response *rs)
{
        struct api_leader l = {0};
        rq->be->leader(rq->be->userdata, &l);
        snprintf(rs->retry_after, sizeof(rs->retry_after), "%d",
                 l.retry_after_s > 0 ? l.retry_after_s : 2);
        cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
        cJSON_AddStringToObject(e, "code", "not_leader");
        if (l.leader[0])
                cJSON_AddStringToObject(e, "message",
                                        "this replica does not lead; send mutations to the leader");
        else
                cJSON_AddStringToObject(e, "message",
                                        "this replica does not lead and no leader is known yet");
        if (l.leader[0])
                cJSON_AddStringToObject(e, "leader", l.leader);
        else
                cJSON_AddNullToObject(e, "leader");
        http_json(rs, 503, root);
}

void http_backend_error(struct http_request *rq, struct http_response *rs, int r,
                        const struct api_error *err)
{
        const char *msg = err && err->message[0] ? err->message : NULL;
        const char *field = err ? err->field : NULL;
        switch (r) {
        case -ENOENT:
                http_error(rs, 404, "not_found", field, "%s", msg ? msg : "not found");
                return;
        case -EEXIST:
        case -EBUSY:
                http_error(rs, 409, "conflict", field, "%s", msg ? msg : "conflict");
                return;
        case -EINVAL:
                http_error(rs, 400, "invalid_value", field, "%s", msg ? msg : "invalid request");
                return;
        case -EAGAIN:
                not_leader(rq, rs);
                return;
        case -ENOTCONN:
        case -ECONNREFUSED:
        case -ETIMEDOUT:
        case -EHOSTUNREACH:
                snprintf(rs->retry_after, sizeof(rs->retry_after), "5");
                http_error(rs, 503, "unavailable", NULL, "%s",
                           msg ? msg : "a dependency (PostgreSQL) is unavailable");
                return;
        default:
                /* The backend's message may carry internals: log it, answer a generic one. */
                log_warn("%s %s failed: %s%s%s", rq->method, rq->path, strerror(r < 0 ? -r : r),
                         msg ? ": " : "", msg ? msg : "");
                http_error(rs, 500, "internal", NULL, "internal error (%s)",
                           strerror(r < 0 ? -r : r));
                return;
        }
}

const char *http_query(struct http_request *rq, const char *name)
{
        return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result send_response(struct http_server *s, struct MHD_Connection *conn,
                                     const char *method, const char *path, const char *route,
                                     struct http_response *rs)
{
        if (!rs->body) {
                rs->status = 500;
                rs->body = strdup("{\"error\":{\"code\":\"internal\",\"message\":\"out of "
                                  "memory\"}}");
                if (!rs->body)
                        return MHD_NO;
        }
        size_t len = strlen(rs->body);
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(len, rs->body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(rs->body);
                rs->body = NULL;
                return MHD_NO;
        }
        rs->body = NULL;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                rs->content_type ? rs->content_type : "application/json");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (rs->retry_after[0])
                MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, rs->retry_after);
        if (rs->allow[0])
                MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, rs->allow);
        if (rs->www_authenticate)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                        "Bearer realm=\"persistd\"");
        enum MHD_Result ret = MHD_queue_response(conn, rs->status, resp);
        MHD_destroy_response(resp);

        char code[8];
        snprintf(code, sizeof(code), "%u", rs->status);
        if (s->metrics)
                metrics_counter_add(s->metrics, M_HTTP_REQUESTS,
                                    (const char *[]){route ? route : "unmatched", code}, 1);
        log_debug("%s %s -> %u", method, path, rs->status);
        return ret;
}

/* ---- the gates before a handler ------------------------------------------------------------ */

struct query_check {
        const struct http_handler *h;
        char bad[64];
        int problem; /* 0, 1 unknown, 2 too long, 3 repeated */
        char seen[8][32];
        size_t n_seen;
};

static enum MHD_Result check_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
        struct query_check *q = cls;
        bool known = false;
        for (size_t i = 0; q->h->query && q->h->query[i]; i++)
                if (streq(q->h->query[i], key))
                        known = true;
        snprintf(q->bad, sizeof(q->bad), "%s", key);
        if (!known) {
                q->problem = 1;
                return MHD_NO;
        }
        if (value && strnlen(value, HTTP_QUERY_VALUE_MAX + 1) > HTTP_QUERY_VALUE_MAX) {
                q->problem = 2;
                return MHD_NO;
        }
        for (size_t i = 0; i < q->n_seen; i++)
                if (streq(q->seen[i], key)) {
                        q->problem = 3;
                        return MHD_NO;
                }
        if (q->n_seen < ELEMENTSOF(q->seen))
                snprintf(q->seen[q->n_seen++], sizeof(q->seen[0]), "%s", key);
        return MHD_YES;
}

static bool is_mutation(const char *method)
{
        return streq(method, "POST") || streq(method, "PUT") || streq(method, "PATCH") ||
               streq(method, "DELETE");
}

/* The Bearer credential of the request, or NULL. Sets *len. */
static const char *bearer(struct MHD_Connection *conn, size_t *len)
{
        const char *v =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        if (!v || strncasecmp(v, "Bearer ", 7) != 0)
                return NULL;
        v += 7;
        while (*v == ' ')
                v++;
        *len = strnlen(v, TOKEN_MAX + 1);
        if (*len > TOKEN_MAX)
                return NULL;
        while (*len > 0 && v[*len - 1] == ' ')
                (*len)--;
        return v;
}

/* The first call of a request: every check that needs no body. True when refused (rs set). */
static bool gate(struct http_server *s, struct MHD_Connection *conn, const char *method,
                 const char *url, struct request_ctx *ctx, struct http_response *rs)
{
        int r = router_find(http_routes, http_routes_count, method, url, &ctx->match);
        if (r == -ENAMETOOLONG) {
                http_error(rs, 414, "too_long", NULL,
                           "the path or one of its segments is longer "
                           "than %d bytes",
                           ROUTER_SEGMENT_MAX - 1);
                return true;
        }
        bool under_v1 = strncmp(url, "/v1/", 4) == 0 || streq(url, "/v1");
        /* Unknown paths under /v1 say nothing before the token is checked. */
        if (under_v1) {
                size_t len = 0;
                const char *t = bearer(conn, &len);
                if (!t || !http_token_equal(t, len, s->token)) {
                        rs->www_authenticate = true;
                        http_error(rs, 401, "unauthorized", NULL,
                                   t ? "the bearer token is not valid"
                                     : "a bearer token is required (Authorization: Bearer "
                                       "<token>)");
                        return true;
                }
        }
        if (r == -ENOENT) {
                http_error(rs, 404, "not_found", NULL, "no such endpoint: %.200s", url);
                return true;
        }
        if (r == -EPERM) {
                snprintf(rs->allow, sizeof(rs->allow), "%s", ctx->match.allow);
                http_error(rs, 405, "method_not_allowed", NULL,
                           "%s is not allowed on %.200s (allowed: %s)", method, url,
                           ctx->match.allow);
                return true;
        }
        ctx->handler = ctx->match.route->data;

        struct query_check q = {.h = ctx->handler};
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, check_query_arg, &q);
        if (q.problem == 1) {
                http_error(rs, 400, "unknown_parameter", q.bad, "%s: unknown query parameter",
                           q.bad);
                return true;
        }
        if (q.problem == 2) {
                http_error(rs, 414, "too_long", q.bad,
                           "%s: the query value is longer than %d bytes", q.bad,
                           HTTP_QUERY_VALUE_MAX);
                return true;
        }
        if (q.problem == 3) {
                http_error(rs, 400, "duplicate_parameter", q.bad, "%s: given more than once",
                           q.bad);
                return true;
        }

        if (under_v1 && is_mutation(method)) {
                struct api_leader l = {0};
                s->be.leader(s->be.userdata, &l);
                if (!l.is_leader) {
                        struct http_request rq = {
                            .conn = conn, .method = method, .path = url, .be = &s->be, .server = s};
                        not_leader(&rq, rs);
                        return true;
                }
        }

        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        int64_t declared;
        if (cl && parse_int64(cl, &declared) == 0 && declared > (int64_t)s->max_body) {
                http_error(rs, 413, "too_large", NULL, "the request body is larger than %zu bytes",
                           s->max_body);
                return true;
        }
        return false;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
        struct http_server *s = cls;
        struct request_ctx *ctx = *con_cls;

        if (!ctx) {
                ctx = calloc(1, sizeof(*ctx));
                if (!ctx)
                        return MHD_NO;
                *con_cls = ctx;
                struct http_response rs = {0};
                if (gate(s, conn, method, url, ctx, &rs)) {
                        ctx->refused = true;
                        return send_response(s, conn, method, url,
                                             ctx->match.route ? ctx->match.route->pattern : NULL,
                                             &rs);
                }
                return MHD_YES;
        }
        if (ctx->refused) {
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                if (!ctx->too_large && ctx->body.len + *upload_data_size <= s->max_body)
                        strbuf_add(&ctx->body, upload_data, *upload_data_size);
                else
                        ctx->too_large = true; /* keep reading (discarding) to answer 413 */
                *upload_data_size = 0;
                return MHD_YES;
        }

        struct http_response rs = {0};
        const char *pattern = ctx->match.route->pattern;
        if (ctx->too_large) {
                http_error(&rs, 413, "too_large", NULL, "the request body is larger than %zu bytes",
                           s->max_body);
        } else if (ctx->body.oom) {
                http_error(&rs, 500, "internal", NULL, "out of memory");
        } else {
                struct http_request rq = {
                    .conn = conn,
                    .method = method,
                    .path = url,
                    .match = &ctx->match,
                    .body = strbuf_str(&ctx->body),
                    .body_len = ctx->body.len,
                    .be = &s->be,
                    .server = s,
                };
                ctx->handler->fn(&rq, &rs);
        }
        return send_response(s, conn, method, url, pattern, &rs);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
        struct request_ctx *ctx = *con_cls;
        if (!ctx)
                return;
        strbuf_release(&ctx->body);
        free(ctx);
        *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
        char buf[512];
        vsnprintf(buf, sizeof(buf), fmt, ap);
        size_t n = strlen(buf);
        while (n > 0 && buf[n - 1] == '\n')
                buf[--n] = '\0';
        log_debug("libmicrohttpd: %s", buf);
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

struct http_server *http_server_new(const struct http_server_options *opts,
                                    const struct api_backend *backend, struct metrics *metrics)
{
        struct http_server *s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        s->listen = strdup(opts->listen ? opts->listen : "127.0.0.1:0");
        s->token = strdup(opts->token ? opts->token : "");
        if (!s->listen || !s->token) {
                http_server_free(s);
                return NULL;
        }
        s->max_body = opts->max_body_bytes ? opts->max_body_bytes : DEFAULT_MAX_BODY;
        s->max_connections =
            opts->max_connections ? opts->max_connections : DEFAULT_MAX_CONNECTIONS;
        s->idle_timeout_s = opts->idle_timeout_s ? opts->idle_timeout_s : DEFAULT_IDLE_TIMEOUT_S;
        s->max_wait_us = opts->max_wait_us > 0 ? opts->max_wait_us : DEFAULT_MAX_WAIT_US;
        s->be = *backend;
        s->metrics = metrics;
        atomic_init(&s->stopping, false);
        return s;
}

/* "host:port" or "[v6]:port", port 0..65535 (0: any free port). */
static int split_listen(const char *s, char **ret_host, uint16_t *ret_port)
{
        const char *colon = strrchr(s, ':'), *host = s;
        size_t host_len;
        int64_t port;
        if (!colon)
                return -EINVAL;
        if (s[0] == '[') {
                if (colon == s || colon[-1] != ']')
                        return -EINVAL;
                host = s + 1;
                host_len = (size_t)(colon - 1 - host);
        } else {
                if (memchr(s, ':', (size_t)(colon - s)))
                        return -EINVAL; /* a v6 literal needs brackets */
                host_len = (size_t)(colon - s);
        }
        if (host_len == 0 || parse_int64(colon + 1, &port) < 0 || port < 0 || port > 65535)
                return -EINVAL;
        *ret_host = strndup(host, host_len);
        if (!*ret_host)
                return -ENOMEM;
        *ret_port = (uint16_t)port;
        return 0;
}

int http_server_start(struct http_server *s)
{
        _cleanup_free_ char *host = NULL;
        uint16_t port;
        if (s->mhd)
                return -EALREADY;
        if (split_listen(s->listen, &host, &port) < 0) {
                snprintf(s->errstr, sizeof(s->errstr),
                         "invalid listen address \"%s\" (expected host:port or [v6]:port)",
                         s->listen);
                return -EINVAL;
        }
        char service[8];
        snprintf(service, sizeof(service), "%u", port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                 .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
        struct addrinfo *ai = NULL;
        int g = getaddrinfo(host, service, &hints, &ai);
        if (g != 0 || !ai) {
                snprintf(s->errstr, sizeof(s->errstr), "cannot resolve listen address \"%s\": %s",
                         s->listen, gai_strerror(g));
                if (ai)
                        freeaddrinfo(ai);
                return -EINVAL;
        }

        unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_USE_ITC;
        if (ai->ai_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
                                  ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
                                  (unsigned)s->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
                                  (unsigned)s->idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                  (size_t)(64 * 1024), MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                  MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
                                  MHD_OPTION_LISTEN_BACKLOG_SIZE, 128U, MHD_OPTION_END);
        freeaddrinfo(ai);
        if (!s->mhd) {
                int e = errno ? errno : EADDRINUSE;
                snprintf(s->errstr, sizeof(s->errstr), "cannot listen on \"%s\": %s", s->listen,
                         strerror(e));
                return -e;
        }
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
        s->port = info ? info->port : port;
        s->errstr[0] = '\0';
        return 0;
}

void http_server_stop(struct http_server *s)
{
        if (!s || !s->mhd)
                return;
        atomic_store(&s->stopping, true);
        MHD_stop_daemon(s->mhd);
        s->mhd = NULL;
        s->port = 0;
        atomic_store(&s->stopping, false);
}

void http_server_free(struct http_server *s)
{
        if (!s)
                return;
        http_server_stop(s);
        free(s->listen);
        if (s->token) {
                explicit_bzero(s->token, strlen(s->token));
                free(s->token);
        }
        free(s);
}

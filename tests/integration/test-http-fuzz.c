/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz-style requests against a real persistd leader (one replica; PostgreSQL, Redis,
 * kube-test-server), from a deterministic generator with a fixed seed: malformed, truncated
 * and oversized bodies, paths and query strings at every route over well-formed HTTP (each
 * answered with JSON, an error object for 4xx/5xx), then garbled and truncated HTTP over raw
 * sockets (never accepted; libmicrohttpd answers what it refuses itself with its own HTML). The
 * server keeps answering /healthz throughout and exits cleanly at the end (under the sanitizers: no
 * crash, no leak, no race).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "core/clock.h"
#include "test-e2e-util.h"

#define SEED       0x5eed2026u
#define N_REQUESTS 400
#define N_RAW      120

static uint32_t rng = SEED;

static uint32_t next(void)
{
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        return rng;
}

static uint32_t below(uint32_t n)
{
        return next() % n;
}

struct route {
        const char *method, *path, *body;
};

/* Every route with a valid request, the seed of the mutations. */
static const struct route routes[] = {
    {"GET", "/healthz", NULL},
    {"GET", "/readyz", NULL},
    {"GET", "/v1/status", NULL},
    {"GET", "/v1/tasks?instance=redis-a&enabled=true&limit=5", NULL},
    {"POST", "/v1/tasks",
     "{\"instance_id\":\"redis-a\",\"action\":\"bgsave\",\"schedule\":\"0 3 * * *\"}"},
    {"GET", "/v1/tasks/1", NULL},
    {"PUT", "/v1/tasks/1",
     "{\"instance_id\":\"redis-b\",\"action\":\"bgsave\",\"schedule\":\"*/5 * * * *\"}"},
    {"PATCH", "/v1/tasks/1", "{\"enabled\":false,\"starting_deadline_s\":30}"},
    {"DELETE", "/v1/tasks/2", NULL},
    {"POST", "/v1/tasks/1/run", "{}"},
    {"GET", "/v1/instances?pool=ssd&limit=2", NULL},
    {"GET", "/v1/instances/redis-a", NULL},
    {"POST", "/v1/instances/redis-a/persist", "{\"wait\":true,\"timeout_s\":5}"},
    {"POST", "/v1/persist", "{\"instances\":[\"redis-a\",\"redis-c\"],\"request_id\":\"r-1\"}"},
    {"GET", "/v1/runs?kind=persist&limit=3", NULL},
    {"GET", "/v1/plan?hour=2026-11-22T00:30:00Z", NULL},
    {"GET", "/v1/nightly", NULL},
    {"POST", "/v1/nightly/start", "{}"},
    {"POST", "/v1/nightly/pause", "{}"},
    {"POST", "/v1/nightly/resume", "{}"},
};
#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"};

struct req {
        char *data;
        size_t len, cap;
};

static void add(struct req *r, const void *p, size_t n)
{
        if (r->len + n + 1 > r->cap) {
                r->cap = (r->len + n + 1) * 2;
                r->data = realloc(r->data, r->cap);
                if (!r->data)
                        abort();
        }
        memcpy(r->data + r->len, p, n);
        r->len += n;
        r->data[r->len] = '\0';
}

static void adds(struct req *r, const char *s)
{
        add(r, s, strlen(s));
}

static void fill(struct req *r, char c, size_t n)
{
        for (size_t i = 0; i < n; i++)
                add(r, &c, 1);
}

/* A mutation of `body` (may be NULL) into `out`. */
static void mutate_body(const char *body, struct req *out)
{
        static const char *const junk[] = {
            "{",
            "}",
            "[]",
            "null",
            "\"str\"",
            "{\"a\":1,\"a\":2}",
            "{\"wait\":true,\"wait\":false}",
            "{\"instance_id\":null}",
            "{\"schedule\":\"61 * * * *\"}",
            "{\"timeout_s\":1e309}",
            "{\"timeout_s\":-1}",
            "{\"limit\":99999999999999999999}",
            "{\"instances\":[1,2,3]}",
            "{\"instances\":[]}",
            "{\"all\":\"yes\"}",
            "{\"request_id\":\"\"}",
            "{\"x\":\"\\ud800\"}",
            "{\"x\":\"\xff\xfe\"}",
            "{\"enabled\":tru}",
            "\x00\x01\x02",
        };
        const char *b = body ? body : "{}";
        size_t n = strlen(b);
        switch (below(8)) {
        case 0: /* truncated */
                add(out, b, below((uint32_t)n + 1));
                break;
        case 1: /* one byte changed */
        {
                add(out, b, n);
                if (n)
                        out->data[below((uint32_t)n)] = (char)below(256);
                break;
        }
        case 2: /* a known-bad document */
        {
                const char *j = junk[below(sizeof(junk) / sizeof(junk[0]))];
                add(out, j, j[0] ? strlen(j) : 3);
                break;
        }
        case 3: /* deep nesting */
        {
                size_t d = 1 + below(20000);
                fill(out, '[', d);
                fill(out, ']', below(2) ? d : d / 2);
                break;
        }
        case 4: /* oversized: over http.max_body_bytes (64 KiB) */
                adds(out, "{\"instance_id\":\"");
                fill(out, 'x', 65536 + below(200000));
                adds(out, "\"}");
                break;
        case 5: /* a huge string just under the limit, in a known field */
                adds(out, "{\"request_id\":\"");
                fill(out, 'r', 1000 + below(60000));
                adds(out, "\"}");
                break;
        case 6: /* random bytes */
        {
                size_t k = below(512);
                for (size_t i = 0; i < k; i++) {
                        char c = (char)below(256);
                        add(out, &c, 1);
                }
                break;
        }
        default: /* an unknown member appended */
                add(out, b, n > 0 ? n - 1 : 0);
                adds(out, n > 2 ? ",\"zz\":[{}]}" : "{\"zz\":0}");
                break;
        }
}

/* A mutation of `path` into `out`. */
static void mutate_path(const char *path, struct req *out)
{
        switch (below(6)) {
        case 0:
                adds(out, path);
                break;
        case 1: /* a long id */
                adds(out, "/v1/tasks/");
                fill(out, '9', 100 + below(3000));
                break;
        case 2: /* bad query */
                adds(out, path);
                adds(out, strchr(path, '?') ? "&limit=0&limit=1" : "?bogus=%zz&x");
                break;
        case 3: /* encoded junk */
                adds(out, "/v1/instances/%00%2F..%2Fetc");
                break;
        case 4: /* a long query value */
                adds(out, "/v1/runs?instance=");
                fill(out, 'q', 200 + below(2000));
                break;
        default: /* truncated */
                add(out, path, 1 + below((uint32_t)strlen(path)));
                break;
        }
}

static char *body_of(const char *answer, int *chunked)
{
        const char *b = strstr(answer, "\r\n\r\n");
        *chunked = strcasestr(answer, "Transfer-Encoding: chunked") != NULL;
        return b ? (char *)b + 4 : NULL;
}

static void check_healthz(uint16_t port)
{
        assert_int_equal(e2e_http(port, NULL, "GET", "/healthz", NULL, NULL, NULL), 200);
}

static void test_fuzz_every_route(void **state)
{
        struct cluster cl;
        (void)state;

        int l;
        e2e_cluster_start(&cl, 1, &l);
        th_pg_exec(cl.sql,
                   "INSERT INTO tasks (instance_id, action, schedule) VALUES "
                   "('redis-a', 'bgsave', '0 3 * * *'), ('redis-b', 'bgsave', '0 4 * * *')");
        uint16_t port = cl.r[l].port;
        int by_class[6] = {0};

        /* Well-formed HTTP with mutated methods, paths, tokens and bodies: always JSON. */
        for (int i = 0; i < N_REQUESTS; i++) {
                const struct route *rt = &routes[below(N_ROUTES)];
                struct req body = {0}, path = {0}, q = {0};
                const char *method = below(8) ? rt->method : methods[below(7)];
                mutate_path(rt->path, &path);
                if (rt->body || below(4) == 0)
                        mutate_body(rt->body, &body);
                adds(&q, method);
                adds(&q, " ");
                adds(&q, path.data);
                adds(&q, " HTTP/1.1\r\nHost: persistd\r\nConnection: close\r\n");
                if (below(10))
                        adds(&q, "Authorization: Bearer " TOKEN "\r\n");
                adds(&q, "Content-Type: application/json\r\n");
                if (body.len && below(5) == 0) { /* chunked, no Content-Length */
                        char h[64];
                        adds(&q, "Transfer-Encoding: chunked\r\n\r\n");
                        snprintf(h, sizeof(h), "%zx\r\n", body.len);
                        adds(&q, h);
                        add(&q, body.data, body.len);
                        adds(&q, "\r\n0\r\n\r\n");
                } else {
                        char h[64];
                        snprintf(h, sizeof(h), "Content-Length: %zu\r\n\r\n", body.len);
                        adds(&q, h);
                        if (body.len)
                                add(&q, body.data, body.len);
                }
                char *answer = NULL;
                int st = e2e_raw(port, q.data, q.len, &answer);
                int chunked = 0;
                char *b = body_of(answer, &chunked);
                if (st < 100 || st > 599)
                        fail_msg("request %d (%s %.80s): no answer", i, method, path.data);
                by_class[st / 100]++;
                if (strcmp(method, "HEAD") != 0 && !chunked && b) {
                        cJSON *o = cJSON_Parse(b);
                        bool ok = o != NULL && (st < 400 ? true : e2e_is_json_error(b));
                        cJSON_Delete(o);
                        if (!ok)
                                fail_msg("request %d (%s %.80s): %d with a non-JSON body: %.200s",
                                         i, method, path.data, st, b);
                }
                free(answer);
                free(body.data);
                free(path.data);
                free(q.data);
                if (i % 50 == 0)
                        check_healthz(port);
        }
        printf("well-formed: 2xx %d, 4xx %d, 5xx %d\n", by_class[2], by_class[4], by_class[5]);
        assert_true(by_class[4] > N_REQUESTS / 2);
        assert_int_equal(by_class[5], 0);

        /* Garbled and truncated HTTP over raw sockets: the server survives every one. */
        static const char *const garbled[] = {
            "GET",
            "GET /v1/status",
            "GET /v1/status HTTP/1.1\r\n",
            "GET /v1/status HTTP/9.9\r\n\r\n",
            "\r\n\r\n\r\n",
            "POST /v1/tasks HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"inst",
            "POST /v1/tasks HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
            "POST /v1/tasks HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST /v1/tasks HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "POST /v1/tasks HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\nab",
            "GET /v1/status HTTP/1.1\r\nAuthorization: Bearer\r\n\r\n",
            "GET /v1/status HTTP/1.1\r\nNo-Colon-Header\r\n\r\n",
            "G\x00T / HTTP/1.1\r\n\r\n",
        };
        int raw_answered = 0, raw_json = 0;
        for (int i = 0; i < N_RAW; i++) {
                struct req q = {0};
                int kind = (int)below(4);
                if (kind == 0) {
                        const char *g = garbled[below(sizeof(garbled) / sizeof(garbled[0]))];
                        add(&q, g, g[1] == '\0' && g[0] == 'G' ? 4 : strlen(g));
                } else if (kind == 1) { /* an oversized header */
                        adds(&q, "GET /v1/status HTTP/1.1\r\nX-Big: ");
                        fill(&q, 'h', 10000 + below(100000));
                        adds(&q, "\r\n\r\n");
                } else if (kind == 2) { /* an oversized request line */
                        adds(&q, "GET /v1/");
                        fill(&q, 'p', 10000 + below(100000));
                        adds(&q, " HTTP/1.1\r\n\r\n");
                } else { /* a valid request cut anywhere */
                        const char *full = "POST /v1/instances/redis-a/persist HTTP/1.1\r\n"
                                           "Authorization: Bearer " TOKEN "\r\n"
                                           "Content-Length: 2\r\n\r\n{}";
                        add(&q, full, below((uint32_t)strlen(full)));
                }
                char *answer = NULL;
                int st = e2e_raw(port, q.data, q.len, &answer);
                int chunked = 0;
                char *b = body_of(answer, &chunked);
                /* Garbage is never accepted. What persistd answers itself is a JSON error;
                 * what libmicrohttpd refuses below the application (a bad request line, a
                 * header over its memory limit, an unsupported version) gets its own short
                 * HTML page, which the library does not let us replace. */
                if (st && st < 400)
                        fail_msg("raw %d (kind %d): accepted with %d", i, kind, st);
                if (st) {
                        raw_answered++;
                        bool app = strcasestr(answer, "Content-Type: application/json") != NULL;
                        if (app && (!b || !e2e_is_json_error(b)))
                                fail_msg("raw %d (kind %d): %d with a bad JSON error: %.300s", i,
                                         kind, st, answer);
                        raw_json += app;
                }
                free(answer);
                free(q.data);
                if (i % 20 == 0)
                        check_healthz(port);
        }
        printf("garbled: %d sent, %d answered (%d by persistd, in JSON)\n", N_RAW, raw_answered,
               raw_json);
        check_healthz(port);
        assert_int_equal(e2e_http(port, TOKEN, "GET", "/v1/status", NULL, NULL, NULL), 200);

        /* A clean exit: under the sanitizers a report (or a leak) fails it. */
        int status = th_stop(cl.r[l].pid, SIGTERM, 20000);
        cl.r[l].pid = -1;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                dump_logs(&cl);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        cluster_stop(&cl);
}

int main(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_fuzz_every_route),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        curl_global_cleanup();
        return r;
}

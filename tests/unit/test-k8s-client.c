/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The k8s client on the wire: a small in-process HTTP(S) server (libmicrohttpd) answers with
 * responses recorded from a real kube-apiserver and records every request, so the tests assert
 * what the client sends (method, path and query, Content-Type, body, Authorization, User-Agent)
 * and what it makes of the answers: errno, token re-read and retry after a 401, timeouts,
 * watch lines split across chunks, 410 -> re-list, and cancellation from another thread.
 * Certificates are made with openssl at run time in a temporary directory.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "core/clock.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "k8s-transcripts.h"
#include "k8s/k8s-internal.h"
#include "k8s/k8s.h"

#define NS    "redis-system"
#define LEASE "redis-orchestrator-leader"
/* The request timeout of tests that do not test timeouts: generous, for valgrind on a busy box. */
#define SLOW_OK_MS 30000

#define NEED_TRANSCRIPTS()                                                                         \
        do {                                                                                       \
                if (!tr_dir())                                                                     \
                        skip();                                                                    \
        } while (0)

/* ---- The test server -------------------------------------------------------------------- */

struct canned {
        int status;
        char *body; /* owned */
        const char *header, *header_value;
        size_t piece;              /* > 0: chunked, this many bytes per chunk */
        bool hold;                 /* keep the stream open after the body until the server stops */
        const char *rewrite_token; /* written to the token file when this response is served */
};

struct recorded {
        char method[16];
        char uri[2048];
        char content_type[128];
        char auth[256];
        char user_agent[128];
        char accept[64];
        char *body;
        bool client_cert;
};

struct server {
        struct MHD_Daemon *d;
        uint16_t port;
        pthread_mutex_t lock;
        struct canned q[16];
        int nq, served;
        struct recorded reqs[32];
        int nreq;
        atomic_bool stopping;
        atomic_int connections; /* TCP connections accepted */
};

struct conn_state {
        char *uri;
        struct strbuf body;
        bool started;
};

struct stream {
        struct server *s;
        char *body;
        size_t len, piece;
        bool hold;
};

static char tmpdir[256];
static char token_path[300];

static void write_file(const char *path, const char *text)
{
        char tmp[400];
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        FILE *f = fopen(tmp, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        assert_int_equal(rename(tmp, path), 0);
}

static void *uri_log(void *cls, const char *uri, struct MHD_Connection *con)
{
        struct conn_state *cs = calloc(1, sizeof(*cs));
        cs->uri = strdup(uri);
        cs->body = (struct strbuf)STRBUF_INIT;
        return cs;
}

static void completed(void *cls, struct MHD_Connection *con, void **req_cls,
                      enum MHD_RequestTerminationCode toe)
{
        struct conn_state *cs = *req_cls;
        if (!cs)
                return;
        free(cs->uri);
        strbuf_release(&cs->body);
        free(cs);
        *req_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *con, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
        struct server *s = cls;
        if (toe == MHD_CONNECTION_NOTIFY_STARTED)
                atomic_fetch_add(&s->connections, 1);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
        struct stream *st = cls;
        if (pos < st->len) {
                size_t n = MIN(MIN(st->piece, max), st->len - (size_t)pos);
                memcpy(buf, st->body + pos, n);
                usleep(2000); /* so that pieces arrive apart */
                return (ssize_t)n;
        }
        for (int i = 0; st->hold && i < 2000 && !atomic_load(&st->s->stopping); i++)
                usleep(10000);
        return MHD_CONTENT_READER_END_OF_STREAM;
}

static void stream_free(void *cls)
{
        struct stream *st = cls;
        free(st->body);
        free(st);
}

static void copy_header(struct MHD_Connection *con, const char *name, char *dst, size_t size)
{
        k8s_strlcpy(dst, MHD_lookup_connection_value(con, MHD_HEADER_KIND, name), size);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *con, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **req_cls)
{
        struct server *s = cls;
        struct conn_state *cs = *req_cls;
        struct canned c = {0};
        bool have = false;

        if (!cs->started) {
                cs->started = true;
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                strbuf_add(&cs->body, upload_data, *upload_data_size);
                *upload_data_size = 0;
                return MHD_YES;
        }

        bool client_cert = false;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(con, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        if (ci && ci->tls_session) {
                unsigned int n = 0;
                client_cert = gnutls_certificate_get_peers(ci->tls_session, &n) != NULL && n > 0;
        }

        pthread_mutex_lock(&s->lock);
        if (s->nreq < (int)ELEMENTSOF(s->reqs)) {
                struct recorded *r = &s->reqs[s->nreq++];
                k8s_strlcpy(r->method, method, sizeof(r->method));
                k8s_strlcpy(r->uri, cs->uri, sizeof(r->uri));
                copy_header(con, "Content-Type", r->content_type, sizeof(r->content_type));
                copy_header(con, "Authorization", r->auth, sizeof(r->auth));
                copy_header(con, "User-Agent", r->user_agent, sizeof(r->user_agent));
                copy_header(con, "Accept", r->accept, sizeof(r->accept));
                r->body = strdup(strbuf_str(&cs->body));
                r->client_cert = client_cert;
        }
        if (s->served < s->nq) {
                c = s->q[s->served];
                s->q[s->served].body = NULL; /* taken */
                s->served++;
                have = true;
        }
        pthread_mutex_unlock(&s->lock);

        if (!have) {
                c.status = 500;
                c.body = strdup("{\"kind\":\"Status\",\"message\":\"no canned response\","
                                "\"code\":500}\n");
        }
        if (c.rewrite_token)
                write_file(token_path, c.rewrite_token);

        struct MHD_Response *resp;
        if (c.piece > 0) {
                struct stream *st = calloc(1, sizeof(*st));
                st->s = s;
                st->body = c.body;
                st->len = strlen(c.body);
                st->piece = c.piece;
                st->hold = c.hold;
                resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1024, stream_read, st,
                                                         stream_free);
        } else {
                resp =
                    MHD_create_response_from_buffer(strlen(c.body), c.body, MHD_RESPMEM_MUST_COPY);
                free(c.body);
        }
        MHD_add_response_header(resp, "Content-Type", "application/json");
        if (c.header)
                MHD_add_response_header(resp, c.header, c.header_value);
        enum MHD_Result ret = MHD_queue_response(con, (unsigned)c.status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static char *file_text(const char *name)
{
        char path[400], *text = NULL;
        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        assert_int_equal(read_full_file(path, 1 << 20, &text, NULL), 0);
        return text;
}

/* Start a server on 127.0.0.1; with `tls`, it presents tmpdir/srv.crt (signed by ca.crt) and
 * asks for a client certificate signed by the same CA. */
static void server_start(struct server *s, bool tls)
{
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
        unsigned flags =
            MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;

        memset(s, 0, sizeof(*s));
        pthread_mutex_init(&s->lock, NULL);
        atomic_init(&s->stopping, false);
        atomic_init(&s->connections, 0);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (tls) {
                _cleanup_free_ char *key = file_text("srv.key"), *crt = file_text("srv.crt"),
                                    *ca = file_text("ca.crt");
                s->d = MHD_start_daemon(flags | MHD_USE_TLS, 0, NULL, NULL, handler, s,
                                        MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_URI_LOG_CALLBACK,
                                        uri_log, s, MHD_OPTION_NOTIFY_COMPLETED, completed, s,
                                        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                                        MHD_OPTION_HTTPS_MEM_KEY, key, MHD_OPTION_HTTPS_MEM_CERT,
                                        crt, MHD_OPTION_HTTPS_MEM_TRUST, ca, MHD_OPTION_END);
        } else {
                s->d = MHD_start_daemon(
                    flags, 0, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, &sa,
                    MHD_OPTION_URI_LOG_CALLBACK, uri_log, s, MHD_OPTION_NOTIFY_COMPLETED, completed,
                    s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_END);
        }
        assert_non_null(s->d);
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
        assert_non_null(info);
        s->port = info->port;
}

static void server_stop(struct server *s)
{
        atomic_store(&s->stopping, true);
        MHD_stop_daemon(s->d);
        for (int i = 0; i < s->nq; i++)
                free(s->q[i].body);
        for (int i = 0; i < s->nreq; i++)
                free(s->reqs[i].body);
        pthread_mutex_destroy(&s->lock);
}

static struct canned *queue(struct server *s, int status, char *body)
{
        pthread_mutex_lock(&s->lock);
        assert_true(s->nq < (int)ELEMENTSOF(s->q));
        struct canned *c = &s->q[s->nq++];
        *c = (struct canned){.status = status, .body = body};
        pthread_mutex_unlock(&s->lock);
        return c;
}

/* Queue step `step` of a transcript as the next response. */
static struct canned *queue_tr(struct server *s, const char *file, int step)
{
        int status;
        char *body = tr_response(file, step, &status);
        return queue(s, status, body);
}

/* Request `i`, once recorded (taking the lock orders its writes before our reads). */
static struct recorded *req_at(struct server *s, int i)
{
        pthread_mutex_lock(&s->lock);
        assert_true(i < s->nreq);
        struct recorded *r = &s->reqs[i];
        pthread_mutex_unlock(&s->lock);
        return r;
}

static int nreq(struct server *s)
{
        pthread_mutex_lock(&s->lock);
        int n = s->nreq;
        pthread_mutex_unlock(&s->lock);
        return n;
}

/* ---- Fixtures --------------------------------------------------------------------------- */

struct fixture {
        struct server srv;
        struct k8s_config cfg;
        struct k8s_client_options opts;
        struct k8s_client *c;
        char server_url[64];
};

static struct fixture *fixture_new(bool tls)
{
        struct fixture *f = calloc(1, sizeof(*f));
        server_start(&f->srv, tls);
        snprintf(f->server_url, sizeof(f->server_url), "%s://127.0.0.1:%u", tls ? "https" : "http",
                 f->srv.port);
        f->cfg.server = f->server_url;
        f->cfg.token_file = token_path;
        f->opts = (struct k8s_client_options){
            .namespace = NS, .request_timeout_ms = SLOW_OK_MS, .watch_timeout_s = 5};
        write_file(token_path, "tok1\n");
        return f;
}

static void fixture_client(struct fixture *f)
{
        assert_int_equal(k8s_client_new(&f->cfg, &f->opts, &f->c), 0);
}

static void fixture_free(struct fixture *f)
{
        k8s_client_free(f->c);
        server_stop(&f->srv);
        free(f);
}

static int setup_tmpdir(void **state)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-k8s-client-XXXXXX");
        if (!mkdtemp(tmpdir))
                return -1;
        snprintf(token_path, sizeof(token_path), "%s/token", tmpdir);
        /* A CA, a server certificate for 127.0.0.1, a client certificate, and an unrelated CA. */
        char cmd[4096];
        snprintf(cmd, sizeof(cmd),
                 "set -e; cd '%s'; exec >openssl.log 2>&1;"
                 "ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';"
                 "openssl req -x509 $ec -keyout ca.key -out ca.crt -subj /CN=test-ca -days 2;"
                 "openssl req -x509 $ec -keyout other.key -out other.crt -subj /CN=other -days 2;"
                 "openssl req $ec -keyout srv.key -out srv.csr -subj /CN=127.0.0.1;"
                 "printf 'subjectAltName=IP:127.0.0.1\\n' >srv.ext;"
                 "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
                 "  -out srv.crt -days 2 -extfile srv.ext;"
                 "openssl req $ec -keyout client.key -out client.csr -subj /CN=persistd;"
                 "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
                 "  -out client.crt -days 2",
                 tmpdir);
        if (system(cmd) != 0) {
                fprintf(stderr, "openssl failed, see %s/openssl.log\n", tmpdir);
                return -1;
        }
        return 0;
}

static int teardown_tmpdir(void **state)
{
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

static cJSON *req_json(struct server *s, int i)
{
        cJSON *j = cJSON_Parse(req_at(s, i)->body);
        assert_non_null(j);
        return j;
}

/* ---- Leases ----------------------------------------------------------------------------- */

static void test_lease_get(void **state)
{
        NEED_TRANSCRIPTS();
        struct fixture *f = fixture_new(false);
        struct k8s_lease l;

        fixture_client(f);
        queue_tr(&f->srv, "b-lease-get.json", 0);
        queue_tr(&f->srv, "b-lease-get.json", 0);
        assert_int_equal(k8s_lease_get(f->c, LEASE, &l), 0);
        assert_string_equal(l.holder_identity, "orchestrator-0");
        assert_string_equal(l.resource_version, "198");
        assert_int_equal(l.lease_duration_s, 15);
        k8s_lease_release(&l);

        struct recorded *r = req_at(&f->srv, 0);
        assert_string_equal(r->method, "GET");
        assert_string_equal(r->uri, "/apis/coordination.k8s.io/v1/namespaces/" NS "/leases/" LEASE);
        assert_string_equal(r->auth, "Bearer tok1");
        assert_string_equal(r->accept, "application/json");
        assert_string_equal(r->content_type, "");
        /* Not "curl/...": the server would pretty-print. */
        assert_int_equal(strncmp(r->user_agent, "persistd/", 9), 0);

        /* The second request goes over the same client (and connection). */
        assert_int_equal(k8s_lease_get(f->c, LEASE, NULL), 0);
        assert_int_equal(nreq(&f->srv), 2);
        assert_int_equal(atomic_load(&f->srv.connections), 1);
        /* A name the server would refuse is refused here, without a request. */
        assert_int_equal(k8s_lease_get(f->c, "Bad_Name", &l), -EINVAL);
        assert_int_equal(nreq(&f->srv), 2);
        fixture_free(f);
}

static void test_lease_create(void **state)
{
        NEED_TRANSCRIPTS();
        struct fixture *f = fixture_new(false);
        struct k8s_lease l = {0}, got;
        int64_t t;

        fixture_client(f);
        assert_int_equal(k8s_microtime_parse("2026-11-21T13:41:23.728240Z", &t), 0);
        l.name = (char *)LEASE;
        l.resource_version = (char *)"999"; /* must not be sent: the server answers 500 */
        l.has_holder_identity = true;
        l.holder_identity = (char *)"orchestrator-0";
        l.has_lease_duration = true;
        l.lease_duration_s = 15;
        l.has_acquire_time = l.has_renew_time = true;
        l.acquire_time_us = t;
        l.renew_time_us = t - 728240; /* whole second: still six digits */
        l.has_lease_transitions = true;
        l.lease_transitions = 0;

        queue_tr(&f->srv, "a-lease-create.json", 0);
        assert_int_equal(k8s_lease_create(f->c, &l, &got), 0);
        assert_non_null(got.resource_version);
        assert_string_equal(got.holder_identity, "orchestrator-0");
        k8s_lease_release(&got);

        struct recorded *r = req_at(&f->srv, 0);
        assert_string_equal(r->method, "POST");
        assert_string_equal(r->uri, "/apis/coordination.k8s.io/v1/namespaces/" NS "/leases");
        assert_string_equal(r->content_type, "application/json");
        cJSON *j = req_json(&f->srv, 0);
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(j, "metadata");
        const cJSON *spec = cJSON_GetObjectItemCaseSensitive(j, "spec");
        assert_string_equal(k8s_json_str(j, "kind"), "Lease");
        assert_string_equal(k8s_json_str(j, "apiVersion"), "coordination.k8s.io/v1");
        assert_string_equal(k8s_json_str(meta, "name"), LEASE);
        assert_string_equal(k8s_json_str(meta, "namespace"), NS);
        assert_null(cJSON_GetObjectItemCaseSensitive(meta, "resourceVersion"));
        assert_string_equal(k8s_json_str(spec, "holderIdentity"), "orchestrator-0");
        assert_string_equal(k8s_json_str(spec, "acquireTime"), "2026-11-21T13:41:23.728240Z");
        assert_string_equal(k8s_json_str(spec, "renewTime"), "2026-11-21T13:41:23.000000Z");
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(spec, "leaseDurationSeconds")->valueint,
                         15);
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(spec, "leaseTransitions")->valueint, 0);
        cJSON_Delete(j);

        /* Creating it again: 409 AlreadyExists. */
        queue_tr(&f->srv, "e-lease-create-exists.json", 0);
        assert_int_equal(k8s_lease_create(f->c, &l, NULL), -EEXIST);
        const struct k8s_error *e = k8s_client_last_error(f->c);
        assert_int_equal(e->http_status, 409);
        assert_string_equal(e->reason, "AlreadyExists");
        assert_non_null(strstr(k8s_client_errstr(f->c), "409 AlreadyExists"));
        fixture_free(f);
}

static void test_lease_update(void **state)
{
        NEED_TRANSCRIPTS();
        struct fixture *f = fixture_new(false);
        struct k8s_lease l = {0}, got;

        fixture_client(f);
        char *body = tr_response("b-lease-get.json", 0, NULL);
        assert_int_equal(k8s_lease_from_json(body, strlen(body), &l), 0);
        free(body);
        l.renew_time_us += 1500000;

        queue_tr(&f->srv, "c-lease-update-ok.json", 0);
        assert_int_equal(k8s_lease_update(f->c, &l, &got), 0);
        assert_string_equal(got.resource_version, "199");
        k8s_lease_release(&got);
        struct recorded *r = req_at(&f->srv, 0);
        assert_string_equal(r->method, "PUT");
        assert_string_equal(r->uri, "/apis/coordination.k8s.io/v1/namespaces/" NS "/leases/" LEASE);
        assert_string_equal(r->content_type, "application/json");
        cJSON *j = req_json(&f->srv, 0);
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(j, "metadata");
        assert_string_equal(k8s_json_str(meta, "resourceVersion"), "198");
        assert_string_equal(k8s_json_str(cJSON_GetObjectItemCaseSensitive(j, "spec"), "renewTime"),
                            "2026-11-21T13:41:25.228240Z");
        cJSON_Delete(j);

        /* Someone else wrote first: the compare-and-set loses. */
        queue_tr(&f->srv, "d-lease-update-conflict.json", 0);
        assert_int_equal(k8s_lease_update(f->c, &l, NULL), -ESTALE);
        assert_string_equal(k8s_client_last_error(f->c)->reason, "Conflict");

        /* Never a PUT without resourceVersion (422): refused before sending. */
        free(l.resource_version);
        l.resource_version = NULL;
        assert_int_equal(k8s_lease_update(f->c, &l, NULL), -EINVAL);
        assert_int_equal(nreq(&f->srv), 2);
        k8s_lease_release(&l);
        fixture_free(f);
}

/* Status bodies become errno, with the details on the client. */
static void test_errors(void **state)
{
        NEED_TRANSCRIPTS();
        struct fixture *f = fixture_new(false);
        const struct k8s_error *e;

        fixture_client(f);
        queue_tr(&f->srv, "f-lease-get-missing.json", 0);
        assert_int_equal(k8s_lease_get(f->c, "does-not-exist", NULL), -ENOENT);
        e = k8s_client_last_error(f->c);
        assert_int_equal(e->http_status, 404);
        assert_string_equal(e->reason, "NotFound");
        assert_non_null(strstr(e->message, "not found"));

        queue_tr(&f->srv, "j-rbac-orchestrator.json", 0);
        assert_int_equal(k8s_lease_get(f->c, LEASE, NULL), -EACCES);
        assert_non_null(strstr(k8s_client_errstr(f->c), "403 Forbidden"));

        queue_tr(&f->srv, "d-lease-update-conflict.json", 1);
        struct k8s_lease l = {.name = (char *)LEASE, .resource_version = (char *)"1"};
        assert_int_equal(k8s_lease_update(f->c, &l, NULL), -EINVAL);
        e = k8s_client_last_error(f->c);
        assert_int_equal(e->http_status, 422);
        assert_string_equal(e->cause, "Invalid value: 0x0: must be specified for an update");

        queue_tr(&f->srv, "d-lease-update-conflict.json", 2); /* 500 with no reason */
        assert_int_equal(k8s_lease_update(f->c, &l, NULL), -EAGAIN);
        e = k8s_client_last_error(f->c);
        assert_int_equal(e->http_status, 500);
        assert_string_equal(e->reason, "");
        assert_int_equal(e->retry_after_s, -1);

        struct canned *c =
            queue(&f->srv, 429,
                  strdup("{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
                         "\"status\":\"Failure\",\"message\":\"slow down\","
                         "\"reason\":\"TooManyRequests\",\"code\":429}\n"));
        c->header = "Retry-After";
        c->header_value = "7";
        assert_int_equal(k8s_lease_get(f->c, LEASE, NULL), -EAGAIN);
        e = k8s_client_last_error(f->c);
        assert_int_equal(e->retry_after_s, 7);
        assert_string_equal(e->reason, "TooManyRequests");

        c = queue_tr(&f->srv, "d-lease-update-conflict.json", 2);
        c->status = 503;
        c->header = "Retry-After";
        c->header_value = "Wed, 21 Oct 2015 07:28:00 GMT"; /* an HTTP date, long past */
        assert_int_equal(k8s_lease_get(f->c, LEASE, NULL), -EAGAIN);
        assert_int_equal(k8s_client_last_error(f->c)->retry_after_s, 0);

        queue_tr(&f->srv, "a3-lease-edge-cases.json", 8); /* 415 */
        assert_int_equal(k8s_lease_create(f->c, &l, NULL), -EPROTO);

        c = queue_tr(&f->srv, "a3-lease-edge-cases.json", 5); /* 201 with a Warning */
        c->header = "Warning";
        c->header_value = "299 - \"unknown field \\\"spec.bogusField\\\"\"";
        assert_int_equal(k8s_lease_create(f->c, &l, NULL), 0);
        assert_non_null(strstr(k8s_client_last_warning(f->c), "unknown field"));

        /* A body over the cap is refused, not buffered. */
        char *big = malloc(K8S_MAX_BODY + 2);
        memset(big, ' ', K8S_MAX_BODY + 1);
        big[K8S_MAX_BODY + 1] = '\0';
        queue(&f->srv, 200, big);
        assert_int_equal(k8s_lease_get(f->c, LEASE, NULL), -EFBIG);

        /* A non-JSON success body. */
        queue(&f->srv, 200, strdup("<html>proxy</html>"));
        assert_int_equal(k8s_lease_get(f->c, LEASE, NULL), -EBADMSG);
        fixture_free(f);
}

/* ---- Tokens ----------------------------------------------------------------------------- */

static void test_token_401_reread_retry(void **state)
{
        NEED_TRANSCRIPTS();
        struct fixture *f = fixture_new(false);

        fixture_client(f);
        /* The token rotates while the first request is answered 401. */
        queue_tr(&f->srv, "j-rbac-orchestrator.json", 2)->rewrite_token = "tok2\n";
        queue_tr(&f->srv, "b-lease-get.json", 0);
        assert_int_equal(k8s_lease_get(f->c, LEASE, NULL), 0);
        assert_int_equal(nreq(&f->srv), 2);
        assert_int_equal(atomic_load(&f->srv.connections), 1);
        assert_string_equal(req_at(&f->srv, 0)->auth, "Bearer tok1");
        assert_string_equal(req_at(&f->srv, 1)->auth, "Bearer tok2");

        /* Still 401 after the re-read: exactly one retry, then -EKEYREJECTED. */
        queue_tr(&f->srv, "j-rbac-orchestrator.json", 2);
        queue_tr(&f->srv, "j-rbac-orchestrator.json", 2);
        assert_int_equal(k8s_lease_get(f->c, LEASE, NULL), -EKEYREJECTED);
        assert_int_equal(nreq(&f->srv), 4);
        assert_int_equal(k8s_client_last_error(f->c)->http_status, 401);
        assert_null(strstr(k8s_client_errstr(f->c), "tok"));
        fixture_free(f);

        /* A static token from a kubeconfig has nothing to re-read: no retry. */
        f = fixture_new(false);
        f->cfg.token_file = NULL;
        f->cfg.token = (char *)"static-token";
        fixture_client(f);
        queue_tr(&f->srv, "j-rbac-orchestrator.json", 2);
        assert_int_equal(k8s_lease_get(f->c, LEASE, NULL), -EKEYREJECTED);
        assert_int_equal(nreq(&f->srv), 1);
        assert_string_equal(req_at(&f->srv, 0)->auth, "Bearer static-token");
        assert_null(strstr(k8s_client_errstr(f->c), "static-token"));
        fixture_free(f);
}

static void test_token_periodic_reread(void **state)
{
        NEED_TRANSCRIPTS();
        struct fixture *f = fixture_new(false);

        f->opts.token_reread_s = 1;
        fixture_client(f);
        queue_tr(&f->srv, "b-lease-get.json", 0);
        queue_tr(&f->srv, "b-lease-get.json", 0);
        queue_tr(&f->srv, "b-lease-get.json", 0);
        assert_int_equal(k8s_lease_get(f->c, LEASE, NULL), 0);
        write_file(token_path, "tok-rotated\n");
        /* Within the period the token in memory is used... */
        assert_int_equal(k8s_lease_get(f->c, LEASE, NULL), 0);
        clock_sleep_us(1200 * USEC_PER_MSEC);
        /* ...after it, the file is read again. */
        assert_int_equal(k8s_lease_get(f->c, LEASE, NULL), 0);
        assert_string_equal(req_at(&f->srv, 0)->auth, "Bearer tok1");
        assert_string_equal(req_at(&f->srv, 2)->auth, "Bearer tok-rotated");

        /* A token file that vanished keeps the last token. */
        unlink(token_path);
        clock_sleep_us(1200 * USEC_PER_MSEC);
        queue_tr(&f->srv, "b-lease-get.json", 0);
        assert_int_equal(k8s_lease_get(f->c, LEASE, NULL), 0);
        assert_string_equal(req_at(&f->srv, 3)->auth, "Bearer tok-rotated");
        fixture_free(f);
}

/* ---- Connection failures ---------------------------------------------------------------- */

static void test_timeout_and_refused(void **state)
{
        struct k8s_config cfg = {0};
        struct k8s_client_options opts = {.namespace = NS, .request_timeout_ms = 300};
        struct k8s_client *c;
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t sl = sizeof(sa);
        char url[64];

        /* A server that accepts the connection (backlog) and never answers. */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 8), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
        snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(sa.sin_port));
        cfg.server = url;
        assert_int_equal(k8s_client_new(&cfg, &opts, &c), 0);
        int64_t start = clock_mono_us();
        assert_int_equal(k8s_lease_get(c, LEASE, NULL), -ETIMEDOUT);
        /* Bounded by the request timeout (300 ms), with a very generous margin. */
        assert_true(clock_mono_us() - start < 10 * USEC_PER_SEC);
        assert_int_equal(k8s_client_last_error(c)->http_status, 0);
        assert_true(k8s_client_errstr(c)[0] != '\0');
        k8s_client_free(c);
        close(fd);

        /* Nobody listening: refused. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sa.sin_port = 0;
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
        snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(sa.sin_port));
        close(fd);
        assert_int_equal(k8s_client_new(&cfg, &opts, &c), 0);
        assert_int_equal(k8s_lease_get(c, LEASE, NULL), -ECONNREFUSED);
        k8s_client_free(c);

        cfg.server = (char *)"ftp://127.0.0.1:21";
        assert_int_equal(k8s_client_new(&cfg, &opts, &c), -EINVAL);
}

struct interrupt_thread {
        struct k8s_client *c;
        int result;
};

static void *get_main(void *arg)
{
        struct interrupt_thread *t = arg;
        t->result = k8s_lease_get(t->c, LEASE, NULL);
        return NULL;
}

/* A request stuck on a silent server ends at once when interrupted from another thread. */
static void test_interrupt(void **state)
{
        struct k8s_config cfg = {0};
        struct k8s_client_options opts = {.namespace = NS, .request_timeout_ms = 30000};
        struct interrupt_thread t;
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t sl = sizeof(sa);
        pthread_t th;
        char url[64];

        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 8), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
        snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(sa.sin_port));
        cfg.server = url;
        assert_int_equal(k8s_client_new(&cfg, &opts, &t.c), 0);
        assert_int_equal(pthread_create(&th, NULL, get_main, &t), 0);
        clock_sleep_us(200 * USEC_PER_MSEC);
        int64_t start = clock_mono_us();
        k8s_client_interrupt(t.c);
        pthread_join(th, NULL);
        assert_int_equal(t.result, -ECANCELED);
        /* Long before the 30 s request timeout. */
        assert_true(clock_mono_us() - start < 10 * USEC_PER_SEC);
        /* And every later request too. */
        assert_int_equal(k8s_lease_get(t.c, LEASE, NULL), -ECANCELED);
        k8s_client_free(t.c);
        close(fd);
}

/* ---- Pods, Secrets, Events -------------------------------------------------------------- */

static void test_pods(void **state)
{
        NEED_TRANSCRIPTS();
        struct fixture *f = fixture_new(false);
        struct k8s_pod p, *pods;
        size_t n;

        fixture_client(f);
        queue_tr(&f->srv, "00-setup-namespace-pod.json", 2);
        assert_int_equal(k8s_pod_get(f->c, "orchestrator-0", &p), 0);
        assert_string_equal(p.phase, "Pending");
        assert_string_equal(k8s_pod_label(&p, "app"), "redis-orchestrator");
        k8s_pod_release(&p);
        assert_string_equal(req_at(&f->srv, 0)->uri,
                            "/api/v1/namespaces/" NS "/pods/orchestrator-0");

        queue_tr(&f->srv, "h-pod-list-label-selector.json", 2);
        assert_int_equal(k8s_pod_list(f->c, "a=b", &pods, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(pods[0].name, "orchestrator-0");
        assert_string_equal(k8s_pod_label(&pods[0], "a"), "b");
        k8s_pod_array_free(pods, n);
        assert_string_equal(req_at(&f->srv, 1)->uri,
                            "/api/v1/namespaces/" NS "/pods?labelSelector=a%3Db");

        queue_tr(&f->srv, "h-pod-list-label-selector.json", 0); /* empty list */
        assert_int_equal(k8s_pod_list(f->c, "persistd.io/leader=true", &pods, &n), 0);
        assert_int_equal(n, 0);
        assert_null(pods);
        assert_string_equal(req_at(&f->srv, 2)->uri,
                            "/api/v1/namespaces/" NS
                            "/pods?labelSelector=persistd.io%2Fleader%3Dtrue");

        queue_tr(&f->srv, "g-pod-label-patch.json", 0);
        assert_int_equal(k8s_pod_set_label(f->c, "orchestrator-0", "persistd.io/leader", "true"),
                         0);
        struct recorded *r = req_at(&f->srv, 3);
        assert_string_equal(r->method, "PATCH");
        assert_string_equal(r->uri, "/api/v1/namespaces/" NS "/pods/orchestrator-0");
        assert_string_equal(r->content_type, "application/merge-patch+json");
        assert_string_equal(r->body,
                            "{\"metadata\":{\"labels\":{\"persistd.io/leader\":\"true\"}}}");

        queue_tr(&f->srv, "g-pod-label-patch.json", 1);
        assert_int_equal(k8s_pod_set_label(f->c, "orchestrator-0", "persistd.io/leader", NULL), 0);
        assert_string_equal(req_at(&f->srv, 4)->body,
                            "{\"metadata\":{\"labels\":{\"persistd.io/leader\":null}}}");

        assert_int_equal(k8s_pod_set_label(f->c, "orchestrator-0", "bad key", "x"), -EINVAL);
        assert_int_equal(k8s_pod_set_label(f->c, "orchestrator-0", "k", "bad value!"), -EINVAL);
        assert_int_equal(nreq(&f->srv), 5);

        queue_tr(&f->srv, "g-pod-label-patch.json", 14);
        assert_int_equal(k8s_pod_set_label(f->c, "no-such-pod", "a", "b"), -ENOENT);
        fixture_free(f);
}

static void test_secret(void **state)
{
        struct fixture *f = fixture_new(false);
        char *value;
        size_t len;

        fixture_client(f);
        const char *secret = "{\"kind\":\"Secret\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":"
                             "\"pg\",\"namespace\":\"redis-system\"},\"data\":{\"password\":"
                             "\"aHVudGVyMg==\"},\"type\":\"Opaque\"}\n";
        queue(&f->srv, 200, strdup(secret));
        assert_int_equal(k8s_secret_get_key(f->c, "pg", "password", 64, &value, &len), 0);
        assert_int_equal(len, 7);
        assert_string_equal(value, "hunter2");
        secret_free(value);
        assert_string_equal(req_at(&f->srv, 0)->uri, "/api/v1/namespaces/" NS "/secrets/pg");

        queue(&f->srv, 200, strdup(secret));
        assert_int_equal(k8s_secret_get_key(f->c, "pg", "user", 64, &value, &len), -ENODATA);
        queue(&f->srv, 200, strdup(secret));
        assert_int_equal(k8s_secret_get_key(f->c, "pg", "password", 4, &value, &len), -EFBIG);
        queue(&f->srv, 404,
              strdup("{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":"
                     "\"Failure\",\"message\":\"secrets \\\"x\\\" not found\",\"reason\":"
                     "\"NotFound\",\"code\":404}\n"));
        assert_int_equal(k8s_secret_get_key(f->c, "x", "password", 64, &value, &len), -ENOENT);
        fixture_free(f);
}

static void test_event(void **state)
{
        NEED_TRANSCRIPTS();
        struct fixture *f = fixture_new(false);
        int64_t t;

        fixture_client(f);
        assert_int_equal(clock_parse_rfc3339("2026-11-21T13:41:24.5Z", false, &t), 0);
        queue_tr(&f->srv, "i-events.json", 1);
        struct k8s_event e = {.involved_kind = "Lease",
                              .involved_name = LEASE,
                              .reason = "LeaderElected",
                              .message = "orchestrator-0_x1 became leader",
                              .type = K8S_EVENT_NORMAL,
                              .component = "persistd",
                              .host = "orchestrator-0",
                              .time_us = t};
        assert_int_equal(k8s_event_create(f->c, &e), 0);
        struct recorded *r = req_at(&f->srv, 0);
        assert_string_equal(r->method, "POST");
        assert_string_equal(r->uri, "/api/v1/namespaces/" NS "/events");
        assert_string_equal(r->content_type, "application/json");
        cJSON *j = req_json(&f->srv, 0);
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(j, "metadata");
        const cJSON *inv = cJSON_GetObjectItemCaseSensitive(j, "involvedObject");
        assert_string_equal(k8s_json_str(j, "kind"), "Event");
        assert_string_equal(k8s_json_str(meta, "generateName"), LEASE ".");
        assert_string_equal(k8s_json_str(meta, "namespace"), NS);
        assert_string_equal(k8s_json_str(inv, "kind"), "Lease");
        assert_string_equal(k8s_json_str(inv, "apiVersion"), "coordination.k8s.io/v1");
        assert_string_equal(k8s_json_str(inv, "namespace"), NS); /* else 422 */
        assert_string_equal(k8s_json_str(j, "type"), "Normal");
        assert_string_equal(k8s_json_str(j, "reason"), "LeaderElected");
        assert_string_equal(
            k8s_json_str(cJSON_GetObjectItemCaseSensitive(j, "source"), "component"), "persistd");
        assert_string_equal(k8s_json_str(j, "firstTimestamp"), "2026-11-21T13:41:24Z");
        assert_string_equal(k8s_json_str(j, "lastTimestamp"), "2026-11-21T13:41:24Z");
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "count")->valueint, 1);
        /* eventTime would make reportingComponent/-Instance required (422). */
        assert_null(cJSON_GetObjectItemCaseSensitive(j, "eventTime"));
        cJSON_Delete(j);

        queue_tr(&f->srv, "i-events.json", 0);
        e.involved_kind = "Pod";
        e.involved_name = "orchestrator-0";
        e.type = K8S_EVENT_WARNING;
        e.time_us = 0;
        assert_int_equal(k8s_event_create(f->c, &e), 0);
        j = req_json(&f->srv, 1);
        inv = cJSON_GetObjectItemCaseSensitive(j, "involvedObject");
        assert_string_equal(k8s_json_str(inv, "apiVersion"), "v1");
        assert_string_equal(k8s_json_str(j, "type"), "Warning");
        int64_t ts;
        assert_int_equal(clock_parse_rfc3339(k8s_json_str(j, "firstTimestamp"), false, &ts), 0);
        assert_int_equal(ts % USEC_PER_SEC, 0);
        assert_int_equal(strlen(k8s_json_str(j, "firstTimestamp")), 20); /* whole seconds */
        cJSON_Delete(j);

        e.involved_kind = "Deployment";
        assert_int_equal(k8s_event_create(f->c, &e), -EINVAL);
        assert_int_equal(nreq(&f->srv), 2);
        fixture_free(f);
}

/* ---- TLS, kubeconfig blobs, in cluster -------------------------------------------------- */

static char *base64_of_file(const char *name)
{
        _cleanup_free_ char *text = file_text(name);
        static const char tbl[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t n = strlen(text);
        struct strbuf sb = STRBUF_INIT;
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t)(unsigned char)text[i] << 16;
                if (i + 1 < n)
                        v |= (uint32_t)(unsigned char)text[i + 1] << 8;
                if (i + 2 < n)
                        v |= (unsigned char)text[i + 2];
                strbuf_addch(&sb, tbl[(v >> 18) & 63]);
                strbuf_addch(&sb, tbl[(v >> 12) & 63]);
                strbuf_addch(&sb, i + 1 < n ? tbl[(v >> 6) & 63] : '=');
                strbuf_addch(&sb, i + 2 < n ? tbl[v & 63] : '=');
        }
        return strbuf_detach(&sb);
}

static void test_tls_kubeconfig_blobs(void **state)
{
        NEED_TRANSCRIPTS();
        struct fixture *f = fixture_new(true);
        _cleanup_free_ char *ca = base64_of_file("ca.crt"), *crt = base64_of_file("client.crt"),
                            *key = base64_of_file("client.key"), *kc = NULL, *path = NULL;
        struct k8s_client_options slow_ok = {.request_timeout_ms = SLOW_OK_MS};
        struct k8s_config *cfg;
        struct k8s_client *c;
        char *error = NULL;

        assert_true(asprintf(&kc,
                             "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
                             "clusters:\n- name: test\n  cluster:\n    server: %s\n"
                             "    certificate-authority-data: %s\n"
                             "users:\n- name: me\n  user:\n    token: kc-token\n"
                             "    client-certificate-data: %s\n    client-key-data: %s\n"
                             "contexts:\n- name: test\n  context: {cluster: test, user: me, "
                             "namespace: " NS "}\n",
                             f->server_url, ca, crt, key) > 0);
        assert_true(asprintf(&path, "%s/kubeconfig", tmpdir) > 0);
        write_file(path, kc);
        assert_int_equal(k8s_config_from_kubeconfig(path, &cfg, &error), 0);
        assert_int_equal(k8s_client_new(cfg, &slow_ok, &c), 0);
        queue_tr(&f->srv, "b-lease-get.json", 0);
        assert_int_equal(k8s_lease_get(c, LEASE, NULL), 0);
        assert_string_equal(req_at(&f->srv, 0)->auth, "Bearer kc-token");
        assert_string_equal(req_at(&f->srv, 0)->uri,
                            "/apis/coordination.k8s.io/v1/namespaces/" NS "/leases/" LEASE);
        /* The client certificate went from memory to the TLS handshake. */
        assert_true(req_at(&f->srv, 0)->client_cert);
        k8s_client_free(c);
        k8s_config_free(cfg);

        /* A CA that did not sign the server's certificate: refused. */
        struct k8s_config other = {.server = f->server_url};
        _cleanup_free_ char *other_ca = NULL;
        assert_true(asprintf(&other_ca, "%s/other.crt", tmpdir) > 0);
        other.ca_file = other_ca;
        assert_int_equal(k8s_client_new(&other, &slow_ok, &c), 0);
        assert_int_equal(k8s_lease_get(c, LEASE, NULL), -ECONNREFUSED);
        k8s_client_free(c);

        /* insecure-skip-tls-verify connects anyway. */
        other.insecure_skip_verify = true;
        assert_int_equal(k8s_client_new(&other, &slow_ok, &c), 0);
        queue_tr(&f->srv, "b-lease-get.json", 0);
        assert_int_equal(k8s_lease_get(c, LEASE, NULL), 0);
        assert_false(req_at(&f->srv, 1)->client_cert);
        k8s_client_free(c);
        fixture_free(f);
}

static void test_in_cluster_tls(void **state)
{
        NEED_TRANSCRIPTS();
        struct fixture *f = fixture_new(true);
        char sa[300], port[16], path[400];
        struct k8s_config *cfg;
        struct k8s_client *c;
        char *error = NULL;

        snprintf(sa, sizeof(sa), "%s/sa", tmpdir);
        mkdir(sa, 0700);
        snprintf(path, sizeof(path), "%s/token", sa);
        write_file(path, "sa-token\n");
        snprintf(path, sizeof(path), "%s/namespace", sa);
        write_file(path, "other-ns");
        _cleanup_free_ char *ca = file_text("ca.crt");
        snprintf(path, sizeof(path), "%s/ca.crt", sa);
        write_file(path, ca);
        snprintf(port, sizeof(port), "%u", f->srv.port);
        setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
        setenv("KUBERNETES_SERVICE_PORT", port, 1);
        assert_int_equal(k8s_config_in_cluster(sa, &cfg, &error), 0);
        unsetenv("KUBERNETES_SERVICE_HOST");
        unsetenv("KUBERNETES_SERVICE_PORT");

        struct k8s_client_options opts = {.request_timeout_ms = SLOW_OK_MS};
        assert_int_equal(k8s_client_new(cfg, &opts, &c), 0);
        assert_string_equal(k8s_client_namespace(c), "other-ns");
        queue_tr(&f->srv, "b-lease-get.json", 0);
        assert_int_equal(k8s_lease_get(c, LEASE, NULL), 0);
        assert_string_equal(req_at(&f->srv, 0)->auth, "Bearer sa-token");
        assert_string_equal(req_at(&f->srv, 0)->uri,
                            "/apis/coordination.k8s.io/v1/namespaces/other-ns/leases/" LEASE);
        k8s_client_free(c);

        /* The namespace option overrides the service account's. */
        opts.namespace = NS;
        assert_int_equal(k8s_client_new(cfg, &opts, &c), 0);
        assert_string_equal(k8s_client_namespace(c), NS);
        k8s_client_free(c);
        k8s_config_free(cfg);
        fixture_free(f);
}

/* ---- Watch ------------------------------------------------------------------------------ */

struct seen {
        int n, stop_after;
        enum k8s_watch_event ev[16];
        char rv[16][16];
        bool present[16];
        atomic_int count;
};

static int on_event(enum k8s_watch_event ev, const struct k8s_lease *l, void *userdata)
{
        struct seen *s = userdata;
        if (s->n < 16) {
                s->ev[s->n] = ev;
                s->present[s->n] = l != NULL;
                k8s_strlcpy(s->rv[s->n], l ? l->resource_version : "", sizeof(s->rv[0]));
                s->n++;
        }
        atomic_fetch_add(&s->count, 1);
        return s->stop_after > 0 && s->n >= s->stop_after ? -EINTR : 0;
}

static char *watch_line(const char *type, const char *file, int step)
{
        _cleanup_free_ char *obj = tr_response(file, step, NULL);
        char *line = NULL;
        obj[strcspn(obj, "\n")] = '\0';
        assert_true(asprintf(&line, "{\"type\":\"%s\",\"object\":%s}\n", type, obj) > 0);
        return line;
}

static struct k8s_watch *watch_new(struct fixture *f)
{
        struct k8s_watch *w;
        assert_int_equal(k8s_watch_new(&f->cfg, &f->opts, LEASE, &w), 0);
        return w;
}

/* LIST, then a watch from the list's resourceVersion whose lines arrive in 7-byte chunks. */
static void test_watch_chunks(void **state)
{
        NEED_TRANSCRIPTS();
        struct fixture *f = fixture_new(false);
        struct seen s = {.stop_after = 3};
        struct k8s_watch *w = watch_new(f);

        queue_tr(&f->srv, "k2-lease-watch-expired.json", 1); /* LeaseList, RV 248 */
        _cleanup_free_ char *a = watch_line("ADDED", "b-lease-get.json", 0);
        _cleanup_free_ char *b = watch_line("MODIFIED", "c-lease-update-ok.json", 0);
        char *body = NULL;
        assert_true(asprintf(&body, "%s%s", a, b) > 0);
        queue(&f->srv, 200, body)->piece = 7;

        assert_int_equal(k8s_watch_run(w, on_event, &s), -EINTR);
        assert_int_equal(s.n, 3);
        assert_int_equal(s.ev[0], K8S_WATCH_SYNC);
        assert_true(s.present[0]);
        assert_string_equal(s.rv[0], "243");
        assert_int_equal(s.ev[1], K8S_WATCH_ADDED);
        assert_string_equal(s.rv[1], "198");
        assert_int_equal(s.ev[2], K8S_WATCH_MODIFIED);
        assert_string_equal(s.rv[2], "199");

        assert_string_equal(req_at(&f->srv, 0)->uri,
                            "/apis/coordination.k8s.io/v1/namespaces/" NS
                            "/leases?fieldSelector=metadata.name%3D" LEASE);
        const char *u = req_at(&f->srv, 1)->uri;
        assert_int_equal(strncmp(u, "/apis/coordination.k8s.io/v1/namespaces/" NS "/leases?", 52),
                         0);
        assert_non_null(strstr(u, "watch=1"));
        assert_non_null(strstr(u, "fieldSelector=metadata.name%3D" LEASE));
        /* The LIST's resourceVersion (248), not the object's own (243): see k2. */
        assert_non_null(strstr(u, "resourceVersion=248"));
        assert_non_null(strstr(u, "timeoutSeconds=5"));
        assert_string_equal(req_at(&f->srv, 1)->auth, "Bearer tok1");
        k8s_watch_free(w);
        fixture_free(f);
}

/* An ERROR 410 Expired re-lists and watches again from the new list's resourceVersion; a
 * stream the server ends is watched again from the last resourceVersion seen. */
static void test_watch_expired_and_end(void **state)
{
        NEED_TRANSCRIPTS();
        struct fixture *f = fixture_new(false);
        struct seen s = {.stop_after = 4};
        struct k8s_watch *w = watch_new(f);

        /* An empty LeaseList: the Lease does not exist yet. */
        queue(&f->srv, 200,
              strdup("{\"kind\":\"LeaseList\",\"apiVersion\":\"coordination.k8s.io/v1\","
                     "\"metadata\":{\"resourceVersion\":\"198\"},\"items\":[]}\n"));
        queue_tr(&f->srv, "k2-lease-watch-expired.json", 2)->piece = 16; /* ERROR 410 */
        queue_tr(&f->srv, "k2-lease-watch-expired.json", 1);             /* LIST, RV 248 */
        queue_tr(&f->srv, "k-lease-watch.json", 2)->piece = 100;         /* MODIFIED 243, end */
        queue_tr(&f->srv, "k-lease-watch.json", 2)->piece = 100;         /* again */

        assert_int_equal(k8s_watch_run(w, on_event, &s), -EINTR);
        assert_int_equal(s.ev[0], K8S_WATCH_SYNC);
        assert_false(s.present[0]);
        assert_int_equal(s.ev[1], K8S_WATCH_SYNC);
        assert_true(s.present[1]);
        assert_int_equal(s.ev[2], K8S_WATCH_MODIFIED);
        assert_int_equal(s.ev[3], K8S_WATCH_MODIFIED);
        assert_int_equal(nreq(&f->srv), 5);
        assert_non_null(strstr(req_at(&f->srv, 1)->uri, "resourceVersion=198"));
        assert_null(strstr(req_at(&f->srv, 2)->uri, "watch=1")); /* the re-list */
        assert_non_null(strstr(req_at(&f->srv, 3)->uri, "resourceVersion=248"));
        assert_non_null(strstr(req_at(&f->srv, 4)->uri, "resourceVersion=243"));
        k8s_watch_free(w);
        fixture_free(f);
}

struct watch_thread {
        struct k8s_watch *w;
        struct seen s;
        int result;
};

static void *watch_main(void *arg)
{
        struct watch_thread *t = arg;
        t->result = k8s_watch_run(t->w, on_event, &t->s);
        return NULL;
}

/* A watch held open by the server ends promptly when cancelled from another thread. */
static void test_watch_cancel(void **state)
{
        NEED_TRANSCRIPTS();
        struct fixture *f = fixture_new(false);
        struct watch_thread t = {.w = watch_new(f)};
        pthread_t th;

        queue_tr(&f->srv, "k2-lease-watch-expired.json", 1);
        struct canned *c = queue_tr(&f->srv, "k-lease-watch.json", 2);
        c->piece = 64;
        c->hold = true; /* 20 s unless the server stops */
        atomic_init(&t.s.count, 0);
        assert_int_equal(pthread_create(&th, NULL, watch_main, &t), 0);
        for (int i = 0; i < 3000 && atomic_load(&t.s.count) < 2; i++)
                clock_sleep_us(10 * USEC_PER_MSEC);
        assert_int_equal(atomic_load(&t.s.count), 2); /* SYNC and MODIFIED: the stream is open */
        int64_t start = clock_mono_us();
        k8s_watch_cancel(t.w);
        pthread_join(th, NULL);
        assert_int_equal(t.result, -ECANCELED);
        /* Far sooner than the 20 s the server holds the stream; generous for valgrind. */
        assert_true(clock_mono_us() - start < 10 * USEC_PER_SEC);
        /* Cancelled for good: a new run returns at once. */
        assert_int_equal(k8s_watch_run(t.w, on_event, &t.s), -ECANCELED);
        k8s_watch_free(t.w);
        fixture_free(f);
}

/* An HTTP error on the watch itself ends the run with its errno. */
static void test_watch_http_error(void **state)
{
        NEED_TRANSCRIPTS();
        struct fixture *f = fixture_new(false);
        struct seen s = {0};
        struct k8s_watch *w = watch_new(f);

        queue_tr(&f->srv, "k2-lease-watch-expired.json", 1);
        queue_tr(&f->srv, "j-rbac-orchestrator.json", 0); /* 403 */
        assert_int_equal(k8s_watch_run(w, on_event, &s), -EACCES);
        assert_int_equal(s.n, 1);
        assert_int_equal(k8s_client_last_error(k8s_watch_client(w))->http_status, 403);

        /* An ERROR line other than 410 ends the run with its errno and message. */
        queue_tr(&f->srv, "k2-lease-watch-expired.json", 1);
        queue(&f->srv, 200,
              strdup("{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":"
                     "\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"etcd "
                     "gone\",\"reason\":\"InternalError\",\"code\":500}}\n"))
            ->piece = 10;
        assert_int_equal(k8s_watch_run(w, on_event, &s), -EAGAIN);
        assert_non_null(strstr(k8s_client_errstr(k8s_watch_client(w)), "etcd gone"));

        /* A line that is not JSON. */
        queue_tr(&f->srv, "k2-lease-watch-expired.json", 1);
        queue(&f->srv, 200, strdup("{\"type\":\n"))->piece = 10;
        assert_int_equal(k8s_watch_run(w, on_event, &s), -EBADMSG);
        k8s_watch_free(w);
        fixture_free(f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_lease_get),
            cmocka_unit_test(test_lease_create),
            cmocka_unit_test(test_lease_update),
            cmocka_unit_test(test_errors),
            cmocka_unit_test(test_token_401_reread_retry),
            cmocka_unit_test(test_token_periodic_reread),
            cmocka_unit_test(test_timeout_and_refused),
            cmocka_unit_test(test_interrupt),
            cmocka_unit_test(test_pods),
            cmocka_unit_test(test_secret),
            cmocka_unit_test(test_event),
            cmocka_unit_test(test_tls_kubeconfig_blobs),
            cmocka_unit_test(test_in_cluster_tls),
            cmocka_unit_test(test_watch_chunks),
            cmocka_unit_test(test_watch_expired_and_end),
            cmocka_unit_test(test_watch_cancel),
            cmocka_unit_test(test_watch_http_error),
        };
        return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}

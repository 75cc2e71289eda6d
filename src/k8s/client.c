/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The REST client: one curl easy handle driven through a private multi handle (so a request can
 * be interrupted from another thread with curl_multi_wakeup), bearer-token handling with
 * periodic re-reads and one retry after a 401, and Kubernetes Status bodies turned into errno.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>

#include "core/clock.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "k8s/k8s-internal.h"
#include "persistd-version.h"

#define LOG_MODULE "k8s"
#include "core/log.h"

#define DEFAULT_REQUEST_TIMEOUT_MS 5000
#define DEFAULT_TOKEN_REREAD_S     60
#define DEFAULT_WATCH_TIMEOUT_S    300
/* A watch is bounded by the server's timeoutSeconds; this margin catches a server that forgets. */
#define WATCH_TIMEOUT_MARGIN_S 30

struct k8s_client {
        struct k8s_config *cfg; /* own copy */
        char *namespace;
        int request_timeout_ms, connect_timeout_ms, token_reread_s, watch_timeout_s;

        CURL *easy;
        CURLM *multi;
        atomic_bool interrupted;

        char *token; /* current bearer token (secret) */
        bool token_from_file;
        int64_t token_read_mono_us; /* when token_file was last read; 0 = never */

        /* The request in flight. */
        const struct k8s_request *req;
        int http_status;
        struct strbuf body;
        bool body_too_big;
        int stream_error;

        char curl_errbuf[CURL_ERROR_SIZE];
        char warning[512];
        struct k8s_error err;
        char errstr[1024];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_global_setup(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
}

void k8s_strlcpy(char *dst, const char *src, size_t size)
{
        if (size == 0)
                return;
        if (!src)
                src = "";
        size_t n = strnlen(src, size - 1);
        memcpy(dst, src, n);
        dst[n] = '\0';
}

int k8s_status_to_errno(int http_status, const char *reason)
{
        switch (http_status) {
        case 400:
        case 422:
                return -EINVAL;
        case 401:
                return -EKEYREJECTED;
        case 403:
                return -EACCES;
        case 404:
                return -ENOENT;
        case 409:
                return reason && streq(reason, "AlreadyExists") ? -EEXIST : -ESTALE;
        case 415:
                return -EPROTO;
        case 429:
                return -EAGAIN;
        default:
                if (http_status >= 500 && http_status <= 599)
                        return -EAGAIN;
                return -EPROTO;
        }
}

/* ---- Settings --------------------------------------------------------------------------- */

static void blob_wipe(struct k8s_blob *b)
{
        if (b->data) {
                explicit_bzero(b->data, b->len);
                free(b->data);
        }
        b->data = NULL;
        b->len = 0;
}

void k8s_config_free(struct k8s_config *cfg)
{
        if (!cfg)
                return;
        free(cfg->server);
        free(cfg->namespace);
        free(cfg->ca_file);
        blob_wipe(&cfg->ca_data);
        secret_free(cfg->token);
        free(cfg->token_file);
        free(cfg->client_cert_file);
        free(cfg->client_key_file);
        blob_wipe(&cfg->client_cert_data);
        blob_wipe(&cfg->client_key_data);
        free(cfg);
}

static int dup_str(const char *s, char **ret)
{
        *ret = NULL;
        if (!s)
                return 0;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int dup_blob(const struct k8s_blob *b, struct k8s_blob *ret)
{
        *ret = (struct k8s_blob){0};
        if (!b->data)
                return 0;
        ret->data = malloc(b->len + 1);
        if (!ret->data)
                return -ENOMEM;
        memcpy(ret->data, b->data, b->len);
        ret->data[b->len] = '\0';
        ret->len = b->len;
        return 0;
}

static struct k8s_config *config_dup(const struct k8s_config *src)
{
        _cleanup_(k8s_config_freep) struct k8s_config *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        if (dup_str(src->server, &c->server) < 0 || dup_str(src->namespace, &c->namespace) < 0 ||
            dup_str(src->ca_file, &c->ca_file) < 0 || dup_blob(&src->ca_data, &c->ca_data) < 0 ||
            dup_str(src->token, &c->token) < 0 || dup_str(src->token_file, &c->token_file) < 0 ||
            dup_str(src->client_cert_file, &c->client_cert_file) < 0 ||
            dup_str(src->client_key_file, &c->client_key_file) < 0 ||
            dup_blob(&src->client_cert_data, &c->client_cert_data) < 0 ||
            dup_blob(&src->client_key_data, &c->client_key_data) < 0)
                return NULL;
        c->insecure_skip_verify = src->insecure_skip_verify;
        return TAKE_PTR(c);
}

/* ---- Errors ----------------------------------------------------------------------------- */

static void error_reset(struct k8s_client *c)
{
        c->err = (struct k8s_error){.retry_after_s = -1};
        c->errstr[0] = '\0';
}

int k8s_client_fail(struct k8s_client *c, int err, const char *fmt, ...)
{
        va_list ap;

        error_reset(c);
        va_start(ap, fmt);
        vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
        va_end(ap);
        return err;
}

const struct k8s_error *k8s_client_last_error(const struct k8s_client *c)
{
        return &c->err;
}

const char *k8s_client_errstr(const struct k8s_client *c)
{
        return c->errstr;
}

const char *k8s_client_last_warning(const struct k8s_client *c)
{
        return c->warning;
}

const char *k8s_client_namespace(const struct k8s_client *c)
{
        return c->namespace;
}

int k8s_client_watch_timeout_s(const struct k8s_client *c)
{
        return c->watch_timeout_s;
}

const char *k8s_json_str(const cJSON *obj, const char *name)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

void k8s_status_decode(const cJSON *status, struct k8s_error *err)
{
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(status, "code");
        if (cJSON_IsNumber(code))
                err->http_status = code->valueint;
        k8s_strlcpy(err->reason, k8s_json_str(status, "reason"), sizeof(err->reason));
        k8s_strlcpy(err->message, k8s_json_str(status, "message"), sizeof(err->message));
        const cJSON *details = cJSON_GetObjectItemCaseSensitive(status, "details");
        const cJSON *causes = cJSON_GetObjectItemCaseSensitive(details, "causes");
        const cJSON *first = cJSON_IsArray(causes) ? cJSON_GetArrayItem(causes, 0) : NULL;
        k8s_strlcpy(err->cause, k8s_json_str(first, "message"), sizeof(err->cause));
}

static void set_errstr(struct k8s_client *c, const char *fmt, ...) _printf_(2, 3);
static void set_errstr(struct k8s_client *c, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
        va_end(ap);
}

/* Keep printable ASCII only, so a server's message cannot break a log line. */
static void sanitize(char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
                        *s = ' ';
}

/* The path without its query, for error strings. */
static void path_noquery(const char *path, char *buf, size_t size)
{
        k8s_strlcpy(buf, path, size);
        char *q = strchr(buf, '?');
        if (q)
                *q = '\0';
}

static int http_error(struct k8s_client *c)
{
        const struct k8s_request *req = c->req;
        int retry_after = c->err.retry_after_s;
        char path[256];

        c->err = (struct k8s_error){.retry_after_s = retry_after};
        cJSON *j = cJSON_ParseWithLength(strbuf_str(&c->body), c->body.len);
        const char *kind = k8s_json_str(j, "kind");
        if (kind && streq(kind, "Status")) {
                k8s_status_decode(j, &c->err);
        } else if (c->body.len > 0) {
                k8s_strlcpy(c->err.message, strbuf_str(&c->body), MIN(sizeof(c->err.message), 201));
        }
        cJSON_Delete(j);
        c->err.http_status = c->http_status; /* the HTTP status wins over Status.code */
        sanitize(c->err.message);
        sanitize(c->err.cause);
        sanitize(c->err.reason);

        path_noquery(req->path, path, sizeof(path));
        set_errstr(c, "%s %s: %d%s%s: %s%s%s", req->method, path, c->http_status,
                   c->err.reason[0] ? " " : "", c->err.reason,
                   c->err.message[0] ? c->err.message : "(no message)",
                   c->err.cause[0] && !strstr(c->err.message, c->err.cause) ? ": " : "",
                   c->err.cause[0] && !strstr(c->err.message, c->err.cause) ? c->err.cause : "");
        return k8s_status_to_errno(c->http_status, c->err.reason);
}

static int curl_error(struct k8s_client *c, CURLcode cc)
{
        const struct k8s_request *req = c->req;
        char path[256];
        int r;

        switch (cc) {
        case CURLE_OPERATION_TIMEDOUT:
                r = -ETIMEDOUT;
                break;
        case CURLE_COULDNT_CONNECT:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_CRL_BADFILE:
                r = -ECONNREFUSED;
                break;
        case CURLE_COULDNT_RESOLVE_HOST:
                r = -EHOSTUNREACH;
                break;
        case CURLE_OUT_OF_MEMORY:
                r = -ENOMEM;
                break;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                r = -ECONNRESET;
                break;
        case CURLE_WRITE_ERROR:
                r = c->stream_error < 0 ? c->stream_error : c->body_too_big ? -EFBIG : -EIO;
                break;
        default:
                r = -EIO;
                break;
        }
        /* A stream callback that failed has already said why (k8s_client_fail): keep that. */
        if (cc == CURLE_WRITE_ERROR && c->stream_error < 0 && c->errstr[0]) {
                int retry_after = c->err.retry_after_s;
                c->err = (struct k8s_error){.retry_after_s = retry_after};
                return r;
        }
        error_reset(c);
        path_noquery(req->path, path, sizeof(path));
        if (r == -EFBIG)
                set_errstr(c, "%s %s: response larger than %zu bytes", req->method, path,
                           K8S_MAX_BODY);
        else if (cc == CURLE_WRITE_ERROR && c->stream_error < 0)
                set_errstr(c, "%s %s: stream stopped: %s", req->method, path,
                           strerror(-c->stream_error));
        else
                set_errstr(c, "%s %s: %s", req->method, path,
                           c->curl_errbuf[0] ? c->curl_errbuf : curl_easy_strerror(cc));
        sanitize(c->errstr);
        return r;
}

/* ---- curl callbacks --------------------------------------------------------------------- */

static size_t on_header(char *data, size_t size, size_t n, void *userdata)
{
        struct k8s_client *c = userdata;
        size_t len = size * n;
        char line[600];

        k8s_strlcpy(line, data, MIN(len + 1, sizeof(line)));
        line[strcspn(line, "\r\n")] = '\0';
        if (strncmp(line, "HTTP/", 5) == 0) {
                /* A new response (also after "100 Continue"): its status, fresh headers. */
                const char *sp = strchr(line, ' ');
                char *end = NULL;
                long status = sp ? strtol(sp + 1, &end, 10) : 0;
                c->http_status =
                    sp && end != sp + 1 && status >= 100 && status <= 999 ? (int)status : 0;
                c->err.retry_after_s = -1;
                return len;
        }
        if (strncasecmp(line, "Warning:", 8) == 0) {
                const char *v = line + 8 + strspn(line + 8, " \t");
                k8s_strlcpy(c->warning, v, sizeof(c->warning));
                sanitize(c->warning);
        } else if (strncasecmp(line, "Retry-After:", 12) == 0) {
                /* Seconds, or an HTTP date. */
                const char *v = line + 12 + strspn(line + 12, " \t");
                int64_t s;
                if (parse_int64(v, &s) == 0 && s >= 0) {
                        c->err.retry_after_s = (int)MIN(s, 3600);
                } else {
                        time_t when = curl_getdate(v, NULL);
                        if (when > 0)
                                c->err.retry_after_s = (int)CLAMP(when - time(NULL), 0, 3600);
                }
        }
        return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *userdata)
{
        struct k8s_client *c = userdata;
        size_t len = size * n;

        if (c->req->stream && c->http_status >= 200 && c->http_status <= 299) {
                int r = c->req->stream(data, len, c->req->stream_userdata);
                if (r < 0) {
                        c->stream_error = r;
                        return 0;
                }
                return len;
        }
        if (c->body.len + len > K8S_MAX_BODY) {
                c->body_too_big = true;
                return 0;
        }
        strbuf_add(&c->body, data, len);
        if (c->body.oom) {
                c->stream_error = -ENOMEM;
                return 0;
        }
        return len;
}

/* Every descriptor persistd opens is close-on-exec, the client's sockets too. */
static curl_socket_t open_socket(void *userdata, curlsocktype purpose, struct curl_sockaddr *addr)
{
        return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

/* ---- Client ----------------------------------------------------------------------------- */

static int setup_tls(struct k8s_client *c)
{
        const struct k8s_config *cfg = c->cfg;
        CURL *e = c->easy;
        CURLcode cc = CURLE_OK;

        if (cfg->ca_data.data) {
                struct curl_blob b = {cfg->ca_data.data, cfg->ca_data.len, CURL_BLOB_COPY};
                /* Trust the cluster's CA only, not also the system store. */
                cc |= curl_easy_setopt(e, CURLOPT_CAINFO, NULL);
                cc |= curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
                cc |= curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
        } else if (cfg->ca_file) {
                cc |= curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
                cc |= curl_easy_setopt(e, CURLOPT_CAINFO, cfg->ca_file);
        }
        if (cfg->insecure_skip_verify) {
                cc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
                cc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        if (cfg->client_cert_data.data) {
                struct curl_blob b = {cfg->client_cert_data.data, cfg->client_cert_data.len,
                                      CURL_BLOB_COPY};
                cc |= curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &b);
                cc |= curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        } else if (cfg->client_cert_file) {
                cc |= curl_easy_setopt(e, CURLOPT_SSLCERT, cfg->client_cert_file);
                cc |= curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        }
        if (cfg->client_key_data.data) {
                struct curl_blob b = {cfg->client_key_data.data, cfg->client_key_data.len,
                                      CURL_BLOB_COPY};
                cc |= curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &b);
                cc |= curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
        } else if (cfg->client_key_file) {
                cc |= curl_easy_setopt(e, CURLOPT_SSLKEY, cfg->client_key_file);
                cc |= curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
        }
        return cc == CURLE_OK ? 0 : -EINVAL;
}

int k8s_client_new(const struct k8s_config *cfg, const struct k8s_client_options *opts,
                   struct k8s_client **ret)
{
        static const struct k8s_client_options no_opts = {0};
        _cleanup_(k8s_client_freep) struct k8s_client *c = NULL;
        CURLcode cc = CURLE_OK;

        if (!opts)
                opts = &no_opts;
        if (!cfg || strempty(cfg->server) ||
            (strncmp(cfg->server, "https://", 8) != 0 && strncmp(cfg->server, "http://", 7) != 0))
                return -EINVAL;
        pthread_once(&curl_once, curl_global_setup);

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->body = (struct strbuf)STRBUF_INIT;
        atomic_init(&c->interrupted, false);
        error_reset(c);
        c->cfg = config_dup(cfg);
        if (!c->cfg)
                return -ENOMEM;
        /* "https://host:6443/" and "https://host:6443" name the same server. */
        size_t sl = strlen(c->cfg->server);
        while (sl > 0 && c->cfg->server[sl - 1] == '/')
                c->cfg->server[--sl] = '\0';

        const char *ns = !strempty(opts->namespace)     ? opts->namespace
                         : !strempty(c->cfg->namespace) ? c->cfg->namespace
                                                        : "default";
        c->namespace = strdup(ns);
        if (!c->namespace)
                return -ENOMEM;
        c->request_timeout_ms =
            opts->request_timeout_ms > 0 ? opts->request_timeout_ms : DEFAULT_REQUEST_TIMEOUT_MS;
        c->connect_timeout_ms =
            opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : c->request_timeout_ms;
        c->token_reread_s =
            opts->token_reread_s > 0 ? opts->token_reread_s : DEFAULT_TOKEN_REREAD_S;
        c->watch_timeout_s =
            opts->watch_timeout_s > 0 ? opts->watch_timeout_s : DEFAULT_WATCH_TIMEOUT_S;
        if (c->cfg->token) {
                c->token = strdup(c->cfg->token);
                if (!c->token)
                        return -ENOMEM;
        }

        c->easy = curl_easy_init();
        c->multi = curl_multi_init();
        if (!c->easy || !c->multi)
                return -ENOMEM;
        cc |= curl_easy_setopt(c->easy, CURLOPT_USERAGENT, "persistd/" PERSISTD_VERSION);
        cc |= curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->curl_errbuf);
        cc |= curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
        cc |= curl_easy_setopt(c->easy, CURLOPT_PROTOCOLS_STR, "http,https");
        cc |= curl_easy_setopt(c->easy, CURLOPT_FOLLOWLOCATION, 0L);
        cc |= curl_easy_setopt(c->easy, CURLOPT_TCP_KEEPALIVE, 1L);
        cc |= curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_body);
        cc |= curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
        cc |= curl_easy_setopt(c->easy, CURLOPT_HEADERFUNCTION, on_header);
        cc |= curl_easy_setopt(c->easy, CURLOPT_HEADERDATA, c);
        cc |= curl_easy_setopt(c->easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
        cc |= curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
        if (cc != CURLE_OK)
                return -ENOMEM;
        if (setup_tls(c) < 0)
                return -EINVAL;

        *ret = TAKE_PTR(c);
        return 0;
}

void k8s_client_free(struct k8s_client *c)
{
        if (!c)
                return;
        if (c->multi)
                curl_multi_cleanup(c->multi);
        if (c->easy)
                curl_easy_cleanup(c->easy);
        secret_free(c->token);
        strbuf_release(&c->body);
        k8s_config_free(c->cfg);
        free(c->namespace);
        free(c);
}

void k8s_client_interrupt(struct k8s_client *c)
{
        atomic_store(&c->interrupted, true);
        curl_multi_wakeup(c->multi);
}

/* ---- Token ------------------------------------------------------------------------------ */

/* Read token_file when due (or `force`). A failed re-read keeps the previous token. */
static int token_refresh(struct k8s_client *c, bool force)
{
        if (!c->cfg->token_file)
                return 0;
        int64_t now = clock_mono_us();
        if (!force && c->token && c->token_read_mono_us != 0 &&
            now - c->token_read_mono_us < (int64_t)c->token_reread_s * USEC_PER_SEC)
                return 0;

        char *t = NULL;
        int r = read_secret_file(c->cfg->token_file, &t);
        c->token_read_mono_us = now;
        if (r < 0) {
                log_debug("Failed to read token file \"%s\": %s%s", c->cfg->token_file,
                          strerror(-r), c->token ? ", keeping the previous token" : "");
                if (c->token)
                        return 0;
                return k8s_client_fail(c, r == -ENOMEM ? -ENOMEM : -EKEYREJECTED,
                                       "Failed to read token file \"%s\": %s", c->cfg->token_file,
                                       strerror(-r));
        }
        secret_free(c->token);
        c->token = t;
        return 0;
}

/* ---- Requests --------------------------------------------------------------------------- */

static void slist_free_wiped(struct curl_slist *l)
{
        for (struct curl_slist *i = l; i; i = i->next)
                explicit_bzero(i->data, strlen(i->data));
        curl_slist_free_all(l);
}

static struct curl_slist *slist_add(struct curl_slist *l, const char *s, bool *oom)
{
        struct curl_slist *n = curl_slist_append(l, s);
        if (!n) {
                *oom = true;
                return l;
        }
        return n;
}

/* Drive the transfer through the private multi handle so that an interrupt ends it at once. */
static CURLcode run_transfer(struct k8s_client *c, bool *interrupted)
{
        CURLcode result = CURLE_OK;
        bool done = false;

        *interrupted = false;
        if (curl_multi_add_handle(c->multi, c->easy) != CURLM_OK)
                return CURLE_OUT_OF_MEMORY;
        while (!done) {
                int running = 0;
                if (atomic_load(&c->interrupted)) {
                        *interrupted = true;
                        break;
                }
                CURLMcode mc = curl_multi_perform(c->multi, &running);
                if (mc != CURLM_OK) {
                        result = mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY : CURLE_RECV_ERROR;
                        break;
                }
                int msgs;
                CURLMsg *m;
                while ((m = curl_multi_info_read(c->multi, &msgs))) {
                        if (m->msg == CURLMSG_DONE && m->easy_handle == c->easy) {
                                result = m->data.result;
                                done = true;
                        }
                }
                if (done || running == 0)
                        break;
                /* curl's own timeouts (CURLOPT_TIMEOUT_MS) are checked on every return. */
                curl_multi_poll(c->multi, NULL, 0, 1000, NULL);
        }
        curl_multi_remove_handle(c->multi, c->easy);
        return result;
}

static int perform_once(struct k8s_client *c, const struct k8s_request *req)
{
        _cleanup_free_ char *url = NULL;
        struct curl_slist *headers = NULL;
        CURLcode cc = CURLE_OK;
        bool oom = false, interrupted;
        char ct[128];

        strbuf_reset(&c->body);
        c->body_too_big = false;
        c->stream_error = 0;
        c->http_status = 0;
        c->curl_errbuf[0] = '\0';
        c->warning[0] = '\0';
        error_reset(c);
        c->req = req;

        if (asprintf(&url, "%s%s", c->cfg->server, req->path) < 0) {
                url = NULL;
                return k8s_client_fail(c, -ENOMEM, "Out of memory");
        }
        headers = slist_add(headers, "Accept: application/json", &oom);
        /* libcurl would add "Expect: 100-continue" to large bodies: one round trip more. */
        headers = slist_add(headers, "Expect:", &oom);
        if (req->body) {
                snprintf(ct, sizeof(ct), "Content-Type: %s", req->content_type);
                headers = slist_add(headers, ct, &oom);
        }
        if (c->token) {
                _cleanup_free_ char *auth = NULL;
                if (asprintf(&auth, "Authorization: Bearer %s", c->token) < 0)
                        auth = NULL, oom = true;
                else
                        headers = slist_add(headers, auth, &oom);
                if (auth)
                        explicit_bzero(auth, strlen(auth));
        }
        if (oom) {
                slist_free_wiped(headers);
                return k8s_client_fail(c, -ENOMEM, "Out of memory");
        }

        long timeout_ms = req->no_timeout
                              ? (long)(c->watch_timeout_s + WATCH_TIMEOUT_MARGIN_S) * 1000L
                              : (long)c->request_timeout_ms;
        cc |= curl_easy_setopt(c->easy, CURLOPT_URL, url);
        cc |= curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, headers);
        cc |= curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
        if (streq(req->method, "GET")) {
                cc |= curl_easy_setopt(c->easy, CURLOPT_CUSTOMREQUEST, NULL);
                cc |= curl_easy_setopt(c->easy, CURLOPT_HTTPGET, 1L);
        } else {
                cc |= curl_easy_setopt(c->easy, CURLOPT_POST, 1L);
                cc |= curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                                       (curl_off_t)(req->body ? req->body_len : 0));
                cc |= curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, req->body ? req->body : "");
                cc |= curl_easy_setopt(c->easy, CURLOPT_CUSTOMREQUEST,
                                       streq(req->method, "POST") ? NULL : req->method);
        }
        if (cc != CURLE_OK) {
                slist_free_wiped(headers);
                return k8s_client_fail(c, -ENOMEM, "Failed to set up the request");
        }

        cc = run_transfer(c, &interrupted);
        curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, NULL);
        slist_free_wiped(headers);

        char path[256];
        path_noquery(req->path, path, sizeof(path));
        if (interrupted)
                return k8s_client_fail(c, -ECANCELED, "%s %s: interrupted", req->method, path);
        if (cc != CURLE_OK)
                return curl_error(c, cc);
        if (c->http_status < 200 || c->http_status > 299)
                return http_error(c);
        log_debug("%s %s: %d", req->method, path, c->http_status);
        return 0;
}

int k8s_request(struct k8s_client *c, const struct k8s_request *req, char **ret_body,
                size_t *ret_len)
{
        int r;

        if (atomic_load(&c->interrupted))
                return k8s_client_fail(c, -ECANCELED, "%s: interrupted", req->method);
        r = token_refresh(c, false);
        if (r < 0)
                return r;
        r = perform_once(c, req);
        if (r == -EKEYREJECTED && c->cfg->token_file) {
                /* A projected token may have rotated under us: read it again, try once more. */
                r = token_refresh(c, true);
                if (r < 0)
                        return r;
                r = perform_once(c, req);
        }
        if (r < 0)
                return r;
        if (ret_len)
                *ret_len = c->body.len;
        if (ret_body) {
                *ret_body = strbuf_detach(&c->body);
                if (!*ret_body)
                        return k8s_client_fail(c, -ENOMEM, "Out of memory");
        }
        return 0;
}

/* ---- Small helpers ---------------------------------------------------------------------- */

char *k8s_url_escape(const char *s)
{
        static const char hex[] = "0123456789ABCDEF";
        struct strbuf sb = STRBUF_INIT;

        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
                        strbuf_addch(&sb, (char)*p);
                } else {
                        strbuf_addch(&sb, '%');
                        strbuf_addch(&sb, hex[*p >> 4]);
                        strbuf_addch(&sb, hex[*p & 15]);
                }
        }
        return strbuf_detach(&sb);
}

static int b64_value(unsigned char ch)
{
        if (ch >= 'A' && ch <= 'Z')
                return ch - 'A';
        if (ch >= 'a' && ch <= 'z')
                return ch - 'a' + 26;
        if (ch >= '0' && ch <= '9')
                return ch - '0' + 52;
        if (ch == '+')
                return 62;
        if (ch == '/')
                return 63;
        return -1;
}

int k8s_base64_decode(const char *s, size_t len, size_t max_size, unsigned char **ret,
                      size_t *ret_len)
{
        while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' '))
                len--;
        while (len > 0 && s[len - 1] == '=')
                len--;
        if (len % 4 == 1)
                return -EINVAL;
        size_t out_len = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
        if (out_len > max_size)
                return -EFBIG;
        unsigned char *out = malloc(out_len + 1);
        if (!out)
                return -ENOMEM;
        size_t o = 0;
        uint32_t acc = 0;
        int bits = 0;
        for (size_t i = 0; i < len; i++) {
                int v = b64_value((unsigned char)s[i]);
                if (v < 0) {
                        explicit_bzero(out, out_len + 1);
                        free(out);
                        return -EINVAL;
                }
                acc = (acc << 6) | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (unsigned char)(acc >> bits);
                        acc &= (1U << bits) - 1;
                }
        }
        out[o] = '\0';
        *ret = out;
        if (ret_len)
                *ret_len = o;
        return 0;
}

int k8s_client_wait_us(struct k8s_client *c, int64_t us)
{
        int64_t deadline = clock_mono_us() + us;

        for (;;) {
                if (atomic_load(&c->interrupted))
                        return k8s_client_fail(c, -ECANCELED, "interrupted");
                int64_t left = deadline - clock_mono_us();
                if (left <= 0)
                        return 0;
                /* With no transfer attached this waits for the timeout or curl_multi_wakeup(). */
                curl_multi_poll(c->multi, NULL, 0, (int)MIN(left / 1000 + 1, 1000), NULL);
        }
}

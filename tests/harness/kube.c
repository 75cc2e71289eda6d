/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The harness side of kube-test-server: throw-away certificates made with openssl, a token
 * file, the server process on free loopback ports, kubeconfig files per user, and small
 * libcurl helpers for API requests, faults and statistics.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "harness.h"

static void pause_ms(int ms)
{
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
        va_list ap;
        char *s;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                th_die("out of memory");
        va_end(ap);
        return s;
}

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "we");
        if (!f || fputs(text, f) < 0 || fclose(f) != 0)
                th_die("cannot write %s: %s", path, strerror(errno));
}

static void run(char *const argv[], const char *log)
{
        int status;
        pid_t pid = th_spawn(argv, NULL, log);
        if (!th_wait_exit(pid, 30000, &status) || !WIFEXITED(status) || WEXITSTATUS(status))
                th_die("%s failed; see %s", argv[0], log);
}

void th_tls_make_certs(const char *dir)
{
        char *log = xasprintf("%s/openssl.log", dir);
        char *ca_key = xasprintf("%s/ca.key", dir), *ca_crt = xasprintf("%s/ca.crt", dir);
        char *key = xasprintf("%s/server.key", dir), *csr = xasprintf("%s/server.csr", dir);
        char *crt = xasprintf("%s/server.crt", dir), *ext = xasprintf("%s/server.ext", dir);
        char *serial = xasprintf("%s/ca.srl", dir);

        write_file(ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                        "extendedKeyUsage=serverAuth\n"
                        "keyUsage=digitalSignature,keyEncipherment\n");
        char *ca[] = {(char *)"openssl",
                      (char *)"req",
                      (char *)"-x509",
                      (char *)"-newkey",
                      (char *)"ec",
                      (char *)"-pkeyopt",
                      (char *)"ec_paramgen_curve:prime256v1",
                      (char *)"-nodes",
                      (char *)"-keyout",
                      ca_key,
                      (char *)"-out",
                      ca_crt,
                      (char *)"-days",
                      (char *)"2",
                      (char *)"-subj",
                      (char *)"/CN=kube-test-ca",
                      NULL};
        run(ca, log);
        char *req[] = {(char *)"openssl",
                       (char *)"req",
                       (char *)"-newkey",
                       (char *)"ec",
                       (char *)"-pkeyopt",
                       (char *)"ec_paramgen_curve:prime256v1",
                       (char *)"-nodes",
                       (char *)"-keyout",
                       key,
                       (char *)"-out",
                       csr,
                       (char *)"-subj",
                       (char *)"/CN=kube-apiserver",
                       NULL};
        run(req, log);
        char *sign[] = {(char *)"openssl",
                        (char *)"x509",
                        (char *)"-req",
                        (char *)"-in",
                        csr,
                        (char *)"-CA",
                        ca_crt,
                        (char *)"-CAkey",
                        ca_key,
                        (char *)"-CAcreateserial",
                        (char *)"-CAserial",
                        serial,
                        (char *)"-out",
                        crt,
                        (char *)"-days",
                        (char *)"2",
                        (char *)"-extfile",
                        ext,
                        NULL};
        run(sign, log);
        free(log);
        free(ca_key);
        free(ca_crt);
        free(key);
        free(csr);
        free(crt);
        free(ext);
        free(serial);
}

const char *th_kube_server_path(void)
{
        const char *p = getenv("KUBE_TEST_SERVER_BIN");
        if (!p || !*p)
                th_die("KUBE_TEST_SERVER_BIN is not set (run the tests through meson)");
        return p;
}

static char *random_token(void)
{
        unsigned char b[24];
        FILE *f = fopen("/dev/urandom", "re");
        if (!f || fread(b, 1, sizeof(b), f) != sizeof(b))
                th_die("cannot read /dev/urandom");
        fclose(f);
        char *t = malloc(sizeof(b) * 2 + 1);
        if (!t)
                th_die("out of memory");
        for (size_t i = 0; i < sizeof(b); i++)
                sprintf(t + 2 * i, "%02x", b[i]);
        return t;
}

static void write_kubeconfig(const struct th_kube *k, const char *path, const char *user,
                             const char *token)
{
        char *ca = k->ca_path ? xasprintf("    certificate-authority: %s\n", k->ca_path)
                              : xasprintf("%s", "");
        char *text = xasprintf("apiVersion: v1\n"
                               "kind: Config\n"
                               "clusters:\n"
                               "- name: kube-test\n"
                               "  cluster:\n"
                               "    server: %s\n"
                               "%s"
                               "users:\n"
                               "- name: %s\n"
                               "  user:\n"
                               "    token: %s\n"
                               "contexts:\n"
                               "- name: kube-test\n"
                               "  context:\n"
                               "    cluster: kube-test\n"
                               "    user: %s\n"
                               "    namespace: %s\n"
                               "current-context: kube-test\n",
                               k->url, ca, user, token, user, k->namespace);
        write_file(path, text);
        free(text);
        free(ca);
}

static bool control_ready(const struct th_kube *k)
{
        return th_kube_control(k, "GET", "/healthz", NULL, NULL) == 200;
}

void th_kube_start(struct th_kube *k, const struct th_kube_options *o)
{
        static const struct th_kube_options defaults = {0};
        char *tokens, *log, *text;

        if (!o)
                o = &defaults;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        *k = (struct th_kube){0};
        k->dir = th_tmpdir("kube");
        k->user = strdup(o->user ? o->user : "orchestrator");
        k->namespace = strdup(o->namespace ? o->namespace : "redis-system");
        k->admin_token = random_token();
        k->user_token = random_token();
        if (!o->plain) {
                th_tls_make_certs(k->dir);
                k->ca_path = xasprintf("%s/ca.crt", k->dir);
        }
        tokens = xasprintf("%s/tokens.csv", k->dir);
        text = xasprintf("%s,admin,uid-admin,\"system:masters\"\n%s,%s,uid-%s\n", k->admin_token,
                         k->user_token, k->user, k->user);
        write_file(tokens, text);
        free(text);
        log = xasprintf("%s/kube-server.log", k->dir);
        char *cert = xasprintf("%s/server.crt", k->dir), *key = xasprintf("%s/server.key", k->dir);
        char history[32];
        snprintf(history, sizeof(history), "%d", o->history > 0 ? o->history : 10000);

        for (int attempt = 0; attempt < 5 && !k->pid; attempt++) {
                char port[16], cport[16];
                k->port = th_free_port();
                k->control_port = th_free_port();
                if (k->port == k->control_port)
                        continue;
                snprintf(port, sizeof(port), "%u", k->port);
                snprintf(cport, sizeof(cport), "%u", k->control_port);
                char *argv[] = {(char *)th_kube_server_path(),
                                (char *)"--port",
                                port,
                                (char *)"--control-port",
                                cport,
                                (char *)"--token-file",
                                tokens,
                                (char *)"--history",
                                history,
                                o->plain ? (char *)"--plain" : (char *)"--tls-cert",
                                o->plain ? NULL : cert,
                                (char *)"--tls-key",
                                key,
                                NULL};
                k->pid = th_spawn(argv, NULL, log);
                bool ready = false;
                for (int i = 0; i < 500 && !ready; i++) {
                        if (th_wait_exit(k->pid, 0, NULL)) {
                                k->pid = 0; /* a port was taken: try others */
                                break;
                        }
                        ready = control_ready(k);
                        if (!ready)
                                pause_ms(10);
                }
                if (!ready && k->pid) {
                        th_stop(k->pid, SIGKILL, 1000);
                        k->pid = 0;
                }
        }
        free(cert);
        free(key);
        free(tokens);
        if (!k->pid)
                th_die("kube-test-server did not start; see %s", log);
        free(log);
        k->url = xasprintf("%s://127.0.0.1:%u", o->plain ? "http" : "https", k->port);
        k->admin_kubeconfig = xasprintf("%s/admin.kubeconfig", k->dir);
        k->user_kubeconfig = xasprintf("%s/%s.kubeconfig", k->dir, k->user);
        write_kubeconfig(k, k->admin_kubeconfig, "admin", k->admin_token);
        write_kubeconfig(k, k->user_kubeconfig, k->user, k->user_token);

        char *body = xasprintf("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":"
                               "{\"name\":\"%s\"}}",
                               k->namespace);
        long st = 0;
        for (int i = 0; i < 50 && st != 201; i++) {
                st = th_kube_request(k, k->admin_token, "POST", "/api/v1/namespaces",
                                     "application/json", body, NULL);
                if (st != 201)
                        pause_ms(50);
        }
        free(body);
        if (st != 201)
                th_die("kube-test-server does not create namespace %s (HTTP %ld)", k->namespace,
                       st);
}

void th_kube_stop(struct th_kube *k)
{
        if (k->pid) {
                /* A sanitizer report or a crash in the server fails the test that used it. */
                int status = th_stop(k->pid, SIGTERM, 20000);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        char *log = xasprintf("%s/kube-server.log", k->dir);
                        FILE *f = fopen(log, "re");
                        char line[4096];
                        while (f && fgets(line, sizeof(line), f))
                                fputs(line, stderr);
                        if (f)
                                fclose(f);
                        th_die("kube-test-server did not exit cleanly (wait status %d); its log "
                               "is above",
                               status);
                }
        }
        if (k->dir && !getenv("TH_KEEP_TMP"))
                th_rmtree(k->dir);
        free(k->dir);
        free(k->url);
        free(k->ca_path);
        free(k->user);
        free(k->namespace);
        free(k->admin_token);
        free(k->user_token);
        free(k->admin_kubeconfig);
        free(k->user_kubeconfig);
        *k = (struct th_kube){0};
}

struct buf {
        char *data;
        size_t len;
};

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
        struct buf *b = ud;
        size_t add = size * n;
        char *d = realloc(b->data, b->len + add + 1);
        if (!d)
                return 0;
        memcpy(d + b->len, p, add);
        b->data = d;
        b->len += add;
        b->data[b->len] = '\0';
        return add;
}

static long perform(const char *url, const char *ca, const char *token, const char *method,
                    const char *content_type, const char *body, char **out)
{
        CURL *c = curl_easy_init();
        struct curl_slist *h = NULL;
        struct buf b = {0};
        long status = 0;
        char *auth = NULL, *ct = NULL;

        if (!c)
                th_die("curl_easy_init failed");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        if (ca)
                curl_easy_setopt(c, CURLOPT_CAINFO, ca);
        if (token) {
                auth = xasprintf("Authorization: Bearer %s", token);
                h = curl_slist_append(h, auth);
        }
        h = curl_slist_append(h, "Accept: application/json");
        /* An explicit Content-Type, or none at all (libcurl would add a form type). */
        ct = content_type ? xasprintf("Content-Type: %s", content_type)
                          : xasprintf("%s", "Content-Type:");
        h = curl_slist_append(h, ct);
        if (body) {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        }
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        if (curl_easy_perform(c) == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        curl_slist_free_all(h);
        free(auth);
        free(ct);
        if (out)
                *out = b.data ? b.data : strdup("");
        else
                free(b.data);
        return status;
}

long th_kube_request(const struct th_kube *k, const char *token, const char *method,
                     const char *path, const char *content_type, const char *body, char **out)
{
        char *url = xasprintf("%s%s", k->url, path);
        long st = perform(url, k->ca_path, token, method, content_type, body, out);
        free(url);
        return st;
}

long th_kube_control(const struct th_kube *k, const char *method, const char *path,
                     const char *json, char **out)
{
        char *url = xasprintf("http://127.0.0.1:%u%s", k->control_port, path);
        long st = perform(url, NULL, NULL, method, json ? "application/json" : NULL, json, out);
        free(url);
        return st;
}

void th_kube_faults(const struct th_kube *k, const char *json)
{
        char *out = NULL;
        long st = th_kube_control(k, "POST", "/faults", json, &out);
        if (st != 200)
                th_die("kube-test-server refused faults %s: HTTP %ld %s", json, st, out);
        free(out);
}

void th_kube_clear_faults(const struct th_kube *k)
{
        if (th_kube_control(k, "DELETE", "/faults", NULL, NULL) != 200)
                th_die("kube-test-server: cannot clear faults");
}

void th_kube_compact(const struct th_kube *k)
{
        if (th_kube_control(k, "POST", "/compact", NULL, NULL) != 200)
                th_die("kube-test-server: cannot compact");
}

void th_kube_restart(const struct th_kube *k)
{
        if (th_kube_control(k, "POST", "/restart", NULL, NULL) != 200)
                th_die("kube-test-server: cannot restart");
}

char *th_kube_request_log(const struct th_kube *k, unsigned long long since)
{
        char *path = xasprintf("/requests?since=%llu", since), *out = NULL;
        if (th_kube_control(k, "GET", path, NULL, &out) != 200)
                th_die("kube-test-server: cannot read the request log");
        free(path);
        return out;
}

static void create_as_admin(const struct th_kube *k, const char *collection, cJSON *obj)
{
        char *path = xasprintf("/api/v1/namespaces/%s/%s", k->namespace, collection);
        char *body = cJSON_PrintUnformatted(obj), *out = NULL;
        long st = th_kube_request(k, k->admin_token, "POST", path, "application/json", body, &out);
        if (st != 201)
                th_die("kube-test-server refused to create %s: HTTP %ld %s", path, st, out);
        free(out);
        free(body);
        free(path);
        cJSON_Delete(obj);
}

void th_kube_create_pod(const struct th_kube *k, const char *name, const char *labels_json)
{
        cJSON *pod = cJSON_CreateObject();
        cJSON_AddStringToObject(pod, "apiVersion", "v1");
        cJSON_AddStringToObject(pod, "kind", "Pod");
        cJSON *meta = cJSON_AddObjectToObject(pod, "metadata");
        cJSON_AddStringToObject(meta, "name", name);
        if (labels_json) {
                cJSON *labels = cJSON_Parse(labels_json);
                if (!cJSON_IsObject(labels))
                        th_die("th_kube_create_pod: labels are not a JSON object: %s", labels_json);
                cJSON_AddItemToObject(meta, "labels", labels);
        }
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "name", "main");
        cJSON_AddStringToObject(c, "image", "example.invalid/test:1");
        cJSON *containers = cJSON_CreateArray();
        cJSON_AddItemToArray(containers, c);
        cJSON_AddItemToObject(cJSON_AddObjectToObject(pod, "spec"), "containers", containers);
        create_as_admin(k, "pods", pod);
}

void th_kube_create_secret(const struct th_kube *k, const char *name, const char *key,
                           const char *value)
{
        cJSON *secret = cJSON_CreateObject();
        cJSON_AddStringToObject(secret, "apiVersion", "v1");
        cJSON_AddStringToObject(secret, "kind", "Secret");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(secret, "metadata"), "name", name);
        cJSON_AddStringToObject(cJSON_AddObjectToObject(secret, "stringData"), key, value);
        create_as_admin(k, "secrets", secret);
}

void th_kube_reset_stats(const struct th_kube *k)
{
        if (th_kube_control(k, "POST", "/stats/reset", NULL, NULL) != 200)
                th_die("kube-test-server: cannot reset statistics");
}

long long th_kube_stat(const struct th_kube *k, const char *user, const char *key)
{
        char *out = NULL;
        long long v = 0;

        if (th_kube_control(k, "GET", "/stats", NULL, &out) != 200)
                th_die("kube-test-server: cannot read statistics");
        cJSON *doc = cJSON_Parse(out);
        const cJSON *scope = user ? cJSON_GetObjectItemCaseSensitive(
                                        cJSON_GetObjectItemCaseSensitive(doc, "users"), user)
                                  : cJSON_GetObjectItemCaseSensitive(doc, "requests");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(scope, key);
        if (cJSON_IsNumber(n))
                v = (long long)n->valuedouble;
        cJSON_Delete(doc);
        free(out);
        return v;
}

/* ---- YAML manifests ------------------------------------------------------------------------ */

static bool plain_number(const char *v)
{
        const char *p = v;
        if (*p == '-' || *p == '+')
                p++;
        if (!*p)
                return false;
        for (; *p; p++)
                if (*p < '0' || *p > '9')
                        return false;
        return strlen(v) < 16;
}

/* A YAML node as JSON, with the YAML 1.1 plain-scalar types Kubernetes manifests use. */
static cJSON *yaml_to_json(yaml_document_t *doc, yaml_node_t *node, int depth)
{
        if (!node || depth > 64)
                return cJSON_CreateNull();
        switch (node->type) {
        case YAML_SCALAR_NODE: {
                const char *v = (const char *)node->data.scalar.value;
                if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
                        if (!*v || strcmp(v, "null") == 0 || strcmp(v, "~") == 0)
                                return cJSON_CreateNull();
                        if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
                                return cJSON_CreateBool(v[0] == 't');
                        if (plain_number(v))
                                return cJSON_CreateNumber(strtod(v, NULL));
                }
                return cJSON_CreateString(v);
        }
        case YAML_SEQUENCE_NODE: {
                cJSON *a = cJSON_CreateArray();
                for (yaml_node_item_t *i = node->data.sequence.items.start;
                     i < node->data.sequence.items.top; i++)
                        cJSON_AddItemToArray(
                            a, yaml_to_json(doc, yaml_document_get_node(doc, *i), depth + 1));
                return a;
        }
        case YAML_MAPPING_NODE: {
                cJSON *o = cJSON_CreateObject();
                for (yaml_node_pair_t *p = node->data.mapping.pairs.start;
                     p < node->data.mapping.pairs.top; p++) {
                        yaml_node_t *key = yaml_document_get_node(doc, p->key);
                        if (!key || key->type != YAML_SCALAR_NODE)
                                continue;
                        cJSON_AddItemToObject(
                            o, (const char *)key->data.scalar.value,
                            yaml_to_json(doc, yaml_document_get_node(doc, p->value), depth + 1));
                }
                return o;
        }
        default:
                return cJSON_CreateNull();
        }
}

static const struct {
        const char *kind;
        const char *prefix; /* API path before the namespace part */
        const char *res;
        bool namespaced;
} manifest_kinds[] = {
    {"Role", "/apis/rbac.authorization.k8s.io/v1", "roles", true},
    {"RoleBinding", "/apis/rbac.authorization.k8s.io/v1", "rolebindings", true},
    {"ClusterRole", "/apis/rbac.authorization.k8s.io/v1", "clusterroles", false},
    {"ClusterRoleBinding", "/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", false},
    {"Secret", "/api/v1", "secrets", true},
    {"ConfigMap", "/api/v1", "configmaps", true},
    {"Pod", "/api/v1", "pods", true},
    {"Lease", "/apis/coordination.k8s.io/v1", "leases", true},
    {"Namespace", "/api/v1", "namespaces", false},
};

int th_kube_apply_yaml(const struct th_kube *k, const char *path, const char *ns)
{
        FILE *f = fopen(path, "re");
        yaml_parser_t parser;
        int created = 0;

        if (!f)
                th_die("cannot read %s: %s", path, strerror(errno));
        yaml_parser_initialize(&parser);
        yaml_parser_set_input_file(&parser, f);
        for (;;) {
                yaml_document_t doc;
                if (!yaml_parser_load(&parser, &doc))
                        th_die("%s: YAML error: %s", path, parser.problem ? parser.problem : "?");
                yaml_node_t *root = yaml_document_get_root_node(&doc);
                if (!root) {
                        yaml_document_delete(&doc);
                        break;
                }
                cJSON *obj = yaml_to_json(&doc, root, 0);
                yaml_document_delete(&doc);
                const char *kind =
                    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, "kind"));
                const cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
                const char *ons =
                    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "namespace"));
                for (size_t i = 0; kind && i < sizeof(manifest_kinds) / sizeof(manifest_kinds[0]);
                     i++) {
                        if (strcmp(kind, manifest_kinds[i].kind) != 0)
                                continue;
                        char *url = manifest_kinds[i].namespaced
                                        ? xasprintf("%s/namespaces/%s/%s", manifest_kinds[i].prefix,
                                                    ons && *ons ? ons : ns, manifest_kinds[i].res)
                                        : xasprintf("%s/%s", manifest_kinds[i].prefix,
                                                    manifest_kinds[i].res);
                        char *body = cJSON_PrintUnformatted(obj), *out = NULL;
                        long st = th_kube_request(k, k->admin_token, "POST", url,
                                                  "application/json", body, &out);
                        if (st != 201)
                                th_die("%s: the server refused a %s: HTTP %ld %s", path, kind, st,
                                       out);
                        created++;
                        free(out);
                        free(body);
                        free(url);
                }
                cJSON_Delete(obj);
        }
        yaml_parser_delete(&parser);
        fclose(f);
        return created;
}

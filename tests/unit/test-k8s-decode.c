/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The k8s client's offline parts: MicroTime as the API server accepts it, decoding of the real
 * responses recorded in ../shared/k8s-api-transcripts (Lease, LeaseList, Pod, PodList, Status
 * bodies, watch lines), the errno mapping, and the connection settings (kubeconfig, in cluster).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/util.h"
#include "k8s-transcripts.h"
#include "k8s/k8s-internal.h"
#include "k8s/k8s.h"

#define NEED_TRANSCRIPTS()                                                                         \
        do {                                                                                       \
                if (!tr_dir())                                                                     \
                        skip();                                                                    \
        } while (0)

/* ---- MicroTime -------------------------------------------------------------------------- */

static void test_microtime_format(void **state)
{
        char buf[K8S_MICROTIME_MAX];
        int64_t us;

        assert_string_equal(k8s_microtime_format(0, buf), "1970-01-01T00:00:00.000000Z");
        assert_int_equal(k8s_microtime_parse("2026-11-21T13:41:23.728240Z", &us), 0);
        assert_string_equal(k8s_microtime_format(us, buf), "2026-11-21T13:41:23.728240Z");
        /* Whole seconds still get six zero digits: the server refuses anything else. */
        assert_string_equal(k8s_microtime_format(us - 728240, buf), "2026-11-21T13:41:23.000000Z");
        assert_string_equal(k8s_microtime_format(us + 1, buf), "2026-11-21T13:41:23.728241Z");
}

static void test_microtime_parse(void **state)
{
        int64_t z, off, v = 42;

        assert_int_equal(k8s_microtime_parse("2024-05-01T10:00:00.123456Z", &z), 0);
        assert_int_equal(k8s_microtime_parse("2024-05-01T12:00:00.123456+02:00", &off), 0);
        assert_int_equal(z, off);
        assert_int_equal(k8s_microtime_parse("2024-05-01T08:00:00.123456-02:00", &off), 0);
        assert_int_equal(z, off);
        assert_int_equal(z % USEC_PER_SEC, 123456);

        const char *rejected[] = {
            "2024-05-01T10:00:00Z",
            "2024-05-01T10:00:00.123Z",
            "2024-05-01T10:00:00.123456789Z",
            "2024-05-01T10:00:00.123456z",
            "2024-05-01 10:00:00.123456Z",
            "2024-05-01T10:00:00.123456",
            "2024-05-01T10:00:00.123456+0200",
            "2024-02-30T10:00:00.123456Z",
            "",
            "2024-05-01T10:00:00.12345aZ",
        };
        for (size_t i = 0; i < ELEMENTSOF(rejected); i++) {
                assert_int_equal(k8s_microtime_parse(rejected[i], &v), -EINVAL);
                assert_int_equal(v, 42); /* untouched on failure */
        }
}

/* Each spelling of a2-lease-microtime-formats.json: accepted here exactly when the server took it.
 */
static void test_microtime_transcript_spellings(void **state)
{
        NEED_TRANSCRIPTS();
        int checked = 0;
        for (int step = 0; step < 8; step++) {
                int status;
                char *req = tr_request_body("a2-lease-microtime-formats.json", step);
                free(tr_response("a2-lease-microtime-formats.json", step, &status));
                cJSON *j = cJSON_Parse(req);
                const cJSON *spec = cJSON_GetObjectItemCaseSensitive(j, "spec");
                const char *t = k8s_json_str(spec, "acquireTime");
                if (t) {
                        int64_t us;
                        int r = k8s_microtime_parse(t, &us);
                        if (status == 201)
                                assert_int_equal(r, 0);
                        else
                                assert_int_equal(r, -EINVAL);
                        checked++;
                }
                cJSON_Delete(j);
                free(req);
        }
        assert_int_equal(checked, 7);
}

/* ---- Leases ----------------------------------------------------------------------------- */

static void test_lease_get_body(void **state)
{
        NEED_TRANSCRIPTS();
        int status;
        char *body = tr_response("b-lease-get.json", 0, &status);
        struct k8s_lease l;
        int64_t t;

        assert_int_equal(status, 200);
        assert_int_equal(k8s_lease_from_json(body, strlen(body), &l), 0);
        assert_string_equal(l.name, "redis-orchestrator-leader");
        assert_string_equal(l.resource_version, "198");
        assert_true(l.has_holder_identity);
        assert_string_equal(l.holder_identity, "orchestrator-0");
        assert_true(l.has_lease_duration);
        assert_int_equal(l.lease_duration_s, 15);
        assert_true(l.has_acquire_time && l.has_renew_time);
        assert_int_equal(k8s_microtime_parse("2026-11-21T13:41:23.728240Z", &t), 0);
        assert_int_equal(l.acquire_time_us, t);
        assert_int_equal(l.renew_time_us, t);
        assert_true(l.has_lease_transitions);
        assert_int_equal(l.lease_transitions, 0);
        k8s_lease_release(&l);
        free(body);
}

/* A released lease (holderIdentity "", duration 1) and a Lease with an empty spec. */
static void test_lease_released_and_empty(void **state)
{
        NEED_TRANSCRIPTS();
        struct k8s_lease l;
        char *body = tr_response("c-lease-update-ok.json", 2, NULL);

        assert_int_equal(k8s_lease_from_json(body, strlen(body), &l), 0);
        assert_string_equal(l.name, "release-demo");
        assert_true(l.has_holder_identity);
        assert_string_equal(l.holder_identity, "");
        assert_int_equal(l.lease_duration_s, 1);
        k8s_lease_release(&l);
        free(body);

        body = tr_response("a3-lease-edge-cases.json", 2, NULL);
        assert_int_equal(k8s_lease_from_json(body, strlen(body), &l), 0);
        assert_false(l.has_holder_identity);
        assert_null(l.holder_identity);
        assert_false(l.has_lease_duration || l.has_acquire_time || l.has_renew_time ||
                     l.has_lease_transitions);
        assert_non_null(l.resource_version);
        k8s_lease_release(&l);
        free(body);

        /* JSON null times mean unset (a2 step 7). */
        body = tr_response("a2-lease-microtime-formats.json", 7, NULL);
        assert_int_equal(k8s_lease_from_json(body, strlen(body), &l), 0);
        assert_false(l.has_acquire_time || l.has_renew_time);
        assert_true(l.has_lease_transitions);
        k8s_lease_release(&l);
        free(body);

        /* Not a Lease at all: a Status body. */
        body = tr_response("f-lease-get-missing.json", 0, NULL);
        assert_int_equal(k8s_lease_from_json(body, strlen(body), &l), -EBADMSG);
        free(body);
}

static void test_lease_list_items(void **state)
{
        NEED_TRANSCRIPTS();
        char *body = tr_response("k2-lease-watch-expired.json", 1, NULL);
        cJSON *j = cJSON_Parse(body);
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(j, "metadata");
        struct k8s_lease l;

        /* The list's resourceVersion (where a watch starts) is not the item's. */
        assert_string_equal(k8s_json_str(meta, "resourceVersion"), "248");
        const cJSON *item = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "items"), 0);
        assert_null(k8s_json_str(item, "kind")); /* list items carry no kind */
        assert_int_equal(k8s_lease_from_cjson(item, &l), 0);
        assert_string_equal(l.resource_version, "243");
        assert_string_equal(l.holder_identity, "orchestrator-0");
        k8s_lease_release(&l);
        cJSON_Delete(j);
        free(body);
}

/* Every line of a recorded watch stream decodes; the 410 ERROR line carries an Expired Status. */
static void test_watch_lines(void **state)
{
        NEED_TRANSCRIPTS();
        char *body = tr_response("k-lease-watch.json", 2, NULL);
        int lines = 0;

        for (char *line = body, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
                *nl = '\0';
                cJSON *j = cJSON_Parse(line);
                struct k8s_lease l;
                assert_string_equal(k8s_json_str(j, "type"), "MODIFIED");
                assert_int_equal(
                    k8s_lease_from_cjson(cJSON_GetObjectItemCaseSensitive(j, "object"), &l), 0);
                assert_string_equal(l.name, "redis-orchestrator-leader");
                assert_string_equal(l.resource_version, "243");
                k8s_lease_release(&l);
                cJSON_Delete(j);
                lines++;
        }
        assert_int_equal(lines, 1);
        free(body);

        body = tr_response("k2-lease-watch-expired.json", 2, NULL);
        cJSON *j = cJSON_Parse(body);
        struct k8s_error err = {0};
        assert_string_equal(k8s_json_str(j, "type"), "ERROR");
        k8s_status_decode(cJSON_GetObjectItemCaseSensitive(j, "object"), &err);
        assert_int_equal(err.http_status, 410);
        assert_string_equal(err.reason, "Expired");
        assert_string_equal(err.message, "too old resource version: 198 (246)");
        cJSON_Delete(j);
        free(body);
}

/* ---- Pods ------------------------------------------------------------------------------- */

static void test_pod_bodies(void **state)
{
        NEED_TRANSCRIPTS();
        char *body = tr_response("00-setup-namespace-pod.json", 2, NULL);
        struct k8s_pod p;

        assert_int_equal(k8s_pod_from_json(body, strlen(body), &p), 0);
        assert_string_equal(p.name, "orchestrator-0");
        assert_string_equal(p.phase, "Pending");
        assert_null(p.pod_ip); /* no kubelet: never got an IP */
        assert_int_equal(p.n_labels, 1);
        assert_string_equal(k8s_pod_label(&p, "app"), "redis-orchestrator");
        assert_null(k8s_pod_label(&p, "a"));
        k8s_pod_release(&p);
        free(body);

        body = tr_response("h-pod-list-label-selector.json", 2, NULL);
        cJSON *j = cJSON_Parse(body);
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "items");
        assert_int_equal(cJSON_GetArraySize(items), 1);
        char *item = cJSON_PrintUnformatted(cJSON_GetArrayItem(items, 0));
        assert_int_equal(k8s_pod_from_json(item, strlen(item), &p), 0);
        assert_string_equal(k8s_pod_label(&p, "a"), "b");
        assert_string_equal(k8s_pod_label(&p, "app"), "redis-orchestrator");
        k8s_pod_release(&p);
        free(item);
        cJSON_Delete(j);
        free(body);
}

/* ---- Status bodies and errno ------------------------------------------------------------ */

struct status_case {
        const char *file;
        int step;
        int status;
        const char *reason;
        int err;
        const char *cause; /* prefix of details.causes[0].message, or "" */
};

static void test_status_bodies(void **state)
{
        NEED_TRANSCRIPTS();
        static const struct status_case cases[] = {
            {"f-lease-get-missing.json", 0, 404, "NotFound", -ENOENT, ""},
            {"e-lease-create-exists.json", 0, 409, "AlreadyExists", -EEXIST, ""},
            {"d-lease-update-conflict.json", 0, 409, "Conflict", -ESTALE, ""},
            {"d-lease-update-conflict.json", 1, 422, "Invalid", -EINVAL,
             "Invalid value: 0x0: must be specified for an update"},
            {"a3-lease-edge-cases.json", 4, 422, "Invalid", -EINVAL,
             "Invalid value: 0: must be greater than 0"},
            {"j-rbac-orchestrator.json", 0, 403, "Forbidden", -EACCES, ""},
            {"j-rbac-orchestrator.json", 2, 401, "Unauthorized", -EKEYREJECTED, ""},
            {"d-lease-update-conflict.json", 2, 500, "", -EAGAIN, ""},
            {"a5-lease-create-update-metadata.json", 0, 500, "", -EAGAIN, ""},
            {"a3-lease-edge-cases.json", 8, 415, "UnsupportedMediaType", -EPROTO, ""},
            {"a3-lease-edge-cases.json", 10, 400, "BadRequest", -EINVAL, ""},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const struct status_case *t = &cases[i];
                int status;
                char *body = tr_response(t->file, t->step, &status);
                cJSON *j = cJSON_Parse(body);
                struct k8s_error err = {0};

                assert_int_equal(status, t->status);
                assert_string_equal(k8s_json_str(j, "kind"), "Status");
                k8s_status_decode(j, &err);
                assert_int_equal(err.http_status, t->status);
                assert_string_equal(err.reason, t->reason);
                assert_true(err.message[0] != '\0');
                assert_int_equal(strncmp(err.cause, t->cause, strlen(t->cause)), 0);
                if (!t->cause[0])
                        assert_string_equal(err.cause, "");
                assert_int_equal(k8s_status_to_errno(status, err.reason), t->err);
                cJSON_Delete(j);
                free(body);
        }
}

static void test_errno_mapping(void **state)
{
        assert_int_equal(k8s_status_to_errno(429, "TooManyRequests"), -EAGAIN);
        assert_int_equal(k8s_status_to_errno(503, "ServiceUnavailable"), -EAGAIN);
        assert_int_equal(k8s_status_to_errno(504, NULL), -EAGAIN);
        assert_int_equal(k8s_status_to_errno(409, NULL), -ESTALE);
        assert_int_equal(k8s_status_to_errno(410, "Expired"), -EPROTO);
        assert_int_equal(k8s_status_to_errno(302, NULL), -EPROTO);
}

/* ---- Helpers ---------------------------------------------------------------------------- */

static void test_url_escape_base64(void **state)
{
        char *s = k8s_url_escape("a=b,persistd.io/leader=true");
        assert_string_equal(s, "a%3Db%2Cpersistd.io%2Fleader%3Dtrue");
        free(s);

        unsigned char *out;
        size_t len;
        assert_int_equal(k8s_base64_decode("aHVudGVyMg==", 12, 100, &out, &len), 0);
        assert_int_equal(len, 7);
        assert_string_equal((char *)out, "hunter2");
        free(out);
        assert_int_equal(k8s_base64_decode("aHVudGVyMg", 10, 100, &out, &len), 0);
        assert_string_equal((char *)out, "hunter2");
        free(out);
        assert_int_equal(k8s_base64_decode("aHVu dGVy", 9, 100, &out, &len), -EINVAL);
        assert_int_equal(k8s_base64_decode("aHVudGVyMg==", 12, 6, &out, &len), -EFBIG);
        assert_int_equal(k8s_base64_decode("", 0, 6, &out, &len), 0);
        assert_int_equal(len, 0);
        free(out);
}

/* ---- kubeconfig ------------------------------------------------------------------------- */

static char tmpdir[256];

static int setup_tmpdir(void **state)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-k8s-decode-XXXXXX");
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmpdir(void **state)
{
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const char *text)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static char *tmp_path(const char *name)
{
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", tmpdir, name) > 0);
        return p;
}

static const char kubeconfig_two[] =
    "apiVersion: v1\n"
    "kind: Config\n"
    "current-context: files\n"
    "clusters:\n"
    "- name: c-data\n"
    "  cluster:\n"
    "    server: https://10.0.0.1:6443\n"
    "    certificate-authority-data: Q0EtUEVNLUJZVEVT\n" /* "CA-PEM-BYTES" */
    "- name: c-files\n"
    "  cluster:\n"
    "    server: https://127.0.0.1:6443/\n"
    "    certificate-authority: pki/ca.crt\n"
    "- name: c-insecure\n"
    "  cluster:\n"
    "    server: http://127.0.0.1:8001\n"
    "    insecure-skip-tls-verify: true\n"
    "users:\n"
    "- name: u-data\n"
    "  user:\n"
    "    token: static-secret-token\n"
    "    client-certificate-data: Q0VSVA==\n" /* "CERT" */
    "    client-key-data: S0VZ\n"             /* "KEY" */
    "- name: u-files\n"
    "  user:\n"
    "    tokenFile: /run/token\n"
    "    client-certificate: pki/client.crt\n"
    "    client-key: pki/client.key\n"
    "contexts:\n"
    "- name: data\n"
    "  context: {cluster: c-data, user: u-data, namespace: redis-system}\n"
    "- name: files\n"
    "  context:\n"
    "    cluster: c-files\n"
    "    user: u-files\n"
    "- name: insecure\n"
    "  context: {cluster: c-insecure}\n"
    "- name: no-cluster\n"
    "  context: {cluster: missing, user: u-data}\n"
    "- name: no-user\n"
    "  context: {cluster: c-data, user: nobody}\n";

static struct k8s_config *load_with_context(const char *ctx, int expect, char **ret_error)
{
        _cleanup_free_ char *text = NULL, *path = tmp_path("kubeconfig");
        struct k8s_config *cfg = NULL;
        char *error = NULL;

        assert_true(asprintf(&text, "%s", kubeconfig_two) > 0);
        char *cc = strstr(text, "current-context: files");
        assert_non_null(cc);
        /* Rewrite the current context in place. */
        _cleanup_free_ char *head = strndup(text, (size_t)(cc - text));
        _cleanup_free_ char *full = NULL;
        assert_true(asprintf(&full, "%scurrent-context: %s%s", head, ctx,
                             cc + strlen("current-context: files")) > 0);
        write_file("kubeconfig", full);
        int r = k8s_config_from_kubeconfig(path, &cfg, &error);
        assert_int_equal(r, expect);
        if (ret_error)
                *ret_error = error;
        else
                free(error);
        return cfg;
}

static void test_kubeconfig_files(void **state)
{
        struct k8s_config *cfg = load_with_context("files", 0, NULL);
        _cleanup_free_ char *ca = tmp_path("pki/ca.crt"), *crt = tmp_path("pki/client.crt"),
                            *key = tmp_path("pki/client.key");

        assert_string_equal(cfg->server, "https://127.0.0.1:6443/");
        assert_string_equal(cfg->ca_file, ca); /* relative to the kubeconfig's directory */
        assert_null(cfg->ca_data.data);
        assert_false(cfg->insecure_skip_verify);
        assert_null(cfg->token);
        assert_string_equal(cfg->token_file, "/run/token");
        assert_string_equal(cfg->client_cert_file, crt);
        assert_string_equal(cfg->client_key_file, key);
        assert_null(cfg->namespace);
        k8s_config_free(cfg);
}

static void test_kubeconfig_data(void **state)
{
        struct k8s_config *cfg = load_with_context("data", 0, NULL);

        assert_string_equal(cfg->server, "https://10.0.0.1:6443");
        assert_null(cfg->ca_file);
        assert_int_equal(cfg->ca_data.len, 12);
        assert_memory_equal(cfg->ca_data.data, "CA-PEM-BYTES", 12);
        assert_string_equal(cfg->token, "static-secret-token");
        assert_null(cfg->token_file);
        assert_int_equal(cfg->client_cert_data.len, 4);
        assert_memory_equal(cfg->client_cert_data.data, "CERT", 4);
        assert_int_equal(cfg->client_key_data.len, 3);
        assert_memory_equal(cfg->client_key_data.data, "KEY", 3);
        assert_string_equal(cfg->namespace, "redis-system");
        k8s_config_free(cfg);

        _cleanup_free_ char *path = tmp_path("kubeconfig");
        assert_int_equal(k8s_config_load(path, "/nonexistent", &cfg, NULL), 0);
        assert_string_equal(cfg->namespace, "redis-system");
        k8s_config_free(cfg);

        cfg = load_with_context("insecure", 0, NULL);
        assert_string_equal(cfg->server, "http://127.0.0.1:8001");
        assert_true(cfg->insecure_skip_verify);
        assert_null(cfg->token);
        assert_null(cfg->token_file);
        k8s_config_free(cfg);
}

static void test_kubeconfig_errors(void **state)
{
        char *error = NULL;

        assert_null(load_with_context("nowhere", -ENOENT, &error));
        assert_non_null(strstr(error, "current-context"));
        assert_non_null(strstr(error, "\"nowhere\""));
        assert_non_null(strstr(error, "contexts"));
        free(error);

        assert_null(load_with_context("no-cluster", -ENOENT, &error));
        assert_non_null(strstr(error, "context.cluster"));
        assert_non_null(strstr(error, "\"missing\""));
        free(error);

        assert_null(load_with_context("no-user", -ENOENT, &error));
        assert_non_null(strstr(error, "context.user"));
        assert_non_null(strstr(error, "\"nobody\""));
        /* Never a secret in an error. */
        assert_null(strstr(error, "static-secret-token"));
        free(error);

        _cleanup_free_ char *path = tmp_path("kubeconfig");
        struct k8s_config *cfg = NULL;
        write_file("kubeconfig", "apiVersion: v1\nclusters: []\n");
        assert_int_equal(k8s_config_from_kubeconfig(path, &cfg, &error), -ENOENT);
        assert_non_null(strstr(error, "current-context is not set"));
        free(error);

        write_file("kubeconfig", "current-context: x\ncontexts:\n- name: x\n  context: {cluster: "
                                 "c}\nclusters:\n- name: c\n  cluster:\n    server: https://h\n"
                                 "    certificate-authority-data: '***'\n");
        assert_int_equal(k8s_config_from_kubeconfig(path, &cfg, &error), -EINVAL);
        assert_non_null(strstr(error, "certificate-authority-data"));
        free(error);

        write_file("kubeconfig", "current-context: x\ncontexts: [\n");
        assert_int_equal(k8s_config_from_kubeconfig(path, &cfg, &error), -EINVAL);
        assert_non_null(strstr(error, "kubeconfig:"));
        free(error);

        _cleanup_free_ char *missing = tmp_path("nope");
        assert_int_equal(k8s_config_from_kubeconfig(missing, &cfg, &error), -ENOENT);
        assert_non_null(strstr(error, "nope"));
        free(error);
        assert_null(cfg);
}

static void test_in_cluster(void **state)
{
        struct k8s_config *cfg = NULL;
        char *error = NULL;

        unsetenv("KUBERNETES_SERVICE_HOST");
        unsetenv("KUBERNETES_SERVICE_PORT");
        assert_int_equal(k8s_config_in_cluster(tmpdir, &cfg, &error), -ENOENT);
        assert_non_null(strstr(error, "KUBERNETES_SERVICE_HOST"));
        free(error);

        setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
        setenv("KUBERNETES_SERVICE_PORT", "443", 1);
        char sa[300];
        snprintf(sa, sizeof(sa), "%s/sa", tmpdir);
        assert_int_equal(mkdir(sa, 0700), 0);
        assert_int_equal(k8s_config_in_cluster(sa, &cfg, &error), -ENOENT);
        assert_non_null(strstr(error, "token"));
        free(error);

        write_file("sa/token", "projected-token\n");
        write_file("sa/ca.crt", "PEM");
        write_file("sa/namespace", "redis-system");
        assert_int_equal(k8s_config_in_cluster(sa, &cfg, &error), 0);
        assert_string_equal(cfg->server, "https://10.96.0.1:443");
        _cleanup_free_ char *tok = tmp_path("sa/token"), *ca = tmp_path("sa/ca.crt");
        assert_string_equal(cfg->token_file, tok);
        assert_null(cfg->token); /* read by the client, and re-read */
        assert_string_equal(cfg->ca_file, ca);
        assert_string_equal(cfg->namespace, "redis-system");
        k8s_config_free(cfg);

        /* kubernetes.kubeconfig "" means in cluster. */
        assert_int_equal(k8s_config_load("", sa, &cfg, &error), 0);
        assert_string_equal(cfg->server, "https://10.96.0.1:443");
        k8s_config_free(cfg);

        setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
        assert_int_equal(k8s_config_in_cluster(sa, &cfg, &error), 0);
        assert_string_equal(cfg->server, "https://[fd00::1]:443");
        k8s_config_free(cfg);
        unsetenv("KUBERNETES_SERVICE_HOST");
        unsetenv("KUBERNETES_SERVICE_PORT");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_microtime_format),
            cmocka_unit_test(test_microtime_parse),
            cmocka_unit_test(test_microtime_transcript_spellings),
            cmocka_unit_test(test_lease_get_body),
            cmocka_unit_test(test_lease_released_and_empty),
            cmocka_unit_test(test_lease_list_items),
            cmocka_unit_test(test_watch_lines),
            cmocka_unit_test(test_pod_bodies),
            cmocka_unit_test(test_status_bodies),
            cmocka_unit_test(test_errno_mapping),
            cmocka_unit_test(test_url_escape_base64),
            cmocka_unit_test_setup_teardown(test_kubeconfig_files, setup_tmpdir, teardown_tmpdir),
            cmocka_unit_test_setup_teardown(test_kubeconfig_data, setup_tmpdir, teardown_tmpdir),
            cmocka_unit_test_setup_teardown(test_kubeconfig_errors, setup_tmpdir, teardown_tmpdir),
            cmocka_unit_test_setup_teardown(test_in_cluster, setup_tmpdir, teardown_tmpdir),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

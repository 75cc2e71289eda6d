/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where the API server is and how to authenticate: the in-cluster service account, or the
 * current context of a kubeconfig file read with libyaml's document API.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "core/util.h"
#include "k8s/k8s-internal.h"

static int fail(char **ret_error, int err, const char *fmt, ...) _printf_(3, 4);
static int fail(char **ret_error, int err, const char *fmt, ...)
{
        va_list ap;
        char *s = NULL;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        if (ret_error)
                *ret_error = s;
        else
                free(s);
        return err;
}

static char *path_join(const char *dir, const char *name)
{
        char *s = NULL;
        if (name[0] == '/' || !dir)
                return strdup(name);
        if (asprintf(&s, "%s/%s", dir, name) < 0)
                return NULL;
        return s;
}

/* ---- In cluster ------------------------------------------------------------------------- */

int k8s_config_in_cluster(const char *sa_dir, struct k8s_config **ret, char **ret_error)
{
        _cleanup_(k8s_config_freep) struct k8s_config *cfg = NULL;
        const char *host = getenv("KUBERNETES_SERVICE_HOST");
        const char *port = getenv("KUBERNETES_SERVICE_PORT");
        int r;

        if (!sa_dir)
                sa_dir = K8S_SERVICEACCOUNT_DIR;
        if (strempty(host) || strempty(port))
                return fail(ret_error, -ENOENT,
                            "Not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
                            "are not set (set kubernetes.kubeconfig to run outside a cluster)");
        int64_t p;
        if (parse_int64(port, &p) < 0 || p < 1 || p > 65535)
                return fail(ret_error, -EINVAL, "KUBERNETES_SERVICE_PORT \"%s\" is not a port",
                            port);

        cfg = calloc(1, sizeof(*cfg));
        if (!cfg)
                return -ENOMEM;
        bool v6 = strchr(host, ':') != NULL;
        if (asprintf(&cfg->server, "https://%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "",
                     (int)p) < 0) {
                cfg->server = NULL;
                return -ENOMEM;
        }
        cfg->token_file = path_join(sa_dir, "token");
        cfg->ca_file = path_join(sa_dir, "ca.crt");
        _cleanup_free_ char *ns_file = path_join(sa_dir, "namespace");
        if (!cfg->token_file || !cfg->ca_file || !ns_file)
                return -ENOMEM;

        /* The token is read by the client (and re-read); check here that it is readable. */
        char *token = NULL;
        r = read_secret_file(cfg->token_file, &token);
        secret_free(token);
        if (r < 0)
                return fail(ret_error, r == -ENOMEM ? -ENOMEM : -ENOENT,
                            "Failed to read the service account token \"%s\": %s", cfg->token_file,
                            strerror(-r));
        if (access(cfg->ca_file, R_OK) < 0)
                return fail(ret_error, -ENOENT, "Failed to read the service account CA \"%s\": %s",
                            cfg->ca_file, strerror(errno));

        _cleanup_free_ char *ns = NULL;
        r = read_full_file(ns_file, 256, &ns, NULL);
        if (r >= 0) {
                ns[strcspn(ns, " \t\r\n")] = '\0';
                if (ns[0] != '\0') {
                        if (!is_dns1123_label(ns))
                                return fail(ret_error, -EINVAL,
                                            "Service account namespace \"%s\" is not valid", ns);
                        cfg->namespace = TAKE_PTR(ns);
                }
        } else if (r != -ENOENT) {
                return fail(ret_error, r, "Failed to read \"%s\": %s", ns_file, strerror(-r));
        }

        *ret = TAKE_PTR(cfg);
        return 0;
}

/* ---- kubeconfig ------------------------------------------------------------------------- */

struct kc {
        yaml_document_t doc;
        const char *path;
        char *dir;
        char **ret_error;
};

static yaml_node_t *map_get(struct kc *kc, yaml_node_t *map, const char *key)
{
        if (!map || map->type != YAML_MAPPING_NODE)
                return NULL;
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
             p++) {
                yaml_node_t *k = yaml_document_get_node(&kc->doc, p->key);
                if (k && k->type == YAML_SCALAR_NODE &&
                    streq((const char *)k->data.scalar.value, key))
                        return yaml_document_get_node(&kc->doc, p->value);
        }
        return NULL;
}

/* A scalar member as a string (borrowed), NULL when absent; -EINVAL when not a scalar. */
static int map_str(struct kc *kc, yaml_node_t *map, const char *where, const char *key,
                   const char **ret)
{
        yaml_node_t *n = map_get(kc, map, key);
        *ret = NULL;
        if (!n)
                return 0;
        if (n->type != YAML_SCALAR_NODE)
                return fail(kc->ret_error, -EINVAL, "%s:%zu:%zu: %s.%s: not a string", kc->path,
                            n->start_mark.line + 1, n->start_mark.column + 1, where, key);
        *ret = (const char *)n->data.scalar.value;
        return 0;
}

/*
 * Find `name` in the list `section` (contexts, clusters, users) and return its inner mapping
 * (`inner`: context, cluster, user).
 */
static int find_named(struct kc *kc, const char *section, const char *inner, const char *name,
                      const char *referrer, yaml_node_t **ret)
{
        yaml_node_t *root = yaml_document_get_root_node(&kc->doc);
        yaml_node_t *list = map_get(kc, root, section);

        if (list && list->type == YAML_SEQUENCE_NODE) {
                for (yaml_node_item_t *i = list->data.sequence.items.start;
                     i < list->data.sequence.items.top; i++) {
                        yaml_node_t *entry = yaml_document_get_node(&kc->doc, *i);
                        const char *n = NULL;
                        if (map_str(kc, entry, section, "name", &n) < 0)
                                return -EINVAL;
                        if (n && streq(n, name)) {
                                yaml_node_t *m = map_get(kc, entry, inner);
                                if (!m || m->type != YAML_MAPPING_NODE)
                                        return fail(kc->ret_error, -EINVAL,
                                                    "%s: %s \"%s\": no \"%s\" mapping", kc->path,
                                                    section, name, inner);
                                *ret = m;
                                return 0;
                        }
                }
        }
        return fail(kc->ret_error, -ENOENT, "%s: %s: \"%s\" not found in %s", kc->path, referrer,
                    name, section);
}

/* A file-name member, made relative to the kubeconfig's directory. -EINVAL, -ENOMEM. */
static int file_key(struct kc *kc, yaml_node_t *map, const char *where, const char *key, char **ret)
{
        const char *value;
        if (map_str(kc, map, where, key, &value) < 0)
                return -EINVAL;
        if (strempty(value))
                return 0;
        *ret = path_join(kc->dir, value);
        return *ret ? 0 : -ENOMEM;
}

static int set_data(struct kc *kc, const char *where, const char *key, const char *value,
                    struct k8s_blob *ret)
{
        if (strempty(value))
                return 0;
        int r = k8s_base64_decode(value, strlen(value), K8S_MAX_KUBECONFIG, &ret->data, &ret->len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(kc->ret_error, -EINVAL, "%s: %s.%s: not valid base64", kc->path, where,
                            key);
        return 0;
}

static int parse_kubeconfig(struct kc *kc, struct k8s_config *cfg)
{
        yaml_node_t *root = yaml_document_get_root_node(&kc->doc);
        yaml_node_t *ctx = NULL, *cluster = NULL, *user = NULL;
        const char *current, *cluster_name, *user_name, *ns, *s;
        int r;

        if (!root || root->type != YAML_MAPPING_NODE)
                return fail(kc->ret_error, -EINVAL, "%s: not a kubeconfig (no mapping)", kc->path);
        if (map_str(kc, root, "kubeconfig", "current-context", &current) < 0)
                return -EINVAL;
        if (strempty(current))
                return fail(kc->ret_error, -ENOENT, "%s: current-context is not set", kc->path);

        r = find_named(kc, "contexts", "context", current, "current-context", &ctx);
        if (r < 0)
                return r;
        if (map_str(kc, ctx, "context", "cluster", &cluster_name) < 0 ||
            map_str(kc, ctx, "context", "user", &user_name) < 0 ||
            map_str(kc, ctx, "context", "namespace", &ns) < 0)
                return -EINVAL;
        if (strempty(cluster_name))
                return fail(kc->ret_error, -EINVAL, "%s: context \"%s\": cluster is not set",
                            kc->path, current);
        r = find_named(kc, "clusters", "cluster", cluster_name, "context.cluster", &cluster);
        if (r < 0)
                return r;

        if (map_str(kc, cluster, "cluster", "server", &s) < 0)
                return -EINVAL;
        if (strempty(s))
                return fail(kc->ret_error, -EINVAL, "%s: cluster \"%s\": server is not set",
                            kc->path, cluster_name);
        if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)
                return fail(kc->ret_error, -EINVAL,
                            "%s: cluster \"%s\": server \"%s\" is not an http(s) URL", kc->path,
                            cluster_name, s);
        if (!(cfg->server = strdup(s)))
                return -ENOMEM;
        r = file_key(kc, cluster, "cluster", "certificate-authority", &cfg->ca_file);
        if (r < 0)
                return r;
        if (map_str(kc, cluster, "cluster", "certificate-authority-data", &s) < 0)
                return -EINVAL;
        r = set_data(kc, "cluster", "certificate-authority-data", s, &cfg->ca_data);
        if (r < 0)
                return r;
        if (map_str(kc, cluster, "cluster", "insecure-skip-tls-verify", &s) < 0)
                return -EINVAL;
        /* YAML 1.1 spellings of true, as kubectl's YAML library reads them. */
        cfg->insecure_skip_verify = s && (streq(s, "true") || streq(s, "True") || streq(s, "TRUE"));

        if (!strempty(user_name)) {
                r = find_named(kc, "users", "user", user_name, "context.user", &user);
                if (r < 0)
                        return r;
                if (map_str(kc, user, "user", "token", &s) < 0)
                        return -EINVAL;
                if (!strempty(s) && !(cfg->token = strdup(s)))
                        return -ENOMEM;
                r = file_key(kc, user, "user", "tokenFile", &cfg->token_file);
                if (r < 0)
                        return r;
                r = file_key(kc, user, "user", "client-certificate", &cfg->client_cert_file);
                if (r < 0)
                        return r;
                r = file_key(kc, user, "user", "client-key", &cfg->client_key_file);
                if (r < 0)
                        return r;
                if (map_str(kc, user, "user", "client-certificate-data", &s) < 0)
                        return -EINVAL;
                r = set_data(kc, "user", "client-certificate-data", s, &cfg->client_cert_data);
                if (r < 0)
                        return r;
                if (map_str(kc, user, "user", "client-key-data", &s) < 0)
                        return -EINVAL;
                r = set_data(kc, "user", "client-key-data", s, &cfg->client_key_data);
                if (r < 0)
                        return r;
                bool cert = cfg->client_cert_file || cfg->client_cert_data.data;
                bool key = cfg->client_key_file || cfg->client_key_data.data;
                if (cert != key)
                        return fail(kc->ret_error, -EINVAL,
                                    "%s: user \"%s\": client-certificate and client-key go "
                                    "together",
                                    kc->path, user_name);
        }
        if (!strempty(ns)) {
                if (!is_dns1123_label(ns))
                        return fail(kc->ret_error, -EINVAL,
                                    "%s: context \"%s\": namespace \"%s\" is not valid", kc->path,
                                    current, ns);
                if (!(cfg->namespace = strdup(ns)))
                        return -ENOMEM;
        }
        return 0;
}

int k8s_config_from_kubeconfig(const char *path, struct k8s_config **ret, char **ret_error)
{
        _cleanup_(k8s_config_freep) struct k8s_config *cfg = NULL;
        _cleanup_free_ char *text = NULL;
        struct kc kc = {.path = path, .ret_error = ret_error};
        yaml_parser_t parser;
        size_t len;
        int r;

        if (ret_error)
                *ret_error = NULL;
        r = read_full_file(path, K8S_MAX_KUBECONFIG, &text, &len);
        if (r < 0)
                return fail(ret_error, r, "Failed to read kubeconfig \"%s\": %s", path,
                            strerror(-r));
        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
        if (!yaml_parser_load(&parser, &kc.doc)) {
                r = fail(ret_error, -EINVAL, "%s:%zu:%zu: %s", path, parser.problem_mark.line + 1,
                         parser.problem_mark.column + 1,
                         parser.problem ? parser.problem : "invalid YAML");
                yaml_parser_delete(&parser);
                explicit_bzero(text, len);
                return r;
        }
        yaml_parser_delete(&parser);

        const char *slash = strrchr(path, '/');
        kc.dir = slash ? strndup(path, (size_t)(slash - path)) : NULL;
        cfg = calloc(1, sizeof(*cfg));
        if (!cfg || (slash && !kc.dir))
                r = -ENOMEM;
        else
                r = parse_kubeconfig(&kc, cfg);
        /* The document holds tokens and keys: wipe its scalars before freeing. */
        for (yaml_node_t *n = kc.doc.nodes.start; n < kc.doc.nodes.top; n++)
                if (n->type == YAML_SCALAR_NODE)
                        explicit_bzero(n->data.scalar.value, n->data.scalar.length);
        yaml_document_delete(&kc.doc);
        explicit_bzero(text, len);
        free(kc.dir);
        if (r < 0) {
                if (r == -ENOMEM && ret_error && !*ret_error)
                        fail(ret_error, r, "%s: out of memory", path);
                return r;
        }
        *ret = TAKE_PTR(cfg);
        return 0;
}

int k8s_config_load(const char *kubeconfig, const char *sa_dir, struct k8s_config **ret,
                    char **ret_error)
{
        if (!strempty(kubeconfig))
                return k8s_config_from_kubeconfig(kubeconfig, ret, ret_error);
        return k8s_config_in_cluster(sa_dir, ret, ret_error);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading the configuration: the YAML document is parsed with libyaml's document API, which
 * keeps the line and column of every node, then each key is matched against the table, typed,
 * bounded and checked. All problems are collected, not just the first, so one run of
 * check-config shows everything that is wrong.
 */
#include <assert.h>
#include <limits.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "config/config-table.h"
#include "config/config.h"
#include "core/macro.h"
#include "core/strbuf.h"
#include "core/util.h"

static_assert(sizeof(enum log_level) == sizeof(int), "CONFIG_CHOICE stores an int");
static_assert(sizeof(enum log_format) == sizeof(int), "CONFIG_CHOICE stores an int");

#define MAX_STRING_LEN 4096
#define MAX_POOLS      4096

enum origin {
        ORIGIN_DEFAULT,
        ORIGIN_FILE,
        ORIGIN_ENV,
};

struct position {
        enum origin origin;
        unsigned long line, column; /* 1-based; 0 when not from the file */
};

/* One problem; sorted by position before they are shown, so they read top to bottom. */
struct diagnostic {
        unsigned long line, column; /* ULONG_MAX for problems that have no position */
        size_t seq;
        char *text; /* a whole line, "\n"-terminated */
};

struct loader {
        struct config *config;
        const char *path;
        struct diagnostic *diags;
        size_t n_diags;
        bool oom;
        struct position *pos; /* one per table row */
};

/* Takes `text` (may be NULL after an allocation failure). */
static void add_diag(struct loader *l, unsigned long line, unsigned long column, char *text)
{
        struct diagnostic *n = text ? realloc(l->diags, (l->n_diags + 1) * sizeof(*n)) : NULL;
        if (!n) {
                free(text);
                l->oom = true;
                return;
        }
        l->diags = n;
        l->diags[l->n_diags] = (struct diagnostic){line, column, l->n_diags, text};
        l->n_diags++;
}

static int diag_cmp(const void *a, const void *b)
{
        const struct diagnostic *x = a, *y = b;
        if (x->line != y->line)
                return x->line < y->line ? -1 : 1;
        if (x->column != y->column)
                return x->column < y->column ? -1 : 1;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* All problems, in file order, as one string (caller frees); NULL on OOM. Frees the list. */
static char *take_diagnostics(struct loader *l)
{
        struct strbuf out = STRBUF_INIT;

        if (l->n_diags > 0) /* qsort() must not be handed NULL, even for no elements */
                qsort(l->diags, l->n_diags, sizeof(*l->diags), diag_cmp);
        for (size_t i = 0; i < l->n_diags; i++) {
                strbuf_adds(&out, l->diags[i].text);
                free(l->diags[i].text);
        }
        free(l->diags);
        l->diags = NULL;
        l->n_diags = 0;
        if (l->oom) {
                strbuf_release(&out);
                return NULL;
        }
        return strbuf_detach(&out);
}

static void *field(struct config *c, const struct config_key *k)
{
        return (char *)c + k->offset;
}

_printf_(5, 6) static void diag(struct loader *l, unsigned long line, unsigned long column,
                                const char *key, const char *fmt, ...)
{
        va_list ap;
        _cleanup_free_ char *msg = NULL;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        char *text = NULL;
        if (!msg || asprintf(&text, "%s:%lu:%lu: %s: %s\n", l->path ? l->path : "(defaults)", line,
                             column, key, msg) < 0)
                text = NULL;
        add_diag(l, line, column, text);
}

static void diag_at(struct loader *l, const yaml_node_t *n, const char *key, const char *what)
{
        diag(l, n->start_mark.line + 1, n->start_mark.column + 1, key, "%s", what);
}

static void diag_key(struct loader *l, const struct config_key *k, const char *fmt, const char *arg)
{
        size_t i = (size_t)(k - config_keys);
        const struct position *p = &l->pos[i];
        _cleanup_free_ char *msg = NULL;

        if (asprintf(&msg, fmt, arg) < 0)
                msg = NULL;
        if (p->origin == ORIGIN_ENV) {
                char *text = NULL;
                if (!msg || asprintf(&text, "environment $%s: %s: %s\n", k->env, k->name, msg) < 0)
                        text = NULL;
                add_diag(l, ULONG_MAX, 0, text);
        } else {
                diag(l, p->line, p->column, k->name, "%s", msg ? msg : "out of memory");
        }
}

static const char *node_kind(const yaml_node_t *n)
{
        switch (n->type) {
        case YAML_MAPPING_NODE:
                return "a mapping";
        case YAML_SEQUENCE_NODE:
                return "a list";
        default:
                return "a scalar";
        }
}

static bool scalar_is_plain(const yaml_node_t *n)
{
        return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static bool scalar_is_null(const yaml_node_t *n)
{
        const char *v = (const char *)n->data.scalar.value;
        return scalar_is_plain(n) && (streq(v, "") || streq(v, "~") || strcasecmp(v, "null") == 0);
}

static int parse_bool(const char *v, bool *ret)
{
        static const char *const yes[] = {"true", "yes", "on"};
        static const char *const no[] = {"false", "no", "off"};
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(v, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(v, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static void free_pool_limits(struct config *c)
{
        for (size_t i = 0; i < c->pools.n_limits; i++)
                free(c->pools.limits[i].name);
        free(c->pools.limits);
        c->pools.limits = NULL;
        c->pools.n_limits = 0;
}

static bool pool_name_ok(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 63)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || strchr("-_.", *p)))
                        return false;
        return true;
}

/*
 * Store a scalar `v` into key `k`. Returns 0, or -EINVAL with *why set to a static reason or
 * an allocated one in *why_alloc.
 */
static int set_scalar(struct config *c, const struct config_key *k, const char *v, bool plain,
                      char **why_alloc, const char **why)
{
        switch (k->type) {
        case CONFIG_STRING: {
                char **dst = field(c, k);
                if (strlen(v) > MAX_STRING_LEN) {
                        *why = "longer than 4096 characters";
                        return -EINVAL;
                }
                char *s = strdup(v);
                if (!s)
                        return -ENOMEM;
                free(*dst);
                *dst = s;
                return 0;
        }
        case CONFIG_INT: {
                int64_t n;
                int r = plain ? parse_int64(v, &n) : -EINVAL;
                if (r < 0) {
                        if (asprintf(why_alloc, "expected an integer, got \"%s\"", v) < 0)
                                return -ENOMEM;
                        return -EINVAL;
                }
                if ((double)n < k->min || (double)n > k->max) {
                        if (asprintf(why_alloc, "must be between %.0f and %.0f, got %s", k->min,
                                     k->max, v) < 0)
                                return -ENOMEM;
                        return -EINVAL;
                }
                *(int *)field(c, k) = (int)n;
                return 0;
        }
        case CONFIG_NUMBER: {
                double d;
                int r = plain ? parse_double(v, &d) : -EINVAL;
                if (r < 0) {
                        if (asprintf(why_alloc, "expected a number, got \"%s\"", v) < 0)
                                return -ENOMEM;
                        return -EINVAL;
                }
                if (d < k->min || d > k->max) {
                        if (asprintf(why_alloc, "must be between %g and %g, got %s", k->min, k->max,
                                     v) < 0)
                                return -ENOMEM;
                        return -EINVAL;
                }
                *(double *)field(c, k) = d;
                return 0;
        }
        case CONFIG_BOOL: {
                bool b;
                if (!plain || parse_bool(v, &b) < 0) {
                        if (asprintf(why_alloc, "expected true or false, got \"%s\"", v) < 0)
                                return -ENOMEM;
                        return -EINVAL;
                }
                *(bool *)field(c, k) = b;
                return 0;
        }
        case CONFIG_CHOICE: {
                struct strbuf all = STRBUF_INIT;
                for (int i = 0; k->choices[i]; i++)
                        if (streq(v, k->choices[i])) {
                                *(int *)field(c, k) = i;
                                return 0;
                        }
                for (int i = 0; k->choices[i]; i++)
                        strbuf_addf(&all, "%s%s", i ? ", " : "", k->choices[i]);
                int r = asprintf(why_alloc, "expected one of %s, got \"%s\"", strbuf_str(&all), v);
                strbuf_release(&all);
                return r < 0 ? -ENOMEM : -EINVAL;
        }
        case CONFIG_POOL_LIMITS:
                if (streq(v, "{}")) {
                        free_pool_limits(c);
                        return 0;
                }
                *why = "expected a mapping of pool name to limit";
                return -EINVAL;
        }
        return -EINVAL;
}

static int load_pool_limits(struct loader *l, yaml_document_t *doc, const struct config_key *k,
                            yaml_node_t *value)
{
        struct config *c = l->config;
        size_t n;

        free_pool_limits(c);
        if (value->type == YAML_SCALAR_NODE && scalar_is_null(value))
                return 0;
        if (value->type != YAML_MAPPING_NODE) {
                diag_at(l, value, k->name, "expected a mapping of pool name to limit");
                return 0;
        }
        n = (size_t)(value->data.mapping.pairs.top - value->data.mapping.pairs.start);
        if (n > MAX_POOLS) {
                diag_at(l, value, k->name, "more than 4096 pools");
                return 0;
        }
        c->pools.limits = calloc(n ? n : 1, sizeof(struct pool_limit));
        if (!c->pools.limits)
                return -ENOMEM;

        for (yaml_node_pair_t *p = value->data.mapping.pairs.start;
             p < value->data.mapping.pairs.top; p++) {
                yaml_node_t *kn = yaml_document_get_node(doc, p->key);
                yaml_node_t *vn = yaml_document_get_node(doc, p->value);
                _cleanup_free_ char *name = NULL;
                int64_t limit;

                if (kn->type != YAML_SCALAR_NODE) {
                        diag_at(l, kn, k->name, "a pool name must be a plain string");
                        continue;
                }
                const char *pool = (const char *)kn->data.scalar.value;
                if (asprintf(&name, "%s.%s", k->name, pool) < 0)
                        return -ENOMEM;
                if (!pool_name_ok(pool)) {
                        diag_at(l, kn, name,
                                "invalid pool name (1 to 63 letters, digits, '-', '_' or '.')");
                        continue;
                }
                bool dup = false;
                /* Every counted limit has its name (n_limits grows after the strdup). */
                for (size_t i = 0; i < c->pools.n_limits; i++)
                        /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
                        dup = dup || streq(c->pools.limits[i].name, pool);
                if (dup) {
                        diag_at(l, kn, name, "pool listed twice");
                        continue;
                }
                if (vn->type != YAML_SCALAR_NODE || !scalar_is_plain(vn) ||
                    parse_int64((const char *)vn->data.scalar.value, &limit) < 0) {
                        if (vn->type != YAML_SCALAR_NODE)
                                diag(l, vn->start_mark.line + 1, vn->start_mark.column + 1, name,
                                     "expected an integer, got %s", node_kind(vn));
                        else
                                diag(l, vn->start_mark.line + 1, vn->start_mark.column + 1, name,
                                     "expected an integer, got \"%s\"", vn->data.scalar.value);
                        continue;
                }
                if (limit < (int64_t)k->min || limit > (int64_t)k->max) {
                        diag(l, vn->start_mark.line + 1, vn->start_mark.column + 1, name,
                             "must be between %.0f and %.0f, got %lld", k->min, k->max,
                             (long long)limit);
                        continue;
                }
                struct pool_limit *pl = &c->pools.limits[c->pools.n_limits];
                pl->name = strdup(pool);
                if (!pl->name)
                        return -ENOMEM;
                pl->limit = (int)limit;
                c->pools.n_limits++;
        }
        return 0;
}

/* Secrets must come from files: point someone who wrote one inline at the right key. */
static const char *secret_hint(const char *name)
{
        static const struct {
                const char *key, *hint;
        } hints[] = {
            {"postgres.password", "secrets are read only from files: use postgres.dsn_file"},
            {"progress.password", "secrets are read only from files: use progress.password_file"},
            {"http.token", "secrets are read only from files: use http.token_file"},
            {"kubernetes.token", "the service-account token is read from its mounted file"},
        };
        for (size_t i = 0; i < ELEMENTSOF(hints); i++)
                if (streq(name, hints[i].key))
                        return hints[i].hint;
        return NULL;
}

static bool section_exists(const char *section)
{
        for (size_t i = 0; i < config_sections_count; i++)
                if (streq(config_sections[i], section))
                        return true;
        return false;
}

static int load_key(struct loader *l, yaml_document_t *doc, const char *name, yaml_node_t *kn,
                    yaml_node_t *vn)
{
        const struct config_key *k = config_key_find(name);
        _cleanup_free_ char *why_alloc = NULL;
        const char *why = NULL;
        int r;

        if (!k) {
                const char *hint = secret_hint(name);
                if (hint)
                        diag(l, kn->start_mark.line + 1, kn->start_mark.column + 1, name,
                             "unknown key; %s", hint);
                else
                        diag_at(l, kn, name, "unknown key");
                return 0;
        }
        size_t idx = (size_t)(k - config_keys);
        if (l->pos[idx].origin == ORIGIN_FILE) {
                diag_at(l, kn, name, "key given twice");
                return 0;
        }
        l->pos[idx] =
            (struct position){ORIGIN_FILE, vn->start_mark.line + 1, vn->start_mark.column + 1};

        if (k->type == CONFIG_POOL_LIMITS)
                return load_pool_limits(l, doc, k, vn);

        if (vn->type != YAML_SCALAR_NODE) {
                static const char *const expected[] = {
                    [CONFIG_STRING] = "a string", [CONFIG_INT] = "an integer",
                    [CONFIG_NUMBER] = "a number", [CONFIG_BOOL] = "true or false",
                    [CONFIG_CHOICE] = "a string",
                };
                diag(l, vn->start_mark.line + 1, vn->start_mark.column + 1, name,
                     "expected %s, got %s", expected[k->type], node_kind(vn));
                return 0;
        }
        const char *v = (const char *)vn->data.scalar.value;
        if (scalar_is_null(vn)) {
                if (k->type != CONFIG_STRING) {
                        diag_at(l, vn, name, "a value is required here (got nothing or null)");
                        return 0;
                }
                v = "";
        }
        r = set_scalar(l->config, k, v, scalar_is_plain(vn), &why_alloc, &why);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                diag_at(l, vn, name, why_alloc ? why_alloc : why);
        return 0;
}

static int load_document(struct loader *l, yaml_document_t *doc)
{
        yaml_node_t *root = yaml_document_get_root_node(doc);
        int r;

        if (!root)
                return 0; /* an empty file: every default */
        if (root->type == YAML_SCALAR_NODE && scalar_is_null(root))
                return 0;
        if (root->type != YAML_MAPPING_NODE) {
                diag_at(l, root, "(top level)", "expected a mapping of sections");
                return 0;
        }

        for (yaml_node_pair_t *sp = root->data.mapping.pairs.start;
             sp < root->data.mapping.pairs.top; sp++) {
                yaml_node_t *skn = yaml_document_get_node(doc, sp->key);
                yaml_node_t *svn = yaml_document_get_node(doc, sp->value);

                if (skn->type != YAML_SCALAR_NODE) {
                        diag_at(l, skn, "(top level)", "a section name must be a string");
                        continue;
                }
                const char *section = (const char *)skn->data.scalar.value;
                if (!section_exists(section)) {
                        diag_at(l, skn, section, "unknown section");
                        continue;
                }
                for (yaml_node_pair_t *prev = root->data.mapping.pairs.start; prev < sp; prev++) {
                        yaml_node_t *pk = yaml_document_get_node(doc, prev->key);
                        if (pk->type == YAML_SCALAR_NODE &&
                            streq((const char *)pk->data.scalar.value, section)) {
                                diag_at(l, skn, section, "section given twice");
                                goto next_section;
                        }
                }
                if (svn->type == YAML_SCALAR_NODE && scalar_is_null(svn))
                        continue;
                if (svn->type != YAML_MAPPING_NODE) {
                        diag(l, svn->start_mark.line + 1, svn->start_mark.column + 1, section,
                             "expected a mapping of keys, got %s", node_kind(svn));
                        continue;
                }
                for (yaml_node_pair_t *p = svn->data.mapping.pairs.start;
                     p < svn->data.mapping.pairs.top; p++) {
                        yaml_node_t *kn = yaml_document_get_node(doc, p->key);
                        yaml_node_t *vn = yaml_document_get_node(doc, p->value);
                        _cleanup_free_ char *name = NULL;

                        if (kn->type != YAML_SCALAR_NODE) {
                                diag_at(l, kn, section, "a key must be a string");
                                continue;
                        }
                        if (asprintf(&name, "%s.%s", section, (const char *)kn->data.scalar.value) <
                            0)
                                return -ENOMEM;
                        r = load_key(l, doc, name, kn, vn);
                        if (r < 0)
                                return r;
                }
        next_section:;
        }
        return 0;
}

static int parse_file(struct loader *l)
{
        _cleanup_free_ char *text = NULL;
        yaml_parser_t parser;
        yaml_document_t doc, extra;
        size_t len;
        int r;

        r = read_full_file(l->path, (size_t)1024 * 1024, &text, &len);
        if (r < 0) {
                char *line = NULL;
                if (asprintf(&line, "%s: cannot read the configuration file: %s\n", l->path,
                             r == -EFBIG ? "larger than 1 MiB" : strerror(-r)) < 0)
                        line = NULL;
                add_diag(l, 0, 0, line);
                return 0;
        }
        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
        if (!yaml_parser_load(&parser, &doc)) {
                diag(l, parser.problem_mark.line + 1, parser.problem_mark.column + 1, "(yaml)",
                     "%s%s%s", parser.problem ? parser.problem : "invalid YAML",
                     parser.context ? " " : "", parser.context ? parser.context : "");
                yaml_parser_delete(&parser);
                return 0;
        }
        r = load_document(l, &doc);
        yaml_document_delete(&doc);
        if (r == 0 && yaml_parser_load(&parser, &extra)) {
                if (yaml_document_get_root_node(&extra))
                        diag(l, extra.start_mark.line + 1, extra.start_mark.column + 1, "(yaml)",
                             "only one YAML document is allowed");
                yaml_document_delete(&extra);
        }
        yaml_parser_delete(&parser);
        return r;
}

static int apply_environment(struct loader *l)
{
        for (size_t i = 0; i < config_keys_count; i++) {
                const struct config_key *k = &config_keys[i];
                _cleanup_free_ char *why_alloc = NULL;
                const char *why = NULL, *v;

                if (!k->env || !(v = getenv(k->env)) || !*v)
                        continue;
                l->pos[i] = (struct position){ORIGIN_ENV, 0, 0};
                int r = set_scalar(l->config, k, v, true, &why_alloc, &why);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        diag_key(l, k, "%s", why_alloc ? why_alloc : why);
        }
        return 0;
}

static int check_keys(struct loader *l)
{
        struct config *c = l->config;

        for (size_t i = 0; i < config_keys_count; i++) {
                const struct config_key *k = &config_keys[i];
                _cleanup_free_ char *why = NULL;

                if (k->type != CONFIG_STRING)
                        continue;
                const char *v = *(char *const *)field(c, k);
                if (k->check && k->check(k, c, v, &why) < 0) {
                        if (!why)
                                return -ENOMEM;
                        diag_key(l, k, "%s", why);
                        continue;
                }
                if ((k->flags & CONFIG_PATH) && *v && access(v, R_OK) < 0) {
                        _cleanup_free_ char *msg = NULL;
                        if (asprintf(&msg, "cannot read \"%s\": %s", v, strerror(errno)) < 0)
                                return -ENOMEM;
                        diag_key(l, k, "%s", msg);
                }
                if ((k->flags & CONFIG_SECRET_FILE) && *v) {
                        char **dst = (char **)((char *)c + k->secret_offset);
                        char *secret = NULL;
                        int r = read_secret_file(v, &secret);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0) {
                                _cleanup_free_ char *msg = NULL;
                                if (asprintf(&msg, "cannot read secret file \"%s\": %s", v,
                                             r == -ENODATA   ? "it is empty"
                                             : r == -EFBIG   ? "larger than 64 KiB"
                                             : r == -EBADMSG ? "it contains a NUL byte"
                                                             : strerror(-r)) < 0)
                                        return -ENOMEM;
                                diag_key(l, k, "%s", msg);
                                continue;
                        }
                        secret_free(*dst);
                        *dst = secret;
                }
        }
        return 0;
}

static const struct config_key *first_set(struct loader *l, const char *const *names)
{
        for (size_t i = 0; names[i]; i++) {
                const struct config_key *k = config_key_find(names[i]);
                if (l->pos[k - config_keys].origin != ORIGIN_DEFAULT)
                        return k;
        }
        return config_key_find(names[0]);
}

static void check_consistency(struct loader *l)
{
        const struct config *c = l->config;
        double lease = c->election.lease_duration_s, renew = c->election.renew_deadline_s,
               retry = c->election.retry_period_s;
        char msg[256];

        static const char *const election_keys[] = {"election.renew_deadline_s",
                                                    "election.lease_duration_s",
                                                    "election.retry_period_s", NULL};
        if (!(lease > renew)) {
                snprintf(msg, sizeof(msg),
                         "renew_deadline_s (%g) must be less than lease_duration_s (%g), so the "
                         "leader stops acting before a follower may take over",
                         renew, lease);
                diag_key(l, first_set(l, election_keys), "%s", msg);
        }
        if (!(renew > 1.2 * retry)) {
                static const char *const keys[] = {"election.renew_deadline_s",
                                                   "election.retry_period_s", NULL};
                snprintf(msg, sizeof(msg),
                         "renew_deadline_s (%g) must be greater than 1.2 x retry_period_s (%g)",
                         renew, 1.2 * retry);
                diag_key(l, first_set(l, keys), "%s", msg);
        }
        if (c->kubernetes.request_timeout_ms >= renew * 1000.0) {
                static const char *const keys[] = {"kubernetes.request_timeout_ms",
                                                   "election.renew_deadline_s", NULL};
                snprintf(msg, sizeof(msg),
                         "request_timeout_ms (%d) must be shorter than the renew deadline "
                         "(%g s), or one hung request outlasts the leader's term",
                         c->kubernetes.request_timeout_ms, renew);
                diag_key(l, first_set(l, keys), "%s", msg);
        }
        if (c->driver.poll_min_ms > c->driver.poll_max_ms) {
                static const char *const keys[] = {"driver.poll_min_ms", "driver.poll_max_ms",
                                                   NULL};
                snprintf(msg, sizeof(msg), "poll_min_ms (%d) must not exceed poll_max_ms (%d)",
                         c->driver.poll_min_ms, c->driver.poll_max_ms);
                diag_key(l, first_set(l, keys), "%s", msg);
        }
        /* config_new() gave every string key its default, so none is NULL here. */
        /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
        if (*c->postgres.dsn && *c->postgres.dsn_file) {
                static const char *const keys[] = {"postgres.dsn_file", "postgres.dsn", NULL};
                diag_key(l, first_set(l, keys), "%s",
                         "set postgres.dsn or postgres.dsn_file, not both");
        }
}

struct config *config_new(void)
{
        _cleanup_(config_freep) struct config *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        for (size_t i = 0; i < config_keys_count; i++) {
                const struct config_key *k = &config_keys[i];
                _cleanup_free_ char *why_alloc = NULL;
                const char *why = NULL;

                if (set_scalar(c, k, k->def, true, &why_alloc, &why) < 0)
                        return NULL; /* a default outside its own bounds: a bug the tests catch */
                if (k->type == CONFIG_STRING && k->check && *k->def) {
                        /* Derived fields (nightly.start_minute) come from the checks. */
                        _cleanup_free_ char *ignored = NULL;
                        k->check(k, c, k->def, &ignored);
                }
        }
        return TAKE_PTR(c);
}

void config_free(struct config *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < config_keys_count; i++) {
                const struct config_key *k = &config_keys[i];
                if (k->type == CONFIG_STRING)
                        free(*(char **)field(c, k));
                if (k->flags & CONFIG_SECRET_FILE)
                        secret_free(*(char **)((char *)c + k->secret_offset));
        }
        free_pool_limits(c);
        free(c->path);
        free(c);
}

int config_load(const char *path, struct config **ret, char **ret_errors)
{
        _cleanup_(config_freep) struct config *c = config_new();
        _cleanup_free_ struct position *pos = calloc(config_keys_count, sizeof(*pos));
        struct loader l = {.config = c, .path = path, .pos = pos};
        int r;

        if (!c || !pos)
                return -ENOMEM;
        if (path) {
                c->path = strdup(path);
                if (!c->path)
                        return -ENOMEM;
                r = parse_file(&l);
                if (r < 0)
                        goto fail;
        }
        r = apply_environment(&l);
        if (r < 0)
                goto fail;
        r = check_keys(&l);
        if (r < 0)
                goto fail;
        check_consistency(&l);

        if (l.n_diags > 0 || l.oom) {
                char *errors = take_diagnostics(&l);
                if (!errors)
                        return -ENOMEM;
                *ret_errors = errors;
                return -EINVAL;
        }
        *ret = TAKE_PTR(c);
        return 0;
fail:
        free(take_diagnostics(&l));
        return r;
}

int config_pool_limit(const struct config *c, const char *pool)
{
        for (size_t i = 0; i < c->pools.n_limits; i++)
                if (streq(c->pools.limits[i].name, pool))
                        return c->pools.limits[i].limit;
        return c->pools.default_limit;
}

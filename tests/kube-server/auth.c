/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Authentication by static bearer tokens (kube-apiserver's --token-auth-file format) and RBAC
 * authorization from the Role, ClusterRole, RoleBinding and ClusterRoleBinding objects in the
 * store, with kube-apiserver's rules: resourceNames never match a request without a name,
 * "*" matches anything, system:masters may do everything.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ks.h"

struct token {
        char *token;
        struct ks_user user;
};

static struct token *tokens; /* written once at start-up, read-only afterwards */
static size_t n_tokens;
static char anonymous_name[] = "system:anonymous", anonymous_uid[] = "";
static char unauthenticated[] = "system:unauthenticated";
static char *anonymous_groups[] = {unauthenticated};
static const struct ks_user anonymous = {anonymous_name, anonymous_uid, anonymous_groups, 1};

/* One CSV field, with "..." quoting; returns the next position or NULL at the end. */
static char *csv_field(char *p, char **field)
{
        char *out;

        if (!p)
                return *field = NULL;
        if (*p == '"') {
                out = ++p;
                char *w = out;
                while (*p && !(*p == '"' && p[1] != '"')) {
                        if (*p == '"')
                                p++;
                        *w++ = *p++;
                }
                if (*p == '"')
                        p++;
                *w = '\0';
                *field = out;
                /* w may sit before p: the separator follows p */
                return *p == ',' ? p + 1 : NULL;
        }
        *field = p;
        char *comma = strchr(p, ',');
        if (!comma)
                return NULL;
        *comma = '\0';
        return comma + 1;
}

static void free_token(struct token *t)
{
        free(t->token);
        free(t->user.name);
        free(t->user.uid);
        for (size_t i = 0; i < t->user.n_groups; i++)
                free(t->user.groups[i]);
        free(t->user.groups);
}

int ks_auth_load(const char *path)
{
        FILE *f = fopen(path, "re");
        char line[4096];

        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                char *tok, *name, *uid, *groups, *p;
                line[strcspn(line, "\r\n")] = '\0';
                if (!*line || *line == '#')
                        continue;
                p = csv_field(line, &tok);
                p = csv_field(p, &name);
                p = csv_field(p, &uid);
                csv_field(p, &groups);
                if (!tok || !name || !*tok)
                        continue;
                struct token *n = realloc(tokens, (n_tokens + 1) * sizeof(*n));
                if (!n)
                        abort();
                tokens = n;
                struct token *t = &tokens[n_tokens++];
                *t = (struct token){strdup(tok), {strdup(name), strdup(uid ? uid : ""), NULL, 0}};
                for (char *save = NULL, *g = groups ? strtok_r(groups, ",", &save) : NULL; g;
                     g = strtok_r(NULL, ",", &save)) {
                        char **ng = realloc(t->user.groups, (t->user.n_groups + 1) * sizeof(*ng));
                        if (!ng)
                                abort();
                        t->user.groups = ng;
                        ng[t->user.n_groups++] = strdup(g);
                }
        }
        fclose(f);
        return 0;
}

void ks_auth_free(void)
{
        for (size_t i = 0; i < n_tokens; i++)
                free_token(&tokens[i]);
        free(tokens);
        tokens = NULL;
        n_tokens = 0;
}

const struct ks_user *ks_auth_user(const char *authorization)
{
        if (!authorization)
                return &anonymous;
        if (strncasecmp(authorization, "Bearer ", 7) != 0)
                return NULL;
        const char *tok = authorization + 7;
        while (*tok == ' ')
                tok++;
        for (size_t i = 0; i < n_tokens; i++)
                if (streq(tokens[i].token, tok))
                        return &tokens[i].user;
        return NULL;
}

static bool list_has(const cJSON *arr, const char *s, bool star)
{
        const cJSON *e;
        cJSON_ArrayForEach(e, arr)
        {
                const char *v = cJSON_GetStringValue(e);
                if (v && (streq(v, s) || (star && streq(v, "*"))))
                        return true;
        }
        return false;
}

static bool rule_allows(const cJSON *rule, const char *verb, const char *group, const char *res,
                        const char *name)
{
        const cJSON *names = cJSON_GetObjectItemCaseSensitive(rule, "resourceNames");

        if (!list_has(cJSON_GetObjectItemCaseSensitive(rule, "verbs"), verb, true) ||
            !list_has(cJSON_GetObjectItemCaseSensitive(rule, "apiGroups"), group, true) ||
            !list_has(cJSON_GetObjectItemCaseSensitive(rule, "resources"), res, true))
                return false;
        if (cJSON_GetArraySize(names) == 0)
                return true;
        return *name && list_has(names, name, false);
}

static bool subject_matches(const cJSON *subjects, const struct ks_user *u, const char *bns)
{
        const cJSON *s;
        cJSON_ArrayForEach(s, subjects)
        {
                const char *kind =
                    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "kind"));
                const char *name =
                    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "name"));
                if (!kind || !name)
                        continue;
                if (streq(kind, "User") && streq(name, u->name))
                        return true;
                if (streq(kind, "ServiceAccount")) {
                        /* A service account authenticates as system:serviceaccount:NS:NAME. */
                        const char *ns =
                            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "namespace"));
                        char sa[512];
                        snprintf(sa, sizeof(sa), "system:serviceaccount:%s:%s",
                                 ns && *ns ? ns
                                 : bns     ? bns
                                           : "",
                                 name);
                        if (streq(sa, u->name))
                                return true;
                }
                if (streq(kind, "Group"))
                        for (size_t i = 0; i < u->n_groups; i++)
                                if (streq(name, u->groups[i]))
                                        return true;
                if (streq(kind, "Group") && streq(name, "system:authenticated") && u != &anonymous)
                        return true;
        }
        return false;
}

struct authz {
        const struct ks_user *u;
        const char *verb, *group, *res, *ns, *name;
        bool allowed;
        char *why;
};

static void check_binding(cJSON *b, void *ctx)
{
        struct authz *a = ctx;
        const cJSON *ref = cJSON_GetObjectItemCaseSensitive(b, "roleRef");
        const char *rkind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ref, "kind"));
        const char *rname = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ref, "name"));
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(b, "metadata");
        const char *bname = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "name"));
        const char *bns = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "namespace"));
        const cJSON *role = NULL, *rule;

        if (a->allowed || !rkind || !rname || !bname ||
            !subject_matches(cJSON_GetObjectItemCaseSensitive(b, "subjects"), a->u, bns))
                return;
        if (streq(rkind, "Role") && bns)
                role = ks_store_get("roles", bns, rname);
        else if (streq(rkind, "ClusterRole"))
                role = ks_store_get("clusterroles", "", rname);
        cJSON_ArrayForEach(rule, cJSON_GetObjectItemCaseSensitive(role, "rules"))
        {
                if (rule_allows(rule, a->verb, a->group, a->res, a->name)) {
                        a->allowed = true;
                        if (asprintf(&a->why,
                                     "RBAC: allowed by %s \"%s%s%s\" of %s \"%s\" to User \"%s\"",
                                     bns ? "RoleBinding" : "ClusterRoleBinding", bname,
                                     bns ? "/" : "", bns ? bns : "", rkind, rname, a->u->name) < 0)
                                a->why = NULL;
                        return;
                }
        }
}

bool ks_authorize(const struct ks_user *u, const char *verb, const char *group, const char *res,
                  const char *ns, const char *name, char **why)
{
        struct authz a = {u, verb, group, res, ns, name ? name : "", false, NULL};

        for (size_t i = 0; i < u->n_groups; i++)
                if (streq(u->groups[i], "system:masters")) {
                        if (why)
                                *why = NULL;
                        return true;
                }
        ks_store_lock();
        if (*ns)
                ks_store_foreach("rolebindings", ns, check_binding, &a);
        ks_store_foreach("clusterrolebindings", "", check_binding, &a);
        ks_store_unlock();
        if (why)
                *why = a.why;
        else
                free(a.why);
        return a.allowed;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Route matching: walk the path and each pattern segment by segment. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/macro.h"
#include "http/router.h"

/* Does `pattern` match `path`? Captures into m->params when `capture`. */
static bool pattern_match(const char *pattern, const char *path, struct router_match *m,
                          bool capture)
{
        size_t n_params = 0;
        const char *p = pattern, *s = path;

        for (;;) {
                if (*p != '/' || *s != '/')
                        return false;
                p++;
                s++;
                size_t plen = strcspn(p, "/"), slen = strcspn(s, "/");
                if (slen == 0)
                        return false;
                if (plen >= 2 && p[0] == '{' && p[plen - 1] == '}') {
                        if (n_params >= ROUTER_MAX_PARAMS)
                                return false;
                        if (capture) {
                                memcpy(m->params[n_params], s, slen);
                                m->params[n_params][slen] = '\0';
                        }
                        n_params++;
                } else if (plen != slen || memcmp(p, s, plen) != 0) {
                        return false;
                }
                p += plen;
                s += slen;
                if (*p == '\0' || *s == '\0') {
                        if (*p != *s)
                                return false;
                        if (capture)
                                m->n_params = n_params;
                        return true;
                }
        }
}

int router_find(const struct router_route *routes, size_t n, const char *method, const char *path,
                struct router_match *m)
{
        memset(m, 0, sizeof(*m));
        if (strnlen(path, ROUTER_PATH_MAX) >= ROUTER_PATH_MAX)
                return -ENAMETOOLONG;
        for (const char *s = path; *s;) {
                size_t len = strcspn(s, "/");
                if (len >= ROUTER_SEGMENT_MAX)
                        return -ENAMETOOLONG;
                s += len;
                if (*s == '/')
                        s++;
        }

        bool path_known = false;
        for (size_t i = 0; i < n; i++) {
                if (!pattern_match(routes[i].pattern, path, m, false))
                        continue;
                path_known = true;
                if (streq(routes[i].method, method)) {
                        pattern_match(routes[i].pattern, path, m, true);
                        m->route = &routes[i];
                        return 0;
                }
        }
        if (!path_known)
                return -ENOENT;
        /* 405: list each method once, in table order. */
        for (size_t i = 0; i < n; i++) {
                if (!pattern_match(routes[i].pattern, path, m, false) ||
                    strstr(m->allow, routes[i].method))
                        continue;
                size_t l = strlen(m->allow);
                snprintf(m->allow + l, sizeof(m->allow) - l, "%s%s", l ? ", " : "",
                         routes[i].method);
        }
        return -EPERM;
}

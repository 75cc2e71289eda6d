/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON helpers of kube-test-server: Status bodies, Go's MicroTime parsing and its error texts,
 * name and label validation, merge and JSON patches, label and field selectors.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "ks.h"

char *ks_print(const cJSON *j)
{
        char *raw = cJSON_PrintUnformatted(j);
        size_t extra = 0;

        if (!raw)
                return NULL;
        for (const char *p = raw; *p; p++)
                extra += (*p == '<' || *p == '>' || *p == '&') ? 5 : 0;
        if (!extra)
                return raw;
        /* These characters only occur inside strings in cJSON's output. */
        char *out = malloc(strlen(raw) + extra + 1), *w = out;
        if (!out) {
                free(raw);
                return NULL;
        }
        for (const char *p = raw; *p; p++) {
                if (*p == '<' || *p == '>' || *p == '&')
                        w += sprintf(w, "\\u00%s", *p == '<' ? "3c" : *p == '>' ? "3e" : "26");
                else
                        *w++ = *p;
        }
        *w = '\0';
        free(raw);
        return out;
}

char *ks_pretty(const char *json)
{
        size_t n = strlen(json), cap = n * 4 + 64, len = 0;
        char *out = malloc(cap);
        int depth = 0;
        bool in_str = false;

        if (!out)
                return NULL;
#define PUT(c)                                                                                     \
        do {                                                                                       \
                if (len + 1 >= cap) {                                                              \
                        cap *= 2;                                                                  \
                        char *grown = realloc(out, cap);                                           \
                        if (!grown) {                                                              \
                                free(out);                                                         \
                                return NULL;                                                       \
                        }                                                                          \
                        out = grown;                                                               \
                }                                                                                  \
                out[len++] = (c);                                                                  \
        } while (0)
#define NEWLINE()                                                                                  \
        do {                                                                                       \
                PUT('\n');                                                                         \
                for (int d_ = 0; d_ < depth; d_++) {                                               \
                        PUT(' ');                                                                  \
                        PUT(' ');                                                                  \
                }                                                                                  \
        } while (0)
        for (size_t i = 0; i < n; i++) {
                char c = json[i];
                if (in_str) {
                        PUT(c);
                        if (c == '\\' && i + 1 < n)
                                PUT(json[++i]);
                        else if (c == '"')
                                in_str = false;
                        continue;
                }
                switch (c) {
                case '"':
                        in_str = true;
                        PUT(c);
                        break;
                case '{':
                case '[':
                        PUT(c);
                        if (i + 1 < n && (json[i + 1] == '}' || json[i + 1] == ']')) {
                                PUT(json[++i]);
                                break;
                        }
                        depth++;
                        NEWLINE();
                        break;
                case '}':
                case ']':
                        depth--;
                        NEWLINE();
                        PUT(c);
                        break;
                case ',':
                        PUT(c);
                        NEWLINE();
                        break;
                case ':':
                        PUT(c);
                        PUT(' ');
                        break;
                default:
                        PUT(c);
                }
        }
#undef PUT
#undef NEWLINE
        out[len] = '\0';
        return out;
}

cJSON *ks_status(int code, const char *reason, const char *message, cJSON *details)
{
        cJSON *s = cJSON_CreateObject();

        cJSON_AddStringToObject(s, "kind", "Status");
        cJSON_AddStringToObject(s, "apiVersion", "v1");
        cJSON_AddObjectToObject(s, "metadata");
        cJSON_AddStringToObject(s, "status", code >= 200 && code < 300 ? "Success" : "Failure");
        if (message)
                cJSON_AddStringToObject(s, "message", message);
        if (reason)
                cJSON_AddStringToObject(s, "reason", reason);
        if (details)
                cJSON_AddItemToObject(s, "details", details);
        if (code >= 300 || code < 200)
                cJSON_AddNumberToObject(s, "code", code);
        return s;
}

cJSON *ks_details(const char *name, const char *group, const char *kind)
{
        cJSON *d = cJSON_CreateObject();

        if (!strempty(name))
                cJSON_AddStringToObject(d, "name", name);
        if (!strempty(group))
                cJSON_AddStringToObject(d, "group", group);
        if (!strempty(kind))
                cJSON_AddStringToObject(d, "kind", kind);
        return d;
}

void ks_time_now(char *buf, size_t size)
{
        time_t t = time(NULL);
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void ks_uuid(char out[37])
{
        unsigned char b[16];

        if (getrandom(b, sizeof(b), 0) != sizeof(b))
                for (size_t i = 0; i < sizeof(b); i++)
                        b[i] = (unsigned char)rand();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                 b[13], b[14], b[15]);
}

/* ---- MicroTime ---------------------------------------------------------------------------- */

#define GO_LAYOUT "2006-01-02T15:04:05.000000Z07:00"

static char *go_quote(const char *s)
{
        /* strconv.Quote for the printable ASCII that reaches here; others as \xNN. */
        size_t n = strlen(s);
        char *q = malloc(n * 4 + 3), *p = q;

        if (!q)
                abort();
        *p++ = '"';
        for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
                if (*c == '"' || *c == '\\') {
                        *p++ = '\\';
                        *p++ = (char)*c;
                } else if (*c < 0x20 || *c >= 0x7f) {
                        p += sprintf(p, "\\x%02x", *c);
                } else {
                        *p++ = (char)*c;
                }
        }
        *p++ = '"';
        *p = '\0';
        return q;
}

static char *parse_error(const char *value, const char *rest, const char *elem)
{
        _cleanup_free_ char *qv = go_quote(value), *qr = go_quote(rest), *qe = go_quote(elem);
        _cleanup_free_ char *ql = go_quote(GO_LAYOUT);
        char *m;

        if (asprintf(&m, "parsing time %s as %s: cannot parse %s as %s", qv, ql, qr, qe) < 0)
                abort();
        return m;
}

static char *range_error(const char *value, const char *what)
{
        _cleanup_free_ char *qv = go_quote(value);
        char *m;

        if (asprintf(&m, "parsing time %s: %s", qv, what) < 0)
                abort();
        return m;
}

static bool digits(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (!isdigit((unsigned char)s[i]))
                        return false;
        return true;
}

static int num(const char *s, size_t n)
{
        int v = 0;
        for (size_t i = 0; i < n; i++)
                v = v * 10 + (s[i] - '0');
        return v;
}

char *ks_microtime_parse(const char *value, char out[32])
{
        /* The layout's elements in order, as Go's time.Parse walks them. */
        static const struct {
                const char *lit; /* literal before the number, or NULL */
                const char *std; /* the number's layout text */
                size_t width;
        } elems[] = {
            {NULL, "2006", 4}, {"-", "01", 2}, {"-", "02", 2},
            {"T", "15", 2},    {":", "04", 2}, {":", "05", 2},
        };
        int v[6];
        const char *p = value;
        long usec;
        int off_s = 0;

        for (size_t i = 0; i < ELEMENTSOF(elems); i++) {
                if (elems[i].lit) {
                        size_t l = strlen(elems[i].lit);
                        if (strncmp(p, elems[i].lit, l) != 0)
                                return parse_error(value, p, elems[i].lit);
                        p += l;
                }
                if (strlen(p) < elems[i].width || !digits(p, elems[i].width))
                        return parse_error(value, p, elems[i].std);
                v[i] = num(p, elems[i].width);
                p += elems[i].width;
        }
        if (v[1] < 1 || v[1] > 12)
                return range_error(value, "month out of range");
        if (v[3] > 23)
                return range_error(value, "hour out of range");
        if (v[4] > 59)
                return range_error(value, "minute out of range");
        if (v[5] > 59)
                return range_error(value, "second out of range");
        /* ".000000": exactly six digits after a period. */
        if (strlen(p) < 7 || (p[0] != '.' && p[0] != ',') || !digits(p + 1, 6))
                return parse_error(value, p, ".000000");
        usec = num(p + 1, 6);
        p += 7;
        /* "Z07:00" */
        if (p[0] == 'Z') {
                p++;
        } else {
                if (strlen(p) < 6 || p[3] != ':' || !digits(p + 1, 2) || !digits(p + 4, 2) ||
                    (p[0] != '+' && p[0] != '-'))
                        return parse_error(value, p, "Z07:00");
                off_s = (num(p + 1, 2) * 3600 + num(p + 4, 2) * 60) * (p[0] == '-' ? -1 : 1);
                p += 6;
        }
        if (*p) {
                _cleanup_free_ char *qr = go_quote(p);
                _cleanup_free_ char *what = NULL;
                if (asprintf(&what, "extra text: %s", qr) < 0)
                        abort();
                return range_error(value, what);
        }
        static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        bool leap = (v[0] % 4 == 0 && v[0] % 100 != 0) || v[0] % 400 == 0;
        if (v[2] < 1 || v[2] > mdays[v[1] - 1] || (v[1] == 2 && v[2] == 29 && !leap))
                return range_error(value, "day out of range");

        struct tm tm = {.tm_year = v[0] - 1900,
                        .tm_mon = v[1] - 1,
                        .tm_mday = v[2],
                        .tm_hour = v[3],
                        .tm_min = v[4],
                        .tm_sec = v[5]};
        time_t t = timegm(&tm) - off_s;
        gmtime_r(&t, &tm);
        char full[128];
        snprintf(full, sizeof(full), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
        snprintf(out, 32, "%.31s", full);
        return NULL;
}

/* ---- validation --------------------------------------------------------------------------- */

static char *invalid(const char *value, const char *why)
{
        _cleanup_free_ char *q = go_quote(value);
        char *m;

        if (asprintf(&m, "Invalid value: %s: %s", q, why) < 0)
                abort();
        return m;
}

static bool dns_label_ok(const char *s, size_t n)
{
        if (n == 0 || n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-'))
                        return false;
        return true;
}

char *ks_check_dns_subdomain(const char *name)
{
        size_t n = strlen(name);
        bool ok = n > 0 && n <= 253;

        for (const char *p = name; ok && *p;) {
                const char *dot = strchr(p, '.');
                size_t l = dot ? (size_t)(dot - p) : strlen(p);
                ok = dns_label_ok(p, l);
                p += l + (dot ? 1 : 0);
                if (dot && !*p)
                        ok = false;
        }
        if (n > 253)
                return invalid(name, "must be no more than 253 characters");
        if (!ok)
                return invalid(
                    name, "a lowercase RFC 1123 subdomain must consist of lower case "
                          "alphanumeric characters, '-' or '.', and must start and end with "
                          "an alphanumeric character (e.g. 'example.com', regex used for "
                          "validation is "
                          "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')");
        return NULL;
}

static bool label_chars_ok(const char *s, size_t n)
{
        if (n == 0)
                return true;
        if (!isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
                        return false;
        return true;
}

char *ks_check_label_value(const char *value)
{
        size_t n = strlen(value);

        if (n > 63)
                return invalid(value, "must be no more than 63 characters");
        if (!label_chars_ok(value, n))
                return invalid(value,
                               "a valid label must be an empty string or consist of alphanumeric "
                               "characters, '-', '_' or '.', and must start and end with an "
                               "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                               "'12345', regex used for validation is "
                               "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')");
        return NULL;
}

char *ks_check_label_key(const char *key)
{
        const char *slash = strchr(key, '/');
        const char *name = slash ? slash + 1 : key;
        size_t n = strlen(name);
        bool ok = n > 0 && n <= 63 && label_chars_ok(name, n);

        if (ok && slash) {
                _cleanup_free_ char *prefix = strndup(key, (size_t)(slash - key));
                _cleanup_free_ char *e = prefix ? ks_check_dns_subdomain(prefix) : NULL;
                ok = prefix && !e;
        }
        if (!ok)
                return invalid(key,
                               "name part must consist of alphanumeric characters, '-', '_' or "
                               "'.', and must start and end with an alphanumeric character (e.g. "
                               "'MyName',  or 'my.name',  or '123-abc', regex used for validation "
                               "is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')");
        return NULL;
}

/* ---- patches ------------------------------------------------------------------------------ */

cJSON *ks_merge_patch(const cJSON *target, const cJSON *patch)
{
        cJSON *out;

        if (!cJSON_IsObject(patch))
                return cJSON_Duplicate(patch, true);
        out = cJSON_IsObject(target) ? cJSON_Duplicate(target, true) : cJSON_CreateObject();
        for (const cJSON *p = patch->child; p; p = p->next) {
                if (cJSON_IsNull(p)) {
                        cJSON_DeleteItemFromObjectCaseSensitive(out, p->string);
                        continue;
                }
                cJSON *merged = ks_merge_patch(cJSON_GetObjectItemCaseSensitive(out, p->string), p);
                if (cJSON_GetObjectItemCaseSensitive(out, p->string))
                        cJSON_ReplaceItemInObjectCaseSensitive(out, p->string, merged);
                else
                        cJSON_AddItemToObject(out, p->string, merged);
        }
        return out;
}

/* Split a JSON pointer into its last token (unescaped, caller frees) and the parent node. */
static cJSON *pointer_parent(cJSON *doc, const char *path, char **last)
{
        cJSON *node = doc;
        const char *p = path;

        *last = NULL;
        if (*p != '/')
                return NULL;
        for (;;) {
                const char *end = strchr(p + 1, '/');
                size_t n = end ? (size_t)(end - p - 1) : strlen(p + 1);
                char *tok = malloc(n + 1), *t = tok;
                if (!tok)
                        abort();
                for (size_t i = 0; i < n; i++) {
                        char c = p[1 + i];
                        if (c == '~' && i + 1 < n && (p[2 + i] == '0' || p[2 + i] == '1')) {
                                c = p[2 + i] == '0' ? '~' : '/';
                                i++;
                        }
                        *t++ = c;
                }
                *t = '\0';
                if (!end) {
                        *last = tok;
                        return node;
                }
                cJSON *next = NULL;
                if (cJSON_IsObject(node)) {
                        next = cJSON_GetObjectItemCaseSensitive(node, tok);
                } else if (cJSON_IsArray(node)) {
                        char *e;
                        long idx = strtol(tok, &e, 10);
                        if (*tok && !*e && idx >= 0)
                                next = cJSON_GetArrayItem(node, (int)idx);
                }
                free(tok);
                if (!next)
                        return NULL;
                node = next;
                p = end;
        }
}

static int array_index(const cJSON *arr, const char *tok, bool allow_end, int *idx)
{
        char *e;
        long v;

        if (allow_end && streq(tok, "-")) {
                *idx = cJSON_GetArraySize(arr);
                return 0;
        }
        v = strtol(tok, &e, 10);
        if (!*tok || *e || v < 0 || v > cJSON_GetArraySize(arr) - (allow_end ? 0 : 1))
                return -EINVAL;
        *idx = (int)v;
        return 0;
}

static int patch_op(cJSON *doc, const cJSON *op)
{
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(op, "op"));
        const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(op, "path"));
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(op, "value");
        _cleanup_free_ char *last = NULL;
        cJSON *parent;
        int idx;

        if (!name || !path || !*path)
                return -EINVAL;
        parent = pointer_parent(doc, path, &last);
        if (!parent)
                return -EINVAL;
        cJSON *cur = cJSON_IsObject(parent) ? cJSON_GetObjectItemCaseSensitive(parent, last)
                     : cJSON_IsArray(parent) && array_index(parent, last, false, &idx) == 0
                         ? cJSON_GetArrayItem(parent, idx)
                         : NULL;
        if (streq(name, "test"))
                return cur && value && cJSON_Compare(cur, value, true) ? 0 : -EINVAL;
        if (streq(name, "remove") || streq(name, "replace")) {
                if (!cur || (streq(name, "replace") && !value))
                        return -EINVAL;
                if (streq(name, "remove")) {
                        if (cJSON_IsObject(parent))
                                cJSON_DeleteItemFromObjectCaseSensitive(parent, last);
                        else
                                cJSON_DeleteItemFromArray(parent, idx);
                        return 0;
                }
                cJSON *dup = cJSON_Duplicate(value, true);
                if (cJSON_IsObject(parent))
                        cJSON_ReplaceItemInObjectCaseSensitive(parent, last, dup);
                else
                        cJSON_ReplaceItemInArray(parent, idx, dup);
                return 0;
        }
        if (streq(name, "add")) {
                if (!value)
                        return -EINVAL;
                cJSON *dup = cJSON_Duplicate(value, true);
                if (cJSON_IsObject(parent)) {
                        if (cur)
                                cJSON_ReplaceItemInObjectCaseSensitive(parent, last, dup);
                        else
                                cJSON_AddItemToObject(parent, last, dup);
                        return 0;
                }
                if (cJSON_IsArray(parent) && array_index(parent, last, true, &idx) == 0) {
                        if (idx == cJSON_GetArraySize(parent))
                                cJSON_AddItemToArray(parent, dup);
                        else
                                cJSON_InsertItemInArray(parent, idx, dup);
                        return 0;
                }
                cJSON_Delete(dup);
                return -EINVAL;
        }
        return -EINVAL; /* move and copy are not needed by any client of this server */
}

int ks_json_patch(cJSON *doc, const cJSON *ops)
{
        const cJSON *op;

        if (!cJSON_IsArray(ops))
                return -EINVAL;
        cJSON_ArrayForEach(op, ops)
        {
                if (!cJSON_IsObject(op) || patch_op(doc, op) < 0)
                        return -EINVAL;
        }
        return 0;
}

/* ---- selectors ---------------------------------------------------------------------------- */

enum sel_op { SEL_EQ, SEL_NE, SEL_EXISTS, SEL_NOT_EXISTS, SEL_IN, SEL_NOTIN };

struct requirement {
        char *key;
        enum sel_op op;
        char **values;
        size_t n_values;
};

struct ks_selector {
        struct requirement *reqs;
        size_t n;
};

void ks_selector_free(struct ks_selector *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < s->n; i++) {
                free(s->reqs[i].key);
                for (size_t j = 0; j < s->reqs[i].n_values; j++)
                        free(s->reqs[i].values[j]);
                free(s->reqs[i].values);
        }
        free(s->reqs);
        free(s);
}

/* The lexer of k8s.io/apimachinery/pkg/labels: identifiers and the operator tokens. */
enum tok { T_END, T_IDENT, T_EQ, T_DEQ, T_NE, T_NOT, T_IN, T_NOTIN, T_OPEN, T_CLOSE, T_COMMA };

struct lexer {
        const char *p;
        char lit[256];
};

static enum tok lex(struct lexer *l)
{
        while (*l->p == ' ' || *l->p == '\t')
                l->p++;
        l->lit[0] = '\0';
        if (!*l->p)
                return T_END;
        static const struct {
                const char *s;
                enum tok t;
        } ops[] = {{"==", T_DEQ}, {"!=", T_NE},   {"=", T_EQ},   {"!", T_NOT},
                   {"(", T_OPEN}, {")", T_CLOSE}, {",", T_COMMA}};
        for (size_t i = 0; i < ELEMENTSOF(ops); i++)
                if (strncmp(l->p, ops[i].s, strlen(ops[i].s)) == 0) {
                        snprintf(l->lit, sizeof(l->lit), "%s", ops[i].s);
                        l->p += strlen(ops[i].s);
                        return ops[i].t;
                }
        size_t n = 0;
        while (l->p[n] && !strchr(" \t=!(),", l->p[n]))
                n++;
        snprintf(l->lit, sizeof(l->lit), "%.*s", (int)MIN(n, sizeof(l->lit) - 1), l->p);
        l->p += n;
        if (streq(l->lit, "in"))
                return T_IN;
        if (streq(l->lit, "notin"))
                return T_NOTIN;
        return T_IDENT;
}

static char *sel_error(const char *fmt, const char *lit)
{
        char *m;
        if (asprintf(&m, fmt, lit) < 0)
                abort();
        return m;
}

static void add_value(struct requirement *r, const char *v)
{
        char **n = realloc(r->values, (r->n_values + 1) * sizeof(*n));
        if (!n || !(n[r->n_values] = strdup(v)))
                abort();
        r->values = n;
        r->n_values++;
}

struct ks_selector *ks_selector_parse(const char *text, char **err)
{
        struct ks_selector *s = calloc(1, sizeof(*s));
        struct lexer l = {.p = text};
        enum tok t;

        if (!s)
                abort();
        *err = NULL;
        t = lex(&l);
        while (t != T_END) {
                struct requirement r = {0};
                if (t == T_NOT) {
                        r.op = SEL_NOT_EXISTS;
                        t = lex(&l);
                }
                if (t != T_IDENT) {
                        *err = sel_error("unable to parse requirement: found '%s', expected: "
                                         "identifier",
                                         l.lit);
                        goto fail;
                }
                r.key = strdup(l.lit);
                if (!r.key)
                        abort();
                t = lex(&l);
                if (r.op == SEL_NOT_EXISTS) {
                        /* "!key" takes no operator. */
                } else if (t == T_END || t == T_COMMA) {
                        r.op = SEL_EXISTS;
                } else if (t == T_EQ || t == T_DEQ || t == T_NE) {
                        r.op = t == T_NE ? SEL_NE : SEL_EQ;
                        t = lex(&l);
                        if (t == T_IDENT) {
                                add_value(&r, l.lit);
                                t = lex(&l);
                        } else if (t == T_END || t == T_COMMA) {
                                add_value(&r, "");
                        } else {
                                *err = sel_error("unable to parse requirement: found '%s', "
                                                 "expected: identifier",
                                                 l.lit);
                        }
                } else if (t == T_IN || t == T_NOTIN) {
                        r.op = t == T_IN ? SEL_IN : SEL_NOTIN;
                        if (lex(&l) != T_OPEN) {
                                *err = sel_error("unable to parse requirement: found '%s', "
                                                 "expected: '('",
                                                 l.lit);
                        } else {
                                for (;;) {
                                        t = lex(&l);
                                        if (t == T_IDENT) {
                                                add_value(&r, l.lit);
                                                t = lex(&l);
                                        }
                                        if (t == T_CLOSE)
                                                break;
                                        if (t != T_COMMA) {
                                                *err = sel_error("unable to parse requirement: "
                                                                 "found '%s', expected: ',', ')' "
                                                                 "or identifier",
                                                                 l.lit);
                                                break;
                                        }
                                }
                                t = lex(&l);
                        }
                } else {
                        *err = sel_error("unable to parse requirement: found '%s', expected: "
                                         "in, notin, =, ==, !=, gt, lt",
                                         l.lit);
                }
                struct requirement *n = realloc(s->reqs, (s->n + 1) * sizeof(*n));
                if (!n)
                        abort();
                s->reqs = n;
                s->reqs[s->n++] = r;
                if (*err)
                        goto fail;
                if (t == T_COMMA) {
                        t = lex(&l);
                        if (t == T_END) {
                                *err = sel_error("found '%s', expected: identifier after ','", "");
                                goto fail;
                        }
                } else if (t != T_END) {
                        *err = sel_error("found '%s', expected: ',' or 'end of string'", l.lit);
                        goto fail;
                }
        }
        return s;
fail:
        ks_selector_free(s);
        return NULL;
}

bool ks_selector_match(const struct ks_selector *s, const cJSON *labels)
{
        for (size_t i = 0; s && i < s->n; i++) {
                const struct requirement *r = &s->reqs[i];
                const char *v =
                    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(labels, r->key));
                bool in = false;
                for (size_t j = 0; v && j < r->n_values; j++)
                        in = in || streq(v, r->values[j]);
                switch (r->op) {
                case SEL_EQ:
                case SEL_IN:
                        if (!in)
                                return false;
                        break;
                case SEL_NE:
                case SEL_NOTIN:
                        if (in)
                                return false;
                        break;
                case SEL_EXISTS:
                        if (!v)
                                return false;
                        break;
                case SEL_NOT_EXISTS:
                        if (v)
                                return false;
                        break;
                }
        }
        return true;
}

static const char *dotted(const cJSON *obj, const char *path)
{
        char buf[256];
        const cJSON *node = obj;

        snprintf(buf, sizeof(buf), "%s", path);
        for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && node;
             tok = strtok_r(NULL, ".", &save))
                node = cJSON_GetObjectItemCaseSensitive(node, tok);
        if (cJSON_IsString(node))
                return node->valuestring;
        return "";
}

bool ks_field_match(const char *selector, const cJSON *obj)
{
        _cleanup_free_ char *copy = strdup(selector ? selector : "");
        char *save = NULL;

        if (!copy)
                abort();
        for (char *req = strtok_r(copy, ",", &save); req; req = strtok_r(NULL, ",", &save)) {
                char *op = strpbrk(req, "!=");
                if (!op)
                        continue;
                bool neg = *op == '!';
                char *val = op + 1;
                if (*val == '=')
                        val++;
                *op = '\0';
                bool eq = streq(dotted(obj, req), val);
                if (eq == neg)
                        return false;
        }
        return true;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* persistctl's HTTP client (libcurl easy interface, one handle per request) and text tables. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "http/client.h"

#define CONNECT_TIMEOUT_MS 5000L

struct pctl_client {
        char *base_url;
        char *auth_header;
        char errstr[CURL_ERROR_SIZE + 64];
};

struct pctl_client *pctl_client_new(const char *base_url, const char *token)
{
        static bool curl_ready;
        if (!curl_ready) {
                curl_global_init(CURL_GLOBAL_DEFAULT);
                curl_ready = true;
        }
        struct pctl_client *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->base_url = strdup(base_url);
        if (!c->base_url) {
                pctl_client_free(c);
                return NULL;
        }
        size_t n = strlen(c->base_url);
        while (n > 0 && c->base_url[n - 1] == '/')
                c->base_url[--n] = '\0';
        if (token && asprintf(&c->auth_header, "Authorization: Bearer %s", token) < 0) {
                c->auth_header = NULL;
                pctl_client_free(c);
                return NULL;
        }
        return c;
}

void pctl_client_free(struct pctl_client *c)
{
        if (!c)
                return;
        free(c->base_url);
        if (c->auth_header) {
                explicit_bzero(c->auth_header, strlen(c->auth_header));
                free(c->auth_header);
        }
        free(c);
}

const char *pctl_client_errstr(const struct pctl_client *c)
{
        return c->errstr;
}

struct sink {
        struct strbuf sb;
        bool too_big;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *userdata)
{
        struct sink *s = userdata;
        size_t n = size * nmemb;
        if (s->sb.len + n > PCTL_RESPONSE_MAX) {
                s->too_big = true;
                return 0;
        }
        strbuf_add(&s->sb, data, n);
        return s->sb.oom ? 0 : n;
}

int pctl_client_request(struct pctl_client *c, const char *method, const char *path,
                        const char *body, long timeout_ms, long *ret_status, char **ret_body)
{
        _cleanup_free_ char *url = NULL;
        struct sink sink = {STRBUF_INIT, false};
        char curl_err[CURL_ERROR_SIZE] = "";
        struct curl_slist *headers = NULL;
        int r = 0;

        if (asprintf(&url, "%s%s", c->base_url, path) < 0) {
                url = NULL;
                return -ENOMEM;
        }
        CURL *h = curl_easy_init();
        if (!h)
                return -ENOMEM;
        headers = curl_slist_append(headers, "Accept: application/json");
        if (body)
                headers = curl_slist_append(headers, "Content-Type: application/json");
        if (c->auth_header)
                headers = curl_slist_append(headers, c->auth_header);
        headers = curl_slist_append(headers, "Expect:");
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        if (body) {
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        } else if (streq(method, "GET")) {
                curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        }

        CURLcode cc = curl_easy_perform(h);
        if (cc != CURLE_OK) {
                if (sink.too_big) {
                        r = -E2BIG;
                        snprintf(c->errstr, sizeof(c->errstr), "the answer is larger than %u bytes",
                                 PCTL_RESPONSE_MAX);
                } else {
                        r = cc == CURLE_OPERATION_TIMEDOUT     ? -ETIMEDOUT
                            : cc == CURLE_COULDNT_CONNECT      ? -ECONNREFUSED
                            : cc == CURLE_COULDNT_RESOLVE_HOST ? -EHOSTUNREACH
                            : cc == CURLE_OUT_OF_MEMORY        ? -ENOMEM
                                                               : -EIO;
                        snprintf(c->errstr, sizeof(c->errstr), "%s",
                                 curl_err[0] ? curl_err : curl_easy_strerror(cc));
                }
        } else {
                long status = 0;
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
                char *out = strbuf_detach(&sink.sb);
                if (!out) {
                        r = -ENOMEM;
                } else {
                        *ret_status = status;
                        *ret_body = out;
                }
        }
        strbuf_release(&sink.sb);
        curl_slist_free_all(headers);
        curl_easy_cleanup(h);
        return r;
}

char *pctl_escape(const char *s)
{
        struct strbuf sb = STRBUF_INIT;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || strchr("-._~", *p))
                        strbuf_addch(&sb, (char)*p);
                else
                        strbuf_addf(&sb, "%%%02X", *p);
        }
        return strbuf_detach(&sb);
}

/* ---- tables ------------------------------------------------------------------------------- */

struct pctl_table {
        size_t n_cols;
        char **cells; /* row-major, row 0 the headers */
        size_t n_rows, alloc_rows;
};

static int table_push(struct pctl_table *t, const char *const *cells)
{
        if (t->n_rows == t->alloc_rows) {
                size_t alloc = t->alloc_rows ? t->alloc_rows * 2 : 8;
                char **n = realloc(t->cells, alloc * t->n_cols * sizeof(char *));
                if (!n)
                        return -ENOMEM;
                t->cells = n;
                t->alloc_rows = alloc;
        }
        char **row = &t->cells[t->n_rows * t->n_cols];
        for (size_t i = 0; i < t->n_cols; i++) {
                row[i] = strdup(cells[i] ? cells[i] : "-");
                if (!row[i]) {
                        while (i > 0)
                                free(row[--i]);
                        return -ENOMEM;
                }
                /* A cell is one line: tabs and newlines become spaces. */
                for (char *p = row[i]; *p; p++)
                        if (*p == '\n' || *p == '\t' || *p == '\r')
                                *p = ' ';
        }
        t->n_rows++;
        return 0;
}

struct pctl_table *pctl_table_new(const char *const *headers, size_t n)
{
        struct pctl_table *t = calloc(1, sizeof(*t));
        if (!t)
                return NULL;
        t->n_cols = n;
        if (n == 0 || table_push(t, headers) < 0) {
                pctl_table_free(t);
                return NULL;
        }
        return t;
}

int pctl_table_add(struct pctl_table *t, const char *const *cells)
{
        return table_push(t, cells);
}

size_t pctl_table_rows(const struct pctl_table *t)
{
        return t->n_rows - 1;
}

/* Display width: count UTF-8 code points (no continuation bytes). */
static size_t width(const char *s)
{
        size_t w = 0;
        for (; *s; s++)
                if (((unsigned char)*s & 0xC0) != 0x80)
                        w++;
        return w;
}

void pctl_table_print(const struct pctl_table *t, FILE *out)
{
        size_t *w = calloc(t->n_cols, sizeof(size_t));
        if (!w)
                return;
        for (size_t r = 0; r < t->n_rows; r++)
                for (size_t c = 0; c < t->n_cols; c++) {
                        size_t cw = width(t->cells[r * t->n_cols + c]);
                        w[c] = cw > w[c] ? cw : w[c];
                }
        for (size_t r = 0; r < t->n_rows; r++) {
                for (size_t c = 0; c < t->n_cols; c++) {
                        const char *cell = t->cells[r * t->n_cols + c];
                        fputs(cell, out);
                        if (c + 1 < t->n_cols)
                                fprintf(out, "%*s", (int)(w[c] - width(cell) + 2), "");
                }
                fputc('\n', out);
        }
        free(w);
}

void pctl_table_free(struct pctl_table *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t);
}

/* ---- JSON answers for people ------------------------------------------------------------- */

static void cell_of(const cJSON *v, char *buf, size_t size)
{
        if (!v || cJSON_IsNull(v)) {
                snprintf(buf, size, "-");
        } else if (cJSON_IsString(v)) {
                snprintf(buf, size, "%s", v->valuestring[0] ? v->valuestring : "-");
        } else if (cJSON_IsBool(v)) {
                snprintf(buf, size, "%s", cJSON_IsTrue(v) ? "yes" : "no");
        } else if (cJSON_IsNumber(v)) {
                double d = v->valuedouble;
                if (d == (double)(long long)d && d < 9e15 && d > -9e15)
                        snprintf(buf, size, "%lld", (long long)d);
                else
                        snprintf(buf, size, "%g", d);
        } else if (cJSON_IsArray(v)) {
                size_t used = 0;
                const cJSON *item;
                buf[0] = '\0';
                cJSON_ArrayForEach(item, v)
                {
                        char one[256];
                        cell_of(item, one, sizeof(one));
                        int n = snprintf(buf + used, size - used, "%s%s", used ? "," : "", one);
                        if (n < 0 || (size_t)n >= size - used)
                                break;
                        used += (size_t)n;
                }
                if (!buf[0])
                        snprintf(buf, size, "-");
        } else {
                char *s = cJSON_PrintUnformatted(v);
                snprintf(buf, size, "%s", s ? s : "-");
                free(s);
        }
}

const char *pctl_json_cell(const cJSON *obj, const char *path, char *buf, size_t size)
{
        char name[128];
        const cJSON *v = obj;
        while (v && *path) {
                size_t len = strcspn(path, ".");
                snprintf(name, sizeof(name), "%.*s", (int)len, path);
                v = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, name) : NULL;
                path += len;
                if (*path == '.')
                        path++;
        }
        cell_of(v, buf, size);
        return buf;
}

static void flatten(const cJSON *obj, const char *prefix, struct pctl_table *t)
{
        const cJSON *m;
        cJSON_ArrayForEach(m, obj)
        {
                char key[256], value[1024];
                snprintf(key, sizeof(key), "%s%s%s", prefix, prefix[0] ? "." : "", m->string);
                if (cJSON_IsObject(m)) {
                        flatten(m, key, t);
                        continue;
                }
                cell_of(m, value, sizeof(value));
                pctl_table_add(t, (const char *[]){key, value});
        }
}

void pctl_print_object(const cJSON *obj, FILE *out)
{
        _cleanup_(pctl_table_freep) struct pctl_table *t =
            pctl_table_new((const char *[]){"FIELD", "VALUE"}, 2);
        if (!t)
                return;
        flatten(obj, "", t);
        pctl_table_print(t, out);
}

int pctl_exit_code(long http_status)
{
        if (http_status >= 200 && http_status < 300)
                return PCTL_EXIT_OK;
        if (http_status == 401 || http_status == 403)
                return PCTL_EXIT_UNREACHABLE;
        if (http_status == 404)
                return PCTL_EXIT_NOT_FOUND;
        if (http_status == 503)
                return PCTL_EXIT_UNAVAILABLE;
        return PCTL_EXIT_FAILED;
}

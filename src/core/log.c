/* SPDX-License-Identifier: Apache-2.0 */
/* Line-oriented JSON/text logger with secret redaction. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/strbuf.h"

static enum log_level log_min_level = LOG_LEVEL_INFO;
static enum log_format log_format = LOG_FORMAT_JSON;
static int log_fd = STDERR_FILENO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {
    [LOG_LEVEL_DEBUG] = "debug",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_WARN] = "warn",
    [LOG_LEVEL_ERROR] = "error",
};

void log_setup(enum log_level min_level, enum log_format format, int fd)
{
        pthread_mutex_lock(&log_lock);
        log_min_level = min_level;
        log_format = format;
        log_fd = fd;
        pthread_mutex_unlock(&log_lock);
}

int log_level_from_string(const char *s, enum log_level *ret)
{
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (streq(s, level_names[i])) {
                        *ret = (enum log_level)i;
                        return 0;
                }
        return -EINVAL;
}

int log_format_from_string(const char *s, enum log_format *ret)
{
        if (streq(s, "json"))
                *ret = LOG_FORMAT_JSON;
        else if (streq(s, "text"))
                *ret = LOG_FORMAT_TEXT;
        else
                return -EINVAL;
        return 0;
}

const char *log_level_to_string(enum log_level level)
{
        if ((size_t)level >= ELEMENTSOF(level_names))
                return "unknown";
        return level_names[level];
}

bool log_would_log(enum log_level level)
{
        /* A benign race: the level only changes at start-up or in tests. */
        return __atomic_load_n(&log_min_level, __ATOMIC_RELAXED) <= level;
}

/* Keys whose value is a secret in key=value and "key":"value" forms. */
static const char *const secret_keys[] = {"password", "passwd", "token", "secret"};

static size_t secret_key_at(const char *p)
{
        for (size_t i = 0; i < ELEMENTSOF(secret_keys); i++) {
                size_t n = strlen(secret_keys[i]);
                if (strncasecmp(p, secret_keys[i], n) == 0)
                        return n;
        }
        return 0;
}

/* Length of a value that ends at white space, a quote, '&', ',' or the end. */
static size_t plain_value_len(const char *p)
{
        size_t n = 0;
        if (*p == '\'' || *p == '"') {
                char q = *p;
                n = 1;
                while (p[n] && p[n] != q) {
                        if (p[n] == '\\' && p[n + 1])
                                n++;
                        n++;
                }
                return p[n] ? n + 1 : n;
        }
        while (p[n] && !isspace((unsigned char)p[n]) && !strchr("\"'&,;}", p[n]))
                n++;
        return n;
}

char *redact_secrets(const char *s)
{
        struct strbuf out = STRBUF_INIT;

        for (const char *p = s; *p;) {
                size_t k;

                /* scheme://user:SECRET@host */
                if (p[0] == ':' && p[1] == '/' && p[2] == '/') {
                        const char *userinfo = p + 3;
                        const char *end = userinfo + strcspn(userinfo, "/?# \t\"'@");
                        if (*end == '@') {
                                const char *colon = memchr(userinfo, ':', (size_t)(end - userinfo));
                                if (colon) {
                                        strbuf_add(&out, p, (size_t)(colon + 1 - p));
                                        strbuf_adds(&out, "***");
                                        p = end;
                                        continue;
                                }
                        }
                }

                /* Bearer SECRET */
                if (strncasecmp(p, "bearer ", 7) == 0 &&
                    (p == s || !isalnum((unsigned char)p[-1]))) {
                        strbuf_add(&out, p, 7);
                        p += 7;
                        size_t n = plain_value_len(p);
                        if (n > 0)
                                strbuf_adds(&out, "***");
                        p += n;
                        continue;
                }

                /* password=SECRET, "password": "SECRET", password: SECRET */
                k = (p == s || !isalnum((unsigned char)p[-1])) ? secret_key_at(p) : 0;
                if (k > 0) {
                        const char *q = p + k;
                        /* The closing quote of a JSON key. A longer key such as
                         * "password_file" names a path, not a secret, and is left alone. */
                        if (*q == '"')
                                q++;
                        while (*q == ' ')
                                q++;
                        if (*q == '=' || *q == ':') {
                                q++;
                                while (*q == ' ')
                                        q++;
                                size_t n = plain_value_len(q);
                                strbuf_add(&out, p, (size_t)(q - p));
                                if (n > 0)
                                        strbuf_adds(&out, (*q == '"') ? "\"***\"" : "***");
                                p = q + n;
                                continue;
                        }
                }

                strbuf_addch(&out, *p);
                p++;
        }
        return strbuf_detach(&out);
}

static void append_json_string(struct strbuf *b, const char *s)
{
        strbuf_addch(b, '"');
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                switch (*p) {
                case '"':
                        strbuf_adds(b, "\\\"");
                        break;
                case '\\':
                        strbuf_adds(b, "\\\\");
                        break;
                case '\n':
                        strbuf_adds(b, "\\n");
                        break;
                case '\r':
                        strbuf_adds(b, "\\r");
                        break;
                case '\t':
                        strbuf_adds(b, "\\t");
                        break;
                default:
                        if (*p < 0x20)
                                strbuf_addf(b, "\\u%04x", *p);
                        else
                                strbuf_addch(b, (char)*p);
                }
        }
        strbuf_addch(b, '"');
}

static void format_timestamp(char *buf, size_t size)
{
        struct timespec ts;
        struct tm tm = {0};

        clock_gettime(CLOCK_REALTIME, &ts);
        (void)gmtime_r(&ts.tv_sec, &tm); /* the current time is always representable */
        size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

void log_emit(enum log_level level, const char *module, const char *fmt, ...)
{
        int saved_errno = errno;
        struct strbuf line = STRBUF_INIT;
        _cleanup_free_ char *msg = NULL, *clean = NULL;
        char ts[64];
        va_list ap;

        if (!log_would_log(level))
                return;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (!msg)
                goto out;
        clean = redact_secrets(msg);
        if (!clean)
                goto out;

        format_timestamp(ts, sizeof(ts));
        pthread_mutex_lock(&log_lock);
        if (log_format == LOG_FORMAT_JSON) {
                strbuf_addf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":", ts,
                            log_level_to_string(level));
                append_json_string(&line, module);
                strbuf_adds(&line, ",\"msg\":");
                append_json_string(&line, clean);
                strbuf_adds(&line, "}\n");
        } else {
                strbuf_addf(&line, "%s %-5s %s: ", ts, log_level_to_string(level), module);
                for (const char *p = clean; *p; p++) {
                        if (*p == '\n')
                                strbuf_addch(&line, ' ');
                        else
                                strbuf_addch(&line, *p);
                }
                strbuf_addch(&line, '\n');
        }
        if (line.buf) {
                size_t off = 0;
                while (off < line.len) {
                        ssize_t w = write(log_fd, line.buf + off, line.len - off);
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w <= 0)
                                break;
                        off += (size_t)w;
                }
        }
        pthread_mutex_unlock(&log_lock);
        strbuf_release(&line);
out:
        errno = saved_errno;
}

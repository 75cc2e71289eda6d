/* SPDX-License-Identifier: Apache-2.0 */
/* Parsing, validation and file helpers. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/macro.h"
#include "core/util.h"

int read_full_file(const char *path, size_t max_size, char **ret, size_t *ret_size)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, alloc = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        for (;;) {
                if (len + 4096 + 1 > alloc) {
                        size_t want = MAX(alloc * 2, len + 4096 + 1);
                        char *n = realloc(buf, want);
                        if (!n)
                                return -ENOMEM;
                        buf = n;
                        alloc = want;
                }
                ssize_t r = read(fd, buf + len, alloc - len - 1);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        break;
                len += (size_t)r;
                if (len > max_size)
                        return -EFBIG;
        }
        if (!buf) {
                buf = strdup("");
                if (!buf)
                        return -ENOMEM;
        }
        buf[len] = '\0';
        if (ret_size)
                *ret_size = len;
        *ret = TAKE_PTR(buf);
        return 0;
}

void secret_free(char *s)
{
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}

int read_secret_file(const char *path, char **ret)
{
        char *buf = NULL;
        size_t len;
        int r;

        r = read_full_file(path, (size_t)64 * 1024, &buf, &len);
        if (r < 0)
                return r;
        /* read_full_file() returns 0 only with a buffer (the analyzer loses it in TAKE_PTR). */
        /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
        if (strlen(buf) != len) {
                secret_free(buf);
                return -EBADMSG;
        }
        while (len > 0 && isspace((unsigned char)buf[len - 1]))
                buf[--len] = '\0';
        if (len == 0) {
                free(buf);
                return -ENODATA;
        }
        *ret = buf;
        return 0;
}

int parse_int64(const char *s, int64_t *ret)
{
        char *end;
        long long v;

        if (!s || !*s || isspace((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (*end != '\0' || end == s)
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_double(const char *s, double *ret)
{
        char *end;
        double v;

        if (!s || !*s || isspace((unsigned char)*s))
                return -EINVAL;
        /* strtod accepts hex, "inf" and "nan": a configuration value is plain decimal. */
        for (const char *p = s; *p; p++)
                if (!isdigit((unsigned char)*p) && !strchr("+-.eE", *p))
                        return -EINVAL;
        errno = 0;
        v = strtod(s, &end);
        if (errno == ERANGE || !isfinite(v))
                return -ERANGE;
        if (*end != '\0' || end == s)
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_host_port(const char *s, char **ret_host, uint16_t *ret_port)
{
        const char *colon, *host_start, *host_end;
        int64_t port;

        if (s[0] == '[') {
                host_start = s + 1;
                host_end = strchr(s, ']');
                if (!host_end || host_end[1] != ':')
                        return -EINVAL;
                colon = host_end + 1;
        } else {
                colon = strrchr(s, ':');
                if (!colon || memchr(s, ':', (size_t)(colon - s)))
                        return -EINVAL;
                host_start = s;
                host_end = colon;
        }
        if (host_end == host_start)
                return -EINVAL;
        for (const char *p = host_start; p < host_end; p++)
                if (!isalnum((unsigned char)*p) && !strchr(".-:_", *p))
                        return -EINVAL;
        if (parse_int64(colon + 1, &port) < 0 || port < 1 || port > 65535)
                return -EINVAL;
        char *host = strndup(host_start, (size_t)(host_end - host_start));
        if (!host)
                return -ENOMEM;
        *ret_host = host;
        *ret_port = (uint16_t)port;
        return 0;
}

static bool is_label_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool dns_label_ok(const char *s, size_t len)
{
        if (len == 0 || len > 63)
                return false;
        if (!is_label_char(s[0]) || !is_label_char(s[len - 1]))
                return false;
        for (size_t i = 0; i < len; i++)
                if (!is_label_char(s[i]) && s[i] != '-')
                        return false;
        return true;
}

bool is_dns1123_label(const char *s)
{
        return dns_label_ok(s, strlen(s));
}

bool is_dns1123_subdomain(const char *s)
{
        size_t len = strlen(s);
        if (len == 0 || len > 253)
                return false;
        for (const char *p = s;;) {
                const char *dot = strchr(p, '.');
                size_t n = dot ? (size_t)(dot - p) : strlen(p);
                if (!dns_label_ok(p, n))
                        return false;
                if (!dot)
                        return true;
                p = dot + 1;
        }
}

static bool label_name_ok(const char *s, size_t len)
{
        if (len == 0 || len > 63)
                return false;
        if (!isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[len - 1]))
                return false;
        for (size_t i = 0; i < len; i++)
                if (!isalnum((unsigned char)s[i]) && !strchr("-_.", s[i]))
                        return false;
        return true;
}

bool is_label_key(const char *s)
{
        const char *slash = strchr(s, '/');
        if (!slash)
                return label_name_ok(s, strlen(s));
        _cleanup_free_ char *prefix = strndup(s, (size_t)(slash - s));
        if (!prefix || !is_dns1123_subdomain(prefix))
                return false;
        return label_name_ok(slash + 1, strlen(slash + 1));
}

bool is_label_value(const char *s)
{
        size_t len = strlen(s);
        return len == 0 || label_name_ok(s, len);
}

bool streq_consttime(const char *a, const char *b)
{
        size_t la = strlen(a), lb = strlen(b);
        unsigned char diff = (unsigned char)(la != lb);
        /* Walk the expected length whatever the input, so timing does not reveal a prefix. */
        for (size_t i = 0; i < lb; i++)
                diff |= (unsigned char)((i < la ? (unsigned char)a[i] : 0) ^ (unsigned char)b[i]);
        return diff == 0;
}

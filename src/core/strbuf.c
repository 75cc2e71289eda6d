/* SPDX-License-Identifier: Apache-2.0 */
/* Growable string buffer with sticky allocation failure. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"

static bool strbuf_grow(struct strbuf *sb, size_t extra)
{
        if (sb->oom)
                return false;
        if (sb->len + extra + 1 <= sb->alloc)
                return true;
        if (extra > SIZE_MAX / 2 - sb->len)
                goto fail;
        size_t want = MAX(sb->alloc * 2, sb->len + extra + 1);
        want = MAX(want, (size_t)64);
        char *n = realloc(sb->buf, want);
        if (!n)
                goto fail;
        sb->buf = n;
        sb->alloc = want;
        return true;
fail:
        sb->oom = true;
        return false;
}

void strbuf_add(struct strbuf *sb, const void *data, size_t len)
{
        if (!strbuf_grow(sb, len))
                return;
        memcpy(sb->buf + sb->len, data, len);
        sb->len += len;
        sb->buf[sb->len] = '\0';
}

void strbuf_adds(struct strbuf *sb, const char *s)
{
        strbuf_add(sb, s, strlen(s));
}

void strbuf_addch(struct strbuf *sb, char c)
{
        strbuf_add(sb, &c, 1);
}

void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
{
        va_list ap, ap2;
        int n;

        va_start(ap, fmt);
        va_copy(ap2, ap);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0 || !strbuf_grow(sb, (size_t)n)) {
                sb->oom = true;
                va_end(ap2);
                return;
        }
        vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap2);
        va_end(ap2);
        sb->len += (size_t)n;
}

void strbuf_reset(struct strbuf *sb)
{
        sb->len = 0;
        if (sb->buf)
                sb->buf[0] = '\0';
}

const char *strbuf_str(const struct strbuf *sb)
{
        return sb->buf ? sb->buf : "";
}

char *strbuf_detach(struct strbuf *sb)
{
        char *r;

        if (sb->oom) {
                strbuf_release(sb);
                return NULL;
        }
        r = sb->buf ? sb->buf : strdup("");
        *sb = (struct strbuf)STRBUF_INIT;
        return r;
}

void strbuf_release(struct strbuf *sb)
{
        free(sb->buf);
        *sb = (struct strbuf)STRBUF_INIT;
}

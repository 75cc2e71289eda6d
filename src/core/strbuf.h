/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A growable, always NUL-terminated byte buffer, after git's strbuf. Allocation failure is
 * sticky: after one, every append is a no-op, `oom` is set, and strbuf_detach() returns NULL,
 * so a caller builds the whole string and checks once.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "core/macro.h"

struct strbuf {
        char *buf; /* NULL until the first append */
        size_t len;
        size_t alloc;
        bool oom;
};

#define STRBUF_INIT                                                                                \
        {                                                                                          \
                NULL, 0, 0, false                                                                  \
        }

void strbuf_add(struct strbuf *sb, const void *data, size_t len);
void strbuf_adds(struct strbuf *sb, const char *s);
void strbuf_addch(struct strbuf *sb, char c);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...) _printf_(2, 3);
void strbuf_reset(struct strbuf *sb);

/* The contents, "" when empty; borrowed, valid until the next append. */
const char *strbuf_str(const struct strbuf *sb);

/* Hand the buffer to the caller (caller frees; "" allocated when empty), reset the strbuf.
 * Returns NULL if any append failed. */
char *strbuf_detach(struct strbuf *sb);
void strbuf_release(struct strbuf *sb);

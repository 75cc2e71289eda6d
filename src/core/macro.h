/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small helpers used everywhere: scope-bound cleanup in the style of systemd
 * (_cleanup_free_, TAKE_PTR), array sizes and min/max.
 */
#pragma once

#include <stdlib.h>
#include <unistd.h>

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

#define MIN(a, b)        ((a) < (b) ? (a) : (b))
#define MAX(a, b)        ((a) > (b) ? (a) : (b))
#define CLAMP(x, lo, hi) ((x) < (lo) ? (lo) : (x) > (hi) ? (hi) : (x))

#define _cleanup_(f)         __attribute__((cleanup(f)))
#define _unused_             __attribute__((unused))
#define _printf_(a, b)       __attribute__((format(printf, a, b)))
#define _warn_unused_result_ __attribute__((warn_unused_result))

static inline void freep(void *p)
{
        free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd) /* NOLINT(readability-non-const-parameter): cleanup signature */
{
        if (*fd >= 0)
                close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

/* Define a cleanup function for a type whose destructor takes the pointer. */
/* NOLINTBEGIN(bugprone-macro-parentheses): `type` is a type name, it cannot be parenthesized */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                    \
        static inline void func##p(type *p)                                                        \
        {                                                                                          \
                if (*p)                                                                            \
                        func(*p);                                                                  \
        }                                                                                          \
        _Static_assert(1, "allows the trailing semicolon")
/* NOLINTEND(bugprone-macro-parentheses) */

/* Hand ownership out of a _cleanup_ variable: returns the value, leaves NULL behind. */
#define TAKE_PTR(p)                                                                                \
        __extension__({                                                                            \
                __typeof__(p) _taken_ = (p);                                                       \
                (p) = NULL;                                                                        \
                _taken_;                                                                           \
        })

#define TAKE_FD(fd)                                                                                \
        __extension__({                                                                            \
                int _taken_fd_ = (fd);                                                             \
                (fd) = -1;                                                                         \
                _taken_fd_;                                                                        \
        })

#define streq(a, b) (strcmp((a), (b)) == 0)
#define strempty(s) ((s) == NULL || (s)[0] == '\0')

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging: one line per message on stderr (or another fd), as a JSON object or as
 * text, with a level and the name of the module that wrote it. Every line passes
 * through redact_secrets() first, so a password that slipped into a message still
 * never reaches the log.
 */
#pragma once

#include <stdbool.h>

#include "core/macro.h"

enum log_level {
        LOG_LEVEL_DEBUG,
        LOG_LEVEL_INFO,
        LOG_LEVEL_WARN,
        LOG_LEVEL_ERROR,
};

enum log_format {
        LOG_FORMAT_JSON,
        LOG_FORMAT_TEXT,
};

/*
 * Set the minimum level, the format and the file descriptor lines go to (borrowed;
 * stderr by default). Call before threads start, or at any time from tests.
 */
void log_setup(enum log_level min_level, enum log_format format, int fd);

/* Parse "debug", "info", "warn", "error". Returns 0, or -EINVAL; *ret is written only on
 * success. */
int log_level_from_string(const char *s, enum log_level *ret);
/* Parse "json" or "text". Returns 0, or -EINVAL. */
int log_format_from_string(const char *s, enum log_format *ret);
const char *log_level_to_string(enum log_level level);

bool log_would_log(enum log_level level);

/*
 * Write one line. `module` is a short static name ("election", "store"); `fmt` is printf-like
 * (use strerror(), not %m, which -Wpedantic refuses). Thread-safe; a line is written with a
 * single write(2). Keeps errno.
 */
void log_emit(enum log_level level, const char *module, const char *fmt, ...) _printf_(3, 4);

/*
 * Each .c file that logs defines LOG_MODULE before including this header, then uses these.
 */
#define log_debug(...) log_emit(LOG_LEVEL_DEBUG, LOG_MODULE, __VA_ARGS__)
#define log_info(...)  log_emit(LOG_LEVEL_INFO, LOG_MODULE, __VA_ARGS__)
#define log_warn(...)  log_emit(LOG_LEVEL_WARN, LOG_MODULE, __VA_ARGS__)
#define log_error(...) log_emit(LOG_LEVEL_ERROR, LOG_MODULE, __VA_ARGS__)

/*
 * Return a copy of `s` (caller frees) with secret values replaced by "***": the value of any
 * password=/passwd=/token= key (libpq DSN and query-string style), the user-info password of a
 * URI (scheme://user:SECRET@host), a "password"/"token" JSON member, and an HTTP
 * "Bearer SECRET" credential. NULL on OOM.
 */
char *redact_secrets(const char *s);

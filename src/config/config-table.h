/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The key table: one row per configuration key. Internal to src/config: the loader, the
 * printer and the documentation generator walk it; nothing else should need it.
 */
#pragma once

#include <stddef.h>

#include "config/config.h"

enum config_type {
        CONFIG_STRING,
        CONFIG_INT,
        CONFIG_NUMBER,
        CONFIG_BOOL,
        CONFIG_CHOICE,      /* a string from `choices`, stored as its index in an int-sized field */
        CONFIG_POOL_LIMITS, /* mapping pool name -> limit */
};

enum {
        CONFIG_SECRET_FILE = 1 << 0, /* value is a path; its contents go to secret_offset */
        CONFIG_PATH = 1 << 1,        /* value is a path that must be readable when set */
};

struct config_key;

/* Validate (and possibly derive from) a string value. Returns 0, or -EINVAL with *reason (caller
 * frees). */
typedef int (*config_check_fn)(const struct config_key *key, struct config *c, const char *value,
                               char **reason);

struct config_key {
        const char *name; /* "section.key" */
        enum config_type type;
        size_t offset; /* of the field in struct config */
        const char *def;
        double min, max; /* CONFIG_INT / CONFIG_NUMBER / CONFIG_POOL_LIMITS: inclusive bounds */
        const char *const *choices;
        const char *env; /* environment variable that overrides the file, or NULL */
        unsigned flags;
        size_t secret_offset;
        config_check_fn check;
        const char *doc;
};

extern const struct config_key config_keys[];
extern const size_t config_keys_count;

/* Sections in the order they are documented. */
extern const char *const config_sections[];
extern const size_t config_sections_count;

const struct config_key *config_key_find(const char *name);

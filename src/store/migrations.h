/* SPDX-License-Identifier: Apache-2.0 */
/*
 * persistd's database schema as an ordered list of versioned migrations compiled into the
 * binary. Version N is the N-th entry; applied versions are recorded in schema_migrations.
 * pgstore_migrate() (pgstore.h) applies them; docs/schema.md documents the result.
 */
#pragma once

#include <stddef.h>

struct pgstore_migration {
        int version;      /* 1, 2, 3, ... in order, never reused */
        const char *name; /* short description, recorded in schema_migrations.name */
        /* SQL text in pieces (C compilers cap literal lengths), NULL-terminated; concatenated it
         * is one or more statements without parameters, run in one transaction. */
        const char *const *sql;
};

/* The migrations, ordered by version (entry i has version i + 1). */
extern const struct pgstore_migration pgstore_migrations[];
extern const size_t pgstore_migrations_count;

/* The newest schema version this binary knows (the last entry's version). */
int pgstore_schema_version(void);

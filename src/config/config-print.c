/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writing the configuration out: the effective values (check-config), the reference page
 * docs/configuration.md and the commented example, all from the key table.
 */
#include <stdio.h>
#include <string.h>

#include "config/config-table.h"
#include "config/config.h"
#include "core/macro.h"
#include "core/strbuf.h"

static const char *type_name(const struct config_key *k)
{
        switch (k->type) {
        case CONFIG_STRING:
                return (k->flags & CONFIG_SECRET_FILE) ? "path (secret file)"
                       : (k->flags & CONFIG_PATH)      ? "path"
                                                       : "string";
        case CONFIG_INT:
                return "integer";
        case CONFIG_NUMBER:
                return "number";
        case CONFIG_BOOL:
                return "boolean";
        case CONFIG_CHOICE:
                return "choice";
        case CONFIG_POOL_LIMITS:
                return "mapping";
        }
        return "?";
}

static const char *short_name(const struct config_key *k)
{
        return strchr(k->name, '.') + 1;
}

static bool in_section(const struct config_key *k, const char *section)
{
        size_t n = strlen(section);
        return strncmp(k->name, section, n) == 0 && k->name[n] == '.';
}

static void write_yaml_string(FILE *out, const char *s)
{
        fputc('"', out);
        for (const char *p = s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        fputc('\\', out);
                fputc(*p, out);
        }
        fputc('"', out);
}

/* The value of a key in `c`, as YAML. Secret contents never appear: only their file's path. */
static void write_value(FILE *out, const struct config *c, const struct config_key *k)
{
        const void *f = (const char *)c + k->offset;

        switch (k->type) {
        case CONFIG_STRING: {
                const char *s = *(char *const *)f;
                _cleanup_free_ char *clean = redact_secrets(s);
                write_yaml_string(out, clean ? clean : "***");
                break;
        }
        case CONFIG_INT:
                fprintf(out, "%d", *(const int *)f);
                break;
        case CONFIG_NUMBER:
                fprintf(out, "%g", *(const double *)f);
                break;
        case CONFIG_BOOL:
                fputs(*(const bool *)f ? "true" : "false", out);
                break;
        case CONFIG_CHOICE:
                fputs(k->choices[*(const int *)f], out);
                break;
        case CONFIG_POOL_LIMITS:
                if (c->pools.n_limits == 0) {
                        fputs("{}", out);
                        break;
                }
                for (size_t i = 0; i < c->pools.n_limits; i++)
                        fprintf(out, "\n    %s: %d", c->pools.limits[i].name,
                                c->pools.limits[i].limit);
                break;
        }
}

void config_print(const struct config *c, FILE *out)
{
        for (size_t s = 0; s < config_sections_count; s++) {
                fprintf(out, "%s:\n", config_sections[s]);
                for (size_t i = 0; i < config_keys_count; i++) {
                        const struct config_key *k = &config_keys[i];
                        if (!in_section(k, config_sections[s]))
                                continue;
                        fprintf(out, "  %s: ", short_name(k));
                        write_value(out, c, k);
                        if ((k->flags & CONFIG_SECRET_FILE) &&
                            *(char *const *)((const char *)c + k->secret_offset))
                                fputs("  # secret read from this file (contents not shown)", out);
                        fputc('\n', out);
                }
        }
}

static void write_bounds(FILE *out, const struct config_key *k)
{
        switch (k->type) {
        case CONFIG_INT:
        case CONFIG_POOL_LIMITS:
                fprintf(out, "%.0f to %.0f", k->min, k->max);
                break;
        case CONFIG_NUMBER:
                fprintf(out, "%g to %g", k->min, k->max);
                break;
        case CONFIG_CHOICE:
                for (int i = 0; k->choices[i]; i++)
                        fprintf(out, "%s`%s`", i ? ", " : "", k->choices[i]);
                break;
        case CONFIG_BOOL:
                fputs("`true`, `false`", out);
                break;
        case CONFIG_STRING:
                break;
        }
}

void config_write_markdown(FILE *out)
{
        fputs("<!-- Generated from src/config/config-table.c by `meson compile -C build "
              "config-docs`; do not edit. -->\n"
              "# Configuration reference\n\n"
              "persistd reads one YAML file (`persistd run -c FILE`). Every key is optional and "
              "has the default shown. `persistd check-config -c FILE` reports every problem as "
              "`FILE:LINE:COLUMN: key: what is wrong` and exits 78; a valid file prints the "
              "effective configuration with secrets masked.\n\n"
              "Secrets (the PostgreSQL DSN with its password, the progress Redis password, the "
              "API token) are never written in the file: keys ending in `_file` name a file "
              "(a mounted Secret) whose contents are the secret; trailing white space is "
              "removed. A key listed with an environment variable takes that variable's value "
              "when it is set and not empty, over the file.\n\n"
              "Besides each key's own bounds, these must hold:\n\n"
              "- `election.lease_duration_s` > `election.renew_deadline_s` > 1.2 × "
              "`election.retry_period_s` > 0;\n"
              "- `kubernetes.request_timeout_ms` < `election.renew_deadline_s` (in ms);\n"
              "- `driver.poll_min_ms` ≤ `driver.poll_max_ms`;\n"
              "- at most one of `postgres.dsn` and `postgres.dsn_file`.\n",
              out);
        for (size_t s = 0; s < config_sections_count; s++) {
                fprintf(out, "\n## `%s`\n\n", config_sections[s]);
                fputs("| key | type | default | allowed | env | description |\n"
                      "|---|---|---|---|---|---|\n",
                      out);
                for (size_t i = 0; i < config_keys_count; i++) {
                        const struct config_key *k = &config_keys[i];
                        if (!in_section(k, config_sections[s]))
                                continue;
                        fprintf(out, "| `%s` | %s | `%s` | ", k->name, type_name(k),
                                *k->def ? k->def : "\"\"");
                        write_bounds(out, k);
                        fprintf(out, " | %s%s%s | %s |\n", k->env ? "`$" : "", k->env ? k->env : "",
                                k->env ? "`" : "", k->doc);
                }
        }
}

/* Write `text` as YAML comments wrapped at about 96 columns, indented by `indent`. */
static void write_comment(FILE *out, const char *text, int indent)
{
        const char *p = text;
        while (*p) {
                size_t width = 94 - (size_t)indent, n = strlen(p);
                if (n > width) {
                        n = width;
                        while (n > 0 && p[n] != ' ')
                                n--;
                        if (n == 0)
                                n = width;
                }
                fprintf(out, "%*s# %.*s\n", indent, "", (int)n, p);
                p += n;
                while (*p == ' ')
                        p++;
        }
}

void config_write_example(FILE *out)
{
        _cleanup_(config_freep) struct config *defaults = config_new();

        fputs("# persistd configuration: every key with its default value.\n"
              "# Generated from src/config/config-table.c (meson compile -C build config-docs);\n"
              "# the reference is docs/configuration.md. Check a file with:\n"
              "#   persistd check-config -c persistd.yaml\n",
              out);
        if (!defaults)
                return;
        for (size_t s = 0; s < config_sections_count; s++) {
                fprintf(out, "\n%s:\n", config_sections[s]);
                for (size_t i = 0; i < config_keys_count; i++) {
                        const struct config_key *k = &config_keys[i];
                        if (!in_section(k, config_sections[s]))
                                continue;
                        write_comment(out, k->doc, 2);
                        if (k->env)
                                fprintf(out, "  # Environment: $%s overrides it.\n", k->env);
                        if (k->type == CONFIG_POOL_LIMITS) {
                                fputs("  # For example: {ssd-a: 2, hdd-b: 1}\n", out);
                        }
                        fprintf(out, "  %s: ", short_name(k));
                        write_value(out, defaults, k);
                        fputc('\n', out);
                }
        }
}

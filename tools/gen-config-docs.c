/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writes the configuration reference (Markdown) and the commented example (YAML) generated
 * from the key table. With "-" as a path, writes to standard output; used by the test that
 * keeps the checked-in files in sync.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

static int write_to(const char *path, void (*writer)(FILE *))
{
        FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "we");
        if (!f) {
                int r = -errno;
                fprintf(stderr, "gen-config-docs: cannot write \"%s\": %s\n", path, strerror(-r));
                return r;
        }
        writer(f);
        if (f != stdout && fclose(f) != 0) {
                fprintf(stderr, "gen-config-docs: cannot write \"%s\": %s\n", path, strerror(errno));
                return -EIO;
        }
        return 0;
}

int main(int argc, char *argv[])
{
        if (argc != 3) {
                fprintf(stderr, "Usage: gen-config-docs MARKDOWN_PATH EXAMPLE_PATH (- for stdout)\n");
                return 2;
        }
        if (write_to(argv[1], config_write_markdown) < 0 ||
            write_to(argv[2], config_write_example) < 0)
                return 1;
        return 0;
}

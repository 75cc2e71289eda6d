/* SPDX-License-Identifier: Apache-2.0 */
/* Small parsing and file helpers shared by every module. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Read a whole file of at most `max_size` bytes (O_CLOEXEC). On success *ret is a NUL-terminated
 * copy (caller frees) and *ret_size its length (may be NULL). Returns 0, -EFBIG when larger than
 * `max_size`, or -errno.
 */
int read_full_file(const char *path, size_t max_size, char **ret, size_t *ret_size);

/*
 * Read a secret (password, token, DSN) from a file: like read_full_file() capped at 64 KiB, with
 * trailing white space removed. An empty secret is -ENODATA. *ret is caller-frees; wipe it with
 * secret_free().
 */
int read_secret_file(const char *path, char **ret);
void secret_free(char *s);

/* Strict decimal parsing of the whole string: no sign surprises, no trailing junk. 0 or
 * -EINVAL/-ERANGE. */
int parse_int64(const char *s, int64_t *ret);
int parse_double(const char *s, double *ret);

/* "host:port" or "[v6]:port": *ret_host is caller-frees. 0 or -EINVAL. */
int parse_host_port(const char *s, char **ret_host, uint16_t *ret_port);

/* RFC 1123 label (namespaces) / subdomain (object names) as Kubernetes checks them. */
bool is_dns1123_label(const char *s);
bool is_dns1123_subdomain(const char *s);
/* A Kubernetes label key: optional DNS subdomain prefix and "/", then a name of 1..63 chars. */
bool is_label_key(const char *s);
/* A Kubernetes label value (may be empty). */
bool is_label_value(const char *s);

/* Constant-time comparison of two NUL-terminated strings (length leaks, content does not). */
bool streq_consttime(const char *a, const char *b);

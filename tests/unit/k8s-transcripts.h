/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Access to the recorded kube-apiserver transcripts (../shared/k8s-api-transcripts) for the
 * k8s tests: the directory is looked up at run time; tests skip when it is absent.
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>

/* The transcripts directory, or NULL when absent (prints once why). */
const char *tr_dir(void);

/* Step `step` of case file `file` ("b-lease-get.json"): the parsed step object (caller frees
 * the returned root with cJSON_Delete; *ret_step borrows from it). Aborts when missing. */
cJSON *tr_load(const char *file, int step, const cJSON **ret_step);

/* The response's exact text (caller frees) and status. Aborts when missing. */
char *tr_response(const char *file, int step, int *ret_status);

/* The request's body text (caller frees), or NULL when it has none. */
char *tr_request_body(const char *file, int step);

/* SPDX-License-Identifier: Apache-2.0 */
/* Loading steps of the recorded kube-apiserver transcripts for the k8s tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util.h"
#include "k8s-transcripts.h"

const char *tr_dir(void)
{
        static char found[4096];
        static int state; /* 0 unknown, 1 found, -1 absent */
        const char *env = getenv("PERSISTD_K8S_TRANSCRIPTS");
        /* K8S_TRANSCRIPTS_DIR is SOURCE_ROOT/../shared/k8s-api-transcripts (the main tree);
         * a git worktree under /work/wt/<name> finds them one level further up. */
        const char *candidates[] = {env, K8S_TRANSCRIPTS_DIR,
                                    SOURCE_ROOT "/../../shared/k8s-api-transcripts"};
        struct stat st;

        if (state != 0)
                return state > 0 ? found : NULL;
        for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
                if (!candidates[i])
                        continue;
                snprintf(found, sizeof(found), "%s", candidates[i]);
                char probe[4200];
                snprintf(probe, sizeof(probe), "%s/README.md", found);
                if (stat(probe, &st) == 0) {
                        state = 1;
                        return found;
                }
        }
        fprintf(stderr,
                "k8s transcripts not found (looked in %s/../shared/k8s-api-transcripts, "
                "its ../../shared and $PERSISTD_K8S_TRANSCRIPTS): skipping the tests "
                "that replay them\n",
                SOURCE_ROOT);
        state = -1;
        return NULL;
}

cJSON *tr_load(const char *file, int step, const cJSON **ret_step)
{
        char path[4400];
        char *text = NULL;
        size_t len;

        snprintf(path, sizeof(path), "%s/%s", tr_dir(), file);
        if (read_full_file(path, 16 * 1024 * 1024, &text, &len) < 0) {
                fprintf(stderr, "cannot read transcript %s\n", path);
                abort();
        }
        cJSON *root = cJSON_ParseWithLength(text, len);
        free(text);
        const cJSON *steps = cJSON_GetObjectItemCaseSensitive(root, "steps");
        const cJSON *s = cJSON_GetArrayItem(steps, step);
        if (!s) {
                fprintf(stderr, "transcript %s has no step %d\n", path, step);
                abort();
        }
        *ret_step = s;
        return root;
}

char *tr_response(const char *file, int step, int *ret_status)
{
        const cJSON *s;
        cJSON *root = tr_load(file, step, &s);
        const cJSON *resp = cJSON_GetObjectItemCaseSensitive(s, "response");
        const cJSON *raw = cJSON_GetObjectItemCaseSensitive(resp, "body_raw");
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(resp, "status");
        if (!cJSON_IsString(raw) || !cJSON_IsNumber(status)) {
                fprintf(stderr, "transcript %s step %d has no response\n", file, step);
                abort();
        }
        char *body = strdup(raw->valuestring);
        if (ret_status)
                *ret_status = status->valueint;
        cJSON_Delete(root);
        return body;
}

char *tr_request_body(const char *file, int step)
{
        const cJSON *s;
        cJSON *root = tr_load(file, step, &s);
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "request");
        const cJSON *raw = cJSON_GetObjectItemCaseSensitive(req, "body_raw");
        char *body = cJSON_IsString(raw) ? strdup(raw->valuestring) : NULL;
        cJSON_Delete(root);
        return body;
}

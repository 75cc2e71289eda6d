/* SPDX-License-Identifier: Apache-2.0 */
/* The end-to-end API tests' helpers (test-e2e-util.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "core/clock.h"
#include "test-e2e-util.h"

struct buf {
        char *data;
        size_t len;
};

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
        struct buf *b = userdata;
        b->data = realloc(b->data, b->len + size * n + 1);
        if (!b->data)
                abort();
        memcpy(b->data + b->len, p, size * n);
        b->len += size * n;
        b->data[b->len] = '\0';
        return size * n;
}

long e2e_http(uint16_t port, const char *token, const char *method, const char *path,
              const char *body, char **out, char **headers)
{
        CURL *c = curl_easy_init();
        struct curl_slist *h = NULL;
        struct buf b = {0}, hb = {0};
        long status = 0;
        char *url = xasprintf("http://127.0.0.1:%u%s", (unsigned)port, path);
        char *auth = token ? xasprintf("Authorization: Bearer %s", token) : NULL;

        if (auth)
                h = curl_slist_append(h, auth);
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &hb);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        if (body)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        if (curl_easy_perform(c) == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        free(auth);
        free(url);
        if (out)
                *out = b.data ? b.data : strdup("");
        else
                free(b.data);
        if (headers)
                *headers = hb.data ? hb.data : strdup("");
        else
                free(hb.data);
        return status;
}

int e2e_raw(uint16_t port, const void *req, size_t len, char **out)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        struct buf b = {0};
        int status = 0;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
                fail_msg("connect to %u: %s", (unsigned)port, strerror(errno));
        for (size_t off = 0; off < len;) {
                ssize_t n = send(fd, (const char *)req + off, len - off, MSG_NOSIGNAL);
                if (n <= 0)
                        break; /* the server may close early on a bad request */
                off += (size_t)n;
        }
        shutdown(fd, SHUT_WR);
        int64_t deadline = clock_mono_us() + 5 * USEC_PER_SEC;
        for (;;) {
                int64_t left = deadline - clock_mono_us();
                struct pollfd p = {.fd = fd, .events = POLLIN};
                if (left <= 0 || poll(&p, 1, (int)(left / 1000) + 1) <= 0)
                        break;
                char chunk[4096];
                ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
                if (n <= 0)
                        break;
                on_data(chunk, 1, (size_t)n, &b);
        }
        close(fd);
        if (b.data && strncmp(b.data, "HTTP/1.", 7) == 0 && b.len > 12)
                status = atoi(b.data + 9);
        if (out)
                *out = b.data ? b.data : strdup("");
        else
                free(b.data);
        return status;
}

bool e2e_is_json_error(const char *body)
{
        cJSON *o = cJSON_Parse(body);
        cJSON *code = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "error"), "code");
        bool yes = cJSON_IsObject(o) && cJSON_IsString(code);
        cJSON_Delete(o);
        return yes;
}

void e2e_cluster_start(struct cluster *cl, int n_replicas, int *leader)
{
        cluster_start(cl, NULL, false);
        for (int i = 0; i < n_replicas; i++)
                replica_spawn(cl, i);
        /* The leader has migrated the schema by now. */
        *leader = wait_settled_leader(cl, -1, 30 * USEC_PER_SEC, NULL);
        uint16_t down = th_free_port();
        char *sql =
            xasprintf("INSERT INTO instances (id, host, port, pool) VALUES "
                      "('redis-a', '127.0.0.1', %u, 'ssd'), ('redis-b', '127.0.0.1', %u, 'ssd'), "
                      "('redis-c', '127.0.0.1', %u, 'hdd'), ('redis-down', '127.0.0.1', %u, 'ssd')",
                      (unsigned)cl->redis[0].port, (unsigned)cl->redis[1].port,
                      (unsigned)cl->redis[2].port, (unsigned)down);
        th_pg_exec(cl->sql, sql);
        free(sql);
        int64_t deadline = clock_mono_us() + 20 * USEC_PER_SEC;
        while (http(cl->r[*leader].port, "GET", "/v1/instances/redis-down", NULL, NULL) != 200) {
                if (clock_mono_us() > deadline) {
                        dump_logs(cl);
                        fail_msg("the leader never saw the instances");
                }
                clock_sleep_us(50 * 1000);
        }
}

int e2e_persistctl(const struct cluster *cl, uint16_t port, const char *const *args, char **out)
{
        char *server = xasprintf("http://127.0.0.1:%u", (unsigned)port);
        char *token_file = xasprintf("%s/token", cl->dir);
        char *log = xasprintf("%s/persistctl.log", cl->dir);
        char *argv[32];
        size_t n = 0;

        argv[n++] = (char *)th_persistctl_path();
        argv[n++] = (char *)"--server";
        argv[n++] = server;
        argv[n++] = (char *)"--token-file";
        argv[n++] = token_file;
        for (size_t i = 0; args[i] && n < 31; i++)
                argv[n++] = (char *)args[i];
        argv[n] = NULL;
        pid_t pid = th_spawn(argv, NULL, log);
        int status = 0;
        int r = -1;
        if (th_wait_exit(pid, 30000, &status) && WIFEXITED(status))
                r = WEXITSTATUS(status);
        if (out)
                *out = slurp(log);
        unlink(log);
        free(log);
        free(token_file);
        free(server);
        return r;
}

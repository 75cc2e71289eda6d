/* SPDX-License-Identifier: Apache-2.0 */
/*
 * persistctl: the command-line client of persistd's HTTP API. Each command is one request
 * (http/client.h does the HTTP and the tables) to the server, or to the leader among several;
 * the exit code tells scripts what happened. `status --watch` polls and prints one line a tick.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/macro.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "http/client.h"
#include "persistd-version.h"

#define DEFAULT_SERVER     "http://127.0.0.1:8080"
#define REQUEST_TIMEOUT_MS 30000L
#define MAX_SERVERS        16
#define PICK_TIMEOUT_MS    2000L /* each server's GET /v1/status when choosing among several */
#define WATCH_TIMEOUT_MS   5000L /* one tick's GET /v1/status with a single server */
#define MIN_INTERVAL_S     0.1
#define MAX_INTERVAL_S     86400.0

static const char exit_help[] =
    "Exit status: 0 success; 1 the operation failed (refused, or a save did not succeed);\n"
    "2 usage error; 3 cannot reach the server or the token was refused; 4 not found;\n"
    "5 the server is unavailable (not the leader, or PostgreSQL is down): retry.\n";

static struct {
        const char *server;
        const char *token_file;
        bool json;
} arg = {.server = NULL};

/* The servers of --server / $PERSISTD_SERVER, and the one `client` talks to. */
static struct {
        char *urls[MAX_SERVERS];
        size_t n;
        char *token; /* NULL: none */
        const char *used;
} srv;

static struct pctl_client *client;

static void help(void)
{
        printf("Usage: persistctl [OPTIONS] COMMAND [ARGS...]\n"
               "\n"
               "The command-line client of persistd's HTTP API.\n"
               "\n"
               "Commands:\n"
               "  status [--watch]                    The replica: leader, epoch, lease, pools, "
               "pass\n"
               "  tasks list|get|create|update|delete|run   Scheduled saves\n"
               "  instances list|get                  Managed Redis instances\n"
               "  persist ID... [--wait]              Save now (a preStop hook)\n"
               "  runs [FILTERS]                      Run history\n"
               "  plan [--hour T]                     The plan of an hour\n"
               "  nightly status|start|pause|resume   The nightly pass\n"
               "  ready | health                      Readiness / liveness (no token needed)\n"
               "  version                             Print the version\n"
               "\n"
               "Options:\n"
               "  -s, --server URL       Server (default $PERSISTD_SERVER, else %s);\n"
               "                         URL,URL,...: the leader among them (else the first\n"
               "                         that answers)\n"
               "  -t, --token-file FILE  Bearer token file (default $PERSISTD_TOKEN_FILE)\n"
               "  -o, --output FORMAT    table (default) or json (the server's answer)\n"
               "  -h, --help             Show this help; COMMAND --help for a command's\n"
               "\n%s",
               DEFAULT_SERVER, exit_help);
}

static int usage_error(const char *fmt, const char *what)
{
        fputs("persistctl: ", stderr);
        fprintf(stderr, fmt, what);
        fputs(" (see --help)\n", stderr);
        return PCTL_EXIT_USAGE;
}

/* ---- which server -------------------------------------------------------------------------- */

/* Split the comma-separated `list` into srv.urls (blanks around each URL ignored). 0 or exit. */
static int servers_parse(const char *list)
{
        if (!list)
                return usage_error("--server: %s", "no URL given");
        for (const char *p = list; *p;) {
                size_t len = strcspn(p, ",");
                const char *b = p, *e = p + len;
                while (b < e && (*b == ' ' || *b == '\t'))
                        b++;
                while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
                        e--;
                if (e > b) {
                        if (srv.n == MAX_SERVERS) {
                                fprintf(stderr, "persistctl: --server: more than %d URLs\n",
                                        MAX_SERVERS);
                                return PCTL_EXIT_USAGE;
                        }
                        srv.urls[srv.n] = strndup(b, (size_t)(e - b));
                        if (!srv.urls[srv.n])
                                return PCTL_EXIT_FAILED;
                        srv.n++;
                }
                p += len + (p[len] == ',');
        }
        if (srv.n == 0)
                return usage_error("--server: \"%s\" names no URL", list);
        return 0;
}

static void servers_free(void)
{
        for (size_t i = 0; i < srv.n; i++)
                free(srv.urls[i]);
        srv.n = 0;
        secret_free(srv.token);
        srv.token = NULL;
}

/*
 * With several servers: ask each GET /v1/status in turn (PICK_TIMEOUT_MS each) and choose the
 * first whose answer says "is_leader":true, else the first that answered at all (any HTTP
 * status). Returns its index with its answer in *ret_answer (caller frees) and *ret_status; or
 * -1 when none answered, with `why` listing every URL and its error.
 */
static int servers_pick(char **ret_answer, long *ret_status, struct strbuf *why)
{
        _cleanup_free_ char *first_answer = NULL;
        long first_status = 0;
        int first = -1;
        for (size_t i = 0; i < srv.n; i++) {
                _cleanup_(pctl_client_freep) struct pctl_client *c =
                    pctl_client_new(srv.urls[i], srv.token);
                _cleanup_free_ char *answer = NULL;
                long status = 0;
                if (!c) {
                        strbuf_addf(why, "%s%s: out of memory", why->len ? "; " : "", srv.urls[i]);
                        continue;
                }
                if (pctl_client_request(c, "GET", "/v1/status", NULL, PICK_TIMEOUT_MS, &status,
                                        &answer) < 0) {
                        strbuf_addf(why, "%s%s: %s", why->len ? "; " : "", srv.urls[i],
                                    pctl_client_errstr(c));
                        continue;
                }
                cJSON *j = status == 200 ? cJSON_Parse(answer) : NULL;
                bool leads = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "is_leader"));
                cJSON_Delete(j);
                if (leads) {
                        *ret_answer = TAKE_PTR(answer);
                        *ret_status = status;
                        return (int)i;
                }
                if (first < 0) {
                        first = (int)i;
                        first_answer = TAKE_PTR(answer);
                        first_status = status;
                }
        }
        if (first >= 0) {
                *ret_answer = TAKE_PTR(first_answer);
                *ret_status = first_status;
        }
        return first;
}

/*
 * Make `client` for the server to talk to: the only one as it is (no request), or the one
 * servers_pick() chooses. 0, or the exit code after printing why.
 */
static int ensure_client(void)
{
        if (client)
                return 0;
        int i = 0;
        if (srv.n > 1) {
                struct strbuf why = STRBUF_INIT;
                _cleanup_free_ char *answer = NULL;
                long status;
                i = servers_pick(&answer, &status, &why);
                if (i < 0) {
                        fprintf(stderr, "persistctl: cannot reach any server: %s\n",
                                strbuf_str(&why));
                        strbuf_release(&why);
                        return PCTL_EXIT_UNREACHABLE;
                }
                strbuf_release(&why);
        }
        client = pctl_client_new(srv.urls[i], srv.token);
        if (!client)
                return PCTL_EXIT_FAILED;
        srv.used = srv.urls[i];
        return 0;
}

/* ---- one request --------------------------------------------------------------------------- */

/*
 * Send the request; on success *ret is the parsed answer (caller frees) and 0 is returned. On
 * failure the error is printed and the exit code returned.
 */
static int call(const char *method, const char *path, cJSON *body, long timeout_ms, cJSON **ret,
                long *ret_status)
{
        _cleanup_free_ char *text = NULL, *answer = NULL;
        long status = 0;
        if (body) {
                text = cJSON_PrintUnformatted(body);
                cJSON_Delete(body);
                if (!text)
                        return PCTL_EXIT_FAILED;
        }
        int r = ensure_client();
        if (r != 0)
                return r;
        r = pctl_client_request(client, method, path, text, timeout_ms, &status, &answer);
        if (r < 0) {
                fprintf(stderr, "persistctl: cannot reach %s: %s\n", srv.used,
                        pctl_client_errstr(client));
                return PCTL_EXIT_UNREACHABLE;
        }
        if (ret_status)
                *ret_status = status;
        cJSON *json = cJSON_Parse(answer);
        int code = pctl_exit_code(status);
        if (code != PCTL_EXIT_OK) {
                const cJSON *e = cJSON_GetObjectItemCaseSensitive(json, "error");
                char msg[600], ecode[64], field[128], leader[256];
                pctl_json_cell(e, "message", msg, sizeof(msg));
                pctl_json_cell(e, "code", ecode, sizeof(ecode));
                pctl_json_cell(e, "field", field, sizeof(field));
                pctl_json_cell(e, "leader", leader, sizeof(leader));
                if (arg.json && json)
                        printf("%s\n", answer);
                fprintf(stderr, "persistctl: %s (HTTP %ld %s%s%s%s%s)\n",
                        e ? msg : "unexpected answer", status, e ? ecode : "",
                        e && !streq(field, "-") ? ", field " : "",
                        e && !streq(field, "-") ? field : "",
                        e && !streq(leader, "-") ? ", leader " : "",
                        e && !streq(leader, "-") ? leader : "");
                cJSON_Delete(json);
                return code;
        }
        if (!json) {
                fprintf(stderr, "persistctl: the server's answer is not JSON (HTTP %ld)\n", status);
                return PCTL_EXIT_FAILED;
        }
        if (arg.json)
                printf("%s\n", answer);
        *ret = json;
        return PCTL_EXIT_OK;
}

/* Print the rows of array `name` of `obj` with `cols` (paths) under `headers`. */
static void print_rows(const cJSON *obj, const char *name, const char *const *headers,
                       const char *const *cols, size_t n)
{
        _cleanup_(pctl_table_freep) struct pctl_table *t = pctl_table_new(headers, n);
        const cJSON *item;
        if (!t)
                return;
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(obj, name))
        {
                char cells[8][512];
                const char *row[8];
                for (size_t i = 0; i < n && i < 8; i++)
                        row[i] = pctl_json_cell(item, cols[i], cells[i], sizeof(cells[i]));
                pctl_table_add(t, row);
        }
        pctl_table_print(t, stdout);
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(obj, "next_cursor");
        if (cJSON_IsString(next))
                fprintf(stderr, "(more: --cursor %s)\n", next->valuestring);
}

/* A path with escaped segments: fmt has one %s per segment. */
static char *path_with(const char *prefix, const char *id, const char *suffix)
{
        _cleanup_free_ char *e = pctl_escape(id);
        char *p;
        if (!e || asprintf(&p, "%s%s%s", prefix, e, suffix ? suffix : "") < 0)
                return NULL;
        return p;
}

/* Query building: "?a=b&c=d". */
static void query_add(struct strbuf *q, const char *name, const char *value)
{
        _cleanup_free_ char *e = pctl_escape(value);
        strbuf_addf(q, "%c%s=%s", q->len ? '&' : '?', name, e ? e : "");
}

/* GET `path` with the query `q` (query_add()); otherwise as call(). */
static int get_with_query(const char *path, const struct strbuf *q, cJSON **ret)
{
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s%s", path, strbuf_str(q)) < 0)
                return PCTL_EXIT_FAILED;
        return call("GET", p, NULL, REQUEST_TIMEOUT_MS, ret, NULL);
}

/* ---- commands ------------------------------------------------------------------------------ */

/* ---- status and status --watch ------------------------------------------------------------- */

static const char status_help[] =
    "Usage: persistctl status [--watch [--interval SECONDS] [--count N]]\n"
    "\n"
    "The replica's identity, the leader, epoch, lease, loaded hours, pools and the nightly pass.\n"
    "\n"
    "  --watch             One line per interval until interrupted (SIGINT/SIGTERM: exit 0):\n"
    "                      HH:MM:SS (the server's schedule clock, UTC), leader, epoch, each\n"
    "                      pool's running/limit and queue, the nightly pass, what is saving.\n"
    "                      With several servers the leader is looked up again on every tick;\n"
    "                      a tick without an answer prints \"(no answer from URL: reason)\"\n"
    "                      (this machine's clock) and the watch goes on. -o json prints each\n"
    "                      answer as one JSON line (a missed tick goes to stderr then).\n"
    "  --interval SECONDS  Between ticks (default 1; at least 0.1)\n"
    "  --count N           Stop after N lines (exit 0)\n";

/* "HH:MM:SS" (UTC) of `us`. */
static const char *format_hms(int64_t us, char buf[static 16])
{
        time_t t = (time_t)(us / USEC_PER_SEC);
        struct tm tm;
        if (!gmtime_r(&t, &tm))
                return strcpy(buf, "--:--:--");
        snprintf(buf, 16, "%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
        return buf;
}

/* The watch line of a /v1/status answer `o`. */
static void status_line(const cJSON *o, struct strbuf *sb)
{
        const cJSON *now = cJSON_GetObjectItemCaseSensitive(o, "now");
        int64_t now_us;
        char hms[16], c1[256], c2[256], c3[64], c4[64];
        if (!cJSON_IsString(now) || clock_parse_rfc3339(now->valuestring, false, &now_us) < 0)
                now_us = clock_wall_us();
        strbuf_addf(sb, "%s  leader %s", format_hms(now_us, hms),
                    pctl_json_cell(o, "leader", c1, sizeof(c1)));
        /* A follower knows the leader from the Lease only (its epoch is not the leader's): say
         * who answered, e.g. while a dead leader's Lease runs out. */
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "is_leader")))
                strbuf_addf(sb, " epoch %s", pctl_json_cell(o, "epoch", c2, sizeof(c2)));
        else
                strbuf_addf(sb, " (seen by follower %s)",
                            pctl_json_cell(o, "identity", c2, sizeof(c2)));
        const cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(o, "pools"))
        {
                strbuf_addf(sb, "  %s %s/%s", pctl_json_cell(p, "name", c1, sizeof(c1)),
                            pctl_json_cell(p, "running", c3, sizeof(c3)),
                            pctl_json_cell(p, "limit", c4, sizeof(c4)));
                const cJSON *q = cJSON_GetObjectItemCaseSensitive(p, "queued");
                if (cJSON_IsNumber(q) && q->valuedouble > 0)
                        strbuf_addf(sb, " +%s queued", pctl_json_cell(p, "queued", c3, sizeof(c3)));
        }
        const cJSON *pass = cJSON_GetObjectItemCaseSensitive(o, "pass");
        const cJSON *pass_id = cJSON_GetObjectItemCaseSensitive(pass, "pass_id");
        pctl_json_cell(pass, "state", c1, sizeof(c1));
        if (cJSON_IsObject(pass) && !(streq(c1, "idle") && !cJSON_IsNumber(pass_id)))
                strbuf_addf(sb, "  nightly %s %s/%s failed %s pending %s", c1,
                            pctl_json_cell(pass, "done", c3, sizeof(c3)),
                            pctl_json_cell(pass, "total", c4, sizeof(c4)),
                            pctl_json_cell(pass, "failed", c2, sizeof(c2)),
                            pctl_json_cell(pass, "pending", hms, sizeof(hms)));
        const char *sep = "  saving ";
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(pass, "current"))
        {
                strbuf_addf(sb, "%s%s:%s", sep, pctl_json_cell(p, "pool", c1, sizeof(c1)),
                            pctl_json_cell(p, "instance_id", c2, sizeof(c2)));
                sep = ",";
        }
}

/* "HTTP 503 not_leader: message" for an error answer. */
static void describe_error(const char *answer, long status, struct strbuf *sb)
{
        cJSON *j = cJSON_Parse(answer);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        char code[64], msg[256];
        strbuf_addf(sb, "HTTP %ld", status);
        if (cJSON_IsObject(e))
                strbuf_addf(sb, " %s: %s", pctl_json_cell(e, "code", code, sizeof(code)),
                            pctl_json_cell(e, "message", msg, sizeof(msg)));
        else if (status == 200)
                strbuf_adds(sb, ": the answer is not JSON");
        cJSON_Delete(j);
}

/* One tick: ask (the leader among) the servers and print one line. */
static void watch_tick(void)
{
        _cleanup_free_ char *answer = NULL;
        struct strbuf why = STRBUF_INIT, line = STRBUF_INIT;
        const char *url = NULL;
        long status = 0;
        if (srv.n > 1) {
                int i = servers_pick(&answer, &status, &why);
                url = i >= 0 ? srv.urls[i] : NULL;
        } else if (pctl_client_request(client, "GET", "/v1/status", NULL, WATCH_TIMEOUT_MS, &status,
                                       &answer) < 0) {
                strbuf_addf(&why, "%s: %s", srv.urls[0], pctl_client_errstr(client));
        } else {
                url = srv.urls[0];
        }
        cJSON *o = url && status == 200 ? cJSON_Parse(answer) : NULL;
        if (url && !o) {
                strbuf_addf(&why, "%s: ", url);
                describe_error(answer, status, &why);
        }
        FILE *out = stdout;
        if (!o) {
                char hms[16];
                strbuf_addf(&line, "%s  (no answer from %s)", format_hms(clock_wall_us(), hms),
                            strbuf_str(&why));
                if (arg.json)
                        out = stderr;
        } else if (arg.json) {
                _cleanup_free_ char *text = cJSON_PrintUnformatted(o);
                strbuf_adds(&line, text ? text : "{}");
        } else {
                status_line(o, &line);
        }
        /* One line whatever the server sent. */
        char *s = line.buf;
        for (size_t i = 0; s && i < line.len; i++)
                if ((unsigned char)s[i] < 0x20)
                        s[i] = ' ';
        fprintf(out, "%s\n", strbuf_str(&line));
        (void)fflush(out);
        cJSON_Delete(o);
        strbuf_release(&line);
        strbuf_release(&why);
}

/* Wait until the monotonic instant `until_us`; true if SIGINT or SIGTERM (blocked) came. */
static bool wait_for_stop(const sigset_t *stop, int64_t until_us)
{
        for (;;) {
                int64_t left = until_us - clock_mono_us();
                struct timespec ts = {0, 0};
                if (left > 0) {
                        ts.tv_sec = (time_t)(left / USEC_PER_SEC);
                        ts.tv_nsec = (long)(left % USEC_PER_SEC) * 1000L;
                }
                int sig = sigtimedwait(stop, NULL, &ts);
                if (sig == SIGINT || sig == SIGTERM)
                        return true;
                if (left <= 0 || (sig < 0 && errno == EAGAIN))
                        return false;
        }
}

static int status_watch(double interval_s, int64_t count)
{
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGINT);
        sigaddset(&stop, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &stop, NULL) < 0) {
                fprintf(stderr, "persistctl: cannot block SIGINT and SIGTERM: %s\n",
                        strerror(errno));
                return PCTL_EXIT_FAILED;
        }
        if (srv.n == 1) {
                int r = ensure_client();
                if (r != 0)
                        return r;
        }
        int64_t interval_us = (int64_t)(interval_s * (double)USEC_PER_SEC + 0.5);
        int64_t next = clock_mono_us();
        for (int64_t printed = 0;;) {
                watch_tick();
                if (count > 0 && ++printed >= count)
                        return 0;
                /* After a slow tick the next one comes at once, without a burst of catch-ups. */
                int64_t now = clock_mono_us();
                next += interval_us;
                if (next < now)
                        next = now;
                if (wait_for_stop(&stop, next))
                        return 0;
        }
}

static int cmd_status(int argc, char **argv)
{
        enum { O_WATCH = 256, O_INTERVAL, O_COUNT };
        static const struct option options[] = {
            {"help", no_argument, NULL, 'h'},
            {"watch", no_argument, NULL, O_WATCH},
            {"interval", required_argument, NULL, O_INTERVAL},
            {"count", required_argument, NULL, O_COUNT},
            {0},
        };
        bool watch = false, tuned = false;
        double interval_s = 1.0;
        int64_t count = 0;
        int c;
        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        fputs(status_help, stdout);
                        return 0;
                case O_WATCH:
                        watch = true;
                        break;
                case O_INTERVAL:
                        if (parse_double(optarg, &interval_s) < 0 || interval_s < MIN_INTERVAL_S ||
                            interval_s > MAX_INTERVAL_S)
                                return usage_error("--interval: \"%s\" is not a number of seconds "
                                                   "from 0.1 to 86400",
                                                   optarg);
                        tuned = true;
                        break;
                case O_COUNT:
                        if (parse_int64(optarg, &count) < 0 || count < 1)
                                return usage_error("--count: \"%s\" is not a positive number",
                                                   optarg);
                        tuned = true;
                        break;
                default:
                        return PCTL_EXIT_USAGE;
                }
        }
        if (optind < argc)
                return usage_error("status: unexpected argument \"%s\"", argv[optind]);
        if (tuned && !watch)
                return usage_error("%s", "status: --interval and --count go with --watch");
        if (watch)
                return status_watch(interval_s, count);
        cJSON *o;
        int r = call("GET", "/v1/status", NULL, REQUEST_TIMEOUT_MS, &o, NULL);
        if (r != 0 || arg.json) {
                cJSON_Delete(r == 0 ? o : NULL);
                return r;
        }
        cJSON *pools = cJSON_DetachItemFromObject(o, "pools");
        pctl_print_object(o, stdout);
        cJSON *wrap = cJSON_CreateObject();
        cJSON_AddItemToObject(wrap, "pools", pools);
        printf("\n");
        print_rows(wrap, "pools", (const char *[]){"POOL", "LIMIT", "RUNNING", "QUEUED"},
                   (const char *[]){"name", "limit", "running", "queued"}, 4);
        cJSON_Delete(wrap);
        cJSON_Delete(o);
        return 0;
}

static const char tasks_help[] =
    "Usage: persistctl tasks list [--instance ID] [--enabled true|false] [--limit N] "
    "[--cursor C]\n"
    "       persistctl tasks get ID\n"
    "       persistctl tasks create --instance ID --schedule CRON [--id ID]\n"
    "                  [--action bgsave|bgrewriteaof] [--disabled] [--misfire run_once|skip]\n"
    "                  [--starting-deadline S] [--description TEXT]\n"
    "       persistctl tasks update ID [the options of create; --enabled / --disabled]\n"
    "       persistctl tasks delete ID\n"
    "       persistctl tasks run ID\n"
    "\n"
    "Scheduled saves. Schedules are cron (5 fields, or 6 with seconds first) in the\n"
    "configured time zone. create, update, delete and run need the leader.\n";

static const char *const task_headers[] = {"ID",      "INSTANCE", "ACTION",     "SCHEDULE",
                                           "ENABLED", "MISFIRE",  "DESCRIPTION"};
static const char *const task_cols[] = {"id",      "instance_id", "action",     "schedule",
                                        "enabled", "misfire",     "description"};

static void print_task(cJSON *o)
{
        cJSON *wrap = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(wrap, "tasks");
        cJSON_AddItemReferenceToArray(a, o);
        print_rows(wrap, "tasks", task_headers, task_cols, 7);
        cJSON_Delete(wrap);
}

static int cmd_tasks(int argc, char **argv)
{
        enum {
                O_INSTANCE = 256,
                O_SCHEDULE,
                O_ID,
                O_ACTION,
                O_ENABLED,
                O_DISABLED,
                O_MISFIRE,
                O_DEADLINE,
                O_DESCRIPTION,
                O_LIMIT,
                O_CURSOR,
                O_ENABLED_FILTER
        };
        static const struct option options[] = {
            {"help", no_argument, NULL, 'h'},
            {"instance", required_argument, NULL, O_INSTANCE},
            {"schedule", required_argument, NULL, O_SCHEDULE},
            {"id", required_argument, NULL, O_ID},
            {"action", required_argument, NULL, O_ACTION},
            {"enabled", optional_argument, NULL, O_ENABLED},
            {"disabled", no_argument, NULL, O_DISABLED},
            {"misfire", required_argument, NULL, O_MISFIRE},
            {"starting-deadline", required_argument, NULL, O_DEADLINE},
            {"description", required_argument, NULL, O_DESCRIPTION},
            {"limit", required_argument, NULL, O_LIMIT},
            {"cursor", required_argument, NULL, O_CURSOR},
            {0},
        };
        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                fputs(tasks_help, argc < 2 ? stderr : stdout);
                return argc < 2 ? PCTL_EXIT_USAGE : 0;
        }
        const char *verb = argv[1];
        cJSON *body = cJSON_CreateObject();
        struct strbuf q = STRBUF_INIT;
        const char *enabled_filter = NULL;
        _cleanup_free_ char *path = NULL;
        int c, r;
        optind = 0;
        argc--;
        argv++;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                int64_t n;
                switch (c) {
                case 'h':
                        fputs(tasks_help, stdout);
                        r = 0;
                        goto out;
                case O_INSTANCE:
                        if (streq(verb, "list"))
                                query_add(&q, "instance", optarg);
                        else
                                cJSON_AddStringToObject(body, "instance_id", optarg);
                        break;
                case O_SCHEDULE:
                        cJSON_AddStringToObject(body, "schedule", optarg);
                        break;
                case O_ID:
                        cJSON_AddStringToObject(body, "id", optarg);
                        break;
                case O_ACTION:
                        cJSON_AddStringToObject(body, "action", optarg);
                        break;
                case O_ENABLED:
                        if (streq(verb, "list")) {
                                enabled_filter = optarg ? optarg : "true";
                                break;
                        }
                        cJSON_AddBoolToObject(body, "enabled", true);
                        break;
                case O_DISABLED:
                        if (streq(verb, "list"))
                                enabled_filter = "false";
                        else
                                cJSON_AddBoolToObject(body, "enabled", false);
                        break;
                case O_MISFIRE:
                        cJSON_AddStringToObject(body, "misfire", optarg);
                        break;
                case O_DEADLINE:
                        if (parse_int64(optarg, &n) < 0) {
                                r = usage_error("--starting-deadline: \"%s\" is not a number "
                                                "of seconds",
                                                optarg);
                                goto out;
                        }
                        cJSON_AddNumberToObject(body, "starting_deadline_s", (double)n);
                        break;
                case O_DESCRIPTION:
                        cJSON_AddStringToObject(body, "description", optarg);
                        break;
                case O_LIMIT:
                        query_add(&q, "limit", optarg);
                        break;
                case O_CURSOR:
                        query_add(&q, "cursor", optarg);
                        break;
                default:
                        r = PCTL_EXIT_USAGE;
                        goto out;
                }
        }
        if (enabled_filter)
                query_add(&q, "enabled", enabled_filter);
        const char *id = optind < argc ? argv[optind] : NULL;
        bool wants_id = !streq(verb, "list") && !streq(verb, "create");
        if (wants_id && !id) {
                r = usage_error("tasks %s: a task ID is required", verb);
                goto out;
        }
        if (optind + (wants_id ? 1 : 0) < argc) {
                r = usage_error("tasks: unexpected argument \"%s\"", argv[optind + wants_id]);
                goto out;
        }
        path = id ? path_with("/v1/tasks/", id, NULL) : NULL;
        cJSON *o = NULL;
        if (streq(verb, "list")) {
                r = get_with_query("/v1/tasks", &q, &o);
                if (r == 0 && !arg.json)
                        print_rows(o, "tasks", task_headers, task_cols, 7);
        } else if (streq(verb, "get") || streq(verb, "create") || streq(verb, "update")) {
                const char *method = streq(verb, "get")      ? "GET"
                                     : streq(verb, "create") ? "POST"
                                                             : "PATCH";
                cJSON *send = streq(verb, "get") ? NULL : body;
                if (send)
                        body = NULL;
                r = call(method, path ? path : "/v1/tasks", send, REQUEST_TIMEOUT_MS, &o, NULL);
                if (r == 0 && !arg.json)
                        print_task(o);
        } else if (streq(verb, "delete")) {
                r = call("DELETE", path, NULL, REQUEST_TIMEOUT_MS, &o, NULL);
                if (r == 0 && !arg.json)
                        printf("deleted task %s\n", id);
        } else if (streq(verb, "run")) {
                _cleanup_free_ char *p = path_with("/v1/tasks/", id, "/run");
                r = call("POST", p, NULL, REQUEST_TIMEOUT_MS, &o, NULL);
                if (r == 0 && !arg.json)
                        pctl_print_object(o, stdout);
        } else {
                r = usage_error("tasks: unknown subcommand \"%s\"", verb);
        }
        cJSON_Delete(r == 0 ? o : NULL);
out:
        cJSON_Delete(body);
        strbuf_release(&q);
        return r;
}

static const char instances_help[] =
    "Usage: persistctl instances list [--pool P] [--enabled true|false] [--limit N] "
    "[--cursor C]\n"
    "       persistctl instances get ID\n"
    "\n"
    "Managed Redis instances, with their last save, capabilities and estimate.\n";

static int cmd_instances(int argc, char **argv)
{
        enum { O_POOL = 256, O_ENABLED, O_LIMIT, O_CURSOR };
        static const struct option options[] = {
            {"help", no_argument, NULL, 'h'},
            {"pool", required_argument, NULL, O_POOL},
            {"enabled", required_argument, NULL, O_ENABLED},
            {"limit", required_argument, NULL, O_LIMIT},
            {"cursor", required_argument, NULL, O_CURSOR},
            {0},
        };
        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                fputs(instances_help, argc < 2 ? stderr : stdout);
                return argc < 2 ? PCTL_EXIT_USAGE : 0;
        }
        const char *verb = argv[1];
        struct strbuf q = STRBUF_INIT;
        int c, r = 0;
        optind = 0;
        argc--;
        argv++;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        fputs(instances_help, stdout);
                        strbuf_release(&q);
                        return 0;
                case O_POOL:
                        query_add(&q, "pool", optarg);
                        break;
                case O_ENABLED:
                        query_add(&q, "enabled", optarg);
                        break;
                case O_LIMIT:
                        query_add(&q, "limit", optarg);
                        break;
                case O_CURSOR:
                        query_add(&q, "cursor", optarg);
                        break;
                default:
                        strbuf_release(&q);
                        return PCTL_EXIT_USAGE;
                }
        }
        cJSON *o = NULL;
        if (streq(verb, "list") && optind == argc) {
                r = get_with_query("/v1/instances", &q, &o);
                if (r == 0 && !arg.json)
                        print_rows(o, "instances",
                                   (const char *[]){"ID", "ADDRESS", "POOL", "ENABLED", "LAST-SAVE",
                                                    "FINISHED", "ESTIMATE-S", "ERROR"},
                                   (const char *[]){"id", "address", "pool", "enabled",
                                                    "last_save.state", "last_save.finished_at",
                                                    "estimate.duration_s", "last_save.error"},
                                   8);
        } else if (streq(verb, "get") && optind + 1 == argc) {
                _cleanup_free_ char *p = path_with("/v1/instances/", argv[optind], NULL);
                r = call("GET", p, NULL, REQUEST_TIMEOUT_MS, &o, NULL);
                if (r == 0 && !arg.json)
                        pctl_print_object(o, stdout);
        } else if (streq(verb, "get") || streq(verb, "list")) {
                r = usage_error("instances %s: wrong arguments", verb);
        } else {
                r = usage_error("instances: unknown subcommand \"%s\"", verb);
        }
        cJSON_Delete(r == 0 ? o : NULL);
        strbuf_release(&q);
        return r;
}

static const char persist_help[] =
    "Usage: persistctl persist ID... [--wait] [--timeout S] [--request-id R]\n"
    "       persistctl persist --pool P [--wait] ...\n"
    "       persistctl persist --all [--wait] ...\n"
    "\n"
    "Save now: each save starts after the request arrived. With --wait, waits up to\n"
    "--timeout seconds (default 60) and exits 0 only if every save succeeded, so it can\n"
    "be a Redis pod's preStop hook. --request-id makes a retry return the same saves.\n";

static int cmd_persist(int argc, char **argv)
{
        enum { O_WAIT = 256, O_TIMEOUT, O_REQUEST_ID, O_POOL, O_ALL };
        static const struct option options[] = {
            {"help", no_argument, NULL, 'h'},
            {"wait", no_argument, NULL, O_WAIT},
            {"timeout", required_argument, NULL, O_TIMEOUT},
            {"request-id", required_argument, NULL, O_REQUEST_ID},
            {"pool", required_argument, NULL, O_POOL},
            {"all", no_argument, NULL, O_ALL},
            {0},
        };
        bool wait = false, all = false;
        int64_t timeout_s = 60;
        const char *request_id = NULL, *pool = NULL;
        int c;
        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        fputs(persist_help, stdout);
                        return 0;
                case O_WAIT:
                        wait = true;
                        break;
                case O_TIMEOUT:
                        if (parse_int64(optarg, &timeout_s) < 0 || timeout_s < 1 ||
                            timeout_s > 3600)
                                return usage_error("--timeout: \"%s\" is not a number of "
                                                   "seconds from 1 to 3600",
                                                   optarg);
                        break;
                case O_REQUEST_ID:
                        request_id = optarg;
                        break;
                case O_POOL:
                        pool = optarg;
                        break;
                case O_ALL:
                        all = true;
                        break;
                default:
                        return PCTL_EXIT_USAGE;
                }
        }
        size_t n_ids = (size_t)(argc - optind);
        if ((n_ids > 0) + (pool != NULL) + all != 1)
                return usage_error("persist: give instance IDs, --pool or --all%s", "");

        cJSON *body = cJSON_CreateObject();
        const char *path = "/v1/persist";
        _cleanup_free_ char *one = NULL;
        if (n_ids == 1) {
                one = path_with("/v1/instances/", argv[optind], "/persist");
                path = one;
        } else if (n_ids > 1) {
                cJSON *a = cJSON_AddArrayToObject(body, "instances");
                for (int i = optind; i < argc; i++)
                        cJSON_AddItemToArray(a, cJSON_CreateString(argv[i]));
        } else if (pool) {
                cJSON_AddStringToObject(body, "pool", pool);
        } else {
                cJSON_AddBoolToObject(body, "all", true);
        }
        cJSON_AddBoolToObject(body, "wait", wait);
        cJSON_AddNumberToObject(body, "timeout_s", (double)timeout_s);
        if (request_id)
                cJSON_AddStringToObject(body, "request_id", request_id);

        cJSON *o;
        long timeout_ms = wait ? (long)timeout_s * 1000L + REQUEST_TIMEOUT_MS : REQUEST_TIMEOUT_MS;
        int r = call("POST", path, body, timeout_ms, &o, NULL);
        if (r != 0)
                return r;
        if (!arg.json)
                print_rows(o, "results",
                           (const char *[]){"INSTANCE", "STATE", "JOINED", "STARTED", "FINISHED",
                                            "LASTSAVE", "ERROR"},
                           (const char *[]){"instance_id", "state", "joined", "started_at",
                                            "finished_at", "lastsave", "error_message"},
                           7);
        /* Without --wait, the saves were accepted: that is success. */
        const cJSON *success = cJSON_GetObjectItemCaseSensitive(o, "success");
        if (wait && !cJSON_IsTrue(success))
                r = PCTL_EXIT_FAILED;
        cJSON_Delete(o);
        return r;
}

static const char runs_help[] =
    "Usage: persistctl runs [--task ID] [--instance ID] [--kind K] [--state S]\n"
    "                       [--since T] [--until T] [--limit N] [--cursor C]\n"
    "\n"
    "Run history, newest first. K: scheduled, nightly, manual, persist. S: claimed,\n"
    "running, succeeded, failed, skipped, missed, timed_out. T: RFC 3339.\n";

static int cmd_runs(int argc, char **argv)
{
        static const struct option options[] = {
            {"help", no_argument, NULL, 'h'},         {"task", required_argument, NULL, 0},
            {"instance", required_argument, NULL, 0}, {"kind", required_argument, NULL, 0},
            {"state", required_argument, NULL, 0},    {"since", required_argument, NULL, 0},
            {"until", required_argument, NULL, 0},    {"limit", required_argument, NULL, 0},
            {"cursor", required_argument, NULL, 0},   {0},
        };
        struct strbuf q = STRBUF_INIT;
        int c, idx;
        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, &idx)) >= 0) {
                if (c == 'h') {
                        fputs(runs_help, stdout);
                        strbuf_release(&q);
                        return 0;
                }
                if (c != 0) {
                        strbuf_release(&q);
                        return PCTL_EXIT_USAGE;
                }
                query_add(&q, options[idx].name, optarg);
        }
        if (optind < argc) {
                strbuf_release(&q);
                return usage_error("runs: unexpected argument \"%s\"", argv[optind]);
        }
        cJSON *o;
        int r = get_with_query("/v1/runs", &q, &o);
        strbuf_release(&q);
        if (r != 0)
                return r;
        if (!arg.json)
                print_rows(o, "runs",
                           (const char *[]){"ID", "KIND", "INSTANCE", "TASK", "STATE", "SCHEDULED",
                                            "FINISHED", "ERROR"},
                           (const char *[]){"id", "kind", "instance_id", "task_id", "state",
                                            "scheduled_for", "finished_at", "error"},
                           8);
        cJSON_Delete(o);
        return 0;
}

static int cmd_plan(int argc, char **argv)
{
        static const struct option options[] = {
            {"help", no_argument, NULL, 'h'},
            {"hour", required_argument, NULL, 'H'},
            {0},
        };
        struct strbuf q = STRBUF_INIT;
        int c;
        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (c == 'h') {
                        printf("Usage: persistctl plan [--hour T]\n\nThe plan of the hour "
                               "containing T (RFC 3339; default now): each slot's expected "
                               "start and end per pool.\n");
                        strbuf_release(&q);
                        return 0;
                }
                if (c != 'H') {
                        strbuf_release(&q);
                        return PCTL_EXIT_USAGE;
                }
                query_add(&q, "hour", optarg);
        }
        if (optind < argc) {
                strbuf_release(&q);
                return usage_error("plan: unexpected argument \"%s\"", argv[optind]);
        }
        cJSON *o;
        int r = get_with_query("/v1/plan", &q, &o);
        strbuf_release(&q);
        if (r != 0)
                return r;
        if (!arg.json) {
                char hour[64], loaded[8];
                printf("hour %s (loaded: %s)\n\n", pctl_json_cell(o, "hour", hour, sizeof(hour)),
                       pctl_json_cell(o, "loaded", loaded, sizeof(loaded)));
                print_rows(o, "pools",
                           (const char *[]){"POOL", "LIMIT", "EXPECTED-END", "OVERRUN-S"},
                           (const char *[]){"name", "limit", "expected_end", "overrun_s"}, 4);
                printf("\n");
                print_rows(o, "slots",
                           (const char *[]){"SLOT", "TASK", "INSTANCE", "POOL", "EXPECTED-START",
                                            "EXPECTED-END"},
                           (const char *[]){"slot", "task_id", "instance_id", "pool",
                                            "expected_start", "expected_end"},
                           6);
        }
        cJSON_Delete(o);
        return 0;
}

static int cmd_nightly(int argc, char **argv)
{
        static const char help_text[] =
            "Usage: persistctl nightly status|start|pause|resume\n\nThe nightly pass: its "
            "progress, or start, pause or resume it (start, pause and resume need the "
            "leader).\n";
        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                fputs(help_text, argc < 2 ? stderr : stdout);
                return argc < 2 ? PCTL_EXIT_USAGE : 0;
        }
        if (argc > 2)
                return usage_error("nightly: unexpected argument \"%s\"", argv[2]);
        const char *verb = argv[1];
        cJSON *o;
        int r;
        if (streq(verb, "status")) {
                r = call("GET", "/v1/nightly", NULL, REQUEST_TIMEOUT_MS, &o, NULL);
        } else if (streq(verb, "start") || streq(verb, "pause") || streq(verb, "resume")) {
                char path[64];
                snprintf(path, sizeof(path), "/v1/nightly/%s", verb);
                r = call("POST", path, NULL, REQUEST_TIMEOUT_MS, &o, NULL);
        } else {
                return usage_error("nightly: unknown subcommand \"%s\"", verb);
        }
        if (r != 0)
                return r;
        if (!arg.json) {
                cJSON *current = cJSON_DetachItemFromObject(o, "current");
                pctl_print_object(o, stdout);
                if (cJSON_GetArraySize(current) > 0) {
                        cJSON *wrap = cJSON_CreateObject();
                        cJSON_AddItemToObject(wrap, "current", current);
                        current = NULL;
                        printf("\n");
                        print_rows(wrap, "current", (const char *[]){"POOL", "INSTANCE"},
                                   (const char *[]){"pool", "instance_id"}, 2);
                        cJSON_Delete(wrap);
                }
                cJSON_Delete(current);
        }
        cJSON_Delete(o);
        return 0;
}

/* /readyz and /healthz: no token needed; the answer says which check failed. */
static int cmd_probe(int argc, char **argv)
{
        bool ready = streq(argv[0], "ready");
        if (argc > 1 && (streq(argv[1], "--help") || streq(argv[1], "-h"))) {
                printf("Usage: persistctl %s\n\n%s\n", argv[0],
                       ready ? "Readiness (/readyz): exits 0 when the configuration is loaded and "
                               "PostgreSQL is reachable, 5 when not."
                             : "Liveness (/healthz): exits 0 unless the replica is wedged (it "
                               "believes it leads but has not renewed the lease), 5 then.");
                return 0;
        }
        if (argc > 1)
                return usage_error("unexpected argument \"%s\"", argv[1]);
        _cleanup_free_ char *answer = NULL;
        long status = 0;
        int r = ensure_client();
        if (r != 0)
                return r;
        r = pctl_client_request(client, "GET", ready ? "/readyz" : "/healthz", NULL,
                                REQUEST_TIMEOUT_MS, &status, &answer);
        if (r < 0) {
                fprintf(stderr, "persistctl: cannot reach %s: %s\n", srv.used,
                        pctl_client_errstr(client));
                return PCTL_EXIT_UNREACHABLE;
        }
        cJSON *o = cJSON_Parse(answer);
        if (!o) {
                fprintf(stderr, "persistctl: the server's answer is not JSON (HTTP %ld)\n", status);
                return PCTL_EXIT_FAILED;
        }
        if (arg.json)
                printf("%s\n", answer);
        else
                pctl_print_object(o, stdout);
        cJSON_Delete(o);
        return pctl_exit_code(status);
}

static const struct {
        const char *name;
        int (*fn)(int argc, char **argv);
} commands[] = {
    {"ready", cmd_probe}, {"health", cmd_probe},        {"status", cmd_status},
    {"tasks", cmd_tasks}, {"instances", cmd_instances}, {"persist", cmd_persist},
    {"runs", cmd_runs},   {"plan", cmd_plan},           {"nightly", cmd_nightly},
};

int main(int argc, char *argv[])
{
        static const struct option options[] = {
            {"help", no_argument, NULL, 'h'},
            {"server", required_argument, NULL, 's'},
            {"token-file", required_argument, NULL, 't'},
            {"output", required_argument, NULL, 'o'},
            {0},
        };
        int c;

        while ((c = getopt_long(argc, argv, "+hs:t:o:", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        return PCTL_EXIT_OK;
                case 's':
                        arg.server = optarg;
                        break;
                case 't':
                        arg.token_file = optarg;
                        break;
                case 'o':
                        if (streq(optarg, "json"))
                                arg.json = true;
                        else if (streq(optarg, "table"))
                                arg.json = false;
                        else
                                return usage_error("--output: \"%s\" is not table or json", optarg);
                        break;
                default:
                        return PCTL_EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                help();
                return PCTL_EXIT_USAGE;
        }
        const char *name = argv[optind];
        if (streq(name, "version")) {
                printf("persistctl %s\n", PERSISTD_VERSION);
                return PCTL_EXIT_OK;
        }
        for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
                if (!streq(name, commands[i].name))
                        continue;
                if (!arg.server)
                        arg.server = getenv("PERSISTD_SERVER");
                if (strempty(arg.server))
                        arg.server = DEFAULT_SERVER;
                if (!arg.token_file)
                        arg.token_file = getenv("PERSISTD_TOKEN_FILE");
                if (!strempty(arg.token_file)) {
                        int r = read_secret_file(arg.token_file, &srv.token);
                        if (r < 0) {
                                fprintf(stderr, "persistctl: cannot read the token file %s: %s\n",
                                        arg.token_file, strerror(-r));
                                return PCTL_EXIT_USAGE;
                        }
                }
                int r = servers_parse(arg.server);
                if (r == 0)
                        r = commands[i].fn(argc - optind, argv + optind);
                pctl_client_free(client);
                servers_free();
                return r;
        }
        fprintf(stderr, "persistctl: unknown command \"%s\" (see --help)\n", name);
        return PCTL_EXIT_USAGE;
}

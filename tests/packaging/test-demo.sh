#!/usr/bin/env bash
# The demo works: `scripts/demo --once --quick` runs the whole narration against real servers
# (PostgreSQL of the test run, Redis, the Kubernetes API test server, three persistd replicas)
# and exits 0 only if every step did what it says. Then nothing it started may be left running.
set -euo pipefail
root=${SOURCE_ROOT:?}
: "${PERSISTD_BIN:?}" "${PERSISTCTL_BIN:?}" "${KUBE_TEST_SERVER_BIN:?}"

log=$(mktemp /tmp/test-demo.XXXXXX)
trap 'rm -f "$log"' EXIT
status=0
# DEMO_USE_PG: scripts/test already runs inside pg_virtualenv; the demo makes its own database.
DEMO_NO_BUILD=1 DEMO_USE_PG=1 DEMO_PORT_BASE=0 "$root/scripts/demo" --once --quick >"$log" 2>&1 ||
        status=$?
cat "$log"
if [[ $status != 0 ]]; then
        echo "test-demo: scripts/demo --once --quick exited $status"
        exit 1
fi

fail=0
for want in "the chart's Role is enforced" "leader elected after" "only persistd-" "a follower (persistd-" "every instance has save" \
        "started by itself at 00:00:0" "and is under way: total/done/failed/pending = 6 " \
        "and finished it: all 6 instances saved" "one pass for the night, started once and resumed" \
        "scheduled runs succeeded" "the work goes on under the new leader" "this hour is loaded and planned" \
        "persist-now of cache-b1 succeeded" "nothing was lost: the restarted cache-b1 has all" \
        "cache-b1 has save \"\" again" "leads after" "within its limit" \
        "Summary: runs, max concurrency per pool" "Failover (SIGKILL, the Lease must expire): " \
        "Every step did what it says."; do
        grep -qF "$want" "$log" || {
                echo "test-demo: the narration lacks \"$want\""
                fail=1
        }
done
# The live view ran: lines of persistctl status --watch, some of them under each leader.
leaders=$(grep '^  | ' "$log" | grep -o 'leader persistd-[^ ]*' | sort -u | wc -l)
[[ $(grep -c '^  | ' "$log") -ge 4 && $leaders -ge 2 ]] || {
        echo "test-demo: the live view (persistctl status --watch) did not show the pass under two leaders"
        fail=1
}
# Two handovers (SIGKILL, then SIGTERM), each to another replica.
[[ $(grep -c ' leads after ' "$log") == 2 ]] || {
        echo "test-demo: expected two handovers"
        fail=1
}

# Cleanup: the demo's temporary directory is gone and none of its processes is left.
dir=$(sed -n 's/.*files in \(\/tmp\/persistd-demo\.[A-Za-z0-9]*\).*/\1/p' "$log" | head -1)
if [[ -z "$dir" || -e "$dir" ]]; then
        echo "test-demo: the demo's directory ${dir:-?} was not removed"
        fail=1
else
        for c in /proc/[0-9]*/cmdline; do
                if tr '\0' ' ' <"$c" 2>/dev/null | grep -qF "$dir"; then
                        echo "test-demo: left running: $(tr '\0' ' ' <"$c")"
                        fail=1
                fi
        done
fi
exit $fail

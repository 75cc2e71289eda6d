#!/usr/bin/env bash
# The Helm chart, the plain manifests and the Dockerfile: lint clean, the rendered configuration
# is one persistd accepts, the schema refuses bad values, deploy/ is in sync with the chart, and
# the image's runtime packages provide every library persistd links against.
set -uo pipefail
root=${SOURCE_ROOT:?}
persistd=${PERSISTD_BIN:?}
helm=${HELM:-$(command -v helm || true)}
[[ -x "$helm" ]] || { echo "helm not found: run scripts/install-helm (scripts/test does)"; exit 1; }
chart=$root/charts/persistd
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0

check() { # check NAME COMMAND...
        local name=$1; shift
        if "$@" >"$tmp/out" 2>&1; then
                passed=$((passed + 1)); echo "ok   $name"
        else
                failed=$((failed + 1)); echo "FAIL $name"; sed 's/^/     /' "$tmp/out" | head -20
        fi
}

lint() { "$helm" lint --strict "$chart"; }

# The persistd.yaml of the rendered ConfigMap, with secret paths moved into $tmp.
rendered_config() {
        "$helm" template t "$chart" --show-only templates/configmap.yaml "$@" |
                awk '/persistd.yaml: \|/ {on=1; next} on && /^    / {print substr($0, 5)} on && !/^    / {on=0}' |
                sed "s#/etc/persistd/secrets/#$tmp/secrets/#"
}

config_accepted() {
        mkdir -p "$tmp/secrets"
        echo "host=127.0.0.1 dbname=persistd user=persistd password=x" > "$tmp/secrets/postgres-dsn"
        echo "token" > "$tmp/secrets/api-token"
        echo "pw" > "$tmp/secrets/progress-password"
        rendered_config "$@" > "$tmp/persistd.yaml" || return 1
        "$persistd" check-config -c "$tmp/persistd.yaml" >/dev/null
}

refused() { # refused FIELD ARGS...: helm template fails and names FIELD
        local field=$1; shift
        if "$helm" template t "$chart" "$@" >/dev/null 2>"$tmp/err"; then
                echo "accepted: $*"; return 1
        fi
        grep -q -- "$field" "$tmp/err" || { cat "$tmp/err"; return 1; }
}

deploy_in_sync() {
        HELM=$helm "$root/scripts/render-deploy" "$tmp/deploy.yaml" &&
                diff -u "$root/deploy/persistd.yaml" "$tmp/deploy.yaml"
}

grace_exceeds_drain() {
        "$helm" template t "$chart" --set config.election.shutdown_grace_s=50 \
                --show-only templates/deployment.yaml | grep -q "terminationGracePeriodSeconds: 60"
}

hardened() {
        local d; d=$("$helm" template t "$chart" --show-only templates/deployment.yaml)
        grep -q "runAsNonRoot: true" <<<"$d" && grep -q "readOnlyRootFilesystem: true" <<<"$d" &&
                grep -q "allowPrivilegeEscalation: false" <<<"$d" && grep -q -- "- ALL" <<<"$d" &&
                grep -q "fieldPath: metadata.name" <<<"$d" && grep -q "path: /healthz" <<<"$d" &&
                grep -q "path: /readyz" <<<"$d" && grep -q "replicas: 3" <<<"$d"
}

leader_service_selects_label() {
        "$helm" template t "$chart" --show-only templates/service.yaml |
                awk '/name: t-persistd-leader/ {on=1} on && /selector:/ {sel=1} sel && /persistd.io\/leader: "true"/ {found=1} END {exit !found}'
}

existing_secret_not_created() {
        ! "$helm" template t "$chart" --set secrets.existingSecret=mine | grep -q "^kind: Secret"
}

# Every library persistd needs directly (DT_NEEDED) comes from a package that the Dockerfile's
# runtime stage installs (or from the base image: libc6, libgcc-s1).
dockerfile_runtime_packages() {
        local runtime needed path pkg missing=0
        runtime=$(awk '/^FROM debian:12-slim/ {on=1} on' "$root/Dockerfile")
        for needed in $(readelf -d "$persistd" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p'); do
                # A sanitizer build's runtime is not part of the image.
                case "$needed" in libasan.so.* | libubsan.so.* | libtsan.so.*) continue ;; esac
                path=$(ldd "$persistd" | awk -v n="$needed" '$1 == n {print $3}')
                [[ -n "$path" ]] || { echo "cannot resolve $needed"; missing=1; continue; }
                pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null)
                pkg=${pkg%%:*}
                case "$pkg" in libc6 | libgcc-s1) continue ;; esac
                if ! grep -qw -- "$pkg" <<<"$runtime"; then
                        echo "the Dockerfile's runtime stage lacks $pkg (provides $needed)"
                        missing=1
                fi
        done
        return $missing
}

# The build stage builds with the README's commands and installs with scripts/install-deps,
# the same script .ci/run uses.
dockerfile_build_commands() {
        grep -q "scripts/install-deps" "$root/Dockerfile" && grep -q "scripts/install-deps" "$root/.ci/run" &&
                grep -q "meson setup build" "$root/Dockerfile" && grep -q "meson setup build" "$root/README.md" &&
                grep -q "meson compile -C build" "$root/Dockerfile" && grep -q "meson compile -C build" "$root/README.md" &&
                grep -q "USER 65532" "$root/Dockerfile"
}

check "helm lint --strict" lint
check "rendered configuration passes persistd check-config" config_accepted
check "rendered configuration with a progress password" config_accepted --set secrets.progressPassword=pw
check "rendered configuration with pool limits" config_accepted --set config.pools.limits.ssd-a=2
check "schema refuses replicaCount 0" refused replicaCount --set replicaCount=0
check "schema refuses a bad pull policy" refused pullPolicy --set image.pullPolicy=Sometimes
check "schema refuses http settings (set by the chart)" refused http --set config.http.listen=x
check "schema refuses an unknown top-level value" refused "Additional property replicas" --set replicas=3
check "termination grace exceeds the drain" grace_exceeds_drain
check "deployment is hardened and probed" hardened
check "leader Service selects the leader label" leader_service_selects_label
check "existingSecret: no Secret rendered" existing_secret_not_created
check "deploy/persistd.yaml in sync with the chart" deploy_in_sync
check "Dockerfile runtime packages cover persistd's libraries" dockerfile_runtime_packages
check "Dockerfile builds with the README's commands" dockerfile_build_commands

echo "chart: $passed passed, $failed failed"
[[ $failed -eq 0 ]]

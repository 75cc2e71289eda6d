# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# Sourced by the fleet benchmarks (bench/storm, bench/nightly): build a bench program against
# libpersistd, and start a fleet of real redis-server instances on loopback, each with its own
# directory under one parent directory (one filesystem: one disk pool), persistence off, filled
# with DEBUG POPULATE. Everything started here is stopped and removed by fleet_cleanup, which the
# caller installs as an EXIT trap.

FLEET_DIR=""
FLEET_PIDS=()
FLEET_PORTS=()
# Set by bench_build: the program just built.
export BENCH_BIN=""
# Set by progress_start.
export PROGRESS_PORT=""

# bench_build NAME SOURCE...: compile build/bench/NAME from the sources and libpersistd.a.
bench_build() {
        local name=$1
        shift
        local build=${BUILD_DIR:-build}
        [[ -f "$build/build.ninja" ]] || meson setup "$build" >/dev/null
        meson compile -C "$build" >/dev/null
        mkdir -p "$build/bench"
        # shellcheck disable=SC2046,SC2086 # BENCH_CFLAGS: e.g. "-fsanitize=address,undefined"
        cc -std=gnu11 -O2 -Wall -Wvla -Wshadow -Werror -D_GNU_SOURCE ${BENCH_CFLAGS:-} -I"$build" -Isrc -Ibench "$@" \
                "$build/src/libpersistd.a" \
                $(pkg-config --cflags --libs libpq libcurl libcjson hiredis yaml-0.1 libmicrohttpd) \
                -lpthread -lm -o "$build/bench/$name"
        BENCH_BIN="$build/bench/$name"
}

fleet_cleanup() {
        local pid
        for pid in "${FLEET_PIDS[@]}"; do
                kill "$pid" 2>/dev/null || true
        done
        for pid in "${FLEET_PIDS[@]}"; do
                # A save child may still be writing; redis-server stops it on SIGTERM.
                for _ in $(seq 100); do
                        kill -0 "$pid" 2>/dev/null || break
                        sleep 0.05
                done
                kill -9 "$pid" 2>/dev/null || true
        done
        FLEET_PIDS=()
        [[ -n "$FLEET_DIR" && -d "$FLEET_DIR" ]] && rm -rf "$FLEET_DIR"
        FLEET_DIR=""
}

port_free() {
        ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# redis_spawn DIR: a redis-server with persistence off, on a free port written to REDIS_PORT.
redis_spawn() {
        local dir=$1 port=$((20000 + RANDOM % 20000))
        while ! port_free "$port"; do port=$((port + 1)); done
        mkdir -p "$dir"
        redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
                --dir "$dir" --dbfilename dump.rdb --rdbcompression no \
                --enable-debug-command yes --logfile "$dir/redis.log" \
                --daemonize no >/dev/null 2>&1 &
        FLEET_PIDS+=($!)
        REDIS_PORT=$port
        for _ in $(seq 200); do
                redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
                sleep 0.05
        done
        echo "redis-server on port $port did not start" >&2
        return 1
}

bench_dir() {
        [[ -n "$FLEET_DIR" ]] ||
                FLEET_DIR=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/persistd-bench.XXXXXX")
        export BENCH_FLEET_DIR=$FLEET_DIR # the sampler watches this directory's block device
}

# progress_start: one more, empty, redis-server for the progress store; sets PROGRESS_PORT.
progress_start() {
        bench_dir
        redis_spawn "$FLEET_DIR/progress"
        PROGRESS_PORT=$REDIS_PORT
}

# fleet_start N MB: N instances of about MB megabytes each (1 KiB values), in a fresh directory
# under ${BENCH_TMPDIR:-/var/tmp} (a real disk, not tmpfs). Sets FLEET_PORTS.
fleet_start() {
        local n=$1 mb=$2 i port
        command -v redis-server >/dev/null || { echo "redis-server not found" >&2; return 1; }
        bench_dir
        for ((i = 0; i < n; i++)); do
                redis_spawn "$FLEET_DIR/redis-$i"
                FLEET_PORTS+=("$REDIS_PORT")
        done
        # 1 KiB values: MB x 1000 keys make about MB megabytes of data (and of RDB file).
        local keys=$((mb * 1000))
        local fill=()
        for port in "${FLEET_PORTS[@]}"; do
                redis-cli -p "$port" DEBUG POPULATE "$keys" key 1024 >/dev/null &
                fill+=($!)
        done
        for i in "${fill[@]}"; do
                wait "$i"
        done
}

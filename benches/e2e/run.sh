#!/usr/bin/env bash
# End-to-end load benchmark: the example gateway with the full stack vs nginx vs a
# bare hyper-util forwarder (not part of the test run).
#
#   bash benches/e2e/run.sh                              # defaults below
#   DURATION=3 ROUNDS=5 bash benches/e2e/run.sh          # a shorter run
#   PROFILE=perf bash benches/e2e/run.sh                 # + one profiled gateway run
#   PROFILE=strace bash benches/e2e/run.sh               # + system calls per request
#
# Builds release binaries once (under `nice -n 10`): `example-gateway` and
# `proxy_load` of the benches/proxy-load package (its `upstream` and `bare` modes,
# the same ones benches/proxy/load.sh uses). Then starts on 127.0.0.1 only:
#   - the upstream (hyper, 13-byte body)                          :$UPSTREAM_PORT
#   - the example gateway, full stack (benches/e2e/gateway.yaml)  :$GATEWAY_PORT
#     (admin :$ADMIN_PORT; it also starts its small in-process demo services)
#   - the bare hyper-util forwarder                               :$BARE_PORT
#   - nginx as a plain reverse proxy with upstream keepalive      :$NGINX_PORT
#     (benches/e2e/nginx.conf.template)
# and measures each with wrk in alternating rounds (odd rounds nginx, bare, gateway;
# even rounds the reverse), every request carrying the same HS256 bearer token (minted
# here with python3 from the secret in gateway.yaml). It prints per-run numbers, the
# medians of req/s, p50, p99 and CPU time per request (utime+stime of the system's
# processes / requests: steadier than req/s on a shared machine) per system and the
# ratios gateway/nginx and gateway/bare. Any non-2xx response or socket error fails
# the run; the gateway must answer 401 without the token and 404 off-route.
#
# Fairness: every proxy gets PROXY_THREADS threads (gateway: TOKIO_WORKER_THREADS;
# bare: its thread argument; nginx: worker_processes) and is pinned to PROXY_CPUS; wrk
# and the upstream share LOADGEN_CPUS (taskset, when the machine has >= 2 CPUs). All
# processes started here are stopped on exit (trap).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/proxy/common.sh
. benches/proxy/common.sh
HERE="benches/e2e"

DURATION="${DURATION:-10}"          # seconds per measured run
WARMUP="${WARMUP:-2}"               # seconds of unmeasured warm-up per system
ROUNDS="${ROUNDS:-5}"               # alternating rounds (pairs: each round has all three)
CONNECTIONS="${CONNECTIONS:-32}"    # wrk connections
WRK_THREADS="${WRK_THREADS:-1}"
PROXY_THREADS="${PROXY_THREADS:-1}"
UPSTREAM_THREADS="${UPSTREAM_THREADS:-1}"
PROXY_CPUS="${PROXY_CPUS:-0}"
LOADGEN_CPUS="${LOADGEN_CPUS:-1}"
PROFILE="${PROFILE:-}"              # "" | perf | strace
PROFILE_SECONDS="${PROFILE_SECONDS:-5}"
SKIP_BUILD="${SKIP_BUILD:-}"        # non-empty: use existing release binaries
UPSTREAM_PORT="${UPSTREAM_PORT:-18180}"
GATEWAY_PORT="${GATEWAY_PORT:-18181}"
BARE_PORT="${BARE_PORT:-18182}"
NGINX_PORT="${NGINX_PORT:-18183}"
ADMIN_PORT="${ADMIN_PORT:-18184}"
REQ_PATH="/api/bench/items"         # routed by the gateway, stripped to /bench/items

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
need() { # binary apt-package
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "installing $2" >&2
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$2" >/dev/null
    fi
    command -v "$1" >/dev/null 2>&1 || { echo "$1 is required" >&2; exit 1; }
}
need wrk wrk
need curl curl
need python3 python3
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then need nginx nginx-light; fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

# Command prefixes (not functions: `PREFIX cmd &` must leave the server's own pid in $!,
# taskset execs the command).
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
    ON_PROXY=(taskset -c "$PROXY_CPUS"); ON_LOADGEN=(taskset -c "$LOADGEN_CPUS")
else
    ON_PROXY=(env); ON_LOADGEN=(env)
fi

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
if [ -z "$SKIP_BUILD" ]; then
    echo "building release binaries (nice -n 10)..." >&2
    nice -n 10 cargo build --release -q -p example-gateway
    nice -n 10 cargo build --release -q -p proxy-load
fi
GATEWAY_BIN="$TARGET_DIR/release/example-gateway"
LOAD_BIN="$TARGET_DIR/release/proxy_load"
for bin in "$GATEWAY_BIN" "$LOAD_BIN"; do [ -x "$bin" ] || { echo "binary not found: $bin" >&2; exit 1; }; done

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid" 2>/dev/null)" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the gateway document and the token -------------------------------------------
sed -e "s/@UPSTREAM_PORT@/$UPSTREAM_PORT/g" -e "s/@GATEWAY_PORT@/$GATEWAY_PORT/g" \
    -e "s/@ADMIN_PORT@/$ADMIN_PORT/g" "$HERE/gateway.yaml" >"$WORK/gateway.yaml"
SECRET="$(sed -n 's/^ *keys: { secret: "\([^"]*\)".*/\1/p' "$HERE/gateway.yaml")"
ISSUER="$(sed -n 's/^ *- issuer: "\([^"]*\)".*/\1/p' "$HERE/gateway.yaml")"
[ -n "$SECRET" ] && [ -n "$ISSUER" ] || { echo "cannot read secret/issuer from gateway.yaml" >&2; exit 1; }
TOKEN="$(SECRET="$SECRET" ISSUER="$ISSUER" python3 - <<'PY'
import base64, hashlib, hmac, json, os, time
def b64(raw): return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
now = int(time.time())
header = {"alg": "HS256", "typ": "JWT"}
claims = {"iss": os.environ["ISSUER"], "sub": "bench-user", "aud": "bench",
          "tier": "premium", "iat": now, "exp": now + 86400}
signing_input = b64(json.dumps(header, separators=(",", ":")).encode()) + "." + \
    b64(json.dumps(claims, separators=(",", ":")).encode())
sig = hmac.new(os.environ["SECRET"].encode(), signing_input.encode(), hashlib.sha256).digest()
print(signing_input + "." + b64(sig))
PY
)"
AUTH="Authorization: Bearer $TOKEN"

# --- processes ----------------------------------------------------------------------
for port in $UPSTREAM_PORT $GATEWAY_PORT $BARE_PORT $NGINX_PORT $ADMIN_PORT; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is already in use (set UPSTREAM_PORT/GATEWAY_PORT/... to free ones)" >&2; exit 1
    fi
done
"${ON_LOADGEN[@]}" "$LOAD_BIN" upstream "127.0.0.1:$UPSTREAM_PORT" "$UPSTREAM_THREADS" >"$WORK/upstream.log" 2>&1 & PIDS+=($!)
"${ON_PROXY[@]}" "$LOAD_BIN" bare "127.0.0.1:$BARE_PORT" "127.0.0.1:$UPSTREAM_PORT" "$PROXY_THREADS" >"$WORK/bare.log" 2>&1 & BARE_PID=$!; PIDS+=($BARE_PID)
TOKIO_WORKER_THREADS="$PROXY_THREADS" RUST_LOG=warn "${ON_PROXY[@]}" "$GATEWAY_BIN" --config "$WORK/gateway.yaml" >"$WORK/gateway.log" 2>&1 & GATEWAY_PID=$!; PIDS+=($GATEWAY_PID)

mkdir -p "$WORK/nginx/logs"
sed -e "s|@WORK@|$WORK|g" -e "s/@PROXY_THREADS@/$PROXY_THREADS/g" \
    -e "s/@UPSTREAM_PORT@/$UPSTREAM_PORT/g" -e "s/@NGINX_PORT@/$NGINX_PORT/g" \
    "$HERE/nginx.conf.template" >"$WORK/nginx.conf"
"${ON_PROXY[@]}" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx.conf" -g 'daemon off;' >"$WORK/nginx.log" 2>&1 & NGINX_PID=$!; PIDS+=($NGINX_PID)

for port in $UPSTREAM_PORT $GATEWAY_PORT $BARE_PORT $NGINX_PORT $ADMIN_PORT; do wait_port "$port"; done

# --- sanity: every system answers 2xx; the gateway's stack is really on ----------------
for port in $NGINX_PORT $BARE_PORT $GATEWAY_PORT; do
    curl -fsS -o /dev/null -H "$AUTH" "http://127.0.0.1:$port$REQ_PATH" \
        || { echo "proxy on $port does not answer 2xx" >&2; tail -n 20 "$WORK"/*.log >&2; exit 1; }
done
code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GATEWAY_PORT$REQ_PATH")"
[ "$code" = 401 ] || { echo "gateway without a token answered $code, expected 401 (JWT not on?)" >&2; exit 1; }
code="$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "http://127.0.0.1:$GATEWAY_PORT/elsewhere")"
[ "$code" = 404 ] || { echo "gateway off-route answered $code, expected 404 (router not on?)" >&2; exit 1; }
curl -fsS -D "$WORK/headers" -o /dev/null -H "$AUTH" "http://127.0.0.1:$GATEWAY_PORT$REQ_PATH"
grep -qi '^ratelimit' "$WORK/headers" \
    || echo "note: no RateLimit header in the gateway's answer" >&2

# --- measuring ------------------------------------------------------------------------
to_us() { # wrk duration (e.g. 1.23ms) -> microseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") print n; else if (u == "ms") print n * 1000; else if (u == "s") print n * 1000000; else print n;
    }'
}
# CPU time of a system's processes (cpu_ticks, common.sh).
TCK="$(getconf CLK_TCK)"
pids_of() { # name -> pids (nginx: master and its workers)
    case $1 in
        nginx) echo "$NGINX_PID $(cat /proc/"$NGINX_PID"/task/*/children 2>/dev/null)" ;;
        bare) echo "$BARE_PID" ;;
        gateway) echo "$GATEWAY_PID" ;;
    esac
}
port_of() { case $1 in nginx) echo "$NGINX_PORT" ;; bare) echo "$BARE_PORT" ;; gateway) echo "$GATEWAY_PORT" ;; esac; }
run() { # name seconds -> "rps p50_us p99_us cpu_us_per_request"
    local out rps p50 p99 before after reqs
    before="$(cpu_ticks $(pids_of "$1"))"
    out="$("${ON_LOADGEN[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${2}s" --latency -H "$AUTH" \
        "http://127.0.0.1:$(port_of "$1")$REQ_PATH")"
    if echo "$out" | grep -q -e 'Non-2xx' -e 'Socket errors'; then
        echo "$1: non-2xx responses or socket errors:" >&2; echo "$out" >&2; exit 1
    fi
    rps="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
    p50="$(to_us "$(echo "$out" | awk '$1 == "50%" {print $2}')")"
    p99="$(to_us "$(echo "$out" | awk '$1 == "99%" {print $2}')")"
    after="$(cpu_ticks $(pids_of "$1"))"
    reqs="$(echo "$out" | awk '/requests in/ {print $1}')"
    echo "$rps $p50 $p99 $(awk -v t="$((after - before))" -v k="$TCK" -v r="$reqs" 'BEGIN {printf "%.1f", t / k * 1e6 / r}')"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for name in nginx bare gateway; do run "$name" "$WARMUP" >/dev/null; done

declare -A RPS P50 P99 CPU
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then order="nginx bare gateway"; else order="gateway bare nginx"; fi
    for name in $order; do
        read -r rps p50 p99 cpu < <(run "$name" "$DURATION")
        printf 'round %d  %-8s %10.0f req/s   p50 %7.0f us   p99 %7.0f us   cpu %6.1f us/req   load %s\n' \
            "$round" "$name" "$rps" "$p50" "$p99" "$cpu" "$(cut -d' ' -f1 /proc/loadavg)"
        RPS[$name]+="$rps "; P50[$name]+="$p50 "; P99[$name]+="$p99 "; CPU[$name]+="$cpu "
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
declare -A MR M50 M99 MC
for name in nginx bare gateway; do
    MC[$name]="$(echo "${CPU[$name]}" | median)"
    MR[$name]="$(echo "${RPS[$name]}" | median)"
    M50[$name]="$(echo "${P50[$name]}" | median)"
    M99[$name]="$(echo "${P99[$name]}" | median)"
done
echo
echo "median of $ROUNDS alternating rounds (${DURATION}s each, wrk -t$WRK_THREADS -c$CONNECTIONS, $PROXY_THREADS proxy thread(s) on CPU $PROXY_CPUS, wrk+upstream on CPU $LOADGEN_CPUS):"
for name in nginx bare gateway; do
    printf '  %-8s %10.0f req/s   p50 %7.0f us   p99 %7.0f us   cpu %6.1f us/req\n' "$name" "${MR[$name]}" "${M50[$name]}" "${M99[$name]}" "${MC[$name]}"
done
awk -v g="${MR[gateway]}" -v n="${MR[nginx]}" -v b="${MR[bare]}" \
    -v gp="${M99[gateway]}" -v np="${M99[nginx]}" -v bp="${M99[bare]}" \
    -v gc="${MC[gateway]}" -v nc="${MC[nginx]}" -v bc="${MC[bare]}" 'BEGIN {
    printf "throughput: gateway/nginx = %.2f   gateway/bare = %.2f   bare/nginx = %.2f\n", g / n, g / b, b / n;
    printf "p99:        gateway/nginx = %.2f   gateway/bare = %.2f   (lower is better)\n", gp / np, gp / bp;
    printf "cpu/req:    gateway/nginx = %.2f   gateway/bare = %.2f   (lower is better)\n", gc / nc, gc / bc;
    if (g / n < 1.0) printf "gateway/nginx throughput is BELOW 1.0: the gateway is slower than nginx here.\n";
}'

# --- optional profile of the gateway under load ---------------------------------------
# A flat profile (perf's cpu-clock software event works in VMs without PMU counters).
# Release binaries keep their symbols, so functions are named; inlined code is charged
# to its caller.
if [ "$PROFILE" = perf ]; then
    need perf linux-perf
    echo; echo "perf record of the gateway for ${PROFILE_SECONDS}s under load..."
    "${ON_LOADGEN[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$((PROFILE_SECONDS + 2))s" -H "$AUTH" \
        "http://127.0.0.1:$GATEWAY_PORT$REQ_PATH" >/dev/null &
    WRK_PID=$!
    sleep 1
    perf record -q -e cpu-clock -F 999 -p "$GATEWAY_PID" -o "$WORK/perf.data" -- sleep "$PROFILE_SECONDS" >/dev/null 2>&1
    wait "$WRK_PID" || true
    echo "top symbols (self time):"
    perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null \
        | grep -v '^#' | grep '%' | sed 's/[[:space:]-]*$//' | head -n "${PROFILE_TOP:-45}" || true
    echo "by shared object:"
    perf report -i "$WORK/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -v '^#' | grep '%' | sed 's/[[:space:]-]*$//' || true
fi

# System calls per request of each system (strace -c; strace slows the traced process,
# so only the counts are meaningful, not the throughput).
if [ "$PROFILE" = strace ]; then
    need strace strace
    for name in nginx bare gateway; do
        : >"$WORK/strace.$name"
        STRACE_PIDS=()
        for pid in $(pids_of "$name"); do
            timeout "$((PROFILE_SECONDS + 2))" strace -c -f -p "$pid" -o "$WORK/strace.$name.$pid" >/dev/null 2>&1 &
            STRACE_PIDS+=($!)
        done
        sleep 1
        n="$("${ON_LOADGEN[@]}" wrk -t1 -c"$CONNECTIONS" -d"${PROFILE_SECONDS}s" -H "$AUTH" \
            "http://127.0.0.1:$(port_of "$name")$REQ_PATH" | awk '/requests in/ {print $1}')"
        for p in "${STRACE_PIDS[@]}"; do wait "$p" || true; done
        echo "$name: system calls per request ($n requests)"
        cat "$WORK"/strace."$name".* | awk -v n="$n" '$NF != "total" && $NF != "syscall" && $4 + 0 > 0 {c[$NF] += $4}
            END {for (k in c) if (c[k] / n >= 0.01) printf "  %-16s %6.2f\n", k, c[k] / n}' | sort -k2 -gr
    done
fi

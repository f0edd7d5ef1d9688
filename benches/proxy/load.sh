#!/usr/bin/env bash
# Load benchmark of gateway-layers-proxy on loopback (not part of the test run).
#
#   bash benches/proxy/load.sh                 # defaults below
#   DURATION=10 ROUNDS=5 CONNECTIONS=64 bash benches/proxy/load.sh
#   HEAD_TO_HEAD=1 ROUNDS=11 bash benches/proxy/load.sh   # `Proxy` and nginx at the same time
#
# Builds the release binary `proxy_load` (package benches/proxy-load), then
# starts on 127.0.0.1:
#   - an upstream (hyper, 13-byte body)              :18080
#   - gateway-layers-proxy `Proxy` (hyper server)    :18081
#   - a bare hyper-util forwarding handler           :18082
#   - the bare forwarder with connections driven in place (`intask`, the floor of
#     the design `Proxy` uses for HTTP/1.1)          :18084
#   - nginx as a plain reverse proxy, keepalive      :18083
# and measures each proxy with wrk (installed with apt-get if missing) in alternating
# runs (odd rounds nginx, gateway, bare, intask; even rounds the reverse). It prints per-run numbers,
# the median requests/s, p99 and CPU time per request (user + system of the proxy's
# processes during the run) of each, and the ratios gateway/nginx and gateway/bare
# (throughput: higher is better; p99 ratio = other p99 / gateway p99, higher is better;
# CPU per request: lower is better, and steadier than req/s on a shared machine).
#
# Fairness: each proxy gets PROXY_THREADS worker threads (nginx: worker processes) and
# is pinned to PROXY_CPUS; the upstream and wrk share LOADGEN_CPUS (taskset, when
# available and the machine has at least 2 CPUs). Everything is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/proxy/common.sh
. benches/proxy/common.sh

DURATION="${DURATION:-5}"          # seconds per run
ROUNDS="${ROUNDS:-3}"              # alternating rounds
CONNECTIONS="${CONNECTIONS:-64}"   # wrk connections
WRK_THREADS="${WRK_THREADS:-1}"
PROXY_THREADS="${PROXY_THREADS:-1}"
UPSTREAM_THREADS="${UPSTREAM_THREADS:-1}"
PROXY_CPUS="${PROXY_CPUS:-0}"
LOADGEN_CPUS="${LOADGEN_CPUS:-1}"
UPSTREAM_PORT=18080 GATEWAY_PORT=18081 BARE_PORT=18082 NGINX_PORT=18083 INTASK_PORT=18084

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
need() {
    local bin="$1" pkg="$2"
    if ! command -v "$bin" >/dev/null 2>&1; then
        echo "installing $pkg" >&2
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$pkg" >/dev/null
    fi
    command -v "$bin" >/dev/null 2>&1 || { echo "$bin is required" >&2; exit 1; }
}
need wrk wrk
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then need nginx nginx-light; fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

pin() { # pin CPUS cmd...
    local cpus="$1"; shift
    if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then taskset -c "$cpus" "$@"; else "$@"; fi
}
pin_bg() { # pin_bg CPUS cmd... &   (exec: the backgrounded call's $! is then the process
    # itself, so cleanup's kill reaches it and not only the subshell)
    local cpus="$1"; shift
    if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}

echo "building release binary..." >&2
cargo build --release -q -p proxy-load
BIN="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/proxy_load"
[ -x "$BIN" ] || { echo "binary not found: $BIN" >&2; exit 1; }

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    kill "$(cat "$WORK/nginx.pid" 2>/dev/null)" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

pin_bg "$LOADGEN_CPUS" "$BIN" upstream "127.0.0.1:$UPSTREAM_PORT" "$UPSTREAM_THREADS" >"$WORK/upstream.log" 2>&1 & PIDS+=($!)
declare -A PID
pin_bg "$PROXY_CPUS" "$BIN" gateway "127.0.0.1:$GATEWAY_PORT" "127.0.0.1:$UPSTREAM_PORT" "$PROXY_THREADS" >"$WORK/gateway.log" 2>&1 & PIDS+=($!); PID[gateway]=$!
pin_bg "$PROXY_CPUS" "$BIN" bare "127.0.0.1:$BARE_PORT" "127.0.0.1:$UPSTREAM_PORT" "$PROXY_THREADS" >"$WORK/bare.log" 2>&1 & PIDS+=($!); PID[bare]=$!
pin_bg "$PROXY_CPUS" "$BIN" intask "127.0.0.1:$INTASK_PORT" "127.0.0.1:$UPSTREAM_PORT" "$PROXY_THREADS" >"$WORK/intask.log" 2>&1 & PIDS+=($!); PID[intask]=$!

nginx_conf "$WORK" "$UPSTREAM_PORT" "$NGINX_PORT" "$PROXY_THREADS" >"$WORK/nginx.conf"
pin_bg "$PROXY_CPUS" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx.conf" -g 'daemon off;' >"$WORK/nginx.log" 2>&1 & PIDS+=($!); PID[nginx]=$!

for port in $UPSTREAM_PORT $GATEWAY_PORT $BARE_PORT $NGINX_PORT $INTASK_PORT; do wait_port "$port"; done
if command -v curl >/dev/null 2>&1; then
    for port in $GATEWAY_PORT $BARE_PORT $NGINX_PORT $INTASK_PORT; do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/check" || { echo "proxy on $port does not answer 2xx" >&2; cat "$WORK"/*.log >&2; exit 1; }
    done
fi

# p99 in microseconds from wrk --latency output.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") print n; else if (u == "ms") print n * 1000; else if (u == "s") print n * 1000000; else print n;
    }'
}
TCK="$(getconf CLK_TCK)"
pids_of() { # name -> the proxy's pids (nginx: master and workers)
    echo "${PID[$1]} $(cat /proc/"${PID[$1]}"/task/*/children 2>/dev/null)"
}
run() { # name port -> "rps p99_us cpu_us_per_request"
    local out rps p99 before after reqs
    before="$(cpu_ticks $(pids_of "$1"))"
    out="$(pin "$LOADGEN_CPUS" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$2/bench")"
    after="$(cpu_ticks $(pids_of "$1"))"
    rps="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
    p99="$(to_us "$(echo "$out" | awk '$1 == "99%" {print $2}')")"
    reqs="$(echo "$out" | awk '/requests in/ {print $1}')"
    if echo "$out" | grep -q 'Non-2xx'; then echo "$1: non-2xx responses!" >&2; echo "$out" >&2; fi
    echo "$rps $p99 $(awk -v t="$((after - before))" -v k="$TCK" -v r="$reqs" 'BEGIN {printf "%.2f", t / k * 1e6 / r}')"
}

# Warm-up (connections, pools), not counted.
for port in $NGINX_PORT $BARE_PORT $INTASK_PORT $GATEWAY_PORT; do
    pin "$LOADGEN_CPUS" wrk -t1 -c"$CONNECTIONS" -d1s "http://127.0.0.1:$port/warm" >/dev/null
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# HEAD_TO_HEAD=1: `Proxy` and nginx loaded at the same time, each by its own wrk with
# CONNECTIONS connections, both proxies on PROXY_CPUS. Both see the same machine at the
# same moment, so a drift of the machine (other tenants, steal time) cancels out of
# their ratio, which alternating runs only average. The scheduler gives the two
# processes equal CPU time while both are busy, so the ratio of requests served is
# about the inverse ratio of their CPU cost per request; both are printed, with the
# ratio of p99 latencies, and at the end each proxy's user and kernel time per
# request. Sharing a core also shares its caches, which alternating runs do not.
if [ "${HEAD_TO_HEAD:-0}" = 1 ]; then
    REQ_RATIOS="" CPU_RATIOS="" P99_RATIOS="" GU="" NU="" GK="" NK="" GC="" NC=""
    for round in $(seq 1 "$ROUNDS"); do
        gb="$(cpu_ticks $(pids_of gateway))"; nb="$(cpu_ticks $(pids_of nginx))"
        gub="$(user_ticks $(pids_of gateway))"; nub="$(user_ticks $(pids_of nginx))"
        pin "$LOADGEN_CPUS" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$GATEWAY_PORT/bench" >"$WORK/wrk.gateway" &
        wg=$!
        pin "$LOADGEN_CPUS" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$NGINX_PORT/bench" >"$WORK/wrk.nginx" &
        wn=$!
        wait "$wg" "$wn"
        ga="$(cpu_ticks $(pids_of gateway))"; na="$(cpu_ticks $(pids_of nginx))"
        gua="$(user_ticks $(pids_of gateway))"; nua="$(user_ticks $(pids_of nginx))"
        for name in gateway nginx; do
            if grep -q 'Non-2xx' "$WORK/wrk.$name"; then echo "$name: non-2xx responses!" >&2; cat "$WORK/wrk.$name" >&2; fi
        done
        g="$(awk '/requests in/ {print $1}' "$WORK/wrk.gateway")"; n="$(awk '/requests in/ {print $1}' "$WORK/wrk.nginx")"
        if [ -z "$g" ] || [ -z "$n" ] || [ "$g" -eq 0 ] || [ "$n" -eq 0 ] || [ "$((ga - gb))" -eq 0 ] || [ "$((na - nb))" -eq 0 ]; then
            echo "round $round: a proxy served no requests or used no CPU; wrk printed:" >&2
            cat "$WORK/wrk.gateway" "$WORK/wrk.nginx" >&2
            exit 1
        fi
        gp="$(to_us "$(awk '$1 == "99%" {print $2}' "$WORK/wrk.gateway")")"; np="$(to_us "$(awk '$1 == "99%" {print $2}' "$WORK/wrk.nginx")")"
        if ! awk -v a="$gp" -v b="$np" 'BEGIN { exit !(a > 0 && b > 0) }'; then
            echo "round $round: wrk printed no p99; its output:" >&2
            cat "$WORK/wrk.gateway" "$WORK/wrk.nginx" >&2
            exit 1
        fi
        read -r req cpu gc nc p99 < <(awk -v g="$g" -v n="$n" -v gt="$((ga - gb))" -v nt="$((na - nb))" -v k="$TCK" -v gp="$gp" -v np="$np" 'BEGIN {
            gc = gt / k * 1e6 / g; nc = nt / k * 1e6 / n; printf "%.3f %.3f %.2f %.2f %.3f\n", g / n, gc / nc, gc, nc, np / gp
        }')
        printf 'round %d  gateway %6d req/s %5.2f us/req p99 %5.0f us   nginx %6d req/s %5.2f us/req p99 %5.0f us   requests %s   cpu/req %s   p99 nginx/gateway %s\n' \
            "$round" "$((g / DURATION))" "$gc" "$gp" "$((n / DURATION))" "$nc" "$np" "$req" "$cpu" "$p99"
        REQ_RATIOS+="$req " CPU_RATIOS+="$cpu " P99_RATIOS+="$p99 "
        GU+="$(awk -v t="$((gua - gub))" -v k="$TCK" -v r="$g" 'BEGIN {printf "%.2f", t / k * 1e6 / r}') "
        NU+="$(awk -v t="$((nua - nub))" -v k="$TCK" -v r="$n" 'BEGIN {printf "%.2f", t / k * 1e6 / r}') "
        GK+="$(awk -v t="$((ga - gb - gua + gub))" -v k="$TCK" -v r="$g" 'BEGIN {printf "%.2f", t / k * 1e6 / r}') "
        NK+="$(awk -v t="$((na - nb - nua + nub))" -v k="$TCK" -v r="$n" 'BEGIN {printf "%.2f", t / k * 1e6 / r}') "
        GC+="$gc " NC+="$nc "
    done
    echo
    echo "head to head, $ROUNDS rounds of ${DURATION}s, $CONNECTIONS connections each, both proxies on CPU(s) $PROXY_CPUS:"
    echo "$REQ_RATIOS" | tr ' ' '\n' | grep -v '^$' | sort -g | awk -v m="$(echo "$REQ_RATIOS" | median)" '{a[NR]=$1; if ($1 >= 1) up++} END {
        printf "  requests served gateway/nginx: median %.3fx (min %.3fx, max %.3fx; gateway ahead in %d of %d rounds)\n", m, a[1], a[NR], up + 0, NR }'
    echo "$CPU_RATIOS" | tr ' ' '\n' | grep -v '^$' | sort -g | awk -v m="$(echo "$CPU_RATIOS" | median)" '{a[NR]=$1} END {
        printf "  cpu per request gateway/nginx (lower is better): median %.3f (min %.3f, max %.3f)\n", m, a[1], a[NR] }'
    # Where the CPU time goes (each a median over the rounds; clock ticks, so coarse
    # per round).
    awk -v gc="$(echo "$GC" | median)" -v gu="$(echo "$GU" | median)" -v gk="$(echo "$GK" | median)" \
        -v nc="$(echo "$NC" | median)" -v nu="$(echo "$NU" | median)" -v nk="$(echo "$NK" | median)" 'BEGIN {
        printf "  cpu per request (medians): gateway %.2f us (user %.2f, kernel %.2f)   nginx %.2f us (user %.2f, kernel %.2f)\n", gc, gu, gk, nc, nu, nk }'
    echo "$P99_RATIOS" | tr ' ' '\n' | grep -v '^$' | sort -g | awk -v m="$(echo "$P99_RATIOS" | median)" '{a[NR]=$1; if ($1 >= 1) up++} END {
        printf "  p99 nginx/gateway (>1 means gateway is faster): median %.3fx (min %.3fx, max %.3fx; gateway faster in %d of %d rounds)\n", m, a[1], a[NR], up + 0, NR }'
    exit 0
fi

# Order: odd rounds nginx, gateway, bare, intask; even rounds the reverse, so nginx
# and gateway always run next to each other and a slow drift of the machine favours
# neither. Each round also gives a paired ratio gateway/nginx (two adjacent runs);
# their median is less exposed to the machine's swings than a ratio of medians.
declare -A RPS P99 CPU
PAIRED=""
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then order="nginx gateway bare intask"; else order="intask bare gateway nginx"; fi
    declare -A THIS=()
    for name in $order; do
        case $name in nginx) port=$NGINX_PORT ;; bare) port=$BARE_PORT ;; intask) port=$INTASK_PORT ;; gateway) port=$GATEWAY_PORT ;; esac
        read -r rps p99 cpu < <(run "$name" "$port")
        printf 'round %d  %-8s %10.0f req/s   p99 %8.0f us   cpu %6.2f us/req\n' "$round" "$name" "$rps" "$p99" "$cpu"
        RPS[$name]+="$rps "
        P99[$name]+="$p99 "
        CPU[$name]+="$cpu "
        THIS[$name]="$rps"
    done
    PAIRED+="$(awk -v g="${THIS[gateway]}" -v n="${THIS[nginx]}" 'BEGIN {printf "%.3f", g / n}') "
done

declare -A MR MP MC
for name in nginx bare intask gateway; do
    MR[$name]="$(echo "${RPS[$name]}" | median)"
    MP[$name]="$(echo "${P99[$name]}" | median)"
    MC[$name]="$(echo "${CPU[$name]}" | median)"
done
echo
echo "median of $ROUNDS alternating runs (${DURATION}s each, $CONNECTIONS connections, $PROXY_THREADS proxy thread(s)):"
for name in nginx bare intask gateway; do
    printf '  %-8s %10.0f req/s   p99 %8.0f us   cpu %6.2f us/req\n' "$name" "${MR[$name]}" "${MP[$name]}" "${MC[$name]}"
done
awk -v g="${MR[gateway]}" -v n="${MR[nginx]}" -v b="${MR[bare]}" -v i="${MR[intask]}" \
    -v gp="${MP[gateway]}" -v np="${MP[nginx]}" -v bp="${MP[bare]}" \
    -v gc="${MC[gateway]}" -v nc="${MC[nginx]}" -v bc="${MC[bare]}" 'BEGIN {
    printf "throughput: gateway/nginx = %.2fx   gateway/bare = %.2fx   bare/nginx = %.2fx   intask/nginx = %.2fx\n", g / n, g / b, b / n, i / n;
    printf "p99 (other/gateway, >1 means gateway is faster): nginx/gateway = %.2fx   bare/gateway = %.2fx\n", np / gp, bp / gp;
    printf "cpu/req (lower is better): gateway/nginx = %.2f   gateway/bare = %.2f\n", gc / nc, gc / bc;
}'
echo "paired gateway/nginx per round: $PAIRED"
echo "$PAIRED" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1; if ($1 >= 1) up++} END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2;
    printf "paired throughput gateway/nginx: median %.2fx (min %.2fx, max %.2fx; gateway ahead in %d of %d rounds)\n", m, a[1], a[NR], up, NR
}'

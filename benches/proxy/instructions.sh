#!/usr/bin/env bash
# Instructions per proxied request, counted with callgrind (deterministic, so it is
# meaningful on a busy or virtual machine where wall-clock load tests are noisy).
#
#   bash benches/proxy/instructions.sh            # N=1000 requests
#
# Runs `proxy_load inproc {direct,bare,intask,gateway} N` (upstream, server under test and a
# sequential keep-alive client in one thread) for N and N/5 requests and prints the
# per-request difference, i.e. without start-up costs. "forwarding cost" is the
# instructions a proxy hop adds over the direct client->upstream exchange. "intask" is
# the bare forwarder with its upstream connections driven in place (no connection
# task), the design `Proxy` uses for HTTP/1.1: the floor for that design.
#
# Then the proxy process alone, nginx included (PROCESS=0 skips this part): each
# proxy (nginx with `master_process off`, one worker, the same config as load.sh;
# bare, intask and `Proxy` as separate processes) runs under callgrind while curl
# sends WARM, then N sequential keep-alive requests through it to the `proxy_load`
# upstream; `callgrind_control --dump` after the warm-up and after the N requests
# gives the instructions of exactly those N requests in that process. Kernel work
# (the syscalls, which strace shows to be the same for all) is not counted.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/proxy/common.sh
. benches/proxy/common.sh
N="${N:-1000}"
SMALL=$((N / 5))
PROCESS="${PROCESS:-1}"
WARM="${WARM:-200}"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
need() { # need binary package
    if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$1" ]; then
        as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$2" >/dev/null
    fi
}
need valgrind valgrind
if [ "$PROCESS" = 1 ]; then need nginx nginx-light; need curl curl; fi
cargo build --release -q -p proxy-load
BIN="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/proxy_load"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
count() { # which n -> instructions
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$1.$2" "$BIN" inproc "$1" "$2" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
declare -A PER
for which in direct bare intask gateway; do
    big="$(count "$which" "$N")"; small="$(count "$which" "$SMALL")"
    PER[$which]=$(( (big - small) / (N - SMALL) ))
    printf '%-8s %8d instructions per request (client + upstream + proxy)\n' "$which" "${PER[$which]}"
done
bare_cost=$(( PER[bare] - PER[direct] )); gw_cost=$(( PER[gateway] - PER[direct] ))
in_cost=$(( PER[intask] - PER[direct] ))
echo "forwarding cost: bare $bare_cost, intask $in_cost, gateway $gw_cost instructions per request"
awk -v b="$bare_cost" -v g="$gw_cost" 'BEGIN { printf "gateway/bare forwarding cost = %.2fx (lower is better)\n", g / b }'

[ "$PROCESS" = 1 ] || exit 0

# The proxy process alone.
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
UP_PORT=28180 PX_PORT=28181
"$BIN" upstream "127.0.0.1:$UP_PORT" 1 >"$WORK/upstream.log" 2>&1 &
UP_PID=$!
trap 'kill "$UP_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
nginx_conf "$WORK" "$UP_PORT" "$PX_PORT" 1 single >"$WORK/nginx.conf"
wait_port "$UP_PORT"
process() { # which -> instructions per request in the proxy process
    local which="$1" pid total
    rm -f "$WORK"/px.*
    # --compress-strings=no: each dump names its functions in full, so the second
    # one can be read on its own (callgrind_annotate).
    local cg=(valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$WORK/px.%p")
    case $which in
        nginx) "${cg[@]}" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx.conf" >"$WORK/proxy.log" 2>&1 & ;;
        *) "${cg[@]}" "$BIN" "$which" "127.0.0.1:$PX_PORT" "127.0.0.1:$UP_PORT" 1 >"$WORK/proxy.log" 2>&1 & ;;
    esac
    pid=$!
    wait_port "$PX_PORT"
    curl -fsS -o /dev/null "http://127.0.0.1:$PX_PORT/warm[1-$WARM]"
    callgrind_control --dump "$pid" >/dev/null 2>&1
    curl -fsS -o /dev/null "http://127.0.0.1:$PX_PORT/run[1-$N]"
    callgrind_control --dump "$pid" >/dev/null 2>&1
    total="$(sed -n 's/^summary: *//p' "$WORK"/px.*.2)"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo $(( total / N ))
}
declare -A ALONE
for which in nginx bare intask gateway; do
    ALONE[$which]="$(process "$which")"
    printf '%-8s %8d instructions per request in the proxy process alone\n' "$which" "${ALONE[$which]}"
done
awk -v g="${ALONE[gateway]}" -v n="${ALONE[nginx]}" -v i="${ALONE[intask]}" -v b="${ALONE[bare]}" 'BEGIN {
    printf "proxy process: gateway/nginx = %.2fx   intask/nginx = %.2fx   bare/nginx = %.2fx (lower is better)\n", g / n, i / n, b / n
}'

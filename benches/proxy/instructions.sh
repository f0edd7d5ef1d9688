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
# nginx is not in this comparison (multi-process); see load.sh for it.
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${N:-1000}"
SMALL=$((N / 5))
if ! command -v valgrind >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; else sudo apt-get install -y -qq valgrind >/dev/null; fi
fi
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

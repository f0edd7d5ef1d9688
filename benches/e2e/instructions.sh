#!/usr/bin/env bash
# Instructions the example gateway executes per request with the full stack of
# gateway.yaml, counted with callgrind (deterministic, so it is meaningful on a busy or
# virtual machine where wall-clock load tests are noisy).
#
#   bash benches/e2e/instructions.sh              # N=2000 requests after WARM=300
#   LAYERS=1 bash benches/e2e/instructions.sh     # + what each plugin adds
#   KEEP=1 bash benches/e2e/instructions.sh       # keep the callgrind files, print the top functions
#
# Starts the `proxy_load` upstream, then the gateway under callgrind; curl sends WARM,
# then N sequential keep-alive requests with the bearer token (minted here with python3
# from the secret in gateway.yaml), and `callgrind_control --dump` after each batch
# gives the instructions of exactly those N requests in the gateway process (no
# start-up, no clock calibration). Kernel work is not counted.
#
# LAYERS=1 repeats the count with the document's service stripped of one plugin at a
# time (request id, rate limit, JWT with the rate limit, whose key is the token's
# subject, transform, retry, breaker) and with all of them off (what is left: trace
# context, client IP, metrics, router and proxy), and prints the difference to the
# full stack: the instructions each plugin costs per request.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=benches/proxy/common.sh
. benches/proxy/common.sh
HERE=benches/e2e
N="${N:-2000}"
WARM="${WARM:-300}"
UPSTREAM_PORT="${UPSTREAM_PORT:-18190}"
GATEWAY_PORT="${GATEWAY_PORT:-18191}"
ADMIN_PORT="${ADMIN_PORT:-18194}"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
for tool in valgrind python3 curl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$tool" >/dev/null
    fi
done
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -q -p example-gateway
    cargo build --release -q -p proxy-load
fi
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
GATEWAY_BIN="${GATEWAY_BIN:-$TARGET_DIR/release/example-gateway}"   # GATEWAY_BIN=...: another build, e.g. of an older commit
LOAD_BIN="$TARGET_DIR/release/proxy_load"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "callgrind files kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

sed -e "s/@UPSTREAM_PORT@/$UPSTREAM_PORT/g" -e "s/@GATEWAY_PORT@/$GATEWAY_PORT/g" \
    -e "s/@ADMIN_PORT@/$ADMIN_PORT/g" "$HERE/gateway.yaml" >"$WORK/full.yaml"
SECRET="$(sed -n 's/^ *keys: { secret: "\([^"]*\)".*/\1/p' "$HERE/gateway.yaml")"
ISSUER="$(sed -n 's/^ *- issuer: "\([^"]*\)".*/\1/p' "$HERE/gateway.yaml")"
[ -n "$SECRET" ] && [ -n "$ISSUER" ] || { echo "cannot read secret/issuer from gateway.yaml" >&2; exit 1; }
TOKEN="$(SECRET="$SECRET" ISSUER="$ISSUER" python3 - <<'PY'
import base64, hashlib, hmac, json, os, time
def b64(raw): return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
now = int(time.time())
claims = {"iss": os.environ["ISSUER"], "sub": "bench-user", "aud": "bench",
          "tier": "premium", "iat": now, "exp": now + 86400}
signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode()) + "." + \
    b64(json.dumps(claims, separators=(",", ":")).encode())
sig = hmac.new(os.environ["SECRET"].encode(), signing_input.encode(), hashlib.sha256).digest()
print(signing_input + "." + b64(sig))
PY
)"

without() { # keys... : the full document without those service-level plugin keys
    awk -v drop=" $* " '
        { match($0, /^ */); indent = RLENGTH }
        /[^ ]/ && indent < 4 { skip = 0 }
        /^    [a-z_]+:/ { key = $1; sub(/:.*/, "", key); skip = index(drop, " " key " ") > 0 }
        !skip' "$WORK/full.yaml"
}

"$LOAD_BIN" upstream "127.0.0.1:$UPSTREAM_PORT" 1 >"$WORK/upstream.log" 2>&1 & PIDS+=($!)
wait_port "$UPSTREAM_PORT"
count() { # variant -> instructions per request in the gateway process
    local variant="$1" pid total url="http://127.0.0.1:$GATEWAY_PORT/api/bench/items"
    rm -f "$WORK"/cg.*
    # --compress-strings=no: each dump names its functions in full (callgrind_annotate).
    TOKIO_WORKER_THREADS=1 RUST_LOG=warn valgrind --tool=callgrind --compress-strings=no \
        --callgrind-out-file="$WORK/cg.$variant" "$GATEWAY_BIN" --config "$WORK/$variant.yaml" \
        >"$WORK/gateway.$variant.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")   # stopped by cleanup if a step below fails
    wait_port "$GATEWAY_PORT"
    curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "$url?warm=[1-$WARM]" \
        || { tail -n 20 "$WORK/gateway.$variant.log" >&2; exit 1; }
    callgrind_control --dump "$pid" >/dev/null 2>&1
    curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "$url?run=[1-$N]" \
        || { tail -n 20 "$WORK/gateway.$variant.log" >&2; exit 1; }
    callgrind_control --dump "$pid" >/dev/null 2>&1
    total="$(sed -n 's/^summary: *//p' "$WORK/cg.$variant.2")"
    [ -n "$total" ] || { echo "no callgrind dump for $variant" >&2; exit 1; }
    if [ -n "${KEEP:-}" ] && [ "$variant" = full ]; then
        callgrind_annotate "$WORK/cg.$variant.2" 2>/dev/null | sed -n '/file:function/,$p' \
            | head -n "${TOP:-40}" | cut -c1-180 >&2
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo $(( total / N ))
}
full="$(count full)"
echo "gateway: $full instructions per request (full stack of gateway.yaml)"
if [ -n "${LAYERS:-}" ]; then
    # name | keys removed from the service
    while IFS='|' read -r name keys; do
        without $keys >"$WORK/$name.yaml"
        # A key gateway.yaml no longer has would silently measure the full stack again.
        if cmp -s "$WORK/full.yaml" "$WORK/$name.yaml"; then
            echo "gateway.yaml has none of: $keys (update the list in this script)" >&2; exit 1
        fi
        n="$(count "$name")"
        printf '  %-26s %7d instructions per request: %6d for %s\n' "without $name" "$n" $((full - n)) "$name"
    done <<'EOF'
request_id|request_id
rate_limit|rate_limit
jwt+rate_limit|jwt rate_limit
transform|transform
retry|retry
breaker|breaker
all plugins|request_id jwt rate_limit transform retry breaker
EOF
fi

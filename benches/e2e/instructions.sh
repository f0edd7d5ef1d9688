#!/usr/bin/env bash
# Instructions the example gateway executes per request with the full stack of
# gateway.yaml, counted with callgrind (deterministic, so it is meaningful on a busy or
# virtual machine where wall-clock load tests are noisy).
#
#   bash benches/e2e/instructions.sh              # N=10000 requests
#   KEEP=1 bash benches/e2e/instructions.sh       # keep the callgrind files, print the top functions
#
# Starts the `proxy_load` upstream, then the gateway under callgrind twice (N and N/5
# sequential keep-alive requests from a Python client) and prints the per-request
# difference, i.e. without start-up costs. Only the gateway process is counted.
# N defaults to 10,000: the rate limiter's clock (quanta) calibrates at start-up for a
# stretch of wall time, so the start-up's instruction count varies by a few million
# between runs; over 8,000 requests that is about +-0.3k per request (over 1,600,
# +-2k).
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=benches/e2e
N="${N:-10000}"
SMALL=$((N / 5))
UPSTREAM_PORT="${UPSTREAM_PORT:-18190}"
GATEWAY_PORT="${GATEWAY_PORT:-18191}"
ADMIN_PORT="${ADMIN_PORT:-18194}"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
for tool in valgrind python3; do
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
    -e "s/@ADMIN_PORT@/$ADMIN_PORT/g" "$HERE/gateway.yaml" >"$WORK/gateway.yaml"
SECRET="$(sed -n 's/^ *keys: { secret: "\([^"]*\)".*/\1/p' "$HERE/gateway.yaml")"
ISSUER="$(sed -n 's/^ *- issuer: "\([^"]*\)".*/\1/p' "$HERE/gateway.yaml")"
cat >"$WORK/client.py" <<'PY'
import base64, hashlib, hmac, http.client, json, os, sys, time
def b64(raw): return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
now = int(time.time())
claims = {"iss": os.environ["ISSUER"], "sub": "bench-user", "aud": "bench",
          "tier": "premium", "iat": now, "exp": now + 86400}
signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + \
    b64(json.dumps(claims, separators=(",", ":")).encode())
sig = hmac.new(os.environ["SECRET"].encode(), signing_input.encode(), hashlib.sha256).digest()
headers = {"Authorization": "Bearer " + signing_input + "." + b64(sig)}
port, n = int(sys.argv[1]), int(sys.argv[2])
for _ in range(100):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30); conn.connect(); break
    except OSError:
        time.sleep(0.2)
for _ in range(n):
    conn.request("GET", "/api/bench/items", headers=headers)
    response = conn.getresponse(); response.read()
    if response.status != 200:
        sys.exit(f"gateway answered {response.status}")
PY

"$LOAD_BIN" upstream "127.0.0.1:$UPSTREAM_PORT" 1 >"$WORK/upstream.log" 2>&1 & PIDS+=($!)
count() { # n -> instructions of the gateway process
    TOKIO_WORKER_THREADS=1 RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$1" \
        "$GATEWAY_BIN" --config "$WORK/gateway.yaml" >"$WORK/gateway.$1.log" 2>&1 &
    local pid=$!
    SECRET="$SECRET" ISSUER="$ISSUER" python3 "$WORK/client.py" "$GATEWAY_PORT" "$1" \
        || { kill -TERM "$pid"; tail -n 20 "$WORK/gateway.$1.log" >&2; exit 1; }
    kill -TERM "$pid"; wait "$pid" || true
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$WORK/gateway.$1.log"
}
big="$(count "$N")"; small="$(count "$SMALL")"
echo "gateway: $(( (big - small) / (N - SMALL) )) instructions per request (full stack of gateway.yaml)"
if [ -n "${KEEP:-}" ]; then
    callgrind_annotate "$WORK/cg.$N" 2>/dev/null | sed -n '/file:function/,$p' | head -n "${TOP:-40}" | cut -c1-180
fi

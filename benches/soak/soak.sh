#!/usr/bin/env bash
# Soak test for the example gateway (issue 11). Not part of the default test run.
#
# Steady load at about half of the measured capacity while the upstream and Redis are
# killed and restarted every CYCLE seconds; RSS and open file descriptors of the
# gateway are sampled every SAMPLE seconds. Fails (exit 1) if
#   - the gateway process dies or logs a panic,
#   - RSS at the end is more than RSS_LIMIT_PCT % above RSS at the end of warm-up,
#   - after a restart, requests do not succeed again within RECOVER seconds,
#   - at the end, /admin shows a breaker that is not Closed, or the rate limiter does
#     not write to Redis again after the last Redis restart.
#
# Usage: benches/soak/soak.sh            (10 minutes)
#        SOAK_DURATION=120 benches/soak/soak.sh
# Needs: cargo, wrk, redis-server, redis-cli, python3, curl. Loopback only; everything
# it starts is stopped on exit. Logs and samples go to $SOAK_DIR (a temp dir by default).
set -euo pipefail

DURATION=${SOAK_DURATION:-600}     # seconds of load
CYCLE=${SOAK_CYCLE:-30}            # seconds between upstream/Redis kills
DOWN=${SOAK_DOWN:-5}               # seconds the upstream and Redis stay down
SAMPLE=${SOAK_SAMPLE:-10}          # seconds between RSS/fd samples
WARMUP=${SOAK_WARMUP:-60}          # seconds before the RSS baseline is taken
RECOVER=${SOAK_RECOVER:-20}        # seconds allowed to serve 200 again after a restart
RSS_LIMIT_PCT=${SOAK_RSS_LIMIT_PCT:-5}
LOAD_FRACTION=${SOAK_LOAD_FRACTION:-50}   # percent of measured capacity
BUILD=${SOAK_BUILD:-1}             # 0: reuse target/release/example-gateway

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${SOAK_DIR:-$(mktemp -d /tmp/gateway-soak.XXXXXX)}
mkdir -p "$DIR"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/example-gateway"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$DIR/soak.log"; }

PIDS_GW=""; PID_UP=""; PID_REDIS=""; PID_WRK=""
cleanup() {
  for pid in $PID_WRK $PID_UP $PID_REDIS $PIDS_GW; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT

for tool in wrk redis-server redis-cli python3 curl; do
  command -v "$tool" >/dev/null || { echo "soak: missing $tool (apt-get install wrk redis-server curl python3)"; exit 2; }
done

if [ "$BUILD" = 1 ]; then
  log "building example-gateway (release)"
  (cd "$ROOT" && cargo build --release -p example-gateway) >"$DIR/build.log" 2>&1
fi
[ -x "$BIN" ] || { echo "soak: $BIN not built"; exit 2; }

GW_PORT=$(free_port); ADMIN_PORT=$(free_port); UP_PORT=$(free_port); REDIS_PORT=$(free_port)

# --- demo upstream: a keep-alive HTTP/1.1 JSON server that can be killed and restarted.
cat >"$DIR/upstream.py" <<'PY'
import socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
BODY = b'{"id":7,"name":"soak","internal_notes":"x","items":[1,2,3]}'
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        # Headers and body are two writes: without TCP_NODELAY the body waits for the
        # gateway's delayed ACK (40 ms a request).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *a):
        pass
ThreadingHTTPServer.daemon_threads = True
# socketserver's default listen backlog is 5: a burst of new connections (after a
# restart) would lose SYNs and hit the gateway's 1 s connect timeout.
ThreadingHTTPServer.request_queue_size = 256
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
start_upstream() {
  python3 "$DIR/upstream.py" "$UP_PORT" >>"$DIR/upstream.log" 2>&1 &
  PID_UP=$!
}
start_redis() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$DIR" >>"$DIR/redis.log" 2>&1 &
  PID_REDIS=$!
}
wait_port() { # port seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

cat >"$DIR/gateway.yaml" <<YAML
listen: 127.0.0.1:$GW_PORT
admin: 127.0.0.1:$ADMIN_PORT
trusted_proxies: ["127.0.0.1/32"]
upstreams:
  demo:
    targets: [{ url: "http://127.0.0.1:$UP_PORT" }]
    timeouts: { connect: 1s, response_headers: 5s }
services:
  demo:
    upstream: demo
    request_id: true
    rate_limit:
      key: client_ip
      default: [{ quota: 100000, window: 1s }]
      redis: { url: "redis://127.0.0.1:$REDIS_PORT/", prefix: soak, timeout: 50ms, on_error: local, retry_interval: 500ms }
    transform:
      response:
        json: { remove: ["internal_notes"] }
    retry: { max_attempts: 2, base_backoff: 10ms, max_backoff: 50ms, deadline: 1s }
    breaker: { consecutive_failures: 5, open_duration: 2s, half_open_probes: 1, half_open_successes: 1 }
router:
  routes:
    - { name: demo, path: { prefix: /api }, methods: [GET], strip_prefix: /api, service: demo }
YAML

start_upstream; start_redis
wait_port "$UP_PORT" 10 && wait_port "$REDIS_PORT" 10 || { log "FAIL: upstream/redis did not start"; exit 1; }
"$BIN" --config "$DIR/gateway.yaml" >"$DIR/gateway.log" 2>&1 &
PIDS_GW=$!
wait_port "$GW_PORT" 30 || { log "FAIL: gateway did not start"; cat "$DIR/gateway.log"; exit 1; }
URL="http://127.0.0.1:$GW_PORT/api/item"
status() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$URL" || true; }
[ "$(status)" = 200 ] || { log "FAIL: first request not 200"; exit 1; }

# --- capacity, then a paced load at LOAD_FRACTION % of it (wrk's delay() hook).
log "measuring capacity (5 s, 2 threads, 32 connections)"
# Only 2xx answers count: fast 502/503s (an open breaker) would inflate it.
CAP=$(wrk -t2 -c32 -d5s "$URL" | awk '/requests in/ {n = $1} /Non-2xx/ {bad = $NF} END {printf "%d", (n - bad) / 5}')
TARGET=$(( CAP * LOAD_FRACTION / 100 )); [ "$TARGET" -ge 1 ] || TARGET=1
CONNS=16
DELAY_MS=$(( CONNS * 1000 / TARGET )); [ "$DELAY_MS" -ge 1 ] || DELAY_MS=1
cat >"$DIR/paced.lua" <<LUA
function delay() return $DELAY_MS end
LUA
# The pause comes on top of the latency: calibrate the connection count for 5 s.
GOT=$(wrk -t2 -c"$CONNS" -d5s -s "$DIR/paced.lua" "$URL" | awk '/Requests\/sec/ {printf "%d", $2}')
if [ "${GOT:-0}" -gt 0 ]; then
  CONNS=$(( CONNS * TARGET / GOT )); [ "$CONNS" -ge 2 ] || CONNS=2; [ "$CONNS" -le 256 ] || CONNS=256
fi
log "capacity ${CAP} req/s; load target ~${TARGET} req/s (${GOT} req/s with 16 connections; using $CONNS connections, ${DELAY_MS} ms pause)"
wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 5s -s "$DIR/paced.lua" "$URL" >"$DIR/wrk.txt" 2>&1 &
PID_WRK=$!

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$PIDS_GW/status" 2>/dev/null || echo 0; }
fds() { ls "/proc/$PIDS_GW/fd" 2>/dev/null | wc -l; }
alive() { kill -0 "$PIDS_GW" 2>/dev/null; }
fail() { log "FAIL: $*"; echo "FAIL" >"$DIR/result"; exit 1; }

echo "t_s rss_kb fds" >"$DIR/samples.txt"
START=$(date +%s); NEXT_SAMPLE=0; NEXT_KILL=$CYCLE; BASE_RSS=""; CYCLES=0; MAX_RECOVERY=0
while :; do
  NOW=$(( $(date +%s) - START ))
  [ "$NOW" -ge "$DURATION" ] && break
  alive || fail "gateway died at ${NOW}s (see $DIR/gateway.log)"
  if [ "$NOW" -ge "$NEXT_SAMPLE" ]; then
    R=$(rss_kb); F=$(fds)
    echo "$NOW $R $F" >>"$DIR/samples.txt"
    log "t=${NOW}s rss=${R} kB fds=${F}"
    if [ -z "$BASE_RSS" ] && [ "$NOW" -ge "$WARMUP" ]; then BASE_RSS=$R; log "RSS baseline ${BASE_RSS} kB"; fi
    NEXT_SAMPLE=$(( NEXT_SAMPLE + SAMPLE ))
  fi
  if [ "$NOW" -ge "$NEXT_KILL" ] && [ $(( NOW + DOWN + RECOVER )) -lt "$DURATION" ]; then
    CYCLES=$(( CYCLES + 1 ))
    log "cycle $CYCLES: killing upstream and Redis for ${DOWN}s"
    kill -9 "$PID_UP" "$PID_REDIS" 2>/dev/null || true
    wait "$PID_UP" "$PID_REDIS" 2>/dev/null || true
    sleep "$DOWN"
    alive || fail "gateway died while the upstream was down"
    start_upstream; start_redis
    wait_port "$UP_PORT" 10 || fail "upstream did not restart"
    wait_port "$REDIS_PORT" 10 || fail "redis did not restart"
    T0=$(date +%s); OK=""
    while [ $(( $(date +%s) - T0 )) -lt "$RECOVER" ]; do
      if [ "$(status)" = 200 ]; then OK=1; break; fi
      sleep 0.2
    done
    [ -n "$OK" ] || fail "no 200 within ${RECOVER}s after restart (cycle $CYCLES)"
    REC=$(( $(date +%s) - T0 )); [ "$REC" -gt "$MAX_RECOVERY" ] && MAX_RECOVERY=$REC
    log "cycle $CYCLES: serving 200 again after ${REC}s"
    NEXT_KILL=$(( NOW + CYCLE ))
  fi
  sleep 1
done

wait "$PID_WRK" || true; PID_WRK=""
alive || fail "gateway died at the end"
END_RSS=$(rss_kb); END_FDS=$(fds)
echo "end $END_RSS $END_FDS" >>"$DIR/samples.txt"
log "wrk: $(grep -E 'requests in|Requests/sec|Non-2xx|Socket errors' "$DIR/wrk.txt" | tr -s ' ' | paste -sd ';')"

# Recovery at the end: breakers closed, limiter writing to Redis again.
sleep 3
for _ in 1 2 3 4 5; do status >/dev/null; done
ADMIN=$(curl -s -m 2 "http://127.0.0.1:$ADMIN_PORT/admin")
echo "$ADMIN" >"$DIR/admin.json"
if echo "$ADMIN" | python3 -c 'import json,sys; b=json.load(sys.stdin)["breakers"]; bad=[(n,c["state"]) for n,cs in b.items() for c in cs if c["state"]!="Closed"]; print(bad); sys.exit(1 if bad else 0)' >"$DIR/breakers.txt"; then
  log "breakers: all Closed"
else
  fail "breaker not closed at the end: $(cat "$DIR/breakers.txt")"
fi
# The limiter's keys expire almost at once (huge quota), so count commands instead:
# requests through the gateway must reach the private Redis again.
redis_cmds() { redis-cli -p "$REDIS_PORT" info stats 2>/dev/null | awk -F: '/^total_commands_processed/ {print $2+0}'; }
C1=$(redis_cmds); C1=${C1:-0}
for _ in 1 2 3 4 5 6 7 8 9 10; do status >/dev/null; done
C2=$(redis_cmds); C2=${C2:-0}
# Minus 1: the first INFO itself.
[ $(( C2 - C1 - 1 )) -ge 5 ] || fail "rate limiter did not return to Redis ($((C2 - C1 - 1)) commands for 10 requests)"
log "redis: $((C2 - C1 - 1)) commands for 10 requests after the last restart"
grep -q "panicked" "$DIR/gateway.log" && fail "the gateway logged a panic"

[ -n "$BASE_RSS" ] || BASE_RSS=$(awk 'NR==2 {print $2}' "$DIR/samples.txt")
GROWTH=$(python3 -c "print(round(100.0*($END_RSS-$BASE_RSS)/$BASE_RSS, 2))")
log "RSS baseline ${BASE_RSS} kB, end ${END_RSS} kB (${GROWTH}%), fds end ${END_FDS}; ${CYCLES} kill cycles, slowest recovery ${MAX_RECOVERY}s"
if python3 -c "import sys; sys.exit(0 if $GROWTH > $RSS_LIMIT_PCT else 1)"; then
  fail "RSS grew ${GROWTH}% after warm-up (limit ${RSS_LIMIT_PCT}%)"
fi
echo "PASS" >"$DIR/result"
log "PASS (logs in $DIR)"

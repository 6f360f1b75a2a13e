#!/usr/bin/env bash
# Throughput of GET /healthz on helm-hub over TLS 1.3, next to nginx serving a static 200 over
# TLS 1.3 with the same certificate, both on loopback, one worker/I-O thread each, measured with
# wrk in the same run. Prints req/s, p99 latency and the ratio hub/nginx.
#
# usage: tests/bench/rest_healthz.sh [HUB_BINARY] [DURATION_S] [CONNECTIONS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
hub=${1:-$root/build/release/host/helm-hub}
duration=${2:-10}
conns=${3:-50}
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "need $tool: bash packaging/install-deps.sh" >&2; exit 1; }
done
[[ -x $hub ]] || { echo "no hub binary at $hub (cmake --preset release && cmake --build --preset release)" >&2; exit 1; }

work=$(mktemp -d /tmp/helm-bench-XXXXXX)
chmod 711 "$work"  # the embedded PostgreSQL runs as its own user and must reach its data dir
hub_pid=""
nginx_conf="$work/nginx.conf"
cleanup() {
  [[ -n $hub_pid ]] && kill -TERM "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null || true
  [[ -f $work/nginx.pid ]] && nginx -c "$nginx_conf" -s stop 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$hub" serve --data-dir "$work/hub" --api-listen 127.0.0.1:0 --log-level warn \
  >"$work/hub.out" 2>"$work/hub.err" &
hub_pid=$!
for _ in $(seq 1 600); do grep -q 'is ready' "$work/hub.out" 2>/dev/null && break; sleep 0.1; done
hub_port=$(sed -n 's#.*API  *https://127.0.0.1:\([0-9]*\)/.*#\1#p' "$work/hub.out")
[[ -n $hub_port ]] || { echo "hub did not start:"; cat "$work/hub.err"; exit 1; }

nginx_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$nginx_conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx-tmp;
  server {
    listen 127.0.0.1:$nginx_port ssl;
    ssl_certificate $work/hub/tls/hub.crt;
    ssl_certificate_key $work/hub/tls/hub.key;
    ssl_protocols TLSv1.3;
    keepalive_requests 1000000;
    location = /healthz { default_type application/json; return 200 '{"status":"ok"}'; }
  }
}
CONF
mkdir -p "$work/nginx-tmp"
nginx -c "$nginx_conf"

run_wrk() {  # url -> "req/s p99"
  wrk -t1 -c"$conns" -d"${duration}s" --latency "$1" >"$work/wrk.txt"
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk.txt")
  echo "$rps $p99"
}
# Warm up both, then measure.
wrk -t1 -c"$conns" -d2s "https://127.0.0.1:$hub_port/healthz" >/dev/null
wrk -t1 -c"$conns" -d2s "https://127.0.0.1:$nginx_port/healthz" >/dev/null
read -r hub_rps hub_p99 < <(run_wrk "https://127.0.0.1:$hub_port/healthz")
read -r ngx_rps ngx_p99 < <(run_wrk "https://127.0.0.1:$nginx_port/healthz")
ratio=$(python3 -c "print(f'{$hub_rps/$ngx_rps:.2f}')")
echo "wrk -t1 -c$conns -d${duration}s, TLS 1.3 on loopback, $(nproc) cores"
printf '%-28s %12s req/s   p99 %s\n' "helm-hub GET /healthz" "$hub_rps" "$hub_p99"
printf '%-28s %12s req/s   p99 %s\n' "nginx static 200" "$ngx_rps" "$ngx_p99"
echo "ratio hub/nginx: $ratio (goal >= 0.5)"

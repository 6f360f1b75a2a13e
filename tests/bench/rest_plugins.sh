#!/usr/bin/env bash
# Throughput of GET /api/v1/plugins with a valid session over TLS 1.3 (authentication, RBAC and
# the plugin list on every request), beside GET /healthz in the same run; wrk on loopback, one
# API I/O thread. Prints req/s and p99 of both.
#
# usage: tests/bench/rest_plugins.sh [HUB_BINARY] [DURATION_S] [CONNECTIONS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
hub=${1:-$root/build/release/host/helm-hub}
duration=${2:-10}
conns=${3:-50}
command -v wrk >/dev/null || { echo "need wrk: bash packaging/install-deps.sh" >&2; exit 1; }
[[ -x $hub ]] || { echo "no hub binary at $hub" >&2; exit 1; }

work=$(mktemp -d /tmp/helm-bench-XXXXXX)
chmod 711 "$work"  # the embedded PostgreSQL runs as its own user and must reach its data dir
hub_pid=""
cleanup() {
  [[ -n $hub_pid ]] && kill -TERM "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

password='bench password 12345'
echo "$password" | HELM_IDENTITY_PASSWORD_OPSLIMIT=1 HELM_IDENTITY_PASSWORD_MEMLIMIT_KIB=8192 \
  "$hub" admin bootstrap --data-dir "$work/hub" --org Bench --email bench@example.com \
  --password-stdin >/dev/null 2>&1
"$hub" serve --data-dir "$work/hub" --api-listen 127.0.0.1:0 --log-level warn \
  >"$work/hub.out" 2>"$work/hub.err" &
hub_pid=$!
for _ in $(seq 1 600); do grep -q 'is ready' "$work/hub.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's#.*API  *https://127.0.0.1:\([0-9]*\)/.*#\1#p' "$work/hub.out")
[[ -n $port ]] || { echo "hub did not start:"; cat "$work/hub.err"; exit 1; }
base="https://127.0.0.1:$port"
token=$(curl -s --cacert "$work/hub/tls/hub.crt" "$base/api/v1/auth/login" \
  -d "{\"email\":\"bench@example.com\",\"password\":\"$password\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
items=$(curl -s --cacert "$work/hub/tls/hub.crt" -H "Authorization: Bearer $token" \
  "$base/api/v1/plugins" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')

run_wrk() {  # url [header] -> "req/s p99"
  if [[ $# -gt 1 ]]; then
    wrk -t1 -c"$conns" -d"${duration}s" --latency -H "$2" "$1" >"$work/wrk.txt"
  else
    wrk -t1 -c"$conns" -d"${duration}s" --latency "$1" >"$work/wrk.txt"
  fi
  echo "$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt") $(awk '$1=="99%" {print $2}' "$work/wrk.txt")"
}
wrk -t1 -c"$conns" -d2s -H "Authorization: Bearer $token" "$base/api/v1/plugins" >/dev/null
read -r p_rps p_p99 < <(run_wrk "$base/api/v1/plugins" "Authorization: Bearer $token")
read -r h_rps h_p99 < <(run_wrk "$base/healthz")
echo "wrk -t1 -c$conns -d${duration}s, TLS 1.3 on loopback, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
printf '%-40s %12s req/s   p99 %s\n' "GET /api/v1/plugins ($items plugins)" "$p_rps" "$p_p99"
printf '%-40s %12s req/s   p99 %s\n' "GET /healthz" "$h_rps" "$h_p99"

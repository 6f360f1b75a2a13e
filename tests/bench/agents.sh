#!/usr/bin/env bash
# What idle and busy agents cost the hub: helm-loadgen at 1k, 5k and 10k simulated agents over
# real TLS 1.3 WebSockets against a real helm-hub (transport-wss on loopback), with --hub-pid.
#
# For each count N:
#   0. enroll: helm-loadgen enrolls N agents with one N-use key and saves their tokens. The hub
#      allows 5 enrollments/s per source address (burst 30), so enrollment goes through a small
#      TCP relay here that spreads the connections over source addresses 127.0.0.2-254.
#   1. restart: the hub is stopped and started again (same data), so that the memory the
#      enrollment run left behind does not hide what the agents cost, and so that the storm below
#      is what a fleet does after a hub restart. Its idle CPU and RSS are taken as the baseline.
#   2. idle: helm-loadgen reconnects the N agents from their tokens as fast as RATE allows
#      (connect storm), keeps them up STEADY_S seconds, no commands: connect rate, hub CPU per
#      new TLS connection, hub RSS per agent, hub CPU per heartbeat (also shown net of the hub's
#      idle CPU). "+db" columns count the hub's embedded PostgreSQL too (the process tree).
#   3. busy: the same again while COMMANDS `ping` commands go through the REST API to online
#      devices one at a time; round trip = POST .../commands until GET .../commands/{id}?wait_s=10
#      answers `done` (over one keep-alive connection).
#
# usage: tests/bench/agents.sh [HUB_BUILD_DIR] [COUNTS...]
#   HUB_BUILD_DIR  default build/release (needs host/helm-hub, agent/helm-loadgen, plugins/)
#   COUNTS         default 1000 5000 10000
# environment: STEADY_S (30), HEARTBEAT_S (5, the simulated agents' interval, as in
#   notes/transport-memory.md), RATE (500 new connections/s in the storm; 0 = all at once),
#   ENROLL_RATE (100 enrollments/s), COMMANDS (200), THREADS (1, loadgen threads), KEEP=1 keeps
#   the work dir.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$root/build/release}
shift || true
counts=("$@")
[[ ${#counts[@]} -gt 0 ]] || counts=(1000 5000 10000)
steady_s=${STEADY_S:-30}
heartbeat_s=${HEARTBEAT_S:-5}
rate=${RATE:-500}
enroll_rate=${ENROLL_RATE:-100}  # faster, the API refuses connections beyond api.max_connections
commands=${COMMANDS:-200}
threads=${THREADS:-1}

hub_bin=$build/host/helm-hub
loadgen=$build/agent/helm-loadgen
for f in "$hub_bin" "$loadgen"; do
  [[ -x $f ]] || { echo "missing $f (build helm-hub helm-loadgen transport-wss)" >&2; exit 1; }
done
[[ -d $build/plugins/transport-wss ]] || { echo "missing $build/plugins/transport-wss" >&2; exit 1; }
for tool in curl jq python3; do
  command -v "$tool" >/dev/null || { echo "need $tool" >&2; exit 1; }
done

# One fd per agent in loadgen and in the hub, plus slack; this machine allows 20000 per process.
hard=$(ulimit -Hn)
want=20000
[[ $hard != unlimited && $hard -lt $want ]] && want=$hard
ulimit -n "$want"
max_n=0
for n in "${counts[@]}"; do ((n > max_n)) && max_n=$n; done
if ((max_n + 200 > want)); then
  echo "warning: ulimit -n is $want; $max_n agents need about $((max_n + 200))" >&2
fi

work=$(mktemp -d /tmp/helm-bench-agents-XXXXXX)
chmod 711 "$work"  # the embedded PostgreSQL runs as its own user and must reach its data dir
hub_pid=""
cleanup() {
  if [[ -n $hub_pid ]]; then
    kill -TERM "$hub_pid" 2>/dev/null || true
    wait "$hub_pid" 2>/dev/null || true
  fi
  if [[ ${KEEP:-0} == 1 ]]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

export HELM_IDENTITY_PASSWORD_OPSLIMIT=1 HELM_IDENTITY_PASSWORD_MEMLIMIT_KIB=8192
password="bench owner password 1"
echo "$password" | "$hub_bin" admin bootstrap --data-dir "$work/hub" --org Bench \
  --email owner@bench.test --password-stdin >"$work/bootstrap.log" 2>&1 ||
  { cat "$work/bootstrap.log"; exit 1; }

api_port=""
start_hub() {  # [API_PORT]: 0 picks a free one the first time; restarts keep it
  : >"$work/hub.err"
  : >"$work/hub.out"
  HELM_PLUGINS_PATH=$build/plugins HELM_PLUGINS_ALLOW_UNSIGNED=true \
    "$hub_bin" serve --data-dir "$work/hub" --api-listen "127.0.0.1:${1:-0}" --log-level warn \
    >"$work/hub.out" 2>"$work/hub.err" &
  hub_pid=$!
  api_port=""
  for _ in $(seq 1 900); do
    api_port=$(sed -n 's/.*"msg":"api listening".*"port":\([0-9]*\).*/\1/p' "$work/hub.err" | head -1)
    [[ -z $api_port ]] && api_port=$(sed -n 's#.*https://127.0.0.1:\([0-9]*\)/.*#\1#p' "$work/hub.out" | head -1)
    [[ -n $api_port ]] && break
    kill -0 "$hub_pid" 2>/dev/null || break
    sleep 0.1
  done
  [[ -n $api_port ]] || { echo "hub did not start:" >&2; tail -30 "$work/hub.err" >&2; exit 1; }
}
wait_port() {  # PORT: until something accepts TCP connections there (30 s at most)
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}
stop_hub() {
  kill -TERM "$hub_pid" 2>/dev/null || true
  wait "$hub_pid" 2>/dev/null || true
  hub_pid=""
}
start_hub 0
api=https://127.0.0.1:$api_port
ca=$work/hub/tls/hub.crt
pin=$(openssl x509 -in "$ca" -outform der | sha256sum | cut -d' ' -f1)

rest() {  # METHOD PATH [JSON]
  local args=(-sS --cacert "$ca" -X "$1" -H 'Content-Type: application/json')
  [[ -n ${token:-} ]] && args+=(-H "Authorization: Bearer $token")
  [[ $# -ge 3 ]] && args+=(--data "$3")
  curl "${args[@]}" "$api$2"
}
login=$(rest POST /api/v1/auth/login "{\"email\":\"owner@bench.test\",\"password\":\"$password\"}")
token=$(jq -r .token <<<"$login")
org=$(jq -r .technician.org_id <<<"$login")
[[ $token != null ]] || { echo "login failed: $login" >&2; exit 1; }

transport_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rest PATCH /api/v1/plugins/transport-wss "{\"config\":{\"listen\":\"127.0.0.1:$transport_port\"}}" >/dev/null
# Enrollment answers with the transport URL once the restarted transport listens there.
wait_port "$transport_port"
client=$(rest POST "/api/v1/orgs/$org/clients" '{"name":"Bench"}' | jq -r .id)
site=$(rest POST "/api/v1/orgs/$org/clients/$client/sites" '{"name":"Lab"}' | jq -r .id)

# Round trips of `ping` through the REST API while agents are connected: prints a JSON object.
measure_commands() {  # COUNT
  python3 - "$api" "$ca" "$token" "$org" "$1" <<'PY'
import http.client, json, random, ssl, sys, time
api, ca, token, org, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
host, port = api.split("//")[1].split(":")
ctx = ssl.create_default_context(cafile=ca)
conn = http.client.HTTPSConnection(host, int(port), context=ctx)
hdr = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
def call(method, path, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=hdr)
    r = conn.getresponse()
    return r.status, json.loads(r.read() or b"null")
devices, cursor = [], None
while len(devices) < 1000:
    s, page = call("GET", f"/api/v1/orgs/{org}/devices?limit=500" + (f"&cursor={cursor}" if cursor else ""))
    items = page.get("items", []) if isinstance(page, dict) else []
    devices += [d["id"] for d in items if d.get("online")]
    cursor = page.get("next_cursor") if isinstance(page, dict) else None
    if not items or not cursor:
        break
if not devices:
    print(json.dumps({"error": "no online device"})); sys.exit(0)
rtt, failed = [], 0
for i in range(count):
    dev = random.choice(devices)
    t0 = time.perf_counter()
    s, body = call("POST", f"/api/v1/orgs/{org}/devices/{dev}/commands", {"kind": "ping"})
    if s != 202:
        failed += 1; continue
    cid = body["id"]
    # One waiting GET: the hub answers as soon as the result is recorded (no polling).
    s, st = call("GET", f"/api/v1/orgs/{org}/commands/{cid}?wait_s=10")
    if st.get("state") not in ("done", "expired"):
        failed += 1
    if st.get("state") == "done":
        rtt.append((time.perf_counter() - t0) * 1000)
rtt.sort()
pct = lambda p: round(rtt[min(len(rtt) - 1, int(p * len(rtt)))], 2) if rtt else None
print(json.dumps({"commands": count, "done": len(rtt), "failed": failed,
                  "rtt_ms": {"p50": pct(0.50), "p99": pct(0.99), "max": round(rtt[-1], 2) if rtt else None},
                  "devices_sampled": len(devices)}))
PY
}

# Enrollment relay: 127.0.0.1:RELAY -> the hub's API, each upstream connection from the next
# source address in 127.0.0.2-254 (the whole of 127/8 is local on Linux).
relay_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$relay_port" "$api_port" <<'PY' >"$work/relay.log" 2>&1 &
import asyncio, itertools, sys
listen, upstream = int(sys.argv[1]), int(sys.argv[2])
sources = itertools.cycle(f"127.0.0.{i}" for i in range(2, 255))
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except Exception:
        pass
    finally:
        w.close()
async def handle(cr, cw):
    try:
        ur, uw = await asyncio.open_connection("127.0.0.1", upstream, local_addr=(next(sources), 0))
    except Exception:
        cw.close()
        return
    await asyncio.gather(pipe(cr, uw), pipe(ur, cw))
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen, backlog=4096)
    await server.serve_forever()
asyncio.run(main())
PY
relay_pid=$!
trap 'kill $relay_pid 2>/dev/null || true; cleanup' EXIT
sleep 0.5

cpu_ms() { awk '{print ($14 + $15) * 1000 / '"$(getconf CLK_TCK)"'}' "/proc/$hub_pid/stat"; }
# The restarted hub: wait until its transport listens again, then measure its idle CPU.
restart_hub() {
  stop_hub
  start_hub "$api_port"
  wait_port "$transport_port"
  sleep 2
  local c0 c1
  c0=$(cpu_ms); sleep 10; c1=$(cpu_ms)
  idle_cpu_ms_per_s=$(python3 -c "print(round(($c1 - $c0) / 10, 3))")
  echo "hub (pid $hub_pid) idle CPU: $idle_cpu_ms_per_s ms/s, RSS $(awk '/VmRSS/{print $2}' "/proc/$hub_pid/status") KiB" >&2
}
rows=()
for n in "${counts[@]}"; do
  echo "== $n agents ==" >&2
  common=(--pin "$pin" --rate "$rate" --heartbeat-s "$heartbeat_s" --threads "$threads"
          --hub-pid "$hub_pid")
  key=$(rest POST "/api/v1/orgs/$org/enrollment-keys" \
    "{\"client_id\":\"$client\",\"site_id\":\"$site\",\"uses\":$n}" | jq -r .key)
  [[ $key == hek_* ]] || { echo "no enrollment key" >&2; exit 1; }
  tokens=$work/tokens-$n.jsonl
  echo "+ $loadgen --server https://127.0.0.1:$relay_port --key hek_… --agents $n --duration 0 --save-tokens $tokens ${common[*]} --rate $enroll_rate" >&2
  "$loadgen" --server "https://127.0.0.1:$relay_port" --key "$key" --agents "$n" --duration 0 \
    --save-tokens "$tokens" "${common[@]}" --rate "$enroll_rate" --json >"$work/enroll-$n.json" 2>"$work/enroll-$n.err" ||
    { echo "enrollment run failed:" >&2; tail -5 "$work/enroll-$n.err" >&2; }
  echo "-- enrollment run ($n agents, through the relay):"
  cat "$work/enroll-$n.json"
  restart_hub
  common=(--pin "$pin" --rate "$rate" --heartbeat-s "$heartbeat_s" --threads "$threads"
          --hub-pid "$hub_pid")

  echo "+ $loadgen --server $api --tokens $tokens --duration $steady_s ${common[*]} --json" >&2
  "$loadgen" --server "$api" --tokens "$tokens" --duration "$steady_s" "${common[@]}" --json \
    >"$work/idle-$n.json" 2>"$work/idle-$n.err" ||
    { echo "idle run failed:" >&2; tail -5 "$work/idle-$n.err" >&2; }
  echo "-- idle run ($n agents from saved tokens, no commands):"
  cat "$work/idle-$n.json"
  sleep 3

  # Without --json loadgen says "steady phase" on stderr once every agent is connected.
  "$loadgen" --server "$api" --tokens "$tokens" --duration "$((steady_s > 20 ? steady_s : 20))" \
    "${common[@]}" >"$work/busy-$n.json" 2>"$work/busy-$n.err" &
  busy=$!
  for _ in $(seq 1 2400); do
    grep -q 'steady phase' "$work/busy-$n.err" 2>/dev/null && break
    kill -0 "$busy" 2>/dev/null || break
    sleep 0.25
  done
  measure_commands "$commands" >"$work/commands-$n.json"
  wait "$busy" || true
  echo "-- busy run ($n agents, REST commands meanwhile):"
  cat "$work/busy-$n.json"
  echo "-- REST command round trips ($n agents):"
  cat "$work/commands-$n.json"
  rows+=("$(jq -c -n --argjson idle "$(cat "$work/idle-$n.json")" \
    --argjson busy "$(cat "$work/busy-$n.json")" \
    --argjson cmd "$(cat "$work/commands-$n.json")" --argjson base "$idle_cpu_ms_per_s" \
    '{n: $idle.agents, connected: $idle.connected, rss: $idle.rss_per_agent_kib,
      hb_us: $idle.cpu_per_heartbeat_us,
      hb_net_us: (if ($idle.heartbeats.acked_steady // 0) > 0 and $idle.hub != null then
                    (($idle.hub.cpu_ms.end - $idle.hub.cpu_ms.connected) - $base * $idle.steady_s)
                    * 1000 / $idle.heartbeats.acked_steady else null end),
      hb_db_us: $idle.tree_cpu_per_heartbeat_us, conn_db_ms: $idle.tree_cpu_per_connection_ms,
      base: $base,
      rate: $idle.connect_rate_per_s, conn_ms: $idle.cpu_per_connection_ms,
      p50: $cmd.rtt_ms.p50, p99: $cmd.rtt_ms.p99, hb_p99: $idle.hb_rtt_ms.p99,
      errors: ($idle.errors + $busy.errors)}')")
done

echo
echo "hub: $hub_bin, agents' heartbeat ${heartbeat_s}s, steady ${steady_s}s, storm rate" \
  "${rate}/s, loadgen threads $threads; +db: the hub with its embedded PostgreSQL"
fmt='%-7s %-9s %-10s %-9s %-10s %-10s %-9s %-9s %-10s %-9s %-9s %-9s %-9s %s\n'
printf "$fmt" agents connected 'RSS/agent' 'CPU/hb' 'CPU/hb net' 'CPU/hb+db' 'connect/s' \
  'CPU/conn' 'CPU/conn+db' 'cmd p50' 'cmd p99' 'hb p99' 'idle ms/s' errors
for row in "${rows[@]}"; do
  jq -r '[.n, .connected,
           (if .rss then "\(.rss*10|round/10) KiB" else "-" end),
           (if .hb_us then "\(.hb_us*10|round/10) us" else "-" end),
           (if .hb_net_us then "\(.hb_net_us*10|round/10) us" else "-" end),
           (if .hb_db_us then "\(.hb_db_us*10|round/10) us" else "-" end),
           (if .rate then "\(.rate|round)" else "-" end),
           (if .conn_ms then "\(.conn_ms*1000|round/1000) ms" else "-" end),
           (if .conn_db_ms then "\(.conn_db_ms*1000|round/1000) ms" else "-" end),
           (if .p50 then "\(.p50) ms" else "-" end), (if .p99 then "\(.p99) ms" else "-" end),
           (if .hb_p99 then "\(.hb_p99*100|round/100) ms" else "-" end),
           (.base|tostring), (.errors|tostring)] | @tsv' <<<"$row" |
    while IFS=$'\t' read -r -a f; do printf "$fmt" "${f[@]}"; done
done

#!/usr/bin/env bash
# bench-scale: hold SCALE WebSocket connections on this machine over NODES
# herald processes sharing one port (SO_REUSEPORT) and one NATS, with the
# load generator split over PROCS processes and the source addresses
# 127.0.0.2-127.0.0.254; broadcast to all of them, then run a personal
# notification workload (one channel per user, PERSONAL_RATE publications
# a second spread over the users). Run by `make bench-scale`.
#
# Parameters (environment):
#   SCALE          connections to hold (default 1000000)
#   NODES          herald processes (default: SCALE / PER_PROC, rounded up)
#   PROCS          load generator processes (default: as NODES)
#   PER_PROC       connections per process, below the open-file limit (19500)
#   DURATION       how long each phase publishes (default 30s)
#   BROADCAST_RATE broadcast publications per second (default 1)
#   PERSONAL_RATE  personal publications per second (default 10000)
#   DRAIN          how long each phase keeps counting deliveries after its
#                  last publication (default 20s; a broadcast to a million
#                  sockets takes seconds per publication on 2 cores)
#   PUB_CONCURRENCY publish calls in flight (default 1024)
#   PUB_BATCH      publications per API call (default 1: POST /api/publish
#                  each; above 1, POST /api/batch calls of this many)
#   RATE           connections opened per second over all generator
#                  processes (default 3000; unbounded, 100 processes
#                  dialling on 2 cores starve the nodes and NATS, and
#                  upgrades time out)
#   PHASES         which phases to run (default "broadcast personal")
#   TIMEOUT        hard bound on the whole run in seconds (default 1800)
#   OUT            result directory (default benchmarks/out/scale)
#
# Set-up raises, for the run only, the kernel limits a million loopback
# connections pass (conntrack table, accept backlog, port range, open
# files, TCP memory, loopback backlog) and restores them on exit; without
# root it warns and runs with what it has. Every process it starts is
# recorded by PID and killed on exit, however the script ends.
set -euo pipefail

SCALE=${SCALE:-1000000}
PER_PROC=${PER_PROC:-19500}
NODES=${NODES:-$(( (SCALE + PER_PROC - 1) / PER_PROC ))}
PROCS=${PROCS:-$NODES}
DURATION=${DURATION:-30s}
BROADCAST_RATE=${BROADCAST_RATE:-1}
PERSONAL_RATE=${PERSONAL_RATE:-10000}
PHASES=${PHASES:-broadcast personal}
DRAIN=${DRAIN:-20s}
RATE=${RATE:-3000}
PUB_CONCURRENCY=${PUB_CONCURRENCY:-1024}
PUB_BATCH=${PUB_BATCH:-1}
TIMEOUT=${TIMEOUT:-1800}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/benchmarks/out/scale}
PORT=${PORT:-28080}
API_BASE=${API_BASE:-29000}
NATS_PORT=${NATS_PORT:-24222}

WORK=$(mktemp -d /tmp/herald-scale.XXXXXX)
PIDS=()
SAVED=()

log() { printf '%s bench-scale: %s\n' "$(date -u +%T)" "$*" >&2; }

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	sleep 1
	for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	for kv in "${SAVED[@]}"; do sysctl -q -w "$kv" >/dev/null 2>&1 || true; done
	# The logs say what stopped a run that failed: keep them with the results.
	if [[ -d $OUT ]]; then cp "$WORK"/*.log "$OUT"/ 2>/dev/null || true; fi
	rm -rf "$WORK"
	log "cleaned up ${#PIDS[@]} processes, restored ${#SAVED[@]} sysctls"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The watchdog bounds the run: past TIMEOUT the script is sent TERM and
# cleans up.
# Its own sleep is killed with it.
(
	trap 'kill "$s" 2>/dev/null; exit 0' TERM
	sleep "$TIMEOUT" &
	s=$!
	wait "$s"
	log "TIMEOUT ${TIMEOUT}s passed; stopping"
	kill -TERM $$
) &
PIDS+=($!)

# raise NAME VALUE: set a sysctl to at least VALUE (single numbers) or to
# VALUE (several), remembering the old value.
raise() {
	local name=$1 want=$2 old
	old=$(sysctl -n "$name" 2>/dev/null | tr -s '\t ' ' ') || { log "no sysctl $name"; return; }
	if [[ $want != *" "* && $old != *" "* && $old -ge $want ]]; then return; fi
	if sysctl -q -w "$name=$want" >/dev/null 2>&1; then
		SAVED+=("$name=$old")
		log "sysctl $name: $old -> $want"
	else
		log "WARNING: cannot set $name=$want (not root?); it stays $old"
	fi
}
raise net.netfilter.nf_conntrack_max $(( 2 * SCALE + 65536 ))
raise net.core.somaxconn 65535
raise net.ipv4.tcp_max_syn_backlog 65535
raise net.core.netdev_max_backlog 65536
raise fs.file-max $(( 3 * SCALE + 262144 ))
# The wider port range would let the nodes' own outgoing connections (to
# NATS, the generator's dials) take the ports they are about to listen
# on: reserve those first.
reserved_old=$(sysctl -n net.ipv4.ip_local_reserved_ports 2>/dev/null || true)
if sysctl -q -w net.ipv4.ip_local_reserved_ports="$PORT,$NATS_PORT,$API_BASE-$((API_BASE + NODES))" >/dev/null 2>&1; then
	SAVED+=("net.ipv4.ip_local_reserved_ports=$reserved_old")
	log "sysctl net.ipv4.ip_local_reserved_ports: $PORT,$NATS_PORT,$API_BASE-$((API_BASE + NODES))"
fi
raise net.ipv4.ip_local_port_range "1024 65535"
raise net.ipv4.tcp_mem "1048576 2097152 4194304"

mkdir -p "$OUT"
log "building herald and natsd"
(cd "$ROOT" && go build -o "$WORK/herald" ./cmd/herald && go build -o "$WORK/natsd" ./benchmarks/natsd)

# NATS stands for a server of its own: among a hundred busy processes on
# 2 cores a fair share would starve it, and every node waits on it.
nice -n -10 "$WORK/natsd" -port "$NATS_PORT" -store "$WORK/nats" >"$WORK/natsd.log" 2>&1 &
PIDS+=($!)
# SO_REUSEPORT spreads connections by a hash, not evenly: each node may
# take up to what its open-file limit allows, not just its share.
per_node=19800
api_urls=()
herald_pids=()
for ((i = 0; i < NODES; i++)); do
	api="127.0.0.1:$((API_BASE + i))"
	# One event loop each (-loops 1) and one P: 50 nodes with two Ps
	# each on 2 cores spend their time spinning for work.
	GOMAXPROCS=1 "$WORK/herald" serve -addr "127.0.0.1:$PORT" -reuseport -api-addr "$api" \
		-broker "nats://127.0.0.1:$NATS_PORT" -loops 1 -max-conns "$per_node" \
		-idle-timeout 0 -ping-interval 0 -history-size 10 -log-level warn \
		>>"$WORK/herald.log" 2>&1 &
	PIDS+=($!)
	herald_pids+=($!)
	api_urls+=("http://$api")
done
log "started $NODES herald nodes on 127.0.0.1:$PORT (up to $per_node connections each) and NATS on $NATS_PORT"
for api in "${api_urls[@]}"; do
	for ((t = 0; t < 300; t++)); do
		curl -fs "$api/readyz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -fs "$api/readyz" >/dev/null || { log "node $api never became ready"; tail -20 "$WORK/herald.log" >&2; exit 1; }
done
API_LIST=$(IFS=,; echo "${api_urls[*]}")

# sample FILE: every 2 s, one line of memory figures until killed.
sample() {
	local file=$1 s
	trap 'kill "$s" 2>/dev/null; exit 0' TERM
	echo "time herald_rss_kib loadtest_rss_kib tcp_inuse tcp_mem_pages mem_available_kib slab_kib" >"$file"
	while :; do
		local hr=0 lr=0 kib
		for pid in "${herald_pids[@]}"; do
			kib=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
			hr=$((hr + ${kib:-0}))
		done
		for pid in $(pgrep -P "$LT_PID" 2>/dev/null) "$LT_PID"; do
			kib=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
			lr=$((lr + ${kib:-0}))
		done
		read -r inuse mem < <(awk '/^TCP:/ {for (i = 2; i < NF; i += 2) v[$i] = $(i + 1); print v["inuse"], v["mem"]}' /proc/net/sockstat)
		avail=$(awk '/^MemAvailable/ {print $2}' /proc/meminfo)
		slab=$(awk '/^Slab/ {print $2}' /proc/meminfo)
		echo "$(date +%s) $hr $lr $inuse $mem $avail $slab" >>"$file"
		sleep 2 &
		s=$!
		wait "$s"
	done
}

# herald_cpu_ticks: user+system clock ticks of every herald node so far.
herald_cpu_ticks() {
	local sum=0 t
	for pid in "${herald_pids[@]}"; do
		t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
		sum=$((sum + ${t:-0}))
	done
	echo "$sum"
}
TICKS=$(getconf CLK_TCK)

baseline_avail=$(awk '/^MemAvailable/ {print $2}' /proc/meminfo)
baseline_slab=$(awk '/^Slab/ {print $2}' /proc/meminfo)
baseline_herald=0
for pid in "${herald_pids[@]}"; do baseline_herald=$((baseline_herald + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status"))); done

for phase in $PHASES; do
	case $phase in
	broadcast) channels=1 rate=$BROADCAST_RATE prefix=all ;;
	personal) channels=$SCALE rate=$PERSONAL_RATE prefix=user ;;
	*) log "unknown phase $phase"; exit 2 ;;
	esac
	log "phase $phase: $SCALE subscribers over $channels channels, $rate publications/s for $DURATION, $PROCS generator processes"
	"$WORK/herald" loadtest -scenario push -url "ws://127.0.0.1:$PORT/ws" -conns "$SCALE" -procs "$PROCS" -rate "$RATE" -client-loops 1 \
		-source-ips 127.0.0.2-127.0.0.254 -api-url "$API_LIST" -channels "$channels" -channel-prefix "$prefix" \
		-pub-rate "$rate" -duration "$DURATION" -drain "$DRAIN" -pub-concurrency "$PUB_CONCURRENCY" -pub-batch "$PUB_BATCH" -out "$OUT/$phase.json" >"$OUT/$phase.txt" 2>"$WORK/loadtest-$phase.log" &
	LT_PID=$!
	PIDS+=($LT_PID)
	cpu0=$(herald_cpu_ticks)
	sample "$OUT/$phase-memory.txt" &
	SAMPLER=$!
	# Among a hundred busy processes the sampler would run once a minute.
	renice -n -10 -p "$SAMPLER" >/dev/null 2>&1 || true
	PIDS+=($SAMPLER)
	lt_status=0
	wait "$LT_PID" || lt_status=$?
	cpu1=$(herald_cpu_ticks)
	kill "$SAMPLER" 2>/dev/null || true
	wait "$SAMPLER" 2>/dev/null || true
	cat "$OUT/$phase.txt"
	[[ $lt_status -eq 0 ]] || { log "phase $phase: loadtest exited $lt_status"; tail -5 "$WORK/loadtest-$phase.log" >&2; }
	# The sample with the most TCP sockets in use is the one at full load.
	peak=$(awk 'NR > 1 && $4 >= max {max = $4; line = $0} END {print line}' "$OUT/$phase-memory.txt")
	read -r _ hr lr inuse mem avail slab <<<"$peak"
	jq -n --arg phase "$phase" --argjson scale "$SCALE" --argjson nodes "$NODES" --argjson procs "$PROCS" \
		--argjson hr "$hr" --argjson hr0 "$baseline_herald" --argjson lr "$lr" --argjson inuse "$inuse" --argjson mem "$mem" \
		--argjson avail "$avail" --argjson avail0 "$baseline_avail" --argjson slab "$slab" --argjson slab0 "$baseline_slab" \
		--argjson cpu "$(( cpu1 - cpu0 ))" --argjson tck "$TICKS" \
		--slurpfile r "$OUT/$phase.json" '
		($r[0]) as $r | {
			phase: $phase, scale: $scale, nodes: $nodes, generator_procs: $procs,
			opened: $r.opened, failures: $r.failures,
			connect_seconds: (if $r.connect_rate_per_s > 0 then $r.opened / $r.connect_rate_per_s else null end),
			publications: $r.push.publications, expected: $r.push.expected_deliveries, delivered: $r.push.delivered,
			lost: $r.push.lost, duplicates: $r.push.duplicates, out_of_order: $r.push.out_of_order,
			delivery_p50_ms: ($r.push.delivery_latency.p50_us / 1000), delivery_p99_ms: ($r.push.delivery_latency.p99_us / 1000),
			herald_cpu_seconds_whole_phase: ($cpu / $tck),
			herald_cpu_per_delivery_us_connecting_included: (if $r.push.delivered > 0 then ($cpu / $tck) * 1e6 / $r.push.delivered else null end),
			tcp_sockets_at_peak: $inuse,
			herald_rss_per_conn_bytes: ((($hr - $hr0) * 1024) / $scale | floor),
			loadtest_rss_per_conn_bytes: (($lr * 1024) / $scale | floor),
			kernel_tcp_buffers_per_conn_bytes: (($mem * 4096) / $scale | floor),
			kernel_slab_per_conn_bytes: ((($slab - $slab0) * 1024) / $scale | floor),
			machine_memory_per_conn_bytes: ((($avail0 - $avail) * 1024) / $scale | floor)
		}' >"$OUT/$phase-summary.json" || log "phase $phase: no summary (no result written)"
	[[ -s $OUT/$phase-summary.json ]] && cat "$OUT/$phase-summary.json"
done
log "results in $OUT"

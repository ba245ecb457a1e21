#!/usr/bin/env bash
# bench/load.sh: Sluice under load. Postfix's smtp-source sends N messages
# through Sluice to smtp-sink, which plays the destination MX, all on
# loopback; the same load also goes straight from smtp-source to smtp-sink
# in the same run, so that each result is a ratio to that baseline.
#
# For each run it prints messages per second, the Sluice process's CPU
# time per message (utime+stime from /proc/PID/stat, before and after the
# load) and its peak RSS (VmHWM; a fresh process per run), and how many
# messages did not reach the sink. See bench/README.md.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: bench/load.sh [-q] [-n N] [-P PROFILES] [-z SIZES] [-s SESSIONS] [-p DIR] [-k]

  -n N          messages per run (default 20000)
  -q            quick: 2000 messages per run, for trying things out
  -P PROFILES   Sluice profiles to run (default "forward full"):
                  forward  router only: [auth] off, no DKIM keys, no ARC
                  full     SPF, DKIM and ARC verification, router + dmarc plugins,
                           DKIM RSA-2048 + Ed25519 signing, ARC seal, SRS
  -z SIZES      message sizes in bytes (default "4096 65536")
  -s SESSIONS   concurrent sessions (default "32 1000")
  -p DIR        write a CPU profile of each Sluice run to DIR (go tool pprof)
  -k            keep the work directory (configs, logs, messages)
EOF
}

N=20000
PROFILES="forward full"
SIZES="4096 65536"
SESSIONS="32 1000"
PROFILE_DIR=""
KEEP=0
while getopts "qn:P:z:s:p:kh" opt; do
	case $opt in
	q) N=2000 ;;
	n) N=$OPTARG ;;
	P) PROFILES=$OPTARG ;;
	z) SIZES=$OPTARG ;;
	s) SESSIONS=$OPTARG ;;
	p) PROFILE_DIR=$(mkdir -p "$OPTARG" && cd "$OPTARG" && pwd) ;;
	k) KEEP=1 ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
ROOT=$(pwd)
GO=${GO:-go}
PYTHON=/usr/bin/python3 # Debian's, which has dkimpy

for tool in smtp-source smtp-sink curl; do
	command -v $tool >/dev/null || {
		echo "load.sh: $tool not found; see bench/README.md for the Debian packages" >&2
		exit 1
	}
done
$PYTHON -c 'import dkim, authres' 2>/dev/null || {
	echo "load.sh: $PYTHON cannot import dkim and authres: apt-get install python3-dkim python3-authres" >&2
	exit 1
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	if [ $KEEP = 1 ]; then
		echo "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
# 1,000 sessions through Sluice take 2,000 sockets on each side.
ulimit -n "$(ulimit -Hn)"

echo "building bin/sluice and the router and dmarc plugins"
$GO build -o bin/sluice ./gateway/cmd/sluice
for p in router dmarc; do
	GOOS=wasip1 GOARCH=wasm $GO build -buildmode=c-shared -o plugins/$p/$p.wasm ./plugins/$p
done
SLUICE=$ROOT/bin/sluice

# Keys: the sending domain's (its record goes into Sluice's static DNS) and
# Sluice's own signing keys.
$SLUICE keygen -algorithm rsa -selector bench -domain source.test -out "$WORK/source.pem" >"$WORK/source.txt" 2>/dev/null
$SLUICE keygen -algorithm rsa -selector rsa -domain bench.test -out "$WORK/rsa.pem" >/dev/null 2>&1
$SLUICE keygen -algorithm ed25519 -selector ed -domain bench.test -out "$WORK/ed.pem" >/dev/null 2>&1
SOURCE_KEY_RECORD=$(grep '_domainkey' "$WORK/source.txt")
for size in $SIZES; do
	$PYTHON bench/message.py "$size" "$WORK/source.pem" "$WORK/msg-$size.eml"
done

# free_port prints a TCP port nothing listens on.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		if [ -z "$(ss -Htln "sport = :$p")" ]; then
			echo $p
			return
		fi
	done
}

# wait_for runs its arguments until they succeed, for up to a minute.
wait_for() {
	for _ in $(seq 600); do
		if "$@" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "load.sh: gave up waiting for: $*" >&2
	return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

SINK_USER=()
[ "$(id -u)" = 0 ] && SINK_USER=(-u nobody)

# start_sink starts smtp-sink on a fresh port; sets SINK_PORT, SINK_PID, SINK_OUT.
start_sink() {
	SINK_PORT=$(free_port)
	SINK_OUT=$WORK/sink-$SINK_PORT.out
	smtp-sink "${SINK_USER[@]}" -c -C "127.0.0.1:$SINK_PORT" 1024 >"$SINK_OUT" 2>&1 &
	SINK_PID=$!
	PIDS+=("$SINK_PID")
	wait_for port_open "$SINK_PORT"
}

# stop_sink stops smtp-sink and prints how many messages it received.
stop_sink() {
	kill "$SINK_PID" 2>/dev/null || true
	wait "$SINK_PID" 2>/dev/null || true
	tr '\r' '\n' <"$SINK_OUT" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1 | grep . || echo 0
}

# send runs smtp-source against a port and prints its wall time in seconds.
send() {
	local port=$1 size=$2 sessions=$3 t0 t1
	t0=$(date +%s.%N)
	smtp-source -A -s "$sessions" -m "$N" -F "$WORK/msg-$size.eml" -M client.source.test \
		-f a@source.test -t x@bench.test "127.0.0.1:$port" >>"$WORK/source.log" 2>&1 || true
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

# write_config writes a Sluice configuration for a profile.
write_config() {
	local profile=$1 file=$2
	cat >"$file" <<EOF
# Written by bench/load.sh, profile "$profile".
hostname = "mx.bench.test"
domains = ["bench.test"]

[smtp]
listen = ["127.0.0.1:$SLUICE_PORT"]
# Every session of the benchmark comes from 127.0.0.1.
max_connections = 2000
max_connections_per_ip = 2000

[relay]
port = $SINK_PORT

[srs]
secrets = ["$(head -c 24 /dev/urandom | base64)"]

[dns]
# Nothing listens there: every name the benchmark uses has static records,
# and nothing may leave the machine.
nameservers = ["127.0.0.1:9"]
static = [
  "sink.test.    IN MX 10 mx.sink.test.",
  "mx.sink.test. IN A 127.0.0.1",
  'source.test.        IN TXT "v=spf1 ip4:127.0.0.0/8 -all"',
  'client.source.test. IN TXT "v=spf1 ip4:127.0.0.0/8 -all"',
  '_dmarc.source.test. IN TXT "v=DMARC1; p=reject"',
  '$SOURCE_KEY_RECORD',
]

[log]
level = "info"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[wasm]
cache_dir = "$WORK/wasm-cache"

[[plugin]]
name = "router"
path = "$ROOT/plugins/router/router.wasm"
stages = ["rcpt"]

[[plugin.config.rule]]
match = "*@bench.test"
action = "forward"
to = "x@sink.test"
EOF
	case $profile in
	forward)
		cat >>"$file" <<EOF

[auth]
enabled = false
EOF
		;;
	full)
		cat >>"$file" <<EOF

[[plugin]]
name = "dmarc"
path = "$ROOT/plugins/dmarc/dmarc.wasm"
stages = ["data"]

[auth]
enabled = true

[dkim]
[[dkim.key]]
selector = "rsa"
file = "$WORK/rsa.pem"
[[dkim.key]]
selector = "ed"
file = "$WORK/ed.pem"

[arc]
seal = true
selector = "rsa"
EOF
		;;
	*)
		echo "load.sh: unknown profile $profile" >&2
		exit 2
		;;
	esac
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
peak_rss_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
CLK_TCK=$(getconf CLK_TCK)

# metric prints the value of one sample of Sluice's /metrics, or 0.
metric() {
	awk -v name="$1" '$1 == name { v = $2 } END { print v + 0 }' "$WORK/metrics"
}

ROWS=()
# row appends a line to the table: profile size sessions rate ratio cpu rss failures
row() { ROWS+=("$(printf '| %-8s | %6s | %8s | %7s | %5s | %8s | %8s | %8s |' "$@")"); }

human_size() { awk -v s="$1" 'BEGIN { if (s % 1024 == 0) printf "%d KiB", s / 1024; else printf "%d B", s }'; }

baseline() {
	local size=$1 sessions=$2 secs got
	start_sink
	secs=$(send "$SINK_PORT" "$size" "$sessions")
	got=$(stop_sink)
	BASE_RATE=$(awk -v n="$N" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
	printf '  straight  %6s %5s sessions: %6s msg/s (%s s), %d not delivered\n' "$(human_size "$size")" "$sessions" "$BASE_RATE" "$secs" $((N - got))
	row straight "$(human_size "$size")" "$sessions" "$BASE_RATE" "1.00" "" "" $((N - got))
}

run_sluice() {
	local profile=$1 size=$2 sessions=$3 name cfg args c0 c1 secs rss got rate ratio cpu
	name=$profile-$size-$sessions
	start_sink
	SLUICE_PORT=$(free_port)
	ADMIN_PORT=$(free_port)
	cfg=$WORK/$name.toml
	write_config "$profile" "$cfg"
	args=(serve -c "$cfg" -grace 5s)
	[ -n "$PROFILE_DIR" ] && args+=(-cpuprofile "$PROFILE_DIR/$name.pprof")
	"$SLUICE" "${args[@]}" 2>"$WORK/$name.log" &
	local pid=$!
	PIDS+=("$pid")
	if ! wait_for curl -sf "http://127.0.0.1:$ADMIN_PORT/healthz" -o /dev/null; then
		tail "$WORK/$name.log" >&2
		exit 1
	fi
	c0=$(cpu_ticks $pid)
	secs=$(send "$SLUICE_PORT" "$size" "$sessions")
	c1=$(cpu_ticks $pid)
	rss=$(peak_rss_kib $pid)
	curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" -o "$WORK/metrics" || : >"$WORK/metrics"
	kill -TERM $pid
	wait $pid || true
	got=$(stop_sink)
	rate=$(awk -v n="$N" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
	ratio=$(awk -v r="$rate" -v b="$BASE_RATE" 'BEGIN { printf "%.2f", r / b }')
	cpu=$(awk -v c=$((c1 - c0)) -v t="$CLK_TCK" -v n="$N" 'BEGIN { printf "%.0f", c / t / n * 1e6 }')
	rss=$(awk -v k="$rss" 'BEGIN { printf "%.0f", k / 1024 }')
	local failed=$((N - got)) outcomes
	outcomes=$(printf 'delivered %s, rejected %s, tempfailed %s' \
		"$(metric 'sluice_messages_total{outcome="delivered"}')" \
		"$(metric 'sluice_messages_total{outcome="rejected"}')" \
		"$(metric 'sluice_messages_total{outcome="tempfailed"}')")
	printf '  %-8s  %6s %5s sessions: %6s msg/s (%s s), x%s of straight, %s µs CPU/msg, peak RSS %s MiB, %d not delivered (Sluice: %s)\n' \
		"$profile" "$(human_size "$size")" "$sessions" "$rate" "$secs" "$ratio" "$cpu" "$rss" "$failed" "$outcomes"
	if [ "$failed" -gt 0 ]; then
		grep 'msg=message' "$WORK/$name.log" | grep -v 'outcome="250 ' | head -3 | sed 's/^/    /' || true
	fi
	row "$profile" "$(human_size "$size")" "$sessions" "$rate" "$ratio" "$cpu" "$rss" "$failed"
}

echo "$N messages per run; machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
start=$(date +%s)
for size in $SIZES; do
	for sessions in $SESSIONS; do
		baseline "$size" "$sessions"
		for profile in $PROFILES; do
			run_sluice "$profile" "$size" "$sessions"
		done
	done
done

echo
echo "| profile  |   size | sessions |   msg/s | ratio | µs CPU/msg | peak RSS MiB | failures |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "ratio: msg/s over the straight smtp-source → smtp-sink rate at the same size and sessions;"
echo "CPU and RSS are Sluice's own. Took $(($(date +%s) - start)) s."

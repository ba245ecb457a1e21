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
usage: bench/load.sh [-q] [-n N] [-r R] [-P PROFILES] [-z SIZES] [-s SESSIONS] [-b BIN] [-p DIR] [-k]

  -n N          messages per run (default 20000)
  -q            quick: 2000 messages per run, for trying things out
  -r R          run each measurement R times and report the medians (default 1)
  -P PROFILES   Sluice profiles to run (default "forward full"):
                  forward  router only: [auth] off, no DKIM keys, no ARC
                  full     SPF, DKIM and ARC verification, the demo's chain (dnsbl,
                           ratelimit, router, spam, dmarc plugins; [scoring]),
                           DKIM RSA-2048 + Ed25519 signing, ARC seal, SRS
  -z SIZES      message sizes in bytes (default "4096 65536")
  -s SESSIONS   concurrent sessions (default "32 1000")
  -b BUILDS     the builds to compare, space-separated, each run side by side with
                its own rows: "pure" (make build), "openssl" (make build OPENSSL=1)
                or the path of a sluice binary (default: "pure openssl", or "pure"
                where a C compiler and OpenSSL's headers are missing)
  -p DIR        write a CPU profile of each Sluice run to DIR (go tool pprof)
  -k            keep the work directory (configs, logs, messages)
EOF
}

N=20000
PROFILES="forward full"
SIZES="4096 65536"
SESSIONS="32 1000"
REPEAT=1
BUILDS=""
PROFILE_DIR=""
KEEP=0
while getopts "qn:r:P:z:s:b:p:kh" opt; do
	case $opt in
	q) N=2000 ;;
	n) N=$OPTARG ;;
	r) REPEAT=$OPTARG ;;
	b) BUILDS=$OPTARG ;;
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

# have_openssl says whether the OpenSSL build can be made here.
have_openssl() { echo '#include <openssl/evp.h>' | ${CC:-cc} -E - >/dev/null 2>&1; }
if [ -z "$BUILDS" ]; then
	BUILDS="pure openssl"
	if ! have_openssl; then
		BUILDS=pure
		echo "load.sh: no C compiler or OpenSSL headers (apt-get install gcc libc6-dev libssl-dev): the pure Go build only" >&2
	fi
fi
# BINARIES are the binaries to run, LABELS their names in the table, in
# the order of BUILDS.
BINARIES=()
LABELS=()
for b in $BUILDS; do
	case $b in
	pure)
		echo "building bin/sluice-pure (make build)"
		make -s build GO="$GO" SLUICE=bin/sluice-pure >/dev/null
		BINARIES+=("$ROOT/bin/sluice-pure")
		;;
	openssl)
		echo "building bin/sluice-openssl (make build OPENSSL=1)"
		make -s build GO="$GO" OPENSSL=1 SLUICE=bin/sluice-openssl >/dev/null
		BINARIES+=("$ROOT/bin/sluice-openssl")
		;;
	*)
		[ -x "$b" ] || {
			echo "load.sh: -b: $b is neither pure, openssl nor an executable" >&2
			exit 2
		}
		BINARIES+=("$(cd "$(dirname "$b")" && pwd)/$(basename "$b")")
		;;
	esac
	label=$(basename "$b")
	# Two binaries of the same name are told apart by their place.
	for l in "${LABELS[@]}"; do
		[ "$l" = "$label" ] && label="$label-$((${#LABELS[@]} + 1))"
	done
	LABELS+=("$label")
done
echo "building the demo's plugins: dnsbl, ratelimit, router, spam, dmarc"
for p in dnsbl ratelimit router spam dmarc; do
	GOOS=wasip1 GOARCH=wasm $GO build -buildmode=c-shared -o plugins/$p/$p.wasm ./plugins/$p
done
SLUICE=${BINARIES[0]}

# Keys: the sending domain's (its record goes into Sluice's static DNS) and
# Sluice's own signing keys.
$SLUICE keygen -algorithm rsa -selector bench -domain source.test -out "$WORK/source.pem" >"$WORK/source.txt" 2>/dev/null
$SLUICE keygen -algorithm rsa -selector rsa -domain bench.test -out "$WORK/rsa.pem" >/dev/null 2>&1
$SLUICE keygen -algorithm ed25519 -selector ed -domain bench.test -out "$WORK/ed.pem" >/dev/null 2>&1
SOURCE_KEY_RECORD=$(grep '_domainkey' "$WORK/source.txt")
for size in $SIZES; do
	$PYTHON bench/message.py "$size" "$WORK/source.pem" "$WORK/msg-$size.eml"
done

# next_port sets PORT to a TCP port no socket uses, never the same one
# twice in a run. It stays below the kernel's ephemeral range, which the
# benchmark's own connections fill.
LAST_PORT=$((20000 + RANDOM % 8000))
next_port() {
	while :; do
		LAST_PORT=$((LAST_PORT + 1))
		if [ -z "$(ss -Htan "sport = :$LAST_PORT")" ]; then
			PORT=$LAST_PORT
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
	next_port
	SINK_PORT=$PORT
	SINK_OUT=$WORK/sink-$SINK_PORT.out
	smtp-sink "${SINK_USER[@]}" -c -C -m 4096 "127.0.0.1:$SINK_PORT" 4096 >"$SINK_OUT" 2>&1 &
	SINK_PID=$!
	PIDS+=("$SINK_PID")
	wait_for port_open "$SINK_PORT" || {
		cat "$SINK_OUT" >&2
		exit 1
	}
}

# stop_sink stops smtp-sink; sets GOT to how many messages it received.
stop_sink() {
	kill "$SINK_PID" 2>/dev/null || true
	wait "$SINK_PID" 2>/dev/null || true
	GOT=$(tr '\r' '\n' <"$SINK_OUT" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1)
	GOT=${GOT:-0}
}

# send runs smtp-source against a port; sets SECS (wall time),
# SOURCE_TICKS (its CPU time) and SOURCE_SYS (the system part).
send() {
	local port=$1 size=$2 sessions=$3 t0 t1 c0 c1 s0 s1
	c0=$(children_ticks)
	s0=$(children_sys_ticks)
	t0=$(date +%s.%N)
	smtp-source -A -s "$sessions" -m "$N" -F "$WORK/msg-$size.eml" -M client.source.test \
		-f a@source.test -t x@bench.test "127.0.0.1:$port" >>"$WORK/source.log" 2>&1 || true
	t1=$(date +%s.%N)
	c1=$(children_ticks)
	s1=$(children_sys_ticks)
	SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	SOURCE_TICKS=$((c1 - c0))
	SOURCE_SYS=$((s1 - s0))
}

# write_config writes a Sluice configuration for a profile.
write_config() {
	local profile=$1 file=$2
	cat >"$file" <<EOF
# Written by bench/load.sh, profile "$profile".
hostname = "mx.bench.test"
domains = ["bench.test"]
# The queue and other state: the run's own, never /var/lib/sluice.
data_dir = "$WORK/data-$profile"

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
  # The client's confirmed name, which is also its HELO (the spam plugin
  # looks it up); and the demo blocklist's "not listed" for 127.0.0.1.
  "1.0.0.127.in-addr.arpa. IN PTR client.source.test.",
  "client.source.test.     IN A   127.0.0.1",
  '1.0.0.127.dnsbl.test.   IN TXT "not listed"',
]

[log]
level = "info"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[wasm]
cache_dir = "$WORK/wasm-cache"
EOF
	# The full profile runs the demo's chain (gateway.toml), in its order.
	if [ "$profile" = full ]; then
		cat >>"$file" <<EOF

[[plugin]]
name = "dnsbl"
path = "$ROOT/plugins/dnsbl/dnsbl.wasm"
stages = ["rcpt"]
capabilities = ["dns"]
[plugin.config]
url = "https://bench.test/blocked"
[[plugin.config.zone]]
name = "dnsbl.test"

# The demo's limit per client, raised out of the benchmark's reach: it
# still counts every message.
[[plugin]]
name = "ratelimit"
path = "$ROOT/plugins/ratelimit/ratelimit.wasm"
stages = ["mail"]
capabilities = ["kv"]
[[plugin.config.limit]]
count = "client"
max = 1000000000
per = "1h"
EOF
	fi
	cat >>"$file" <<EOF

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
name = "spam"
path = "$ROOT/plugins/spam/spam.wasm"
stages = ["data"]
capabilities = ["headers", "body", "dns"]
on_failure = "skip"

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

[scoring]
quarantine = 6.0
reject = 15.0
EOF
		;;
	*)
		echo "load.sh: unknown profile $profile" >&2
		exit 2
		;;
	esac
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
sys_ticks() { awk '{ print $15 }' "/proc/$1/stat"; }
# children_ticks is the CPU time of this script's finished children;
# children_sys_ticks its system part.
children_ticks() { awk '{ print $16 + $17 }' "/proc/$$/stat"; }
children_sys_ticks() { awk '{ print $17 }' "/proc/$$/stat"; }
# busy_ticks is the CPU time the whole machine has spent, all cores.
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
peak_rss_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
CLK_TCK=$(getconf CLK_TCK)
CORES=$(nproc)

# metric prints the value of one sample of Sluice's /metrics, or 0.
metric() {
	awk -v name="$1" '$1 == name { v = $2 } END { print v + 0 }' "$WORK/metrics"
}

# others_pct is the share of the machine that processes other than the
# three under test used during a run: high means the figures are noisy.
others_pct() {
	awk -v busy="$1" -v ours="$2" -v secs="$SECS" -v hz="$CLK_TCK" -v cores="$CORES" \
		'BEGIN { o = (busy - ours) / (secs * hz * cores) * 100; printf "%.0f", o < 0 ? 0 : o }'
}

# median prints the median of its arguments (the lower middle one of an even count).
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

ROWS=()
BOUND_LINES=()
COMPARE_LINES=()
# row appends a line to the table.
row() { ROWS+=("$(printf '| %-12s | %6s | %8s | %6s | %5s | %10s | %8s | %4s | %8s | %6s |' "$@")"); }

human_size() { awk -v s="$1" 'BEGIN { if (s % 1024 == 0) printf "%d KiB", s / 1024; else printf "%d B", s }'; }

# baseline_once sends straight to a sink; sets RATE, CPU, SYS, OTHERS,
# FAILED. Its CPU is smtp-source's and smtp-sink's together: sending a
# message plus receiving it, the two halves of what a forwarder does.
baseline_once() {
	local size=$1 sessions=$2 b0 b1 k0 k1 ks0 ks1 ticks
	start_sink
	b0=$(busy_ticks)
	k0=$(cpu_ticks "$SINK_PID")
	ks0=$(sys_ticks "$SINK_PID")
	send "$SINK_PORT" "$size" "$sessions"
	ks1=$(sys_ticks "$SINK_PID")
	k1=$(cpu_ticks "$SINK_PID")
	b1=$(busy_ticks)
	stop_sink
	ticks=$((k1 - k0 + SOURCE_TICKS))
	RATE=$(awk -v n="$N" -v s="$SECS" 'BEGIN { printf "%.0f", n / s }')
	CPU=$(awk -v c=$ticks -v t="$CLK_TCK" -v n="$N" 'BEGIN { printf "%.0f", c / t / n * 1e6 }')
	SYS=$(awk -v c=$ticks -v s=$((ks1 - ks0 + SOURCE_SYS)) 'BEGIN { printf "%.0f", c ? s / c * 100 : 0 }')
	OTHERS=$(others_pct $((b1 - b0)) $ticks)
	FAILED=$((N - GOT))
	printf '  %-16s  %6s %5s sessions: %6s msg/s (%s s), smtp-source + smtp-sink %s µs CPU/msg (%s%% in the kernel), others used %s%% of the machine, %d not delivered\n' \
		straight "$(human_size "$size")" "$sessions" "$RATE" "$SECS" "$CPU" "$SYS" "$OTHERS" "$FAILED"
}

# sluice_once sends through a fresh Sluice; sets RATE, CPU, RSS, OTHERS, FAILED.
sluice_once() {
	local bin=$1 build=$2 profile=$3 size=$4 sessions=$5 name cfg args c0 c1 b0 b1 k0 k1 outcomes
	# The build is in the name, so that each build's profile is its own file.
	name=$profile-$size-$sessions-$build-$RUN
	start_sink
	next_port
	SLUICE_PORT=$PORT
	next_port
	ADMIN_PORT=$PORT
	cfg=$WORK/$name.toml
	write_config "$profile" "$cfg"
	args=(serve -c "$cfg" -grace 5s)
	[ -n "$PROFILE_DIR" ] && args+=(-cpuprofile "$PROFILE_DIR/$name.pprof")
	"$bin" "${args[@]}" 2>"$WORK/$name.log" &
	local pid=$!
	PIDS+=("$pid")
	if ! wait_for curl -sf "http://127.0.0.1:$ADMIN_PORT/healthz" -o /dev/null; then
		tail "$WORK/$name.log" >&2
		exit 1
	fi
	b0=$(busy_ticks)
	c0=$(cpu_ticks $pid)
	s0=$(sys_ticks $pid)
	k0=$(cpu_ticks "$SINK_PID")
	send "$SLUICE_PORT" "$size" "$sessions"
	k1=$(cpu_ticks "$SINK_PID")
	s1=$(sys_ticks $pid)
	c1=$(cpu_ticks $pid)
	b1=$(busy_ticks)
	RSS=$(awk -v k="$(peak_rss_kib $pid)" 'BEGIN { printf "%.0f", k / 1024 }')
	curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" -o "$WORK/metrics" || : >"$WORK/metrics"
	kill -TERM $pid
	wait $pid || true
	stop_sink
	RATE=$(awk -v n="$N" -v s="$SECS" 'BEGIN { printf "%.0f", n / s }')
	CPU=$(awk -v c=$((c1 - c0)) -v t="$CLK_TCK" -v n="$N" 'BEGIN { printf "%.0f", c / t / n * 1e6 }')
	SYS=$(awk -v c=$((c1 - c0)) -v s=$((s1 - s0)) 'BEGIN { printf "%.0f", c ? s / c * 100 : 0 }')
	OTHERS=$(others_pct $((b1 - b0)) $((c1 - c0 + k1 - k0 + SOURCE_TICKS)))
	FAILED=$((N - GOT))
	outcomes=$(printf 'delivered %s, rejected %s, tempfailed %s' \
		"$(metric 'sluice_messages_total{outcome="delivered"}')" \
		"$(metric 'sluice_messages_total{outcome="rejected"}')" \
		"$(metric 'sluice_messages_total{outcome="tempfailed"}')")
	printf '  %-16s  %6s %5s sessions: %6s msg/s (%s s), %s µs CPU/msg (%s%% in the kernel), peak RSS %s MiB, others used %s%%, %d not delivered (Sluice: %s)\n' \
		"$profile $build" "$(human_size "$size")" "$sessions" "$RATE" "$SECS" "$CPU" "$SYS" "$RSS" "$OTHERS" "$FAILED" "$outcomes"
	if [ "$FAILED" -gt 0 ]; then
		grep 'msg=message' "$WORK/$name.log" | grep -v 'outcome=forwarded' | head -3 | sed 's/^/    /' || true
	fi
}

# measure_straight runs the baseline REPEAT times and adds its row with
# the medians; BASE_RATE is its rate.
measure_straight() {
	local size=$1 sessions=$2 rates=() cpus=() syss=() others=() failed=0
	for RUN in $(seq "$REPEAT"); do
		baseline_once "$size" "$sessions"
		rates+=("$RATE")
		cpus+=("$CPU")
		syss+=("$SYS")
		others+=("$OTHERS")
		failed=$((failed + FAILED))
	done
	BASE_RATE=$(median "${rates[@]}")
	row straight "$(human_size "$size")" "$sessions" "$BASE_RATE" "1.00" "$(median "${cpus[@]}")" "$(median "${syss[@]}")" "" "$(median "${others[@]}")" "$failed"
}

# measure_sluice runs a profile REPEAT times with each binary, taking
# turns, and adds a row per binary with the medians; with several
# binaries, a line comparing each to the first.
measure_sluice() {
	local profile=$1 size=$2 sessions=$3 i label rate cpu
	local -A rates=() cpus=() syss=() rsss=() others=() failed=()
	for RUN in $(seq "$REPEAT"); do
		for i in "${!BINARIES[@]}"; do
			sluice_once "${BINARIES[$i]}" "${LABELS[$i]}" "$profile" "$size" "$sessions"
			rates[$i]+=" $RATE"
			cpus[$i]+=" $CPU"
			syss[$i]+=" $SYS"
			rsss[$i]+=" $RSS"
			others[$i]+=" $OTHERS"
			failed[$i]=$((${failed[$i]:-0} + FAILED))
		done
	done
	local first_rate first_cpu
	for i in "${!BINARIES[@]}"; do
		label=$profile
		[ ${#BINARIES[@]} -gt 1 ] && label="$profile ${LABELS[$i]}"
		rate=$(median ${rates[$i]})
		cpu=$(median ${cpus[$i]})
		if [ "$profile" = full ] && [ -n "${RSA_BOUND[$i]:-}" ]; then
			BOUND_LINES+=("$(printf '%s %s, %s sessions: %s msg/s is %s%% of its RSA bound (%s msg/s)' "$label" \
				"$(human_size "$size")" "$sessions" "$rate" "$(awk -v r="$rate" -v b="${RSA_BOUND[$i]}" 'BEGIN { printf "%.0f", r / b * 100 }')" "${RSA_BOUND[$i]}")")
		fi
		row "$label" "$(human_size "$size")" "$sessions" "$rate" \
			"$(awk -v r="$rate" -v b="$BASE_RATE" 'BEGIN { printf "%.2f", r / b }')" \
			"$cpu" "$(median ${syss[$i]})" "$(median ${rsss[$i]})" "$(median ${others[$i]})" "${failed[$i]}"
		if [ "$i" = 0 ]; then
			first_rate=$rate first_cpu=$cpu
		else
			COMPARE_LINES+=("$(awk -v p="$profile" -v s="$(human_size "$size")" -v n="$sessions" -v a="${LABELS[0]}" -v b="${LABELS[$i]}" \
				-v r0="$first_rate" -v r1="$rate" -v c0="$first_cpu" -v c1="$cpu" \
				'BEGIN { printf "%s %s, %s sessions: %s / %s = %.2f× the msg/s, %.2f× the CPU per message", p, s, n, b, a, r0 ? r1 / r0 : 0, c0 ? c1 / c0 : 0 }')")
		fi
	done
}

echo "$N messages per run, $REPEAT run(s) each; machine: $CORES cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
start=$(date +%s)

# rsa_bound sets RSA_BOUND[i] to the rate at which this machine, all cores
# busy, makes the three RSA-2048 signatures the full profile puts on each
# message (DKIM, ARC-Message-Signature, ARC-Seal) with the RSA signer of
# binary i: no full-profile rate of that binary can beat it. Measured now,
# on the same cores, with BenchmarkRSASignAllCores built as the binary signs:
# Go's crypto/rsa, or OpenSSL's libcrypto (the tag openssl).
declare -A RSA_NS=()
RSA_BOUND=()
rsa_bound() {
	local i signer tags ns
	for i in "${!BINARIES[@]}"; do
		signer=$("${BINARIES[$i]}" version | sed -n 's/^RSA signer: //p')
		tags=go
		case $signer in OpenSSL*) tags=openssl ;; esac
		if [ -z "${RSA_NS[$tags]:-}" ]; then
			if [ $tags = openssl ]; then
				ns=$(CGO_ENABLED=1 $GO test -tags openssl -run '^$' -bench '^BenchmarkRSASignAllCores$' -benchtime 3s ./gateway/internal/dkim/ |
					awk '/^BenchmarkRSASignAllCores/ { print $3 }') || ns=""
			else
				ns=$(CGO_ENABLED=0 $GO test -run '^$' -bench '^BenchmarkRSASignAllCores$' -benchtime 3s ./gateway/internal/dkim/ |
					awk '/^BenchmarkRSASignAllCores/ { print $3 }')
			fi
			RSA_NS[$tags]=$ns
			[ -n "$ns" ] && echo "RSA-2048 signatures with all $CORES cores busy, $signer: $(awk -v ns="$ns" 'BEGIN { printf "%.0f", 1e9 / ns }')/s, so three per message bound the full profile at $(awk -v ns="$ns" 'BEGIN { printf "%.0f", 1e9 / ns / 3 }') msg/s"
		fi
		ns=${RSA_NS[$tags]}
		RSA_BOUND[$i]=""
		[ -n "$ns" ] && RSA_BOUND[$i]=$(awk -v ns="$ns" 'BEGIN { printf "%.0f", 1e9 / ns / 3 }')
	done
}
case " $PROFILES " in *" full "*) rsa_bound ;; esac
for size in $SIZES; do
	for sessions in $SESSIONS; do
		measure_straight "$size" "$sessions"
		for profile in $PROFILES; do
			measure_sluice "$profile" "$size" "$sessions"
		done
	done
done

echo
if [ ${#BINARIES[@]} -gt 1 ]; then
	echo "builds:"
	for i in "${!BINARIES[@]}"; do
		echo "  ${LABELS[$i]}: ${BINARIES[$i]} (RSA signer: $("${BINARIES[$i]}" version | sed -n 's/^RSA signer: //p'))"
	done
fi
echo "| profile      |   size | sessions |  msg/s | ratio | µs CPU/msg | kernel % |  MiB | others % | failed |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "msg/s: N over smtp-source's wall time (median of $REPEAT); ratio: over the straight"
echo "smtp-source → smtp-sink rate at the same size and sessions; µs CPU/msg (user and"
echo "system; kernel %: the system part) and MiB (peak RSS) are the Sluice process's own,"
echo "but on straight rows µs CPU/msg is smtp-source's and smtp-sink's together;"
echo "others %: the share of the machine's $CORES cores used meanwhile by processes other"
echo "than smtp-source, smtp-sink and Sluice (high: the rates are not to be trusted)."
if [ ${#COMPARE_LINES[@]} -gt 0 ]; then
	echo
	printf '%s\n' "${COMPARE_LINES[@]}"
fi
if [ ${#BOUND_LINES[@]} -gt 0 ]; then
	echo
	printf '%s\n' "${BOUND_LINES[@]}"
fi
echo "Took $(($(date +%s) - start)) s."

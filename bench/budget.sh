#!/usr/bin/env bash
# bench/budget.sh [ROUNDS=3] [SECONDS=10]
# Where the two cores go: per request, the CPU time of the server (from /proc/PID/stat) and of
# wrk (the shell's `time` of the load), for hookd and limit-server sqlite-group (FULL) and null
# under the 1 KiB JSON load, and hookd under the small multipart load of target 3. On a machine
# whose cores wrk shares, req/s follows 2 cores / (server + wrk CPU per request), so these say
# how much CPU per request hookd must shed to reach a ratio (docs/BENCHMARKS.md, targets 1, 3).
# Env: SHARED_BENCH (default ../shared/bench), HOOKD (a hookd binary; default: built here).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} dur=${2:-10}
shared=${SHARED_BENCH:-../shared/bench}
[ -x "$shared/receive.sh" ] || { echo "budget.sh: the shared bench kit is not at $shared (set SHARED_BENCH)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "budget.sh: needs wrk: apt-get install -y wrk" >&2; exit 1; }
limit=$shared/limits/target/release/limit-server
[ -x "$limit" ] || (cd "$shared/limits" && cargo build --release --quiet)
if [ -z "${HOOKD:-}" ]; then cargo build --release --quiet -p hookd; HOOKD=$PWD/target/release/hookd; fi
work=$(mktemp -d "${TMPDIR:-/tmp}/hookd-budget.XXXXXX")
uuid=0193e7c2-6f1a-7c3e-9b7d-2f4c1a9e8d10
pid=
stop() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi; }
trap 'stop; rm -rf "$work"' EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
tck=$(getconf CLK_TCK)
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }  # utime + stime

start_hookd() {
  rm -rf "$work/data"
  "$HOOKD" serve --listen 127.0.0.1:18094 --data-dir "$work/data" >/dev/null 2>&1 & pid=$!
  wait_port 18094
  HOOKD_URL=http://127.0.0.1:18094 "$HOOKD" command --data-dir "$work/data" webhook.put uuid=$uuid eventKey=webhook.bench >/dev/null
}

measure() { # NAME URL [multipart]  (the server is $pid)
  local c0 c1 out n rps u s
  c0=$(ticks "$pid")
  TIMEFORMAT='%U %S'
  if [ -n "${3:-}" ]; then
    { time out=$(wrk -t2 -c64 -d"${dur}s" -s bench/multipart.lua "$2"); } 2>"$work/time"
    n=$(awk '/ requests in / {print $1}' <<<"$out"); rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  else
    { time out=$("$shared/receive.sh" "$2" "$dur" 64); } 2>"$work/time"
    n=$(sed 's/.*reqs=\([0-9]*\).*/\1/' <<<"$out"); rps=$(sed 's/.*req\/s=\([0-9.]*\).*/\1/' <<<"$out")
  fi
  c1=$(ticks "$pid")
  read -r u s <"$work/time"
  awk -v name="$1" -v r="$rps" -v c=$((c1 - c0)) -v t="$tck" -v n="$n" -v u="$u" -v s="$s" \
    'BEGIN {printf "round %s %-22s req/s=%8.0f server_cpu_us/req=%6.1f wrk_cpu_us/req=%5.1f\n", ENVIRON["r"], name, r, c / t * 1e6 / n, (u + s) * 1e6 / n}'
}

echo "# $(date -u +%FT%TZ)  $(nproc) cores shared with wrk, ${rounds} rounds x ${dur}s x 64 conns"
for r in $(seq "$rounds"); do
  export r
  start_hookd; measure hookd-json "http://127.0.0.1:18094/api/v3/command/webhook.receive?uuid=$uuid"; stop; sleep 1
  start_hookd; measure hookd-multipart "http://127.0.0.1:18094/api/v3/command/webhook.receive?uuid=$uuid" multipart; stop; sleep 1
  LIMIT_SYNC=FULL "$limit" sqlite-group 18095 "$work/group.db" >/dev/null 2>&1 & pid=$!
  wait_port 18095; measure sqlite-group-json http://127.0.0.1:18095/hooks/bench; stop; rm -f "$work"/group.db*; sleep 1
  "$limit" null 18095 >/dev/null 2>&1 & pid=$!
  wait_port 18095; measure null-json http://127.0.0.1:18095/hooks/bench; stop; sleep 1
done

#!/usr/bin/env bash
# bench/multipart.sh [SECONDS=10] [CONNS=64]
# Target 3: many small multipart requests (3 files of 10 KiB) against hookd, next to the 1 KiB
# JSON receive rate of the same build in the same run (the target is >= 0.5x of it), and one
# 100 MiB upload (peak RSS growth <= 32 MiB, >= 300 MB/s). Also the same multipart load against
# limit-server sqlite-group, which stores each body in SQLite with group commit: what this disk
# allows for 31 KiB bodies at all.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10} conns=${2:-64}
shared=${SHARED_BENCH:-../shared/bench}
cargo build --release --quiet -p hookd -p hookd-bench
hookd=$PWD/target/release/hookd
work=$(mktemp -d "${TMPDIR:-/tmp}/hookd-mp.XXXXXX")
uuid=0193e7c2-6f1a-7c3e-9b7d-2f4c1a9e8d10
pid=
stop() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi; }
trap 'stop; rm -rf "$work"' EXIT
start() {
  rm -rf "$work/data"
  "$hookd" serve --listen 127.0.0.1:18092 --data-dir "$work/data" >/dev/null 2>&1 & pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/18092) 2>/dev/null && break; sleep 0.1; done
  HOOKD_URL=http://127.0.0.1:18092 "$hookd" command --data-dir "$work/data" webhook.put uuid=$uuid eventKey=webhook.bench >/dev/null
}
url="http://127.0.0.1:18092/api/v3/command/webhook.receive?uuid=$uuid"
start; json=$("$shared/receive.sh" "$url" "$dur" "$conns"); stop
start
mp=$(wrk -t2 -c"$conns" -d"${dur}s" --latency -s bench/multipart.lua "$url" | awk '/^Requests\/sec:/ {print $2} $1 == "99%" {p99=$2} END {print p99}' | paste -sd' ')
stop
limit=$shared/limits/target/release/limit-server
[ -x "$limit" ] || (cd "$shared/limits" && cargo build --release --quiet)
LIMIT_SYNC=FULL "$limit" sqlite-group 18093 "$work/group.db" >/dev/null 2>&1 & pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/18093) 2>/dev/null && break; sleep 0.1; done
ref=$(wrk -t2 -c"$conns" -d"${dur}s" -s bench/multipart.lua http://127.0.0.1:18093/hooks/bench | awk '/^Requests\/sec:/ {print $2}')
stop
echo "# $(date -u +%FT%TZ) $(nproc) cores, ${dur}s x ${conns} conns"
echo "json-1KiB      $json"
echo "multipart-3x10KiB req/s=${mp% *} p99=${mp#* } ratio=$(awk -v m="${mp% *}" -v j="$(sed 's/.*req\/s=\([0-9.]*\).*/\1/' <<<"$json")" 'BEGIN {printf "%.2f", m/j}') (target >= 0.5)"
echo "multipart-3x10KiB sqlite-group req/s=$ref hookd/sqlite-group=$(awk -v m="${mp% *}" -v r="$ref" 'BEGIN {printf "%.2f", m/r}')"
# The loads above leave the disk writing back what they stored; the big upload's own throughput
# is measured once that is done.
sync
"$PWD/target/release/hookd-bench" --hookd "$hookd" multipart-big --mib 100

#!/usr/bin/env bash
# bench/deliveries.sh [RUNS=3] [COUNT=20000]
# Target 5: persisted outgoing deliveries per second, with limit-server null (../shared/bench) as
# the sink. Each run starts its own hookd with a temp data dir (hookd-bench deliveries does), sends
# COUNT webhook.send calls from 64 clients and waits for every delivery.succeeded/failed event.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3} count=${2:-20000}
shared=${SHARED_BENCH:-../shared/bench}
limit=$shared/limits/target/release/limit-server
[ -x "$limit" ] || (cd "$shared/limits" && cargo build --release --quiet)
cargo build --release --quiet -p hookd -p hookd-bench
"$limit" null 18081 >/dev/null 2>&1 & sink=$!
trap 'kill "$sink" 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/18081) 2>/dev/null && break; sleep 0.1; done
echo "# $(date -u +%FT%TZ)  $(nproc) cores; $runs runs x $count deliveries to limit-server null"
for _ in $(seq "$runs"); do
  target/release/hookd-bench deliveries --sink http://127.0.0.1:18081/ --count "$count"
done

#!/usr/bin/env bash
# bench/receive.sh [ROUNDS=3] [SECONDS=10] [CONNS=64]
# Target 1 of docs/BENCHMARKS.md: hookd's receive path against the references of ../shared/bench,
# interleaved round by round so drift hits every target alike. Per round and target: wrk with the
# shared 1 KiB JSON POST (receive.sh). Prints each run, then medians and hookd's ratios.
# Env: SHARED_BENCH (default ../shared/bench), SYNC=full|normal (hookd's [storage] synchronous
# and limit-server's LIMIT_SYNC alike; default full), LISTENER=1 (hookd with one event.listen +
# log pipeline on the webhook, target 2; needs the pipelines issue).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} dur=${2:-10} conns=${3:-64}
shared=${SHARED_BENCH:-../shared/bench}
sync=${SYNC:-full}
[ -x "$shared/receive.sh" ] || { echo "receive.sh: the shared bench kit is not at $shared (set SHARED_BENCH)" >&2; exit 1; }
command -v wrk >/dev/null && command -v webhook >/dev/null ||
  { echo "receive.sh: needs wrk and webhook: apt-get install -y wrk webhook" >&2; exit 1; }
limit=$shared/limits/target/release/limit-server
[ -x "$limit" ] || (cd "$shared/limits" && cargo build --release --quiet)
cargo build --release --quiet -p hookd -p hookd-bench
hookd=$PWD/target/release/hookd
work=$(mktemp -d "${TMPDIR:-/tmp}/hookd-bench.XXXXXX")
uuid=0193e7c2-6f1a-7c3e-9b7d-2f4c1a9e8d10
printf '[storage]\nsynchronous = "%s"\n' "$sync" > "$work/hookd.toml"

pid=
stop() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi; }
trap 'stop; rm -rf "$work"' EXIT
wait_port() {
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "receive.sh: nothing listening on 127.0.0.1:$1" >&2; return 1
}

# One data dir per run, with the webhook created by uuid (and the listener, for target 2).
start_hookd() {
  rm -rf "$work/data"
  "$hookd" serve --listen 127.0.0.1:18090 --data-dir "$work/data" --config "$work/hookd.toml" 2>"$work/hookd.log" >/dev/null &
  pid=$!
  wait_port 18090
  HOOKD_URL=http://127.0.0.1:18090 "$hookd" command --data-dir "$work/data" webhook.put uuid=$uuid eventKey=webhook.bench >/dev/null
  if [ -n "${LISTENER:-}" ]; then
    printf 'pipeline:\n  - event.listen:\n      eventKey: webhook.bench\n  - log:\n      message: "got ${body.messageId}"\n' > "$work/p.yaml"
    HOOKD_URL=http://127.0.0.1:18090 "$hookd" command --data-dir "$work/data" pipeline.put name=bench/listener pipeline=@"$work/p.yaml" >/dev/null
  fi
}

declare -A rps p99 cpu
tck=$(getconf CLK_TCK)
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }  # utime + stime
measure() { # NAME PORT PATH  (the server is $pid)
  local line c0 c1 reqs
  c0=$(ticks "$pid")
  line=$("$shared/receive.sh" "http://127.0.0.1:$2$3" "$dur" "$conns")
  c1=$(ticks "$pid")
  reqs=$(sed 's/.*reqs=\([0-9]*\).*/\1/' <<<"$line")
  # Server CPU per request: steadier than req/s on a machine whose cores wrk shares.
  line="$line cpu_us/req=$(awk -v c=$((c1 - c0)) -v t="$tck" -v n="$reqs" 'BEGIN {printf "%.1f", c / t * 1e6 / n}')"
  echo "  round $r $1: $line" >&2
  rps[$1]+="$(sed 's/.*req\/s=\([0-9.]*\).*/\1/' <<<"$line") "
  p99[$1]+="$(sed 's/.*p99=\([0-9.]*[a-z]*\).*/\1/' <<<"$line") "
  cpu[$1]+="$(sed 's/.*cpu_us\/req=\([0-9.]*\).*/\1/' <<<"$line") "
}

lsync=$(tr '[:lower:]' '[:upper:]' <<<"$sync")
for r in $(seq "$rounds"); do
  start_hookd; measure hookd 18090 "/api/v3/command/webhook.receive?uuid=$uuid"
  if [ -n "${LISTENER:-}" ]; then
    # Target 2 also asks that every message gets its execution: wait for the queue to drain.
    echo "  round $r $("$PWD/target/release/hookd-bench" counts --data-dir "$work/data")" >&2
  fi
  stop; sleep 1
  LIMIT_SYNC=$lsync "$limit" sqlite-group 18083 "$work/group.db" 2>/dev/null & pid=$!
  wait_port 18083; measure sqlite-group 18083 /hooks/bench; stop; rm -f "$work"/group.db*; sleep 1
  webhook -hooks "$shared/hooks.json" -ip 127.0.0.1 -port 9000 >/dev/null 2>&1 & pid=$!
  wait_port 9000; measure webhook-noexec 9000 /hooks/bench-noexec; stop; sleep 1
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
to_ms() { sed -E 's/([0-9.]+)us/\1e-3/; s/([0-9.]+)ms/\1/; s/([0-9.]+)s$/\1e3/' | awk '{printf "%.2f\n", $1}'; }
echo "# $(date -u +%FT%TZ)  $(nproc) cores shared with wrk, kernel $(uname -r); ${rounds} rounds x ${dur}s x ${conns} conns, synchronous=$sync${LISTENER:+, one listener pipeline}"
printf '%-16s %12s %10s %14s\n' target "req/s (med)" "p99 ms" "cpu us/req"
for t in hookd sqlite-group webhook-noexec; do
  printf '%-16s %12.0f %10s %14s\n' "$t" "$(median <<<"${rps[$t]}")" \
    "$(for x in ${p99[$t]}; do to_ms <<<"$x"; done | median)" "$(median <<<"${cpu[$t]}")"
done
h=$(median <<<"${rps[hookd]}") g=$(median <<<"${rps[sqlite-group]}") w=$(median <<<"${rps[webhook-noexec]}")
hp=$(for x in ${p99[hookd]}; do to_ms <<<"$x"; done | median) gp=$(for x in ${p99[sqlite-group]}; do to_ms <<<"$x"; done | median)
hc=$(median <<<"${cpu[hookd]}") gc=$(median <<<"${cpu[sqlite-group]}")
goal=0.9; [ -n "${LISTENER:-}" ] && goal=0.6  # target 2 asks less of the run with a listener
awk -v h="$h" -v g="$g" -v w="$w" -v hp="$hp" -v gp="$gp" -v hc="$hc" -v gc="$gc" -v goal="$goal" 'BEGIN {
  printf "ratios: hookd/sqlite-group req/s %.2f (target >= %s), hookd/webhook-noexec %.2f (>= 1.5), p99 hookd/sqlite-group %.2f (<= 1.5), cpu/req sqlite-group/hookd %.2f\n", h/g, goal, h/w, hp/gp, gc/hc }'

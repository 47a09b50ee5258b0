#!/usr/bin/env bash
# bench/ab.sh ROUNDS BIN [BIN ...]
# Interleaved A/B of hookd builds on the receive path: per round and build, 10 s x 64 connections
# of the shared 1 KiB JSON POST, once with one event.listen + log pipeline and once without.
# For comparing a change against its parent (copy each build's target/release/hookd aside first);
# the builds share every round's conditions, so their ratio means more than any absolute figure.
# Ends with each build's medians (req/s, CPU per request) and its median per-round ratio to the
# first build named.
# Env: SHARED_BENCH (default ../shared/bench), SECONDS_PER_RUN (default 10), LISTENERS (default
# "1 0": which of the two runs to make), LOAD=multipart (target 3's three 10 KiB files per request,
# bench/multipart.lua, instead of the 1 KiB JSON; LOAD=spread: the JSON to eight webhooks in turn,
# bench/spread.lua, so their messages interleave), REF=1 (also limit-server sqlite-group each round,
# at synchronous=FULL as hookd's default, JSON only, so the builds' ratios to the reference come
# from the same run).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=$1; shift
shared=${SHARED_BENCH:-../shared/bench}
dur=${SECONDS_PER_RUN:-10}
uuid=0193e7c2-6f1a-7c3e-9b7d-2f4c1a9e8d10
work=$(mktemp -d "${TMPDIR:-/tmp}/hookd-ab.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }  # utime + stime
run() { # BIN LISTENER(0|1)
  rm -rf "$work/data"
  "$1" serve --listen 127.0.0.1:18096 --data-dir "$work/data" >/dev/null 2>&1 & pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/18096) 2>/dev/null && break; sleep 0.1; done
  HOOKD_URL=http://127.0.0.1:18096 "$1" command --data-dir "$work/data" webhook.put uuid=$uuid eventKey=webhook.bench >/dev/null
  if [ "${LOAD:-json}" = spread ]; then
    for i in 1 2 3 4 5 6 7; do
      HOOKD_URL=http://127.0.0.1:18096 "$1" command --data-dir "$work/data" webhook.put uuid=${uuid%0}$i eventKey=webhook.bench >/dev/null
    done
  fi
  if [ "$2" = 1 ]; then
    printf 'pipeline:\n  - event.listen:\n      eventKey: webhook.bench\n  - log:\n      message: "got ${body.messageId}"\n' > "$work/p.yaml"
    HOOKD_URL=http://127.0.0.1:18096 "$1" command --data-dir "$work/data" pipeline.put name=bench/listener pipeline=@"$work/p.yaml" >/dev/null
  fi
  url="http://127.0.0.1:18096/api/v3/command/webhook.receive?uuid=$uuid"
  local c0; c0=$(ticks "$pid")
  if [ "${LOAD:-json}" != json ]; then
    line=$(wrk -t2 -c64 -d"${dur}s" --latency -s "bench/${LOAD}.lua" "$url" |
      awk '/ requests in / {n = $1} /^Requests\/sec:/ {r = $2} $1 == "99%" {p = $2}
        /^  Non-2xx/ {x = $NF} END {printf "req/s=%s p99=%s reqs=%s non2xx=%d\n", r, p, n, x}')
  else
    line=$("$shared/receive.sh" "$url" "$dur" 64)
  fi
  # The server's CPU per request during the load: steadier than req/s on a busy machine.
  line="$line cpu_us/req=$(awk -v c=$(($(ticks "$pid") - c0)) -v t="$(getconf CLK_TCK)" \
    -v n="$(sed 's/.*reqs=\([0-9]*\).*/\1/' <<<"$line")" 'BEGIN {printf "%.1f", c / t * 1e6 / n}')"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  echo "round $r $1 listener=$2 $line" | tee -a "$work/rounds"
  sleep 1
}
ref() {
  local limit=$shared/limits/target/release/limit-server
  [ -x "$limit" ] || (cd "$shared/limits" && cargo build --release --quiet)
  # At FULL like hookd's default, so the ratio compares the same durability (receive.sh does too).
  LIMIT_SYNC=FULL "$limit" sqlite-group 18096 "$work/group.db" >/dev/null 2>&1 & pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/18096) 2>/dev/null && break; sleep 0.1; done
  line=$("$shared/receive.sh" http://127.0.0.1:18096/hooks/bench "$dur" 64)
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; rm -f "$work"/group.db*
  echo "round $r sqlite-group $line" | tee -a "$work/rounds"
  sleep 1
}
for r in $(seq "$rounds"); do
  for listener in ${LISTENERS:-1 0}; do
    for bin in "$@"; do run "$bin" "$listener"; done
  done
  if [ -n "${REF:-}" ]; then ref; fi
done
# Medians per build (and listener setting), and each build's per-round ratio to the first build
# named: the figures docs/BENCHMARKS.md quotes from an A/B.
echo "# medians over $rounds rounds (ratio: median of per-round req/s against $1)"
awk -v first="$1" '
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  {
    key = $3 " " ($4 ~ /^listener=/ ? $4 : "")
    rps = $0; sub(/.*req\/s=/, "", rps); sub(/ .*/, "", rps)
    cpu = $0; if (!sub(/.*cpu_us\/req=/, "", cpu)) cpu = ""; sub(/ .*/, "", cpu)
    if (!(key in seen)) { seen[key] = 1; order[++k] = key }
    r[key] = r[key] " " rps; if (cpu != "") c[key] = c[key] " " cpu
    at[$2, key] = rps
    rounds[$2] = 1
  }
  END {
    for (i = 1; i <= k; i++) {
      key = order[i]; split(key, f, " "); base = first " " f[2]; ratios = ""
      if (key != base && (base in seen)) for (rd in rounds) if (at[rd, base] > 0 && at[rd, key] != "") ratios = ratios " " at[rd, key] / at[rd, base]
      printf "%-40s req/s=%.0f", key, median(r[key])
      if (c[key] != "") printf " cpu_us/req=%.1f", median(c[key])
      if (ratios != "") printf " ratio=%.3f", median(ratios)
      printf "\n"
    }
  }' "$work/rounds"

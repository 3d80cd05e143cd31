#!/usr/bin/env bash
# A/B of builds: interleaved rounds of label=server-binary:variant pairs, each against the first
# pair of the same round (so drift hits all alike). For "did this change help" on a noisy VM: build
# the harness at the old commit in another checkout (ROUNDS=0 run.sh there), then e.g.
#
#   OLD=/tmp/base/target/peers-bench/peers/target/release/server
#   NEW=target/peers-bench/peers/target/release/server
#   ROUNDS=5 DUR=6 benches/peers/ab.sh bare=$NEW:bare old=$OLD:wechat_login new=$NEW:wechat_login
#
# USERS=16 cycles over only the first 16 users' tokens (per-user cache misses out of the picture).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
ROUNDS=${ROUNDS:-5}; DUR=${DUR:-6}; CONNS=${CONNS:-64}
GEN=${GEN:-$(cd "$ROOT/../.." && pwd)/target/peers-bench/peers/target/release/gen}
OUT=${OUT:-$(cd "$ROOT/../.." && pwd)/target/peers-bench/ab/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
"$GEN" "$OUT" >/dev/null
port=${BASE_PORT:-18700}
for r in $(seq 1 "$ROUNDS"); do
  for spec in "$@"; do
    label=${spec%%=*}; rest=${spec#*=}; bin=${rest%%:*}; v=${rest#*:}
    port=$((port + 1))
    case $v in wechat_login*) hf=$OUT/wechat-$label.txt;; tower_sessions*) hf=$OUT/cookie.txt;; *) hf=$OUT/bearer.txt;; esac
    TOKENS_OUT=$hf taskset -c 1 "$bin" "$v" "$port" 2>/dev/null & sp=$!
    for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
    if [ -n "${USERS:-}" ]; then head -"$USERS" "$hf" >"$hf.u"; hf=$hf.u; fi
    taskset -c 0 wrk -t1 -c"$CONNS" -d2s -s "$ROOT/cycle.lua" "http://127.0.0.1:$port/me" -- "$hf" >/dev/null
    t0=$(awk '{print $14+$15}' "/proc/$sp/stat")
    taskset -c 0 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -s "$ROOT/cycle.lua" "http://127.0.0.1:$port/me" -- "$hf" >"$OUT/wrk-$label-$r.txt"
    t1=$(awk '{print $14+$15}' "/proc/$sp/stat")
    kill "$sp"; wait "$sp" 2>/dev/null || true
    line=$(grep '^RESULT' "$OUT/wrk-$label-$r.txt")
    get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $line"; }
    us=$(awk -v a="$t0" -v b="$t1" -v c="$(getconf CLK_TCK)" -v n="$(get requests)" 'BEGIN{printf "%.3f",(b-a)/c/n*1e6}')
    printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$label" "$(get rps)" "$(get p99_us)" "$us" | tee -a "$OUT/raw.tsv"
  done
done
python3 - "$OUT/raw.tsv" <<'PY'
import collections, statistics as st, sys
rows = [l.split('\t') for l in open(sys.argv[1]).read().splitlines()]
by = collections.defaultdict(list)
for r, label, rps, p99, us in rows:
    by[label].append((int(r), float(rps), float(p99), float(us)))
labels = list(dict.fromkeys(row[1] for row in rows)); first = labels[0]
base = {r: (rps, p99) for r, rps, p99, _ in by[first]}
print(f"{'label':14s} {'rps(med)':>9s}  x {first} (median [min..max])  p99 x {first}  srv us/req")
for label in labels:
    v = by[label]
    ratio = [rps / base[r][0] for r, rps, _, _ in v]
    p99 = [p / base[r][1] for r, _, p, _ in v]
    print(f"{label:14s} {st.median(x[1] for x in v):9.0f}  {st.median(ratio):.3f} [{min(ratio):.3f}..{max(ratio):.3f}]"
          f"       {st.median(p99):.2f}      {st.median(x[3] for x in v):.3f}")
PY

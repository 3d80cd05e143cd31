#!/usr/bin/env bash
# Where a variant's time goes, per request, against others profiled the same way: each variant's
# server runs pinned under load (wrk, 1,000 users, as run.sh does) while `perf record -e cpu-clock`
# samples it; the table gives each symbol's time per request (samples / rate / requests) and the
# last variant's difference from the first. Needs perf (linux-perf) and a build (run.sh first).
#   PROJECT=$PWD benches/peers/perf.sh bare noop_layer wechat_login
#   ORDER=random benches/peers/perf.sh wechat_login   # users in random order, not in a round
#   perf annotate -i "$WORK/perf/wechat_login/perf.data" --stdio -s <symbol>   # where in a symbol
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
. "$ROOT/paths.sh"   # PROJECT, WORK, BIN, SERVER
ORDER=${ORDER:-}   # "random", or empty for cycle.lua's round
DUR=${DUR:-12}; RATE=${RATE:-4999}; SERVER_CPU=${SERVER_CPU:-1}; CLIENT_CPU=${CLIENT_CPU:-0}
command -v perf >/dev/null || { echo "perf not found: apt-get install -y linux-perf" >&2; exit 1; }
[ -x "$SERVER" ] || { echo "build first: run.sh (with PROJECT set for wechat_login)" >&2; exit 1; }
port=${BASE_PORT:-18600}
for v in "$@"; do
  port=$((port + 1)); out=$WORK/perf/$v; mkdir -p "$out"; rm -f "$out/wechat.txt"
  "$BIN/gen" "$out" >/dev/null
  case $v in tower_sessions*) hf=$out/cookie.txt;; wechat_login*) hf=$out/wechat.txt;; *) hf=$out/bearer.txt;; esac
  TOKENS_OUT=$out/wechat.txt taskset -c "$SERVER_CPU" "$SERVER" "$v" "$port" 2>"$out/server.log" &
  sp=$!
  for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
  taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d2s -s "$ROOT/cycle.lua" "http://127.0.0.1:$port/me" -- "$hf" $ORDER >/dev/null
  taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DUR}s" -s "$ROOT/cycle.lua" "http://127.0.0.1:$port/me" -- "$hf" $ORDER >"$out/wrk.txt" &
  wp=$!
  sleep 1
  # Sampled for DUR-3 seconds, inside the load.
  perf record -q -e cpu-clock -F "$RATE" -p "$sp" -o "$out/perf.data" -- sleep $((DUR - 3)) >/dev/null 2>&1
  wait "$wp"; kill "$sp"; wait "$sp" 2>/dev/null || true
  echo "$v: $(grep -o 'rps=[0-9.]*' "$out/wrk.txt")"
done
python3 - "$WORK/perf" "$RATE" "$((DUR - 3))" "$@" <<'PY'
import collections, re, subprocess, sys
base, rate, secs, variants = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
def load(v):
    out = subprocess.run(["perf", "report", "-i", f"{base}/{v}/perf.data", "--no-children", "--sort", "symbol",
                          "--stdio", "-g", "none", "-F", "sample,sym"], capture_output=True, text=True).stdout
    rps = float(re.search(r"rps=([\d.]+)", open(f"{base}/{v}/wrk.txt").read()).group(1))
    ns = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+\[(.)\]\s+(.*?)\s*$", line)
        if m:
            ns[(m.group(2) + " " + m.group(3))[:100]] += int(m.group(1)) / rate / (rps * secs) * 1e9
    return ns
data = [load(v) for v in variants]
print("ns per request:", "  ".join(f"{v} {sum(d.values()):,.0f}" for v, d in zip(variants, data)))
first, last = data[0], data[-1]
rows = sorted(set().union(*data), key=lambda k: -(last.get(k, 0) - first.get(k, 0)))
print("".join(f"{v[:12]:>13}" for v in variants), f"{'last-first':>11}  symbol ([k] kernel, [.] user)")
for k in rows[:30]:
    print("".join(f"{d.get(k, 0):13.1f}" for d in data), f"{last.get(k, 0) - first.get(k, 0):+11.1f}  {k}")
PY

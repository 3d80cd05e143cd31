#!/usr/bin/env bash
# Instructions per request (user space, callgrind) of peers-bench variants: steady where timings
# are not. Warm up, zero the counters, send N sequential requests on one connection, dump.
#   PROJECT=$PWD ./run.sh ...          # build first (with PROJECT for wechat_login)
#   PROJECT=$PWD ./callgrind.sh bare wechat_login tower_sessions_moka jwt_moka
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
PROJECT=${PROJECT:-$(cd "$ROOT/../.." && pwd)}
WORK=${WORK:-${PROJECT:+$(cd "$PROJECT" && pwd)/target/peers-bench}}; WORK=${WORK:-$ROOT}
BIN=$WORK/peers/target/release
SERVER=${SERVER:-$BIN/server}   # another build's server binary, for an A/B
N=${N:-5000}
# DUMP_INSTR=1: positions per instruction, for footprint.py (distinct code lines a request runs).
# CACHE=1: also simulate the caches (L1 as this machine's, LL=<size,assoc,line> standing in for
# the share of L2 a loaded server keeps) and report first-level and last-level misses per request.
CACHE_OPTS=()
[ -n "${CACHE:-}" ] && CACHE_OPTS=(--cache-sim=yes --D1=49152,12,64 --LL="${LL:-524288,8,64}")
command -v valgrind >/dev/null || { echo "valgrind not found: apt-get install -y valgrind" >&2; exit 1; }
[ -x "$BIN/server" ] || { echo "build first: run.sh (with PROJECT set for wechat_login)" >&2; exit 1; }
OUT=$WORK/callgrind; mkdir -p "$OUT"
"$BIN/gen" "$OUT" >/dev/null
port=${BASE_PORT:-18400}
for v in "${@:-bare wechat_login}"; do
  port=$((port + 1))
  case $v in tower_sessions*) hf=$OUT/cookie.txt;; wechat_login*) hf=$OUT/wechat.txt;; *) hf=$OUT/bearer.txt;; esac
  case $v in *_forged) want=401;; *) want=200;; esac
  rm -f "$OUT/cg.$v.out"*
  TOKENS_OUT=$OUT/wechat.txt WORKERS=1 valgrind --tool=callgrind ${DUMP_INSTR:+--dump-instr=yes} "${CACHE_OPTS[@]}" --callgrind-out-file="$OUT/cg.$v.out" \
    "$SERVER" "$v" "$port" 2>"$OUT/vg.$v.log" &
  vp=$!
  for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
  python3 - "$port" "$hf" 2000 "$want" >/dev/null <<'PY'  # warm: every user twice
import http.client, sys
port, hf, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
hdrs = [l.split(":", 1) for l in open(hf).read().splitlines() if ":" in l]
c = http.client.HTTPConnection("127.0.0.1", port)
ok = 0
for i in range(n):
    k, val = hdrs[i % len(hdrs)]
    c.request("GET", "/me", headers={k.strip(): val.strip()})
    r = c.getresponse(); r.read(); ok += r.status == int(sys.argv[4])
print(ok)
sys.exit(0 if ok == n else 1)
PY
  callgrind_control -z "$vp" >/dev/null
  ok=$(python3 - "$port" "$hf" "$N" "$want" <<'PY'
import http.client, sys
port, hf, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
hdrs = [l.split(":", 1) for l in open(hf).read().splitlines() if ":" in l]
c = http.client.HTTPConnection("127.0.0.1", port)
ok = 0
for i in range(n):
    k, val = hdrs[i % len(hdrs)]
    c.request("GET", "/me", headers={k.strip(): val.strip()})
    r = c.getresponse(); r.read(); ok += r.status == int(sys.argv[4])
print(ok)
PY
)
  callgrind_control -d "$vp" >/dev/null
  kill "$vp"; wait "$vp" 2>/dev/null || true
  ir=$(awk '/^summary:/{print $2; exit}' "$OUT/cg.$v.out.1")
  misses=""
  if [ -n "${CACHE:-}" ]; then  # summary: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
    misses=$(awk -v n="$N" '/^summary:/{printf "  L1d misses %.1f  LL misses %.2f", ($6+$7)/n, ($9+$10)/n; exit}' "$OUT/cg.$v.out.1")
  fi
  printf '%-22s %10s instructions/request%s  (%s of %s answered %s)\n' "$v" "$((ir / N))" "$misses" "$ok" "$N" "$want"
done

#!/usr/bin/env bash
# Paired slices: each variant against bare measured seconds apart, for a figure that repeats on a
# shared VM. There the same server's cost a request moves by 20 % from one few-second spell to the
# next (the host's other guests; no steal time shows), so run.sh's rounds, which put 20-30 s
# between bare and a variant, compare spells as much as servers. Here every variant's server runs
# for the whole run (pinned to CPU 1, idle while another is loaded) and the load generator (CPU 0)
# walks bare, v1, bare, v2, ..., bare in slices of DUR seconds; each variant's slice is set against
# the mean of the bare slices either side of it. Build first (run.sh with ROUNDS=0).
#
#   PROJECT=$PWD benches/peers/pairs.sh                                  # wechat_login and the peers
#   SLICES=40 DUR=1 benches/peers/pairs.sh wechat_login extension_layer   # other variants
#   PROJECT=$PWD benches/peers/pairs.sh bare wechat_login              # bare against bare too (A/A)
#   benches/peers/pairs.sh old=/tmp/old/server:wechat_login new=$NEW:wechat_login   # builds (A/B)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
. "$ROOT/paths.sh"   # PROJECT, WORK, BIN, SERVER
SLICES=${SLICES:-30}; DUR=${DUR:-1}; WARM=${WARM:-2}; CONNS=${CONNS:-64}
SERVER_CPU=${SERVER_CPU:-1}; CLIENT_CPU=${CLIENT_CPU:-0}
[ "$SLICES" -ge 2 ] || { echo "SLICES must be at least 2" >&2; exit 1; }
[ $# -gt 0 ] || set -- wechat_login tower_sessions_moka jwt_moka
# Each is `<variant>` (this build's server) or `<label>=<server binary>:<variant>` (another
# build's; a wrapper script must `exec` the server, whose CPU time is read from its pid). `bare`
# among them is a second bare server, `bare_again`: an A/A check of the method.
declare -A BIN_OF VARIANT_OF
BIN_OF[bare]=$SERVER; VARIANT_OF[bare]=bare
VARIANTS=()
for spec in "$@"; do
  case $spec in
    bare) label=bare_again; bin=$SERVER; variant=bare ;;
    *=*:*) label=${spec%%=*}; rest=${spec#*=}; bin=${rest%%:*}; variant=${rest#*:} ;;
    *=*) echo "$spec: expected <label>=<server binary>:<variant>" >&2; exit 1 ;;
    *) label=$spec; bin=$SERVER; variant=$spec ;;
  esac
  [ -z "${BIN_OF[$label]+set}" ] || { echo "$label: given twice" >&2; exit 1; }
  BIN_OF[$label]=$bin; VARIANT_OF[$label]=$variant; VARIANTS+=("$label")
done
for label in bare "${VARIANTS[@]}"; do
  [ -x "${BIN_OF[$label]}" ] || { echo "$label: ${BIN_OF[$label]} is not an executable (build first: PROJECT=\$PWD ROUNDS=0 benches/peers/run.sh)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
OUT=$WORK/pairs/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
"$BIN/gen" "$OUT" >/dev/null
RAW=$OUT/raw.tsv
printf 'slice\tvariant\trps\tp99_us\trequests\terrors\tsrv_cpu_ns\n' >"$RAW"
for label in bare "${VARIANTS[@]}"; do printf '# %s = %s %s\n' "$label" "${BIN_OF[$label]}" "${VARIANT_OF[$label]}"; done >"$OUT/variants.txt"

declare -A PID PORT HF
cleanup() { for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
port=${BASE_PORT:-18800}
for v in bare "${VARIANTS[@]}"; do
  port=$((port + 1)); PORT[$v]=$port
  case ${VARIANT_OF[$v]} in tower_sessions*) HF[$v]=$OUT/cookie.txt;; wechat_login*) HF[$v]=$OUT/wechat-$v.txt;; *) HF[$v]=$OUT/bearer.txt;; esac
  TOKENS_OUT=$OUT/wechat-$v.txt taskset -c "$SERVER_CPU" "${BIN_OF[$v]}" "${VARIANT_OF[$v]}" "$port" 2>"$OUT/server-$v.log" &
  PID[$v]=$!
  for _ in $(seq 1 400); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "$(head -1 "${HF[$v]}")" "http://127.0.0.1:$port/me" || true)
  case ${VARIANT_OF[$v]} in *_forged) want=401;; *) want=200;; esac
  [ "$code" = "$want" ] || { echo "probe $v: HTTP $code" >&2; cat "$OUT/server-$v.log" >&2; exit 1; }
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${WARM}s" -s "$ROOT/cycle.lua" "http://127.0.0.1:$port/me" -- "${HF[$v]}" >/dev/null
done

# The server's CPU time, all its threads, in nanoseconds.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ns += $1} END {print ns}'; }
n=0
slice() {
  local v=$1 t0 t1 line
  n=$((n + 1))
  t0=$(cpu_ns "${PID[$v]}")
  line=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -s "$ROOT/cycle.lua" \
    "http://127.0.0.1:${PORT[$v]}/me" -- "${HF[$v]}" | grep '^RESULT' || true)
  t1=$(cpu_ns "${PID[$v]}")
  [ -n "$line" ] || { echo "slice $n ($v): no result from wrk" >&2; exit 1; }
  get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $line"; }
  # Errors: socket errors, and answers other than 2xx, except for a forged variant, every
  # answer of which is refused (its probe checked for 401; wrk does not tell statuses apart).
  local status; status=$(get err_status); case ${VARIANT_OF[$v]} in *_forged) status=0;; esac
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$v" "$(get rps)" "$(get p99_us)" "$(get requests)" \
    $(($(get err_connect) + $(get err_read) + $(get err_write) + $(get err_timeout) + status)) \
    $((t1 - t0)) >>"$RAW"
}
echo "# $(date -Is) slices=$SLICES dur=${DUR}s conns=$CONNS server_cpu=$SERVER_CPU client_cpu=$CLIENT_CPU; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" | tee "$OUT/header.txt"
slice bare
for _ in $(seq 1 "$SLICES"); do
  for v in "${VARIANTS[@]}"; do slice "$v"; slice bare; done
done

python3 - "$RAW" "${VARIANTS[@]}" <<'PY' | tee "$OUT/summary.txt"
import csv, statistics as st, sys
raw, variants = sys.argv[1], sys.argv[2:]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
us = lambda r: int(r["srv_cpu_ns"]) / 1e3 / max(int(r["requests"]), 1)
bare = [r for r in rows if r["variant"] == "bare"]
print(f"{'variant':<22}{'x bare':>8}{'IQR':>16}{'p99 x':>8}{'srv us/req':>12}{'+us':>8}{'slices':>8}{'errors':>8}")
print(f"{'bare':<22}{1:>8.3f}{'':>16}{1:>8.2f}{st.median(us(r) for r in bare):>12.2f}{0:>+8.2f}{len(bare):>8}"
      f"{sum(int(r['errors']) for r in bare):>8}")
for v in variants:
    ratio, p99, plus, mine = [], [], [], []
    for i, r in enumerate(rows):
        if r["variant"] != v:
            continue
        # the bare slices either side (the walk starts and ends with bare, and alternates)
        b = (rows[i - 1], rows[i + 1])
        assert all(x["variant"] == "bare" for x in b), f"slice {r['slice']}: not between bare slices"
        ratio.append(float(r["rps"]) / st.mean(float(x["rps"]) for x in b))
        p99.append(float(r["p99_us"]) / st.mean(float(x["p99_us"]) for x in b))
        plus.append(us(r) - st.mean(us(x) for x in b))
        mine.append(r)
    q = st.quantiles(ratio, n=4)
    print(f"{v:<22}{st.median(ratio):>8.3f}{f'{q[0]:.3f}..{q[2]:.3f}':>16}{st.median(p99):>8.2f}"
          f"{st.median(us(r) for r in mine):>12.2f}{st.median(plus):>+8.2f}{len(mine):>8}"
          f"{sum(int(r['errors']) for r in mine):>8}")
print("\nx bare / p99 x / +us: medians over the variant's slices, each against the mean of the bare")
print("slices either side of it; IQR: the middle half of those ratios. srv us/req: server CPU a request.")
PY
echo "# raw: $RAW"

#!/usr/bin/env bash
# Side-by-side HTTP benchmark of auth-middleware peers (axum 0.8).
# Server pinned to CPU $SERVER_CPU, wrk pinned to CPU $CLIENT_CPU; variants interleaved per round
# so drift hits all of them equally; ratios are vs `bare` measured in the same run.
#
#   ./run.sh                          # 3 rounds x 10 s x 64 conns, all variants
#   ROUNDS=5 DUR=20 CONNS=128 ./run.sh
#   VARIANTS="bare jwt" ./run.sh
#   USERS=10 ./run.sh                 # cycle over 10 users instead of 1,000 (per-user data stays cached)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
# This copy lives in the project (benches/peers): the project is two levels up.
PROJECT=${PROJECT:-$(cd ../.. && pwd)}

ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10}
WARM=${WARM:-2}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}            # wrk threads (all on the client core)
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
BASE_PORT=${BASE_PORT:-18080}   # keep below ip_local_port_range (32768+): wrk's TIME_WAIT client ports can otherwise squat on it
VARIANTS=${VARIANTS:-"bare jwt jwt_awslc jwt_moka jwt_authorizer tower_sessions tower_sessions_moka"}
FEATURES=${FEATURES-awslc}       # "awslc" also builds jsonwebtoken's aws-lc-rs backend (variant jwt_awslc); set FEATURES= to skip
# PROJECT=<the project's checkout> adds the variant wechat_login (the project's own layer). Then the
# harness is copied to $PROJECT/target/peers-bench (this folder may be read-only) and builds there.
WORK=$ROOT
if [ -n "${PROJECT:-}" ]; then
  PROJECT=$(cd "$PROJECT" && pwd)
  WORK=$PROJECT/target/peers-bench
  mkdir -p "$WORK/peers"
  cp -r "$ROOT/peers/Cargo.toml" "$ROOT/peers/Cargo.lock" "$ROOT/peers/src" "$WORK/peers/"
  chmod -R u+w "$WORK/peers"
  ln -sfn "$PROJECT" "$WORK/project"
  FEATURES="${FEATURES:+$FEATURES,}project"
  VARIANTS="$VARIANTS ${WECHAT_VARIANTS:-wechat_login wechat_login_forged wechat_login_anon}"
fi

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }

# ---- build (lean: no LTO, default codegen-units)
export CARGO_PROFILE_RELEASE_LTO=false
[[ "$FEATURES" == *awslc* ]] || VARIANTS=$(tr ' ' '\n' <<<"$VARIANTS" | grep -v awslc | xargs)
if ! (cd "$WORK/peers" && cargo build --release --bins ${FEATURES:+--features "$FEATURES"}) >"$WORK/build.log" 2>&1; then
  cat "$WORK/build.log" >&2; echo "cargo build failed" >&2; exit 1
fi
tail -1 "$WORK/build.log"
BIN=$WORK/peers/target/release
for b in server gen micro; do [ -x "$BIN/$b" ] || { echo "build failed: $BIN/$b missing" >&2; exit 1; }; done

OUT=$WORK/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
"$BIN/gen" "$OUT"                         # bearer.txt / cookie.txt: 1,000 distinct users each
RAW=$OUT/raw.tsv
printf 'round\tvariant\trps\tp50_us\tp99_us\tmean_us\trequests\terr_status\terr_other\tserver_cpu_pct\tclient_cpu_pct\tsrv_cpu_s\n' >"$RAW"

CLK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hdrfile() { case $1 in tower_sessions*) echo "$OUT/cookie.txt";; wechat_login*) echo "$OUT/wechat.txt";; *) echo "$OUT/bearer.txt";; esac; }
# What a request of each variant must get: the forged tokens are refused.
expected() { case $1 in *_forged) echo 401;; *) echo 200;; esac; }

SPID=""
cleanup() { [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null; true; }
trap cleanup EXIT

echo "# $(date -Is) rounds=$ROUNDS dur=${DUR}s warm=${WARM}s conns=$CONNS wrk_threads=$THREADS server_cpu=$SERVER_CPU client_cpu=$CLIENT_CPU"
echo "# $(wrk --version 2>&1 | head -1); cargo features: ${FEATURES:-none}; $(nproc) cpus; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for r in $(seq 1 "$ROUNDS"); do
  i=0
  for v in $VARIANTS; do
    port=$((BASE_PORT + i)); i=$((i + 1))
    url="http://127.0.0.1:$port/me"
    hf=$(hdrfile "$v")
    rm -f "$OUT/wechat.txt"
    TOKENS_OUT="$OUT/wechat.txt" taskset -c "$SERVER_CPU" "$BIN/server" "$v" "$port" 2>"$OUT/server-$v-r$r.log" &
    SPID=$!
    for _ in $(seq 1 200); do
      curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break; sleep 0.05
    done
    # correctness probe: a valid credential must give 200, a missing one must not (except bare)
    code=$(curl -s -o "$OUT/probe-$v.json" -w '%{http_code}' -H "$(head -1 "$hf")" "$url" || true)
    [ "$code" = "$(expected "$v")" ] || { echo "probe $v: HTTP $code" >&2; cat "$OUT/server-$v-r$r.log" >&2; exit 1; }
    if [ "$r" = 1 ]; then
      nocred=$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)
      echo "# probe $v: valid->200 $(cat "$OUT/probe-$v.json")  no-credential->$nocred"
    fi
    # USERS=n: only the first n users' requests (their data stays in the caches), for comparison
    if [ -n "${USERS:-}" ]; then head -n "$USERS" "$hf" >"$OUT/users-$v.txt"; hf=$OUT/users-$v.txt; fi
    # warm-up (discarded)
    taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNS" -d"${WARM}s" -s "$ROOT/cycle.lua" "$url" -- "$hf" >/dev/null
    # measured run; bash `time` gives the client's CPU, /proc gives the server's
    t0=$(cpu_ticks "$SPID")
    TIMEFORMAT='%R %U %S'
    { time taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --latency -s "$ROOT/cycle.lua" "$url" -- "$hf" \
        >"$OUT/wrk-$v-r$r.txt" ; } 2>"$OUT/time-$v-r$r.txt"
    t1=$(cpu_ticks "$SPID")
    kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=""
    line=$(grep '^RESULT' "$OUT/wrk-$v-r$r.txt")
    get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $line"; }
    read -r real usr sys <"$OUT/time-$v-r$r.txt"
    scpu=$(awk -v a="$t0" -v b="$t1" -v c="$CLK" -v d="$(get duration_s)" 'BEGIN{printf "%.0f", (b-a)/c/d*100}')
    scpus=$(awk -v a="$t0" -v b="$t1" -v c="$CLK" 'BEGIN{printf "%.2f", (b-a)/c}')
    ccpu=$(awk -v r="$real" -v u="$usr" -v s="$sys" 'BEGIN{printf "%.0f", (u+s)/r*100}')
    eo=$(( $(get err_connect) + $(get err_read) + $(get err_write) + $(get err_timeout) ))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$v" "$(get rps)" "$(get p50_us)" "$(get p99_us)" \
      "$(get mean_us)" "$(get requests)" "$(get err_status)" "$eo" "$scpu" "$ccpu" "$scpus" | tee -a "$RAW"
  done
done

echo
python3 "$ROOT/summarize.py" "$RAW" "${MIN_CPU:-90}" | tee "$OUT/summary.txt"
echo "# raw results and wrk output: $OUT"

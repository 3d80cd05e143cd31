#!/usr/bin/env python3
"""Summarize run.sh raw.tsv: medians over rounds, ratios vs `bare` from the same round.
A round is flagged (excluded) when the server core was not saturated (srv cpu < MIN_CPU %),
which on this shared KVM box means the VM stalled and rps says nothing about the middleware."""
import csv, sys, statistics as st
MIN_CPU = float(sys.argv[2]) if len(sys.argv) > 2 else 90.0
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
for r in rows:
    # A *_forged variant sends forged tokens: every answer must be non-2xx (401), none 2xx.
    refused = int(r["err_status"]) == int(r["requests"]) if r["variant"].endswith("_forged") else int(r["err_status"]) == 0
    r["ok"] = float(r["server_cpu_pct"]) >= MIN_CPU and refused and int(r["err_other"]) == 0
    r["rps"] = float(r["rps"])
    r["us_req"] = float(r["srv_cpu_s"]) / int(r["requests"]) * 1e6 if "srv_cpu_s" in r else float("nan")
variants = list(dict.fromkeys(r["variant"] for r in rows))
bare = {r["round"]: r for r in rows if r["variant"] == "bare" and r["ok"]}
bare_us = st.median([r["us_req"] for r in bare.values()]) if bare else float("nan")
hdr = f"{'variant':<20}{'rps(med)':>10}{'min..max':>17}{'p50 ms':>8}{'p99 ms':>8}{'x bare':>8}{'srv us/req':>11}{'+us vs bare':>12}{'srv cpu':>8}{'cli cpu':>8}{'rounds':>8}"
print(hdr); print("-" * len(hdr))
for v in variants:
    rs = [r for r in rows if r["variant"] == v]
    ok = [r for r in rs if r["ok"]] or rs
    rps = [r["rps"] for r in ok]
    p50 = st.median(float(r["p50_us"]) for r in ok) / 1000
    p99 = st.median(float(r["p99_us"]) for r in ok) / 1000
    ratios = [r["rps"] / bare[r["round"]]["rps"] for r in ok if r["round"] in bare]
    ratio = st.median(ratios) if ratios else float("nan")
    us = st.median(r["us_req"] for r in ok)
    scpu = st.mean(float(r["server_cpu_pct"]) for r in ok)
    ccpu = st.mean(float(r["client_cpu_pct"]) for r in ok)
    print(f"{v:<20}{st.median(rps):>10,.0f}{f'{min(rps)/1e3:.1f}k..{max(rps)/1e3:.1f}k':>17}{p50:>8.3f}{p99:>8.3f}{ratio:>8.3f}"
          f"{us:>11.2f}{us - bare_us:>+12.2f}{scpu:>7.0f}%{ccpu:>7.0f}%{f'{len(ok)}/{len(rs)}':>8}")
bad = [f"r{r['round']}:{r['variant']}(srv {r['server_cpu_pct']}%, {r['rps']:,.0f} rps)" for r in rows if not r["ok"]]
print("\nrps/p50/p99 = median over valid rounds (wrk percentiles); x bare = median of per-round rps ratios vs bare of the same round;")
print("srv us/req = server CPU time per request (user+sys of the server process / requests) -- most stable metric on this VM;")
print("+us vs bare = middleware cost per request over bare. socket errors: all valid rounds had 0; non-2xx: 0, except *_forged where every answer was 401.")
if bad: print("excluded rounds (server core not saturated => VM stall / load-gen starvation): " + ", ".join(bad))

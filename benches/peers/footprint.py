#!/usr/bin/env python3
"""Code footprint per request: how many distinct 64-byte lines of machine code a request runs.

Reads callgrind profiles written with instruction-level positions (`DUMP_INSTR=1
callgrind.sh ...`) and counts the lines whose instructions ran at least N times in all (about
once a request, for the N requests measured). Each such line is fetched into the instruction
cache on every request when the kernel's own code has evicted it since the last one.

    WORK=... DUMP_INSTR=1 N=2000 benches/peers/callgrind.sh bare extension_layer wechat_login
    python3 benches/peers/footprint.py 2000 $WORK/callgrind/cg.{bare,extension_layer,wechat_login}.out.1
"""
import collections
import sys


def self_cost_by_address(path):
    """Instructions executed at each address (self cost; call lines' inclusive costs skipped)."""
    positions, current, after_call = 1, [], False
    costs = collections.Counter()
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("positions:"):
                positions = len(line.split()) - 1
                current = [0] * positions
                continue
            if not line or not line[0] in "0123456789+-*":
                after_call = after_call or line.startswith("calls=")
                continue
            parts = line.split()
            for i in range(positions):
                p = parts[i]
                if p == "*":
                    continue
                if p[0] in "+-":
                    current[i] += int(p[1:], 0) * (1 if p[0] == "+" else -1)
                else:
                    current[i] = int(p, 0)
            if after_call:
                after_call = False
                continue
            if len(parts) > positions:
                costs[current[0]] += int(parts[positions])
    return costs


def main():
    requests = int(sys.argv[1])
    for path in sys.argv[2:]:
        costs = self_cost_by_address(path)
        lines = collections.Counter()
        for address, n in costs.items():
            lines[address >> 6] += n
        hot = sum(1 for n in lines.values() if n >= requests)
        print(f"{path.rsplit('/', 1)[-1]}: {sum(costs.values()) / requests:,.0f} instructions, "
              f"{hot:,} code lines a request ({hot * 64 / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()

"""The CPU heap policy side by side (NOTES row 12): `nasdun bench` under NASDUN_CPU_HEAP=system and
=retain, alternated (system, retain, system, retain) in one run so machine drift hits both alike.

    PYTHONPATH=. python benchmarks/heap_ab.py --P 16,64 --seconds 4

Extra arguments go to `nasdun bench`. Needs torch only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROUNDS = 2


def bench(policy: str, args: list[str]) -> dict:
    env = {**os.environ, "NASDUN_CPU_HEAP": policy}
    cmd = [sys.executable, "-m", "nasdun", "bench", "--json", *args]
    return json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)


def main() -> None:
    args = sys.argv[1:]
    runs: dict[str, list[dict]] = {"system": [], "retain": []}
    for r in range(ROUNDS):
        for policy in runs:
            res = bench(policy, args)
            runs[policy].append(res)
            print(
                f"round {r + 1} {policy:6s} single {res['single_steps_per_s']:7.1f}  packing {res['packing_steps_per_s']:7.1f}  "
                + "  ".join(f"P={p} {v:7.1f} (x{v / res['single_steps_per_s']:.2f})" for p, v in res["batched"].items()),
                flush=True,
            )
    print(f"\n{'policy':8s} {'single':>8s} {'packing':>8s} " + " ".join(f"{'P=' + p:>14s}" for p in runs["system"][0]["batched"]))
    for policy, rs in runs.items():
        single = sum(r["single_steps_per_s"] for r in rs) / len(rs)
        pack = sum(r["packing_steps_per_s"] for r in rs) / len(rs)
        cells = []
        for p in rs[0]["batched"]:
            v = sum(r["batched"][p] for r in rs) / len(rs)
            cells.append(f"{v:7.1f} (x{v / single:.2f})")
        print(f"{policy:8s} {single:8.1f} {pack:8.1f} " + " ".join(f"{c:>14s}" for c in cells))
    print(f"device {runs['retain'][0]['device']}; heap: {runs['retain'][0]['cpu_heap']}")


if __name__ == "__main__":
    main()

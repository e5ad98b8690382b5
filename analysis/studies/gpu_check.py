"""GPU readiness: check and measure everything a GPU machine can tell us, in one time-boxed run.

    benchmarks/gpu_check.sh OUTDIR [--minutes N] [--device cuda|cpu] [--quick]

Runs from a copy of the repository with the machine's own python3 (torch, numpy, pandas, pyyaml,
pytest; no Ray, no Optuna, nothing installed). Steps, in order, each in its own subprocess with
its own time box; a failure or a time-out is recorded and the next step runs:

a. ``env``    torch / CUDA / device, measured fp32, TF32 and bf16 matmul TFLOP/s;
b. ``tests``  ``pytest tests/test_devices.py`` (the CUDA cases, marked ``gpu``, and the same tests on the CPU);
c. ``bench``  the trainer at paper size (m=250, n=500, K=16, batch 128, 10,240 validation samples):
              single, packing (8 processes), batched P in {1, 16, 64, 128, 256}, eager and
              compiled, fp32 and TF32; every rate is one JSON line of ``bench.jsonl`` as it is measured;
d. ``train``  lista, lfista, dense, 2no, 3no, meng2021 at K = 16 with the `paper` constants on
              `noiseless` for N minutes (default 4; less if the whole check would pass 8 minutes);
e. ``summary.json`` and ``summary.md``: every figure the performance and fidelity goals need.

OUTDIR gets at most six files: summary.json, summary.md, check.log, pytest.txt, bench.jsonl,
train_results.csv. ``--device cpu --quick`` is the dress rehearsal: the same steps at a tiny
size, in about a minute (CI runs it with Ray and Optuna unimportable).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NETWORKS = "hand"  # every registered hand design (search_spaces.presets)
# The fidelity goal: each hand design within 1.5 dB under `paper` of its figure in the design-space paper's
# figure (the public notebook's: search_spaces.presets.paper_figure; 2NO/3NO have none there).
GOAL_STEPS_PER_S = 10_000
GOAL_OVER_PACKING = 30.0
GOAL_VAL_SHARE = 0.10


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_check.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output directory (new or empty)")
    p.add_argument("--minutes", type=float, default=None, help="time box of the paper-size training (default 4; --quick: 0.02)")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes: the CPU dress rehearsal")
    p.add_argument("--total-minutes", type=float, default=8.0, help="the whole check's budget; the training step gets what is left")
    return p.parse_args(argv)


class Log:
    """Everything the steps print, in check.log, and a short line per step on stdout."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, text: str) -> None:
        with self.path.open("a") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def say(self, text: str) -> None:
        print(f"gpu_check: {text}", flush=True)
        self.write(f"== {text}")


def run_step(log: Log, name: str, cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run ``cmd`` in the repository root with ``timeout``; its output goes to check.log."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]), "PYTHONUNBUFFERED": "1"}
    log.say(f"{name}: {' '.join(cmd[1:])} (time box {timeout:.0f}s)")
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(timeout, 1.0))
        out, code, status = proc.stdout + proc.stderr, proc.returncode, "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired as err:
        out = _text(err.stdout) + _text(err.stderr)
        code, status = None, "timeout"
    seconds = time.perf_counter() - start
    log.write(out)
    tail = [line for line in out.strip().splitlines() if line.strip()][-1:] or [""]
    log.say(f"{name}: {status} in {seconds:.0f}s" + (f" (exit {code}: {tail[0][:200]})" if status == "failed" else ""))
    return {"status": status, "seconds": round(seconds, 1), "exit": code, "output": out}


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


# -- the steps' own code, run in subprocesses of this file ----------------------------------------
def _env_step(device: str, seconds: float) -> None:
    import numpy
    import torch

    from nasdun.runs.bench import matmul_rate
    from trainers.options import RunOptions

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        info.update(device=props.name, capability=f"{props.major}.{props.minor}", memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count)  # fmt: skip
    else:
        info.update(device=f"cpu ({os.cpu_count()} cores)")
    print(json.dumps(info), flush=True)
    for precision in ("fp32", "tf32", "bf16"):
        info[f"matmul_tflops_{precision}"] = matmul_rate(RunOptions(device, precision), seconds)
        print(json.dumps({f"matmul_tflops_{precision}": info[f"matmul_tflops_{precision}"]}), flush=True)
    print("ENV " + json.dumps(info), flush=True)


def _bench_step(options: Any, quick: bool, sizes: list[int], procs: int, seconds: float, jsonl: str) -> None:
    """Each rate is appended to ``jsonl`` as soon as it is measured (a time-out keeps the finished ones)."""
    from nasdun.runs.bench import BenchSize, measure, packing, paper_size

    size = BenchSize(m=20, n=40, layers=3, batch=16, val=64) if quick else paper_size()
    precision, compiled = options.precision, options.compile

    def emit(kind: str, P: int, rate: float, val_share: float | None = None) -> None:
        rec = {"precision": precision, "compiled": compiled, "kind": kind, "P": P, "steps_per_s": rate, "val_share": val_share,
               "size": size.__dict__, "gflop_per_step": size.flops_per_step() / 1e9}  # fmt: skip
        with open(jsonl, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)

    if procs > 0:
        emit("packing", procs, packing(size, options, procs, seconds))
    for P in sizes:
        r = measure(size, P, options, seconds)
        emit("batched", P, r["steps_per_s"], r["val_share"])


def _protocol_step(device: str, quick: bool, protocol: str, P: int, seconds: float, jsonl: str) -> None:
    """:func:`nasdun.runs.bench.measure_protocol` at paper size (tiny with ``quick``), appended to ``jsonl``."""
    from nasdun.runs.bench import BenchSize, measure_protocol, paper_size
    from trainers.options import RunOptions

    size = BenchSize(m=20, n=40, layers=3, batch=16, val=64) if quick else paper_size()
    rec = {"kind": "protocol", **measure_protocol(size, P, protocol, RunOptions(device), seconds)}
    with open(jsonl, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), flush=True)


# -- the driver ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    if a.minutes is None:
        a.minutes = 0.02 if a.quick else 4.0
    out = Path(a.out).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"gpu_check: error: {out} exists and is not an empty directory; expected a new or empty OUTDIR", file=sys.stderr)
        return 2
    if a.minutes <= 0 or a.total_minutes <= 0:
        print(f"gpu_check: error: --minutes {a.minutes} / --total-minutes {a.total_minutes}; expected numbers > 0", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "check.log")
    start = time.perf_counter()
    deadline = start + 60 * a.total_minutes
    py = sys.executable
    me = str(Path(__file__).resolve())
    steps: dict[str, dict[str, Any]] = {}
    summary: dict[str, Any] = {"device_requested": a.device, "quick": a.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}

    def box(seconds: float) -> float:  # a step's time box, never past the whole check's deadline
        return min(seconds, max(deadline - time.perf_counter(), 1.0))

    # a. environment
    r = run_step(log, "env", [py, me, "_env", a.device, "0.2" if a.quick else "1"], box(60))
    steps["env"] = r
    env_line = [line for line in r["output"].splitlines() if line.startswith("ENV ")]
    summary["env"] = json.loads(env_line[-1][4:]) if env_line else {}
    if not env_line:  # keep the partial measurements
        for line in r["output"].splitlines():
            if line.startswith("{"):
                summary["env"].update(json.loads(line))

    # b. device tests
    # the dress rehearsal runs one device test (the suite runs the file whole): the step, not the tests, is rehearsed
    quick_k = ["-k", "lives_there"] if a.quick else []
    r = run_step(log, "tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *quick_k, "tests/test_devices.py"], box(150))
    steps["tests"] = r
    (out / "pytest.txt").write_text(r["output"])
    summary["tests"] = _pytest_counts(r["output"])

    # c. throughput
    jsonl = out / "bench.jsonl"
    jsonl.touch()
    sizes = [1, 4] if a.quick else [1, 16, 64, 128, 256]
    compiled_sizes = [4] if a.quick else [16, 128]
    secs = "0.2" if a.quick else "2"
    procs = 1 if a.quick else 8
    plan = [
        ("bench_fp32", "fp32", False, sizes, procs, 90),
        ("bench_tf32", "tf32", False, sizes, 0, 45),
        ("bench_fp32_compiled", "fp32", True, compiled_sizes, 0, 60),
        ("bench_tf32_compiled", "tf32", True, compiled_sizes, 0, 45),
    ]
    if a.quick:
        plan = plan[:2] + plan[2:3]  # one compiled measurement is enough to rehearse the path
    for name, precision, compiled, ps, pr, limit in plan:
        cmd = [py, me, "_bench", a.device, str(int(a.quick)), precision, str(int(compiled)), ",".join(map(str, ps)), str(pr), secs, str(jsonl)]
        steps[name] = run_step(log, name, cmd, box(limit))
    # what `final` really runs at this size (every layer's stages, its end-to-end pass, validation, in its proportions)
    cmd = [py, me, "_protocol", a.device, str(int(a.quick)), "final", "4" if a.quick else "128", "0.5" if a.quick else "20", str(jsonl)]
    steps["bench_final_protocol"] = run_step(log, "bench_final_protocol", cmd, box(60))
    summary["bench"] = _bench_summary(jsonl)
    # the wide LWA pre-mix against one kernel per origin, and W_x's gradient as one matmul against one per layer, each side
    # by side on the device (both off by default: no faster on CPU)
    for flag, limit in (("wide_mix", 90), ("tied_grads", 60)):
        ab = [py, str(ROOT / "benchmarks" / "trainer_ab.py"), flag, "3" if a.quick else "16", "1", "--random", "4" if a.quick else "16",
              "--device", a.device, *(["--steps", "2", "--reps", "1"] if a.quick else [])]  # fmt: skip
        steps[f"ab_{flag}"] = run_step(log, f"ab_{flag}", ab, box(limit))
        summary[flag] = [line for line in steps[f"ab_{flag}"]["output"].splitlines() if line.startswith(f"{flag}:")]
    # each stage's step as one CUDA graph against eager launches (a CUDA device only: on a CPU there is nothing to replay)
    if a.device.startswith("cuda"):
        ab = [py, str(ROOT / "benchmarks" / "trainer_ab.py"), "cuda_graphs", "3" if a.quick else "16", "0", "1", "--random",
              "4" if a.quick else "16", "--device", a.device, *(["--steps", "4", "--reps", "1"] if a.quick else ["--steps", "40"])]  # fmt: skip
        steps["ab_cuda_graphs"] = run_step(log, "ab_cuda_graphs", ab, box(90))
        summary["cuda_graphs"] = [line for line in steps["ab_cuda_graphs"]["output"].splitlines() if line.startswith("cuda_graphs:")]

    # d. time-boxed training with the paper's constants
    left_min = (deadline - time.perf_counter() - 45) / 60  # keep ~45 s for the final evaluation and the summary
    minutes = max(0.05, min(a.minutes, left_min))
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_train_"))
    train_args = (
        ["--setting", "small", "--layers", "3", "--protocol", "smoke"]
        if a.quick
        else ["--setting", "noiseless", "--layers", "16", "--protocol", "paper"]
    )
    cmd = [py, "-m", "nasdun.interfaces.cli", "train", "--arch", NETWORKS, *train_args, "--minutes", f"{minutes:.3f}", "--device", a.device,
           "--out", str(tmp / "train")]  # fmt: skip
    steps["train"] = run_step(log, "train", cmd, box(60 * minutes + 150))
    summary["train"] = {**_train_summary(tmp / "train", minutes, out), "protocol": train_args[5], "setting": train_args[1]}
    shutil.rmtree(tmp, ignore_errors=True)

    # e. summary
    summary["steps"] = {k: {kk: v for kk, v in s.items() if kk != "output"} for k, s in steps.items()}
    summary["wall_s"] = round(time.perf_counter() - start, 1)
    summary["goals"] = _goals(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    (out / "summary.md").write_text(markdown(summary))
    log.say(f"done in {summary['wall_s']:.0f}s; {out / 'summary.md'}")
    print((out / "summary.md").read_text())
    return 0 if all(s["status"] == "ok" for s in steps.values()) else 1


def _pytest_counts(output: str) -> dict[str, int]:
    counts = {k: 0 for k in ("passed", "failed", "skipped", "error")}
    lines = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|skipped|errors?)\b", line)]
    for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", lines[-1] if lines else ""):
        counts["error" if word.startswith("error") else word] += int(n)
    return counts


def _bench_summary(jsonl: Path) -> dict[str, Any]:
    """``{precision: {single, packing, batched: {P: rate}, compiled: {P: rate}, val_share: {P: share}}}``."""
    res: dict[str, Any] = {}
    for line in jsonl.read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "protocol":
            res.setdefault("protocol", {})[rec["protocol"]] = rec
            continue
        d = res.setdefault(rec["precision"], {"batched": {}, "compiled": {}, "val_share": {}})
        res["size"], res["gflop_per_step"] = rec["size"], rec["gflop_per_step"]
        if rec["kind"] == "packing":
            d["packing"], d["packing_procs"] = rec["steps_per_s"], rec["P"]
        elif rec["compiled"]:
            d["compiled"][str(rec["P"])] = rec["steps_per_s"]
        else:
            d["batched"][str(rec["P"])] = rec["steps_per_s"]
            d["val_share"][str(rec["P"])] = rec["val_share"]
            if rec["P"] == 1:
                d["single"] = rec["steps_per_s"]
    return res


def _train_summary(run: Path, minutes: float, out: Path) -> dict[str, Any]:
    if not (run / "results.csv").is_file():
        return {"minutes": minutes, "networks": []}
    import pandas as pd

    from search_spaces.presets import paper_figure

    shutil.copy(run / "results.csv", out / "train_results.csv")
    df = pd.read_csv(run / "results.csv", keep_default_na=False, na_values=[""])
    meta = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    wall = float(meta.get("wall_s", math.nan))
    nets = []
    for rec in df.to_dict("records"):
        target = paper_figure(str(rec["name"]))
        nets.append({
            "name": rec["name"], "status": rec["status"], "layer_reached": int(rec.get("rung_layer") or rec["layers"]), "layers": int(rec["layers"]),
            "iterations": int(rec["iterations"]), "val_nmse_db": rec["val_nmse_db"], "val_nmse_db_mean": rec["val_nmse_db_mean"],
            "test_nmse_db": rec["test_nmse_db"], "test_nmse_db_mean": rec["test_nmse_db_mean"], "paper_test_nmse_db_mean": target,
            "gap_to_paper_db": (rec["test_nmse_db_mean"] - target) if target is not None else None,
        })  # fmt: skip
    steps = float(df["iterations"].sum())
    return {
        "minutes": minutes,
        "wall_s": wall,
        "candidate_steps": steps,
        "candidate_steps_per_s": steps / wall if wall else math.nan,
        "networks": nets,
    }


def _goals(s: dict[str, Any]) -> dict[str, Any]:
    b = s.get("bench", {})
    fp = b.get("fp32", {})
    eager = {int(P): v for P, v in fp.get("batched", {}).items()}
    comp = {int(P): v for P, v in fp.get("compiled", {}).items()}
    best_P, best = max(eager.items(), key=lambda kv: kv[1], default=(None, math.nan))
    best_any = max([*eager.values(), *comp.values()], default=math.nan)
    packing = fp.get("packing", math.nan)
    share = fp.get("val_share", {}).get(str(best_P), math.nan) if best_P else math.nan
    tf = b.get("tf32", {}).get("batched", {})
    return {
        "best_batched_fp32_steps_per_s": best, "best_P": best_P, "best_fp32_any_steps_per_s": best_any,
        "goal_10000_steps_per_s": bool(best_any >= GOAL_STEPS_PER_S) if best_any == best_any else None,
        "batched_over_packing": best / packing if packing == packing and packing else math.nan,
        "goal_30x_packing": bool(best / packing >= GOAL_OVER_PACKING) if packing == packing and packing else None,
        "val_share_at_best": share, "goal_val_share_10pct": bool(share <= GOAL_VAL_SHARE) if share == share else None,
        "compiled_over_eager": {P: comp[P] / eager[P] for P in comp if P in eager},
        "tf32_over_fp32": {P: float(v) / eager[int(P)] for P, v in tf.items() if int(P) in eager},
        "paper_fidelity_within_1_5db": {n["name"]: bool(abs(n["gap_to_paper_db"]) <= 1.5) for n in s.get("train", {}).get("networks", [])
                                        if n["gap_to_paper_db"] is not None and n["gap_to_paper_db"] == n["gap_to_paper_db"]},
    }  # fmt: skip


def _row(*cells: Any) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def _f(v: Any, fmt: str = ".1f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and v != v) else format(v, fmt)


def markdown(s: dict[str, Any]) -> str:
    env, g, b, t = s.get("env", {}), s["goals"], s.get("bench", {}), s.get("train", {})
    lines = [
        f"# GPU check: {env.get('device', s['device_requested'])} ({s['started']})",
        "",
        f"torch {env.get('torch')}, CUDA {env.get('cuda')}, Python {env.get('python')}; whole check {s['wall_s']:.0f} s"
        + (" (quick: tiny sizes, a dress rehearsal)" if s["quick"] else ""),
        "",
        "| step | status | seconds |",
        "|---|---|---|",
        *[f"| {k} | {v['status']} | {v['seconds']} |" for k, v in s["steps"].items()],
        "",
        f"Measured matmul TFLOP/s: fp32 {_f(env.get('matmul_tflops_fp32'), '.2f')}, TF32 {_f(env.get('matmul_tflops_tf32'), '.2f')}, "
        f"bf16 {_f(env.get('matmul_tflops_bf16'), '.2f')}. Device tests: {s.get('tests')}.",
        "",
        f"## Throughput (candidate-steps/s; size {b.get('size')}, {_f(b.get('gflop_per_step'), '.4g')} GFLOP per candidate-step)",
        "",
        "| precision | single | packing | "
        + " | ".join(f"P={P}" for P in sorted({int(P) for p in ("fp32", "tf32") for P in b.get(p, {}).get("batched", {})}))
        + " | compiled |",
    ]
    Ps = sorted({int(P) for p in ("fp32", "tf32") for P in b.get(p, {}).get("batched", {})})
    lines.append("|---|---|---|" + "---|" * len(Ps) + "---|")
    for p in ("fp32", "tf32"):
        d = b.get(p, {})
        comp = ", ".join(f"P={P}: {_f(v, '.0f')}" for P, v in d.get("compiled", {}).items()) or "n/a"
        cells = [_f(d.get("batched", {}).get(str(P)), ".0f") for P in Ps]
        lines.append(f"| {p} | {_f(d.get('single'), '.0f')} | {_f(d.get('packing'), '.0f')} | {' | '.join(cells)} | {comp} |")
    for rec in b.get("protocol", {}).values():  # what a whole protocol runs (nasdun bench --protocol)
        from nasdun.runs.bench import format_protocol

        lines += ["", "What a whole protocol runs (`nasdun bench --protocol`, fp32): " + format_protocol(rec).replace("\n", ";")]
    lines += ["", "The wide LWA pre-mix (`benchmarks/trainer_ab.py wide_mix`, on = wide): " + ("; ".join(s.get("wide_mix", [])) or "not measured")]
    lines += ["", "W_x's gradient as one matmul over the layers (`benchmarks/trainer_ab.py tied_grads`, on = one matmul): "
              + ("; ".join(s.get("tied_grads", [])) or "not measured")]  # fmt: skip
    lines += ["", "Each stage's step as one CUDA graph (`benchmarks/trainer_ab.py cuda_graphs`, on = graphs): "
              + ("; ".join(s.get("cuda_graphs", [])) or "not measured (no CUDA device)")]  # fmt: skip
    lines += [
        "",
        "## Goals",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
        _row(
            f">= {GOAL_STEPS_PER_S:,} candidate-steps/s (fp32, best batched P, eager or compiled)",
            _f(g["best_fp32_any_steps_per_s"], ".0f"),
            g["goal_10000_steps_per_s"],
        ),
        _row(
            f"batched >= {GOAL_OVER_PACKING:.0f}x the packing baseline (fp32, eager, P={g['best_P']})",
            _f(g["batched_over_packing"], ".2f") + "x",
            g["goal_30x_packing"],
        ),
        _row(
            f"validation + bookkeeping <= {GOAL_VAL_SHARE:.0%} of time at that P", _f(100 * g["val_share_at_best"]) + " %", g["goal_val_share_10pct"]
        ),
        _row("compiled / eager", ", ".join(f"P={P}: {v:.2f}x" for P, v in g["compiled_over_eager"].items()) or "n/a", ""),
        _row("TF32 / fp32", ", ".join(f"P={P}: {v:.2f}x" for P, v in g["tf32_over_fp32"].items()) or "n/a", ""),
        "",
        f"## Training with `{t.get('protocol')}` on `{t.get('setting')}`, time-boxed to {t.get('minutes', 0):.2f} min "
        f"({_f(t.get('candidate_steps_per_s'), '.0f')} candidate-steps/s over {_f(t.get('wall_s'), '.0f')} s)",
        "",
        "| network | status | layer reached | iterations | val nmse_db | test nmse_db | test nmse_db_mean | paper (notebook) | gap |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in t.get("networks", []):
        values = [_f(n[k], ".2f") for k in ("val_nmse_db", "test_nmse_db", "test_nmse_db_mean")]
        paper = [_f(n["paper_test_nmse_db_mean"]), _f(n["gap_to_paper_db"], "+.2f")]
        lines.append(_row(n["name"], n["status"], f"{n['layer_reached']} of {n['layers']}", n["iterations"], *values, *paper))
    lines += ["", "A network stopped by the time box is scored at the layer it reached (its row says where); the paper's figures are",
              "at convergence (about 200k+ iterations per network), so a gap here measures the time box, not the code.", ""]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_env":
        _env_step(sys.argv[2], float(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_protocol":
        dev, quick, proto, P, secs, path = sys.argv[2:8]
        _protocol_step(dev, quick == "1", proto, int(P), float(secs), path)
    elif len(sys.argv) > 1 and sys.argv[1] == "_bench":
        dev, quick, prec, comp, ps, procs, secs, path = sys.argv[2:10]
        from trainers.options import RunOptions

        _bench_step(RunOptions(dev, prec, comp == "1"), quick == "1", [int(v) for v in ps.split(",")], int(procs), float(secs), path)
    else:
        sys.exit(main())

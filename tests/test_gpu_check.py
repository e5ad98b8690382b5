"""The GPU-readiness script's CPU dress rehearsal, and the torch-only commands, with Ray and Optuna unimportable."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from search_spaces.presets import PRESETS, paper_figure

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def no_ray_no_optuna(tmp_path_factory) -> dict:
    """An environment where `import ray` and `import optuna` raise, as on the GPU machine; nasdun on PYTHONPATH only."""
    block = tmp_path_factory.mktemp("block")
    for name in ("ray", "optuna"):
        (block / name).mkdir()
        (block / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed on this machine (test)')\n")
    return {**os.environ, "PYTHONPATH": f"{block}{os.pathsep}{ROOT}", "PYTHON": sys.executable}


@pytest.mark.parametrize(
    "args",
    [
        ["presets"],
        ["settings"],
        ["protocols"],
        pytest.param(
            ["bench", "--m", "8", "--n", "16", "--layers", "2", "--batch", "8", "--val", "32", "--P", "2", "--procs", "0", "--seconds", "0.1"],
            marks=pytest.mark.slow,
        ),
    ],
    ids=["presets", "settings", "protocols", "bench"],
)
def test_torch_only_commands_run_without_ray_and_optuna(args, no_ray_no_optuna, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nasdun", *args], cwd=tmp_path, env=no_ray_no_optuna, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()
    probe = subprocess.run([sys.executable, "-c", "import ray"], env=no_ray_no_optuna, capture_output=True, text=True)
    assert probe.returncode != 0 and "not installed" in probe.stderr  # the block is real


@pytest.mark.slow
def test_gpu_check_dress_rehearsal_produces_every_figure(no_ray_no_optuna, tmp_path):
    out = tmp_path / "check"
    proc = subprocess.run([str(ROOT / "benchmarks" / "gpu_check.sh"), str(out), "--device", "cpu", "--quick"], env=no_ray_no_optuna,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["bench.jsonl", "check.log", "pytest.txt", "summary.json", "summary.md", "train_results.csv"]
    s = json.loads((out / "summary.json").read_text())
    assert {k: v["status"] for k, v in s["steps"].items()} == dict.fromkeys(
        ["env", "tests", "bench_fp32", "bench_tf32", "bench_fp32_compiled", "bench_final_protocol", "ab_wide_mix", "ab_tied_grads", "train"], "ok"
    )
    assert len(s["wide_mix"]) == 1 and s["wide_mix"][0].startswith("wide_mix: K=3, 4 networks, stage 1 of layer 3, cpu: on ")
    assert len(s["tied_grads"]) == 1 and s["tied_grads"][0].startswith("tied_grads: K=3, 4 networks, stage 1 of layer 3, cpu: on ")
    final = s["bench"]["protocol"]["final"]  # what `final` runs, in its proportions (nasdun bench --protocol)
    assert final["iterations_per_candidate"] == 3 * 500 + 2 * 500 + 15_000 and final["share"]["end-to-end pass"] > 0
    assert s["env"]["matmul_tflops_fp32"] > 0 and s["env"]["matmul_tflops_tf32"] > 0 and s["env"]["matmul_tflops_bf16"] > 0
    assert s["tests"]["passed"] >= 1 and s["tests"]["failed"] == 0 and s["tests"]["error"] == 0
    fp32, tf32 = s["bench"]["fp32"], s["bench"]["tf32"]
    assert fp32["single"] > 0 and fp32["packing"] > 0 and set(fp32["batched"]) == {"1", "4"} and set(fp32["compiled"]) == {"4"}
    assert set(tf32["batched"]) == {"1", "4"} and all(0 <= v < 1 for v in fp32["val_share"].values())
    g = s["goals"]
    assert g["batched_over_packing"] == pytest.approx(max(fp32["batched"].values()) / fp32["packing"])
    assert isinstance(g["goal_10000_steps_per_s"], bool) and isinstance(g["goal_30x_packing"], bool)
    nets = s["train"]["networks"]
    assert [n["name"] for n in nets] == PRESETS.names()  # every registered hand design
    for n in nets:
        assert 1 <= n["layer_reached"] <= 3 and n["iterations"] > 0 and n["test_nmse_db"] < 0
        assert n["status"] in ("ok", "stopped") and (n["status"] == "stopped" or n["layer_reached"] == 3)  # stopped: cut by the time box
        assert n["paper_test_nmse_db_mean"] == paper_figure(n["name"])  # the published figure its preset carries, or None
        assert n["gap_to_paper_db"] == (None if paper_figure(n["name"]) is None else pytest.approx(n["test_nmse_db_mean"] - paper_figure(n["name"])))
    assert [n["name"] for n in nets if n["paper_test_nmse_db_mean"] is not None] == ["lista", "lfista", "dense", "meng2021"]
    assert s["train"]["candidate_steps_per_s"] > 0
    md = (out / "summary.md").read_text()
    assert "The wide LWA pre-mix (`benchmarks/trainer_ab.py wide_mix`, on = wide): wide_mix: K=3" in md
    assert "W_x's gradient as one matmul over the layers (`benchmarks/trainer_ab.py tied_grads`, on = one matmul): tied_grads: K=3" in md
    assert "## Goals" in md and "| lista |" in md and "candidate-steps/s" in md and "protocol final, P=4: 17,500 iterations" in md


def test_gpu_check_refuses_a_non_empty_outdir(tmp_path):
    (tmp_path / "x").write_text("keep me")
    proc = subprocess.run([str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path), "--quick"], env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "not an empty directory" in proc.stderr and (tmp_path / "x").read_text() == "keep me"

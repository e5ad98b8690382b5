"""`nasdun bench --json`: the report's shape and internal consistency (no timing assertions)."""

import json

import pytest

from nasdun.bench import BenchSize
from nasdun.cli import main


def test_bench_json_has_every_field(capsys):
    code = main(["bench", "--m", "10", "--n", "20", "--layers", "3", "--batch", "16", "--val", "64", "--P", "2,3", "--procs", "1",
                 "--seconds", "0.2", "--json"])  # fmt: skip
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("device", "size", "single_steps_per_s", "packing_steps_per_s", "batched", "achieved_tflops", "matmul_tflops", "peak_memory_mb"):
        assert key in res, key
    assert set(res["batched"]) == {"2", "3"} and all(v > 0 for v in res["batched"].values())
    assert res["single_steps_per_s"] > 0 and res["packing_steps_per_s"] > 0
    assert res["gflop_per_step"] == pytest.approx(BenchSize(10, 20, 3, 16, 64).flops_per_step() / 1e9)
    assert res["cpu_heap"] != "not set"  # the CPU trainers applied the heap policy (NOTES row 12)


def test_flop_count_matches_the_issue_figure():
    # m=250, n=500, K=16, B=128: matmul FLOPs forward + backward (the issue's 3.15 GFLOP adds pointwise work)
    assert BenchSize(250, 500, 16, 128).flops_per_step() / 1e9 == pytest.approx(3.02, abs=0.01)


def test_bad_bench_inputs(capsys):
    assert main(["bench", "--P", "4,x"]) == 2
    assert "--P '4,x'" in capsys.readouterr().err

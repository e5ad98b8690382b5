"""`nasdun bench --json`: the report's shape and internal consistency (no timing assertions)."""

import json

import pytest

from nasdun.interfaces.cli import main
from nasdun.runs.bench import BenchSize
from trainers.options import RunOptions


@pytest.mark.slow
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


@pytest.mark.parametrize("layers", [4, 8])
def test_flop_count_agrees_with_torchs_own_count_of_a_training_step(layers):
    """The report's GFLOP/step (a closed formula) against torch's FlopCounterMode over a real training step of
    random genotypes: measured 0.94x the formula at K = 4 and 8 (the formula counts the LWA sums as matmuls and
    takes the backward as twice the forward); per candidate the same at P = 1 and P = 4."""
    from torch.utils.flop_counter import FlopCounterMode

    from nasdun.runs.bench import _trainer

    size = BenchSize(m=50, n=100, layers=layers, batch=32, val=64)
    for P in (1, 4):
        trainer = _trainer(size, P, RunOptions("cpu"))
        trainer.train_step()  # the first step may build what later steps reuse
        with FlopCounterMode(display=False) as counted:
            trainer.train_step()
        assert counted.get_total_flops() / P / size.flops_per_step() == pytest.approx(1.0, abs=0.15)


def test_bad_bench_inputs(capsys):
    assert main(["bench", "--P", "4,x"]) == 2
    assert "--P '4,x'" in capsys.readouterr().err


def test_bench_text_report_is_the_librarys_format_of_the_same_result(capsys):
    from nasdun.runs.bench import format_report

    args = ["bench", "--m", "8", "--n", "16", "--layers", "2", "--batch", "8", "--val", "32", "--P", "2", "--procs", "0", "--seconds", "0.1"]
    assert main([*args, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    text = format_report(
        {**res, "batched": {int(k): v for k, v in res["batched"].items()}, "val_share": {int(k): v for k, v in res["val_share"].items()}}
    )
    assert "batched P=2" in text and text.splitlines()[0].startswith(f"device {res['device']}") and text.endswith(f"CPU heap: {res['cpu_heap']}")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "batched P=2" in printed and "candidate-steps/s" in printed and "CPU heap:" in printed


def test_bench_of_a_protocol_weights_each_part_by_the_iterations_the_protocol_gives_it(capsys):
    """`nasdun bench --protocol`: what the protocol runs, not one stage: stage 0 (pruned: fewer operations per step), the
    later stages, the end-to-end pass of `final`, validation; the iterations are the protocol's caps exactly."""
    from nasdun.runs.bench import BenchSize, measure_protocol

    size = BenchSize(m=20, n=40, layers=3, batch=32, val=256)
    final = measure_protocol(size, 2, "final", RunOptions("cpu"), seconds=0.3)
    assert final["iterations_per_candidate"] == 3 * 500 + 2 * 500 + 15_000  # stage 0 of every layer, stage 1 of 1..K-1, the pass
    assert abs(sum(final["share"].values()) - 1) < 1e-9 and final["share"]["end-to-end pass"] > final["share"]["later stages"] > 0
    ops = final["ops_per_step"]
    assert 0 < ops["stage 0, layer K"]["compute"] < ops["later stage, layer K"]["compute"]  # the frozen layers' graph is pruned
    search = measure_protocol(size, 2, "search", RunOptions("cpu"), seconds=0.3)
    assert search["iterations_per_candidate"] == 3 * 3 * 200 and search["share"]["end-to-end pass"] == 0
    assert main(["bench", "--protocol", "final", "--layers", "3", "--m", "20", "--n", "40", "--P", "2", "--seconds", "0.2"]) == 0
    assert "protocol final, P=2: 17,500 iterations per candidate" in capsys.readouterr().out

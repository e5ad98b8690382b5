"""The trainer on every available device (``-m gpu``): CUDA cases are skipped without a CUDA device.

Each test runs on the CPU too, so every device transfer of the trainer is exercised wherever the
suite runs; on a GPU machine ``pytest -m gpu tests/test_devices.py`` adds the CUDA cases (it needs
torch, numpy, pandas and pyyaml only: no Ray, no Optuna).
"""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from search_spaces import SearchSpace, preset
from search_spaces.genotype import classic_space
from trainers.model import UnrolledLISTA
from trainers.options import RunOptions
from trainers.population import train_population
from trainers.precision import precision_scope
from trainers.problems.make import make_problem
from trainers.protocols import Protocol, get_protocol

SMOKE = get_protocol("smoke")
# `gpu` marks the CUDA cases only: `-m "not gpu"` keeps the CPU cases (together-equals-alone and the rest)
CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")])
DEVICES = ["cpu", CUDA]
# The same candidate in a cohort of another size may get another GEMM kernel on a GPU (another
# summation order); on the CPU we observe bit-equality (docs/protocol.md).
TOL = {"cpu": dict(rtol=1e-6, atol=1e-7), "cuda": dict(rtol=1e-4, atol=1e-5)}


def random_genotypes(count: int, layers: int, seed: int, classic: bool = False) -> list:
    space = classic_space(layers, 2) if classic else SearchSpace(layers=layers, max_lag=2)
    rng = np.random.default_rng(seed)
    return [space.decode({d.name: d.choices[rng.integers(len(d.choices))] for d in space.decisions()}) for _ in range(count)]


def problem_on(device: str):
    return make_problem("small", seed=0, batch_size=64, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_training_together_equals_training_alone(device):
    """Candidates share no parameter and no reduction across the P axis: each trains as if alone, whatever its
    weight kind and neurons (free, coupled per layer, tied step, analytic; support selection, gain gates)."""
    problem = problem_on(device)
    gs = [preset(n, 3) for n in ("lista", "3no", "dense", "lista_cpss", "tilista", "alista", "2no_glista")] + random_genotypes(2, 3, seed=3)
    with precision_scope("fp32"):
        together = train_population(gs, problem, SMOKE)
        for g, r in zip(gs, together, strict=True):
            alone = train_population([g], problem, SMOKE)[0]
            assert r.status == alone.status == "ok" and alone.iterations == r.iterations
            assert [s["iters"] for s in alone.stages] == [s["iters"] for s in r.stages]
            for key, value in alone.params.items():
                torch.testing.assert_close(r.params[key], value, **TOL[device])
            assert alone.test_nmse_db == pytest.approx(r.test_nmse_db, abs=1e-4 if device == "cuda" else 1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_halving_survivors_match_training_without_halving(device):
    """Compaction is exact: survivors end where they end with no halving (same data stream)."""
    problem = problem_on(device)
    gs = [preset(n, 4) for n in ("lista", "2no", "dense", "3no", "lfista")]
    halving = Protocol(name="sh-test", patience=20, max_iters=40, batch_size=64, rungs=(1, 2), eta=2)
    full = train_population(gs, problem, replace(halving, name="full-test", rungs=()))  # the same protocol without its rungs
    sh = train_population(gs, problem, halving)
    survivors = [p for p, r in enumerate(sh) if r.status == "ok"]
    assert len(survivors) == 2  # 5 -> ceil(5/2) = 3 -> ceil(3/2) = 2
    for p in survivors:
        assert sh[p].rung == 2 and sh[p].rung_layer == 4 and sh[p].iterations == full[p].iterations
        for key, value in full[p].params.items():
            torch.testing.assert_close(sh[p].params[key], value, **TOL[device])
        assert sh[p].test_nmse_db == pytest.approx(full[p].test_nmse_db, abs=1e-4 if device == "cuda" else 1e-6)
    for p, r in enumerate(sh):
        if r.status == "stopped":
            assert r.rung in (1, 2) and r.rung_layer == r.rung and len(r.curves["val_nmse_db"]) == r.rung_layer
            assert r.val_nmse_db == pytest.approx(r.stages[-1]["best_val_nmse_db"], abs=1e-5)
            assert r.iterations == sum(s["iters"] for s in r.stages) < full[p].iterations


@pytest.mark.parametrize("device", DEVICES)
def test_a_model_built_from_a_device_dictionary_lives_there_and_starts_as_on_the_cpu(device):
    """UnrolledLISTA(gs, D on a device): every tensor on that device, the initialisation the CPU's to the bit.

    The trainer builds its model from the problem's D where the problem lives; on the first GPU run (H200,
    2026-12-04) the constructor mixed a CUDA D with CPU tensors and every CUDA training failed.
    """
    gs = [preset(n, 4) for n in ("lista", "3no", "meng2021")] + random_genotypes(2, 4, seed=5)
    D = problem_on("cpu").D
    ref = UnrolledLISTA(gs, D, coef_init="identity", compile=True)
    got = UnrolledLISTA(gs, D.to(device), coef_init="identity", compile=True)
    tensors = dict(got.named_parameters()) | dict(got.named_buffers())
    assert {name: t.device.type for name, t in tensors.items()} == dict.fromkeys(tensors, torch.device(device).type)
    want = dict(ref.named_parameters()) | dict(ref.named_buffers())
    for name, t in tensors.items():
        torch.testing.assert_close(t.cpu(), want[name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("device", DEVICES)
def test_compiled_layers_equal_eager_in_values_and_gradients(device):
    """``compile=True`` (neuron + LM mix as one torch.compile'd kernel) is the same maths as eager."""
    gs = random_genotypes(6, 5, seed=7, classic=True)
    assert {n for g in gs for n in g.neurons} == {"soft", "relu", "lrelu"} and any(any(g.lags) for g in gs)
    problem = problem_on("cpu")
    b, D = problem.val.b[:64].double().to(device), problem.D.double()  # float64: no reassociation noise
    grads, outs = [], []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = UnrolledLISTA(gs, D, compile=compiled)
        with torch.no_grad():
            for prm in model.parameters():
                prm.add_(0.02 * torch.randn(prm.shape, dtype=prm.dtype))
        model = model.to(device)
        out = model(b)
        sum((o * o).sum() * (k + 1) for k, o in enumerate(out)).backward()
        outs.append(torch.stack(out).detach())
        grads.append([prm.grad for prm in model.parameters()])
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-10, atol=1e-12)
    for eager, fused in zip(*grads, strict=True):
        torch.testing.assert_close(fused, eager, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("device", [CUDA])
def test_cpu_and_cuda_forward_passes_agree(device):
    """Same data (drawn on the CPU, then moved), same parameters: float32 outputs agree with TF32 off."""
    cpu, dev = problem_on("cpu"), problem_on(device)
    torch.testing.assert_close(dev.val.b.cpu(), cpu.val.b, rtol=0, atol=0)
    gs = [preset("dense", 6), preset("3no", 6)] + random_genotypes(3, 6, seed=1)
    torch.manual_seed(0)
    model = UnrolledLISTA(gs, cpu.D)
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(0.01 * torch.randn(prm.shape))
    with precision_scope("fp32"):
        ref = torch.stack(model(cpu.val.b[:256]))
        got = torch.stack(model.to(device)(dev.val.b[:256])).cpu()
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_train_on_a_device_writes_the_tables_it_writes_on_the_cpu(device, tmp_path):
    """`nasdun train --device D`: same rows, stages and (to float tolerance) values as on the CPU."""
    from nasdun.runs.training import run_train

    archs = [(n, preset(n, 3)) for n in ("lista", "2no", "lfista")]
    ref = run_train(archs, "small", "smoke", 0, tmp_path / "ref", options=RunOptions("cpu"))
    got = run_train(archs, "small", "smoke", 0, tmp_path / device, options=RunOptions(device))
    assert list(got["name"]) == list(ref["name"]) and list(got["status"]) == list(ref["status"])
    assert list(got["device"]) == [device] * 3 and list(got["iterations"]) == list(ref["iterations"])
    for col in ("val_nmse_db", "test_nmse_db", "test_nmse_db_mean"):
        np.testing.assert_allclose(got[col], ref[col], atol=0 if device == "cpu" else 2e-3, err_msg=col)
    curves = pd.read_csv(tmp_path / device / "curves.csv")
    assert len(curves) == len(pd.read_csv(tmp_path / "ref" / "curves.csv")) == 3 * 4 * 3  # nets x (split, metric) x layers


@pytest.mark.parametrize("device", DEVICES)
def test_time_limit_stops_every_network_where_it_is(device):
    """``minutes``: rows are `stopped` at the layer reached, scored there with the stage's best parameters."""
    problem = problem_on(device)
    gs = [preset("lista", 4), preset("2no", 4)]
    cut = train_population(gs, problem, SMOKE, options=RunOptions(minutes=1e-6))  # ends at the first check: layer 1, stage 1, 10 iterations
    for r in cut:
        assert r.status == "stopped" and r.rung_layer == 1 and r.iterations == SMOKE.val_every
        assert r.reason.startswith("time limit of 1e-06 min reached at layer 1 of 4, stage 1 of 3")
        assert len(r.curves["val_nmse_db"]) == 1 and r.val_nmse_db == pytest.approx(r.stages[-1]["best_val_nmse_db"], abs=1e-5)
    full = train_population(gs, problem, SMOKE)
    ample = train_population(gs, problem, SMOKE, options=RunOptions(minutes=60))
    assert [r.test_nmse_db for r in ample] == [r.test_nmse_db for r in full]  # a limit never reached changes nothing


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_training_is_close_to_fp32_and_restores_the_matmul_setting(device):
    problem = problem_on(device)
    before = torch.get_float32_matmul_precision()
    gs = [preset("lista", 3), preset("2no", 3)]
    fp32 = train_population(gs, problem, SMOKE)
    bf16 = train_population(gs, problem, SMOKE, options=RunOptions(precision="bf16"))
    assert torch.get_float32_matmul_precision() == before
    for a, b in zip(fp32, bf16, strict=True):
        assert b.status == "ok" and all(v.dtype == torch.float32 for v in b.params.values())
        assert abs(a.test_nmse_db - b.test_nmse_db) < 1.0  # bfloat16 matmuls: ~3 significant digits
        assert a.test_nmse_db != b.test_nmse_db  # the option reached the arithmetic


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_graphs_train_to_the_eager_bits():
    """``cuda_graphs``: every stage's step replayed as one CUDA graph gives the eager run's results bit for bit, for a
    cohort of every weight kind, neuron family and connection (stage changes, restarts and a compaction recapture it)."""
    hand = ["lista", "2no", "meng2021", "lista_cpss", "tilista", "alista", "glista", "2no_cpss", "dense"]
    gs = [preset(n, 4) for n in hand]
    problem = problem_on("cuda")
    proto = replace(SMOKE, retries=1)
    eager = train_population(gs, problem, proto, lr_scale=[1.0] * 8 + [1e4], options=RunOptions(device="cuda"))
    graphed = train_population(gs, problem, proto, lr_scale=[1.0] * 8 + [1e4], options=RunOptions(device="cuda", cuda_graphs=True))
    assert eager[-1].stages and any("diverged" in s for s in eager[-1].stages)  # the restart path ran under the graphs too
    for name, a, b in zip(hand, eager, graphed, strict=True):
        assert (a.status, a.reason, a.iterations, a.stages) == (b.status, b.reason, b.iterations, b.stages), name
        assert a.params.keys() == b.params.keys() and all(torch.equal(a.params[k], b.params[k]) for k in a.params), name


def test_cuda_graphs_are_refused_where_they_cannot_run():
    """On a CPU, and with torch.compile or bf16 autocast (which keep their own caches), one line naming the option."""
    from nasdun.core.errors import NasdunError
    from trainers.population import PopulationTrainer

    with pytest.raises(NasdunError, match=r"cuda_graphs on device cpu; expected a CUDA device"):
        PopulationTrainer([preset("lista", 3)], problem_on("cpu"), SMOKE, options=RunOptions(device="cpu", cuda_graphs=True))
    with pytest.raises(NasdunError, match=r"cuda_graphs with compile; expected cuda_graphs alone"):
        RunOptions(cuda_graphs=True, compile=True)
    with pytest.raises(NasdunError, match=r"cuda_graphs with precision bf16; expected cuda_graphs alone"):
        RunOptions(cuda_graphs=True, precision="bf16")

"""Every search answers "did it beat the hand designs?", keeps its best networks, and exports them for plain PyTorch."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from nasdun.core.errors import NasdunError
from nasdun.interfaces.cli import main
from nasdun.runs.verdict import judge, preset_names
from search_spaces import SearchSpace, preset

TINY = [
    "--budget",
    "15",  # the 13 hand designs distinct at K = 3, then 2 found
    "--cohort",
    "3",
    "--setting",
    "small",
    "--protocol",
    "smoke",
    "--layers",
    "3",
    "--sampler",
    "random",
    "--num-cpus",
    "2",
    "--promote-top",
    "0",
]


def rows(*spec):
    return [{"name": n, "hash": n, "status": st, "preset": pr, "val_nmse_db": v, "test_nmse_db": v + 0.1} for n, pr, v, st in spec]


def test_verdict_lines_and_gains():
    """The plain answer first, by the stated rule (level within CLOSE_DB on validation), then the numbers."""
    from nasdun.runs.verdict import CLOSE_DB

    better = judge(rows(("t1", "", -11.0, "ok"), ("a", "2no", -10.5, "ok"), ("b", "lista", -9.0, "ok"), ("t2", "", -20.0, "failed")))
    assert better["best_found"] == "t1" and better["best_preset"] == "2no" and better["gain_db"] == pytest.approx(0.5)
    assert better["verdict"].startswith("the search found a better network than every hand design — best found t1 -11.00 dB (val), -10.90 (test)")
    assert "vs best hand design 2NO-LISTA -10.50 dB (val)" in better["verdict"] and not better["best_is_hand_design"]
    assert better["verdict"].endswith("0.50 dB better (val), on test 0.50 dB better")
    worse = judge(rows(("t1", "", -10.0, "ok"), ("a", "2no", -10.5, "ok")))
    assert worse["best_is_hand_design"] and worse["gain_db"] == pytest.approx(-0.5)
    assert worse["verdict"].startswith("a hand design is better than every network the search found — best found t1 -10.00 dB (val)")
    assert worse["verdict"].endswith("0.50 dB worse (val), on test 0.50 dB worse")
    for margin in (0.0, 0.1, -0.1, CLOSE_DB - 0.01, -(CLOSE_DB - 0.01)):  # either side of zero, inside the rule: level, never "better"
        close = judge(rows(("t1", "", -10.5 - margin, "ok"), ("a", "2no", -10.5, "ok")))["verdict"]
        assert close.startswith("level: the best found network and the best hand design are within 0.3 dB")
        assert "found better" not in close and "hand design is better" not in close
    assert judge(rows(("t1", "", -10.5 - CLOSE_DB - 0.01, "ok"), ("a", "2no", -10.5, "ok")))["verdict"].startswith("the search found a better")
    alone = judge(rows(("t1", "", -10.0, "ok")))
    assert alone["best_preset"] is None and math.isnan(alone["gain_db"]) and "no hand design was trained" in alone["verdict"]


def test_preset_names_merge_hand_designs_equal_at_small_k():
    names = preset_names(3, 2)
    assert names[preset("lfista", 3).hash] == "lfista=dense"  # at K = 3 layer 3 reading x(1) is both
    assert names[preset("lista", 3).hash] == "lista=meng2021" and names[preset("3no", 3).hash] == "3no"


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("s") / "run"
    assert main(["search", *TINY, "--keep-params", "2", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_search_trains_the_baselines_first_and_states_the_verdict(searched, capsys):
    df = pd.read_csv(searched / "results.csv", keep_default_na=False)
    first = df[df["cohort"] == 0].sort_values("trial_number")
    assert list(first["preset"][:3]) == ["lista=meng2021", "lfista=dense", "2no"] and (df[df["cohort"] == 1]["preset"].iloc[0] == "3no")
    fig = json.loads((searched / "search.json").read_text())
    from nasdun.runs.verdict import hand_designs

    assert fig["baselines"] == list(hand_designs(3, 2))  # the hand designs distinct at K = 3, every one of the registry
    assert fig["baselines"][:4] == ["lista", "lfista", "2no", "3no"] and {"alista", "lista_cpss", "2no_glista"} <= set(fig["baselines"])
    ok = df[df["status"] == "ok"].astype({"val_nmse_db": float})
    hand, found = ok[ok["preset"] != ""], ok[ok["preset"] == ""]
    assert fig["best_preset_val_nmse_db"] == pytest.approx(hand["val_nmse_db"].min())
    assert fig["best_found_val_nmse_db"] == pytest.approx(found["val_nmse_db"].min())
    assert fig["gain_db"] == pytest.approx(hand["val_nmse_db"].min() - found["val_nmse_db"].min())
    screening = judge(df.to_dict("records"))["verdict"]
    assert fig["screening_verdict"] == screening  # --promote-top 0: the last line says it is a screening verdict, and how well it ranks
    tail = "(under smoke, which is not measured against paper; no promotion: promote_top 0; pooled nmse_db)"
    assert fig["verdict"] == f"screening verdict: {screening} {tail}"


@pytest.mark.slow
def test_search_keeps_the_top_k_and_every_baseline(searched):
    df = pd.read_csv(searched / "results.csv", keep_default_na=False).astype({"val_nmse_db": float})
    blob = torch.load(searched / "params.pt", weights_only=True)
    top2 = list(df[df["status"] == "ok"].sort_values(["val_nmse_db", "hash"])["name"][:2])
    assert set(blob["networks"]) == set(top2) | set(df[df["preset"] != ""]["name"])
    assert not list((searched / "cohorts").glob("*.pt"))  # each cohort's file was folded in and removed


@pytest.mark.slow
def test_exported_network_loads_without_nasdun_and_scores_as_its_row(searched, tmp_path):
    from trainers.problems.make import make_problem

    net = tmp_path / "net.pt"
    assert main(["export", str(searched), "--rank", "1", "--out", str(net)]) == 0
    df = pd.read_csv(searched / "results.csv", keep_default_na=False).astype({"val_nmse_db": float})
    best = df[df["status"] == "ok"].sort_values(["val_nmse_db", "hash"]).iloc[0]
    test = make_problem("small", 0, batch_size=64).test
    torch.save({"b": test.b, "x": test.x}, tmp_path / "test.pt")
    script = f"""
import sys, json, warnings
for name in ("nasdun", "trainers", "search_spaces", "analysis"):
    sys.modules[name] = None  # not importable in this process
warnings.simplefilter("ignore", DeprecationWarning)
import torch
try:
    import nasdun
    raise SystemExit("nasdun was importable")
except ImportError:
    pass
extra = {{"nasdun.json": ""}}
net = torch.export.load({str(net)!r}, extra_files=extra).module()
data = torch.load({str(tmp_path / "test.pt")!r})
with torch.no_grad():
    xhat = net(data["b"])
    few = net(data["b"][:3])  # any batch size
try:
    net(data["b"][:, :-1])
    wrong = ""
except Exception as err:  # the program's own input check
    wrong = str(err)
err = ((xhat - data["x"]) ** 2).sum(-1).double().sum() / (data["x"] ** 2).sum(-1).double().sum()
print(json.dumps({{"nmse_db": 10 * float(torch.log10(err)), "meta": json.loads(extra["nasdun.json"]), "shape": list(xhat.shape),
                  "few_same": bool(torch.allclose(few, xhat[:3], atol=1e-6)), "wrong": wrong}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["shape"] == [test.x.shape[0], 100] and res["few_same"]
    assert "== 50" in res["wrong"]  # a wrong width is refused by the program, naming the expected one
    assert res["nmse_db"] == pytest.approx(float(best["test_nmse_db"]), abs=1e-4)
    meta = res["meta"]
    assert meta["name"] == best["name"] and meta["hash"] == best["hash"] and meta["setting"] == "small" and meta["layers"] == 3
    assert meta["metrics"]["test_nmse_db"] == pytest.approx(float(best["test_nmse_db"]))
    assert "/" not in meta["run"] and meta["source"] in (".", "promoted")  # no local paths in the file


def test_exported_program_equals_the_batched_model_on_random_genotypes(tmp_path):
    """The exported program (a trace of the model) against the model, saved and loaded, on random genotypes of the
    whole space and on the field's designs: bit for bit, since it runs the same operations."""
    from nasdun.runs.export import export_program
    from trainers.model import UnrolledLISTA
    from trainers.problems.make import make_problem

    pr = make_problem("small", 0, 64)
    space, rng = SearchSpace(layers=6), np.random.default_rng(5)
    gs = [space.decode({d.name: d.choices[rng.integers(len(d.choices))] for d in space.decisions()}) for _ in range(3)]
    gs += [preset(n, 6) for n in ("3no", "alista", "2no_glista", "lista_cpss")]
    for i, g in enumerate(gs):
        torch.manual_seed(0)
        model = UnrolledLISTA([g], pr.D)
        with torch.no_grad():
            for prm in model.parameters():
                prm.add_(0.05 * torch.randn(prm.shape))
            ref = model(pr.val.b)[-1][0]
        torch.export.save(export_program(model, None, pr.val.b[:2]), str(tmp_path / f"{i}.pt2"))
        with torch.no_grad():
            got = torch.export.load(str(tmp_path / f"{i}.pt2")).module()(pr.val.b)
        torch.testing.assert_close(got, ref, rtol=0, atol=0)


@pytest.mark.slow
def test_no_baselines_search_says_it_cannot_compare(tmp_path, capsys):
    out = tmp_path / "cold"
    assert main(["search", *TINY, "--budget", "3", "--no-baselines", "--out", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]  # the verdict
    df = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert json.loads((out / "search.json").read_text())["baselines"] == []
    if (df["preset"] == "").all():  # a random genotype can be a hand design; then the line names it
        assert "no hand design was trained in this search" in last


def test_export_from_a_train_run_and_bad_exports(tmp_path, capsys):
    run = tmp_path / "train"
    assert main(["train", "--arch", "lista,2no", "--layers", "3", "--protocol", "smoke", "--out", str(run)]) == 0
    assert main(["export", str(run), "--name", "2no", "--out", str(tmp_path / "n.pt")]) == 0
    assert "2NO-LISTA" not in capsys.readouterr().err
    for args, fragment in [
        (["--rank", "3"], "--rank 3; expected 1..2"),
        (["--name", "nosuch"], "no row 'nosuch'"),
        ([], "give exactly one of --name NAME or --rank N"),
        (["--rank", "1", "--name", "lista"], "give exactly one of"),
    ]:
        assert main(["export", str(run), *args, "--out", str(tmp_path / "x.pt")]) == 2
        assert fragment in capsys.readouterr().err
    assert main(["export", str(run), "--rank", "1", "--out", str(tmp_path / "n.pt")]) == 2
    assert "exists; choose a new file (or pass --force)" in capsys.readouterr().err
    assert main(["export", str(run), "--rank", "1", "--out", str(tmp_path / "n.pt"), "--force"]) == 0
    with pytest.raises(NasdunError, match="no saved parameters"):
        from nasdun.runs.export import pick_row

        pick_row(tmp_path, rank=1)


@pytest.mark.slow
def test_a_resumed_search_keeps_only_the_top_k_and_the_baselines(searched, tmp_path):
    """Rows read back from results.csv have NaN in an empty `preset` cell; they are found networks, not baselines."""
    import shutil

    run = tmp_path / "resumed"
    shutil.copytree(searched, run)
    assert main(["search", "--resume", str(run), "--budget", "18", "--num-cpus", "2"]) == 0
    df = pd.read_csv(run / "results.csv", keep_default_na=False).astype({"val_nmse_db": float})
    assert len(df) == 18
    top2 = list(df[df["status"] == "ok"].sort_values(["val_nmse_db", "hash"])["name"][:2])
    kept = set(torch.load(run / "params.pt", weights_only=True)["networks"])
    assert kept == set(top2) | set(df[df["preset"] != ""]["name"])
    from nasdun.runs.verdict import preset_names

    assert json.loads((run / "search.json").read_text())["best_preset"] in set(preset_names(3, 2).values())

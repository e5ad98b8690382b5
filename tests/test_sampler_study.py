"""`nasdun compare-samplers`: real searches (local Ray, SQLite studies), checked against the tables they wrote."""

import json

import pandas as pd
import pytest

from nasdun.interfaces.cli import main


@pytest.mark.slow
def test_a_cold_sampler_study_measures_what_its_tables_say_and_continues_without_retraining(tmp_path, capsys):
    out, config = tmp_path / "study", tmp_path / "study.yaml"
    config.write_text("sampler_options:\n  predictor: {startup: 2}\n")
    args = ["compare-samplers", "--samplers", "random,predictor", "--seeds", "0,1", "--budget", "4", "--layers", "2", "--protocol", "smoke",
            "--cohort", "2", "--setting", "small", "--num-cpus", "2", "--confirm-seeds", "1", "--config", str(config), "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "samplers.json").read_text())
    assert len(summary["runs"]) == 4
    for r in summary["runs"]:
        table = pd.read_csv(out / "runs" / f"{r['sampler']}-seed{r['seed']}" / "results.csv").sort_values("trial_number")
        hand = pd.read_csv(out / "hand" / f"seed{r['seed']}" / "results.csv")
        bar = hand.loc[hand["status"] == "ok", "val_nmse_db"].min()
        assert len(table) == 4 and r["hand_val_nmse_db"] == bar and r["best_val_nmse_db"] == table["val_nmse_db"].min()
        beat = [i for i, v in enumerate(table["val_nmse_db"], start=1) if v < bar]
        assert r["candidates_to_beat"] == (beat[0] if beat else None)
    pair = summary["agreement"][0]
    assert pair["k"] == 1 and pair["a"] == "random" and pair["b"] == "predictor"
    tops = []
    for s in ("random", "predictor"):
        pooled = pd.concat([pd.read_csv(out / "runs" / f"{s}-seed{k}" / "results.csv") for k in (0, 1)])
        tops.append(pooled.sort_values(["val_nmse_db", "hash"]).iloc[0]["hash"])
    assert pair["overlap"] == int(tops[0] == tops[1])
    top1 = {(s, k): pd.read_csv(out / "runs" / f"{s}-seed{k}" / "results.csv").sort_values(["val_nmse_db", "hash"]).iloc[0]["hash"]
            for s in ("random", "predictor") for k in (0, 1)}  # fmt: skip
    floor = {(p["a"], p["b"]): p for p in summary["seed_pairs"]}  # each run's top-1: one sampler at two seeds, two samplers at two seeds
    assert set(floor) == {("random", "random"), ("predictor", "predictor"), ("random", "predictor")}
    assert floor[("random", "random")]["pairs"] == 1 and floor[("random", "predictor")]["pairs"] == 2
    assert floor[("random", "random")]["overlap_fraction"] == float(top1[("random", 0)] == top1[("random", 1)])
    across = (int(top1[("random", 0)] == top1[("predictor", 1)]) + int(top1[("random", 1)] == top1[("predictor", 0)])) / 2
    assert floor[("random", "predictor")]["overlap_fraction"] == across
    assert json.loads((out / "avg-predictor.json").read_text())["top_k"] == 1
    md = (out / "samplers.md").read_text()
    assert "## Candidates needed to beat the best hand design" in md and (out / "figures" / "best_so_far_band.png").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/results.csv")}
    capsys.readouterr()
    assert main(args) == 0  # a finished study is summarised again, nothing retrained
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/results.csv")} == stamps
    assert json.loads((out / "samplers.json").read_text())["runs"] == summary["runs"]
    assert main([a if a != "4" else "6" for a in args]) == 2  # another budget into the same directory
    assert "holds a sampler study of another specification" in capsys.readouterr().err
    config.write_text("sampler_options:\n  predictor: {startup: 2, model: forest}\n")  # the same file, edited: its searches are not the old ones
    assert main(args) == 2
    said = capsys.readouterr().err
    assert "predictor-seed0 is a search with other sampler options than this study asks; use another --out DIR or pass --force to redo it" in said
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/results.csv")} == stamps  # nothing replaced
    assert main([*args, "--force"]) == 0  # the predictor's searches are redone, random's (unchanged) kept
    redone = {p for p in out.glob("runs/*/results.csv") if p.stat().st_mtime_ns != stamps[p]}
    assert redone == {out / "runs" / f"predictor-seed{k}" / "results.csv" for k in (0, 1)}
    assert "model: forest" in (out / "runs" / "predictor-seed0" / "search.yaml").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/results.csv")}

    confirm = pd.read_csv(out / "confirm" / "seed1000" / "results.csv").set_index("name")
    assert list(summary["confirm"]) == ["smoke"]  # the search's protocol, by default
    assert {"top1-random", "top1-predictor"} <= set(confirm.index) and set(summary["confirm"]["smoke"]) == set(confirm.index)
    assert summary["confirm"]["smoke"]["top1-random"]["val_mean"] == confirm.loc["top1-random", "val_nmse_db"]
    hand = {p: p.stat().st_mtime_ns for p in out.glob("hand/*/results.csv")}
    wider = [a if a != "random,predictor" else "random,predictor,evolution" for a in args] + ["--force"]
    assert main(wider) == 0  # a sampler added: its top-1 is confirmed too, not the old confirmation read back
    confirm = pd.read_csv(out / "confirm" / "seed1000" / "results.csv").set_index("name")
    assert "top1-evolution" in confirm.index and set(json.loads((out / "samplers.json").read_text())["confirm"]["smoke"]) == set(confirm.index)
    assert {p: p.stat().st_mtime_ns for p in out.glob("hand/*/results.csv")} == hand  # the same hand designs: reused
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/results.csv") if p in stamps} == stamps

    # the same top-1s confirmed under a second protocol too: trained beside the first confirmation, which is read back, not retrained
    longer = tmp_path / "longer.yaml"
    longer.write_text("lrs: [5.0e-4, 1.0e-4]\npatience: 30\nmax_iters: 30\nval_every: 10\nbatch_size: 64\nlam: 0.4\ncoef_init: ones\n"
                      "diverge_db: 20.0\n")  # fmt: skip
    first = (out / "confirm" / "seed1000" / "results.csv").stat().st_mtime_ns
    # (its own number of seeds: `longer:2`, one more than --confirm-seeds gives the search's protocol)
    wider = [*[a for a in wider if a != "--force"], "--confirm-protocol", f"smoke,{longer}:2"]
    assert main(wider) == 0
    assert (out / "confirm" / "seed1000" / "results.csv").stat().st_mtime_ns == first and not (out / "confirm" / "seed1001").exists()
    other = pd.concat([pd.read_csv(out / "confirm" / "longer" / f"seed{k}" / "results.csv") for k in (1000, 1001)])
    summary = json.loads((out / "samplers.json").read_text())
    assert set(summary["confirm"]) == {"smoke", "longer"} and set(summary["confirm"]["longer"]) == set(other["name"]) == set(confirm.index)
    lista = other.loc[other["name"] == "lista", "test_nmse_db"]
    assert summary["confirm"]["longer"]["lista"]["test_mean"] == pytest.approx(lista.mean(), abs=1e-9)
    assert summary["confirm"]["longer"]["lista"]["test_std"] == pytest.approx(lista.std(), abs=1e-9)
    assert summary["confirm"]["longer"]["lista"]["seeds"] == 2 and summary["confirm"]["smoke"]["lista"]["seeds"] == 1
    md = (out / "samplers.md").read_text()
    assert "`smoke` val | `smoke` test (1 seed) | `longer` val | `longer` test (2 seeds)" in md
    for bad, said in (("smoke,/nonexistent/p.yaml", "/nonexistent/p.yaml"), ("smoke:0", "'smoke:0'"), ("smoke,smoke:2", "distinct protocols")):
        assert main([*wider[:-1], bad]) == 2 and said in capsys.readouterr().err
    unseeded = [a if a != "1" else "0" for a in wider[:-1]] + [f"smoke:1,{longer}"]  # --confirm-seeds 0: `longer` names no seed count
    assert main(unseeded) == 2
    assert f"--confirm-protocol {longer} with --confirm-seeds 0; expected PROTOCOL:SEEDS or --confirm-seeds N >= 1" in capsys.readouterr().err

"""Averages, heatmaps, retraining tables and reports, from results tables on disk."""

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.readers.average import average, frequencies, threshold_genotype
from analysis.readers.heatmaps import genotype_heatmap, run_heatmaps
from analysis.readers.report import build_report
from analysis.readers.searchstats import best_so_far, topk_agreement
from analysis.studies.retrain import run_retrain
from nasdun.core.errors import NasdunError
from nasdun.interfaces.cli import main
from nasdun.runs.results import load_runs, top_k, write_table
from search_spaces import Genotype, preset
from trainers.options import RunOptions

K = 4
# Top-3 by val (A, B, C); D and E are worse. Designed frequencies over the top 3:
#   conn 3<-1: A,B -> 2/3 ; 4<-1: A -> 1/3 ; 4<-2: A,B,C -> 1
#   lag 2/1: B,C -> 2/3 ; lag 3/2: C -> 1/3
#   neurons layer 1: relu,relu,soft -> relu ; layer 2: soft,relu,lrelu -> tie -> soft (registered first)
A = Genotype.build(K, {3: [1], 4: [1, 2]}, ["relu", "soft", "soft", "soft"])
B = Genotype.build(K, {3: [1], 4: [2]}, ["relu", "relu", "soft", "soft"], {2: [1]})
C = Genotype.build(K, {4: [2]}, ["soft", "lrelu", "soft", "soft"], {2: [1], 3: [2]})
D = Genotype.build(K, {3: [1], 4: [1, 2]}, ["lrelu"] * 4, {2: [1], 3: [1, 2], 4: [1, 2]})
E = preset("dense", K)


def table(tmp_path, rows, name="run"):
    out = tmp_path / name
    out.mkdir()
    recs = [
        {"name": f"t{i}", "hash": g.hash, "status": status, "val_nmse_db": v, "test_nmse_db": v - 0.1, "test_nmse_db_mean": v - 0.2,
         "n_extra": g.n_extra, "genotype": g.to_json(), "sampler": sampler, "trial_number": i, "curves": "{}"}
        for i, (g, v, status, sampler) in enumerate(rows)
    ]  # fmt: skip
    write_table(out, recs)
    return out


@pytest.fixture
def run(tmp_path):
    return table(tmp_path, [(D, -10.0, "ok", "rl"), (A, -30.0, "ok", "rl"), (E, -5.0, "ok", "evolution"), (C, -20.0, "ok", "evolution"),
                            (B, -25.0, "ok", "rl"), (A, -1.0, "failed", "rl")])  # fmt: skip


def test_top_k_frequencies_and_thresholded_genotype(run):
    df = load_runs([run])
    g, freq, members = average(df, 3, 0.5)
    assert list(members["hash"]) == [A.hash, B.hash, C.hash]
    assert freq.conn[2, 0] == pytest.approx(2 / 3) and freq.conn[3, 0] == pytest.approx(1 / 3) and freq.conn[3, 1] == 1
    assert freq.conn[1, 0] == freq.conn[2, 1] == freq.conn[3, 2] == 1  # immediate predecessors
    assert freq.lags[1, 0] == pytest.approx(2 / 3) and freq.lags[2, 1] == pytest.approx(1 / 3) and freq.lags[3].sum() == 0
    assert g == Genotype.build(K, {3: [1], 4: [2]}, ["relu", "soft", "soft", "soft"], {2: [1]})
    # threshold edge: a frequency equal to the threshold is kept
    assert 1 in threshold_genotype(freq, 1 / 3).inputs[3] and threshold_genotype(freq, 1 / 3).lags[2] == (2,)
    assert threshold_genotype(freq, 0.67).inputs[2] == (2,)
    assert threshold_genotype(freq, 1.0).lags == ((), (), (), ())


def test_ties_and_limits(run, tmp_path):
    tied = table(tmp_path, [(B, -20.0, "ok", "rl"), (A, -20.0, "ok", "rl"), (C, -5.0, "ok", "rl")], "tied")
    members = top_k(load_runs([tied]), 1)
    assert list(members["hash"]) == [min(A.hash, B.hash)]  # equal NMSE: the smaller hash first
    with pytest.raises(NasdunError, match="top_k=6 exceeds the 5 successfully trained distinct genotypes"):
        top_k(load_runs([run]), 6)
    assert list(top_k(load_runs([run], sampler="evolution"), 2)["hash"]) == [C.hash, E.hash]
    with pytest.raises(NasdunError, match="no rows of sampler 'tpe'"):
        load_runs([run], sampler="tpe")
    with pytest.raises(NasdunError, match="no results table"):
        load_runs([tmp_path / "missing"])
    with pytest.raises(NasdunError, match=r"threshold=1.5; expected a fraction"):
        threshold_genotype(frequencies([A]), 1.5)


@pytest.mark.slow
def test_heatmap_data_equals_frequencies_and_files_are_valid(run, tmp_path):
    out = tmp_path / "figs"
    mats = run_heatmaps([run], out, top=3, diff=2)
    _, freq, _ = average(load_runs([run]), 3)
    _, freq2, _ = average(load_runs([run]), 2)
    for k in range(2, K + 1):
        for i in range(1, K):
            want = freq.conn[k - 1, i - 1] if i < k else np.nan
            np.testing.assert_equal(mats["conn"].loc[k, i], want)
            if i < k:
                assert mats["diff"].loc[k, i] == pytest.approx(freq.conn[k - 1, i - 1] - freq2.conn[k - 1, i - 1])
    exists = np.array([[k - 1 - j >= 0 for j in (1, 2)] for k in range(1, K + 1)])  # lag j exists at layer k
    np.testing.assert_array_equal(mats["lags"].to_numpy(), np.where(exists, freq.lags, np.nan))  # impossible cells blank, not 0
    np.testing.assert_array_equal(mats["neurons"].to_numpy(), freq.neurons)
    for stem in ("conn_top3", "lags_top3", "neurons_top3", "conn_top3_minus_top2"):
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert ET.parse(out / f"{stem}.svg").getroot().tag.endswith("svg")
    mat = genotype_heatmap(preset("lfista", 6), "lfista", out)
    assert mat.loc[5, 3] == 1 and mat.loc[5, 2] == 0 and mat.loc[5, 4] == 1


def test_search_statistics(run, tmp_path):
    curves = best_so_far(load_runs([run]))
    assert curves["rl"] == [-10.0, -30.0, -30.0, -30.0]  # the failed row does not count
    assert curves["evolution"] == [-5.0, -20.0]
    other = table(tmp_path, [(A, -9.0, "ok", "rl"), (B, -8.0, "ok", "rl"), (D, -7.0, "ok", "rl")], "other")
    agree = topk_agreement(load_runs([run]), load_runs([other]), 2)
    assert agree["overlap"] == 2 and agree["conn_freq_pearson"] == pytest.approx(1.0)


def test_agreement_at_two_layers_has_no_connection_to_correlate(tmp_path):
    """At K = 2 no skip connection exists: the overlap is counted, the correlation is NaN, and numpy says nothing."""
    import warnings

    two = [Genotype.build(2, {}, ns) for ns in (["soft", "relu"], ["relu", "soft"], ["soft", "soft"])]
    a = table(tmp_path, [(two[0], -9.0, "ok", "rl"), (two[1], -8.0, "ok", "rl")], "a")
    b = table(tmp_path, [(two[0], -7.0, "ok", "rl"), (two[2], -9.5, "ok", "rl")], "b")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agree = topk_agreement(load_runs([a]), load_runs([b]), 2)
    assert agree["overlap"] == 1 and agree["overlap_fraction"] == 0.5 and math.isnan(agree["conn_freq_pearson"])


def test_average_cli_writes_a_file_train_reads(run, tmp_path, capsys):
    out = tmp_path / "avg.json"
    assert main(["average", str(run), "--top-k", "3", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert Genotype.from_dict(data["genotype"]).hash == data["hash"]
    assert [m["hash"] for m in data["members"]] == [A.hash, B.hash, C.hash]
    assert data["frequencies"]["conn"][2][0] == pytest.approx(2 / 3, abs=1e-6)
    assert main(["average", str(run), "--top-k", "99", "--out", str(out)]) == 2  # never overwrites by surprise
    assert "exists; choose a new file (or pass --force)" in capsys.readouterr().err
    assert main(["average", str(run), "--top-k", "99", "--out", str(tmp_path / "all.json")]) == 0
    assert (
        "the runs hold 5 distinct genotypes trained to the end, so the top-5 (all of them) are used, not the top-99 asked for"
        in capsys.readouterr().out
    )


@pytest.mark.slow
def test_retrain_table_matches_its_runs_and_report_includes_it(tmp_path, run):
    avg = tmp_path / "avg.json"
    g = Genotype.build(3, {3: [1]}, "soft", {2: [1]})
    avg.write_text(json.dumps({"genotype": g.to_dict()}))
    out = tmp_path / "rt"
    tables = run_retrain(str(avg), "lista,2no", ["small", "small_snr20"], 2, "smoke", 3, out, options=RunOptions("cpu"))
    t1 = tables["table1"].set_index("setting")
    assert list(t1.index) == ["small", "small_snr20"]
    for setting in ("small", "small_snr20"):
        runs = [pd.read_csv(out / "runs" / setting / f"seed{s}" / "results.csv").set_index("name") for s in (0, 1)]
        for net in ("avg", "lista", "2no"):
            vals = [r.loc[net, "test_nmse_db_mean"] for r in runs]
            assert t1.loc[setting, f"{net}_mean"] == pytest.approx(np.mean(vals))
            assert t1.loc[setting, f"{net}_std"] == pytest.approx(np.std(vals, ddof=1))
        best = min(("avg", "lista", "2no"), key=lambda n: t1.loc[setting, f"{n}_mean"])
        assert t1.loc[setting, "best"] == best
    md = (out / "table1.md").read_text()
    assert "| small_snr20 |" in md and md.count("**") == 4
    assert "Table 1 metric" in md and "pooled" in (out / "table_pooled.md").read_text()  # each table names its metric
    assert (out / "figures" / "nmse_vs_layer_small.png").is_file()

    html_path, md_path = build_report(run, tmp_path / "rep", top=3, retrain=out)
    text = html_path.read_text()
    assert "data:image/png;base64," in text and "<table>" in text and "small_snr20" in text
    assert "conn_top3" in md_path.read_text() and (tmp_path / "rep" / "figures" / "conn_top3.png").is_file()
    assert "| small |" in md_path.read_text()
    assert "dB are the pooled `nmse_db`" in md_path.read_text() and "the retraining table below is in `nmse_db_mean`" in md_path.read_text()


def test_report_errors(tmp_path, run):
    with pytest.raises(NasdunError, match="no results table"):
        build_report(tmp_path / "nothing")
    with pytest.raises(NasdunError, match="holds no table1.md"):
        build_report(run, retrain=tmp_path)


def test_rank_correlations_against_hand_computed_values():
    from nasdun.runs.ranks import kendall, spearman

    assert spearman([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)  # 1 - 6*4/(5*24)
    assert kendall([1, 2, 3, 4], [2, 1, 3, 4]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant
    assert kendall([1, 2, 3], [1, 1, 2]) == pytest.approx(2 / np.sqrt(3 * 2))  # tau-b with a tie


def test_rank_agreement_of_two_result_tables_against_hand_computed_values():
    """Eight networks: the cheap protocol swaps the reference's 1st and 2nd and fails the 8th; values 1 dB worse."""
    from analysis.studies.fidelity import rank_agreement

    names = [f"r{i}" for i in range(6)] + ["lista", "2no"]
    val = [-10.0 - i for i in range(8)]  # r0 worst ... 2no best
    ref = pd.DataFrame({"status": "ok", "val_nmse_db": val, "iterations": 100}, index=names)
    cheap_val = [v + 1.0 for v in val]
    cheap_val[6], cheap_val[7] = cheap_val[7], cheap_val[6]
    cheap = pd.DataFrame({"status": ["ok"] * 7 + ["failed"], "val_nmse_db": cheap_val, "iterations": 25}, index=names)
    cheap.loc["2no", "val_nmse_db"] = math.nan
    got = rank_agreement(ref, cheap, names[:6])
    # ranks (1 = best): reference 2no 1, lista 2, r5 3 ... r0 8; cheap: lista 1 (2no failed: last), r5 2, ..., r0 7, 2no 8
    d = [7, 1, 1, 1, 1, 1, 1, 1]  # |rank difference| of 2no, lista, r5..r0
    assert got["spearman"] == pytest.approx(1 - 6 * sum(x * x for x in d) / (8 * 63))
    assert got["spearman_random"] == pytest.approx(1.0)  # the random genotypes keep their order
    assert got["median_delta_db"] == pytest.approx(1.0) and got["within_1db"] == 1.0  # the 7 both trained (lista: 0, the rest: +1)
    assert got["top25_overlap"] == 0.5 and got["ref_top5_in_cheap_top25"] == 2  # top quarters {2no, lista} vs {lista, r5}; ref top 5 holds both
    assert got["cost_ratio"] == 4.0


def test_spearman_interval_covers_the_population_rho_95_percent_of_the_time():
    """Simulated coverage of the true Spearman rho of a bivariate normal ((6/pi) asin(r/2)) at the sizes the fidelity
    studies have (8 and 38 networks); too narrow or too wide an interval leaves [0.92, 0.98]."""
    from nasdun.runs.ranks import spearman, spearman_interval

    rng = np.random.default_rng(0)
    for r in (0.5, 0.9):
        true = 6 / np.pi * np.arcsin(r / 2)
        for n in (8, 38):
            x = rng.standard_normal((2000, n))
            y = r * x + np.sqrt(1 - r * r) * rng.standard_normal((2000, n))
            bounds = [spearman_interval(spearman(a, b), n) for a, b in zip(x, y, strict=True)]
            assert 0.92 <= np.mean([low <= true <= high for low, high in bounds]) <= 0.98, (r, n)
    low, high = spearman_interval(0.548, 8)
    assert low < 0 < 0.548 < high < 0.95  # wide at 8 networks: it takes in no correlation at all
    assert all(np.isnan(spearman_interval(0.9, 3))) and all(np.isnan(spearman_interval(float("nan"), 20)))


def test_spearman_without_the_reference_failures():
    from analysis.studies.fidelity import spearman_ref_ok

    names = ["a", "b", "c", "d", "e"]
    ref = pd.DataFrame({"val_nmse_db": [-9.0, -7.0, -5.0, float("nan"), -8.0], "status": ["ok", "ok", "ok", "failed", "ok"]}, index=names)
    cheap = pd.DataFrame({"val_nmse_db": [-4.0, -3.0, -2.0, -6.0, -1.0], "status": ["ok"] * 5}, index=names)
    ok = ["a", "b", "c", "e"]  # d left out; over the rest: pandas' own rank correlation
    assert spearman_ref_ok(ref, cheap) == pytest.approx(ref.loc[ok, "val_nmse_db"].rank().corr(cheap.loc[ok, "val_nmse_db"].rank()))
    assert spearman_ref_ok(ref.assign(status="ok", val_nmse_db=[-9.0, -7.0, -5.0, -6.5, -8.0]), cheap) != spearman_ref_ok(ref, cheap)


@pytest.mark.slow
def test_fidelity_study_tables_costs_and_cache(tmp_path):
    from analysis.studies.fidelity import run_fidelity

    sh = tmp_path / "sh.yaml"
    sh.write_text("patience: 20\nmax_iters: 40\nbatch_size: 64\nrungs: [1]\neta: 2\n")
    ref40 = tmp_path / "ref40.yaml"  # the reference: sh without its rung
    ref40.write_text("patience: 20\nmax_iters: 40\nbatch_size: 64\n")
    short = tmp_path / "short.yaml"
    short.write_text("patience: 10\nmax_iters: 10\nbatch_size: 64\n")
    out = tmp_path / "fid"
    table = run_fidelity(3, "small", 3, str(ref40), [str(sh), str(short)], 0, out, options=RunOptions("cpu")).set_index("protocol")
    ref = pd.read_csv(out / "ref40" / "results.csv")
    from search_spaces.presets import existing

    assert len(ref) == 3 + len(existing(3))  # random genotypes plus every hand design
    for name in ("sh", "short"):
        cheap = pd.read_csv(out / name / "results.csv")
        assert table.loc[name, "cost_ratio"] == pytest.approx(ref["iterations"].sum() / cheap["iterations"].sum())
        assert -1 <= table.loc[name, "spearman"] <= 1 and -1 <= table.loc[name, "kendall"] <= 1
    assert table.loc["short", "cost_ratio"] == pytest.approx(4.0)  # 10 vs 40 iterations per stage, every stage capped
    assert table.loc["short", "stages_at_cap"] == 1.0 and "| short |" in (out / "fidelity.md").read_text()
    assert (ref["status"] == "ok").all() and table.loc["short", "spearman_ref_ok"] == pytest.approx(table.loc["short", "spearman"])
    # the reference's share, counted from the iterations: a network that ran K * 3 * 40 capped all of its 3 * K stages
    per_stage = json.loads((out / "ref40" / "run.json").read_text())["stages"]
    assert all(sum(st["iters"] for st in per_stage[n]) == it for n, it in zip(ref["name"], ref["iterations"], strict=True))
    capped = sum(st["iters"] == 40 for sts in per_stage.values() for st in sts) / sum(len(sts) for sts in per_stage.values())
    assert table.loc["sh", "ref_stages_at_cap"] == pytest.approx(capped) and 0 < capped
    full = (ref["iterations"] == 3 * 3 * 40).mean()  # the share of networks that ran the full budget: a lower bound
    assert capped >= full and f"{capped:.0%} of the reference's stages ended at its cap of 40 iterations" in (out / "fidelity.md").read_text()
    # the per-network table: every network, best reference value first, each protocol's own value and status
    nets = pd.read_csv(out / "networks.csv", index_col=0)
    sh_rows = pd.read_csv(out / "sh" / "results.csv").set_index("name")
    assert list(nets.index) == list(ref.sort_values(["val_nmse_db", "name"])["name"])  # no failures at smoke size
    assert nets["reference_val_nmse_db"].tolist() == ref.set_index("name").loc[nets.index, "val_nmse_db"].tolist()
    assert nets["sh_val_nmse_db"].tolist() == sh_rows.loc[nets.index, "val_nmse_db"].tolist()
    assert nets.loc["lista", "neurons"] == "SSS" and nets.loc["alista", "neurons"] == "PPP"
    assert (nets["sh_status"] == "stopped").sum() == len(nets) - math.ceil(len(nets) / 2)  # one halving, eta 2
    stopped = sh_rows.index[sh_rows["status"] == "stopped"][0]
    md = (out / "fidelity.md").read_text()
    assert f"| {stopped} | " in md and f"{sh_rows.loc[stopped, 'val_nmse_db']:.2f} (stopped)" in md
    randoms = ["r000", "r001", "r002"]  # rho without the hand designs: Pearson of the validation ranks
    val_ref = ref.set_index("name").loc[randoms, "val_nmse_db"]
    val_short = pd.read_csv(out / "short" / "results.csv").set_index("name").loc[randoms, "val_nmse_db"]
    assert table.loc["short", "spearman_random"] == pytest.approx(val_ref.rank().corr(val_short.rank()))
    n = len(pd.read_csv(out / "sh" / "results.csv"))
    assert (pd.read_csv(out / "sh" / "results.csv")["status"] == "stopped").sum() == n - math.ceil(n / 2)  # n -> ceil(n / 2) survive
    assert "| sh |" in (out / "fidelity.md").read_text() and (out / "figures" / "rank_sh.png").is_file()
    # rung study: a network's value at the end of layer 1 in the reference's stage records is what
    # a rung after layer 1 compares (sh is ref40 + that rung: its survivors are the top half by it)
    stages = json.loads((out / "ref40" / "run.json").read_text())["stages"]
    at1 = pd.Series({n: [st for st in sts if st["layer"] == 1][-1]["best_val_nmse_db"] for n, sts in stages.items()})
    position = {n: i for i, n in enumerate(ref["name"])}  # ties (same first layer) go to the earlier network
    sh_rows = pd.read_csv(out / "sh" / "results.csv")
    assert set(sh_rows.loc[sh_rows["status"] == "ok", "name"]) == set(sorted(at1.index, key=lambda n: (at1[n], position[n]))[: math.ceil(n / 2)])
    rungs = pd.read_csv(out / "rungs.csv").set_index("layer")
    final = ref.set_index("name")["val_nmse_db"]
    assert list(rungs.index) == [1, 2] and rungs.loc[1, "spearman"] == pytest.approx(at1.rank().corr(final[at1.index].rank()))
    assert "A halving rung after layer t" in (out / "fidelity.md").read_text()
    stamp = (out / "ref40" / "results.csv").stat().st_mtime_ns
    run_fidelity(3, "small", 3, str(ref40), [str(short)], 0, out, options=RunOptions("cpu"))
    assert (out / "ref40" / "results.csv").stat().st_mtime_ns == stamp  # the reference was reused
    # the same genotypes under other training data and order: --seed 1 --genotype-seed 0
    run_fidelity(3, "small", 3, str(ref40), [str(short)], 1, tmp_path / "fid1", options=RunOptions("cpu"), genotype_seed=0)
    other = pd.read_csv(tmp_path / "fid1" / "ref40" / "results.csv").set_index("name")
    first = ref.set_index("name")
    assert list(other.loc[randoms, "genotype"]) == list(first.loc[randoms, "genotype"])
    assert not np.allclose(other.loc[randoms, "val_nmse_db"], first.loc[randoms, "val_nmse_db"])
    assert "genotypes drawn with seed 0" in (tmp_path / "fid1" / "fidelity.md").read_text()


def test_compare_names_each_runs_best_fully_trained_candidate(run, tmp_path, capsys):
    other = table(tmp_path, [(A, -40.0, "stopped", "tpe"), (B, -8.0, "ok", "tpe"), (D, -7.0, "ok", "tpe")], "other")
    assert main(["compare", str(run), str(other), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # run: A (-30) is the best ok row; its test value is -30.1. other: the stopped A is not eligible.
    assert lines[0].endswith("6 candidates, 5 trained to the end (0 stopped early); best by validation t1: val nmse_db -30.00, test nmse_db -30.10")
    assert lines[1].endswith("3 candidates, 2 trained to the end (1 stopped early); best by validation t1: val nmse_db -8.00, test nmse_db -8.10")
    assert lines[2].startswith("top-2: ")


@pytest.mark.slow
def test_report_compares_other_runs(run, tmp_path):
    other = table(tmp_path, [(A, -9.0, "ok", "tpe"), (B, -8.0, "ok", "tpe"), (D, -7.0, "ok", "tpe")], "other")
    _, md_path = build_report(run, tmp_path / "rep", top=2, others=[other])
    text = md_path.read_text()
    assert "## Agreement with other runs (top-k)" in text and "| other | 2 | 2 | 1.000 |" in text


@pytest.mark.slow
def test_promote_trains_the_top_k_on_the_runs_own_data(tmp_path, run):
    from nasdun.orchestration.promotion import run_promote
    from nasdun.runs.training import run_train

    screen = tmp_path / "screen"
    gs = [("lista", preset("lista", 3)), ("2no", preset("2no", 3)), ("dense", preset("dense", 3)), ("lfista", preset("lfista", 3))]
    first = run_train(gs, "small", "smoke", 1, screen, options=RunOptions("cpu")).set_index("name")
    longer = tmp_path / "longer.yaml"
    longer.write_text("patience: 20\nmax_iters: 60\nbatch_size: 64\n")
    table = run_promote(screen, 2, str(longer), tmp_path / "prom", options=RunOptions("cpu")).set_index("name")
    best2 = list(first["val_nmse_db"].astype(float).sort_values().index[:2])
    assert list(table.index) == best2 and list(table["screen_rank"]) == [1, 2]
    # independently: the same two genotypes trained alone with that protocol on seed 1's data
    alone = run_train([(n, dict(gs)[n]) for n in best2], "small", str(longer), 1, tmp_path / "alone", options=RunOptions("cpu")).set_index("name")
    for n in best2:
        assert table.loc[n, "val_nmse_db"] == pytest.approx(float(alone.loc[n, "val_nmse_db"]), abs=1e-6)
        assert table.loc[n, "test_nmse_db"] == pytest.approx(float(alone.loc[n, "test_nmse_db"]), abs=1e-6)
    md = (tmp_path / "prom" / "promote.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| name")]
    assert [line.split("|")[1].strip().strip("*") for line in rows] == list(table.sort_values("rank").index)  # the verdict's order
    assert rows[0].startswith("| **") and "**" not in rows[1]  # its winner marked
    # beside the table, HyperLISTA at the same depth on the same data: no training, three scalars tuned on training data
    from trainers.hyperlista import reference
    from trainers.problems.make import make_problem

    hyper = reference(make_problem("small", 1, batch_size=64), 3)
    assert f"reaches val {hyper['val_nmse_db']:.2f}, test {hyper['test_nmse_db']:.2f} dB" in md
    with pytest.raises(NasdunError, match="has setting values \\[\\]; expected exactly one"):
        run_promote(run, 2, str(longer), tmp_path / "p2", options=RunOptions("cpu"))


@pytest.mark.slow
def test_confirm_retrains_each_runs_top_k_on_fresh_seeds(tmp_path):
    """Two runs' top 2 (one genotype shared) + an anchor, on two fresh seeds: values equal an
    independent training on that seed; mean and std are over seeds; a rerun reads, not trains."""
    from analysis.studies.confirm import run_confirm
    from nasdun.runs.results import read_table
    from nasdun.runs.training import run_train

    g = {n: preset(n, 3) for n in ("lista", "2no", "dense", "lfista", "3no")}
    run_a = run_train([(n, g[n]) for n in ("lista", "2no", "dense")], "small", "smoke", 1, tmp_path / "a", options=RunOptions("cpu"))
    run_b = run_train([(n, g[n]) for n in ("2no", "lfista", "3no")], "small", "smoke", 2, tmp_path / "b", options=RunOptions("cpu"))
    top = {r: list(df.sort_values("val_nmse_db")["name"][:2]) for r, df in (("a", run_a), ("b", run_b))}
    table_ = run_confirm([tmp_path / "a", tmp_path / "b"], 2, [5, 6], "smoke", tmp_path / "conf", against=["meng2021"], options=RunOptions("cpu"))
    table_ = table_.set_index("name")
    finalists = {g[n].hash for r in top for n in top[r]}
    assert set(table_.index) == finalists | {"meng2021"}
    assert table_.loc["meng2021", "from"] == "anchor"
    for r in top:
        for rank, n in enumerate(top[r], 1):
            assert f"{r}#{rank}" in table_.loc[g[n].hash, "from"].split()
    # independently: the first finalist trained alone on seed 6
    h = next(iter(sorted(finalists)))
    by_hash = {x.hash: x for x in g.values()}
    alone = run_train([(h, by_hash[h])], "small", "smoke", 6, tmp_path / "alone", options=RunOptions("cpu"))
    assert table_.loc[h, "test_nmse_db_seed6"] == pytest.approx(float(alone["test_nmse_db"].iloc[0]), abs=1e-6)
    seeds = {s: read_table(tmp_path / "conf" / f"seed{s}").set_index("name") for s in (5, 6)}
    per = np.array([[float(seeds[s].loc[n, "test_nmse_db"]) for s in (5, 6)] for n in table_.index])
    np.testing.assert_allclose(table_["test_nmse_db_mean"], per.mean(1))
    np.testing.assert_allclose(table_["test_nmse_db_std"], per.std(1, ddof=1))
    md = (tmp_path / "conf" / "confirm.md").read_text()
    assert "| a |" in md and "| b |" in md and "meng2021" in md
    stamp = (tmp_path / "conf" / "seed5" / "results.csv").stat().st_mtime_ns
    again = run_confirm([tmp_path / "a", tmp_path / "b"], 2, [5, 6], "smoke", tmp_path / "conf", against=["meng2021"], options=RunOptions("cpu"))
    assert (tmp_path / "conf" / "seed5" / "results.csv").stat().st_mtime_ns == stamp  # read, not trained again
    pd.testing.assert_frame_equal(again.set_index("name"), table_)
    with pytest.raises(NasdunError, match="holds a run of other networks, setting, seed or protocol"):  # not smoke's read as search's
        run_confirm([tmp_path / "a", tmp_path / "b"], 2, [5, 6], "search", tmp_path / "conf", against=["meng2021"], options=RunOptions("cpu"))

    other = pd.read_csv(tmp_path / "b" / "results.csv").assign(setting="noiseless")
    (tmp_path / "c").mkdir()
    other.to_csv(tmp_path / "c" / "results.csv", index=False)
    with pytest.raises(NasdunError, match=r"runs use settings \['noiseless', 'small'\]"):
        run_confirm([tmp_path / "a", tmp_path / "c"], 2, [5], "smoke", tmp_path / "c2", options=RunOptions("cpu"))
    with pytest.raises(NasdunError, match=r"seeds=\[5, 5\] must be distinct"):
        run_confirm([tmp_path / "a"], 2, [5, 5], "smoke", tmp_path / "c3", options=RunOptions("cpu"))
    with pytest.raises(NasdunError, match="holds a run of other networks, setting, seed or protocol"):
        run_confirm([tmp_path / "a"], 1, [5], "smoke", tmp_path / "conf", options=RunOptions("cpu"))


def svg_text(path) -> str:
    return " ".join(t.text or "" for t in ET.parse(path).getroot().iter() if t.tag.endswith("text"))


@pytest.mark.slow
def test_figures_name_run_metric_pool_threshold_and_label_colour_bars(run, tmp_path):
    out = tmp_path / "figs"
    res = run_heatmaps([run], out, top=3, threshold=0.6)
    conn = svg_text(out / "conn_top3.svg")
    assert f"{run.name}: top-3 of 5 by validation nmse_db" in conn and "share of the top-k with this connection" in conn
    assert "threshold" not in conn and "x(k-1), always read" in conn  # no threshold where none applies; the diagonal is marked
    assert "share of the top-k with this lag open" in svg_text(out / "lags_top3.svg")
    avg = threshold_genotype(average(load_runs([run]), 3)[1], 0.6)
    drawn = svg_text(out / "conn_average_top3.svg")
    assert res["average"].loc[3, 1] == float(1 in avg.inputs[2]) and "averaged architecture" in drawn and "threshold 0.6" in drawn
    assert "1: the layer's neuron" in svg_text(out / "neurons_average_top3.svg")  # one genotype: not "share of the top-k"
    assert (
        run_heatmaps([run], tmp_path / "all", top=50)["note"].startswith("the runs hold 5")
        and "not the top-50 asked for" in run_heatmaps([run], tmp_path / "all2", top=50)["note"]
    )


def test_heatmap_arch_draws_connections_lags_and_neurons(tmp_path, capsys):
    assert main(["heatmap", "--arch", "3no", "--layers", "5", "--out", str(tmp_path / "h")]) == 0
    assert sorted(p.name for p in (tmp_path / "h").glob("*.png")) == ["conn_3no.png", "lags_3no.png", "neurons_3no.png"]
    assert "1: lag open" in svg_text(tmp_path / "h" / "lags_3no.svg")
    assert main(["heatmap", "--arch", "lista", "--out", str(tmp_path / "h")]) == 2  # a non-empty --out needs --force
    assert "not empty" in capsys.readouterr().err


def test_best_so_far_keeps_runs_of_one_sampler_apart(run, tmp_path):
    other = table(tmp_path, [(A, -9.0, "ok", "rl"), (B, -40.0, "ok", "rl")], "other")
    curves = best_so_far(load_runs([run, other]))
    assert curves[f"{run.name}: rl"] == [-10.0, -30.0, -30.0, -30.0] and curves["other: rl"] == [-9.0, -40.0]


@pytest.mark.slow
def test_report_opens_with_the_verdict_and_folds_the_configuration(tmp_path):
    rows = [(A, -30.0, "ok", "evolution"), (preset("2no", K), -28.0, "ok", "evolution"), (B, -20.0, "ok", "evolution")]
    run = table(tmp_path, rows)
    df = pd.read_csv(run / "results.csv")
    df["preset"] = ["", "2no", ""]
    write_table(run, df.to_dict("records"))
    (run / "search.yaml").write_text("sampler: evolution\nbudget: 3\n")
    _, md = build_report(run, tmp_path / "rep", top=2)
    text = md.read_text()
    assert text.index("## Did the search beat the hand designs?") < text.index("## Best candidates") < text.index("## Configuration")
    answer = "**the search found a better network than every hand design — best found t0 -30.00 dB (val), -30.10 (test)"
    assert f"{answer} vs best hand design 2NO-LISTA -28.00 dB (val)" in text
    assert "<details><summary>search.yaml</summary>" in text
    with pytest.raises(NasdunError, match="not empty"):
        build_report(run, tmp_path / "rep", top=2)
    build_report(run, tmp_path / "rep", top=2, force=True)


@pytest.mark.slow
def test_fidelity_reference_in_chunks_equals_one_run_and_reports_partial(tmp_path):
    """A reference built in chunks (separate runs, same data) gives each network the value one run gives it."""
    from analysis.studies.fidelity import reference_chunks, run_fidelity

    ref, short = tmp_path / "ref.yaml", tmp_path / "short.yaml"
    ref.write_text("patience: 10\nmax_iters: 30\nbatch_size: 32\n")
    short.write_text("patience: 10\nmax_iters: 10\nbatch_size: 32\n")
    run = dict(setting="small", layers=2, reference=str(ref), protocols=[str(short)], seed=0, options=RunOptions("cpu"))
    whole = run_fidelity(2, out=tmp_path / "one", **run).set_index("protocol")
    one = pd.read_csv(tmp_path / "one" / "ref" / "results.csv").set_index("name")
    from search_spaces.presets import existing

    names, hand = list(one.index), dict(existing(2))  # r000, r001, then the 15 hand designs
    chunks = [[n for n, _ in c] for c in reference_chunks([(n, hand.get(n)) for n in names], 2, 3)]
    assert chunks[:3] == [["lista", "lfista", "r000"], ["dense", "2no", "3no"], ["r001", "meng2021"]]  # hand designs spread
    assert [n for c in chunks[3:] for n in c] == [n for n in hand if n not in ("lista", "lfista", "dense", "2no", "3no", "meng2021")]
    out = tmp_path / "chunked"
    part = run_fidelity(2, out=out, reference_chunk=3, max_chunks=1, **run).set_index("protocol")
    assert sorted(p.name for p in (out / "ref").iterdir()) == ["part00"]  # one chunk now, two left
    total = 2 + len(hand)
    assert part.loc["short", "candidates"] == 3 and part.loc["short", "networks_total"] == total
    assert "over 3 networks (1 random + 2 hand designs)" in (out / "fidelity.md").read_text()
    assert "| 1/5 (at most 1) |" in (out / "fidelity.md").read_text() or "| 0/5 (at most 1) |" in (out / "fidelity.md").read_text()
    assert f"Partial reference: 3 of {total} networks" in (out / "fidelity.md").read_text()
    first = pd.read_csv(out / "ref" / "part00" / "results.csv").set_index("name").loc[chunks[0]]
    cheap = pd.read_csv(out / "short" / "part00" / "results.csv").set_index("name")
    assert sorted(cheap.index) == sorted(chunks[0])  # the cheap protocol trains the networks it is compared on, in the same chunk
    cheap = cheap.loc[chunks[0]]
    assert part.loc["short", "spearman"] == pytest.approx(first["val_nmse_db"].rank().corr(cheap["val_nmse_db"].rank()))
    stamp = (out / "ref" / "part00" / "results.csv").stat().st_mtime_ns
    cheap_stamp = (out / "short" / "part00" / "results.csv").stat().st_mtime_ns
    full = run_fidelity(2, out=out, reference_chunk=3, **run).set_index("protocol")
    assert (out / "ref" / "part00" / "results.csv").stat().st_mtime_ns == stamp  # the finished chunk was reused
    assert (out / "short" / "part00" / "results.csv").stat().st_mtime_ns == cheap_stamp  # and so was the cheap protocol's
    for proto, whole_run in (("ref", one), ("short", pd.read_csv(tmp_path / "one" / "short" / "results.csv").set_index("name"))):
        merged = pd.concat([pd.read_csv(out / proto / f"part{i:02d}" / "results.csv") for i in range(len(chunks))]).set_index("name").loc[names]
        assert np.allclose(merged["val_nmse_db"], whole_run.loc[names, "val_nmse_db"], atol=1e-3)  # same data: the chunk does not matter
        assert list(merged["iterations"]) == list(whole_run.loc[names, "iterations"])
    for column in ("spearman", "kendall", "cost_ratio", "top25_overlap"):
        assert full.loc["short", column] == pytest.approx(whole.loc["short", column])
    assert "Partial" not in (out / "fidelity.md").read_text()
    # the reference as data: the table the run wrote ranks a protocol exactly as the trained reference does
    from analysis.readers.reference import load_reference

    written = load_reference(out / "reference.csv")
    ref_rows = pd.concat([pd.read_csv(out / "ref" / f"part{i:02d}" / "results.csv") for i in range(len(chunks))]).set_index("name")
    assert sorted(written.index) == sorted(names) and list(written.loc[names, "chunk"]) == [i for n in names for i, c in enumerate(chunks) if n in c]
    assert np.allclose(written.loc[names, "val_nmse_db"], ref_rows.loc[names, "val_nmse_db"]) and written.attrs["protocol"] == "ref"
    assert list(written.loc[names, "iterations"]) == list(ref_rows.loc[names, "iterations"])
    assert written.loc["lista", "val_nmse_db_layer2"] == pytest.approx(written.loc["lista", "val_nmse_db"], abs=1e-4)  # the last stage's best
    again = run_fidelity(
        5, "nowhere", 9, "paper", [str(short)], 7, tmp_path / "from-table", options=RunOptions("cpu"), reference_table=out / "reference.csv"
    )
    again = again.set_index("protocol")
    for column in ("spearman", "kendall", "cost_ratio", "top25_overlap", "median_abs_delta_db", "candidates"):
        assert again.loc["short", column] == pytest.approx(full.loc["short", column])  # the study is the table's, not the arguments'
    assert "reference read from the table" in (tmp_path / "from-table" / "fidelity.md").read_text()
    merged_short = pd.concat([pd.read_csv(out / "short" / f"part{i:02d}" / "results.csv") for i in range(len(chunks))]).set_index("name").loc[names]
    delta = (merged_short["val_nmse_db"] - ref_rows.loc[names, "val_nmse_db"]).abs().median()
    assert full.loc["short", "median_abs_delta_db"] == pytest.approx(delta) and (out / "figures" / "frontier.png").is_file()
    bad = written.reset_index().drop(columns=["genotype_obj"])
    bad.loc[bad["name"] == "r000", "chunk"] = 2
    bad.to_csv(tmp_path / "moved.csv", index=False)
    with pytest.raises(NasdunError, match="r000 in another chunk than the study's"):
        run_fidelity(0, "small", 2, "x", [str(short)], 0, tmp_path / "moved", reference_table=tmp_path / "moved.csv")
    short.write_text("patience: 10\nmax_iters: 20\nbatch_size: 32\n")  # the same name, another protocol: not read as the old one
    with pytest.raises(NasdunError, match="part00 holds a run of other networks, setting, seed or protocol"):
        run_fidelity(2, out=out, reference_chunk=3, **run)
    short.write_text("patience: 10\nmax_iters: 10\nbatch_size: 32\n")
    with pytest.raises(NasdunError, match="part00 holds a run of other networks"):  # other chunks: a finished reference is kept
        run_fidelity(2, out=out, reference_chunk=2, **run)
    assert (out / "ref" / "part00" / "results.csv").stat().st_mtime_ns == stamp
    with pytest.raises(NasdunError, match="reference_chunk=-1; expected an integer >= 0"):
        run_fidelity(2, out=out, reference_chunk=-1, **run)
    with pytest.raises(NasdunError, match="a ranking needs at least 3"):
        run_fidelity(2, out=tmp_path / "none", reference_chunk=2, max_chunks=1, **run)
    halving = tmp_path / "halving.yaml"
    halving.write_text("patience: 10\nmax_iters: 10\nbatch_size: 32\nrungs: [1]\neta: 2\n")
    cut = run_fidelity(2, out=out, reference_chunk=3, **{**run, "protocols": [str(halving)]}).set_index("protocol")
    halved = pd.read_csv(out / "halving" / "results.csv")
    assert len(halved) == total and not (out / "halving" / "part00").exists()  # one cohort: halving cuts inside it
    assert cut.loc["halving", "candidates"] == total
    with pytest.raises(NasdunError, match="reference 'halving': a halving protocol ranks inside its cohort"):
        run_fidelity(2, out=tmp_path / "sh", reference_chunk=3, **{**run, "reference": str(halving)})
    assert not (tmp_path / "sh").exists()  # refused before anything is written


def test_the_paper_reference_table_holds_the_networks_fidelity_draws():
    """The shipped `paper` reference (docs/results/fidelity.md): 36 networks whose genotypes are the ones
    `nasdun fidelity` draws at genotype seed 0, K = 8, in the study's chunks of four."""
    from analysis.readers.reference import load_reference
    from analysis.studies.fidelity import _table_parts, reference_chunks, study_networks

    ref = load_reference("paper_small_k8")
    a = ref.attrs
    assert (a["setting"], a["layers"], a["seed"], a["genotype_seed"], a["protocol"]) == ("small", 8, 0, 0, "paper")
    archs = study_networks(32, 8, 0)
    drawn = dict(archs)
    assert len(ref) == 36 and all(drawn[n].to_dict() == g.to_dict() for n, g in ref["genotype_obj"].items())
    from search_spaces.presets import existing

    new_designs = {name for name, g in existing(8) if g.weights != "free" or any(n not in ("soft", "relu", "lrelu") for n in g.neurons)}
    assert new_designs >= {"lista_cpss", "alista", "tilista", "glista"}  # the field's designs of 2026-12-06: not yet trained under paper
    assert set(drawn) - set(ref.index) == {"r030", "r031"} | new_designs  # chunk 9, lost with its machine
    parts = _table_parts(ref, archs, reference_chunks(archs, 32, 4), [Path(f"part{i:02d}") for i in range(len(reference_chunks(archs, 32, 4)))])
    assert [p.name for p, _, _ in parts] == [f"part{i:02d}" for i in range(9)]
    failed = ref[ref["status"] == "failed"]
    assert sorted(failed.index) == ["r008", "r018", "r024"] and list(failed.loc[["r008", "r018", "r024"], "diverged_layer"]) == [3, 6, 8]
    assert ref.loc["2no", "val_nmse_db"] == -23.99 and ref.loc["lista", "iterations"] == 365_170


def test_load_reference_refuses_a_table_of_another_shape(tmp_path):
    from analysis.readers.reference import load_reference

    with pytest.raises(NasdunError, match="'nope' is neither a .csv file nor a shipped reference; expected one of: paper_small_k8"):
        load_reference("nope")
    pd.DataFrame({"name": ["a"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(NasdunError, match="lacks the column"):
        load_reference(tmp_path / "t.csv")


@pytest.mark.slow
def test_a_cheap_protocol_reproduces_its_values_recorded_in_the_paper_reference(tmp_path):
    """`search` trained on one chunk of the `paper` reference's networks (same setting, seed, data) gives the
    validation nmse_db recorded beside the reference (rounded there to 0.01 dB)."""
    from analysis.readers.reference import load_reference
    from analysis.studies.fidelity import reference_chunks, study_networks
    from nasdun.runs.training import run_train

    ref = load_reference("paper_small_k8")
    archs = study_networks(32, 8, 0)
    chunk = reference_chunks(archs, 32, 4)[2]  # lfista, r007, r009 and r008 (a network `paper` trains to divergence)
    nets = [(n, g) for n, g in chunk if n in ("lfista", "r008")]  # two of them: each trains as it would alone
    got = run_train(nets, "small", "search", 0, tmp_path / "search", options=RunOptions("cpu")).set_index("name")
    names = [n for n, _ in nets]
    assert np.allclose(got.loc[names, "val_nmse_db"], ref.loc[names, "search_val_nmse_db"], atol=0.0051)


def test_every_protocol_the_results_pages_name_is_usable_by_name():
    """A protocol a results page quotes (`s2x370`, `ref1000`, `final`, ...) is registered, and so is every protocol
    whose measured agreement the verdict line quotes."""
    import re

    from trainers.protocols import PROTOCOLS, agreement, get_protocol

    text = "".join(p.read_text() for p in (Path(__file__).resolve().parents[1] / "docs").rglob("*.md"))
    named = set(re.findall(r"`((?:s|sh)\d+x\d+|s\d{3}|ref\d+|final|paper|search|smoke)`", text))
    assert {"s2x370", "ref1000", "s2x1000", "final", "paper", "search"} <= named
    for name in named:
        assert get_protocol(name).name == name
    measured = [n for n in PROTOCOLS.names() if agreement(n) is not None]
    assert {"final", "search", "ref1000", "s2x370"} <= set(measured) and agreement("smoke") is None


def test_best_so_far_figure_draws_found_networks_against_each_runs_hand_designs(tmp_path):
    """The hand designs (rows with a preset) are reference lines, not the start of every curve: two runs that begin with
    the same hand designs get distinct found curves, and each run's best hand design is the dashed line's label."""
    from analysis.readers.searchstats import search_figures

    runs = []
    for name, vals in (("a", [-12.0, -9.0, -13.0]), ("b", [-11.5, -14.0, -8.0])):
        rows = [(preset("lista", K), -10.0, "ok", "rl"), (preset("2no", K), -12.5, "ok", "rl")]
        rows += [(g, v, "ok", "rl") for g, v in zip((A, B, C), vals, strict=True)]
        out = table(tmp_path, rows, name)
        df = pd.read_csv(out / "results.csv")
        df["preset"] = ["lista", "2no", "", "", ""]
        df.to_csv(out / "results.csv", index=False)
        runs.append(out)
    drawn = search_figures(load_runs(runs), tmp_path / "figs")
    assert drawn["best_so_far"] == {"a: rl": [-12.0, -12.0, -13.0], "b: rl": [-11.5, -14.0, -14.0]}
    assert drawn["hand_designs"] == {"a": {"LISTA": -10.0, "2NO-LISTA": -12.5}, "b": {"LISTA": -10.0, "2NO-LISTA": -12.5}}
    text = svg_text(tmp_path / "figs" / "best_so_far.svg")
    assert "best hand design (a): 2NO-LISTA -12.50" in text and "LISTA" in text
    assert set(drawn["scatter"]["kind"]) == {"hand design", "found (rl)"}
    assert "extra connections (LWA inputs beyond x(k-1))" in svg_text(tmp_path / "figs" / "nmse_vs_connections.svg")


def test_hand_design_labels_spread_apart_only_where_they_would_overlap():
    from analysis.readers.plots import spread

    values = [-3.53, -3.64, -3.85, -4.37, -5.84]  # three within a label's height of each other, two alone
    placed = spread(values, gap=0.25)
    ordered = sorted(placed)
    assert all(b - a >= 0.25 - 1e-9 for a, b in zip(ordered, ordered[1:], strict=False))
    assert sorted(range(5), key=lambda i: placed[i]) == sorted(range(5), key=lambda i: values[i])  # no label passes another
    assert placed[3:] == values[3:]  # the lone marks keep their labels beside them
    assert sum(placed[:3]) / 3 == pytest.approx(sum(values[:3]) / 3)  # the crowded three centred on their marks
    assert spread([2.0, 2.0, 2.0], 1.0) == [1.0, 2.0, 3.0] and spread([], 1.0) == []


def test_report_figures_have_captions_not_file_names():
    from analysis.readers.report import caption

    assert caption("conn_top8_minus_top4") == "Connections more (red) or less (blue) frequent in the top-8 than in the top-4."
    assert caption("conn_top8") == "How often each connection is open in the top-8."
    assert caption("nmse_vs_layer_small_snr20").startswith("Retraining on small_snr20: test nmse_db_mean")
    assert caption("something_new") == "something_new"


@pytest.mark.parametrize("command", ["fidelity", "confirm"])
def test_studies_that_continue_their_own_work_refuse_a_folder_with_a_users_file(command, tmp_path, capsys):
    from nasdun.interfaces.cli import main

    run = tmp_path / "run"
    if command == "confirm":
        assert main(["train", "--arch", "lista,2no", "--layers", "2", "--protocol", "smoke", "--out", str(run)]) == 0
        capsys.readouterr()
    out = tmp_path / "f"
    out.mkdir()
    (out / "mine.txt").write_text("a user's notes")
    args = {
        "fidelity": ["fidelity", "--reference-table", "paper_small_k8", "--protocols", "smoke", "--out", str(out)],
        "confirm": ["confirm", str(run), "--top-k", "1", "--seeds", "5", "--protocol", "smoke", "--out", str(out)],
    }[command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds files this command did not write (mine.txt)" in err
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


@pytest.mark.parametrize("diff", [0, 3, 99])
def test_heatmap_diff_outside_the_table_is_refused_before_any_figure(run, tmp_path, diff):
    out = tmp_path / "figs"
    with pytest.raises(NasdunError, match=rf"diff={diff}; expected a top-k in 1\.\.5 .* other than top_k=3"):
        run_heatmaps([run], out, top=3, diff=diff)
    assert not out.exists()


def test_a_figure_with_nothing_open_says_so_instead_of_a_grid_of_zeros(tmp_path):
    genotype_heatmap(preset("lista", 6), "lista", tmp_path)
    genotype_heatmap(preset("dense", 6), "dense", tmp_path)
    assert "no extra connection" in svg_text(tmp_path / "conn_lista.svg") and "0.00" not in svg_text(tmp_path / "conn_lista.svg")
    assert "no open lag" in svg_text(tmp_path / "lags_lista.svg")
    assert "no extra connection" not in svg_text(tmp_path / "conn_dense.svg") and "1.00" in svg_text(tmp_path / "conn_dense.svg")


def test_the_scatter_legend_covers_no_point(tmp_path):
    from analysis.readers.plots import scatter_figure

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"n": rng.integers(0, 12, 60), "v": rng.normal(-20, 2, 60), "kind": ["hand design"] * 6 + ["found (rl)"] * 54})
    ax = scatter_figure(df, "n", "v", "kind", tmp_path, "s", "t")
    ax.figure.canvas.draw()
    box = ax.get_legend().get_window_extent()
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    assert len(points) == 60 and not any(box.contains(*ax.transData.transform(p)) for p in points)


def test_the_report_says_when_the_retraining_ran_under_another_protocol_than_the_verdict(tmp_path):
    from analysis.readers.report import _protocol_note
    from nasdun.runs.summary import SearchSummary

    (tmp_path / "retrain.json").write_text(json.dumps({"protocol": "search"}))
    note = _protocol_note(tmp_path, SearchSummary(verdict_protocol="final"))
    assert "under `search`" in note and "under `final`" in note and "--protocol final" in note
    assert _protocol_note(tmp_path, SearchSummary(verdict_protocol="search")) == ""


def test_fidelity_from_a_table_refuses_the_study_options_the_user_set(tmp_path, capsys):
    """With --reference-table the study is the table's: an option that names it, given on the command line (told from
    its parser's default), is refused in one line; the defaults left alone are not."""
    from nasdun.interfaces.cli import main

    table = tmp_path / "missing.csv"
    assert main(["fidelity", "--reference-table", str(table), "--layers", "5", "--seed", "3", "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--layers 5, --seed 3 cannot be given with --reference-table" in err
    assert main(["fidelity", "--reference-table", str(table), "--out", str(tmp_path / "f")]) == 2
    assert "cannot be given" not in capsys.readouterr().err


def test_the_hand_table_counts_the_runs_of_one_seed_as_one_seed(tmp_path):
    """benchmarks/hand_table.py: a seed trained in two runs (a table split in two) gives the table of the whole run:
    the same means, and each network's rank among all the networks of that seed."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("hand_table", root / "benchmarks" / "hand_table.py")
    assert spec is not None and spec.loader is not None
    hand_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hand_table)
    whole = root / "benchmarks" / "data" / "hand-k16-small-seed0.csv"
    df = pd.read_csv(whole)
    (tmp_path / "a.csv").write_text(df.iloc[:7].to_csv(index=False))
    (tmp_path / "b.csv").write_text(df.iloc[7:].to_csv(index=False))
    split = hand_table.table([str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), str(root / "benchmarks" / "data" / "hand-k16-small-seed1.csv")])
    assert split == hand_table.table([str(whole), str(root / "benchmarks" / "data" / "hand-k16-small-seed1.csv")])
    worst = df[df["status"] == "ok"].sort_values("test_nmse_db")["name"].iloc[-1]  # trained at seed 0 only, last of its 12
    assert worst == "lista_cp" and [line for line in split.splitlines() if "| LISTA-CP |" in line][0].endswith("| 12, – |")
    # a seed whose run was not kept, copied to 0.01 dB from its page (*-rounded.csv): its values enter the means as they are
    rounded = df[list(hand_table.ROUNDED)].round(2)
    rounded.to_csv(tmp_path / "seed0-rounded.csv", index=False)
    got = hand_table.table([str(tmp_path / "seed0-rounded.csv"), str(root / "benchmarks" / "data" / "hand-k16-small-seed1.csv")])
    lista = [line for line in got.splitlines() if "| LISTA |" in line][0].split(" | ")
    one = pd.read_csv(root / "benchmarks" / "data" / "hand-k16-small-seed1.csv").set_index("name").loc["lista", "test_nmse_db"]
    zero = rounded.set_index("name").loc["lista", "test_nmse_db"]
    assert lista[3] == f"{(zero + one) / 2:.2f} ± {pd.Series([zero, one]).std():.2f}"
    rounded.drop(columns="val_nmse_db").to_csv(tmp_path / "bad-rounded.csv", index=False)
    with pytest.raises(SystemExit, match="missing val_nmse_db"):
        hand_table.table([str(tmp_path / "bad-rounded.csv")])
    # a network rerun at a seed (here LISTA-CPSS, failed at seed 0, trained again with a restart): the later RUN's row
    rerun = df[df["name"] == "lista_cpss"].assign(status="ok", test_nmse_db=-40.0, test_nmse_db_mean=-41.0, val_nmse_db=-40.5,
                                                  reason="1 restart at half the rate, the last at layer 16 stage 2 (...)")  # fmt: skip
    rerun.to_csv(tmp_path / "rerun.csv", index=False)
    got = hand_table.table([str(whole), str(tmp_path / "rerun.csv")])
    cpss = [line for line in got.splitlines() if "LISTA-CPSS" in line]
    assert len(cpss) == 1 and "| -40.00 | -41.00 | -40.50 |" in cpss[0] and cpss[0].endswith(" 1ʳ |")
    # an image setting's table: the mean test PSNR of its images as a last column, mean ± std over the seeds
    imgs = [df.assign(test_psnr=30.0 + 0.1 * i, seed=i) for i in (0, 1)]
    for i, d in enumerate(imgs):
        d.to_csv(tmp_path / f"img{i}.csv", index=False)
    got = hand_table.table([str(tmp_path / "img0.csv"), str(tmp_path / "img1.csv")])
    assert got.splitlines()[0].endswith("| rank per seed | test PSNR (dB) |") and got.splitlines()[1] == "|---" * 9 + "|"
    assert [line for line in got.splitlines() if "| LISTA |" in line][0].endswith(f"| 30.05 ± {pd.Series([30.0, 30.1]).std():.2f} |")
    before = hand_table.table([str(tmp_path / "rerun.csv"), str(whole)])  # given first, the rerun is replaced by the failure
    assert [line for line in before.splitlines() if "LISTA-CPSS" in line][0].startswith("| – | LISTA-CPSS (seed 0) | failed: diverged")


def test_paired_runs_reports_each_network_s_move_and_the_ranking(tmp_path):
    """benchmarks/paired_runs.py: B − A per network, the median and largest |B − A| and the rank correlations, over the
    networks that finished in both; a network failed in either is listed apart."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("paired_runs", root / "benchmarks" / "paired_runs.py")
    assert spec is not None and spec.loader is not None
    paired_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(paired_runs)
    a = pd.read_csv(root / "benchmarks" / "data" / "hand-k16-small-seed0.csv")
    b = a.copy()
    b.loc[b["name"] == "lista", "test_nmse_db"] -= 10.0  # LISTA, last of the 12 on test, becomes first
    b.loc[b["name"] == "alista", "test_nmse_db"] += 0.02
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    out = paired_runs.paired(str(tmp_path / "a.csv"), str(tmp_path / "b.csv"))
    assert "| LISTA | " in out and "| -10.000 |" in [line for line in out.splitlines() if line.startswith("| LISTA |")][0]
    assert "| LISTA-CPSS | A: failed diverged at layer 16" in out
    ok = a[a["status"] == "ok"]
    rho = spearmanr_of(ok["test_nmse_db"], b.loc[ok.index, "test_nmse_db"])
    summary = out.splitlines()[-1]
    assert summary.startswith("12 networks in both: median |B − A| 0.000 dB test") and "largest 10.000 dB test (LISTA)" in summary
    assert f"Spearman {rho:.3f}" in summary and rho < 1
    with pytest.raises(SystemExit, match="must hold the same networks at one seed"):
        paired_runs.paired(str(tmp_path / "a.csv"), str(root / "benchmarks" / "data" / "hand-k16-small-seed1.csv"))


def spearmanr_of(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y)[0])

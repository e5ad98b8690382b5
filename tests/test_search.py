"""`nasdun search` on a real local Ray (2 CPUs) with a real SQLite Optuna study."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from nasdun.core.errors import NasdunError
from nasdun.interfaces.cli import main
from nasdun.orchestration.asker import TRIES_PER_PLACE
from nasdun.orchestration.driver import SearchConfig, load_config, run_search
from nasdun.orchestration.samplers import SAMPLERS, make_sampler
from search_spaces import Genotype
from trainers.options import RunOptions

USABLE = SAMPLERS.names()  # every registered sampler: each is usable (cmaes is refused, not offered)
MINI = {
    "budget": 4,
    "cohort": 2,
    "setting": "small",
    "protocol": "smoke",
    "layers": 3,
    "seed": 0,
    "baselines": False,
    "promote_top": 0,
    "neurons": ["soft", "relu", "lrelu"],  # the classic space: the counts below were measured on it
    "weights": ["free"],
}  # the samplers' own proposals


@pytest.fixture(scope="module")
def ray_local():
    import ray

    if ray.is_initialized():  # a CLI test before this one (with -k) started its own
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def study_of(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="nasdun", storage=f"sqlite:///{out / 'optuna.db'}")


@pytest.mark.slow
@pytest.mark.parametrize("sampler", USABLE)
def test_mini_search_fills_table_and_study_with_the_same_candidates(sampler, ray_local, tmp_path):
    cfg = SearchConfig(sampler=sampler, sampler_options={"rl": {"batch_size": 2}, "evolution": {"population_size": 2, "sample_size": 1}}, **MINI)
    fig = run_search(tmp_path / "exp", cfg)
    out = tmp_path / "exp"
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 4 and df["hash"].nunique() == 4 and fig["candidates_total"] == 4
    assert (df["status"] == "ok").all() and (df["sampler"] == sampler).all()
    trials = {t.number: t for t in study_of(out).trials}
    for row in df.itertuples():
        t = trials[row.trial_number]
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.value == pytest.approx(row.val_nmse_db)
        curve = json.loads(row.curves)["val_nmse_db"]  # the per-layer curve as intermediate values (optuna-dashboard)
        assert t.intermediate_values == {k: pytest.approx(v) for k, v in enumerate(curve, start=1)} and len(curve) == 3
        assert t.user_attrs["hash"] == row.hash == Genotype.from_json(row.genotype).hash
        assert cfg.space().decode(t.params) == Genotype.from_json(row.genotype)
    trained = {t.user_attrs["hash"] for t in trials.values() if t.state.name == "COMPLETE" and "cached_from" not in t.user_attrs}
    assert trained == set(df["hash"])
    assert json.loads((out / "search.json").read_text())["cohorts"] == 2
    assert yaml.safe_load((out / "search.yaml").read_text())["sampler"] == sampler
    assert study_of(out).metric_names == ["val_nmse_db"]  # the objective is named, not "Objective 0"


@pytest.mark.slow
def test_already_trained_genotypes_are_not_trained_again(ray_local, tmp_path):
    """A space of two genotypes (one optional connection): a budget of 5 trains 2 and says why it stopped;
    every repeat proposal (cached, or made while the original trained) ends with the original's value."""
    cfg = SearchConfig(sampler="random", search_neurons=False, search_lags=False, **{**MINI, "budget": 5})
    fig = run_search(tmp_path / "exp", cfg)
    df = pd.read_csv(tmp_path / "exp" / "results.csv")
    assert len(df) == 2 and df["hash"].nunique() == 2
    assert "only genotypes already trained" in fig["stopped_early"]
    trials = study_of(tmp_path / "exp").trials
    assert not [t.number for t in trials if t.state.name == "RUNNING"]  # proposals made while it trained were told too
    cached = [t for t in trials if "cached_from" in t.user_attrs]
    assert cached and all(t.value == pytest.approx(float(df.set_index("name").loc[t.user_attrs["cached_from"], "val_nmse_db"])) for t in cached)
    # after the first cohort, two asks (cohort 2) found nothing fresh: one while it trained (whatever the number of
    # Tune's polls meanwhile) and one when it had ended; then the search stopped
    assert sum(t.number > df["trial_number"].max() for t in trials) == 2 * TRIES_PER_PLACE * 2


@pytest.mark.slow
def test_resume_after_sigkill_finishes_the_budget_and_continues_evolution(tmp_path):
    """With halving (cohorts of 2 halve after layer 1: one survivor, one stopped, also in redone cohorts), which
    covers the plain case too: the survivor trains on to the last layer."""
    out = tmp_path / "exp"
    config = tmp_path / "c.yaml"
    protocol = str(tmp_path / "sh.yaml")
    (tmp_path / "sh.yaml").write_text("patience: 20\nmax_iters: 20\nbatch_size: 64\nrungs: [1]\neta: 2\n")
    options = {"evolution": {"population_size": 4, "sample_size": 2}}
    config.write_text(yaml.safe_dump({**MINI, "layers": 4, "budget": 14, "sampler": "evolution", "sampler_options": options, "protocol": protocol}))
    cmd = [sys.executable, "-m", "nasdun", "search", "--config", str(config), "--out", str(out), "--num-cpus", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if (out / "results.csv").is_file() and len(pd.read_csv(out / "results.csv")) >= 6:
                break
            assert proc.poll() is None, "search ended before it could be killed"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only, at whatever point it has reached
        proc.wait()
    finally:
        time.sleep(1)
        try:  # Ray helpers the dead driver left behind
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    before = pd.read_csv(out / "results.csv")
    assert 6 <= len(before) < 14
    n_before = len(study_of(out).trials)

    assert main(["search", "--resume", str(out), "--num-cpus", "2"]) == 0  # a new driver (in this process) finishes it
    after = pd.read_csv(out / "results.csv")
    assert len(after) == 14 and after["hash"].nunique() == 14
    pd.testing.assert_frame_equal(after.iloc[: len(before)], before)  # finished rows untouched
    fig = json.loads((out / "search.json").read_text())
    assert fig["resumed"] and fig["candidates_trained"] == 14 - len(before) and fig["session"] == 2
    statuses = {c: sorted(g["status"]) for c, g in after.groupby("cohort")}
    assert all(s == ["ok", "stopped"] for s in statuses.values()), statuses

    # The resumed sampler continued the old one: it had seen at least every trial the killed
    # driver's sampler had seen, and its first new proposal is exactly what an evolution sampler
    # rebuilt from that recorded history prefix proposes (which trials were finished at the
    # ask depends on timing; the prefix each ask used is recorded in the trial).
    study = study_of(out)
    seen_before_kill = max(int(t.user_attrs.get("sampler_history", 0)) for t in study.trials[:n_before])
    first_new = next(t for t in study.trials[n_before:] if "redo_of" not in t.user_attrs)
    history = int(first_new.user_attrs["sampler_history"])
    assert seen_before_kill <= history <= first_new.number
    old = optuna.create_study()
    for t in study.trials[:history]:
        old.add_trial(t)
    rebuilt = make_sampler("evolution", SearchConfig(**{**MINI, "layers": 4}).space().decisions(), 0, {"population_size": 4, "sample_size": 2})
    rebuilt.catch_up(old)
    assert rebuilt.consumed == history and len(rebuilt.population) == 4
    assert first_new.params == rebuilt.propose(rebuilt.rng(first_new.number), first_new.number)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["search", "--sampler", "annealing"], "unknown sampler 'annealing'"),
        (["search", "--budget", "0"], "0 must be >= 1"),
        (["search", "--config", "nosuch.yaml"], "config 'nosuch.yaml' not found"),
        (["search", "--address", "127.0.0.1:1"], "could not reach a Ray cluster at --address '127.0.0.1:1'"),
        (["search", "--setting", "huge"], "unknown setting 'huge'"),
        (["search", "--resume", "/nonexistent/dir"], "holds no search.yaml"),
        (["search", "--config", "paper"], "gpus_per_trial=1.0 per trial but the cluster has 0"),
        (["search", "--start-from", "lista,nosuch"], "start_from 'nosuch': unknown preset 'nosuch'"),
        (["search", "--start-from", "missing.json"], "start_from 'missing.json': architecture file 'missing.json' does not exist"),
    ],
)
def test_bad_search_inputs(args, fragment, capsys, tmp_path):
    code = main([*args, "--out", str(tmp_path / "o")] if "--resume" not in args else args)
    err = capsys.readouterr().err
    ours = [line for line in err.splitlines() if line.startswith("nasdun:")]
    assert code == 2 and len(ours) == 1 and fragment in ours[0]  # Ray itself may log a line on start
    assert not (tmp_path / "o").exists()


def test_bad_config_and_non_empty_out(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampler: evolution\nbudjet: 3\n")
    assert main(["search", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "unknown key(s) ['budjet']" in capsys.readouterr().err
    full = tmp_path / "full"
    full.mkdir()
    (full / "results.csv").write_text("precious")
    assert main(["search", "--out", str(full), "--budget", "2"]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert (full / "results.csv").read_text() == "precious"
    with pytest.raises(Exception, match="budget=0"):
        load_config(None, {"budget": 0})


@pytest.mark.slow
def test_halving_search_prunes_in_the_study(ray_local, tmp_path):
    """`--protocol` with rungs: stopped candidates are PRUNED with their rung value as intermediate value."""
    proto = tmp_path / "sh.yaml"
    proto.write_text("patience: 20\nmax_iters: 40\nbatch_size: 64\nrungs: [1]\neta: 2\n")
    cfg = SearchConfig(**{**MINI, "cohort": 4, "protocol": str(proto)})
    run_search(tmp_path / "exp", cfg)
    df = pd.read_csv(tmp_path / "exp" / "results.csv")
    assert sorted(df["status"]) == ["ok", "ok", "stopped", "stopped"]
    assert set(df.loc[df["status"] == "stopped", "rung_layer"]) == {1} and set(df.loc[df["status"] == "ok", "rung"]) == {1}
    trials = {t.number: t for t in study_of(tmp_path / "exp").trials}
    for row in df.itertuples():
        t = trials[row.trial_number]
        if row.status == "stopped":
            assert t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values == {1: pytest.approx(row.val_nmse_db)}
        else:
            assert t.state == optuna.trial.TrialState.COMPLETE
    sampler = make_sampler("evolution", cfg.space().decisions(), 0, {"population_size": 4, "sample_size": 2})
    sampler.catch_up(study_of(tmp_path / "exp"))
    assert len(sampler.population) == 4  # pruned candidates join the population with their rung value


def test_recover_redoes_interrupted_cohorts_whole_and_in_order(tmp_path):
    """After a kill, each in-flight cohort is queued again with the same members in the same order."""
    from nasdun.orchestration.driver import Experiment

    cfg = SearchConfig(sampler="random", **{**MINI, "layers": 5, "budget": 10})
    out = tmp_path / "exp"
    out.mkdir()
    first = Experiment.open(out, cfg)
    a = first.ask_cohort(3)
    b = first.ask_cohort(2)
    cut = first.study.ask()  # killed inside ask_cohort: one member asked, the cohort never sent
    first.asker.decode(cut)
    cut.set_user_attr("cohort", first.next_cohort)
    first.asker.decode(first.study.ask())  # killed before its cohort was even set
    done = a[1]  # its row was written just before the kill, the study was not told
    from nasdun.runs.results import candidate_row, write_table
    from trainers.rows import failed_metrics

    write_table(
        out,
        [candidate_row("t00001", done[1], failed_metrics(status="ok", val_nmse_db=-3.0, test_nmse_db=-3.1), trial_number=done[0], cohort=0)],
    )
    del first  # the driver dies: trials stay RUNNING

    again = Experiment.open(out, cfg)
    rec = again.recover()
    assert rec == {"told_from_table": 1, "requeued": 4, "dropped_unasked": 2}
    assert [[g.hash for _, g in members] for _, members in again.pending] == [[a[0][1].hash, a[2][1].hash], [g.hash for _, g in b]]
    assert [c for c, _ in again.pending] == [0, 1]  # their own cohorts; cohort 2 was cut short
    # the same trials again, not new ones: the rows get the names an uninterrupted search gives them
    assert [[n for n, _ in members] for _, members in again.pending] == [[a[0][0], a[2][0]], [n for n, _ in b]]
    trials = study_of(out).trials
    assert len(trials) == cut.number + 2  # nothing enqueued
    assert trials[done[0]].state.name == "COMPLETE" and trials[done[0]].value == -3.0
    assert trials[cut.number].state.name == trials[cut.number + 1].state.name == "FAIL"
    assert all(trials[n].state.name == "RUNNING" and "redo_of" not in trials[n].user_attrs for _, m in again.pending for n, _ in m)
    assert again.next_cohort == 3
    _, members = again.pending.pop(0)  # a worker reports the redone cohort: its own trials are told
    rows = again.complete(0, members, {"candidates": [{"status": "ok", "val_nmse_db": -1.0 - i, "curves": {}} for i in range(2)]})
    assert [r["name"] for r in rows] == [f"t{a[0][0]:05d}", f"t{a[2][0]:05d}"]
    assert [study_of(out).trials[n].value for n, _ in members] == [-1.0, -2.0]


@pytest.mark.slow
def test_time_limit_stops_new_cohorts_and_resume_lifts_it(ray_local, tmp_path):
    """`minutes`: no cohort starts after the limit; a resume with --minutes 0 finishes the budget."""
    out = tmp_path / "exp"
    fig = run_search(out, SearchConfig(sampler="random", minutes=1e-6, **MINI))
    assert fig["candidates_total"] == 0 and "time limit of 1e-06 min" in fig["stopped_early"]
    fig = run_search(out, resume=True, overrides={"minutes": 0.0})
    assert fig["candidates_total"] == 4 and not fig["stopped_early"]
    assert len(pd.read_csv(out / "results.csv")) == 4
    with pytest.raises(Exception, match="minutes=-1"):
        SearchConfig(minutes=-1)


@pytest.mark.slow
def test_start_from_proposes_the_given_genotypes_first(ray_local, tmp_path):
    """Hand designs seed the search: proposed first, in order, trained, and in the sampler's population."""
    from search_spaces import preset

    options = {"evolution": {"population_size": 4, "sample_size": 2}}
    cfg = SearchConfig(sampler="evolution", sampler_options=options, start_from=("lista", "2no", "3no"), **MINI)
    run_search(tmp_path / "exp", cfg)
    df = pd.read_csv(tmp_path / "exp" / "results.csv").sort_values("trial_number")
    starts = [preset(n, 3).hash for n in ("lista", "2no", "3no")]
    assert list(df["hash"][:3]) == starts and df["hash"].nunique() == 4
    assert list(df["cohort"][:2]) == [0, 0] and df["cohort"].iloc[2] == 1
    trials = study_of(tmp_path / "exp").trials
    assert [t.user_attrs.get("start_from", False) for t in trials] == [True, True, True, False]
    sampler = make_sampler("evolution", cfg.space().decisions(), 0, options["evolution"])
    sampler.catch_up(study_of(tmp_path / "exp"))
    assert set(starts) <= {cfg.space().decode(obs.params).hash for obs in sampler.population}

    no_lags = SearchConfig(search_lags=False, start_from=("lista", "2no"), **MINI)
    with pytest.raises(Exception, match="start_from '2no': genotype [0-9a-f]{12} uses choices outside this search space"):
        no_lags.resolve()


def test_recover_fails_enqueued_trials_and_proposes_unfinished_start_genotypes(tmp_path):
    """A kill between enqueue and ask leaves a WAITING trial: it is failed, and the start genotypes
    that never reached a worker are proposed again, in order."""
    from nasdun.orchestration.driver import Experiment
    from search_spaces import preset

    cfg = SearchConfig(sampler="random", start_from=("lista", "2no", "3no"), **MINI)
    out = tmp_path / "exp"
    out.mkdir()
    first = Experiment.open(out, cfg)
    lista = first.ask_cohort(1)
    first.study.enqueue_trial(cfg.space().encode(preset("2no", 3)), user_attrs={"start_from": True})  # killed here
    del first
    again = Experiment.open(out, cfg)
    assert again.recover() == {"told_from_table": 0, "requeued": 1, "dropped_unasked": 0}
    assert [g.hash for _, g in again.pending[0][1]] == [lista[0][1].hash]
    nxt = again.ask_cohort(2, in_flight=2)  # the redone cohort is in flight beside it
    assert [g.hash for _, g in nxt] == [preset("2no", 3).hash, preset("3no", 3).hash]
    assert [n for n, _ in again.pending[0][1]] == [lista[0][0]]  # LISTA is trained again as its own trial
    assert [t.state.name for t in study_of(out).trials[:4]] == ["RUNNING", "FAIL", "RUNNING", "RUNNING"]


@pytest.mark.slow
def test_promotion_phase_trains_the_top_k_and_resume_reads_it_back(ray_local, tmp_path, capsys):
    """`--promote-top 2`: after the search, its top 2 found networks by validation and every hand design trained with
    the longer protocol on the search's own data, equal to an independent training of them; the verdict (last line,
    search.json) is computed there and names both protocols. A resume with the same finalists reads the promotion
    back, a resume that trains more candidates keeps the old one."""
    from nasdun.runs.training import run_train
    from nasdun.runs.verdict import judge

    out, longer = tmp_path / "exp", tmp_path / "longer.yaml"
    longer.write_text("patience: 10\nmax_iters: 30\nbatch_size: 64\n")  # longer than smoke's 20 per stage
    from nasdun.runs.verdict import hand_designs

    args = ["--sampler", "random", "--budget", "17", "--cohort", "3", "--setting", "small", "--protocol", "smoke", "--layers", "3"]
    promote = ["--promote-top", "2", "--promote-hand", "4", "--promote-protocol", str(longer), "--precision", "bf16"]
    assert main(["search", *args, *promote, "--out", str(out)]) == 0
    df = pd.read_csv(out / "results.csv").sort_values(["val_nmse_db", "hash"])
    hand = df["preset"].fillna("") != ""
    assert hand.sum() == len(hand_designs(3, 2)) == 13  # the hand designs distinct at K = 3
    best2 = list(df[~hand & (df["status"] == "ok")]["name"][:2])
    best4 = list(df[hand & (df["status"] == "ok")]["name"][:4])  # --promote-hand 4: the hand designs that screened best
    prom = pd.read_csv(out / "promoted" / "promote.csv").set_index("name")
    assert list(prom.index) == best2 + best4  # found by value, then the chosen hand designs by value
    chosen = df.set_index("name").loc[list(prom.index)]
    finalists = [(n, Genotype.from_json(g)) for n, g in zip(chosen.index, chosen["genotype"], strict=True)]
    alone = run_train(finalists, "small", str(longer), 0, tmp_path / "alone", options=RunOptions("cpu", "bf16")).set_index("name")
    for n in prom.index:  # the promotion keeps the search's precision (bf16) and data; bf16 GEMMs of another cohort size
        # may round otherwise on a CPU without native bf16 (3e-4 dB seen on an EPYC without AVX-512): a bf16 tolerance
        assert prom.loc[n, "val_nmse_db"] == pytest.approx(float(alone.loc[n, "val_nmse_db"]), abs=1e-2)
    assert (pd.read_csv(out / "promoted" / "results.csv")["precision"] == "bf16").all()
    # trained as the search's cohorts were: two cohorts side by side on the two Ray workers; nothing of them left behind
    assert json.loads((out / "promoted" / "run.json").read_text())["workers"] == 2
    assert not [p.name for p in (out / "promoted").iterdir() if p.name.startswith(("cohort-", "ckpt-", "checkpoint"))]
    saved = json.loads((out / "search.json").read_text())
    fig, expected = saved["promoted"], judge(prom.reset_index().to_dict("records"))
    assert fig["verdict_best_found"] == expected["best_found"] and fig["verdict_gain_db"] == pytest.approx(expected["gain_db"])
    assert not fig["reused"] and fig["found"] == 2 and fig["hand_designs"] == 4 and fig["hand_designs_screened"] == 13
    printed = capsys.readouterr().out.strip().splitlines()
    assert "promoted the top 2 found networks and 4 hand designs with longer: trained in" in printed[-2]  # the protocol by its name
    assert printed[-1] == saved["verdict"] and printed[-1].startswith(expected["verdict"])  # the answer and its numbers, first
    assert " (under longer, which is not measured against paper; pooled nmse_db; screening under smoke;" in printed[-1]  # then provenance
    n_found = int((~hand & (df["status"] == "ok")).sum())  # the found networks that finished screening
    assert fig["found_screened"] == n_found > 2
    assert f"; found networks: the top 2 of {n_found} by screening; hand designs: the 4 of 13 that screened best; HyperLISTA" in printed[-1]

    stamp = (out / "promoted" / "params.pt").stat().st_mtime_ns
    assert main(["search", "--resume", str(out)]) == 0
    assert json.loads((out / "search.json").read_text())["promoted"]["reused"]
    assert (out / "promoted" / "params.pt").stat().st_mtime_ns == stamp
    assert main(["search", "--resume", str(out), "--budget", "19", "--promote-top", "3"]) == 0
    assert len(pd.read_csv(out / "promoted" / "promote.csv")) == 3 + 4
    assert list(pd.read_csv(out / "promoted.1" / "promote.csv")["name"])[:2] == best2  # the first promotion is kept
    assert main(["search", "--resume", str(out), "--promote-top", "-1"]) == 2


@pytest.mark.slow
def test_one_slot_search_is_reproducible_end_to_end(ray_local, tmp_path):
    """With one cohort at a time, evolution sees the same history at every ask: two runs give the same
    genotypes in the same order with bit-equal values (several slots may not: docs/search.md)."""
    options = {"evolution": {"population_size": 2, "sample_size": 2}}
    cfg = SearchConfig(sampler="evolution", sampler_options=options, max_concurrent=1, **{**MINI, "budget": 4})
    for name in ("a", "b"):
        run_search(tmp_path / name, cfg)
    a, b = (pd.read_csv(tmp_path / name / "results.csv").sort_values("trial_number") for name in ("a", "b"))
    assert list(a["hash"]) == list(b["hash"]) and a["hash"].nunique() == 4
    assert list(a["val_nmse_db"]) == list(b["val_nmse_db"]) and list(a["test_nmse_db"]) == list(b["test_nmse_db"])
    # the second cohort ran in the worker that trained the first (Tune reuses it): it trains as a fresh process would
    from nasdun.runs.training import run_train

    last = a[a["cohort"] == a["cohort"].max()]
    nets = [(n, Genotype.from_json(g)) for n, g in zip(last["name"], last["genotype"], strict=True)]
    alone = run_train(nets, "small", "smoke", 0, tmp_path / "alone", options=RunOptions("cpu")).set_index("name")
    assert len(last) == 2 and list(last["val_nmse_db"]) == pytest.approx(list(alone.loc[list(last["name"]), "val_nmse_db"]), abs=1e-6)


def tensorboard_scalars(folder: Path) -> dict[str, dict[int, float]]:
    """Every scalar of the TensorBoard event files in ``folder``, read from their records (length, crc, event, crc)."""
    import struct

    from tensorboardX.proto import event_pb2

    out: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                out.setdefault(v.tag, {})[event.step] = v.simple_value
    return out


@pytest.mark.slow
def test_track_tensorboard_logs_every_candidate_and_the_best_so_far(ray_local, tmp_path):
    out = tmp_path / "exp"
    fig = run_search(out, SearchConfig(sampler="random", **{**MINI, "budget": 6, "baselines": True, "track": ("tensorboard",)}))
    df = pd.read_csv(out / "results.csv", keep_default_na=False)
    logged = tensorboard_scalars(out / "tensorboard")
    found, hand = df[df["preset"] == ""], df[df["preset"] != ""]
    assert len(hand) >= 3 and len(found) >= 1
    assert logged["candidate/val_nmse_db"] == {int(r.trial_number): pytest.approx(r.val_nmse_db) for r in found.itertuples()}
    for r in hand.itertuples():
        assert logged[f"hand_design/{r.preset.replace('=', '_')}"] == {int(r.trial_number): pytest.approx(r.val_nmse_db)}
    best = logged["search/best_val_nmse_db"]
    assert best[max(best)] == pytest.approx(found["val_nmse_db"].astype(float).min()) and fig["finished"]
    with pytest.raises(NasdunError, match="track 'wandb'; expected some of: tensorboard, mlflow"):
        SearchConfig(track=("wandb",)).resolve()


@pytest.mark.slow
def test_ctrl_c_names_the_resume_command_exits_130_and_the_resume_finishes(tmp_path):
    """A real SIGINT to the search's process group (what Ctrl-C in a terminal sends) while cohorts train: one
    `nasdun:` line naming `nasdun search --resume DIR`, exit status 130, not Ray's Tuner.restore advice, no
    `xnan`; search.json holds what finished; the resume trains the rest of the budget."""
    out, config = tmp_path / "exp", tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**MINI, "layers": 4, "budget": 10, "sampler": "random", "max_concurrent": 1}))
    cmd = [sys.executable, "-m", "nasdun", "search", "--config", str(config), "--out", str(out), "--num-cpus", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not ((out / "results.csv").is_file() and len(pd.read_csv(out / "results.csv")) >= 2):
            assert proc.poll() is None, "search ended before it could be interrupted"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        time.sleep(1)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    ours = [line for line in stderr.splitlines() if line.startswith("nasdun:")]
    assert proc.returncode == 130, stderr[-2000:]
    assert ours == [f"nasdun: interrupted; what finished is kept: continue with `nasdun search --resume {out}`"]
    assert "Tuner.restore" not in stderr + stdout and "xnan" not in stdout
    kept = pd.read_csv(out / "results.csv")
    assert 2 <= len(kept) < 10 and json.loads((out / "search.json").read_text())["finished"] is False
    assert main(["search", "--resume", str(out), "--num-cpus", "2"]) == 0
    after = pd.read_csv(out / "results.csv")
    assert len(after) == 10 and after["hash"].nunique() == 10
    # the interrupted cohort was trained again as its own trials: names run t00000..t00009 with no gap
    assert sorted(after["name"]) == [f"t{n:05d}" for n in range(10)] and sorted(after["trial_number"]) == list(range(10))
    assert all(t.state.name == "COMPLETE" for t in study_of(out).trials)


SMALL_OPTIONS = {
    "evolution": {"population_size": 2, "sample_size": 2},
    "rl": {"batch_size": 2},
    "tpe": {"n_startup_trials": 2},
    "nsga2": {"population_size": 2},
    "predictor": {"startup": 2, "pool": 40, "ensemble": 2},
}


@pytest.mark.slow
@pytest.mark.parametrize("sampler", USABLE)
def test_a_restarted_driver_proposes_what_the_uninterrupted_one_would(sampler, tmp_path):
    """Every sampler, Optuna's own included (their random state travels in the study): a driver stopped with a
    cohort in flight and started again trains that cohort as the same trials and then proposes the same
    genotypes under the same trial numbers as a driver that never stopped. (Before, a resumed random or tpe
    search began its random sequence again and re-proposed its first genotypes.) No training: values are
    a fixed function of the genotype."""
    from nasdun.orchestration.driver import Experiment

    options = SMALL_OPTIONS.get(sampler, {})
    cfg = SearchConfig(sampler=sampler, sampler_options={sampler: options} if options else {}, **{**MINI, "budget": 12})

    def report(members):
        return {"candidates": [{"status": "ok", "val_nmse_db": -(int(g.hash[:6], 16) % 997) / 50, "curves": {}} for _, g in members]}

    def drive(out: Path, stop_at: int | None) -> list[list[tuple[int, str]]]:
        out.mkdir()
        exp, asked = Experiment.open(out, cfg), []
        for c in range(6):
            members = exp.ask_cohort(2)
            if c == stop_at:  # the driver dies with cohort c in flight
                exp = Experiment.open(out, cfg)
                assert exp.recover()["requeued"] == 2
                cohort, members = exp.pending.pop(0)
                assert cohort == c
            exp.complete(c, members, report(members))
            asked.append([(n, g.hash) for n, g in members])
        return asked

    assert drive(tmp_path / "stopped", 3) == drive(tmp_path / "whole", None)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", USABLE)
def test_two_slot_search_proposes_the_same_cohorts_whatever_finishes_first(sampler, tmp_path):
    """Two cohorts in flight, completed in submission order in one run and newest-first in the other:
    the searcher waits where needed and every cohort gets the same genotypes and values in both.
    (Before cohort histories were fixed by number, the newest-first run proposed cohort 2 from no
    history and cohort 3 from a different one.) The searcher is driven directly; a cohort's values are a fixed
    function of its genotypes (training is deterministic too, and the real worker runs in every other search test)."""
    from ray.tune.search import Searcher

    from nasdun.orchestration.driver import CohortSearcher, Experiment
    from nasdun.runs.progress import ProgressLine

    def report(suggestion: dict) -> dict:
        hashes = [Genotype.from_json(g).hash for g in suggestion["genotypes"]]
        return {"trainer_wall_s": 0.0, "candidates": [{"status": "ok", "val_nmse_db": -(int(h[:6], 16) % 997) / 50, "curves": {}} for h in hashes]}

    options = SMALL_OPTIONS.get(sampler, {})
    cfg = SearchConfig(sampler=sampler, sampler_options={sampler: options} if options else {}, **{**MINI, "budget": 10})
    runs = {}
    for order in ("fifo", "newest_first"):
        out = tmp_path / order
        out.mkdir()
        exp = Experiment.open(out, cfg)
        searcher = CohortSearcher(exp, ProgressLine("test"), in_flight=2)
        running: list[tuple[str, dict]] = []
        waited = 0
        for step in range(100):
            while len(running) < 2:
                suggestion = searcher.suggest(f"trial-{step}-{len(running)}")
                if suggestion is None or suggestion == Searcher.FINISHED:
                    waited += suggestion is None and exp.trained + 2 * len(running) < cfg.budget
                    break
                running.append((f"trial-{step}-{len(running)}", suggestion))
            if not running:
                break
            trial_id, suggestion = running.pop(0 if order == "fifo" else -1)
            searcher.on_trial_complete(trial_id, report(suggestion))
        table = pd.read_csv(out / "results.csv").sort_values("trial_number")
        runs[order] = (table.groupby("cohort")["hash"].apply(list).to_dict(), dict(zip(table["hash"], table["val_nmse_db"], strict=True)))
        if order == "newest_first":
            assert waited > 0  # cohort c waited for cohort c-2 although a slot was free
    assert runs["fifo"][0] == runs["newest_first"][0] and len(runs["fifo"][0]) == 5
    assert runs["fifo"][1] == runs["newest_first"][1]


def test_progress_is_shown_during_the_first_cohort(tmp_path):
    """Workers' `progress` results move the driver's line before any cohort has finished: done/total, share, ETA."""
    import io

    from nasdun.orchestration.driver import CohortSearcher, Experiment
    from nasdun.runs.progress import ProgressLine

    cfg = SearchConfig(sampler="random", **{**MINI, "budget": 4})
    (tmp_path / "exp").mkdir()
    stream = io.StringIO()
    searcher = CohortSearcher(Experiment.open(tmp_path / "exp", cfg), ProgressLine("search", stream=stream, every_s=0), in_flight=2)
    assert searcher.suggest("a") is not None and searcher.suggest("b") is not None
    searcher.on_trial_result("a", {"progress": 0.5, "elapsed_s": 3.0})
    line = stream.getvalue().strip().splitlines()[-1]
    assert line.startswith("search: 0/4 candidates done | 2 cohort(s) training (50%, 0%)") and "ETA ~" in line and "ETA ~?" not in line


def test_trainer_progress_names_layer_stage_iterations_and_eta(small_problem):
    from nasdun.runs.training import trainer_progress
    from search_spaces import preset
    from trainers.population import train_population
    from trainers.protocols import get_protocol

    seen = []
    train_population(
        [preset("lista", 3), preset("2no", 3)], small_problem, get_protocol("smoke"), progress=seen.append, options=RunOptions(minutes=60)
    )
    first, last = seen[0], seen[-1]
    assert (first.layers, first.min_layer, first.stage, first.stages_per_layer) == (3, 1, 1, 3) and 0 <= first.fraction_done < last.fraction_done
    assert first.eta_s() <= 3600 and last.fraction_done == 1.0 and last.eta_s() == 0
    # a long end-to-end pass: the share done keeps growing inside it, by the work its iterations cost (cap x depth)
    from dataclasses import replace

    long_pass = replace(get_protocol("smoke"), lrs=(5e-4,), final_iters=400)
    passes: list = []
    train_population([preset("lista", 3)], small_problem, long_pass, progress=passes.append)
    shares = [p.fraction_done for p in passes]
    assert shares == sorted(shares) and shares[-1] == 1.0
    work = [20 * 1, 20 * 2, 400 * 3]  # layers 1 and 2: one 20-iteration stage each; layer 3: the 400-iteration pass
    inside = [f for p, f in zip(passes, shares, strict=True) if p.min_layer == 3 and f < 1.0]
    assert len(inside) >= 30 and len(set(inside)) == len(inside)  # no stall: each report inside the pass is further on
    assert (work[0] + work[1]) / sum(work) <= inside[0] <= (work[0] + work[1] + 3 * 10) / sum(work)  # within one validation of its start
    line, report = trainer_progress("train")
    import io

    line._stream, line.tty, line.every_s = io.StringIO(), False, 0
    report(seen[len(seen) // 2])
    text = line.stream.getvalue()
    assert "train: layer " in text and " of 3, stage " in text and "/3 | iter " in text and "elapsed, ETA ~" in text


@pytest.mark.parametrize("sampler", ["predictor", "tpe"])
@pytest.mark.slow
def test_a_search_replayed_with_its_own_values_proposes_what_the_real_search_proposed(sampler, ray_local, tmp_path):
    """analysis.studies.surrogate_search scores candidates instead of training them but asks cohorts through the driver's own
    searcher: told the values the real search (2 workers, so two cohorts in flight) trained, it must make the same proposals."""
    from analysis.studies import surrogate_search as surrogate

    cfg = SearchConfig(sampler=sampler, sampler_options={"predictor": {"startup": 2}, "tpe": {"n_startup_trials": 2}}, **{**MINI, "budget": 8})
    run_search(tmp_path / "real", cfg)
    real = pd.read_csv(tmp_path / "real" / "results.csv").sort_values("trial_number")
    values = dict(zip(real["hash"], real["val_nmse_db"], strict=True))
    replay = surrogate.simulate(cfg, lambda g: values[g.hash], tmp_path / "replay", in_flight=2).sort_values("trial_number")
    assert list(replay["trial_number"]) == list(real["trial_number"]) and list(replay["hash"]) == list(real["hash"])
    assert list(replay["cohort"]) == list(real["cohort"]) and replay["val_nmse_db"].tolist() == real["val_nmse_db"].tolist()
    asked = [[(t.number, t.user_attrs["hash"]) for t in study_of(tmp_path / run).trials] for run in ("real", "replay")]
    assert asked[0] == asked[1] and len(asked[0]) >= 8  # repeat proposals (told from the table) included
    lagged = surrogate.simulate(cfg, lambda g: values.get(g.hash, 0.0), tmp_path / "one-in-flight", in_flight=1)  # proposed from more results
    assert list(lagged.sort_values("trial_number")["hash"]) != list(real["hash"])


def test_the_candidates_ratio_is_bootstrapped_over_paired_seeds():
    """The first sampler's median candidates over the best other's; seeds resampled together; a median beyond the
    budget is the budget for the others (the ratio an upper bound) and unknown (infinite) for the first."""
    from analysis.studies.surrogate_search import ratio_interval

    # a needs exactly half of b at every seed: paired resampling keeps the ratio at 0.5 in every resample (unpaired would not)
    paired = ratio_interval({"a": [5, 10, 15, 20, 25], "b": [10, 20, 30, 40, 50], "c": [None] * 5}, "LISTA", budget=60)
    assert paired["rival"] == "b" and paired["ratio"] == paired["low"] == paired["high"] == 0.5 and paired["share_at_most_half"] == 1.0
    # medians: a 30, b 70 (two of five not reached), c never: 30 / 70, the interval around it
    r = ratio_interval({"a": [10, 20, 30, None, 40], "b": [50, 60, None, None, 70], "c": [None] * 5}, "LISTA", budget=80)
    assert r["rival"] == "b" and r["ratio"] == pytest.approx(30 / 70) and not r["bound"]
    assert r["low"] <= r["ratio"] <= r["high"] and 0 < r["share_at_most_half"] < 1
    never = ratio_interval({"a": [None, None, 3], "b": [4, 5, 6]}, "x", budget=10)  # the first's median beyond the budget
    # only resamples that draw seed 2 at least twice (7/27 of them) give a a median (3), and b then 6: exactly 0.5
    assert never["ratio"] == math.inf and never["high"] == math.inf and abs(never["share_at_most_half"] - 7 / 27) < 0.03
    alone = ratio_interval({"a": [1, 2, 3], "b": [None, None, 9]}, "x", budget=10)  # the others' beyond it: at most 2 / 10
    assert alone["bound"] and alone["ratio"] == pytest.approx(0.2) and alone["high"] <= 3 / 9 and alone["share_at_most_half"] == 1.0
    late = ratio_interval({"a": [6, 7, 8], "b": [None, None, 9]}, "x", budget=10)  # at most 0.7: not counted as meeting 0.5
    assert late["ratio"] == pytest.approx(0.7) and late["share_at_most_half"] < 0.1
    with pytest.raises(NasdunError, match="equally many runs"):
        ratio_interval({"a": [1, 2], "b": [1]}, "x", budget=10)


@pytest.mark.slow
def test_training_on_workers_continues_a_killed_run_from_its_checkpoints(ray_local, tmp_path):
    """run_train with workers=2 (the search's promotion; its values equal one cohort's: the promotion test): a run whose
    driver (and its whole Ray) is SIGKILLed mid-way continues from the cohorts' checkpoints to the same bits as an
    uninterrupted run of it."""
    from nasdun.runs.training import run_train
    from search_spaces import preset

    longer = tmp_path / "longer.yaml"
    longer.write_text("patience: 150\nmax_iters: 150\nbatch_size: 64\nlrs: [5.0e-4, 1.0e-4]\n")
    archs = [(n, preset(n, 3)) for n in ("lista", "2no", "alista", "lista_cpss")]
    whole = run_train(archs, "small", str(longer), 0, tmp_path / "whole", options=RunOptions("cpu"), workers=2).set_index("name")
    assert json.loads((tmp_path / "whole" / "run.json").read_text())["workers"] == 2

    cut = tmp_path / "cut"
    script = (
        "import ray, sys; from nasdun.runs.training import run_train; from search_spaces import preset; from trainers.options import RunOptions;"
        "ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False);"
        f"run_train([(n, preset(n, 3)) for n in {[n for n, _ in archs]!r}], 'small', {str(longer)!r}, 0, {str(cut)!r},"
        " RunOptions('cpu', checkpoint_every_s=0), workers=2)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parent.parent, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(cut.glob("ckpt-*.pt"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, as soon as both cohorts have checkpointed
    proc.wait()

    def files() -> set[tuple[str, int]]:
        return {(f.name, f.stat().st_mtime_ns) for f in cut.rglob("*") if f.is_file()}

    seen, deadline = files(), time.monotonic() + 30  # a worker outside the driver's process group may write a moment longer
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = files()
        if now == seen and not list(cut.glob("*.tmp")):
            break
        seen = now
    assert len(list(cut.glob("ckpt-*.pt"))) == 2 and not (cut / "results.csv").exists(), "the run was not cut mid-way"
    import shutil

    shutil.copytree(cut, tmp_path / "foreign", ignore=shutil.ignore_patterns("*.tmp"))  # one made unreadable is refused in one line
    next((tmp_path / "foreign").glob("ckpt-*.pt")).write_bytes(b"not a checkpoint")
    with pytest.raises(NasdunError, match="cannot be read"):
        run_train(archs, "small", str(longer), 0, tmp_path / "foreign", options=RunOptions("cpu"), workers=2)
    resumed = run_train(archs, "small", str(longer), 0, cut, options=RunOptions("cpu"), workers=2).set_index("name")
    for n, _ in archs:
        assert float(resumed.loc[n, "val_nmse_db"]) == float(whole.loc[n, "val_nmse_db"])
        assert float(resumed.loc[n, "test_nmse_db"]) == float(whole.loc[n, "test_nmse_db"])
    assert not list(cut.glob("ckpt-*.pt")) and not list(cut.glob("cohort-*"))

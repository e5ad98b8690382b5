"""Runs that cannot be corrupted: one writer per run, guarded table reads, refused starts leave nothing."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from helpers import drive_search

from nasdun.interfaces.cli import main
from nasdun.orchestration.raywatch import descendants
from trainers.options import RunOptions


def _alive(pid: int, start: int) -> bool:
    from nasdun.orchestration.raywatch import _stat

    st = _stat(pid)
    return st is not None and st[1] == start


SLOW = {"budget": 12, "cohort": 2, "setting": "small", "protocol": "smoke", "layers": 4, "seed": 0, "sampler": "random", "baselines": False,
        "max_concurrent": 1, "promote_top": 0}  # fmt: skip


@pytest.mark.slow
def test_one_writer_per_run_directory_and_search_json_after_every_cohort(tmp_path):
    """A second `search --resume` of a directory being written is refused, naming the holder's PID; reading is not.
    search.json is there while the search runs; after the holder is SIGKILLed the lock is gone and a resume finishes."""
    out, config = tmp_path / "exp", tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(SLOW))
    cmd = [sys.executable, "-m", "nasdun", "search", "--config", str(config), "--out", str(out), "--num-cpus", "2"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    with open(tmp_path / "first.err", "w") as err:
        first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True, env=env)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (out / "search.json").is_file():
            assert first.poll() is None, "the search ended before the test could watch it"
            time.sleep(0.2)
        record = json.loads((out / "search.json").read_text())
        assert record["finished"] is False and record["candidates_total"] >= 2 and record["budget"] == 12
        second = subprocess.run([sys.executable, "-m", "nasdun", "search", "--resume", str(out), "--num-cpus", "2"],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert second.returncode == 2
        ours = [line for line in second.stderr.splitlines() if line.startswith("nasdun:")]
        assert len(ours) == 1 and f"is being written by another nasdun process (PID {first.pid})" in ours[0]
        reader = subprocess.run([sys.executable, "-m", "nasdun", "average", str(out), "--top-k", "2", "--out", str(tmp_path / "a.json")],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert reader.returncode == 0, reader.stderr[-1000:]  # analysis only reads: no lock
        # The driver alone is SIGKILLed: its local Ray (GCS, raylet, workers, and the agents that outlived it by minutes
        # before nasdun.orchestration.raywatch) ends with it.
        ray_procs = descendants(first.pid)
        assert len(ray_procs) >= 3, ray_procs
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        deadline = time.time() + 20
        while time.time() < deadline and (left := {p for p, start in ray_procs.items() if _alive(p, start)}):
            time.sleep(0.5)
        assert not left, f"processes of the killed driver's Ray still running 20 s later: {sorted(left)}"
    finally:
        try:
            os.killpg(first.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        first.wait()
    assert "Token authentication" not in (tmp_path / "first.err").read_text()  # the CLI chose Ray's auth mode: no notice
    time.sleep(1)
    assert main(["search", "--resume", str(out), "--num-cpus", "2"]) == 0  # the dead holder's lock went with it
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 12 and df["hash"].nunique() == 12
    assert json.loads((out / "search.json").read_text())["finished"] is True


def _files(run) -> dict[str, int]:
    """Each file's modification time, but the writer lock's: a resume takes it before it reads (every run nasdun wrote has one)."""
    from nasdun.runs.lock import LOCK_NAME

    return {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != LOCK_NAME}


BAD_TABLES = {
    "garbage": b"\x00\xff\xfe binary \x00\x13 garbage\n\x00",
    "empty": b"",
    "no columns": b"name,status\nt1,ok\n",
    "cut mid-row": None,  # a real table, cut inside its last row
    "letters in a number column": None,
    "a field too many": None,
    "a duplicated row": None,  # a hand-edited table: the row would count twice in every average
    "an unknown status": None,
    "a fractional trial number": None,
}


def _with_column(text: bytes, name: str, value: str) -> bytes:
    """The table with one more column, ``value`` in every row."""
    lines = text.decode().splitlines()
    return ("\n".join([lines[0] + f",{name}"] + [line + f",{value}" for line in lines[1:]]) + "\n").encode()


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("good") / "run"
    assert main(["train", "--arch", "lista,2no,3no", "--layers", "3", "--protocol", "smoke", "--out", str(run)]) == 0
    return run


@pytest.mark.parametrize("kind", list(BAD_TABLES))
@pytest.mark.parametrize("command", ["average", "heatmap", "report", "compare", "export", "search --resume"])
def test_a_corrupt_table_is_one_line_in_every_reader_and_nothing_is_written(kind, command, good_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    text = (run / "results.csv").read_bytes()
    first = text.index(b"\n") + 1
    data = {
        "cut mid-row": text[: len(text) - 200],
        "letters in a number column": text[:first] + text[first:].replace(b"-", b"x", 1),  # the first value of a number column
        "a field too many": text.replace(b",ok,", b",ok,,", 1),  # pandas would otherwise shift every column silently
        "a duplicated row": text + text[first : text.index(b"\n", first) + 1],
        "an unknown status": text.replace(b",ok,", b",done,", 1),
        "a fractional trial number": _with_column(text, "trial_number", "1.5"),
    }.get(kind, BAD_TABLES[kind])
    (run / "results.csv").write_bytes(data)
    (run / "search.yaml").write_text(yaml.safe_dump({**SLOW, "budget": 3, "layers": 3}))
    before = _files(run)
    args = {
        "average": ["average", str(run), "--out", str(tmp_path / "a.json")],
        "heatmap": ["heatmap", str(run), "--out", str(tmp_path / "h")],
        "report": ["report", str(run), "--out", str(tmp_path / "r")],
        "compare": ["compare", str(run), str(good_run)],
        "export": ["export", str(run), "--rank", "1", "--out", str(tmp_path / "n.pt")],
        "search --resume": ["search", "--resume", str(run)],
    }[command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results.csv" in err, err
    assert _files(run) == before  # search.yaml not rewritten, nothing added
    assert not any((tmp_path / n).exists() for n in ("a.json", "h", "r", "n.pt"))


@pytest.mark.slow
def test_a_refused_start_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "o"
    args = ["search", "--budget", "2", "--layers", "3", "--protocol", "smoke", "--num-cpus", "2", "--promote-top", "0", "--out", str(out)]
    assert main([*args, "--storage", "nosuchdb://user@nowhere/x"]) == 2
    assert "cannot be opened" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--storage", f"sqlite:///{tmp_path / 'db.sqlite'}"]) == 0  # the corrected rerun into the same --out works


class Killed(Exception):
    pass


def _same(a, b) -> None:
    import torch

    assert (a.status, a.reason, a.iterations, a.rung, a.rung_layer, a.stages, a.curves) == (
        b.status,
        b.reason,
        b.iterations,
        b.rung,
        b.rung_layer,
        b.stages,
        b.curves,
    )
    assert a.val_nmse_db == b.val_nmse_db and a.test_nmse_db_mean == b.test_nmse_db_mean
    assert a.params.keys() == b.params.keys() and all(torch.equal(a.params[k], b.params[k]) for k in a.params)


@pytest.mark.parametrize("kill_at", [1, 9, 30], ids=["first-validation", "mid-run", "after-the-rung"])
def test_a_killed_trainer_resumes_from_its_checkpoint_bit_for_bit(kill_at, small_problem, tmp_path):
    """Killed after `kill_at` validations (between a report and its checkpoint), restored in a fresh trainer:
    every result (values, curves, stage records, parameters) equals the uninterrupted run's exactly, halving included."""
    from search_spaces import preset
    from trainers.population import train_population
    from trainers.protocols import Protocol

    proto = Protocol(name="sh-test", patience=20, max_iters=40, batch_size=64, rungs=(1,), eta=2)
    gs = [preset(n, 3) for n in ("lista", "2no", "dense", "3no")]
    ref = train_population(gs, small_problem, proto)
    ckpt, seen = tmp_path / "ckpt.pt", []

    def kill(p):
        seen.append(p)
        if len(seen) == kill_at:
            raise Killed

    with pytest.raises(Killed):
        train_population(gs, small_problem, proto, progress=kill, checkpoint=ckpt, options=RunOptions(checkpoint_every_s=0))
    assert ckpt.is_file() or kill_at == 1  # killed before its first save: the resume starts afresh
    resumed = train_population(gs, small_problem, proto, checkpoint=ckpt, options=RunOptions(checkpoint_every_s=0))
    for a, b in zip(ref, resumed, strict=True):
        _same(a, b)
    assert sum(r.status == "stopped" for r in resumed) == 2


def test_a_checkpoint_of_another_run_is_refused(small_problem, tmp_path):
    from nasdun.core.errors import NasdunError
    from search_spaces import preset
    from trainers.population import train_population
    from trainers.protocols import get_protocol

    ckpt, seen = tmp_path / "ckpt.pt", []

    def kill(p):
        seen.append(p)
        if len(seen) == 3:
            raise Killed

    with pytest.raises(Killed):
        train_population(
            [preset("lista", 3)], small_problem, get_protocol("smoke"), progress=kill, checkpoint=ckpt, options=RunOptions(checkpoint_every_s=0)
        )
    with pytest.raises(NasdunError, match="belongs to another run"):
        train_population([preset("2no", 3)], small_problem, get_protocol("smoke"), checkpoint=ckpt)
    import torch

    blob = torch.load(ckpt, weights_only=True)
    torch.save({**blob, "version": 1}, ckpt)  # a checkpoint of an older format: named as such, not as another run
    with pytest.raises(NasdunError, match=r"ckpt.pt' is of format 1, this nasdun reads 2; delete it to start afresh"):
        train_population([preset("lista", 3)], small_problem, get_protocol("smoke"), checkpoint=ckpt)


def test_a_run_written_before_a_protocol_field_existed_is_still_reused(good_run, tmp_path):
    """A run whose run.json lacks a protocol field added later (it held the default then) is the same run; any other
    difference in the protocol is not."""
    import json
    import shutil

    from nasdun.runs.training import holds_run
    from search_spaces import preset

    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    archs = [(n, preset(n, 3)) for n in ("lista", "2no", "3no")]
    meta = json.loads((run / "run.json").read_text())
    assert holds_run(run, archs, "small", 0, "smoke")
    del meta["protocol"]["retries"]
    (run / "run.json").write_text(json.dumps(meta))
    assert holds_run(run, archs, "small", 0, "smoke")
    meta["protocol"]["val_every"] += 10
    (run / "run.json").write_text(json.dumps(meta))
    assert not holds_run(run, archs, "small", 0, "smoke")


@pytest.mark.slow
def test_nasdun_train_killed_and_resumed_writes_the_uninterrupted_table(tmp_path):
    args = ["train", "--arch", "lista,2no,dense", "--layers", "4", "--protocol", "smoke", "--checkpoint-every", "0"]
    assert main([*args, "--out", str(tmp_path / "ref")]) == 0
    run = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "nasdun", *args, "--out", str(run)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoint.pt").is_file():
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "results.csv").exists() and (run / "train.json").is_file()
    assert main(["train", "--resume", str(run)]) == 0
    ref, got = pd.read_csv(tmp_path / "ref" / "results.csv"), pd.read_csv(run / "results.csv")
    cols = ["name", "status", "iterations", "val_nmse_db", "val_nmse_db_mean", "test_nmse_db", "test_nmse_db_mean", "curves"]
    pd.testing.assert_frame_equal(got[cols], ref[cols])  # exact: no tolerance
    assert not (run / "checkpoint.pt").exists()
    assert main(["train", "--resume", str(run)]) == 2  # a finished run has nothing to resume


@pytest.mark.slow
def test_a_requeued_cohort_continues_from_its_checkpoint(tmp_path):
    """A cohort's worker killed mid-training: the same cohort sent again (Ray's retry, or the redo after a driver kill)
    continues from the checkpoint in the run directory and reports exactly what an uninterrupted cohort reports."""
    import io

    from nasdun.orchestration.driver import CohortSearcher, Experiment
    from nasdun.orchestration.searchconfig import SearchConfig
    from nasdun.runs.progress import ProgressLine
    from nasdun.runs.worker import cohort_checkpoint, cohort_report
    from search_spaces import Genotype
    from trainers.population import train_population
    from trainers.problems.make import make_problem
    from trainers.protocols import Protocol

    configs = []
    for name in ("killed", "whole"):
        cfg = SearchConfig(**{**SLOW, "budget": 3, "cohort": 3, "layers": 3, "checkpoint_minutes": 1e-9})
        (tmp_path / name).mkdir()
        searcher = CohortSearcher(Experiment.open(tmp_path / name, cfg), ProgressLine("t", stream=io.StringIO()), in_flight=1)
        configs.append(searcher.suggest("a"))
    killed, whole = configs
    assert killed["genotypes"] == whole["genotypes"] and cohort_checkpoint(killed) != cohort_checkpoint(whole)
    seen = []

    def kill(p):
        seen.append(p)
        if len(seen) == 12:
            raise Killed

    problem = make_problem("small", 0, batch_size=64)
    with pytest.raises(Killed):
        train_population([Genotype.from_json(g) for g in killed["genotypes"]], problem, Protocol(**killed["protocol"]), progress=kill,
                         checkpoint=cohort_checkpoint(killed), options=RunOptions(checkpoint_every_s=0))  # fmt: skip
    assert cohort_checkpoint(killed).is_file()
    a, b = cohort_report(killed), cohort_report(whole)
    drop_time = (
        [{k: v for k, v in c.items() if k != "wall_s"} for c in a["candidates"]],
        [{k: v for k, v in c.items() if k != "wall_s"} for c in b["candidates"]],
    )
    assert drop_time[0] == drop_time[1] and not cohort_checkpoint(killed).exists()  # exact values; only the clock differs


@pytest.mark.slow
def test_a_lost_cohort_does_not_count_and_is_trained_again_on_resume(tmp_path):
    """A cohort whose Ray trial failed for good: its rows say `worker lost`, the budget is filled by other candidates,
    and a resume trains that cohort again (same members, same order)."""
    from nasdun.orchestration.driver import Experiment
    from nasdun.orchestration.searchconfig import SearchConfig

    cfg = SearchConfig(**{**SLOW, "budget": 6, "cohort": 2, "layers": 3})
    first = Experiment.open(tmp_path, cfg)
    drive_search(first, lose={1})
    df = pd.read_csv(tmp_path / "results.csv")
    lost = df[df["reason"].astype(str).str.startswith("worker lost")].sort_values("trial_number")
    assert len(lost) == 2 and set(lost["cohort"]) == {1} and first.trained == 6 and len(df) == 8  # the budget is filled without them
    again = Experiment.open(tmp_path, cfg)  # the resume: recover, then requeue the lost cohort (the driver does this unless --no-retry-failed)
    again.recover()
    assert again.requeue_lost() == 2
    assert [g.hash for _, g in again.pending[0][1]] == list(lost["hash"])  # the same members, in the same order
    drive_search(again)
    after = pd.read_csv(tmp_path / "results.csv")
    assert not after["reason"].astype(str).str.startswith("worker lost").any() and len(after) == 8  # 6 + the 2 retried
    assert set(lost["hash"]) <= set(after[after["status"] == "ok"]["hash"])


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "retrain", "promote", "search"])
def test_every_writing_command_refuses_a_non_empty_out_unless_forced(command, good_run, tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("keep me")
    args = {
        "train": ["train", "--arch", "lista", "--layers", "3", "--protocol", "smoke"],
        "retrain": ["retrain", "--arch", "lista", "--against", "", "--layers", "3", "--settings", "small", "--seeds", "1", "--protocol", "smoke"],
        "promote": ["promote", str(good_run), "--top-k", "1", "--protocol", "smoke"],
        "search": [
            "search",
            "--budget",
            "2",
            "--cohort",
            "2",
            "--layers",
            "3",
            "--protocol",
            "smoke",
            "--no-baselines",
            "--num-cpus",
            "2",
            "--promote-top",
            "0",
        ],
    }[command] + ["--out", str(full)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--force" in err and (full / "keep.txt").read_text() == "keep me"
    assert main([*args, "--force"]) == 0
    assert list(full.rglob("results.csv"))


@pytest.mark.slow
def test_an_address_where_ray_does_not_listen_fails_in_bounded_time(tmp_path, capsys, monkeypatch):
    """A port that accepts TCP but is no Ray GCS (ray.init would retry there for many minutes): one line, in seconds."""
    import socket
    import threading

    import nasdun.orchestration.raycluster

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(8)], daemon=True).start()
    monkeypatch.setattr(nasdun.orchestration.raycluster, "GCS_TIMEOUT_S", 8.0)
    port = server.getsockname()[1]
    try:
        code = main(["search", "--address", f"127.0.0.1:{port}", "--budget", "2", "--out", str(tmp_path / "o")])
    finally:
        server.close()
    err = capsys.readouterr().err
    ours = [line for line in err.splitlines() if line.startswith("nasdun:")]
    assert code == 2 and len(ours) == 1 and f"127.0.0.1:{port}" in ours[0]
    assert "did not answer as a Ray cluster (GCS) within 8 s" in ours[0] or "could not reach a Ray cluster" in ours[0]
    assert not (tmp_path / "o").exists()  # bounded by the probe's own limit (the message says so), not by a clock here


def _search_dir(out, **changes):
    """A finished 8-candidate search (baselines first) written as `nasdun search` writes it."""
    from nasdun.orchestration.driver import Experiment
    from nasdun.orchestration.searchconfig import SearchConfig

    cfg = SearchConfig(**{**SLOW, "budget": 8, "layers": 3, "baselines": True, **changes})
    out.mkdir(parents=True)
    (out / "search.yaml").write_text(yaml.safe_dump(cfg.to_mapping(), sort_keys=False))
    drive_search(Experiment.open(out, cfg))
    return out


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    return _search_dir(tmp_path_factory.mktemp("searched") / "run")


def _study(run):
    import optuna

    return optuna.load_study(study_name="nasdun", storage=f"sqlite:///{run / 'optuna.db'}")


def _cut_table(run):
    (run / "results.csv").write_text("".join((run / "results.csv").read_text().splitlines(keepends=True)[:5]))


def _change_a_value(run):
    df = pd.read_csv(run / "results.csv")
    df.loc[1, "val_nmse_db"] -= 1.5
    df.to_csv(run / "results.csv", index=False)


TAMPER = {
    "study deleted": (lambda run: (run / "optuna.db").unlink(), "the Optuna study is missing or empty but results.csv has 8 rows"),
    "table cut back": (_cut_table, "results.csv is behind the study: 4 finished trial(s) have no row (t00004, t00005, t00006, t00007)"),
    "a value changed": (_change_a_value, "results.csv and the study disagree on 1 trial(s): t00001 (table ok"),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(TAMPER))
def test_a_table_and_study_that_disagree_are_refused_then_repaired(fault, searched, tmp_path, capsys):
    """Study deleted, table cut back, a value edited: the resume is one line naming the lagging side and `nasdun repair`,
    with nothing written; the repair rebuilds it (a cut table row for row, as written) and the resumed search then
    proposes exactly what the untouched run proposes."""
    import shutil

    from nasdun.orchestration.driver import Experiment
    from nasdun.orchestration.searchconfig import SearchConfig

    run = tmp_path / "run"
    shutil.copytree(searched, run)
    tamper, said = TAMPER[fault]
    tamper(run)
    before = _files(run)
    assert main(["search", "--resume", str(run), "--budget", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err and f"run `nasdun repair {run}`" in err, err
    assert _files(run) == before  # no empty optuna.db made, search.yaml untouched

    assert main(["repair", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"repaired {run}: "), out
    if fault == "table cut back":  # every row comes back as written: nasdun keeps the whole row on its trial
        assert (run / "results.csv").read_bytes() == (searched / "results.csv").read_bytes()
        assert "4 row(s) rebuilt from the study" in out
    else:
        assert "the study rebuilt from the table's 8 rows" in out
        trials = {t.number: t for t in _study(run).trials}
        table = pd.read_csv(run / "results.csv")
        assert [trials[int(n)].user_attrs["hash"] for n in table["trial_number"]] == list(table["hash"])
        assert [trials[int(n)].value for n in table["trial_number"]] == pytest.approx(list(table["val_nmse_db"]), abs=1e-12)
    assert main(["repair", str(run)]) == 0 and "nothing to repair" in capsys.readouterr().out

    cfg = SearchConfig(**{**SLOW, "budget": 10, "layers": 3, "baselines": True})
    untouched = tmp_path / "untouched"
    shutil.copytree(searched, untouched)
    for d in (run, untouched):
        exp = Experiment.open(d, cfg)
        exp.recover()
        drive_search(exp)
    assert list(pd.read_csv(run / "results.csv")["hash"]) == list(pd.read_csv(untouched / "results.csv")["hash"])


def test_a_resume_of_a_run_being_written_names_the_writer_not_a_repair(searched, tmp_path, capsys):
    """A writer holds the lock while its table is behind its study (as between a trial's end and its row): a resume
    says the run is being written, by whom, and touches nothing; it does not read the half-written run and advise repair."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(searched, run)
    _cut_table(run)
    hold = "import sys, time; from nasdun.runs.lock import run_lock\nwith run_lock(sys.argv[1]):\n print('held', flush=True); time.sleep(600)"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = _files(run)
        assert main(["search", "--resume", str(run), "--budget", "10"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"is being written by another nasdun process (PID {holder.pid})" in err, err
        assert "repair" not in err
        assert _files(run) == before
    finally:
        holder.kill()
        holder.wait()
    assert main(["search", "--resume", str(run), "--budget", "10"]) == 2  # the holder gone, the cut table is what it is
    assert "results.csv is behind the study" in capsys.readouterr().err


def test_a_forced_train_into_a_run_being_trained_is_refused_before_it_writes(tmp_path):
    """`run_train(overwrite=True)` of other networks into a directory another process is training: refused, naming
    the holder, with the live run's specification (what its resume reads) untouched."""
    from nasdun.core.errors import NasdunError
    from nasdun.runs.training import run_train
    from search_spaces.presets import resolve_archs

    run = tmp_path / "live"
    run.mkdir()
    (run / "train.json").write_text('{"archs": "the live run"}')
    hold = "import sys, time; from nasdun.runs.lock import run_lock\nwith run_lock(sys.argv[1]):\n print('held', flush=True); time.sleep(600)"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(NasdunError, match=f"is being written by another nasdun process \\(PID {holder.pid}\\)"):
            run_train(resolve_archs("lista", 2), "small", "smoke", 0, run, options=RunOptions("cpu"), overwrite=True)
        assert (run / "train.json").read_text() == '{"archs": "the live run"}'
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_a_table_with_repeated_trial_numbers_is_renumbered_and_a_foreign_study_is_refused(searched, tmp_path, capsys):
    """What the old code made of a resume without optuna.db (rows repeating trial numbers 0-7) is refused and
    repaired: the repeats get fresh numbers and names, the study is rebuilt, a resume runs. A fresh search whose
    --storage already holds another run's study is refused before it writes."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(searched, run)
    other = _search_dir(tmp_path / "other", seed=1, baselines=False)
    table = pd.concat([pd.read_csv(searched / "results.csv"), pd.read_csv(other / "results.csv")])
    table.to_csv(run / "results.csv", index=False)
    assert main(["search", "--resume", str(run)]) == 2
    assert "gives trial number(s) 0, 1, 2, 3 and 4 more to more than one row" in capsys.readouterr().err
    assert main(["repair", str(run)]) == 0
    assert "8 row(s) that repeated a trial number renumbered" in capsys.readouterr().out
    fixed = pd.read_csv(run / "results.csv")
    assert list(fixed["trial_number"]) == list(range(16)) and list(fixed["name"]) == [f"t{n:05d}" for n in range(16)]
    assert list(fixed["hash"]) == list(table["hash"])
    assert main(["search", "--resume", str(run), "--budget", "18", "--num-cpus", "2"]) == 0
    assert pd.read_csv(run / "results.csv")["hash"].nunique() == 18

    fresh = tmp_path / "fresh"
    args = ["search", "--budget", "2", "--layers", "3", "--protocol", "smoke", "--out", str(fresh), "--num-cpus", "2", "--promote-top", "0"]
    assert main([*args, "--storage", f"sqlite:///{searched / 'optuna.db'}"]) == 2
    assert "the study already holds 8 finished trial(s) but there is no results table" in capsys.readouterr().err
    assert not fresh.exists()

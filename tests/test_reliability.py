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

from nasdun.cli import main

SLOW = {"budget": 12, "cohort": 2, "setting": "small", "protocol": "smoke", "layers": 4, "seed": 0, "sampler": "random", "baselines": False,
        "max_concurrent": 1}  # fmt: skip


def test_one_writer_per_run_directory_and_search_json_after_every_cohort(tmp_path):
    """A second `search --resume` of a directory being written is refused, naming the holder's PID; reading is not.
    search.json is there while the search runs; after the holder is SIGKILLed the lock is gone and a resume finishes."""
    out, config = tmp_path / "exp", tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(SLOW))
    cmd = [sys.executable, "-m", "nasdun.cli", "search", "--config", str(config), "--out", str(out), "--num-cpus", "2"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (out / "search.json").is_file():
            assert first.poll() is None, "the search ended before the test could watch it"
            time.sleep(0.2)
        record = json.loads((out / "search.json").read_text())
        assert record["finished"] is False and record["candidates_total"] >= 2 and record["budget"] == 12
        second = subprocess.run([sys.executable, "-m", "nasdun.cli", "search", "--resume", str(out), "--num-cpus", "2"],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert second.returncode == 2
        ours = [line for line in second.stderr.splitlines() if line.startswith("nasdun:")]
        assert len(ours) == 1 and f"is being written by another nasdun process (PID {first.pid})" in ours[0]
        reader = subprocess.run([sys.executable, "-m", "nasdun.cli", "average", str(out), "--top-k", "2", "--out", str(tmp_path / "a.json")],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert reader.returncode == 0, reader.stderr[-1000:]  # analysis only reads: no lock
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    time.sleep(1)
    assert main(["search", "--resume", str(out), "--num-cpus", "2"]) == 0  # the dead holder's lock went with it
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 12 and df["hash"].nunique() == 12
    assert json.loads((out / "search.json").read_text())["finished"] is True


BAD_TABLES = {
    "garbage": b"\x00\xff\xfe binary \x00\x13 garbage\n\x00",
    "empty": b"",
    "no columns": b"name,status\nt1,ok\n",
    "cut mid-row": None,  # a real table, cut inside its last row
    "letters in a number column": None,
    "a field too many": None,
}


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
    }.get(kind, BAD_TABLES[kind])
    (run / "results.csv").write_bytes(data)
    (run / "search.yaml").write_text(yaml.safe_dump({**SLOW, "budget": 3, "layers": 3}))
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
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
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before  # search.yaml not rewritten, nothing added
    assert not any((tmp_path / n).exists() for n in ("a.json", "h", "r", "n.pt"))


def test_a_refused_start_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "o"
    args = ["search", "--budget", "2", "--layers", "3", "--protocol", "smoke", "--num-cpus", "2", "--out", str(out)]
    assert main([*args, "--storage", "nosuchdb://user@nowhere/x"]) == 2
    assert "cannot be opened" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--storage", f"sqlite:///{tmp_path / 'db.sqlite'}"]) == 0  # the corrected rerun into the same --out works

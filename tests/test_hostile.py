"""A hostile user, walked mechanically: every command's options (from the parser itself) and every file a user hands in
(problem YAML and arrays, protocol YAML, genotype JSON, search configs, reference tables, run folders), each given a
malformed value. Each must be one line ``nasdun: error: ...``, exit status 2, and nothing created or changed on disk.

The option list is read from ``build_parser()``: an option added later is walked without editing this file (its
numeric and name-valued forms are recognised by its parser type and its name)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nasdun.interfaces.cli import build_parser, main

NUMERIC = {"parse": ["x", "-1", "nan"], "_int_list": ["x", "1,,y", "-3"], "float": ["x", "nan", "-0.5", "inf"]}
NAMES = {  # option -> a value that names nothing of its kind
    "--setting": "bogus_setting", "--settings": "small,bogus_setting", "--protocol": "bogus_protocol",
    "--promote-protocol": "bogus_protocol", "--protocols": "search,bogus_protocol", "--confirm-protocol": "bogus_protocol",
    "--arch": "bogus_arch", "--against": "lista,bogus_arch", "--samplers": "rl,bogus_sampler", "--config": "bogus_config",
    "--precision": "fp7", "--device": "tpu", "--reference-table": "bogus_table", "--image": "bogus_image", "--name": "bogus_name",
    "--start-from": "bogus_arch", "--track": "bogus_tracker", "--rank": "0", "--P": ",",
}  # fmt: skip
SEARCH_ONLY = {"--sampler": "bogus_sampler"}  # average's and heatmap's --sampler filter rows by any label
TINY = ["--budget", "2", "--layers", "3", "--protocol", "smoke", "--num-cpus", "1", "--promote-top", "0"]


def base(command: str, run: Path, out: Path) -> list[str]:
    """The least a command needs besides the option walked, every part valid."""
    return {
        "train": ["train", "--arch", "lista", "--layers", "3", "--protocol", "smoke", "--out", str(out)],
        "search": ["search", *TINY, "--out", str(out)],
        "compare-samplers": ["compare-samplers", "--budget", "2", "--samplers", "random", "--seeds", "0", "--layers", "3", "--protocol", "smoke",
                             "--num-cpus", "1", "--out", str(out)],
        "average": ["average", str(run), "--out", str(out / "avg.json")],
        "heatmap": ["heatmap", str(run), "--out", str(out)],
        "retrain": ["retrain", "--arch", "lista", "--against", "2no", "--settings", "small", "--seeds", "1", "--protocol", "smoke", "--layers", "3",
                    "--out", str(out)],
        "promote": ["promote", str(run), "--protocol", "smoke", "--out", str(out)],
        "confirm": ["confirm", str(run), "--top-k", "2", "--protocol", "smoke", "--seeds", "5", "--out", str(out)],
        "report": ["report", str(run), "--out", str(out)],
        "reconstruct": ["reconstruct", str(run), "--out", str(out)],
        "classical": ["classical", "--setting", "small", "--layers", "3", "--iterations", "10", "--out", str(out)],
        "export": ["export", str(run), "--rank", "1", "--out", str(out / "n.pt2")],
        "repair": ["repair", str(run)],
        "compare": ["compare", str(run), str(run)],
        "fidelity": ["fidelity", "--genotypes", "2", "--layers", "3", "--protocols", "smoke", "--out", str(out)],
        "bench": ["bench", "--seconds", "0.1", "--P", "1", "--layers", "2"],
    }.get(command, [command])  # fmt: skip


def with_option(args: list[str], option: str, value: str) -> list[str]:
    """``args`` with ``option`` set to ``value`` (replaced where present, else added)."""
    if option in args:
        i = args.index(option)
        return [*args[: i + 1], value, *args[i + 2 :]]
    return [*args, option, value]


def walked_cases() -> list[tuple[str, str, str]]:
    """(command, option, bad value) for every option of every command that takes a value."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    cases = []
    for command, parser in sub.choices.items():
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or isinstance(action, argparse._HelpAction):
                continue
            option = action.option_strings[0]
            kind = getattr(action.type, "__name__", None)
            for value in NUMERIC.get(kind or "", []):
                cases.append((command, option, value))
            bad = NAMES.get(option) or (SEARCH_ONLY.get(option) if command in ("search", "compare-samplers") else None)
            if bad is not None:
                cases.append((command, option, bad))
    return cases


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A small finished train run (two networks, K = 3): the run folder handed to the readers."""
    out = tmp_path_factory.mktemp("hostile") / "run"
    assert main(["train", "--arch", "lista,2no", "--layers", "3", "--protocol", "smoke", "--out", str(out)]) == 0
    return out


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                out[str(p)] = (st.st_size, st.st_mtime_ns) if p.is_file() else (0, 0)
    return out


def refused(args: list[str], capsys: pytest.CaptureFixture[str], *roots: Path) -> str:
    before = snapshot(*roots)
    code = main(args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("nasdun: error: "), f"nasdun {' '.join(args)}: exit {code}\n{err[-1500:]}"
    assert "Traceback" not in err
    after = snapshot(*roots)
    assert after == before, f"nasdun {' '.join(args)} left {sorted(set(after) ^ set(before)) or 'changed files'}"
    return lines[0]


@pytest.mark.parametrize("command, option, value", walked_cases())
def test_every_option_of_every_command_refuses_a_malformed_value(command, option, value, run, tmp_path, capsys):
    args = with_option(base(command, run, tmp_path / "out"), option, value)
    message = refused(args, capsys, tmp_path, run)
    assert value.split(",")[-1] in message or option in message or option.lstrip("-").replace("-", "_") in message, message


def test_the_walk_covers_every_command_that_takes_values():
    covered = {c for c, _, _ in walked_cases()}
    assert covered >= {"train", "search", "average", "heatmap", "retrain", "promote", "confirm", "report", "export", "fidelity", "bench", "classical"}


# -- files a user hands in -------------------------------------------------------------------------------------------


def problem_files(root: Path) -> dict[str, Path]:
    """Malformed problem files (each beside valid arrays where it needs them)."""
    np.save(root / "phi.npy", np.random.default_rng(0).normal(size=(8, 16)))
    np.save(root / "nan.npy", np.full((8, 16), np.nan))
    np.save(root / "complex.npy", np.ones((8, 16), dtype=complex))
    np.save(root / "flat.npy", np.ones(16))
    (root / "text.npy").write_text("not an array")
    bodies = {
        "not_yaml": "phi: [unclosed",
        "list": "- phi.npy",
        "no_phi": "synthetic: {p: 0.1, n_train: 512, n_val: 64, n_test: 64}",
        "missing_file": "phi: missing.npy\nsynthetic: {p: 0.1, n_train: 512, n_val: 64, n_test: 64}",
        "nan_phi": "phi: nan.npy\nsynthetic: {p: 0.1, n_train: 512, n_val: 64, n_test: 64}",
        "complex_phi": "phi: complex.npy\nsynthetic: {p: 0.1, n_train: 512, n_val: 64, n_test: 64}",
        "flat_phi": "phi: flat.npy\nsynthetic: {p: 0.1, n_train: 512, n_val: 64, n_test: 64}",
        "text_phi": "phi: text.npy\nsynthetic: {p: 0.1, n_train: 512, n_val: 64, n_test: 64}",
        "bad_p": "phi: phi.npy\nsynthetic: {p: 1.5, n_train: 512, n_val: 64, n_test: 64}",
        "zero_train": "phi: phi.npy\nsynthetic: {p: 0.1, n_train: 0, n_val: 64, n_test: 64}",
        "unknown_key": "phi: phi.npy\nsynthetic: {p: 0.1, n_train: 512, n_val: 64, n_test: 64}\ncolour: blue",
        "bad_basis": "phi: phi.npy\nbasis: wavelet\nsynthetic: {p: 0.1, n_train: 512, n_val: 64, n_test: 64}",
        "bad_snr": "phi: phi.npy\nsnr_db: loud\nsynthetic: {p: 0.1, n_train: 512, n_val: 64, n_test: 64}",
    }
    out = {}
    for name, body in bodies.items():
        (root / f"{name}.yaml").write_text(body)
        out[name] = root / f"{name}.yaml"
    return out


PROTOCOL_BODIES = {
    "val_every_zero": "val_every: 0",
    "negative_lam": "lam: -0.4",
    "nan_diverge": "diverge_db: .nan",
    "inf_lr": "lrs: [.inf, 1.0e-4, 1.0e-5]",
    "text_patience": "patience: ten",
    "unknown_key": "colour: blue",
    "not_mapping": "- 1\n- 2",
    "empty_lrs": "lrs: []",
    "zero_batch": "batch_size: 0",
    "subset_zero": "val_subset: 0",
}


def protocol_file(root: Path, name: str, body: str) -> Path:
    smoke = (Path(__file__).resolve().parent.parent / "trainers" / "protocols" / "smoke.yaml").read_text()
    keys = {line.split(":")[0] for line in body.splitlines() if ":" in line and not line.startswith("-")}
    kept = "\n".join(line for line in smoke.splitlines() if line.split(":")[0] not in keys)
    path = root / f"{name}.yaml"
    path.write_text(body if body.startswith("-") else kept + "\n" + body + "\n")
    return path


@pytest.mark.parametrize("name", sorted(PROTOCOL_BODIES))
@pytest.mark.parametrize("command", ["train", "search", "retrain", "promote", "confirm"])
def test_a_malformed_protocol_file_is_one_line_before_anything_is_written(command, name, run, tmp_path, capsys):
    path = protocol_file(tmp_path, name, PROTOCOL_BODIES[name])
    option = "--protocol" if command != "search" else "--promote-protocol"
    args = with_option(base(command, run, tmp_path / "out"), option, str(path))
    assert path.stem in refused(args, capsys, tmp_path, run)


@pytest.mark.parametrize(
    "name",
    ["not_yaml", "list", "no_phi", "missing_file", "nan_phi", "complex_phi", "flat_phi", "text_phi", "bad_p", "zero_train", "unknown_key",
     "bad_basis", "bad_snr"],
)  # fmt: skip
@pytest.mark.parametrize("command", ["train", "search", "retrain", "classical"])
def test_a_malformed_problem_file_is_one_line_before_anything_is_written(command, name, run, tmp_path, capsys):
    path = problem_files(tmp_path)[name]
    option = "--settings" if command == "retrain" else "--setting"
    refused(with_option(base(command, run, tmp_path / "out"), option, str(path)), capsys, tmp_path, run)


@pytest.mark.parametrize(
    "body",
    ["{", "[]", '{"layers": 3}', '{"layers": 3, "inputs": "x"}', '{"layers": -2, "inputs": [], "neurons": []}', ""],
)
@pytest.mark.parametrize("command", ["train", "retrain", "heatmap"])
def test_a_malformed_genotype_file_is_one_line(command, body, run, tmp_path, capsys):
    path = tmp_path / "g.json"
    path.write_text(body)
    args = with_option(base(command, run, tmp_path / "out"), "--arch", str(path))
    if command == "heatmap":
        args = ["heatmap", "--arch", str(path), "--out", str(tmp_path / "out")]
    refused(args, capsys, tmp_path, run)


@pytest.mark.parametrize("body", ["budget: [", "- 1", "budget: many", "colour: blue", "sampler: bogus", "layers: 0"])
def test_a_malformed_search_config_is_one_line(body, run, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(body)
    refused(["search", "--config", str(path), "--out", str(tmp_path / "out")], capsys, tmp_path, run)


def bad_runs(root: Path, good: Path) -> dict[str, Path]:
    """Run folders a reader must refuse: missing, a file, empty, a table that is not one, duplicated or foreign rows."""
    import pandas as pd

    out = {"missing": root / "nowhere", "a_file": root / "file.txt", "empty": root / "empty"}
    out["a_file"].write_text("x")
    out["empty"].mkdir()
    df = pd.read_csv(good / "results.csv")
    for name, table in {
        "not_csv": None,
        "no_rows": df.iloc[:0],
        "duplicated": pd.concat([df, df.iloc[:1]]),
        "bad_status": df.assign(status="maybe"),
        "text_metric": df.assign(val_nmse_db="low"),
        "no_hash": df.drop(columns=["hash"]),
    }.items():
        d = root / name
        d.mkdir()
        if table is None:
            (d / "results.csv").write_bytes(b"\x00\x01garbage\xff")
        else:
            table.to_csv(d / "results.csv", index=False)
        out[name] = d
    return out


READERS = ["average", "heatmap", "report", "export", "repair", "compare", "promote", "confirm"]


@pytest.mark.parametrize("which", ["missing", "a_file", "empty", "not_csv", "no_rows", "duplicated", "bad_status", "text_metric", "no_hash"])
@pytest.mark.parametrize("command", READERS)
def test_a_malformed_run_folder_is_one_line_in_every_reader(command, which, run, tmp_path, capsys):
    bad = bad_runs(tmp_path, run)[which]
    args = [str(bad) if a == str(run) else a for a in base(command, run, tmp_path / "out")]
    refused(args, capsys, tmp_path, run)


# -- places a user cannot write -----------------------------------------------------------------------------------


UNWRITABLE = Path("/sys/nasdun-hostile")  # refused even to root (sysfs); where /sys is absent the cases are skipped


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="no /sys on this system")
@pytest.mark.parametrize("command", ["train", "search", "average", "heatmap", "retrain", "report", "export", "classical"])
def test_an_unwritable_out_is_named_as_such(command, run, tmp_path, capsys):
    args = base(command, run, UNWRITABLE)
    message = refused(args, capsys, tmp_path, run)
    assert f"cannot use '{UNWRITABLE}" in message and "expected a place this user can write" in message, message
    assert not UNWRITABLE.exists()


@pytest.mark.parametrize("command", ["train", "search", "retrain", "report", "classical", "heatmap"])
def test_an_out_below_a_file_is_one_line(command, run, tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    refused(base(command, run, tmp_path / "afile" / "sub"), capsys, tmp_path, run)


# -- a read-only run folder ------------------------------------------------------------------------------------------


def _as_unprivileged(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``nasdun ARGS`` as a user permission bits apply to: this user, or 'nobody' where the tests run as root (through
    util-linux's setpriv where present: it can start an interpreter that lives under a root-only folder)."""
    import shutil

    cmd = [sys.executable, "-m", "nasdun", *args]
    env = {**os.environ, "HOME": str(cwd), "PYTHONPATH": str(ROOT)}
    if os.geteuid() != 0:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
    if shutil.which("setpriv"):
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd, env=env, user=65534, group=65534, extra_groups=[])


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def read_only_run(tmp_path_factory) -> Path:
    """A finished search (two candidates, K = 3, no promotion) in a folder nobody may write."""
    import shutil
    import tempfile

    search = tmp_path_factory.mktemp("ro") / "search"
    assert main(["search", *TINY, "--no-baselines", "--out", str(search)]) == 0
    place = Path(tempfile.mkdtemp(prefix="nasdun-ro-"))
    place.chmod(0o755)
    ro = place / "run"
    shutil.copytree(search, ro)
    for p in [ro, *ro.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        probe = _as_unprivileged(["presets"], place)
        why = "" if probe.returncode == 0 else probe.stderr.strip()[-200:]
    except OSError as err:
        why = str(err)
    if why:
        pytest.skip(f"the project cannot be run as an unprivileged user here: {why}")
    yield ro
    for p in [ro, *ro.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    shutil.rmtree(place)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [["repair", "RUN"], ["search", "--resume", "RUN", "--budget", "4"], ["report", "RUN"], ["export", "RUN", "--rank", "1", "--out", "RUN/net.pt2"],
     ["average", "RUN", "--out", "RUN/avg.json"], ["heatmap", "RUN", "--out", "RUN/h"], ["train", "--arch", "lista", "--layers", "3",
     "--protocol", "smoke", "--out", "RUN/t"]],
)  # fmt: skip
def test_a_read_only_run_folder_is_named_as_such(args, read_only_run):
    before = snapshot(read_only_run)
    done = _as_unprivileged([a.replace("RUN", str(read_only_run)) for a in args], read_only_run.parent)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("nasdun: error: "), done.stderr[-1500:]
    assert f"cannot use '{read_only_run}" in lines[0] and "permission denied" in lines[0], lines[0]
    assert snapshot(read_only_run) == before


@pytest.mark.parametrize("which", ["not_csv", "empty", "no_rows", "text_metric", "missing_column"])
def test_a_malformed_reference_table_is_one_line_before_anything_is_written(which, run, tmp_path, capsys):
    import pandas as pd

    shipped = Path(__file__).resolve().parent.parent / "trainers" / "protocols" / "references" / "paper_small_k8.csv"
    df = pd.read_csv(shipped)
    path = tmp_path / f"{which}.csv"
    if which == "not_csv":
        path.write_bytes(b"\x00\x01garbage\xff")
    elif which == "empty":
        path.write_text("")
    elif which == "no_rows":
        df.iloc[:0].to_csv(path, index=False)
    elif which == "text_metric":
        df.assign(val_nmse_db=df["val_nmse_db"].astype(object).where(df.index != 0, "low")).to_csv(path, index=False)
    else:
        df.drop(columns=["hash"]).to_csv(path, index=False)
    args = ["fidelity", "--reference-table", str(path), "--protocols", "smoke", "--out", str(tmp_path / "out")]
    assert path.name in refused(args, capsys, tmp_path, run)

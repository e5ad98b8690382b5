import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from nasdun.interfaces.cli import main
from nasdun.runs.results import load_network
from trainers.population import evaluate
from trainers.problems.make import make_problem


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nasdun", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    proc = run_cli("train", "--arch", "lista,2no,meng2021", "--layers", "3", "--protocol", "smoke", "--device", "cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_train_writes_table_curves_params(trained):
    out, proc = trained
    df = pd.read_csv(out / "results.csv")
    assert list(df["name"]) == ["lista", "2no", "meng2021"]
    assert (df["status"] == "ok").all()
    for col in ("hash", "genotype", "test_nmse_db", "test_nmse_db_mean", "val_nmse_db", "val_nmse_db_mean", "iterations", "wall_s"):
        assert df[col].notna().all(), col
    assert "lista" in proc.stdout and "ISTA, 3 iterations" in proc.stdout
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves["layer"]) == {1, 2, 3} and set(curves["split"]) == {"val", "test"}
    run = json.loads((out / "run.json").read_text())
    assert run["protocol"]["name"] == "smoke" and run["seed"] == 0


def test_train_says_which_networks_finished_only_after_a_restart(tmp_path, capsys):
    """A protocol file with ``retries``: a network that diverged and restarted at half the rate is ok, and both the
    printed table and results.csv's ``reason`` say how many restarts it took; a network that never diverged says nothing."""
    proto = tmp_path / "hot.yaml"
    proto.write_text("description: too hot for LISTA\nlrs: [0.5, 0.5]\npatience: 20\nmax_iters: 20\nbatch_size: 64\nretries: 8\n")
    assert main(["train", "--arch", "lista,alista", "--layers", "3", "--protocol", str(proto), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    df = pd.read_csv(tmp_path / "r" / "results.csv").set_index("name")
    assert (df["status"] == "ok").all() and pd.isna(df.loc["alista", "reason"])
    assert df.loc["lista", "reason"].split()[1:5] == ["restarts", "at", "half", "the"] or df.loc["lista", "reason"].startswith("1 restart at")
    assert f"lista: ok: {df.loc['lista', 'reason']}" in out and "alista: ok" not in out


def test_saved_parameters_reload_to_the_same_nmse(trained):
    out, _ = trained
    df = pd.read_csv(out / "results.csv").set_index("name")
    model = load_network(out, "2no")
    problem = make_problem("small", 0, batch_size=64)
    got = float(evaluate(model, problem.test).nmse_db()[-1, 0])
    assert got == pytest.approx(df.loc["2no", "test_nmse_db"], abs=1e-5)
    assert torch.is_tensor(model.Wx) and model.P == 1


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--arch", "lista,nosuch"], "unknown preset 'nosuch'"),
        (["train", "--setting", "nosuch"], "unknown setting 'nosuch'"),
        (["train", "--protocol", "nosuch"], "unknown protocol 'nosuch'"),
        (["train", "--protocol", "missing.yaml"], "protocol file 'missing.yaml' does not exist"),
        (["train", "--layers", "0"], "0 must be >= 1"),
        (["train", "--arch", "missing.json"], "architecture file 'missing.json' does not exist"),
        (["train", "--device", "tpu"], "--device 'tpu'"),
        (["nosuchcommand"], "invalid choice"),
        (["confirm", "r", "--protocol", "smoke", "--seeds", "1,x", "--out", "o"], "'x' is not an integer"),
        (["confirm", "/nonexistent/run", "--protocol", "smoke", "--out", "o"], "/nonexistent/run"),
        (["bench", "--seconds", "-1"], "--seconds: -1.0 must be >= 0.1"),
        (["bench", "--seconds", "nan"], "--seconds: nan must be >= 0.1"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(args, fragment, capsys, tmp_path):
    code = main([*args, "--out", str(tmp_path / "o")] if args[0] == "train" else args)
    err = capsys.readouterr().err
    assert code == 2
    assert fragment in err
    assert err.count("\n") == 1 and err.startswith("nasdun: error:")


def test_bad_genotype_file_and_non_empty_out(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"inputs": [[0], [1], [1]], "neurons": ["soft"] * 3, "lags": [[], [], []]}))
    assert main(["train", "--arch", str(bad), "--layers", "3", "--out", str(tmp_path / "o")]) == 2
    assert "immediate predecessor 2" in capsys.readouterr().err
    full = tmp_path / "full"
    full.mkdir()
    (full / "results.csv").write_text("keep me")
    assert main(["train", "--layers", "3", "--protocol", "smoke", "--out", str(full)]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert (full / "results.csv").read_text() == "keep me"


def test_bad_protocol_yaml(tmp_path, capsys):
    y = tmp_path / "p.yaml"
    y.write_text("patience: 10\nlearning_rate: 3\n")
    assert main(["train", "--protocol", str(y), "--out", str(tmp_path / "o")]) == 2
    assert "unknown key(s) ['learning_rate']" in capsys.readouterr().err
    y.write_text("patience: ten\n")
    assert main(["train", "--protocol", str(y), "--out", str(tmp_path / "o")]) == 2
    assert "patience='ten'; expected an integer" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--bogus"], "nasdun: error: unrecognized arguments: --bogus"),
        (["train", "--layers", "x"], "nasdun: error: train: argument --layers: 'x' is not an integer"),
        (["search", "--sampler", "cmaes"], "sampler 'cmaes' does not apply"),
        (["search", "--protocol", "sh"], "use --layers 9 or more, or a protocol file whose rungs fit"),
        (["search", "--precision", "fp8"], "argument --precision: invalid choice: 'fp8'"),
        (["bench", "--P", ","], "expected one or more P >= 1"),
    ],
)
def test_rough_edges_are_one_line_errors_that_say_how(args, fragment, capsys, tmp_path):
    out = tmp_path / "o"
    code = main([*args, "--out", str(out)] if args[0] == "search" else args)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and fragment in err, err
    assert "nasdun: nasdun" not in err and not out.exists()  # refused before anything was written


def test_a_space_too_small_for_the_samplers_moves_is_one_line(capsys, tmp_path):
    cfg = tmp_path / "one.yaml"
    cfg.write_text("layers: 1\nneurons: [soft]\nweights: [free]\nsampler_options: {evolution: {mutations: 2}}\n")
    out = tmp_path / "o"
    assert main(["search", "--config", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evolution: mutations=2, but this search space has 1 decision(s)" in err and not out.exists()


def test_version_and_every_option_has_help(capsys):
    from nasdun import __version__
    from nasdun.interfaces.cli import build_parser

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"nasdun {__version__}"
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if action.dest != "help":
                assert action.help, f"nasdun {name} {action.option_strings or action.dest} has no help text"


def test_average_never_overwrites_and_retrain_takes_k_from_the_file(tmp_path, capsys, trained):
    from search_spaces.presets import infer_layers

    trained = trained[0]
    out = tmp_path / "avg.json"
    out.write_text("precious")
    assert main(["average", str(trained), "--top-k", "2", "--out", str(out)]) == 2
    assert "exists; choose a new file (or pass --force)" in capsys.readouterr().err and out.read_text() == "precious"
    assert main(["average", str(trained), "--top-k", "99", "--out", str(out), "--force"]) == 0
    said = capsys.readouterr().out
    assert "the runs hold" in said and "not the top-99 asked for" in said
    data = json.loads(out.read_text())
    assert data["top_k"] == len(data["members"]) < 99
    assert infer_layers(f"{out},lista") == data["genotype"]["layers"] and infer_layers("lista,2no") is None
    assert main(["retrain", "--arch", str(out), "--against", "lista", "--settings", "small", "--seeds", "1", "--protocol", "smoke",
                 "--out", str(tmp_path / "rt")]) == 0  # fmt: skip
    assert f"K = {data['genotype']['layers']}" in capsys.readouterr().out
    assert main(["heatmap", str(trained), "--out", str(out)]) == 2
    assert "is a file; expected a directory" in capsys.readouterr().err
    assert main(["retrain", "--arch", str(out), "--settings", "small", "--protocol", "smoke", "--out", str(tmp_path / "rt")]) == 2
    err = capsys.readouterr().err
    assert "is not empty; choose a new directory (or pass --force to replace it)" in err and "--overwrite" not in err


def test_heatmap_says_what_it_needs_when_given_nothing_or_both(capsys, tmp_path):
    assert main(["heatmap", "--out", str(tmp_path / "h")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs run directories" in err and "not both" not in err
    assert main(["heatmap", str(tmp_path), "--arch", "lista", "--out", str(tmp_path / "h")]) == 2
    assert "not both" in capsys.readouterr().err and not (tmp_path / "h").exists()


NAME_ERRORS = [
    (["search", "--sampler", "bogus"], "unknown sampler 'bogus'"),
    (["search", "--promote-protocol", "zz"], "unknown protocol 'zz'"),
    (["train", "--setting", "bogus"], "unknown setting 'bogus'"),
    (["train", "--protocol", "nope"], "unknown protocol 'nope'"),
    (["retrain", "--arch", "lista", "--settings", "small,bogus", "--out", "OUT"], "unknown setting 'bogus'"),
    (["fidelity", "--protocols", "search,bogus", "--out", "OUT"], "unknown protocol 'bogus'"),
    (["compare-samplers", "--samplers", "rl,zz", "--budget", "4", "--out", "OUT"], "unknown sampler 'zz'"),
]


def test_a_misspelt_name_is_refused_before_torch_ray_or_optuna_is_imported(tmp_path):
    """Option errors come at once (issue: 11-23 s on a busy machine): checked against the registries before the heavy
    imports. Measured here as what was imported, not as a time: in a fresh interpreter, none of torch, ray, optuna."""
    script = (
        "import json, sys\nfrom nasdun.interfaces.cli import main\nout = []\n"
        f"for args in {[[a.replace('OUT', str(tmp_path / 'o')) for a in args] for args, _ in NAME_ERRORS]!r}:\n"
        "    out.append(main(args))\n"
        "print(json.dumps({'codes': out, 'heavy': sorted(m for m in ('torch', 'ray', 'optuna') if m in sys.modules)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"codes": [2] * len(NAME_ERRORS), "heavy": []}
    errors = done.stderr.strip().splitlines()
    assert len(errors) == len(NAME_ERRORS) and all(f in e and e.startswith("nasdun: error: ") for (_, f), e in zip(NAME_ERRORS, errors, strict=True))
    assert not (tmp_path / "o").exists()


def test_a_reader_that_leaves_early_is_no_error():
    """`nasdun presets | head -1`: the pipe closes under the command; it ends quietly, status 0, no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "nasdun", "presets"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline()
    proc.stdout.close()  # the reader leaves
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err, err

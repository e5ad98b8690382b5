"""One API, one thin CLI: every command is a documented function of ``nasdun`` (docs/api.md), each CLI handler is its
arguments plus one call to it plus printing, the two share their defaults, and they answer the same call the same way."""

import ast
import inspect
import json
from pathlib import Path

import pytest

import nasdun
from nasdun.interfaces import api
from nasdun.interfaces.cli import COMMANDS, build_parser, main
from tests.test_analysis import A, B, C, D, E, table

ROOT = Path(__file__).resolve().parent.parent

#: command -> its function in the API (``nasdun.<name>``)
FUNCTIONS = {
    "train": "train", "search": "search_pipeline", "average": "average", "heatmap": "heatmap", "retrain": "retrain",
    "promote": "promote", "confirm": "confirm", "report": "report", "repair": "repair", "reconstruct": "reconstruct",
    "classical": "classical", "export": "export_network", "compare-samplers": "compare_samplers", "compare": "compare",
    "fidelity": "fidelity", "bench": "bench", "presets": "presets", "settings": "settings", "protocols": "protocols",
}  # fmt: skip


def handlers() -> dict[str, ast.FunctionDef]:
    tree = ast.parse((ROOT / "nasdun" / "interfaces" / "cli.py").read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and getattr(dec.func, "id", "") == "command":
                    found[dec.args[0].value] = node
    return found


def test_every_command_has_its_function_and_a_handler():
    assert set(FUNCTIONS) == set(COMMANDS) == set(handlers())
    for command, name in FUNCTIONS.items():
        public = "search" if name == "search_pipeline" else name
        assert callable(getattr(nasdun, public)), command
        assert (getattr(api, name).__doc__ or "").strip(), f"{name} has no docstring"


@pytest.mark.parametrize("command", sorted(FUNCTIONS))
def test_a_handler_is_one_call_to_its_api_function(command):
    """Its body calls exactly one function of ``nasdun.interfaces.api`` (the command's own) and imports nothing that does the work
    (analysis, training, the promotion, the record): what a command does lives in the API."""
    node = handlers()[command]
    called = {n.func.attr for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
              and isinstance(n.func.value, ast.Name) and n.func.value.id == "api"}  # fmt: skip
    assert called == {FUNCTIONS[command]}
    imported = {n.module for n in ast.walk(node) if isinstance(n, ast.ImportFrom)}
    assert not {
        m
        for m in imported
        if m and m.startswith(("analysis", "nasdun.runs.training", "nasdun.orchestration.promotion", "nasdun.orchestration.record", "trainers."))
    }


def _cli_defaults(command: str) -> dict[str, object]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[command]
    out = {}
    for action in sub._actions:
        default = action.default
        if isinstance(default, str) and callable(action.type):
            default = action.type(default)  # argparse converts a string default as it would a given value
        if action.nargs == "*" and default is None:
            default = []  # what a positional list with nothing given parses to
        out[action.dest] = list(default) if isinstance(default, tuple) else default
    return out


@pytest.mark.parametrize("command", sorted(set(FUNCTIONS) - {"search"}))  # search's defaults are its config's (CONFIG_OPTIONS)
def test_the_cli_and_the_api_share_their_defaults(command):
    """A parameter the function and the command both have defaults the same way in both (a flag's default is the
    function's, so a call from Python and the same command with no flag do the same)."""
    cli = _cli_defaults(command)
    shared = 0
    for name, p in inspect.signature(getattr(api, FUNCTIONS[command])).parameters.items():
        dest = {"archs": "arch"}.get(name, name)
        if p.default is inspect.Parameter.empty or dest not in cli or cli[dest] is None and p.default is None:
            continue
        default = list(p.default) if isinstance(p.default, tuple) else p.default
        assert cli[dest] == default, f"{command}: {dest} defaults to {cli[dest]!r} on the command line, {default!r} in nasdun.{FUNCTIONS[command]}"
        shared += 1
    assert shared or command in ("presets", "settings", "protocols", "repair", "export")


def test_docs_api_lists_every_command_function():
    text = (ROOT / "docs" / "api.md").read_text()
    for command, name in FUNCTIONS.items():
        public = "search" if name == "search_pipeline" else name
        assert f"`{public}(" in text, f"docs/api.md does not list nasdun.{public} (`nasdun {command}`)"


@pytest.fixture
def two_runs(tmp_path):
    a = table(tmp_path, [(D, -10.0, "ok", "rl"), (A, -30.0, "ok", "rl"), (E, -5.0, "ok", "evolution"), (C, -20.0, "ok", "evolution")], "a")
    b = table(tmp_path, [(A, -29.0, "ok", "rl"), (B, -25.0, "ok", "rl"), (C, -21.0, "ok", "rl"), (E, -4.0, "ok", "rl")], "b")
    return a, b


def test_average_and_compare_answer_the_same_from_the_cli_and_python(two_runs, tmp_path, capsys):
    a, b = two_runs
    assert main(["average", str(a), str(b), "--top-k", "3", "--threshold", "0.4", "--out", str(tmp_path / "cli.json")]) == 0
    said = capsys.readouterr().out
    got = api.average([a, b], tmp_path / "py.json", top_k=3, threshold=0.4)
    cli, py = (json.loads((tmp_path / f).read_text()) for f in ("cli.json", "py.json"))
    assert cli == py and py["hash"] == got["genotype"].hash and f"hash {got['genotype'].hash}" in said
    assert main(["compare", str(a), str(b), "--top-k", "2"]) == 0
    said = capsys.readouterr().out
    both = api.compare(a, b, top_k=2)
    res = both["agreement"]
    assert f"top-{res['k']}: {res['overlap']} shared genotypes" in said and f"Pearson r = {res['conn_freq_pearson']:.3f}" in said
    assert both["best"][str(a)]["name"] == "t1" and f"best by validation {both['best'][str(b)]['name']}" in said


def test_the_api_errors_name_parameters_the_cli_says_as_flags(two_runs, tmp_path, capsys):
    a, _ = two_runs
    with pytest.raises(nasdun.NasdunError, match=r"^arch='lista' and runs both given"):
        api.heatmap([a], tmp_path / "h", arch="lista")
    assert main(["heatmap", str(a), "--arch", "lista", "--out", str(tmp_path / "h")]) == 2
    assert "--arch 'lista' and runs both given" in capsys.readouterr().err
    with pytest.raises(nasdun.NasdunError, match=r"^layers=4, seed=1 cannot be given with reference_table='paper_small_k8'"):
        api.fidelity(tmp_path / "f", layers=4, seed=1, reference_table="paper_small_k8")
    with pytest.raises(nasdun.NasdunError, match=r"^seeds='101,x'; expected a comma list of integers"):
        api.confirm(a, tmp_path / "c", "smoke", seeds="101,x")
    with pytest.raises(nasdun.NasdunError, match=r"^P='16,x'; expected a comma list"):
        api.bench("16,x")
    with pytest.raises(nasdun.NasdunError, match=r"^P=\[16.5\]; expected a comma list of integers"):  # refused, not cut to 16
        api.bench([16.5])
    with pytest.raises(nasdun.NasdunError, match=r"^average\(\): top_k='3'; expected int"):
        api.average(a, tmp_path / "x.json", top_k="3")

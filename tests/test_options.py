"""How a run trains is one frozen record (trainers.options.RunOptions) passed whole: checked when made, carried to the
trainer, the run's files and a search's workers, and never threaded field by field through a signature."""

import ast
import dataclasses
import json
import math
from pathlib import Path

import pytest

from nasdun.core.errors import NasdunError
from trainers.options import RunOptions

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {f.name for f in dataclasses.fields(RunOptions)}


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("device", "tpu", "expected cpu, cuda, cuda:N or auto"),
        ("device", "cuda:x", "expected cpu, cuda, cuda:N or auto"),
        ("device", 0, "expected cpu, cuda, cuda:N or auto"),
        ("precision", "fp8", "expected one of fp32, tf32, bf16"),
        ("compile", "yes", "expected True or False"),
        ("compile", 1, "expected True or False"),
        ("minutes", -1.5, "expected a finite number >= 0"),
        ("minutes", math.nan, "expected a finite number >= 0"),
        ("minutes", math.inf, "expected a finite number >= 0"),
        ("minutes", True, "expected a finite number >= 0"),
        ("checkpoint_every_s", -1, "expected a finite number >= 0"),
        ("checkpoint_every_s", "60", "expected a finite number >= 0"),
    ],
)
def test_a_bad_field_is_one_line_naming_it(field, value, expected):
    with pytest.raises(NasdunError) as err:
        RunOptions(**{field: value})
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{field}={value!r}") and expected in message
    assert err.value.params == (field,)


def test_the_record_is_frozen_and_reads_back():
    opts = RunOptions("cpu", "bf16", True, 2.5, 60.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.device = "cuda"  # type: ignore[misc]
    assert RunOptions.from_record(json.loads(json.dumps(opts.record()))) == opts
    assert RunOptions("auto").resolved().device in ("cpu", "cuda")  # auto becomes a device that exists
    assert RunOptions("cpu").resolved() == RunOptions("cpu")


def _threaded(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    args = fn.args
    names = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
    return names & FIELDS


def test_no_signature_threads_the_options_by_hand():
    """The issue counted 11 signatures carrying device, compile, precision[, minutes, checkpoint_every_s]; a function
    with two or more of the record's fields as parameters threads them again. Exempt: the record itself and the
    model (compile alone is one field)."""
    found = []
    for top in ("nasdun", "trainers", "analysis", "search_spaces"):
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "trainers/options.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and len(_threaded(node)) >= 2:
                    found.append(f"{rel}:{node.lineno} {node.name}({', '.join(sorted(_threaded(node)))})")
    assert not found, "\n".join(found)


def test_the_options_reach_the_trainer_and_the_run_files(tmp_path):
    """One record given to the API trains under it (bf16 in every row) and is written whole in train.json/run.json;
    its fields as keywords make the same record; both at once are refused."""
    import nasdun
    from nasdun.runs.training import resume_train

    opts = RunOptions("cpu", "bf16", minutes=30.0, checkpoint_every_s=45.0)
    df = nasdun.train("lista,2no", layers=2, protocol="smoke", out=tmp_path / "a", options=opts)
    assert set(df["precision"]) == {"bf16"}
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    spec = json.loads((tmp_path / "a" / "train.json").read_text())
    for record in (run, spec):
        assert {k: record[k] for k in ("device", "precision", "compile", "minutes")} == {
            "device": "cpu", "precision": "bf16", "compile": False, "minutes": 30.0
        }  # fmt: skip
    assert "checkpoint_every_s" not in spec  # how often it saves is not what it trains: a resume may choose another
    again = nasdun.train("lista,2no", layers=2, protocol="smoke", out=tmp_path / "b", device="cpu", precision="bf16", minutes=30.0)
    assert again["val_nmse_db"].tolist() == df["val_nmse_db"].tolist()
    with pytest.raises(NasdunError, match=r"options and device both given"):
        nasdun.train("lista", layers=2, protocol="smoke", out=tmp_path / "c", options=opts, device="cpu")
    with pytest.raises(NasdunError, match=r"^train\(\): options='cpu'; expected a trainers.options.RunOptions"):
        nasdun.train("lista", layers=2, protocol="smoke", out=tmp_path / "d", options="cpu")
    with pytest.raises(NasdunError, match="is a finished run"):
        resume_train(tmp_path / "a")


def test_a_search_sends_its_options_to_its_workers_and_its_promotion():
    """The search's precision and compile travel as the record in each cohort's payload (the worker trains on its own
    device), and the promotion trains with the same record."""
    from nasdun.orchestration.searchconfig import SearchConfig

    resolved = SearchConfig(precision="bf16", checkpoint_minutes=2.0).resolve()
    payload = resolved.payload(0, list(resolved.start[:2]), Path("/tmp/x/cohort.pt"))
    sent = RunOptions.from_record(payload["options"])
    assert sent == resolved.options and sent.precision == "bf16" and sent.checkpoint_every_s == 120.0 and payload["checkpoint"]
    off = SearchConfig(checkpoint_minutes=0).resolve()
    assert not off.payload(0, list(off.start[:1]), Path("/tmp/x/c.pt"))["checkpoint"]
    assert off.options.checkpoint_every_s == RunOptions().checkpoint_every_s  # the promotion still saves at the default interval

"""The results row's schema lives in trainers/rows.py alone: the trainer's metrics, a failed row, the table's order and
the reader's checks all come from it."""

import ast
from pathlib import Path

import pytest

from nasdun.core.errors import NasdunError
from nasdun.runs.results import candidate_row, read_table, write_table
from search_spaces.presets import preset
from trainers.rows import METRICS, ORDER, REQUIRED, SCHEMA, failed_metrics, metric_names
from trainers.scoring import CandidateResult

ROOT = Path(__file__).resolve().parent.parent


def test_the_trainer_reports_exactly_the_metric_columns():
    g = preset("lista", 3)
    assert tuple(CandidateResult(g).metrics()) == metric_names()
    failed = CandidateResult(g, status="failed").metrics()
    fresh = failed_metrics()
    assert set(failed) == set(fresh)
    for c in METRICS:  # a failed result and a row without a report agree value for value (NaN where no value)
        a, b = failed[c.name], fresh[c.name]
        assert a == b or (a != a and b != b), c.name


def test_a_failed_row_is_fresh_and_refuses_unknown_metrics():
    a, b = failed_metrics(), failed_metrics("worker lost", rung_layer=2)
    a["curves"]["val_nmse_db"] = [1.0]
    assert b["curves"] == {} and b["reason"] == "worker lost" and b["rung_layer"] == 2 and b["status"] == "failed"
    with pytest.raises(ValueError, match="val_nmse"):
        failed_metrics(val_nmse=1.0)


def test_a_row_without_every_metric_is_refused():
    with pytest.raises(ValueError, match=r"metrics lack \['reason'"):
        candidate_row("x", preset("lista", 3), {"status": "ok", "val_nmse_db": -3.0, "test_nmse_db": -3.0})


def test_a_written_table_holds_the_schema_in_its_order_and_reads_back(tmp_path):
    g = preset("2no", 3)
    context = {"setting": "small", "protocol": "smoke", "seed": 0, "device": "cpu", "precision": "fp32"}
    rows = [candidate_row("a", g, failed_metrics(status="ok", val_nmse_db=-5.0, test_nmse_db=-4.0), **context, sampler="tpe")]
    df = write_table(tmp_path, rows)
    assert list(df.columns[: len(ORDER)]) == list(ORDER) and set(SCHEMA) <= set(df.columns) and df.columns[-1] == "sampler"
    back = read_table(tmp_path)
    assert back["val_nmse_db"].dtype == float and float(back["val_nmse_db"].iloc[0]) == -5.0
    assert set(REQUIRED) == {"name", "hash", "status", "val_nmse_db", "test_nmse_db", "genotype"}


@pytest.mark.parametrize("column", ["iterations", "wall_s", "seed", "test_nmse_db_mean"])
def test_a_number_column_holding_text_is_one_line_naming_it(tmp_path, column):
    g = preset("lista", 3)
    df = write_table(tmp_path, [candidate_row("a", g, failed_metrics(), setting="small", seed=0)])
    df[column] = df[column].astype(object)
    df.loc[0, column] = "lots"
    df.to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(NasdunError, match=rf"column {column} holds 'lots' in row 2; expected numbers$"):
        read_table(tmp_path)


def test_no_other_module_lists_the_metric_columns():
    """The schema was written in four places (results COLUMNS/REQUIRED/NUMERIC, record NAN_METRICS, scoring's metrics());
    a literal holding 8 or more of the metric columns anywhere else is a fifth."""
    metrics = set(metric_names())
    found = []
    for top in ("nasdun", "trainers", "analysis", "search_spaces"):
        for path in (ROOT / top).rglob("*.py"):
            if path.relative_to(ROOT).as_posix() == "trainers/rows.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                items = node.keys if isinstance(node, ast.Dict) else node.elts if isinstance(node, ast.List | ast.Tuple | ast.Set) else []
                names = {e.value for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if len(names & metrics) >= 8:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found

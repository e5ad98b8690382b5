"""A search's summary is one typed record (nasdun.runs.summary.SearchSummary): written as search.json, read back by the
CLI, the API, the report and the studies; a mapping too, as the API returned before."""

import json
import math

import pytest

from nasdun.core.errors import NasdunError
from nasdun.runs.summary import SearchSummary


def test_it_writes_search_json_and_reads_it_back(tmp_path):
    s = SearchSummary.of({"budget": 8, "finished": True, "best_found": "t00003", "gain_db": 0.4, "verdict": "level: ..."})
    s.promoted = {"protocol": "final", "best": "2no"}
    s.write(tmp_path)
    data = json.loads((tmp_path / "search.json").read_text())
    assert data["budget"] == 8 and data["promoted"]["best"] == "2no" and data["best_preset"] is None
    assert "best_found_test_psnr" not in data  # the image-only figures only where the setting has images
    back = SearchSummary.read(tmp_path)
    same = json.dumps(back.record(), sort_keys=True) == json.dumps(s.record(), sort_keys=True)  # (NaN where no value)
    assert same and back.promoted == {"protocol": "final", "best": "2no"}
    assert back["verdict"] == "level: ..." and back.get("best_found_test_psnr") is None and list(dict(back)) == list(back.record())
    images = SearchSummary.of({"best_found_test_psnr": 28.1, "best_preset_test_psnr": 27.9, "gain_test_psnr": 0.2})
    assert images["gain_test_psnr"] == 0.2 and "gain_test_psnr" in images.record()


def test_an_older_file_reads_with_defaults_and_a_new_field_is_refused(tmp_path):
    (tmp_path / "search.json").write_text(json.dumps({"budget": 4, "verdict": "v", "a_field_of_a_later_version": 1}))
    old = SearchSummary.read(tmp_path)
    assert old.budget == 4 and old.screening_verdict == "" and old.promoted is None and math.isnan(old.gain_db)
    with pytest.raises(NasdunError, match=r"unknown field\(s\) budgett; expected fields of nasdun.runs.summary.SearchSummary"):
        SearchSummary.of({"budgett": 4})


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_a_broken_file_is_one_line(tmp_path, text):
    (tmp_path / "search.json").write_text(text)
    with pytest.raises(NasdunError) as err:
        SearchSummary.read(tmp_path)
    assert "\n" not in str(err.value) and "search.json" in str(err.value)


def test_the_searcher_s_figures_are_the_schema():
    """Every figure the searcher and the promotion write is a field (SearchSummary.of refuses any other): a figure added
    in one place without the type fails here, not in a reader."""
    from dataclasses import fields

    from nasdun.runs.verdict import judge

    names = {f.name for f in fields(SearchSummary)}
    assert set(judge([])) <= names
    rows = [
        {"name": "a", "status": "ok", "val_nmse_db": -5.0, "test_nmse_db": -5.0, "preset": "", "test_psnr": 28.0},
        {"name": "b", "status": "ok", "val_nmse_db": -4.0, "test_nmse_db": -4.0, "preset": "lista", "test_psnr": 27.0},
    ]
    assert set(judge(rows)) <= names  # with the image figures

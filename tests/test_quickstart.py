"""The README's quickstart, command by command, on a tiny budget (so the README cannot drift from the CLI)."""

import re
import shlex
from pathlib import Path

import pytest

from nasdun.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY_SEARCH = ["--budget", "16", "--cohort", "4", "--layers", "3", "--protocol", "smoke", "--num-cpus", "2", "--promote-protocol", "smoke"]


def quickstart_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quickstart[^\n]*\n```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no ```bash block under '## Quickstart'"
    cmds = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    return [c[1:] for c in cmds if c and c[0] == "nasdun"]


def shrink(args: list[str], root: Path) -> list[str]:
    """The same command at test size: paths under ``root``, a tiny search, the smoke protocol, one seed."""
    out = [a.replace("runs/", f"{root}/runs/") for a in args]
    for flag, value in (("--protocol", "smoke"), ("--seeds", "1")):
        if flag in out:
            out[out.index(flag) + 1] = value
    return out + TINY_SEARCH if out[0] == "search" else out


def test_readme_quickstart_names_the_whole_chain():
    assert [c[0] for c in quickstart_commands()] == ["search", "average", "heatmap", "retrain", "report", "export"]


@pytest.mark.slow
def test_readme_quickstart_runs_as_written(tmp_path, capsys):
    for args in quickstart_commands():
        code = main(shrink(args, tmp_path))
        captured = capsys.readouterr()
        assert code == 0, f"nasdun {' '.join(args)}: {captured.err[-2000:]}"
        if args[0] == "search":
            assert "dB (val)" in captured.out.strip().splitlines()[-1]  # its last line is the verdict
    qs = tmp_path / "runs" / "qs"
    for path in ("avg.json", "retrain/table1.md", "report/report.html", "best.pt2"):
        assert (qs / path).is_file(), path
    assert list((qs / "heatmaps").glob("conn_top*.png")) and list((qs / "heatmaps").glob("conn_average_top*.png"))
    report = (qs / "report" / "report.md").read_text()
    assert report.index("Did the search beat the hand designs?") < report.index("Retraining against the hand designs") < report.index("Configuration")


@pytest.mark.parametrize("command", ["search", "average", "heatmap", "retrain", "report", "export"])
def test_each_quickstart_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0 and "--out" in capsys.readouterr().out


def test_every_design_citation_in_the_code_names_a_section_of_docs_design_md():
    """Docstrings cite the maths by section number ("docs/design.md §2"): each number is a numbered heading there."""
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\. ", (ROOT / "docs" / "design.md").read_text(), re.M))
    sections |= set(re.findall(r"^#{2,3} (\d+\.\d+) ", (ROOT / "docs" / "design.md").read_text(), re.M))
    cited = {}
    for path in [*ROOT.glob("*/*.py"), *ROOT.glob("*/*/*.py")]:
        if ".venv" not in path.parts:
            for n in re.findall(r"design\.md §(\d+(?:\.\d+)?)", path.read_text()):
                cited.setdefault(n, path.relative_to(ROOT).as_posix())
    assert len(cited) >= 4 and set(cited) <= sections, {n: p for n, p in cited.items() if n not in sections}
    stale = [p.relative_to(ROOT).as_posix() for p in ROOT.glob("*/*.py") if "DESIGN.md " + "section" in p.read_text()]
    assert not stale  # the old citations, of a file the repository does not hold

"""The README's quickstart, command by command, on a tiny budget (so the README cannot drift from the CLI)."""

import re
import shlex
from pathlib import Path

import pytest

from nasdun.interfaces.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY_SEARCH = ["--budget", "16", "--cohort", "4", "--layers", "3", "--protocol", "smoke", "--num-cpus", "2", "--promote-protocol", "smoke"]


def demo_command() -> list[str]:
    """What `make demo` runs, from the Makefile: `nasdun search` with no option (its default run folder)."""
    recipe = re.search(r"^demo:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile has no demo target"
    words = shlex.split(recipe.group(1))
    assert words[0].endswith("nasdun"), words
    return words[1:]


def quickstart_commands() -> list[list[str]]:
    """The quickstart's commands in order; its `make demo` is the Makefile's `nasdun search`."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quickstart[^\n]*\n```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no ```bash block under '## Quickstart'"
    cmds = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    return [demo_command() if c[:2] == ["make", "demo"] else c[1:] for c in cmds if c and (c[0] == "nasdun" or c[:2] == ["make", "demo"])]


def shrink(args: list[str], root: Path) -> list[str]:
    """The same command at test size: paths under ``root``, a tiny search, the smoke protocol, one seed."""
    out = [a.replace("runs/", f"{root}/runs/") for a in args]
    for flag, value in (("--protocol", "smoke"), ("--seeds", "1")):
        if flag in out:
            out[out.index(flag) + 1] = value
    return out + TINY_SEARCH if out[0] == "search" else out


def test_readme_quickstart_names_the_whole_chain_on_the_demos_own_run():
    commands = quickstart_commands()
    assert [c[0] for c in commands] == ["search", "average", "heatmap", "retrain", "report", "export"]
    assert "--out" not in commands[0]  # the demo's default folder, which runs/latest names
    assert all("runs/latest" in " ".join(c) for c in commands[1:])


@pytest.mark.slow
def test_readme_quickstart_runs_as_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo's default folder is runs/search-<time> under the working directory
    for args in quickstart_commands():
        code = main(shrink(args, tmp_path))
        captured = capsys.readouterr()
        assert code == 0, f"nasdun {' '.join(args)}: {captured.err[-2000:]}"
        if args[0] == "search":
            lines = captured.out.strip().splitlines()
            assert "dB (val)" in lines[-1]  # its last line is the verdict
            assert any(line.startswith("run folder runs/search-") and "runs/latest points at it" in line for line in lines[-4:])
            phases = [line for line in lines if line.startswith("phase ")]  # each phase announced, with why, in order
            assert len(phases) == 2 and phases[0].startswith("phase 1 of 2, screening: ") and phases[1].startswith("phase 2 of 2, the verdict: ")
            assert "under smoke" in phases[0] and "this decides" in phases[1]
    qs = (tmp_path / "runs" / "latest").resolve()
    assert qs.parent == (tmp_path / "runs").resolve() and qs.name.startswith("search-")
    for path in ("avg.json", "retrain/table1.md", "report/report.html", "best.pt2"):
        assert (qs / path).is_file(), path
    assert list((qs / "heatmaps").glob("conn_top*.png")) and list((qs / "heatmaps").glob("conn_average_top*.png"))
    report = (qs / "report" / "report.md").read_text()
    assert report.startswith(f"# nasdun report: {qs.name}\n")  # the run's own name, not the link's
    assert report.index("Did the search beat the hand designs?") < report.index("Retraining against the hand designs") < report.index("Configuration")


@pytest.mark.parametrize("command", ["search", "average", "heatmap", "retrain", "report", "export"])
def test_each_quickstart_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0 and "--out" in capsys.readouterr().out


def test_the_search_options_that_override_the_config_are_one_table(capsys):
    """Each such option is a SearchConfig field (the table the search's overrides are read from, not a copied name list),
    and its help gives the demo config's value, read from the config (not parsed out of the help text)."""
    from dataclasses import fields

    from nasdun.core.config import from_mapping, load_yaml
    from nasdun.interfaces.cli import CONFIG_OPTIONS, build_parser
    from nasdun.orchestration.searchconfig import CONFIGS, SearchConfig

    build_parser()
    assert {"budget", "sampler", "baselines", "promote_top", "precision"} <= set(CONFIG_OPTIONS) <= {f.name for f in fields(SearchConfig)}
    demo = from_mapping(SearchConfig, load_yaml(CONFIGS / "demo.yaml"), "demo.yaml")
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: the config's budget; demo: {demo.budget})" in text and f"(default: the config's layers; demo: {demo.layers})" in text


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

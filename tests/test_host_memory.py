"""The CPU heap policy: freed activation-sized buffers are reused, not unmapped and faulted in again."""

import os
import subprocess
import sys

import pytest

from nasdun.core.errors import NasdunError
from trainers import host_memory

PROBE = """
import resource, torch
from trainers.host_memory import keep_freed_memory
print(keep_freed_memory())
x = torch.ones(200_000)  # 0.8 MB: one activation of a P=16 cohort at the small setting
def step():
    saved = [x * 2.0 for _ in range(40)]  # a forward pass keeps its activations for backward...
    del saved  # ...and frees them after it
step()  # the first step maps its memory under any policy
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def probe(policy: str) -> tuple[str, int]:
    env = {**os.environ, host_memory.ENV: policy, "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120, check=True).stdout.split("\n")
    return out[0], int(out[1])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_retained_heap_stops_page_faults_per_allocation():
    system, _ = probe("system")  # glibc's own adaptive thresholds: 4k-150k faults here, depending on history
    retain, retain_faults = probe("retain")
    assert system == "system default" and retain.startswith("glibc mallopt")
    # 20 steps of 40 fresh 0.8 MB buffers touch 157k pages; retained, the first step's pages serve
    # them all (what remains are Python's own small allocations)
    assert retain_faults < 2_000


def test_bad_policy_is_one_line(monkeypatch):
    monkeypatch.setattr(host_memory, "_policy", None)
    monkeypatch.setenv(host_memory.ENV, "huge")
    with pytest.raises(NasdunError, match="NASDUN_CPU_HEAP='huge'; expected 'retain'"):
        host_memory.keep_freed_memory()


def test_cli_refuses_a_bad_policy_before_any_work(monkeypatch, capsys, tmp_path):
    from nasdun.interfaces.cli import main

    monkeypatch.setenv(host_memory.ENV, "huge")
    out = tmp_path / "run"
    assert main(["train", "--arch", "lista", "--setting", "small", "--layers", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nasdun: error: NASDUN_CPU_HEAP='huge'; expected 'retain' (keep freed buffers in the heap) or 'system'"]
    assert not out.exists()

"""The trainer's thread policy (trainers/threads.py) and docs/design.md §6: the same seed and configuration give
the same bits on one machine, whatever else runs and whatever thread count the process was started with."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from nasdun.core.errors import NasdunError
from search_spaces import preset
from trainers.population import train_population
from trainers.protocols import get_protocol
from trainers.threads import CPU_THREADS, check_threads

TRAIN = textwrap.dedent(
    """
    import hashlib, json, sys, torch
    torch.set_num_threads(int(sys.argv[1]))  # what the caller's process offers; the trainer must not depend on it
    from search_spaces import preset
    from trainers.population import train_population
    from trainers.problems.make import make_problem
    from trainers.protocols import get_protocol
    problem = make_problem("small", seed=3, batch_size=64)
    res = train_population([preset("lista", 3), preset("2no", 3), preset("dense", 3)], problem, get_protocol("smoke"))
    h = hashlib.sha256()
    for r in res:
        for k in sorted(r.params):
            h.update(r.params[k].numpy().tobytes())
    print(json.dumps({"params": h.hexdigest(), "values": [r.metrics()["curves"] for r in res], "after": torch.get_num_threads()}))
    """
)


def _train_in_process(threads: int, env_threads: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": env_threads, "MKL_NUM_THREADS": env_threads}
    out = subprocess.run([sys.executable, "-c", TRAIN, str(threads)], env=env, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_same_seed_gives_the_same_bits_beside_a_busy_process_and_at_another_thread_setting():
    quiet = _train_in_process(1, "1")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        loaded = _train_in_process(2, "2")
    finally:
        busy.kill()
        busy.wait()
    assert loaded["params"] == quiet["params"]  # every parameter, bit for bit
    assert loaded["values"] == quiet["values"]  # every per-layer NMSE, as floats
    assert loaded["after"] == 2  # the caller's thread count is given back


def test_a_training_runs_at_its_fixed_thread_count_and_restores_the_callers(small_problem):
    seen = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_population([preset("lista", 2)], small_problem, get_protocol("smoke"), progress=lambda p: seen.append(torch.get_num_threads()))
        assert seen and set(seen) == {CPU_THREADS}
        seen.clear()
        record = lambda p: seen.append(torch.get_num_threads())  # noqa: E731
        train_population([preset("lista", 2)], small_problem, get_protocol("smoke"), progress=record, threads=2)
        assert set(seen) == {2}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_bad_thread_count_is_one_clear_error(bad):
    with pytest.raises(NasdunError, match=r"threads=.*expected an integer >= 1"):
        check_threads(bad)


NICENESS = textwrap.dedent(
    """
    import json, os, ray
    from nasdun.orchestration.raycluster import start_ray
    start_ray(None, 1)
    worker = ray.get(ray.remote(num_cpus=1)(lambda: os.nice(0)).remote())  # where the search's cohorts train
    print(json.dumps({"driver": os.nice(0), "worker": worker}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(("given", "added"), [(None, 0), ("3", 3)], ids=["default", "users-setting"])
def test_the_local_ray_s_workers_keep_the_driver_s_priority(given, added, tmp_path):
    """Ray raises its workers' niceness by 15 unless told otherwise: cohorts that train there yielded to any other
    process (a search beside a busy one, ~7x slower). nasdun's local Ray keeps the driver's; a user's RAY_worker_niceness wins."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_worker_niceness"} | ({"RAY_worker_niceness": given} if given else {})
    out = subprocess.run([sys.executable, "-c", NICENESS], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["worker"] == got["driver"] + added

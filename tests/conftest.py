import os

import pytest

# `make test` runs the suite in two processes (pytest-xdist) on the two cores: one intra-op thread each
os.environ.setdefault("OMP_NUM_THREADS", "1" if "PYTEST_XDIST_WORKER" in os.environ else "2")
# The suite keeps Ray's own worker priority (+15) for the Ray sessions its tests start, nasdun's start_ray included: two
# test processes and their Ray workers share two cores, and workers that yield to the test processes (which mostly wait
# on them) ran the suite in 8 min 38 s - 8 min 59 s in-tree against 10 min 45 s at equal priority (2026-12-07).
# tests/test_threads.py checks start_ray's own default (the driver's priority) in a process without this setting.
os.environ.setdefault("RAY_worker_niceness", "15")


@pytest.fixture(scope="session")
def small_problem():
    from trainers.problems.make import make_problem

    return make_problem("small", seed=0, batch_size=64)

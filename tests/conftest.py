import os

import pytest

# `make test` runs the suite in two processes (pytest-xdist) on the two cores: one intra-op thread each
os.environ.setdefault("OMP_NUM_THREADS", "1" if "PYTEST_XDIST_WORKER" in os.environ else "2")
# the Ray sessions that tests start with ray.init themselves get the workers' priority nasdun's start_ray gives its own
# (tests/test_threads.py checks start_ray without this)
os.environ.setdefault("RAY_worker_niceness", "0")


@pytest.fixture(scope="session")
def small_problem():
    from trainers.problems.make import make_problem

    return make_problem("small", seed=0, batch_size=64)

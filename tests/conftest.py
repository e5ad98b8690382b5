import os

import pytest

# `make test` runs the suite in two processes (pytest-xdist) on the two cores: one intra-op thread each
os.environ.setdefault("OMP_NUM_THREADS", "1" if "PYTEST_XDIST_WORKER" in os.environ else "2")


@pytest.fixture(scope="session")
def small_problem():
    from trainers.problems.make import make_problem

    return make_problem("small", seed=0, batch_size=64)

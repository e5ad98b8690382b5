import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def small_problem():
    from trainers.problems.make import make_problem

    return make_problem("small", seed=0, batch_size=64)

"""Helpers shared by tests (plain functions; fixtures live in conftest.py)."""

import io


def drive_search(exp, lose=(), steps: int = 40) -> None:
    """A search session driven in this process (no Ray): the searcher's own suggest / complete loop, each cohort
    trained by the real worker function; cohorts numbered in ``lose`` are reported as lost workers."""
    from ray.tune.search import Searcher

    from nasdun.orchestration.driver import CohortSearcher
    from nasdun.runs.progress import ProgressLine
    from nasdun.runs.worker import cohort_report

    searcher = CohortSearcher(exp, ProgressLine("t", stream=io.StringIO()), in_flight=1)
    for i in range(steps):
        suggestion = searcher.suggest(f"trial-{i}")
        if suggestion in (None, Searcher.FINISHED):
            return
        report = None if suggestion["cohort"] in lose else cohort_report(suggestion)
        searcher.on_trial_complete(f"trial-{i}", report, error=report is None)

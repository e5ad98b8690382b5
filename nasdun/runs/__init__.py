"""Runs: the results table, training into a run folder, the verdict, export, bench, the worker's task."""

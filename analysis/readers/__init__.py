"""Readers of finished runs: averages, frequency figures, statistics, the report, reference tables (nothing here trains)."""

"""The search: its config, samplers, ledger and asker, Ray Tune driver and searcher, the promotion (second phase)."""

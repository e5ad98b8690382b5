"""nasdun: neural-architecture search over unrolled sparse-recovery networks.

The Python API (``docs/api.md``)::

    import nasdun
    fig = nasdun.search("runs/s1", budget=24)              # a search; fig["verdict"]: found vs hand designs
    df = nasdun.read_results("runs/s1")                     # its results table
    net = nasdun.load_network("runs/s1", rank=1)            # the best network as a torch module
    nasdun.export_network("runs/s1", "best.pt2", rank=1)    # ... as a torch.export program, loadable without nasdun

``import nasdun`` stays light: every name below is loaded on first use, and torch, Ray, Optuna
and seaborn load only inside the functions that need them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "search": ("nasdun.interfaces.api", "search"),
    "train": ("nasdun.interfaces.api", "train"),
    "read_results": ("nasdun.interfaces.api", "read_results"),
    "judge": ("nasdun.interfaces.api", "judge"),
    "load_network": ("nasdun.interfaces.api", "load_network"),
    "export_network": ("nasdun.interfaces.api", "export_network"),
    "presets": ("nasdun.interfaces.api", "presets"),
    "settings": ("nasdun.interfaces.api", "settings"),
    "protocols": ("nasdun.interfaces.api", "protocols"),
    "average": ("nasdun.interfaces.api", "average"),
    "heatmap": ("nasdun.interfaces.api", "heatmap"),
    "retrain": ("nasdun.interfaces.api", "retrain"),
    "promote": ("nasdun.interfaces.api", "promote"),
    "confirm": ("nasdun.interfaces.api", "confirm"),
    "report": ("nasdun.interfaces.api", "report"),
    "repair": ("nasdun.interfaces.api", "repair"),
    "reconstruct": ("nasdun.interfaces.api", "reconstruct"),
    "classical": ("nasdun.interfaces.api", "classical"),
    "compare": ("nasdun.interfaces.api", "compare"),
    "compare_samplers": ("nasdun.interfaces.api", "compare_samplers"),
    "fidelity": ("nasdun.interfaces.api", "fidelity"),
    "bench": ("nasdun.interfaces.api", "bench"),
    "preset": ("search_spaces.presets", "preset"),
    "Genotype": ("search_spaces.genotype", "Genotype"),
    "SearchSpace": ("search_spaces.genotype", "SearchSpace"),
    "SearchConfig": ("nasdun.orchestration.searchconfig", "SearchConfig"),
    "Setting": ("trainers.problems.make", "Setting"),
    "Protocol": ("trainers.protocols", "Protocol"),
    "RunOptions": ("trainers.options", "RunOptions"),
    "NasdunError": ("nasdun.core.errors", "NasdunError"),
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'nasdun' has no attribute {name!r}; the API is: {', '.join(_API)}")
    module, attr = _API[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

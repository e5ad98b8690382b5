"""Per-candidate metrics to the experiment trackers researchers use: ``track: [tensorboard, mlflow]`` in a search
config, ``--track tensorboard,mlflow`` on the command line.

As each cohort ends, the driver logs every candidate of it at step = its trial number: ``candidate/val_nmse_db``,
``candidate/test_nmse_db`` (found networks), ``hand_design/<name>`` (the baselines), and ``search/best_val_nmse_db``
(the best found so far). TensorBoard event files go to ``DIR/tensorboard`` (tensorboardX, which Ray Tune brings:
``tensorboard --logdir DIR/tensorboard``); MLflow, when installed, to ``$MLFLOW_TRACKING_URI`` or ``sqlite:///DIR/mlflow.db``,
one MLflow run per search session with the search's configuration as parameters. The results table stays the
record; trackers are views of it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nasdun.core.errors import NasdunError

TRACKERS = ("tensorboard", "mlflow")


def check_trackers(kinds: Sequence[str]) -> None:
    """Each of ``kinds`` is a known tracker whose package is installed; a one-line error otherwise."""
    for kind in kinds:
        if kind not in TRACKERS:
            raise NasdunError(f"track {kind!r}; expected some of: {', '.join(TRACKERS)}")
        module = {"tensorboard": "tensorboardX", "mlflow": "mlflow"}[kind]
        try:
            __import__(module)
        except ImportError:
            raise NasdunError(f"track {kind!r} needs the package {module}, which is not installed (pip install {module})") from None


class Tracker:
    """The trackers of one search session; :meth:`log` after each cohort, :meth:`close` at the end."""

    def __init__(self, run_dir: Path, kinds: Sequence[str], params: Mapping[str, Any]) -> None:
        check_trackers(kinds)
        self.tb: Any = None
        self.mlflow: Any = None
        self.best = math.inf
        if "tensorboard" in kinds:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        if "mlflow" in kinds:
            import mlflow

            if not os.environ.get("MLFLOW_TRACKING_URI"):
                mlflow.set_tracking_uri(f"sqlite:///{(run_dir / 'mlflow.db').resolve()}")  # MLflow 3 refuses a file store by default
            mlflow.set_experiment("nasdun")
            mlflow.start_run(run_name=run_dir.name)
            mlflow.log_params({k: str(v)[:250] for k, v in params.items()})
            self.mlflow = mlflow

    def log(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            step, values = int(row["trial_number"]), {}
            val, test = _finite(row.get("val_nmse_db")), _finite(row.get("test_nmse_db"))
            preset = str(row.get("preset") or "")
            if preset and val is not None:
                values[f"hand_design/{preset.replace('=', '_')}"] = val  # lista=meng2021 at K = 3: one genotype
            elif row.get("status") == "ok" and val is not None:
                values["candidate/val_nmse_db"] = val
                if test is not None:
                    values["candidate/test_nmse_db"] = test
                self.best = min(self.best, val)
                values["search/best_val_nmse_db"] = self.best
            for tag, value in values.items():
                if self.tb is not None:
                    self.tb.add_scalar(tag, value, step)
                if self.mlflow is not None:
                    self.mlflow.log_metric(tag.replace("/", "."), value, step=step)
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.mlflow is not None:
            self.mlflow.end_run()


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None

"""Ray for `nasdun search`: join a cluster or start a local one, with one-line errors where Ray would hang or trace.

A cluster given with ``--address`` must answer as a Ray GCS within :data:`GCS_TIMEOUT_S` (probed in a
subprocess, so a port where something else listens fails in bounded time), and its token must be accepted;
a local Ray that can never place one cohort is refused instead of waiting forever.
"""

from __future__ import annotations

import os
from typing import Any

from nasdun.core.errors import NasdunError
from nasdun.orchestration.searchconfig import SearchConfig

WORKER_NICENESS = "RAY_worker_niceness"  # Ray's setting: how much its worker processes add to their niceness (default 15)
GCS_TIMEOUT_S = 20.0  # a cluster address must answer as a Ray GCS within this long
AUTH_HINT = (
    "the cluster requires an authentication token and this one is missing or wrong: set RAY_AUTH_MODE=token and give the"
    " cluster's token in RAY_AUTH_TOKEN or in the file named by RAY_AUTH_TOKEN_PATH (default ~/.ray/auth_token)"
)


def start_ray(address: str | None, num_cpus: int | None) -> None:
    import ray
    from ray.exceptions import AuthenticationError

    if address and address != "auto" and not address.startswith("ray://"):
        _check_reachable(address)
        _probe_gcs(address)
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # the results table is ours
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C raises in the driver: nasdun names its own resume command
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "100")
    # Ray raises its workers' niceness by 15, so the cohorts (which train in them) yield to anything else on the
    # machine: with both cores taken a small search ran 13.7x slower (docs/results/throughput.md). A local Ray's
    # workers keep the driver's priority (a cluster's is set where it starts: cluster/).
    os.environ.setdefault(WORKER_NICENESS, "0")
    try:
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
            _end_with_driver()
    except AuthenticationError:
        raise NasdunError(f"could not join the Ray cluster at address={address!r}: {AUTH_HINT}", ("address",)) from None
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
        raise NasdunError(f"could not reach a Ray cluster at address={address!r}: {str(err).splitlines()[0]}", ("address",)) from None


_WATCHER: Any = None  # the driver's end of the pipe to nasdun.orchestration.raywatch, held for the driver's life


def _end_with_driver() -> None:
    """The local Ray's processes end with this driver, a SIGKILL included (:mod:`nasdun.orchestration.raywatch` says why it is needed)."""
    import subprocess
    import sys

    global _WATCHER
    if _WATCHER is not None:
        return
    _WATCHER = subprocess.Popen(
        [sys.executable, "-m", "nasdun.orchestration.raywatch", str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def _probe_gcs(address: str) -> None:
    """Join the cluster once in a subprocess, within GCS_TIMEOUT_S: a port where something other than Ray listens
    (ray.init would retry for many minutes there) or a refused token becomes a one-line error in bounded time."""
    import subprocess
    import sys

    code = "import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR'); print('NASDUN-GCS-OK')"
    try:
        proc = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True, timeout=GCS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise NasdunError(
            f"address={address!r} accepts connections but did not answer as a Ray cluster (GCS) within {GCS_TIMEOUT_S:g} s;"
            " expected the address of a Ray head node (Ray's `ray start` prints it on the head node)",
            ("address",),
        ) from None
    if "NASDUN-GCS-OK" in proc.stdout:
        return
    text = proc.stderr
    if "AuthenticationError" in text or ("token" in text.lower() and "auth" in text.lower()):
        raise NasdunError(f"could not join the Ray cluster at address={address!r}: {AUTH_HINT}", ("address",))
    last = next((line for line in reversed(text.strip().splitlines()) if line.strip()), "no answer")
    raise NasdunError(f"could not reach a Ray cluster at address={address!r}: {last[:200]}", ("address",))


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with one line, where ray.init would retry for minutes."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise NasdunError(f"address={address!r}; expected auto, ray://host:port or host:port", ("address",))
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise NasdunError(f"could not reach a Ray cluster at address={address!r}: {err.strerror or err}", ("address",)) from None


def check_resources(cfg: SearchConfig, autoscaling: bool) -> None:
    """A local Ray that can never place one cohort would wait forever: say so instead.

    A cluster given with ``--address`` may autoscale, so there a shortfall is only reported."""
    import ray

    res = ray.cluster_resources()
    short = [
        f"{kind}={need} per trial but the cluster has {res.get(key, 0):g}"
        for kind, key, need in (("cpus_per_trial", "CPU", cfg.cpus_per_trial), ("gpus_per_trial", "GPU", cfg.gpus_per_trial))
        if need > res.get(key, 0)
    ]
    if short and not autoscaling:
        raise NasdunError(f"{'; '.join(short)}; lower them in the config or run on a cluster that has them (address=HOST:PORT)", ("address",))
    if short:
        print(f"nasdun: waiting for the cluster to provide {'; '.join(short)}", flush=True)


def concurrency(cfg: SearchConfig) -> int:
    import ray

    if cfg.max_concurrent:
        return cfg.max_concurrent
    res = ray.cluster_resources()
    by_cpu = int(res.get("CPU", 1) // cfg.cpus_per_trial)
    by_gpu = int(res.get("GPU", 0) // cfg.gpus_per_trial) if cfg.gpus_per_trial > 0 else by_cpu
    return max(1, min(by_cpu, by_gpu))

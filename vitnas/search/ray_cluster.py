"""Ray, where vitnas reaches it: importing it, joining or starting a cluster, checking its resources.

The search's Ray backend (`vitnas.search.ray_backend`) and the rank check's stand-alone
runs (`vitnas.rank.runs`) both start or join Ray the same way; this module is the one
place that does it, so the rest of vitnas reaches Ray only through vitnas/search/.
``ray`` itself is imported on first use (`require_ray`): ``import vitnas`` never needs it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from typing import Any, Mapping
from urllib.parse import urlsplit

from vitnas.errors import BackendError

__all__ = ["RAY_MISSING", "check_cluster", "connect", "describe_resources", "last_line", "require_ray"]

log = logging.getLogger(__name__)

RAY_MISSING = 'backend ray: Ray is not installed (pip install "ray[tune]")'
_CONNECT_TIMEOUT_S = 5.0  # how long a cluster address gets to accept a TCP connection before it counts as unreachable


def require_ray() -> Any:
    """The `ray` module, imported here so that `import vitnas` never needs it.

    Raises:
        BackendError: Ray is not installed (one line, with the pip command).
    """
    try:
        import ray
    except ImportError:
        raise BackendError(RAY_MISSING) from None
    return ray


def connect(ray: Any, address: str | None, workers: int, gpus_per_worker: float, cpus_per_worker: float) -> bool:
    """Initialises Ray as asked; True when this backend must shut it down again.

    A Ray already initialised by the caller is used as it is. An explicit address is
    first probed over TCP: ``ray.init`` retries an unreachable one for minutes.
    """
    if address is not None and address not in ("auto", "local"):
        _probe(address)
    if ray.is_initialized():
        log.info("ray backend: using the Ray this process already initialised")
        return False
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address is not None and address != "local":
            ray.init(address=address, **options)
        else:
            _choose_token_authentication()
            ray.init(
                address="local",  # always a fresh instance: never join a `ray start` cluster by accident
                num_cpus=max(1, math.ceil(workers * cpus_per_worker)),
                num_gpus=None if gpus_per_worker > 0 else 0,  # detect GPUs only when workers want them
                include_dashboard=False,
                **options,
            )
    except Exception as failure:
        where = f"the Ray cluster at {address}" if address not in (None, "local") else "a local Ray"
        raise BackendError(f"backend ray: cannot start or reach {where} ({last_line(failure)})") from None
    return True


def _choose_token_authentication() -> None:
    """Opts the local Ray about to start into token authentication explicitly, keeping a mode the user set.

    Ray (2.59 on) enables token authentication for a local Ray whose mode is unset, and
    then warns on every start that it chose so; vitnas's private Ray wants that secure
    default, so it states it instead of leaving it to a warning. The mode lives in
    ``RAY_AUTH_MODE`` (read by Ray's child processes too) and is cached at ``import ray``,
    so it is set with Ray's own helper, which refreshes the cache. A Ray without token
    authentication (before 2.52) has nothing to choose.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication.authentication_token_setup import _enable_token_auth
    except ImportError:
        return
    _enable_token_auth()


def _probe(address: str) -> None:
    """Raises one BackendError line unless ``host:port`` (or ``ray://host:port``) accepts a TCP connection."""
    parsed = urlsplit(address if "://" in address else f"//{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host = port = None
    if not host or port is None:
        raise BackendError(f"backend ray: address {address!r}: expected host:port, ray://host:port or auto")
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
            pass
    except OSError as failure:
        reason = failure.strerror or type(failure).__name__
        raise BackendError(f"backend ray: cannot reach the Ray cluster at {address} ({reason})") from None


def check_cluster(ray: Any, workers: int, gpus_per_worker: float, cpus_per_worker: float) -> None:
    """Fails at once, in one line, when the cluster could never host the workers (they would wait forever)."""
    total = ray.cluster_resources()
    for resource, each in (("CPU", cpus_per_worker), ("GPU", gpus_per_worker)):
        needed = workers * each
        if needed > total.get(resource, 0.0) + 1e-9:
            raise BackendError(
                f"backend ray: {workers} worker{'s' if workers != 1 else ''} x {each:g} {resource} need "
                f"{needed:g} {resource}, the cluster has {total.get(resource, 0.0):g}"
            )


def last_line(failure: BaseException) -> str:
    """The last non-empty line of an error (Ray's errors carry the remote traceback above it)."""
    lines = [line.strip() for line in str(failure).splitlines() if line.strip()]
    return (lines[-1] if lines else type(failure).__name__)[:300]


def describe_resources(resources: Mapping[str, float]) -> str:
    shown = {key: value for key, value in resources.items() if key in ("CPU", "GPU")}
    return ", ".join(f"{value:g} {key}" for key, value in sorted(shown.items())) or "none"

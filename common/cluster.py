"""The one way trinity-data joins or starts a Ray cluster.

Rule, the same for every command and job: an explicit ``address`` wins, then the
``RAY_ADDRESS`` environment variable (set by ``ray job submit`` and on KubeRay pods);
with neither a local cluster is started, capped at ``num_cpus``. A process that is
already connected is left as it is. Ray is imported only when called.
"""

from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["connect_ray", "resolve_address"]

log = logging.getLogger(__name__)


def resolve_address(address: str | None = None) -> str | None:
    """The cluster to join: ``address``, else ``RAY_ADDRESS``, else ``None`` (start a local one)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def connect_ray(address: str | None = None, *, num_cpus: int | None = None, log_to_driver: bool = False,
                **init_kwargs: Any) -> bool:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), or start a local one.

    Args:
        address: ``ray://...``, ``host:port`` or ``auto``; ``None`` falls back to
            ``RAY_ADDRESS``, then to a new local cluster.
        num_cpus: CPUs of a local cluster (ignored when joining: Ray refuses it there).
        log_to_driver: forward workers' stdout/stderr to this process.
        init_kwargs: anything else for ``ray.init`` (``runtime_env``...).

    Returns:
        True when this call connected (the caller owns ``ray.shutdown()``), False when
        the process was already connected.
    """
    import ray

    if ray.is_initialized():
        return False
    target = resolve_address(address)
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": log_to_driver,
                              "configure_logging": False, **init_kwargs}
    if target:
        kwargs["address"] = target
    elif num_cpus:
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)
    log.info("ray: %s", target or f"local cluster ({num_cpus or 'all'} CPUs)")
    return True

"""How tasks arrive, and the registry of workloads by :class:`~qbench.kinds.WorkloadKind`.

Adding a workload: a module with a class that implements :class:`Workload`
(``prepare`` the iteration's database, ``drive`` the executor over it), plus
its line in :data:`WORKLOADS` (and its member in ``WorkloadKind``).
"""

from __future__ import annotations

from qbench.kinds import WorkloadKind
from qbench.run.registry import lookup
from qbench.run.workloads.drain import DrainWorkload
from qbench.run.workloads.protocol import Bench, Driven, Workload
from qbench.run.workloads.steady import BurstWorkload, SteadyWorkload
from qbench.settings import Config

WORKLOADS: dict[WorkloadKind, Workload] = {
    WorkloadKind.DRAIN: DrainWorkload(),
    WorkloadKind.STEADY: SteadyWorkload(),
    WorkloadKind.BURST: BurstWorkload(),
}


def workload_for(cfg: Config) -> Workload:
    """The workload ``cfg.workload.kind`` names.

    Raises:
        ConfigError: no workload is registered for that kind.
    """
    return lookup(WORKLOADS, "workload.kind", cfg.workload.kind)


__all__ = [
    "WORKLOADS",
    "Bench",
    "BurstWorkload",
    "DrainWorkload",
    "Driven",
    "SteadyWorkload",
    "Workload",
    "workload_for",
]

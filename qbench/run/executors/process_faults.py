"""``faults.kill``: worker processes killed with SIGKILL mid-task, and respawned, as a supervisor would.

The K moments of each drain are drawn from ``seed`` (numpy Generator) as
points of its progress rather than of the clock, so they always fall inside
the drain whatever its speed: kill k happens once the processes together
have acknowledged ``u_k * tasks`` tasks, ``u_k`` uniform in (0.1, 0.6),
sorted, i.e. somewhere in the first part of the drain, with time left for
the killed leases to expire and come back. At each moment the parent kills
a process, chosen among those that hold a claimed task right now and are
not inside an ack transaction (the fence of
:class:`~qbench.run.executors.process_shared.FencedQueue`): so the kill is
mid-task, a task is left leased, and no acknowledged task can be lost with
the process. The respawned process (same share, a fresh lease-token range)
starts at once, its start-up inside the measured window as a supervisor's
restart would be.
"""

from __future__ import annotations

import time
from typing import Protocol, TypeVar

import numpy as np

from qbench.run.executors.protocol import DrainSpec

# the part of the drain (fractions of its tasks acknowledged) in which kills are drawn
KILL_FROM, KILL_TO = 0.1, 0.6
# seconds one look at the processes may spend waiting for one to hold a task
_LOOK_S = 0.02
_POLL_S = 0.0002

P = TypeVar("P")


class Killer(Protocol[P]):
    def acked(self) -> int: ...

    def killable(self) -> list[P]: ...

    def kill(self, proc: P) -> bool: ...


class KillSchedule:
    """When to kill, and how many kills were injected so far."""

    def __init__(self, spec: DrainSpec) -> None:
        self.tasks = spec.tasks
        self.rng = np.random.default_rng(spec.seed)
        fractions = np.sort(self.rng.uniform(KILL_FROM, KILL_TO, spec.faults_kill))
        # first-ack totals at which the kills are due, in order
        self.due = [max(1, int(f * spec.tasks)) for f in fractions]
        self.injected = 0

    @property
    def pending(self) -> bool:
        return bool(self.due)

    def step(self, processes: Killer[P]) -> None:
        """Inject every kill that is due; a kill with no process holding a task waits for a later look."""
        while self.due and processes.acked() >= self.due[0]:
            if processes.acked() >= self.tasks:
                self.due.clear()  # all acknowledged: nothing left to kill mid-task
                return
            if not self._kill_one(processes):
                return
            self.due.pop(0)
            self.injected += 1

    def _kill_one(self, processes: Killer[P]) -> bool:
        until = time.perf_counter() + _LOOK_S
        while True:
            candidates = processes.killable()
            if candidates:
                chosen = candidates[int(self.rng.integers(len(candidates)))]
                if processes.kill(chosen):
                    return True
            if time.perf_counter() >= until:
                return False
            time.sleep(_POLL_S)

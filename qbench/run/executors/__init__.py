"""How workers run, and the registry of executors by :class:`~qbench.kinds.ExecutorKind`.

Adding an executor: a module with a function (or callable object) that
implements :class:`Executor` (take a :class:`DrainSpec` and the queue, return
a :class:`DrainResult`), plus its line in :data:`EXECUTORS` (and its member in
``ExecutorKind``).
"""

from __future__ import annotations

from qbench.kinds import ExecutorKind
from qbench.run.executors.async_executor import run_drain
from qbench.run.executors.process_executor import run_drain_processes
from qbench.run.executors.protocol import DrainResult, DrainSpec, Executor, ProgressSink, drain_spec
from qbench.run.executors.thread_executor import run_drain_threads
from qbench.run.registry import lookup
from qbench.settings import Config

EXECUTORS: dict[ExecutorKind, Executor] = {
    ExecutorKind.ASYNC: run_drain,
    ExecutorKind.THREAD: run_drain_threads,
    ExecutorKind.PROCESS: run_drain_processes,
}


def executor_for(cfg: Config) -> Executor:
    """The executor ``cfg.executor.kind`` names.

    Raises:
        ConfigError: no executor is registered for that kind.
    """
    return lookup(EXECUTORS, "executor.kind", cfg.executor.kind)


__all__ = [
    "EXECUTORS",
    "DrainResult",
    "DrainSpec",
    "Executor",
    "ProgressSink",
    "drain_spec",
    "executor_for",
    "run_drain",
    "run_drain_processes",
    "run_drain_threads",
]

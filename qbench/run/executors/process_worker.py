"""The worker side of executor=process: one spawned OS process running its share of the workers.

A worker process runs its share with the existing executors: a share of one
worker runs :func:`run_drain_threads` with one thread (one plain sqlite3
loop: there is nothing to interleave), a larger share runs :func:`run_drain`
(coroutines over its own aiosqlite pool), or threads for a client-level
queue, whose calls are synchronous. It opens its connections (every
PRAGMA set and read back) before the clock starts: the executor's start hook
(called once the pool is open) says ``ready`` to the parent and waits for the
release, so interpreter start-up, imports and connecting are never measured.
Its DrainStats, CPU time (psutil, from the release on) and peak RSS
(VmHWM, exact) go back to the parent through a pipe.

What the processes share with the parent is in
:mod:`~qbench.run.executors.process_shared`; the release is a ``go`` on the
process's own pipe.
"""

from __future__ import annotations

import ctypes
import dataclasses
import resource
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from qbench.errors import MeasurementError
from qbench.run.executors.async_executor import run_drain
from qbench.run.executors.process_shared import CountedElsewhere, FencedQueue, Shared, SharedCount, Slot
from qbench.run.executors.protocol import DrainSpec
from qbench.run.executors.thread_executor import run_drain_threads
from qbench.run.metrics import DrainStats
from qbench.run.queues.protocol import QueueUnderTest, connections_owner

# seconds every worker process has to start, import and open its connections
START_TIMEOUT_S = 60.0
# lease tokens per worker process: process i (respawns included) counts from i * TOKEN_RANGE + 1
TOKEN_RANGE = 2**40
_PR_SET_PDEATHSIG = 1


class Aborted(MeasurementError):
    """The parent gave up before releasing the workers (another process failed, Ctrl-C)."""


@dataclass(frozen=True)
class ChildResult:
    """What a worker process sends back once its drain is over."""

    stats: DrainStats
    # its own clock start (the ledger's t_start), before the release
    t_start: float
    pool_connections: int
    cpu_user_s: float
    cpu_sys_s: float
    rss_peak_bytes: int
    io_read_bytes: int | None
    io_write_bytes: int | None


def rss_peak_bytes(pid: int | None = None) -> int:
    """A process's own RSS high-water mark (this one's by default): VmHWM on Linux.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: in a spawned process (fork, then exec) Linux
    carries the parent's peak over the exec, so a small worker of a large parent would
    report the parent's RSS. Elsewhere: ru_maxrss for this process, the current RSS for another.
    """
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def _io() -> tuple[float, float]:
    try:
        io = psutil.Process().io_counters()
    except (psutil.Error, AttributeError, NotImplementedError, OSError):
        return -1.0, -1.0
    return float(io.read_bytes), float(io.write_bytes)


def _count_busy_into(total: SharedCount) -> None:
    """Every busy error this process's executor counts is added to the shared total (the
    parent's livelock watchdog reads it). This process runs nothing else."""
    original = DrainStats.count_busy

    def count_busy(self: DrainStats, err: Any) -> None:
        original(self, err)
        total.add(1)

    setattr(DrainStats, "count_busy", count_busy)  # noqa: B010 (a method, replaced in this process only)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt("SIGTERM")


def _die_with_parent() -> None:
    """SIGKILL this process if the parent dies (Linux), so no worker outlives a killed qbench."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _drain(
    spec: DrainSpec, queue: QueueUnderTest, slot: Slot, shared: Shared, pipe: Connection
) -> ChildResult:
    """Run this process's share once the parent releases it."""
    acks = SharedCount(shared.acks, slot.index, shared.first, shared.first_lock)
    if slot.mirror is not None:
        queue = FencedQueue(queue, slot, spec.first_id, acks)
        acks = CountedElsewhere(shared.acks, slot.index)
    started: list[float] = []

    def at_start(t_start: float) -> None:  # the pool is open: say so, wait for the release
        # CPU and I/O are read before the wait, which uses neither: after "go" the drain
        # starts at once, with no /proc reads between the parent's clock and the first claim
        cpu = psutil.Process().cpu_times()
        slot.at_release[:] = [cpu.user, cpu.system, *_io()]
        pipe.send(("ready", t_start))
        # a message on a pipe, not a shared Event: an Event's set() waits for every sleeper
        # to wake, forever if one was killed while it waited
        if not pipe.poll(START_TIMEOUT_S) or pipe.recv() != "go":
            raise Aborted(f"worker process {slot.index} was not released")
        started.append(t_start)

    mine = dataclasses.replace(
        spec,
        workers=slot.workers,
        pool_size=slot.pool_size,
        token_base=spec.token_base + slot.index * TOKEN_RANGE,
        # the parent keeps the iteration's deadline and the watchdog, over every process
        timeout_s=spec.timeout_s + START_TIMEOUT_S,
        watchdog_s=0.0,
        on_start=at_start,
    )
    # a client-level queue's calls are synchronous: its share always runs as threads
    threaded = slot.workers == 1 or connections_owner(queue) is not None
    drain = run_drain_threads if threaded else run_drain
    result = drain(mine, queue, shared=acks)
    cpu = psutil.Process().cpu_times()
    at = list(slot.at_release)
    io = _io()
    return ChildResult(
        stats=result.stats,
        t_start=started[0],
        pool_connections=result.pool_connections,
        cpu_user_s=cpu.user - at[0],
        cpu_sys_s=cpu.system - at[1],
        rss_peak_bytes=rss_peak_bytes(),
        io_read_bytes=None if min(io[0], at[2]) < 0 else int(io[0] - at[2]),
        io_write_bytes=None if min(io[1], at[3]) < 0 else int(io[1] - at[3]),
    )


def worker_main(spec: DrainSpec, queue: QueueUnderTest, slot: Slot, shared: Shared, pipe: Connection) -> None:
    """A worker process's entry point: ("ready", t_start), then ("done", ChildResult) or
    ("error", one line); nothing at all when the parent stopped it (SIGTERM)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    signal.signal(signal.SIGTERM, _on_sigterm)
    _count_busy_into(SharedCount(shared.busy, slot.index))
    try:
        pipe.send(("done", _drain(spec, queue, slot, shared, pipe)))
    except (KeyboardInterrupt, Aborted):
        pass
    except BaseException as exc:
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        try:
            pipe.send(("error", text))
        except OSError:
            pass
    finally:
        pipe.close()

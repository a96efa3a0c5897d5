"""The parent's handle on the worker processes of one drain: spawn, start barrier, messages, kills, stop.

Each process reports through its own pipe (``ready``, then ``done`` or
``error``); a process that ends without reporting, or whose error comes
back, fails the drain with one line naming it. :meth:`WorkerProcesses.close`
ends every process however the drain ended: a finished one is joined, any
other is asked to stop (SIGTERM: its connections are closed), then killed.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext, SpawnProcess

import psutil

from qbench.errors import WorkerProcessError
from qbench.run.executors.process_shared import Shared, Slot
from qbench.run.executors.process_worker import START_TIMEOUT_S, ChildResult, rss_peak_bytes, worker_main
from qbench.run.executors.protocol import DrainSpec, ProcessUsage
from qbench.run.metrics import DrainStats
from qbench.run.queues.protocol import QueueUnderTest

# seconds a stopped process has to close its connections before it is killed
STOP_GRACE_S = 5.0


@dataclass
class _Process:
    slot: Slot
    process: SpawnProcess
    pipe: Connection
    # started by faults.kill's respawn, after the release
    respawned: bool
    ready: bool = False
    result: ChildResult | None = None
    # killed by faults.kill: what was read of it just before, its per-task counts from the mirror
    killed: ProcessUsage | None = None
    killed_stats: DrainStats | None = None

    @property
    def running(self) -> bool:
        return self.result is None and self.killed is None

    def describe(self) -> str:
        return f"worker process {self.slot.index} (pid {self.process.pid})"


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _send(pipe: Connection, message: str) -> None:
    try:
        pipe.send(message)
    except OSError:
        pass  # closed, or the process is gone


class WorkerProcesses:
    """The worker processes of one drain, and what they share with the parent."""

    def __init__(self, spec: DrainSpec, queue: QueueUnderTest, ctx: SpawnContext, *, fence: bool) -> None:
        self.spec, self.queue, self.ctx, self.fence = spec, queue, ctx, fence
        # a cell per process of the shared totals: the first ones and one per respawn
        self.shared = Shared.create(
            ctx, (spec.processes or spec.workers) + spec.faults_kill, spec.tasks if spec.claims_summed else 0
        )
        self.all: list[_Process] = []
        # perf_counter time of the release: every process's clock is made relative to it
        self.t_start = 0.0

    def spawn(self, workers: int, pool_size: int) -> None:
        """Start a process for ``workers`` workers over ``pool_size`` connections; after the
        release (a respawn) it starts at once, without waiting."""
        index = len(self.all)
        slot = Slot.create(self.ctx, index, workers, pool_size, self.spec.tasks, self.fence)
        ours, theirs = self.ctx.Pipe()
        process = self.ctx.Process(
            target=worker_main,
            args=(self.spec, self.queue, slot, self.shared, theirs),
            name=f"qbench-worker-{index}",
            daemon=True,
        )
        # Started with SIGINT blocked (inherited over the exec): a Ctrl-C while it imports is
        # the parent's to handle, not a traceback from every worker; the parent's stays pending.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            theirs.close()  # the child holds its own end: EOF once it is gone
        self.all.append(_Process(slot, process, ours, respawned=self.t_start > 0))
        if self.t_start > 0:
            _send(ours, "go")  # read once it is ready: it does not wait for anyone

    @property
    def pool_connections(self) -> int:
        return sum(p.slot.pool_size for p in self.all if not p.respawned)

    def acked(self) -> int:
        return int(sum(self.shared.acks))

    def busy(self) -> int:
        return int(sum(self.shared.busy))

    def finished(self) -> bool:
        return not any(p.running for p in self.all)

    def wait_ready(self) -> None:
        """Until every process has opened its connections and waits for the release.

        Raises:
            WorkerProcessError: one failed or died, or they were not all ready in time.
        """
        deadline = time.perf_counter() + START_TIMEOUT_S
        while not all(p.ready for p in self.all if p.running):
            left = deadline - time.perf_counter()
            if left <= 0:
                ready = sum(p.ready for p in self.all)
                raise WorkerProcessError(
                    f"worker processes not ready within {START_TIMEOUT_S:g} s: {ready} of {len(self.all)}"
                    " had opened their connections"
                )
            self.pump(min(left, 0.5))

    def release(self) -> None:
        """Start the clock and let every process go."""
        self.t_start = time.perf_counter()
        for proc in self.all:
            _send(proc.pipe, "go")  # one that died meanwhile is found by pump()

    def pump(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for messages and ends, and take them in.

        Raises:
            WorkerProcessError: a process sent an error, or ended without reporting.
        """
        running = [p for p in self.all if p.running]
        if not running:
            return
        ready = wait([p.pipe for p in running] + [p.process.sentinel for p in running], timeout)
        for proc in running:
            if proc.pipe in ready:
                self._receive(proc)
        for proc in running:
            if proc.process.sentinel in ready and proc.running:
                self._receive(proc)  # what it sent before it ended
                if proc.running:
                    proc.process.join(1.0)
                    raise WorkerProcessError(
                        f"{proc.describe()} ended without reporting ({_exit_reason(proc.process.exitcode)})"
                    )

    def _receive(self, proc: _Process) -> None:
        try:
            while proc.running and proc.pipe.poll():
                kind, body = proc.pipe.recv()
                if kind == "ready":
                    proc.ready = True
                elif kind == "done":
                    proc.result = body
                elif kind == "error":
                    raise WorkerProcessError(f"{proc.describe()} failed: {body}")
        except (EOFError, OSError):
            pass  # it is gone: its sentinel says how

    def killable(self) -> list[_Process]:
        """Processes that hold a claimed task and are not acknowledging one (a first look, unlocked)."""
        return [p for p in self.all if p.running and p.ready and p.slot.killable()]

    def kill(self, proc: _Process) -> bool:
        """SIGKILL ``proc`` if it still holds a task outside an ack, then respawn its share.

        Under the slot's lock the process cannot start an ack, so every ack the database
        committed is already in its mirror and in the shared total.
        """
        slot = proc.slot
        # a timeout: a process that died some other way holding its lock is found by pump()
        if not slot.lock.acquire(timeout=1.0):
            return False
        try:
            if not (proc.running and slot.killable()):
                return False
            proc.killed = self._reading(proc)
            proc.process.kill()
            proc.process.join(STOP_GRACE_S)
        finally:
            slot.lock.release()
        assert slot.mirror is not None
        proc.killed_stats = slot.mirror.stats(self.t_start)
        if self.spec.loss_on_kill:
            # at most once: what it held left the queue with it; settled in its (now
            # writer-less) cell of the first-ack total, so the drain does not wait for it
            held = proc.killed_stats
            self.shared.acks[slot.index] += int(((held.claims > 0) & (held.acks == 0)).sum())
        proc.pipe.close()
        self.spawn(slot.workers, slot.pool_size)
        return True

    def _reading(self, proc: _Process) -> ProcessUsage:
        """A live process's CPU since the release and its RSS peak, read just before a kill."""
        at = list(proc.slot.at_release)
        try:
            cpu = psutil.Process(proc.process.pid).cpu_times()
            user, system = max(0.0, cpu.user - at[0]), max(0.0, cpu.system - at[1])
        except psutil.Error:
            user = system = 0.0
        pid = proc.process.pid or 0
        return ProcessUsage(
            proc.slot.index, pid, proc.slot.workers, user, system, rss_peak_bytes(pid), completed=False
        )

    def parts(self) -> list[tuple[DrainStats, float]]:
        """Every process's stats with its clock's offset from the release."""
        out: list[tuple[DrainStats, float]] = []
        for proc in self.all:
            if proc.result is not None:
                out.append((proc.result.stats, proc.result.t_start - self.t_start))
            elif proc.killed_stats is not None:
                out.append((proc.killed_stats, 0.0))
        return out

    def usage(self) -> list[ProcessUsage]:
        out = []
        for proc in self.all:
            if proc.killed is not None:
                out.append(proc.killed)
            elif (r := proc.result) is not None:
                pid = proc.process.pid or 0
                out.append(
                    ProcessUsage(
                        proc.slot.index, pid, proc.slot.workers, r.cpu_user_s, r.cpu_sys_s, r.rss_peak_bytes
                    )
                )
        return out

    def io(self) -> tuple[int, int] | None:
        """Bytes read and written by the processes that reported; None if one could not tell."""
        results = [p.result for p in self.all if p.result is not None]
        if not results or any(r.io_read_bytes is None or r.io_write_bytes is None for r in results):
            return None
        return sum(r.io_read_bytes or 0 for r in results), sum(r.io_write_bytes or 0 for r in results)

    def close(self) -> None:
        """End every process: join a finished one; stop (SIGTERM), then kill, any other."""
        try:
            if not self.finished():
                for proc in self.all:
                    if proc.process.is_alive():
                        _send(proc.pipe, "stop")  # one waiting for the release leaves at once
                        proc.process.terminate()
            deadline = time.perf_counter() + STOP_GRACE_S
            for proc in self.all:
                proc.process.join(max(0.0, deadline - time.perf_counter()))
        finally:
            for proc in self.all:
                if proc.process.is_alive():
                    proc.process.kill()
            for proc in self.all:
                proc.process.join()
                proc.pipe.close()

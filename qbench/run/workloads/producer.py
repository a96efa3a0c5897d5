"""The open-loop producer: enqueues each task at its intended time, however fast the workers go.

It runs in a process of its own (multiprocessing's spawn context), so it never
shares a GIL with async or thread workers and is never slowed by them. It is
started before the clock, connects (every PRAGMA set and read back by
:func:`qbench.run.database.connect`) and says it is ready; the executor's
start hook (:meth:`Producer.release`) hands it the clock's start ``t0`` in a
shared value and sets an event. Then, tick by tick, every task whose intended
time has passed is enqueued in one transaction (at most ``batch_max`` tasks):
batching is what keeps up at high rates, and a late producer makes late
arrivals, never fewer. Task ``i`` gets id ``first_id + i``. Its actual enqueue
time (the commit, seconds from ``t0``) is written into an array shared with
the parent. Busy errors on its enqueue are retried (it is a producer, not a
worker) and counted apart. It stops after the last arrival.

SIGINT is blocked in the child (the mask is inherited across the spawn), so a
Ctrl-C reaches only the parent, which stops the producer (an event, then
SIGKILL after a timeout) before its ``KeyboardInterrupt`` goes on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from qbench.errors import MeasurementError
from qbench.run.database import connect
from qbench.run.pragmas import ConnectionSettings
from qbench.run.queues.protocol import QueueUnderTest
from qbench.run.queues.sql import BusyError, query, run_sync

# the longest the producer sleeps before it looks at its stop event again
_STOP_CHECK_S = 0.05
# busy retries of an enqueue: capped exponential backoff
_RETRY_BASE_S = 0.0001
_RETRY_CAP_S = 0.005
# seconds a spawned producer may take to start (interpreter, imports, connection)
START_TIMEOUT_S = 120.0
# seconds to wait for a stopped producer before it is killed
_STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ProducerOrders:
    """What the producer process needs (picklable)."""

    db_path: Path
    settings: ConnectionSettings
    queue: QueueUnderTest
    # id of the schedule's first task
    first_id: int
    payload: bytes
    # most tasks per enqueue transaction
    batch_max: int


@dataclass(frozen=True)
class ProducerResult:
    # the clock's start (perf_counter) the producer counted from
    t0: float
    # per task: seconds from t0 to the commit of its enqueue (NaN: never enqueued)
    enqueued_s: npt.NDArray[np.float64]
    # busy errors met (and retried) by the producer's enqueues
    busy_retries: int
    # enqueue transactions committed
    transactions: int


class _Stopped(Exception):
    """The parent asked the producer to stop."""


def _enqueue(conn: sqlite3.Connection, orders: ProducerOrders, ids: range, stop: Any) -> int:
    """Enqueue ``ids`` in one transaction, retrying busy errors; the retries it took."""
    attempt = 0
    while True:
        try:
            run_sync(conn, orders.queue.enqueue(ids, orders.payload, time.time()))
            return attempt
        except BusyError:
            if conn.in_transaction:
                conn.execute(query("rollback"))
            attempt += 1
            if stop.is_set():
                raise _Stopped from None
            time.sleep(min(_RETRY_CAP_S, _RETRY_BASE_S * 2 ** min(attempt, 10)))


def _enqueue_on_time(
    conn: sqlite3.Connection,
    orders: ProducerOrders,
    schedule: npt.NDArray[np.float64],
    enqueued: npt.NDArray[np.float64],
    t0: float,
    stop: Any,
) -> tuple[int, int]:
    """Enqueue every task once its intended time has passed; (busy retries, transactions)."""
    n, done, retries, transactions = len(schedule), 0, 0, 0
    perf_counter, sleep = time.perf_counter, time.sleep
    while done < n:
        now = perf_counter() - t0
        due = int(np.searchsorted(schedule, now, side="right"))
        if due <= done:
            sleep(min(float(schedule[done]) - now, _STOP_CHECK_S))
            if stop.is_set():
                raise _Stopped
            continue
        end = min(due, done + orders.batch_max)
        retries += _enqueue(conn, orders, range(orders.first_id + done, orders.first_id + end), stop)
        enqueued[done:end] = perf_counter() - t0
        transactions += 1
        done = end
        if transactions % 64 == 0 and stop.is_set():
            raise _Stopped
    return retries, transactions


def _await_release(release: Any, stop: Any, parent: int) -> bool:
    """Wait for the clock; False when stopped first or orphaned."""
    while not release.wait(0.2):
        if stop.is_set() or os.getppid() != parent:
            return False
    return not stop.is_set()


def _produce(
    orders: ProducerOrders,
    schedule_buf: Any,
    enqueued_buf: Any,
    t0: Any,
    events: tuple[Any, Any, Any],
    report: Connection,
    parent: int,
) -> None:
    """The producer process's body: connect, say ready, wait for the clock, enqueue, report."""
    ready, release, stop = events
    try:
        schedule = np.frombuffer(schedule_buf, dtype=np.float64)
        enqueued = np.frombuffer(enqueued_buf, dtype=np.float64)
        conn = connect(orders.db_path, orders.settings)
        try:
            ready.set()
            if not _await_release(release, stop, parent):
                report.send(("stopped",))
                return
            retries, transactions = _enqueue_on_time(conn, orders, schedule, enqueued, t0.value, stop)
            report.send(("done", retries, transactions))
        finally:
            conn.close()
    except _Stopped:
        report.send(("stopped",))
    except BaseException as exc:
        report.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        report.close()


class Producer:
    """The parent's handle on one producer process: start, release, result, and always close.

    Use as a context manager: leaving it stops the process (an event, then SIGKILL).
    """

    def __init__(self, orders: ProducerOrders, schedule: npt.NDArray[np.float64]) -> None:
        ctx = mp.get_context("spawn")
        n = len(schedule)
        self._schedule = ctx.RawArray("d", max(n, 1))
        np.frombuffer(self._schedule, dtype=np.float64)[:n] = schedule
        self._enqueued = ctx.RawArray("d", max(n, 1))
        self.enqueued_s = np.frombuffer(self._enqueued, dtype=np.float64)[:n]
        self.enqueued_s[:] = np.nan
        self._t0 = ctx.RawValue("d", 0.0)
        self.t0: float | None = None
        self._ready, self._release, self._stop = ctx.Event(), ctx.Event(), ctx.Event()
        self._report, send = ctx.Pipe(duplex=False)
        self._send: Connection | None = send
        self._process = ctx.Process(
            target=_produce,
            args=(
                orders,
                self._schedule,
                self._enqueued,
                self._t0,
                (self._ready, self._release, self._stop),
                send,
                os.getpid(),
            ),
            name="qbench-producer",
            daemon=True,
        )

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the process and wait until it is connected and holds its schedule.

        Raises:
            MeasurementError: it failed or did not get ready within ``timeout_s``.
        """
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self._process.start()  # the child inherits the mask: Ctrl-C is the parent's to handle
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        assert self._send is not None
        self._send.close()  # the child's copy is the only one left: its death is an EOF here
        self._send = None
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.05):
            if not self._process.is_alive() or self._report.poll():
                raise MeasurementError(f"the producer process failed to start: {self._message()}")
            if time.monotonic() > deadline:
                raise MeasurementError(f"the producer process was not ready within {timeout_s:g} s")

    def release(self, t0: float) -> None:
        """The executor's start hook: the clock starts at ``t0`` (perf_counter)."""
        self.t0 = t0
        self._t0.value = t0
        self._release.set()

    def result(self, timeout_s: float) -> ProducerResult:
        """What the producer did, once it enqueued its last task.

        Raises:
            MeasurementError: it failed, was stopped, or did not report within ``timeout_s``.
        """
        if self.t0 is None:
            raise MeasurementError("the producer was never released: the executor did not start its clock")
        if not self._report.poll(timeout_s):
            raise MeasurementError(f"the producer did not finish within {timeout_s:g} s")
        message = self._receive()
        if message[0] != "done":
            raise MeasurementError(f"the producer did not finish: {message[-1]}")
        self._process.join(_STOP_TIMEOUT_S)
        return ProducerResult(self.t0, self.enqueued_s.copy(), int(message[1]), int(message[2]))

    def _receive(self) -> tuple[Any, ...]:
        try:
            return tuple(self._report.recv())
        except (EOFError, OSError):
            return ("error", f"it died (exit code {self._process.exitcode})")

    def _message(self) -> str:
        if self._report.poll():
            return str(self._receive()[-1])
        return f"it died (exit code {self._process.exitcode})"

    def close(self) -> None:
        """Stop the process (if it still runs) and wait for it: never left running."""
        self._stop.set()
        process = self._process
        if process.ident is not None:
            process.join(_STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join(_STOP_TIMEOUT_S)
            if not process.is_alive():
                process.close()
        if self._send is not None:
            self._send.close()
        self._report.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


__all__ = ["START_TIMEOUT_S", "Producer", "ProducerOrders", "ProducerResult"]

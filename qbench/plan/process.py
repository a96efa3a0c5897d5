"""A plan's child sweeps: each in its own process group, stopped with the plan, never two at once.

Each sweep (``python -m qbench -m ...``) starts in a process group of its
own, so a signal meant for it reaches everything it started and nothing
else. While a plan runs, :class:`Signals` catches SIGTERM and SIGINT: a
running sweep's group gets the same signal (a second signal, or
:data:`GRACE_S` without an exit, gets SIGKILL), the plan waits for it and
then raises :class:`~qbench.errors.PlanInterrupted`; with no sweep running
the plan stops at once. On Linux a sweep also gets SIGTERM when the plan
process dies without a chance to forward one (SIGKILL). A stage's record
holds its sweep's pid and start time, so a re-run sees a sweep that still
runs (:func:`alive`) and refuses to start a second one into its directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import IO, Any

import psutil

from qbench.errors import PlanError, PlanInterrupted

# seconds a signalled sweep may take to stop before its group gets SIGKILL
GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1
_LIBC: Any = None


class Signals:
    """SIGTERM and SIGINT during a plan run: forwarded to the running sweep's group, then an exception."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.child: subprocess.Popen[bytes] | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        with contextlib.suppress(ValueError):  # not the main thread: signals stay as they are
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        again = self.received is not None
        self.received = self.received or signum
        child = self.child
        if child is None:
            raise PlanInterrupted(self.received)
        if child.poll() is None:
            kill_group(child.pid, signal.SIGKILL if again else signum)


def kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _die_with(parent: int) -> Callable[[], None]:
    """In the child, before exec: SIGTERM when the plan process dies (Linux), at once if it already has."""

    def prepare() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return prepare


def start(cmd: list[str], log: IO[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a sweep in a process group of its own (its pgid is its pid)."""
    global _LIBC
    if sys.platform.startswith("linux") and _LIBC is None:
        with contextlib.suppress(OSError):
            _LIBC = ctypes.CDLL(None, use_errno=True)
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        process_group=0,
        preexec_fn=_die_with(os.getpid()),  # only prctl and getppid run between fork and exec
    )


def wait(proc: subprocess.Popen[bytes], signals: Signals, tick: Callable[[], None]) -> int:
    """Wait for a sweep (calling ``tick`` twice a second); once signalled, stop its group within GRACE_S.

    Raises:
        PlanInterrupted: a signal arrived; the sweep and its group are gone.
    """
    deadline: float | None = None
    while proc.poll() is None:
        if signals.received is not None:
            deadline = deadline or time.monotonic() + GRACE_S
            if time.monotonic() > deadline:
                kill_group(proc.pid, signal.SIGKILL)
        else:
            tick()
        time.sleep(0.5 if signals.received is None else 0.05)
    if signals.received is not None:
        kill_group(proc.pid, signal.SIGKILL)  # whatever the sweep itself started
        raise PlanInterrupted(signals.received)
    return int(proc.returncode)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Make sure a sweep is gone: SIGTERM to its group, SIGKILL after GRACE_S."""
    if proc.poll() is None:
        kill_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid, signal.SIGKILL)
            proc.wait()


def started_at(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def alive(pid: object, started: object) -> bool:
    """The recorded process still runs (not a zombie, not a new process with a reused pid)."""
    if not isinstance(pid, int):
        return False
    try:
        proc = psutil.Process(pid)
        return bool(proc.status() != psutil.STATUS_ZOMBIE and proc.create_time() == started)
    except psutil.Error:
        return False


# seconds a sweep whose plan died may take to stop (it aggregates its finished jobs first)
ORPHAN_GRACE_S = 30.0


def orphaned(rec: dict[str, Any]) -> bool:
    """The recorded sweep runs on, but the plan process that recorded it is gone.

    A record without its plan's pid (written by hand or by an older qbench) is never
    taken for an orphan: its sweep may belong to anyone, so it is only ever refused.
    """
    if not isinstance(rec.get("plan_pid"), int) or rec.get("plan_pid") == os.getpid():
        return False
    return alive(rec.get("pid"), rec.get("started")) and not alive(
        rec.get("plan_pid"), rec.get("plan_started")
    )


def let_orphan_stop(rec: dict[str, Any]) -> None:
    """Give an orphaned sweep (told to stop when its plan died) time to clean up; then kill its group."""
    pid, started = rec.get("pid"), rec.get("started")
    deadline = time.monotonic() + ORPHAN_GRACE_S
    while alive(pid, started) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid, started) and isinstance(pid, int):
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid != os.getpgrp():  # only a sweep's own process group
                kill_group(pid, signal.SIGKILL)
        time.sleep(0.5)


def refuse_if_running(rec: dict[str, Any], plan: str, name: str) -> None:
    """Never two sweeps into one directory: a recorded sweep that still runs stops the plan.

    A sweep whose plan was killed is told to stop by the kernel (SIGTERM on its parent's
    death) and is let finish its clean-up first; one that outlives the grace is killed.

    Raises:
        PlanError: stage ``name``'s sweep is still running.
    """
    pid = rec.get("pid")
    if rec.get("status") == "running" and orphaned(rec):
        let_orphan_stop(rec)
    if rec.get("status") == "running" and alive(pid, rec.get("started")):
        raise PlanError(
            f"plan {plan}: stage '{name}': its sweep is still running (pid {pid}); "
            f"wait for it or stop it (kill -TERM -- -{pid}), then run the plan again"
        )

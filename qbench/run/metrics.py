"""What a drain records while it runs, and the gauges sampled beside it.

Counters are exact. Latency figures come from raw per-event values
(numpy percentiles), never from averages. RSS and WAL size are *sampled*
gauges (a background thread, every ``sample_interval_ms``): their maxima
can miss a short peak, and the schema says so.
"""

from __future__ import annotations

import os
import threading
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import psutil

from qbench.run.queues.sql import BUSY_CODE_COLUMNS, BusyError, TxPhase

BUSY_PHASES = (TxPhase.BEGIN, TxPhase.CLAIM, TxPhase.ACK, TxPhase.COMMIT)


@dataclass
class DrainStats:
    """Everything the workers of one iteration count and time."""

    # per task of the backlog (index = id - first id), from the workers' side: compact
    # numpy arrays (int32 counts, float64 times), about 20 bytes a task
    claims: np.ndarray
    executions: np.ndarray
    acks: np.ndarray
    # seconds from the start of the drain (DrainResult.t_start) to the task's first successful ack
    e2e_s: np.ndarray
    # seconds from the start of the drain to the task's first claim (NaN: never claimed)
    claimed_s: np.ndarray
    transactions: int = 0
    retries: int = 0
    busy_by_phase: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUSY_PHASES, 0))
    busy_by_code: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUSY_CODE_COLUMNS, 0))
    claims_empty: int = 0
    claims_given_up: int = 0
    acks_rejected: int = 0
    acks_given_up: int = 0
    acks_unknown: int = 0
    # claims of a task while another worker's unexpired lease on it was still in flight
    double_handed: int = 0
    # per-event timings in seconds: compact float64 arrays (array('d'), 8 bytes a value;
    # append, extend, len, iteration and np.asarray all work)
    lock_wait_s: array[float] = field(default_factory=lambda: array("d"))
    pool_wait_s: array[float] = field(default_factory=lambda: array("d"))
    claim_latency_s: array[float] = field(default_factory=lambda: array("d"))
    service_s: array[float] = field(default_factory=lambda: array("d"))

    @classmethod
    def for_tasks(cls, n: int) -> DrainStats:
        return cls(
            claims=np.zeros(n, dtype=np.int32),
            executions=np.zeros(n, dtype=np.int32),
            acks=np.zeros(n, dtype=np.int32),
            e2e_s=np.full(n, np.nan),
            claimed_s=np.full(n, np.nan),
        )

    @classmethod
    def counters_only(cls) -> DrainStats:
        """Stats with no per-task arrays: one worker's counters and timings, merged later."""
        return cls.for_tasks(0)

    def add_zero_pool_waits(self, n: int) -> None:
        """Record ``n`` pool waits of exactly 0 (a connection was free at once), in one call:
        the executors count them in their hot loop instead of timing them."""
        if n > 0:
            self.pool_wait_s.frombytes(bytes(8 * n))  # n float64 zeros

    @property
    def tasks_acked(self) -> int:
        return int(np.count_nonzero(self.acks))

    def count_busy(self, err: BusyError) -> None:
        phase = err.phase if err.phase in self.busy_by_phase else TxPhase.CLAIM
        self.busy_by_phase[phase] += 1
        self.busy_by_code[err.code_name] += 1

    @property
    def busy_total(self) -> int:
        return sum(self.busy_by_phase.values())


Seconds = Sequence[float] | npt.NDArray[np.floating]


def percentiles_ms(values_s: Seconds, qs: Sequence[float]) -> list[float | None]:
    """Percentiles (in ms) of raw values in seconds; NaNs dropped; None when there are none."""
    arr = np.asarray(values_s, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return [None] * len(qs)
    return [float(v) * 1000.0 for v in np.percentile(arr, qs)]


def max_ms(values_s: Seconds) -> float | None:
    arr = np.asarray(values_s, dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(arr.max()) * 1000.0 if arr.size else None


@dataclass
class ResourceUsage:
    cpu_user_s: float
    cpu_sys_s: float
    io_read_bytes: int | None
    io_write_bytes: int | None
    rss_peak_bytes: int | None
    wal_size_max_bytes: int | None


class ResourceMonitor:
    """Exact CPU and IO deltas over a window, plus sampled RSS and WAL size.

    Args:
        db_path: the database whose ``-wal`` file is watched.
        interval_s: seconds between samples; None samples only at start and stop.
    """

    def __init__(self, db_path: Path, interval_s: float | None) -> None:
        self._proc = psutil.Process()
        self._wal = Path(f"{db_path}-wal")
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rss_peak = 0
        self._wal_peak: int | None = None

    def _io(self) -> tuple[int, int] | None:
        try:
            io = self._proc.io_counters()
        except (psutil.AccessDenied, AttributeError, NotImplementedError, OSError):
            return None  # some kernels and containers refuse per-process IO counters
        return int(io.read_bytes), int(io.write_bytes)

    def _sample(self) -> None:
        try:
            self._rss_peak = max(self._rss_peak, int(self._proc.memory_info().rss))
        except psutil.Error:
            pass
        try:
            size = os.stat(self._wal).st_size
        except OSError:
            return
        self._wal_peak = size if self._wal_peak is None else max(self._wal_peak, size)

    def _run(self) -> None:
        assert self._interval_s is not None
        while not self._stop.wait(self._interval_s):
            self._sample()

    def start(self) -> None:
        self._cpu0 = self._proc.cpu_times()
        self._io0 = self._io()
        self._sample()
        if self._interval_s is not None:
            self._thread = threading.Thread(target=self._run, name="qbench-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> ResourceUsage:
        cpu1 = self._proc.cpu_times()
        io1 = self._io()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        io0 = self._io0
        return ResourceUsage(
            cpu_user_s=cpu1.user - self._cpu0.user,
            cpu_sys_s=cpu1.system - self._cpu0.system,
            io_read_bytes=None if io0 is None or io1 is None else io1[0] - io0[0],
            io_write_bytes=None if io0 is None or io1 is None else io1[1] - io0[1],
            rss_peak_bytes=self._rss_peak or None,
            wal_size_max_bytes=self._wal_peak,
        )

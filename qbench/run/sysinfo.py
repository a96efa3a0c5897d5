"""Machine description recorded with every benchmark job.

`collect_sysinfo` returns a flat, JSON-serialisable dict (CPU, RAM, OS,
Python, SQLite build, file system and fsync latency of the DB directory,
library versions, git revision). Every probe degrades to ``None`` or
``"unknown"`` instead of raising, so an odd machine never loses a run.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import closing, suppress
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import psutil

_T = TypeVar("_T")

# Lower-case names as reported by /proc/mounts (Linux) or statfs (macOS/BSD).
# POSIX advisory locks on these are missing, emulated or not coherent across
# clients, which is exactly what SQLite's locking relies on.
NETWORK_FS_TYPES: frozenset[str] = frozenset(
    # File sharing protocols.
    {"nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "afpfs", "webdav", "davfs", "9p"}
    # Cluster and distributed file systems.
    | {"ceph", "cephfs", "glusterfs", "lustre", "gpfs", "afs", "openafs", "coda", "ncpfs"}
    | {"beegfs", "orangefs", "pvfs2"}
    # FUSE clients of remote storage.
    | {"sshfs", "fuse.sshfs", "fuse.davfs", "fuse.ceph", "fuse.ceph-fuse", "fuse.glusterfs"}
    | {"fuse.s3fs", "fuse.rclone", "fuse.gcsfuse", "fuse.goofys", "fuse.juicefs"}
    | {"fuse.mountpoint-s3"}
)

# Recorded as version_<name>: the harness and its drivers shape the numbers,
# the analysis stack shapes the statistics computed from them.
_RUNTIME_DISTRIBUTIONS = ("qbench", "hydra-core", "omegaconf", "aiosqlite", "psutil")
_ANALYSIS_DISTRIBUTIONS = ("numpy", "pandas", "pyarrow", "scipy")

_GIT_TIMEOUT_S = 5.0


def filesystem_type(path: str | os.PathLike[str]) -> str:
    """Return the type (``"ext4"``, ``"nfs4"``...) of the mount holding `path`.

    `path` need not exist. Returns ``"unknown"`` when it cannot be told.
    """
    # realpath so a symlink into a network mount is judged by its target.
    target = Path(os.path.realpath(path))
    try:
        partitions = psutil.disk_partitions(all=True)
    except Exception:
        return "unknown"
    best_len = -1
    best_type = "unknown"
    for part in partitions:
        mountpoint = str(part.mountpoint)
        # `>=` because a later entry over the same mountpoint shadows earlier ones.
        if target.is_relative_to(mountpoint) and len(mountpoint) >= best_len:
            best_len = len(mountpoint)
            best_type = str(part.fstype) or "unknown"
    return best_type


def is_network_filesystem(fs_type: str) -> bool:
    """Tell whether `fs_type` names a network or distributed file system."""
    return fs_type.strip().lower() in NETWORK_FS_TYPES


def fsync_latency_us(
    directory: str | os.PathLike[str], samples: int = 16, size_bytes: int = 4096
) -> float | None:
    """Return the median microseconds of write(`size_bytes`) + fsync in `directory`.

    A temporary file is created in `directory` and always removed. Returns
    None if the directory refuses (any OSError).

    Raises:
        ValueError: If `samples` or `size_bytes` is not positive.
    """
    if samples < 1 or size_bytes < 1:
        raise ValueError(f"samples={samples} and size_bytes={size_bytes} must both be >= 1")
    # Random bytes so compressing or deduplicating file systems still do the IO.
    payload = os.urandom(size_bytes)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=".qbench-fsync-", dir=directory)
    except OSError:
        return None
    durations_ns: list[int] = []
    try:
        # Appending grows the file each time, like a WAL commit, so the
        # metadata flush is part of what gets measured.
        for _ in range(samples):
            start = time.perf_counter_ns()
            os.write(fd, payload)
            os.fsync(fd)
            durations_ns.append(time.perf_counter_ns() - start)
    except OSError:
        return None
    finally:
        # close() can itself fail on NFS (deferred write errors); the file
        # must still go.
        with suppress(OSError):
            os.close(fd)
        with suppress(OSError):
            os.unlink(tmp_name)
    return float(statistics.median(durations_ns)) / 1000.0


def collect_sysinfo(db_dir: str | os.PathLike[str]) -> dict[str, object]:
    """Describe this machine and `db_dir`, the directory holding the SQLite DB.

    Returns:
        A flat dict of JSON-serialisable scalars; only ``sqlite_compile_options``
        is a list (of str). Never raises for an unusual machine.
    """
    db_dir_abs = os.path.abspath(db_dir)
    fs_type = _probe(lambda: filesystem_type(db_dir_abs)) or "unknown"
    info: dict[str, object] = {
        "host": _probe(socket.gethostname),
        "cpu_model": _probe(_cpu_model) or "unknown",
        "cpu_count_logical": _probe(lambda: _optional_int(psutil.cpu_count())),
        "cpu_count_physical": _probe(lambda: _optional_int(psutil.cpu_count(logical=False))),
        "memory_total_bytes": _probe(lambda: int(psutil.virtual_memory().total)),
        "os": _probe(platform.platform),
        "kernel": _probe(platform.release),
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite_version": sqlite3.sqlite_version,
        "sqlite_compile_options": _probe(_sqlite_compile_options),
        "db_dir": db_dir_abs,
        "db_fs_type": fs_type,
        "db_fs_network": is_network_filesystem(fs_type),
        "fsync_latency_us": _probe(lambda: fsync_latency_us(db_dir_abs)),
    }
    for name in (*_RUNTIME_DISTRIBUTIONS, *_ANALYSIS_DISTRIBUTIONS):
        key = "version_" + name.lower().replace("-", "_").replace(".", "_")
        info[key] = _distribution_version(name)
    revision = (_probe(lambda: _git(["rev-parse", "HEAD"])) or "").strip() or None
    status = _probe(lambda: _git(["status", "--porcelain"])) if revision else None
    info["git_revision"] = revision
    info["git_dirty"] = None if status is None else bool(status.strip())
    info["collected_at"] = datetime.now(UTC).isoformat()
    return info


def network_fs_warning(info: Mapping[str, object]) -> str | None:
    """Return a loud warning paragraph if the DB is on a network file system.

    `info` is a dict from `collect_sysinfo`; returns None for a local one.
    """
    # `is True`, not truthiness: a stray string such as "false" must not warn.
    if info.get("db_fs_network") is not True:
        return None
    fs_type = info.get("db_fs_type", "unknown")
    db_dir = info.get("db_dir", "<unknown directory>")
    return (
        f"WARNING: the database directory {db_dir} is on a network file system "
        f"({fs_type}). SQLite's file locking is unsafe on network file systems: "
        "locks may be ignored or not seen by other clients, so concurrent "
        "writers can corrupt the database and lock contention does not behave "
        "as on a local disk. The results of this run and the integrity of its "
        "data cannot be trusted; put the database on a local file system."
    )


def _probe(func: Callable[[], _T]) -> _T | None:
    """Run one probe, turning any failure into None."""
    # Deliberately broad: an exotic platform may fail in ways we cannot list,
    # and losing a field is better than losing the whole benchmark run.
    try:
        return func()
    except Exception:
        return None


def _optional_int(value: object) -> int | None:
    """psutil returns None for counts it cannot determine; keep that."""
    return int(value) if isinstance(value, int) else None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def _sqlite_compile_options() -> list[str]:
    with closing(sqlite3.connect(":memory:")) as conn:
        return [str(row[0]) for row in conn.execute("PRAGMA compile_options")]


def _distribution_version(name: str) -> str | None:
    # Broader than PackageNotFoundError: a broken install (no METADATA)
    # must not abort collection either.
    try:
        return metadata.version(name)
    except Exception:
        return None


def _git(args: list[str]) -> str | None:
    """Run git in the qbench package directory; None on any failure."""
    git = shutil.which("git")
    if git is None:
        return None
    # No optional locks: a read-only probe must not take index.lock and
    # collide with git commands the user runs at the same time.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        result = subprocess.run(
            [git, *args],
            cwd=Path(__file__).resolve().parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    # ValueError: text=True cannot decode output in an odd locale.
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return result.stdout if result.returncode == 0 else None

"""Database files that outlive their job, and who owns them.

A job's database (``qbench-<run id>.db`` with its ``-journal``, ``-wal`` and
``-shm`` files) is removed when the job ends, however it ends, unless
``db.keep`` asks otherwise. Only a ``kill -9`` (or a crash of the machine)
can leave one behind, hot journal included. So before the database is
created, an owner file (``qbench-<run id>.db.owner``: host, pid and the
process's creation time) is written next to it, and removed last. At the
start of every job, :func:`remove_leftovers` looks at the databases in its
directories:

- owner file says the database was kept (``db.keep``): left alone;
- owner dead (no such pid on this host, or a pid reused by a younger
  process): removed, with its journals and owner file;
- owner alive: a running job's database (a parallel sweep), left alone;
- owner on another host: left, and named in a warning;
- no owner file: in the job's own directory it can only be a leftover of
  this job (a re-run into the same directory), so it is removed; in a
  shared ``db.dir`` nobody can tell, so it is left and named in a warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from qbench.run.database import HISTORY_SUFFIX, remove_database

log = logging.getLogger(__name__)

OWNER_SUFFIX = ".owner"
_SIDE_FILES = ("", "-journal", "-wal", "-shm", HISTORY_SUFFIX, OWNER_SUFFIX)
_NAME = re.compile(r"^(qbench-[0-9a-f]+\.db)(-journal|-wal|-shm|-history|\.owner)?$")
# creation times of one process, read twice, differ by rounding only
_CREATE_TIME_SLACK_S = 0.5


def database_name(run_id: str) -> str:
    """The database file name of a job (leftover scans recognise it by this shape)."""
    return f"qbench-{run_id[:12]}.db"


def _owner_path(db_path: Path) -> Path:
    return Path(f"{db_path}{OWNER_SUFFIX}")


def _me(kept: bool = False) -> dict[str, object]:
    proc = psutil.Process()
    return {"host": socket.gethostname(), "pid": proc.pid, "create_time": proc.create_time(), "kept": kept}


def claim_database(db_path: Path) -> None:
    """Record this process as the owner of ``db_path``; before the database is created."""
    _owner_path(db_path).write_text(json.dumps(_me()), encoding="utf-8")


def release_database(db_path: Path, *, keep: bool) -> None:
    """The job is over: remove its database and owner file, or mark a kept database as kept."""
    owner = _owner_path(db_path)
    Path(f"{db_path}{HISTORY_SUFFIX}").unlink(missing_ok=True)  # a client queue's history template
    if keep and Path(db_path).exists():
        owner.write_text(json.dumps(_me(kept=True)), encoding="utf-8")
        return
    remove_database(db_path, history=True)
    owner.unlink(missing_ok=True)  # last: a kill half-way still leaves a dead owner to find


def _owner_state(db_path: Path) -> str:
    """'kept', 'dead', 'alive (pid N)', 'on host H', or 'unknown' (no readable owner file)."""
    try:
        owner = json.loads(_owner_path(db_path).read_text(encoding="utf-8"))
        host, pid, created = str(owner["host"]), int(owner["pid"]), float(owner["create_time"])
        kept = bool(owner.get("kept", False))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return "unknown"
    if kept:
        return "kept"
    if host != socket.gethostname():
        return f"on host {host}"
    try:
        proc = psutil.Process(pid)
        alive = abs(proc.create_time() - created) < _CREATE_TIME_SLACK_S
        alive = alive and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        alive = False
    except psutil.Error:
        alive = True  # a process we may not inspect: assume it is still running
    return f"alive (pid {pid})" if alive else "dead"


@dataclass
class Leftovers:
    # databases removed (their owner was dead, or they were in the job's own directory)
    removed: list[Path] = field(default_factory=list)
    # databases left in place that may be leftovers, each with why: no owner, another host, ...
    kept: list[tuple[Path, str]] = field(default_factory=list)
    # databases of jobs still running (a parallel sweep sharing db.dir): not leftovers at all
    in_use: list[Path] = field(default_factory=list)


def _databases(directory: Path) -> list[Path]:
    """Every qbench database in ``directory``, named once whichever of its files is left."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    bases = {match.group(1) for name in names if (match := _NAME.match(name))}
    return [directory / base for base in sorted(bases)]


def _remove(db_path: Path) -> str:
    """Remove a database with its journals and owner file; '' or why it could not be."""
    try:
        for suffix in _SIDE_FILES:
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    except OSError as exc:
        return f"cannot be removed: {exc}"
    return ""


def remove_leftovers(directory: Path, *, own: bool) -> Leftovers:
    """Remove the databases of dead jobs in ``directory``; name, in warnings, the doubtful ones left.

    Args:
        directory: the job's own directory, or a shared ``db.dir``.
        own: ``directory`` is the job's own directory, where a database with no
            owner file can only be this job's leftover.
    """
    found = Leftovers()
    for db_path in _databases(Path(directory)):
        state = _owner_state(db_path)
        if state == "kept":
            continue
        if state.startswith("alive"):
            found.in_use.append(db_path)
        elif state == "dead" or (state == "unknown" and own):
            why = _remove(db_path)
            if why:
                found.kept.append((db_path, why))
            else:
                found.removed.append(db_path)
        elif any(Path(f"{db_path}{suffix}").exists() for suffix in _SIDE_FILES):  # not just released
            found.kept.append((db_path, "no owner recorded" if state == "unknown" else f"owner {state}"))
    for path in found.removed:
        log.warning("removed leftover database %s (its job was killed before it could clean up)", path)
    for path, why in found.kept:
        log.warning(
            "possible leftover database %s left in place (%s): remove it if no job uses it",
            path,
            why,
        )
    for path in found.in_use:
        log.debug("database %s belongs to a running job", path)
    return found

"""A plan's ``search`` stage: the best value of one numeric key by a noise-aware search, not a full grid.

::

    best_workers:
      needs: [baseline]
      search:
        overrides: [journal=wal, tasks=2000]   # as a sweep's: fixed for every job
        key: workers                           # a numeric qbench key
        range: [1, 20]                         # low and high, both candidates
        step: 1                                # optional: the spacing of the candidates (default 1)
        max_jobs: 8                            # optional: stop after this many jobs

Each candidate it measures is one job (``python -m qbench -m ... KEY=VALUE``
into ``<stage dir>/KEY-VALUE/``); the search (:mod:`qbench.analysis.search`)
decides from their iterations which to measure next. When it stops, the jobs
it ran are aggregated into the stage's directory like a sweep's, so a later
stage refers to its results as to any sweep's (``${best_workers.best_workers}``),
and ``search.json`` records what it measured, its answer and why it stopped.
A re-run replays the search: each finished job is kept, not re-run, and the
same data make the same decisions, so an interrupted search resumes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbench.errors import PlanError, QbenchError
from qbench.plan.resolve import Resolved
from qbench.plan.safety import stage_problem
from qbench.results.writer import write_bytes
from qbench.settings import Config

SEARCH_KEYS = {"overrides", "key", "range", "step", "max_jobs"}
SEARCH_FILE = "search.json"
# a search over more candidates than a plan's largest sweep is refused (as a grid would be)
MAX_CANDIDATES = 10_000


@dataclass(frozen=True)
class Search:
    key: str
    low: float
    high: float
    step: float
    # None: as many jobs as the search needs (at most qbench.analysis.search.most_jobs)
    max_jobs: int | None = None
    integer: bool = True

    def candidates(self) -> list[int | float]:
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        values = [self.low + i * self.step for i in range(count)]
        return [round(v) for v in values] if self.integer else [round(v, 9) for v in values]

    def as_dict(self) -> dict[str, Any]:
        def shown(value: float) -> int | float:
            return int(value) if value.is_integer() else value

        span = [shown(self.low), shown(self.high)]
        return {"key": self.key, "range": span, "step": shown(self.step), "max_jobs": self.max_jobs}


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def key_kinds(cls: type[Any] = Config, prefix: str = "") -> dict[str, Any]:
    """Every qbench config key, dotted as on the command line (``workload.rate``), and its type."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        out[f"{prefix}{f.name}"] = kind  # a section too (journal): a key, though not a number
        if dataclasses.is_dataclass(kind):
            out.update(key_kinds(kind, f"{prefix}{f.name}."))  # type: ignore[arg-type]
    return out


def _common_first(key: str) -> tuple[int, str]:
    return (COMMON.index(key) if key in COMMON else len(COMMON), key)


COMMON = ("workers", "workload.rate", "pool.size")


def key_problem(key: object) -> str | None:
    """Why ``key`` cannot be searched, or None: it must be a numeric qbench key."""
    kinds = key_kinds()
    if not isinstance(key, str) or key not in kinds:
        return f"search.key {key!r} is not a qbench key (a search takes a numeric key, e.g. workers)"
    if kinds[key] not in (int, float):
        numeric = ", ".join(
            sorted((k for k, kind in kinds.items() if kind in (int, float)), key=_common_first)
        )
        return f"search.key '{key}' is not numeric (allowed: {numeric})"
    return None


def parse_search(where: str, raw: object) -> tuple[tuple[str, ...], Search]:
    """The overrides and the search of a stage's ``search:`` mapping.

    Raises:
        PlanError: the first problem, one line naming the key (``where`` names the plan and stage).
    """

    def fail(message: str) -> PlanError:
        return PlanError(f"{where}: {message}")

    if not isinstance(raw, dict):
        raise fail("`search` must be a mapping with `key` and `range`")
    unknown = set(raw) - SEARCH_KEYS
    if unknown:
        raise fail(f"unknown key 'search.{sorted(unknown)[0]}' (allowed: {', '.join(sorted(SEARCH_KEYS))})")
    problem = key_problem(raw.get("key"))
    if problem:
        raise fail(problem)
    key = str(raw["key"])
    integer = key_kinds()[key] is int
    span = raw.get("range")
    if not (isinstance(span, list) and len(span) == 2 and all(_number(v) for v in span)):
        raise fail(f"search.range {span!r} is not allowed: expected [low, high], two numbers")
    low, high = float(span[0]), float(span[1])
    if low > high:
        raise fail(f"search.range {span!r} is empty: expected [low, high] with low <= high")
    step = raw.get("step", 1)
    if not (_number(step) and step > 0) or (integer and not float(step).is_integer()):
        kind = "an integer >= 1" if integer else "a number > 0"
        what = "an integer" if integer else "a number"
        raise fail(f"search.step {step!r} is not allowed: expected {kind} ({key} is {what})")
    if integer and not (low.is_integer() and high.is_integer()):
        raise fail(f"search.range {span!r} is not allowed: {key} is an integer, expected integer ends")
    max_jobs = raw.get("max_jobs")
    if max_jobs is not None and (isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1):
        raise fail(f"search.max_jobs {max_jobs!r} is not allowed: expected an integer >= 1")
    search = Search(key, low, high, float(step), max_jobs, integer)
    count = len(search.candidates())
    if count > MAX_CANDIDATES:
        raise fail(
            f"search.range {span!r} holds {count:,} candidates; a search may take at most {MAX_CANDIDATES:,}"
        )
    overrides = raw.get("overrides", []) or []
    if not isinstance(overrides, list) or not all(isinstance(o, str | int | float) for o in overrides):
        raise fail("`search.overrides` must be a list of key=value strings")
    texts = tuple(str(o) for o in overrides)
    problem = stage_problem(list(texts), {key: [low, high]})
    if problem:
        raise fail(problem)
    return texts, search


def throughputs(job_dir: Path) -> Any:
    """The measured iterations' throughput of the one job in ``job_dir`` (empty when it failed)."""
    import numpy as np

    from qbench.analysis.summary import measured
    from qbench.results.load import load_results

    if not job_dir.is_dir():  # the job never started (its sweep was refused)
        return np.empty(0)
    loaded = load_results([job_dir])
    if loaded.frame.empty:
        return np.empty(0)
    return measured(loaded.frame)["throughput_tps"].to_numpy(dtype=float)


def run_search(
    search: Search,
    run_dir: Path,
    run_job: Callable[[str, Path], str | None],
    *,
    alpha: float,
) -> str | None:
    """Search, aggregate the jobs it ran into ``run_dir`` and write ``search.json``; why it failed, or None.

    ``run_job(value, sweep_dir)`` runs one job with the key at ``value`` into ``sweep_dir``;
    it returns why the sweep failed (a failed job is a candidate that can never win).
    """
    from qbench.analysis.pipeline import aggregate
    from qbench.analysis.search import golden_search, most_jobs
    from qbench.plan.resolve import fmt

    candidates = search.candidates()
    dirs: dict[int, Path] = {}
    failed: list[str] = []

    def measure(index: int) -> Any:
        value = fmt(candidates[index])
        dirs[index] = run_dir / f"{search.key}-{value}"
        reason = run_job(value, dirs[index])  # a failed job leaves no iterations: it can never win
        if reason is not None:
            failed.append(f"{search.key}={value}: {reason}")
        return throughputs(dirs[index])

    result = golden_search(len(candidates), measure, alpha=alpha, max_jobs=search.max_jobs)
    if result.best < 0:
        return f"search: every job failed ({failed[-1] if failed else 'no measured iterations'})"
    try:
        aggregate([dirs[e.index] for e in result.evaluated], run_dir)
    except QbenchError as exc:
        return str(exc)
    record = {
        **search.as_dict(),
        "candidates": len(candidates),
        "most_jobs": most_jobs(len(candidates)),
        "jobs": result.jobs,
        "status": str(result.status),
        "best": candidates[result.best],
        "evaluated": [
            {"value": candidates[e.index], "median_tps": _finite(e.median), "iterations": int(e.samples.size)}
            for e in result.evaluated
        ],
    }
    try:
        write_bytes(run_dir / SEARCH_FILE, (json.dumps(record, indent=2) + "\n").encode())
    except QbenchError as exc:
        return str(exc)
    return None


def read_search_best(path: Path, ref: Any) -> int | float:
    """``${STAGE.search_best}``: the answer a search stage recorded in its ``search.json``.

    Raises:
        PlanError: no record, not readable, or no numeric answer in it.
    """
    try:
        best = json.loads(path.read_text(encoding="utf-8")).get("best")
    except FileNotFoundError:
        raise PlanError(f"{ref.text}: stage '{ref.stage}' left no search record ({path})") from None
    except (OSError, ValueError, AttributeError) as exc:
        raise PlanError(f"{ref.text}: {path} is not readable ({exc})") from None
    if not _number(best):
        raise PlanError(f"{ref.text}: stage '{ref.stage}' recorded no numeric answer ({best!r})")
    return typing.cast(int | float, best)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def describe(search: Search, resolved: Resolved) -> list[str]:
    """The dry run's lines for a search stage."""
    from qbench.analysis.search import most_jobs
    from qbench.plan.resolve import fmt

    candidates = search.candidates()
    bound = most_jobs(len(candidates))
    bound = bound if search.max_jobs is None else min(search.max_jobs, bound)
    step = "" if search.step == 1 else f" step {fmt(search.step)}"
    span = f"{fmt(candidates[0])}..{fmt(candidates[-1])}"
    return [
        *(f"    {text}" for text in resolved.overrides),
        *(
            f"    {key} = {ref}   (resolved when the stage it names has finished)"
            for key, ref in resolved.pending.items()
        ),
        f"    search {search.key} over {span}{step} ({len(candidates)} candidates)",
        f"    jobs: up to {bound}",
    ]

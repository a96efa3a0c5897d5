"""Plan files: parse, check, and resolve references to upstream results.

A plan (``experiments/*.yaml``) is a DAG of stages::

    name: quick                      # optional; default: the file's stem
    description: one line            # optional, for readers: qbench does not use it
    stages:
      scaling:
        sweep:
          overrides: [tasks=300]     # Hydra override syntax, one job config each
          grid: {workers: [1, 2, 4], journal: [wal, delete]}
      pools:
        needs: [scaling]
        when: "${scaling.best_workers} > 1"   # else skipped, and the report says why (qbench.plan.when)
        sweep:
          overrides: ["workers=${scaling.best_workers}", pool=fixed]
          grid: {pool.size: [1, 2, 4]}
      contention:
        needs: [scaling]
        sweep:
          grid: {workers: "${around:scaling.knee_workers}", busy.timeout_ms: [0, 5000]}
      report:
        needs: [scaling, pools, contention]
        analysis: report             # aggregate | recommend | report over the stages in `needs`

A ``search:`` stage (:mod:`qbench.plan.search`) finds the best value of one
numeric key in a range by a noise-aware search instead of a grid; its results
are referred to like a sweep's.

References name an upstream stage's recommendation field (a column of its
``recommendations.parquet``): ``${STAGE.FIELD}`` takes it from the row with
the best throughput, ``${STAGE.FIELD@journal_mode=wal}`` from the row that
matches. As a grid value, ``${around:STAGE.FIELD}`` is the value and the
grid points on either side of it in the upstream sweep's own grid, and
``${beyond:STAGE.FIELD}`` is the value, twice it and four times it. They
resolve only once the upstream stage has finished.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

from qbench.errors import PlanError
from qbench.plan.reading import read_plan_yaml
from qbench.plan.refs import REF, Reference, find_references
from qbench.plan.safety import stage_problem
from qbench.plan.search import Search, parse_search
from qbench.plan.when import Condition, parse_condition
from qbench.plan.where import where_problem

__all__ = ["REF", "Plan", "Reference", "Stage", "find_references", "load_plan"]

PLAN_KEYS = {"name", "description", "stages"}
STAGE_KEYS = {"needs", "sweep", "analysis", "search", "description", "when"}
SWEEP_KEYS = {"overrides", "grid"}
ANALYSES = ("aggregate", "recommend", "report", "compare")
# fields that stand for a number on a grid: ${around:...} and ${beyond:...} take only these
# a search stage's own answer (search.json's `best`: workers, a rate, any key it searched)
SEARCH_FIELD = "search_best"
NUMERIC_FIELDS = {
    SEARCH_FIELD,
    "best_workers",
    "knee_workers",
    "busy_onset_workers",
    "pool_connections",
    "busy_timeout_ms",
    "claim_batch",
}
RECOMMENDATION_FIELDS = {
    SEARCH_FIELD,
    "best_workers",
    "knee_workers",
    "busy_onset_workers",
    "pool_connections",
    "pool_kind",
    "busy_policy",
    "busy_timeout_ms",
    "claim_tx",
    "claim_batch",
    "journal_mode",
    "synchronous",
}
_NAME = re.compile(r"^[A-Za-z_][\w-]*$")
# bounds on what one plan may ask for (the file itself is bounded in qbench.plan.reading)
MAX_STAGES = 100
MAX_JOBS = 10_000


@dataclass(frozen=True)
class Stage:
    name: str
    needs: tuple[str, ...]
    # a sweep: Hydra overrides fixed for every job, and the grid swept (key -> values or a reference)
    overrides: tuple[str, ...] = ()
    grid: Mapping[str, Any] = field(default_factory=dict)
    # an analysis instead of a sweep
    analysis: str | None = None
    # a search instead of a sweep (its fixed overrides are `overrides`; it has no grid)
    search: Search | None = None
    # run only if an upstream recommendation passes this comparison (qbench.plan.when)
    when: Condition | None = None

    @property
    def is_sweep(self) -> bool:
        return self.analysis is None and self.search is None

    @property
    def runs_jobs(self) -> bool:
        """A sweep or a search: it runs qbench jobs."""
        return self.analysis is None

    def references(self) -> list[Reference]:
        texts = list(self.overrides) + [v for v in self.grid.values() if isinstance(v, str)]
        texts += [self.when.ref.text] if self.when is not None else []
        return [ref for text in texts for ref in find_references(text)]


@dataclass(frozen=True)
class Plan:
    name: str
    path: Path
    stages: dict[str, Stage]
    # topological order
    order: tuple[str, ...]

    def downstream(self, names: set[str]) -> set[str]:
        """The given stages and every stage that depends on them."""
        out = set(names)
        changed = True
        while changed:
            changed = False
            for stage in self.stages.values():
                if stage.name not in out and out.intersection(stage.needs):
                    out.add(stage.name)
                    changed = True
        return out

    def upstream(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.stages[name].needs)
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self.stages[current].needs)
        return seen


def _fail(path: Path, where: str, message: str) -> PlanError:
    return PlanError(f"plan {path.name}: {where}: {message}")


def _stage(path: Path, name: str, raw: object) -> Stage:
    where = f"stage '{name}'"
    if not _NAME.fullmatch(name):
        raise _fail(path, where, "a stage name is letters, digits, '_' and '-'")
    if not isinstance(raw, dict):
        raise _fail(path, where, "expected a mapping with `sweep:`, `search:` or `analysis:`")
    unknown = set(raw) - STAGE_KEYS
    if unknown:
        raise _fail(
            path, where, f"unknown key '{sorted(unknown)[0]}' (allowed: {', '.join(sorted(STAGE_KEYS))})"
        )
    needs = raw.get("needs", []) or []
    if isinstance(needs, str):
        needs = [needs]
    if not isinstance(needs, list) or not all(isinstance(n, str) for n in needs):
        raise _fail(path, where, "`needs` must be a list of stage names")
    has_sweep, analysis = "sweep" in raw, raw.get("analysis")
    if [has_sweep, analysis is not None, "search" in raw].count(True) != 1:
        raise _fail(path, where, "give exactly one of `sweep:`, `search:` and `analysis:`")
    if "search" in raw:
        overrides, search = parse_search(f"plan {path.name}: {where}", raw["search"])
        return Stage(name, tuple(needs), overrides, search=search)
    if analysis is not None:
        if analysis not in ANALYSES:
            raise _fail(path, where, f"analysis '{analysis}' is not allowed (allowed: {', '.join(ANALYSES)})")
        if not needs:
            raise _fail(path, where, f"analysis '{analysis}' needs the stages it analyses in `needs`")
        if analysis == "compare" and len(needs) != 2:
            raise _fail(path, where, "analysis 'compare' needs exactly two stages: baseline, candidate")
        return Stage(name, tuple(needs), analysis=str(analysis))
    return _sweep(path, name, tuple(needs), raw["sweep"] or {})


def _sweep(path: Path, name: str, needs: tuple[str, ...], sweep: object) -> Stage:
    """A sweep stage: its overrides and grid, each checked against what a plan may set."""
    where = f"stage '{name}'"
    if not isinstance(sweep, dict):
        raise _fail(path, where, "`sweep` must be a mapping with `overrides` and `grid`")
    unknown = set(sweep) - SWEEP_KEYS
    if unknown:
        raise _fail(path, where, f"unknown key 'sweep.{sorted(unknown)[0]}' (allowed: overrides, grid)")
    overrides = sweep.get("overrides", []) or []
    if not isinstance(overrides, list) or not all(isinstance(o, str | int | float) for o in overrides):
        raise _fail(path, where, "`sweep.overrides` must be a list of key=value strings")
    grid = sweep.get("grid", {}) or {}
    if not isinstance(grid, dict):
        raise _fail(path, where, "`sweep.grid` must map keys to lists of values")
    grid = {str(key): values for key, values in grid.items()}
    problem = stage_problem([str(o) for o in overrides], grid)
    if problem:
        raise _fail(path, where, problem)
    for key, values in grid.items():
        if isinstance(values, str) and REF.fullmatch(values.strip()):
            continue
        if not isinstance(values, list) or not values:
            raise _fail(path, where, f"grid key '{key}' needs a non-empty list of values (or a reference)")
    # a reference expands to at most three values
    jobs = math.prod(3 if isinstance(v, str) else len(v) for v in grid.values())
    if jobs > MAX_JOBS:
        raise _fail(path, where, f"the grid asks for {jobs:,} jobs; a stage may run at most {MAX_JOBS:,}")
    return Stage(name, needs, tuple(str(o) for o in overrides), grid)


def _order(path: Path, stages: Mapping[str, Stage]) -> tuple[str, ...]:
    """The stages in dependency order, once every need names a stage and there is no cycle."""
    for stage in stages.values():
        for need in stage.needs:
            if need not in stages:
                raise _fail(path, f"stage '{stage.name}'", f"needs unknown stage '{need}'")
    try:
        return tuple(TopologicalSorter({s.name: s.needs for s in stages.values()}).static_order())
    except CycleError as exc:
        cycle = " -> ".join(exc.args[1]) if len(exc.args) > 1 else "?"
        raise _fail(path, "stages", f"cycle: {cycle}") from None


def _when(path: Path, name: str, raw: object, stage: Stage) -> Stage:
    """The stage with its ``when:`` condition, checked to compare one numeric field."""
    if not isinstance(raw, dict) or "when" not in raw:
        return stage
    condition = parse_condition(raw["when"])
    if isinstance(condition, str):
        raise _fail(path, f"stage '{name}'", condition)
    if condition.ref.field not in NUMERIC_FIELDS:
        raise _fail(
            path,
            f"stage '{name}'",
            f"`when`: {condition.ref.text} is not a numeric field ({', '.join(sorted(NUMERIC_FIELDS))})",
        )
    return dataclasses.replace(stage, when=condition)


def _check_reference(plan: Plan, stage: Stage, upstream: set[str], ref: Reference) -> None:
    """A reference names a field of an upstream stage's recommendations that fits its use."""
    where = f"stage '{stage.name}'"
    if ref.stage not in upstream:
        raise _fail(plan.path, where, f"{ref.text} refers to '{ref.stage}', which is not upstream")
    if plan.stages[ref.stage].analysis == "compare":
        raise _fail(plan.path, where, f"{ref.text}: stage '{ref.stage}' has no recommendations")
    if ref.field not in RECOMMENDATION_FIELDS:
        raise _fail(
            plan.path,
            where,
            f"{ref.text}: unknown field '{ref.field}' (allowed: {', '.join(sorted(RECOMMENDATION_FIELDS))})",
        )
    if ref.expand and ref.field not in NUMERIC_FIELDS:
        raise _fail(
            plan.path,
            where,
            f"{ref.text}: {ref.expand} needs a numeric field ({', '.join(sorted(NUMERIC_FIELDS))})",
        )
    if ref.field == SEARCH_FIELD and plan.stages[ref.stage].search is None:
        raise _fail(plan.path, where, f"{ref.text}: stage '{ref.stage}' is no search, so it has no answer")
    if ref.field == SEARCH_FIELD and (ref.where or ref.expand):
        raise _fail(
            plan.path,
            where,
            f"{ref.text}: {SEARCH_FIELD} is a search stage's one answer, taken as it is"
            " (no @column=value, around or beyond)",
        )
    if ref.where is not None:
        problem = where_problem(*ref.where)
        if problem:
            raise _fail(plan.path, where, f"{ref.text}: {problem}")


def load_plan(path: Path) -> Plan:
    """Read and check a plan file; nothing runs.

    Raises:
        PlanError: the first problem, in one line naming the stage.
    """
    path = Path(path)
    raw = read_plan_yaml(path)
    if not isinstance(raw, dict):
        raise _fail(path, "top level", "expected a mapping with `stages:`")
    unknown = set(raw) - PLAN_KEYS
    if unknown:
        raise _fail(
            path, "top level", f"unknown key '{sorted(unknown)[0]}' (allowed: {', '.join(sorted(PLAN_KEYS))})"
        )
    stages_raw = raw.get("stages")
    if not isinstance(stages_raw, dict) or not stages_raw:
        raise _fail(path, "top level", "`stages` must map stage names to stages")
    if len(stages_raw) > MAX_STAGES:
        raise _fail(path, "top level", f"{len(stages_raw)} stages; a plan may have at most {MAX_STAGES}")
    stages = {
        str(name): _when(path, str(name), body, _stage(path, str(name), body))
        for name, body in stages_raw.items()
    }
    order = _order(path, stages)
    name = str(raw.get("name") or path.stem)
    if not _NAME.fullmatch(name):
        raise _fail(path, "top level", f"name '{name}' is not allowed (letters, digits, '_' and '-')")
    plan = Plan(name, path, stages, order)
    for stage in stages.values():
        upstream = plan.upstream(stage.name)
        for ref in stage.references():
            _check_reference(plan, stage, upstream, ref)
        for text in stage.overrides:
            for ref in find_references(text):
                if ref.expand:
                    raise _fail(
                        path, f"stage '{stage.name}'", f"{ref.text} is a list of values: use it in `grid:`"
                    )
    return plan

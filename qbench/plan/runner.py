"""``python -m qbench.plan FILE``: run a plan's stages in dependency order, cached and resumable.

Each sweep stage runs as its own ``python -m qbench -m ...`` process (so
launchers and the automatic aggregation apply unchanged) writing to
``outputs/plans/<plan>/<stage>/<key>/``. A stage's key hashes its resolved
spec (overrides and grid after references are substituted), its upstream
keys, qbench's config tree and the qbench and results-schema versions: a
re-run skips finished stages, re-runs a stage whose inputs changed (into a
new directory: nothing is overwritten), and resumes an interrupted sweep
without redoing its finished jobs. ``--force STAGE`` re-runs that stage and
everything downstream. A failed stage stops its downstream, not its siblings.
One process at a time runs a plan into one outputs directory; SIGTERM or
SIGINT stops the running sweep with the plan (:mod:`qbench.plan.process`)
and records its stage as interrupted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qbench import __version__
from qbench.analysis.thresholds import Thresholds
from qbench.errors import PlanError, PlanInterrupted, QbenchError, Unresolved
from qbench.plan import process
from qbench.plan.checks import check_overrides
from qbench.plan.describe import describe_stage, print_status
from qbench.plan.resolve import Resolved, conf_digest, expand, read_recommendation
from qbench.plan.resolve import fmt as _fmt
from qbench.plan.safety import split_sweep_dir
from qbench.plan.search import SEARCH_FILE, read_search_best, run_search
from qbench.plan.spec import SEARCH_FIELD, Plan, Reference, Stage, find_references
from qbench.results.columns import SCHEMA_VERSION
from qbench.results.status import JobStatus
from qbench.results.writer import write_bytes
from qbench.run.progress import Progress

__all__ = ["Resolved", "Runner", "check_overrides"]

STAGE_FILE = "stage.json"


class Runner:
    def __init__(self, plan: Plan, outputs: Path) -> None:
        self.plan = plan
        self.root = outputs / "plans" / plan.name
        self.resolved: dict[str, Resolved] = {}
        self.keys: dict[str, str] = {}
        self.signals = process.Signals()
        # stages skipped because their `when` did not hold (or they take a value from one): why
        self.skipped: dict[str, str] = {}

    # ------------------------------------------------------------ state on disk
    def stage_dir(self, name: str) -> Path:
        return self.root / name

    def record(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads((self.stage_dir(name) / STAGE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_record(self, name: str, **values: Any) -> None:
        directory = self.stage_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        write_bytes(directory / STAGE_FILE, json.dumps(values, indent=2, sort_keys=True).encode())

    def run_dir(self, name: str) -> Path:
        return self.stage_dir(name) / self.keys[name][:12]

    def sweep_dir(self, name: str) -> Path:
        """Where the stage's results are: its run directory, or the plan's hydra.sweep.dir inside it."""
        resolved = self.resolved.get(name)
        return self.run_dir(name) / resolved.subdir if resolved and resolved.subdir else self.run_dir(name)

    def done(self, name: str) -> bool:
        rec = self.record(name)
        return rec.get("status") == "done" and rec.get("key") == self.keys.get(name)

    # ------------------------------------------------------------ resolution
    def _recommendation(self, ref: Reference) -> Any:
        if not self.done(ref.stage):
            raise Unresolved(ref.text)
        if ref.field == SEARCH_FIELD:
            return read_search_best(self.sweep_dir(ref.stage) / SEARCH_FILE, ref)
        return read_recommendation(self.sweep_dir(ref.stage) / "recommendations.parquet", ref)

    def _expand(self, ref: Reference, value: Any) -> list[str]:
        upstream, search = self.resolved.get(ref.stage), self.plan.stages[ref.stage].search
        if search is not None:  # around a search's answer: its neighbours among the range's candidates
            return expand(ref, value, {search.key: [_fmt(v) for v in search.candidates()]})
        return expand(ref, value, upstream.grid if upstream else {})

    def resolve(self, stage: Stage) -> Resolved:
        pending: dict[str, str] = {}
        overrides: list[str] = []
        fixed, subdir = split_sweep_dir(stage.overrides)
        for text in fixed:
            try:
                for ref in find_references(text):
                    text = text.replace(ref.text, _fmt(self._recommendation(ref)))
                overrides.append(text)
            except Unresolved as exc:
                pending[text.split("=", 1)[0]] = str(exc)
        grid: dict[str, list[str]] = {}
        for key, values in stage.grid.items():
            if isinstance(values, str):
                refs = find_references(values)
                try:
                    grid[key] = self._expand(refs[0], self._recommendation(refs[0]))
                except Unresolved as exc:
                    pending[key] = str(exc)
            else:
                grid[key] = [_fmt(v) for v in values]
        return Resolved(overrides, grid, pending, subdir)

    def key(self, stage: Stage, resolved: Resolved) -> str:
        """A hash of everything that decides what the stage computes, as resolved for this run.

        The overrides after references are substituted (sorted: their order changes nothing), the
        grid in order (it numbers the jobs), the plan's sweep subdirectory, the upstream keys
        (in order only for compare, whose first need is the baseline), qbench's config tree, and
        the qbench and results-schema versions.
        """
        upstream = [[need, self.keys.get(need)] for need in stage.needs]
        spec: dict[str, Any] = {
            "stage": stage.name,
            "analysis": stage.analysis,
            "overrides": sorted(resolved.overrides),
            "grid": [[key, values] for key, values in resolved.grid.items()],
            "subdir": resolved.subdir,
            "upstream": upstream if stage.analysis == "compare" else sorted(upstream),
            "conf": conf_digest() if stage.runs_jobs else None,
            "qbench": __version__,
            "schema": SCHEMA_VERSION,
        }
        if stage.search is not None:
            spec["search"] = stage.search.as_dict()
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    # ------------------------------------------------------------ running
    def sweep_args(self, resolved: Resolved) -> list[str]:
        grid = [f"{k}={','.join(v)}" for k, v in resolved.grid.items()]
        return ["-m", *resolved.overrides, *grid]

    def _run_sweep(
        self, stage: Stage, run_dir: Path, label: str, one: tuple[list[str], Path] | None = None
    ) -> str | None:
        """Run the stage's sweep (or ``one``: a search's job, its arguments and sweep directory)
        as a child process group; return why it failed, or None.

        Raises:
            PlanInterrupted: SIGTERM or SIGINT arrived; the sweep was stopped and waited for.
        """
        resolved, sweep_dir = self.resolved[stage.name], self.sweep_dir(stage.name)
        args, total = self.sweep_args(resolved), resolved.jobs()
        if one is not None:
            (args, sweep_dir), total = one, 1
        cmd = [sys.executable, "-m", "qbench", *args, f"hydra.sweep.dir={sweep_dir}"]
        env = dict(os.environ, QBENCH_RESUME="1", QBENCH_NO_PROGRESS="1")
        sweep_dir.mkdir(parents=True, exist_ok=True)
        progress = Progress(label)
        started = time.monotonic()

        def tick() -> None:
            finished = sum(1 for _ in sweep_dir.glob(f"*/{JobStatus.FILE}"))
            elapsed = time.monotonic() - started
            progress.update(f"job {min(finished + 1, total)}/{total}, {elapsed:,.0f} s elapsed")

        process.refuse_if_running(self.record(stage.name), self.plan.path.name, stage.name)
        with open(run_dir.parent / "stage.log", "a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            proc = None
            try:
                proc = process.start(cmd, log, env)
                self.signals.child = proc
                self._write_record(
                    stage.name,
                    key=self.keys[stage.name],
                    status="running",
                    pid=proc.pid,
                    started=process.started_at(proc.pid),
                    plan_pid=os.getpid(),
                    plan_started=process.started_at(os.getpid()),
                )
                code = process.wait(proc, self.signals, tick)
            finally:
                progress.clear()
                if proc is not None:
                    process.stop(proc)
                self.signals.child = None
        if code != 0:
            tail = (run_dir.parent / "stage.log").read_text(encoding="utf-8").strip().splitlines()[-3:]
            return f"sweep exited with status {code}: {' | '.join(tail)}"
        return None

    def _run_search(self, stage: Stage, run_dir: Path, label: str) -> str | None:
        """Run a search stage: one job per candidate it measures, then its aggregate and search.json."""
        search, overrides = stage.search, self.resolved[stage.name].overrides
        assert search is not None
        # each job's own aggregation is skipped: the search aggregates the jobs it ran when it ends
        fixed = ["-m", *overrides, "hydra.callbacks.aggregate.enabled=false"]

        def run_job(value: str, sweep_dir: Path) -> str | None:
            one = ([*fixed, f"{search.key}={value}"], sweep_dir)
            return self._run_sweep(stage, run_dir, f"{label} {search.key}={value}", one)

        self.sweep_dir(stage.name).mkdir(parents=True, exist_ok=True)
        return run_search(search, self.sweep_dir(stage.name), run_job, alpha=Thresholds().alpha)

    def _run_analysis(self, stage: Stage, run_dir: Path) -> str | None:
        from qbench.analysis.compare import compare_sweeps
        from qbench.analysis.pipeline import aggregate

        inputs = [self.sweep_dir(need) for need in stage.needs if need not in self.skipped]
        # the report names each skipped stage and why, instead of its results
        notes = [
            f"Stage '{need}' was skipped: {self.skipped[need]}."
            for need in stage.needs
            if need in self.skipped
        ]
        if not inputs or (stage.analysis == "compare" and notes):
            return " ".join(notes) + " Nothing is left to analyse."
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if stage.analysis == "compare":
                result = compare_sweeps(inputs[0], inputs[1], threshold=0.05, alpha=0.05)
                result.table.to_csv(run_dir / "compare.csv", index=False)
            else:
                aggregate(inputs, run_dir, notes=notes)
        except QbenchError as exc:  # nothing to aggregate or compare: the stage failed
            return str(exc)
        return None

    def run(self, *, force: set[str], dry_run: bool, out: Any = None) -> int:
        """Run (or, with ``dry_run``, describe) every stage in order; 1 when any failed, else 0.

        Raises:
            PlanError: the plan already runs in another process, or a stage's sweep still runs.
            PlanInterrupted: SIGTERM or SIGINT stopped the run (the running stage is recorded
                as interrupted; a re-run resumes it).
        """
        out = out or sys.stdout
        if dry_run:
            return self._stages(force, dry_run=True, out=out)
        with self._exclusive(), self.signals:
            for name in self.plan.order:
                process.refuse_if_running(self.record(name), self.plan.path.name, name)
            return self._stages(force, dry_run=False, out=out)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One process at a time runs a plan into one outputs directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a", encoding="utf-8") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise PlanError(
                    f"plan {self.plan.path.name}: already running in another process (outputs {self.root})"
                ) from None
            yield

    def _stages(self, force: set[str], *, dry_run: bool, out: Any) -> int:
        forced = self.plan.downstream(force) if force else set()
        failed: dict[str, str] = {}
        total = len(self.plan.order)
        for number, name in enumerate(self.plan.order, 1):
            label = f"[plan {self.plan.name}] stage {number}/{total} {name}"
            stage = self.plan.stages[name]
            reason = self._stage(stage, label, failed, forced=name in forced, dry_run=dry_run, out=out)
            if reason is not None:
                failed[name] = reason
            if self.signals.received is not None:  # arrived as the stage ended: stop before the next
                raise PlanInterrupted(self.signals.received)
        if failed and not dry_run:
            print(
                f"plan {self.plan.name} did not complete: {len(failed)} stage(s) failed or blocked", file=out
            )
            return 1
        return 0

    def _skip(self, stage: Stage, *, dry_run: bool) -> str | None:
        """Why ``stage`` is skipped (its ``when`` does not hold, or it takes a value from a skipped
        stage), recorded; None when it runs or (dry run) its condition is not decided yet.

        Raises:
            PlanError: the condition's value could not be read.
        """
        upstream = [ref.stage for ref in stage.references() if ref.stage in self.skipped]
        if upstream:
            reason = f"it takes a value from stage '{upstream[0]}', which was skipped"
        elif stage.when is None:
            return None
        else:
            try:
                value = self._recommendation(stage.when.ref)
            except Unresolved:
                return None  # a dry run: decided once the upstream stage has finished
            if stage.when.holds(float(value)):
                return None
            reason = stage.when.why_not(float(value))
        self.skipped[stage.name] = reason
        self.keys[stage.name] = "skipped"
        if not dry_run:
            self._write_record(stage.name, key="skipped", status="skipped", reason=reason)
        return reason

    def _stage(
        self, stage: Stage, label: str, failed: dict[str, str], *, forced: bool, dry_run: bool, out: Any
    ) -> str | None:
        """Skip, resolve, describe, reuse or run one stage; return why it failed, or None."""
        name = stage.name
        blocked = [need for need in stage.needs if need in failed]
        if blocked:
            reason = f"blocked: upstream stage '{blocked[0]}' did not complete"
            print(f"{label}: skipped, {reason}", file=out)
            return reason
        try:
            skipped = self._skip(stage, dry_run=dry_run)
            resolved = self.resolve(stage) if skipped is None else Resolved([], {}, {})
        except PlanError as exc:
            if not dry_run:
                self._write_record(name, key="unresolved", status="failed", reason=str(exc))
            print(f"{label}: FAILED: {exc}", file=out)
            return str(exc)
        if skipped is not None:  # not a failure: downstream analyses run without it and say why
            print(f"{label}: skipped, {skipped}", file=out)
            return None
        self.resolved[name] = resolved
        if resolved.pending:
            self.keys[name] = "pending"
            if dry_run:
                print(describe_stage(label, stage, resolved), file=out)
                return None
            reason = f"unresolved: {', '.join(resolved.pending.values())}"
            print(f"{label}: FAILED: {reason}", file=out)
            return reason
        self.keys[name] = self.key(stage, resolved)
        if dry_run:
            print(describe_stage(label, stage, resolved), file=out)
            return None
        if self.done(name) and not forced:
            print(f"{label}: done, cached ({self.keys[name][:12]})", file=out)
            return None
        return self._execute(stage, label, forced=forced, out=out)

    def _execute(self, stage: Stage, label: str, *, forced: bool, out: Any) -> str | None:
        """Run one resolved stage into its directory and record how it ended; return why it failed."""
        name = stage.name
        run_dir = self.run_dir(name)
        if forced and run_dir.exists():
            run_dir.rename(run_dir.with_name(f"{run_dir.name}.forced-{time.strftime('%Y%m%dT%H%M%S')}"))
        started = time.monotonic()
        what = f"{self.resolved[name].jobs()} job(s)" if stage.is_sweep else f"analysis '{stage.analysis}'"
        what = f"a search of {stage.search.key}" if stage.search is not None else what
        print(f"{label}: running {what} -> {run_dir}", file=out, flush=True)
        try:
            if stage.search is not None:
                reason = self._run_search(stage, run_dir, label)
            elif stage.is_sweep:
                reason = self._run_sweep(stage, run_dir, label)
            else:
                reason = self._run_analysis(stage, run_dir)
        except PlanInterrupted as exc:
            self._write_record(
                name, key=self.keys[name], status="interrupted", run_dir=str(self.sweep_dir(name))
            )
            raise PlanInterrupted(exc.signum, name) from None
        elapsed = time.monotonic() - started
        if reason is None:
            self._write_record(
                name, key=self.keys[name], status="done", run_dir=str(self.sweep_dir(name)), elapsed_s=elapsed
            )
            print(f"{label}: done in {elapsed:,.1f} s", file=out, flush=True)
        else:
            self._write_record(
                name, key=self.keys[name], status="failed", reason=reason, run_dir=str(run_dir)
            )
            print(f"{label}: FAILED: {reason}", file=out, flush=True)
        return reason

    def status(self, out: Any = None) -> None:
        """Each stage's state, one line each (``--status``)."""
        print_status(self, out or sys.stdout)

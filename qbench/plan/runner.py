"""``python -m qbench.plan FILE``: run a plan's stages in dependency order, cached and resumable.

Each sweep stage runs as its own ``python -m qbench -m ...`` process (so
launchers and the automatic aggregation apply unchanged) writing to
``outputs/plans/<plan>/<stage>/<key>/``. A stage's key hashes its resolved
spec, its upstream keys, and the qbench and results-schema versions: a
re-run skips finished stages, re-runs a stage whose inputs changed (into a
new directory: nothing is overwritten), and resumes an interrupted sweep
without redoing its finished jobs. ``--force STAGE`` re-runs that stage and
everything downstream. A failed stage stops its downstream, not its siblings.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from qbench import __version__
from qbench.errors import PlanError, QbenchError, Unresolved, UsageError
from qbench.plan.spec import Plan, Reference, Stage, find_references
from qbench.results.columns import SCHEMA_VERSION
from qbench.results.status import JobStatus
from qbench.results.writer import write_bytes
from qbench.run.progress import Progress

STAGE_FILE = "stage.json"
# Recommendation fields that stand for a config key, for ${around:...} over the upstream grid.
FIELD_KEYS = {
    "best_workers": "workers",
    "knee_workers": "workers",
    "busy_onset_workers": "workers",
    "pool_connections": "pool.size",
    "busy_timeout_ms": "busy.timeout_ms",
    "claim_batch": "claim.batch",
}


@dataclass
class Resolved:
    overrides: list[str]
    grid: dict[str, list[str]]
    # references that could not be resolved yet (dry run): key -> text
    pending: dict[str, str]

    def jobs(self) -> int:
        return math.prod(len(v) for v in self.grid.values()) if self.grid else 1


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Runner:
    def __init__(self, plan: Plan, outputs: Path) -> None:
        self.plan = plan
        self.root = outputs / "plans" / plan.name
        self.resolved: dict[str, Resolved] = {}
        self.keys: dict[str, str] = {}

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

    def done(self, name: str) -> bool:
        rec = self.record(name)
        return rec.get("status") == "done" and rec.get("key") == self.keys.get(name)

    # ------------------------------------------------------------ resolution
    def _recommendation(self, ref: Reference) -> Any:
        import pandas as pd
        import pyarrow as pa

        if not self.done(ref.stage):
            raise Unresolved(ref.text)
        path = self.run_dir(ref.stage) / "recommendations.parquet"
        if not path.exists():
            raise PlanError(f"{ref.text}: stage '{ref.stage}' left no recommendations ({path})")
        try:
            table = pd.read_parquet(path)
        except (OSError, pa.ArrowException) as exc:
            raise PlanError(f"{ref.text}: {path} is not readable ({exc})") from None
        if ref.where is not None:
            column, wanted = ref.where
            if column not in table.columns:
                raise PlanError(f"{ref.text}: recommendations have no column '{column}'")
            table = table[table[column].astype(str) == wanted]
        if table.empty:
            raise PlanError(f"{ref.text}: no recommendation row matches")
        row = table.loc[table["best_throughput_tps"].idxmax()]
        value = row[ref.field]
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            raise PlanError(f"{ref.text}: stage '{ref.stage}' found no value for {ref.field}")
        return value.item() if hasattr(value, "item") else value

    def _expand(self, ref: Reference, value: Any) -> list[str]:
        if ref.expand == "beyond":
            return [_fmt(value * k) for k in (1, 2, 4)]
        if ref.expand == "around":
            key = FIELD_KEYS.get(ref.field)
            upstream = self.resolved.get(ref.stage)
            points = sorted(
                {int(float(v)) for v in (upstream.grid.get(key, []) if upstream and key else [])}
                | {int(value)}
            )
            i = points.index(int(value))
            return [str(p) for p in points[max(0, i - 1) : i + 2]]
        return [_fmt(value)]

    def resolve(self, stage: Stage) -> Resolved:
        pending: dict[str, str] = {}
        overrides: list[str] = []
        for text in stage.overrides:
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
        return Resolved(overrides, grid, pending)

    def key(self, stage: Stage, resolved: Resolved) -> str:
        spec = {
            "stage": stage.name,
            "analysis": stage.analysis,
            "overrides": resolved.overrides,
            "grid": resolved.grid,
            # in order: a compare stage's first need is the baseline
            "upstream": [[need, self.keys.get(need)] for need in stage.needs],
            "qbench": __version__,
            "schema": SCHEMA_VERSION,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    # ------------------------------------------------------------ running
    def sweep_args(self, resolved: Resolved) -> list[str]:
        grid = [f"{k}={','.join(v)}" for k, v in resolved.grid.items()]
        return ["-m", *resolved.overrides, *grid]

    def _run_sweep(self, stage: Stage, run_dir: Path, label: str) -> str | None:
        resolved = self.resolved[stage.name]
        cmd = [sys.executable, "-m", "qbench", *self.sweep_args(resolved), f"hydra.sweep.dir={run_dir}"]
        env = dict(os.environ, QBENCH_RESUME="1", QBENCH_NO_PROGRESS="1")
        run_dir.mkdir(parents=True, exist_ok=True)
        total = resolved.jobs()
        progress = Progress(label)
        started = time.monotonic()
        with open(run_dir.parent / "stage.log", "a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            self._write_record(
                stage.name,
                key=self.keys[stage.name],
                status="running",
                pid=proc.pid,
                started=_started(proc.pid),
            )
            while proc.poll() is None:
                finished = sum(1 for _ in run_dir.glob(f"*/{JobStatus.FILE}"))
                progress.update(
                    f"job {min(finished + 1, total)}/{total}, {time.monotonic() - started:,.0f} s elapsed"
                )
                time.sleep(0.5)
        progress.clear()
        if proc.returncode != 0:
            tail = (run_dir.parent / "stage.log").read_text(encoding="utf-8").strip().splitlines()[-3:]
            return f"sweep exited with status {proc.returncode}: {' | '.join(tail)}"
        return None

    def _run_analysis(self, stage: Stage, run_dir: Path) -> str | None:
        from qbench.analysis.compare import compare_sweeps
        from qbench.analysis.pipeline import aggregate

        inputs = [self.run_dir(need) for need in stage.needs]
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if stage.analysis == "compare":
                result = compare_sweeps(inputs[0], inputs[1], threshold=0.05, alpha=0.05)
                result.table.to_csv(run_dir / "compare.csv", index=False)
            else:
                aggregate(inputs, run_dir)
        except QbenchError as exc:  # nothing to aggregate or compare: the stage failed
            return str(exc)
        return None

    def run(self, *, force: set[str], dry_run: bool, out: Any = None) -> int:
        """Run (or, with ``dry_run``, describe) every stage in order; 1 when any failed, else 0."""
        out = out or sys.stdout
        forced = self.plan.downstream(force) if force else set()
        failed: dict[str, str] = {}
        total = len(self.plan.order)
        for number, name in enumerate(self.plan.order, 1):
            label = f"[plan {self.plan.name}] stage {number}/{total} {name}"
            stage = self.plan.stages[name]
            reason = self._stage(stage, label, failed, forced=name in forced, dry_run=dry_run, out=out)
            if reason is not None:
                failed[name] = reason
        if failed and not dry_run:
            print(
                f"plan {self.plan.name} did not complete: {len(failed)} stage(s) failed or blocked", file=out
            )
            return 1
        return 0

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
            resolved = self.resolve(stage)
        except PlanError as exc:
            if not dry_run:
                self._write_record(name, key="unresolved", status="failed", reason=str(exc))
            print(f"{label}: FAILED: {exc}", file=out)
            return str(exc)
        self.resolved[name] = resolved
        if resolved.pending:
            self.keys[name] = "pending"
            if dry_run:
                print(self._describe(label, stage, resolved), file=out)
                return None
            reason = f"unresolved: {', '.join(resolved.pending.values())}"
            print(f"{label}: FAILED: {reason}", file=out)
            return reason
        self.keys[name] = self.key(stage, resolved)
        if dry_run:
            print(self._describe(label, stage, resolved), file=out)
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
        print(f"{label}: running {what} -> {run_dir}", file=out, flush=True)
        reason = (
            self._run_sweep(stage, run_dir, label) if stage.is_sweep else self._run_analysis(stage, run_dir)
        )
        elapsed = time.monotonic() - started
        if reason is None:
            self._write_record(
                name, key=self.keys[name], status="done", run_dir=str(run_dir), elapsed_s=elapsed
            )
            print(f"{label}: done in {elapsed:,.1f} s", file=out, flush=True)
        else:
            self._write_record(
                name, key=self.keys[name], status="failed", reason=reason, run_dir=str(run_dir)
            )
            print(f"{label}: FAILED: {reason}", file=out, flush=True)
        return reason

    def _describe(self, label: str, stage: Stage, resolved: Resolved) -> str:
        needs = f" (needs {', '.join(stage.needs)})" if stage.needs else ""
        if not stage.is_sweep:
            return f"{label}{needs}: analysis '{stage.analysis}' over {', '.join(stage.needs)}"
        lines = [f"{label}{needs}: sweep"]
        for text in resolved.overrides:
            lines.append(f"    {text}")
        for key, values in resolved.grid.items():
            lines.append(f"    {key} = {', '.join(values)}")
        bound = resolved.jobs()
        for key, ref in resolved.pending.items():
            refs = find_references(ref)
            expand = refs[0].expand if refs else ""
            bound *= 3 if expand in ("around", "beyond") else 1
            lines.append(
                f"    {key} = {ref}   (resolved when '{refs[0].stage if refs else '?'}' has finished)"
            )
        exact = not any(
            find_references(r) and find_references(r)[0].expand == "around" for r in resolved.pending.values()
        )
        lines.append(f"    jobs: {bound if exact else f'up to {bound}'}")
        return "\n".join(lines)

    def status(self, out: Any = None) -> None:
        out = out or sys.stdout
        for name in self.plan.order:
            rec = self.record(name)
            state = rec.get("status", "pending")
            if state == "running" and not _alive(rec.get("pid"), rec.get("started")):
                state = "interrupted (re-run to resume)"
            detail = f" ({str(rec.get('key', ''))[:12]})" if state == "done" else ""
            if rec.get("status") == "failed":
                detail = f": {rec.get('reason')}"
            print(f"{name}: {state}{detail}", file=out)


def _started(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _alive(pid: object, started: object) -> bool:
    """The recorded process still runs (not a zombie, not a new process with a reused pid)."""
    if not isinstance(pid, int):
        return False
    try:
        proc = psutil.Process(pid)
        return bool(proc.status() != psutil.STATUS_ZOMBIE and proc.create_time() == started)
    except psutil.Error:
        return False


def check_overrides(plan: Plan) -> None:
    """Compose every sweep stage's fixed overrides and grid against the schema (references left out)."""
    from qbench.app.preflight import preflight
    from qbench.app.schema import register_configs

    register_configs()
    for stage in plan.stages.values():
        if not stage.is_sweep:
            continue
        fixed = [o for o in stage.overrides if not find_references(o)]
        grid = [
            f"{k}={','.join(_fmt(v) for v in values)}"
            for k, values in stage.grid.items()
            if not isinstance(values, str)
        ]
        try:
            preflight(["-m", *fixed, *grid])
        except UsageError as exc:
            raise PlanError(f"plan {plan.path.name}: stage '{stage.name}': {exc}") from None

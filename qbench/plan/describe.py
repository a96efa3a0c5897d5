"""How a plan describes its stages: the dry run (``--dry-run``) and the status (``--status``)."""

from __future__ import annotations

from typing import Any, Protocol

from qbench.plan import process
from qbench.plan.process import alive
from qbench.plan.resolve import Resolved
from qbench.plan.search import describe as describe_search
from qbench.plan.spec import Plan, Stage, find_references


class Records(Protocol):
    """What the status needs of a plan's runner: the plan, and each stage's record."""

    plan: Plan

    def record(self, name: str) -> dict[str, Any]: ...


def describe_stage(label: str, stage: Stage, resolved: Resolved) -> str:
    """What a dry run prints for one stage: its kind, overrides, grid, pending references and job bound."""
    needs = f" (needs {', '.join(stage.needs)})" if stage.needs else ""
    if stage.search is not None:
        return "\n".join([f"{label}{needs}: search", *describe_search(stage.search, resolved)])
    if not stage.is_sweep:
        return f"{label}{needs}: analysis '{stage.analysis}' over {', '.join(stage.needs)}"
    lines = [f"{label}{needs}: sweep"]
    if stage.when is not None:
        lines.append(f"    when {stage.when.text}   (decided when '{stage.when.ref.stage}' has finished)")
    for text in resolved.overrides:
        lines.append(f"    {text}")
    for key, values in resolved.grid.items():
        lines.append(f"    {key} = {', '.join(values)}")
    if resolved.subdir:
        lines.append(f"    hydra.sweep.dir = <the stage's directory>/{resolved.subdir}")
    bound = resolved.jobs()
    for key, ref in resolved.pending.items():
        refs = find_references(ref)
        expand = refs[0].expand if refs else ""
        bound *= 3 if expand in ("around", "beyond") else 1
        lines.append(f"    {key} = {ref}   (resolved when '{refs[0].stage if refs else '?'}' has finished)")
    exact = not any(
        find_references(r) and find_references(r)[0].expand == "around" for r in resolved.pending.values()
    )
    lines.append(f"    jobs: {bound if exact else f'up to {bound}'}")
    return "\n".join(lines)


def print_status(runner: Records, out: Any) -> None:
    """Each stage's state, one line each: done (with its key), failed or skipped (why), running."""
    for name in runner.plan.order:
        rec = runner.record(name)
        state = rec.get("status", "pending")
        if state == "running":
            pid = rec.get("pid")
            running = alive(pid, rec.get("started"))
            state = f"running (pid {pid})" if running else "interrupted (re-run to resume)"
            if running and process.orphaned(rec):
                state = "interrupted (its sweep is stopping; re-run to resume)"
        elif state == "interrupted":
            state = "interrupted (re-run to resume)"
        detail = f" ({str(rec.get('key', ''))[:12]})" if state == "done" else ""
        if rec.get("status") in ("failed", "skipped"):
            detail = f": {rec.get('reason')}"
        print(f"{name}: {state}{detail}", file=out)

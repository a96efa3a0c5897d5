"""``python -m qbench.plan FILE [--dry-run | --status] [--force STAGE] [--outputs DIR]``.

The plan is checked first (the file, what it may set, its references,
``--force`` and every sweep stage's overrides against the schema), for
``--dry-run`` and ``--status`` too. A :class:`~qbench.errors.QbenchError` is
one line on stderr and exit 2; SIGTERM or SIGINT stops the running stage's
sweep with the plan, records the stage as interrupted and exits 130 with one
line; otherwise the exit status is the run's: 1 when a stage failed or was
blocked (a result, not an error), 0 when all completed.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from qbench.errors import PlanError, PlanInterrupted, QbenchError
from qbench.plan.runner import Runner, check_overrides
from qbench.plan.spec import load_plan


def plan_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qbench.plan", description="Run a qbench plan (a DAG of stages)."
    )
    parser.add_argument("plan", type=Path, help="a plan file, e.g. experiments/research.yaml")
    parser.add_argument("--dry-run", action="store_true", help="print the DAG and job counts; run nothing")
    parser.add_argument("--status", action="store_true", help="show each stage's state; run nothing")
    parser.add_argument(
        "--force", action="append", default=[], metavar="STAGE", help="re-run STAGE and its downstream"
    )
    parser.add_argument(
        "--outputs", type=Path, default=Path("outputs"), help="outputs root (default: outputs)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = plan_parser().parse_args(argv)
    try:
        plan = load_plan(args.plan)
        for name in args.force:
            if name not in plan.stages:
                raise PlanError(f"--force {name}: no such stage (stages: {', '.join(plan.order)})")
        check_overrides(plan)
        runner = Runner(plan, args.outputs)
        if args.status:
            runner.status()
            return 0
        return runner.run(force=set(args.force), dry_run=args.dry_run)
    except PlanInterrupted as exc:
        print(f"qbench.plan: {interrupted(exc)}", file=sys.stderr)
        return 130
    except QbenchError as exc:
        print(f"qbench.plan: error: {exc}", file=sys.stderr)
        return 2


def interrupted(exc: PlanInterrupted) -> str:
    """One line: which signal stopped the plan, and where."""
    try:
        name = signal.Signals(exc.signum).name
    except ValueError:
        name = f"signal {exc.signum}"
    if exc.stage is None:
        return f"interrupted by {name}; run the plan again to continue"
    return (
        f"interrupted by {name}: stage '{exc.stage}' stopped with its sweep; run the plan again to resume it"
    )

"""Every sweep stage composed against qbench's schema before anything runs, and its job count confirmed."""

from __future__ import annotations

import math

from qbench.errors import PlanError, UsageError
from qbench.plan.resolve import fmt
from qbench.plan.spec import Plan, find_references


def check_overrides(plan: Plan) -> None:
    """Compose every sweep stage's fixed overrides and grid against the schema (references left out).

    Hydra's own count of the jobs must be the plan's (the product of the grid's lists): what a
    dry run prints is what runs.

    Raises:
        PlanError: one line naming the stage and the key, value or count.
    """
    from qbench.app.preflight import preflight
    from qbench.app.schema import register_configs

    register_configs()
    for stage in plan.stages.values():
        if not stage.is_sweep:
            continue
        fixed = [o for o in stage.overrides if not find_references(o)]
        lists = {k: v for k, v in stage.grid.items() if not isinstance(v, str)}
        grid = [f"{k}={','.join(fmt(v) for v in values)}" for k, values in lists.items()]
        try:
            jobs = preflight(["-m", *fixed, *grid])
        except UsageError as exc:
            raise PlanError(f"plan {plan.path.name}: stage '{stage.name}': {exc}") from None
        expected = math.prod(len(v) for v in lists.values())
        if jobs != expected:
            raise PlanError(
                f"plan {plan.path.name}: stage '{stage.name}': Hydra would run {jobs} job(s) where the "
                f"grid lists {expected}; list each value of a swept key in `grid:`"
            )

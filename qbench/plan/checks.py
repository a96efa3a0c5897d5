"""Every sweep stage composed against qbench's schema before anything runs, and its job count confirmed.

A value that holds a stage reference is composed too, with a sample of what the reference stands for
(an integer for a numeric recommendation, a member of the enum for a mode or kind): a reference whose
value can never fit its key (``workers=${s.claim_tx}``) is refused here, not after the upstream ran.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum

from qbench.errors import PlanError, UsageError
from qbench.plan.resolve import fmt
from qbench.plan.spec import NUMERIC_FIELDS, SEARCH_FIELD, Plan, Stage, find_references
from qbench.plan.where import config_columns

# what a numeric recommendation (workers, a pool size, a timeout, a batch) is composed as: a key with
# bounds may refuse one of these, and a reference is refused only when it fits with none
NUMERIC_SAMPLES = ("1", "1000")


def reference_samples(field: str) -> tuple[str, ...]:
    """Values of the type recommendation ``field`` holds: what a reference to it is composed with."""
    if field in NUMERIC_FIELDS:
        return NUMERIC_SAMPLES
    kind = config_columns()[field][0]
    if not (isinstance(kind, type) and issubclass(kind, StrEnum)):
        raise TypeError(f"recommendation field {field} is neither numeric nor an enum")
    return (str(next(iter(kind)).value),)


def with_samples(text: str, n: int = 0) -> str:
    """``text`` with every stage reference replaced by its field's ``n``-th sample (or its last)."""
    for ref in find_references(text):
        samples = reference_samples(ref.field)
        text = text.replace(ref.text, samples[min(n, len(samples) - 1)])
    return text


def _referenced(stage: Stage) -> dict[str, str]:
    """Each override and grid entry that holds a reference, as written -> as an override."""
    out = {text: text for text in stage.overrides if find_references(text)}
    for key, values in stage.grid.items():
        if isinstance(values, str):
            out[f"{key}: {values}"] = f"{key}={values}"
    return out


def _misfit(written: str, override: str, compose: Callable[[list[str]], int], base: list[str]) -> str:
    """Why the reference(s) in ``override`` fit with no sample; '' when one sample fits."""
    refs = find_references(override)
    reason = ""
    for n in range(max(len(reference_samples(r.field)) for r in refs)):
        try:
            compose([*base, with_samples(override, n)])
        except UsageError as exc:
            reason = reason or str(exc)
        else:
            return ""
    shown = ", ".join(f"{r.stage}.{r.field} (e.g. {reference_samples(r.field)[0]!r})" for r in refs)
    return f"{written}: the value of {shown} can never fit: {reason}"


def _check_references(stage: Stage, compose: Callable[[list[str]], int], base: list[str]) -> None:
    """Compose the stage with its references as samples; name the first one that can never fit."""
    referenced = _referenced(stage)
    if not referenced:
        return
    try:
        compose([*base, *(with_samples(o) for o in referenced.values())])
    except UsageError:
        for written, override in referenced.items():
            reason = _misfit(written, override, compose, base)
            if reason:
                raise PlanError(reason) from None


# a search's candidates composed, at most, where a later stage takes its answer
_MAX_ANSWERS = 20


def _check_search_answers(
    plan: Plan, stage: Stage, compose: Callable[[list[str]], int], base: list[str]
) -> None:
    """A value taking ``${S.search_best}`` must fit every answer search ``S`` can give: each of
    its candidates (evenly spaced ones when there are many) is composed in the reference's place."""
    for written, override in _referenced(stage).items():
        for ref in find_references(override):
            search = plan.stages[ref.stage].search if ref.field == SEARCH_FIELD else None
            if search is None:
                continue
            candidates = search.candidates()
            step = max(1, math.ceil(len(candidates) / _MAX_ANSWERS))
            for value in dict.fromkeys([*candidates[::step], candidates[-1]]):
                try:
                    compose([*base, with_samples(override.replace(ref.text, fmt(value)))])
                except UsageError as exc:
                    raise PlanError(
                        f"{written}: search '{ref.stage}' may answer {fmt(value)}, which can never fit: {exc}"
                    ) from None


def check_overrides(plan: Plan) -> None:
    """Compose every sweep stage's overrides and grid against the schema, references as typed samples.

    Hydra's own count of the jobs must be the plan's (the product of the grid's lists): what a
    dry run prints is what runs.

    Raises:
        PlanError: one line naming the stage and the key, value or count.
    """
    from qbench.app.preflight import preflight
    from qbench.app.schema import register_configs

    register_configs()

    def compose(overrides: list[str]) -> int:
        return preflight(["-m", *overrides])

    for stage in plan.stages.values():
        if not stage.runs_jobs:
            continue
        fixed = [o for o in stage.overrides if not find_references(o)]
        lists = {k: v for k, v in stage.grid.items() if not isinstance(v, str)}
        if stage.search is not None:  # both ends of the range must fit the key (values between them do)
            ends = dict.fromkeys([stage.search.candidates()[0], stage.search.candidates()[-1]])
            lists = {stage.search.key: list(ends)}
        grid = [f"{k}={','.join(fmt(v) for v in values)}" for k, values in lists.items()]
        try:
            jobs = compose([*fixed, *grid])
            _check_references(stage, compose, [*fixed, *grid])
            _check_search_answers(plan, stage, compose, [*fixed, *grid])
        except (UsageError, PlanError) as exc:
            raise PlanError(f"plan {plan.path.name}: stage '{stage.name}': {exc}") from None
        expected = math.prod(len(v) for v in lists.values())
        if jobs != expected:
            raise PlanError(
                f"plan {plan.path.name}: stage '{stage.name}': Hydra would run {jobs} job(s) where the "
                f"grid lists {expected}; list each value of a swept key in `grid:`"
            )

"""``hydra/sweeper=optuna``: its settings and its search space, checked before anything runs.

The optuna sweeper reads its search space from ``hydra.sweeper.params`` and
the command line, in Hydra's sweep syntax: ``choice(a,b)`` (each value),
``range(1,16)`` (optuna takes the stop as a value too: 1 to 16), ``interval(1,16)``
(floats), ``int(interval(1,16))`` (integers) and ``tag(log, interval(...))``.
Each swept key is composed and validated like a job of a grid at every value
it can take (at its ends and middle when there are more than
:data:`SAMPLE_ALL` of them), the others at their first, so a value the schema
refuses is one line naming it before optuna starts. An interval of floats for
an integer key is refused (optuna would draw 7.39 workers). The deprecated
``hydra.sweeper.search_space`` is refused (it is not checked). qbench's
objective is one throughput figure to maximise (:mod:`qbench.app.objective`),
so the direction must be ``maximize``: qbench registers it as the sweeper's
default (:func:`qbench.app.plugins.register_sweeper_defaults`).
"""

from __future__ import annotations

from typing import Any

from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from omegaconf import DictConfig, OmegaConf

from qbench.errors import ConfigError, UsageError

OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
# a range or choice of at most this many values is checked at every value; a longer one at its ends and middle
SAMPLE_ALL = 32


def _refuse(key: str, value: object, allowed: str) -> UsageError:
    return UsageError(str(ConfigError(key, value, allowed)))


def is_optuna(base: DictConfig) -> bool:
    return bool(OmegaConf.select(base, "hydra.sweeper._target_", default=None) == OPTUNA_SWEEPER)


def _direction(value: Any) -> Any:
    return getattr(value, "name", value)


def check_optuna_settings(base: DictConfig) -> int:
    """The optuna sweeper's settings that qbench's objective or the sweeper need; returns n_trials.

    Raises:
        UsageError: one line naming the key.
    """
    node = base.hydra.sweeper
    direction = OmegaConf.to_container(node, resolve=True).get("direction")  # type: ignore[union-attr]
    if _direction(direction) != "maximize":
        shown = [_direction(d) for d in direction] if isinstance(direction, list) else _direction(direction)
        raise _refuse(
            "hydra.sweeper.direction",
            shown,
            "qbench's objective is one throughput figure to maximise: expected maximize",
        )
    for key in ("n_trials", "n_jobs"):
        value = node.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _refuse(f"hydra.sweeper.{key}", value, "expected an integer >= 1")
    if node.get("search_space") is not None:
        raise _refuse(
            "hydra.sweeper.search_space",
            "...",
            "give the search space as hydra.sweeper.params (or KEY=choice(...)/range(...)/interval(...)),"
            " which qbench checks like a sweep",
        )
    return int(node.n_trials)


def _spread(values: list[Any]) -> list[Any]:
    if len(values) <= SAMPLE_ALL:
        return values
    return [values[0], values[len(values) // 2], values[-1]]


def _samples(override: Override, base: DictConfig) -> list[str]:
    """The values (as override text) the optuna sweeper may give a swept key, to compose each."""
    value = override.value()
    key, text = override.get_key_element(), (override.input_line or "").partition("=")[2]
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        return _spread([str(v) for v in override.sweep_iterator(transformer=Transformer.encode)])
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step or 1
        assert start is not None and stop is not None
        if (stop - start) * step < 0:
            raise _refuse(key, text, "an empty range: expected range(start, stop) with start <= stop")
        count = int((stop - start) // step) + 1  # optuna's distribution includes the stop
        return _spread([repr(start + i * step) for i in range(count)])
    if isinstance(value, IntervalSweep):
        start, end = value.start, value.end
        assert start is not None and end is not None
        if start > end:
            raise _refuse(key, text, "an empty interval: expected interval(low, high) with low <= high")
        current = OmegaConf.select(base, key, default=None)
        floats = isinstance(start, float) or isinstance(end, float)
        if floats and isinstance(current, int) and not isinstance(current, bool):
            raise _refuse(
                key,
                text,
                f"interval() draws floats and {key} takes integers: write int(interval({start:g},{end:g}))",
            )
        middle = (start + end) // 2 if not floats else (start + end) / 2
        return [repr(v) for v in dict.fromkeys([start, middle, end])]
    raise _refuse(key, text, "the optuna sweeper takes choice(...), range(...) or interval(...)")


def optuna_combos(parsed: list[Override], base: DictConfig) -> list[list[str]]:
    """Overrides to compose: each swept key at each of its samples, the other swept keys at their first.

    Raises:
        UsageError: a swept value the optuna sweeper cannot take (one line naming the key).
    """
    fixed = [o.input_line or "" for o in parsed if not o.is_sweep_override()]
    swept = {o.get_key_element(): _samples(o, base) for o in parsed if o.is_sweep_override()}
    if not swept:
        return [fixed]
    first = {key: f"{key}={values[0]}" for key, values in swept.items()}
    combos = []
    for key, values in swept.items():
        for value in values:
            combos.append([*fixed, *(v for k, v in first.items() if k != key), f"{key}={value}"])
    return combos

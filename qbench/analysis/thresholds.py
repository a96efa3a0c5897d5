"""The thresholds the analysis decides with, validated once wherever they come from.

They reach the analysis three ways: the sweep callback's config
(``hydra.callbacks.aggregate.*``, checked by preflight before any job runs),
``python -m qbench.aggregate --knee-fraction ...``, and plans. Each goes
through :meth:`Thresholds.from_mapping`, so a bad value is one line naming
the key, the value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from qbench.errors import ConfigError

# thresholds that are shares, rates or levels: a number in (0, 1]
_FRACTIONS = ("knee_fraction", "busy_rate", "cv", "alpha", "pool_wait_share", "lock_wait_share")
_MIN_RESAMPLES = 100
# thresholds where 0 means "not given"
_OPTIONAL = ("slo_p99_ms", "slo_target_tps")


@dataclass(frozen=True)
class Thresholds:
    # a config within this fraction of the best median throughput counts as the knee
    knee_fraction: float = 0.95
    # busy errors "begin" at the first worker count whose median busy rate exceeds this (0.001 = 0.1%)
    busy_rate: float = 0.001
    # coefficient of variation above which a config is flagged noisy (pyperf warns at 10%)
    cv: float = 0.10
    # significance level of the rank tests
    alpha: float = 0.05
    # share of worker time spent waiting for a pool connection that names pool exhaustion
    pool_wait_share: float = 0.2
    # share of worker time spent waiting for the write lock that names serialization
    lock_wait_share: float = 0.2
    # retries per task that name crosstalk
    retries_per_task: float = 0.1
    # cores kept busy (the event loop runs on one) that name CPU saturation
    cpu_cores: float = 0.9
    # bootstrap resamples for confidence intervals
    bootstrap_resamples: int = 2000
    # latency SLO: p99 end-to-end milliseconds a recommendation must stay under; 0 = none given
    slo_p99_ms: float = 0.0
    # the rate (tasks/s) production must sustain; 0 = none given (stated fractions of capacity)
    slo_target_tps: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], prefix: str = "") -> Thresholds:
        """Checked thresholds from ``values`` (missing ones keep their defaults).

        Args:
            values: threshold name -> value.
            prefix: how the keys are spelled where they came from (``--`` for options).

        Raises:
            ConfigError: an unknown threshold or a value outside its range.
        """
        known = {f.name for f in fields(cls)}
        checked: dict[str, Any] = {}
        for name, value in values.items():
            key = f"{prefix}{name.replace('_', '-') if prefix == '--' else name}"
            if name not in known:
                raise ConfigError(key, value, f"unknown threshold (allowed: {', '.join(sorted(known))})")
            checked[name] = _check(name, key, value)
        return cls(**checked)


def _check(name: str, key: str, value: Any) -> float | int:
    if name == "bootstrap_resamples":
        if isinstance(value, bool) or not isinstance(value, int) or value < _MIN_RESAMPLES:
            raise ConfigError(key, value, f"expected an integer >= {_MIN_RESAMPLES}")
        return value
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if name in _FRACTIONS:
        if not (ok and 0 < value <= 1):
            raise ConfigError(key, value, "expected a number in (0, 1]")
    elif name in _OPTIONAL:
        if not (ok and value >= 0):
            raise ConfigError(key, value, "expected a number >= 0 (0: none given)")
    elif not (ok and value > 0):
        raise ConfigError(key, value, "expected a number > 0")
    return float(value)

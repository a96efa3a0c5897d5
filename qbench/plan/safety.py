"""What a plan may set: plan files are shared data, so loading or running one never runs code.

A sweep stage's ``overrides`` and ``grid`` may set qbench keys (the fields of
:class:`qbench.settings.Config`, group choices included: ``journal=wal``)
and, of Hydra's, only ``hydra/launcher=NAME``, ``hydra/sweeper=NAME``,
``hydra.launcher.*``, ``hydra.sweeper.*`` (plain values) and
``hydra.sweep.dir`` (a relative path, placed inside the stage's output
directory). Refused, each in one line naming the key: ``_target_``
anywhere, ``hydra.callbacks``, ``hydra.sweeper.params`` (a second grid),
every other Hydra key, command-line flags,
``+``/``++``/``~`` on anything but a qbench key, package overrides
(``key@pkg``), ``db.dir`` (a database outside the job's directory), every
``${...}`` but qbench's stage references (``${oc.env:...}``,
``${now:...}``, custom resolvers), and Hydra sweep syntax (``a,b``,
``range(1,4)``): a plan lists swept values in its grid, so the job count a
dry run prints is the count that runs.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from qbench.plan.refs import REF, without_references
from qbench.settings import Config

ALLOWED = "plans may set qbench keys, hydra/launcher, hydra/sweeper, hydra.launcher.*, hydra.sweeper.*"
# top-level qbench keys, group choices among them (workload=, journal=, pool=, executor=, queue=)
QBENCH_KEYS = frozenset(f.name for f in dataclasses.fields(Config))
HYDRA_GROUPS = ("hydra/launcher", "hydra/sweeper")
HYDRA_PREFIXES = ("hydra.launcher.", "hydra.sweeper.")
SWEEP_DIR = "hydra.sweep.dir"
_KEY = re.compile(r"[A-Za-z_][\w-]*(?:[./][A-Za-z_][\w-]*)*")
_OVERRIDE = re.compile(r"(\+\+|\+|~)?([^=]*)(?:=(.*))?", re.S)
# one number, word or boolean: no brackets, quotes, commas, spaces, '$' or '/'
PLAIN = re.compile(r"[\w.+-]*")
_NAME = re.compile(r"[\w-]+")
_RELATIVE = re.compile(r"[\w.-]+(?:/[\w.-]+)*")
_INTERPOLATION = re.compile(r"\$\{[^}]*\}?")
_FUNCTION = re.compile(r"\s*[A-Za-z_]\w*\s*\(")


@dataclasses.dataclass(frozen=True)
class Override:
    """One ``[prefix]key[=value]`` override, split (nothing checked yet)."""

    text: str
    prefix: str
    key: str
    value: str | None

    @classmethod
    def parse(cls, text: str) -> Override:
        m = _OVERRIDE.fullmatch(text)
        assert m is not None  # the pattern matches any text
        return cls(text, m.group(1) or "", m.group(2).strip(), m.group(3))


def not_allowed(subject: str) -> str:
    return f"{subject} is not allowed in a plan ({ALLOWED})"


def _top_level_comma(text: str) -> bool:
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            return True
    return False


def is_hydra(key: str) -> bool:
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def is_sweep_syntax(value: str) -> bool:
    """Hydra would sweep this value: ``a,b`` or a function such as ``range(1,4)``, ``choice(...)``."""
    return _top_level_comma(value) or bool(_FUNCTION.match(value))


def _key_problem(o: Override) -> str | None:
    """Why a plan may not set this key, or None."""
    key = o.key
    if not _KEY.fullmatch(key):
        return not_allowed(key or repr(o.text))
    if "_target_" in key.lower():
        return not_allowed(key)
    if is_hydra(key):
        if o.prefix:
            return not_allowed(f"{o.prefix}{key}")
        allowed = key in (*HYDRA_GROUPS, SWEEP_DIR) or key.startswith(HYDRA_PREFIXES)
        # the sweeper's own params are a second grid: a plan sweeps in `grid:` only
        if not allowed or {"callbacks", "params"} & set(re.split(r"[./]", key)):
            return not_allowed(key)
        return None
    top = re.split(r"[./]", key)[0]
    if o.prefix and top not in QBENCH_KEYS:
        return not_allowed(f"{o.prefix}{key}")
    if key in ("db.dir", "db"):
        return f"{key} is not allowed in a plan (each job keeps its database in its own output directory)"
    return None


def _hydra_value_problem(key: str, value: str) -> str | None:
    if key == SWEEP_DIR:
        parts = value.split("/")
        if not _RELATIVE.fullmatch(value) or ".." in parts:
            return (
                f"{SWEEP_DIR}={value} is not inside the stage's output directory "
                "(give a relative path without '..')"
            )
        return None
    pattern = _NAME if key in HYDRA_GROUPS else PLAIN
    if not pattern.fullmatch(value) or not value:
        return f"{key}={value} is not a plain value (a plan gives Hydra's options one number or word)"
    return None


def value_problem(key: str, value: str, *, in_grid: bool = False) -> str | None:
    """Why a plan may not give ``key`` this (string) value, or None."""
    subject = f"grid {key}: {value!r}" if in_grid else f"{key}={value}"
    if "_target_" in value.lower():
        return not_allowed(f"_target_ in {key}")
    rest = without_references(value)
    found = _INTERPOLATION.search(rest)
    if found:
        return (
            f"{key}: {found.group(0)} is not allowed in a plan "
            "(the only interpolations a plan may use are stage references: ${STAGE.FIELD})"
        )
    if is_hydra(key) and value != rest:
        return f"{key}: a stage reference cannot set a Hydra option"
    if is_sweep_syntax(rest):
        if in_grid:
            return f"{subject} is Hydra sweep syntax: a grid value is one scalar, list the values instead"
        return f"{subject} is Hydra sweep syntax: a plan sweeps a key by listing its values in `grid:`"
    if is_hydra(key):
        return _hydra_value_problem(key, value)
    if not PLAIN.fullmatch(rest):
        return f"{subject} is not a plain value (one number, word or boolean)"
    return None


def override_problem(text: str) -> str | None:
    """Why a plan may not hold this override, or None."""
    if text.lstrip().startswith("-"):
        return f"{text} is a command-line flag, not an override: a plan may hold only key=value overrides"
    o = Override.parse(text)
    problem = _key_problem(o)
    if problem:
        return problem
    if o.value is None:
        return None if o.prefix == "~" else f"{text} is not a key=value override"
    return value_problem(o.key, o.value)


def grid_problem(key: str, values: Any) -> str | None:
    """Why a plan may not sweep ``key`` over ``values`` (a list, or one stage reference), or None."""
    o = Override.parse(f"{key}=")
    problem = _key_problem(o)
    if problem:
        return problem
    if o.prefix or is_hydra(key):
        return f"{key} cannot be swept: a grid key is a qbench key without +, ++ or ~"
    if isinstance(values, str):
        if REF.fullmatch(values.strip()):
            return None
        return value_problem(key, values, in_grid=True) or (
            f"grid {key}: {values!r} is one value: give a list of values, or one stage reference"
        )
    for value in values:
        if isinstance(value, str):
            problem = value_problem(key, value, in_grid=True)
            if problem is None and REF.search(value):
                problem = f"grid {key}: a stage reference is the whole grid value ({key}: {value})"
        elif isinstance(value, bool | int | float):
            problem = None
        else:
            problem = f"grid {key}: {value!r} is not a scalar (a grid value is one number, word or boolean)"
        if problem:
            return problem
    return None


def stage_problem(overrides: Sequence[str], grid: Mapping[str, Any]) -> str | None:
    """The first thing a sweep stage may not hold, as one line naming the key; None when all is allowed."""
    seen: dict[str, str] = {}
    for text in overrides:
        problem = override_problem(text)
        if problem:
            return problem
        key = Override.parse(text).key
        if key in seen:
            return f"{key} is set twice in overrides"
        seen[key] = "overrides"
    for key, values in grid.items():
        problem = grid_problem(str(key), values)
        if problem:
            return problem
        if key in seen:
            return f"{key} is set in both overrides and grid"
    return None


def split_sweep_dir(overrides: Sequence[str]) -> tuple[list[str], str]:
    """The overrides without ``hydra.sweep.dir``, and the relative directory it gave ("" when none)."""
    rest, subdir = [], ""
    for text in overrides:
        o = Override.parse(text)
        if o.key == SWEEP_DIR and not o.prefix:
            subdir = o.value or ""
        else:
            rest.append(text)
    return rest, subdir


def plain(text: str) -> bool:
    """A resolved value may go into an override: one number, word or boolean."""
    return bool(PLAIN.fullmatch(text)) and bool(text)

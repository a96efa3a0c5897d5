"""``when:``: run a stage only if an upstream recommendation passes a comparison.

::

    pools:
      needs: [scaling]
      when: "${scaling.best_workers} > 1"   # pool size cannot matter at one worker
      sweep: ...

The left side is one stage reference to a numeric recommendation field (as
in overrides: ``${STAGE.FIELD}`` or ``${STAGE.FIELD@column=value}``), the
operator one of ``> >= < <= == !=``, the right side a number. It is decided
once the referenced stage has finished. A stage whose condition does not
hold is *skipped*, not failed: its downstream analyses run over the other
stages and their report names the skipped stage and why; a sweep that takes
a value from a skipped stage is skipped too.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from qbench.plan.refs import REF, Reference, find_references

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_CONDITION = re.compile(r"^\s*(\$\{[^}]*\})\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
# what a condition may be, for the one-line error
SHAPE = "expected '${STAGE.FIELD} OP NUMBER' with OP one of > >= < <= == !="


@dataclass(frozen=True)
class Condition:
    text: str
    ref: Reference
    op: str
    number: float

    def holds(self, value: float) -> bool:
        return _OPERATORS[self.op](float(value), self.number)

    def why_not(self, value: float) -> str:
        """Why the stage is skipped: the value found and what the condition asks for."""
        number = int(self.number) if self.number.is_integer() else self.number
        shown = int(value) if float(value).is_integer() else value
        wanted = f"{self.ref.text} {self.op} {number}"
        return f"{self.ref.stage}.{self.ref.field} is {shown}; the stage runs only when {wanted}"


def parse_condition(raw: object) -> Condition | str:
    """The condition ``raw`` spells, or why it is not one (a message naming what is allowed)."""
    if not isinstance(raw, str):
        return f"`when` must be a string ({SHAPE})"
    match = _CONDITION.fullmatch(raw)
    if match is None or not REF.fullmatch(match.group(1)):
        return f"`when: {raw}` is not a condition ({SHAPE})"
    [ref] = find_references(match.group(1))
    if ref.expand:
        return f"`when: {raw}`: {ref.expand}: stands for a list; compare a single value"
    number = float(match.group(3))
    if not math.isfinite(number):
        return f"`when: {raw}`: the number must be finite"
    return Condition(raw.strip(), ref, match.group(2), number)

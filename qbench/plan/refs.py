"""Stage references in plan values: ``${STAGE.FIELD}``, ``${STAGE.FIELD@col=value}``,
``${around:STAGE.FIELD}`` and ``${beyond:STAGE.FIELD}``.

They are the only ``${...}`` a plan may hold (:mod:`qbench.plan.safety`
refuses every other interpolation and resolver).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REF = re.compile(r"\$\{(?:(around|beyond):)?([A-Za-z_][\w-]*)\.([A-Za-z_]\w*)(?:@([\w.]+)=([^}]+))?\}")


@dataclass(frozen=True)
class Reference:
    text: str
    stage: str
    field: str
    # "" (the value), "around" or "beyond" (a list of grid values)
    expand: str = ""
    where: tuple[str, str] | None = None


def find_references(text: str) -> list[Reference]:
    return [
        Reference(
            m.group(0),
            m.group(2),
            m.group(3),
            m.group(1) or "",
            (m.group(4), m.group(5)) if m.group(4) else None,
        )
        for m in REF.finditer(text)
    ]


def without_references(text: str) -> str:
    """``text`` with every stage reference taken out (what is left must hold no ``${``)."""
    return REF.sub("", text)

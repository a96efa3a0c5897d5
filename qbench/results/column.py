"""One column of the results: its name, Arrow type, unit (read from its name) and doc."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

# Units, read from a column's name suffix (DESIGN: units in names).
_UNITS = (
    ("_tps_per_worker", "tasks/s per worker"),
    ("_tps", "tasks/s"),
    ("_bytes", "bytes"),
    ("_ms", "ms"),
    ("_us", "us"),
    ("_cores", "cores"),
    ("_s", "s"),
)
COUNT_UNIT = "count"


def unit_of(name: str) -> str:
    """The unit a column's name declares ('' for identities, flags and plain labels)."""
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            return unit
    return ""


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    doc: str
    # a sampled gauge rather than an exact count or timing
    sampled: bool = False

    @property
    def unit(self) -> str:
        declared = unit_of(self.name)
        return declared or (COUNT_UNIT if pa.types.is_integer(self.type) else "")

    def field(self) -> pa.Field:
        """The Arrow field, its unit, doc and sampling written into its metadata."""
        meta = {"unit": self.unit, "doc": self.doc, "sampled": "true" if self.sampled else "false"}
        return pa.field(self.name, self.type, metadata=meta)


_I, _F, _S, _B = pa.int64(), pa.float64(), pa.string(), pa.bool_()

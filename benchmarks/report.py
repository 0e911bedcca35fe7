"""Rows, targets and the plain-text / JSON report."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

COLUMNS = (
    "workload",
    "executorlib",
    "floor",
    "ratio vs floor",
    "ProcessPoolExecutor",
    "ratio vs PPE",
    "target",
    "met?",
)


@dataclass(frozen=True)
class Target:
    """``executorlib / base  op  value`` (``base="abs"``: the executorlib value itself)."""

    base: Literal["floor", "ppe", "abs"]
    op: Literal["<=", ">="]
    value: float

    def met(self, row: Row) -> bool | None:
        measured = {"floor": row.ratio_floor, "ppe": row.ratio_ppe, "abs": row.executorlib}[self.base]
        if measured is None or math.isnan(measured):
            return None
        return measured <= self.value if self.op == "<=" else measured >= self.value

    def text(self, unit: str = "") -> str:
        if self.base == "abs":
            return f"{self.op} {self.value:g} {unit}".rstrip()
        return f"{self.op} {self.value:g}x {'floor' if self.base == 'floor' else 'PPE'}"


@dataclass
class Row:
    workload: str
    unit: str
    executorlib: float
    floor: float | None = None
    ppe: float | None = None
    targets: list[Target] = field(default_factory=list)

    @property
    def ratio_floor(self) -> float | None:
        return _ratio(self.executorlib, self.floor)

    @property
    def ratio_ppe(self) -> float | None:
        return _ratio(self.executorlib, self.ppe)

    @property
    def met(self) -> bool | None:
        verdicts = [t.met(self) for t in self.targets]
        if not verdicts or None in verdicts:
            return None
        return all(verdicts)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = [t.text(self.unit) for t in self.targets]
        data.update(ratio_vs_floor=self.ratio_floor, ratio_vs_ppe=self.ratio_ppe, met=self.met)
        return data

    def cells(self) -> list[str]:
        met = {True: "yes", False: "NO", None: "-"}[self.met]
        return [
            f"{self.workload} [{self.unit}]",
            _number(self.executorlib),
            _number(self.floor),
            _times(self.ratio_floor),
            _number(self.ppe),
            _times(self.ratio_ppe),
            ", ".join(t.text(self.unit) for t in self.targets) or "-",
            met,
        ]


def _ratio(value: float, base: float | None) -> float | None:
    if base is None or base == 0:
        return None
    return value / base


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(rows: list[Row]) -> str:
    lines = [list(COLUMNS), *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    numeric = {1, 2, 3, 4, 5}

    def fmt(line: list[str]) -> str:
        return " | ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([fmt(lines[0]), rule, *(fmt(line) for line in lines[1:])])

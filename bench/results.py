"""What a section hands back: a table (every row always present), target checks, raw data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ERROR = "error"


@dataclass(frozen=True)
class Spec:
    """The fixed shape of a section's table: the smoke test checks every row is printed."""

    key: str
    title: str
    columns: tuple[str, ...]
    labels: tuple[str, ...]
    targets: tuple[str, ...] = ()


@dataclass
class Target:
    name: str  # the promise, e.g. "keystroke echo p50 <= 0.6 ms and p99 <= 2 ms"
    measured: str  # what was seen, e.g. "p50 1.9 ms, p99 3.1 ms"
    met: bool | None  # None: not measured in this run


@dataclass
class Section:
    spec: Spec
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    others: float | None = None  # share of the machine's CPU other processes used meanwhile

    def __post_init__(self) -> None:
        labels = tuple(row[0] for row in self.rows)
        if labels != self.spec.labels:
            raise ValueError(f"{self.spec.key}: rows {labels} != {self.spec.labels}")
        for row in self.rows:
            if len(row) != len(self.spec.columns):
                raise ValueError(f"{self.spec.key}: row {row[0]!r} has {len(row)} cells")


def failed(spec: Spec, error: str) -> Section:
    """A section whose measurement failed: every row present, every cell says so."""
    rows = [[label] + [ERROR] * (len(spec.columns) - 1) for label in spec.labels]
    return Section(
        spec,
        rows,
        notes=[f"error: {error}"],
        targets=[Target(t, f"not measured ({ERROR})", None) for t in spec.targets],
        error=error,
    )

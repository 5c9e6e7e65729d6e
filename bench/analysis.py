"""Medians, paired ratios, the issue's goals and the linearity check (pure functions)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .runner import Measurement

__all__ = [
    "GOAL_LEAVES",
    "MEMORY_LIMIT",
    "RATIOS",
    "Index",
    "RatioSpec",
    "linearity",
    "ratio_rows",
]

#: Tree size at which the speed goals are judged.
GOAL_LEAVES = 10_000
#: Peak RSS growth allowed per leaf, bytes.
MEMORY_LIMIT = 1024
#: Sizes between which growth should be linear.
LINEAR_FROM, LINEAR_TO = 1_000, 100_000
#: Log-log slope counted as linear.
LINEAR_SLOPE = (0.95, 1.05)  # over two decades: per-leaf cost within ×0.8-×1.26


@dataclass(frozen=True)
class RatioSpec:
    """``numerator / denominator`` (contender labels), with an optional goal."""

    name: str
    numerator: str
    denominator: str
    goal: str | None = None  # "<= 1.25", ">= 20"

    def met(self, value: float) -> bool | None:
        if self.goal is None:
            return None
        sign, _, bound = self.goal.partition(" ")
        return value <= float(bound) if sign == "<=" else value >= float(bound)


RATIOS: tuple[RatioSpec, ...] = (
    RatioSpec("v3 write: link.etcd / floor", "link.etcd v3 write", "floor v3 write", "<= 1.25"),
    RatioSpec(
        "v3 write: hand loop / link.etcd (× faster)",
        "hand loop v3 write",
        "link.etcd v3 write",
        ">= 20",
    ),
    RatioSpec("v3 read: link.etcd / floor", "link.etcd v3 read", "floor v3 read", "<= 1.3"),
    RatioSpec(
        "v3 replace: link.etcd / floor write", "link.etcd v3 replace", "floor v3 write", "<= 1.5"
    ),
    RatioSpec("v2 read: link.etcd / floor", "link.etcd v2 read", "floor v2 read", "<= 1.3"),
    RatioSpec(
        "v2 write: hand loop / link.etcd (× faster)",
        "hand loop v2 write",
        "link.etcd v2 write",
        ">= 3",
    ),
    RatioSpec(
        "v3 read: hand loop / link.etcd (× faster)", "hand loop v3 read", "link.etcd v3 read"
    ),
    RatioSpec("v3 delete: link.etcd / floor", "link.etcd v3 delete", "floor v3 delete"),
    RatioSpec("v3 write: etcdctl / link.etcd (× faster)", "etcdctl v3 write", "link.etcd v3 write"),
    RatioSpec("v3 read: etcdctl / link.etcd (× faster)", "etcdctl v3 read", "link.etcd v3 read"),
    RatioSpec("v2 replace: link.etcd / its write", "link.etcd v2 replace", "link.etcd v2 write"),
    RatioSpec(
        "v2 read: hand loop / link.etcd (× faster)", "hand loop v2 read", "link.etcd v2 read"
    ),
    RatioSpec("v2 delete: link.etcd / floor", "link.etcd v2 delete", "floor v2 delete"),
)


class Index:
    """Measurements by ``(label, leaves)``."""

    def __init__(self, measurements: Iterable[Measurement]) -> None:
        self.by_key = {(m.label, m.leaves): m for m in measurements}
        self.sizes = sorted({leaves for _, leaves in self.by_key})
        self.labels = list(dict.fromkeys(label for label, _ in self.by_key))

    def get(self, label: str, leaves: int) -> Measurement | None:
        return self.by_key.get((label, leaves))

    def median(self, label: str, leaves: int) -> float | None:
        m = self.get(label, leaves)
        return statistics.median(m.times) if m and m.runs else None


def paired_ratio(numerator: Measurement, denominator: Measurement) -> tuple[float, int]:
    """Median of ``numerator / denominator`` over the repetitions both ran in.

    :returns: ``(ratio, pairs)``; with no common repetition, the ratio of the
        medians and 0 pairs.
    """
    den = dict(denominator.runs)
    pairs = [seconds / den[rep] for rep, seconds in numerator.runs if rep in den and den[rep] > 0]
    if pairs:
        return statistics.median(pairs), len(pairs)
    return statistics.median(numerator.times) / statistics.median(denominator.times), 0


def ratio_rows(index: Index, specs: Sequence[RatioSpec] = RATIOS) -> list[dict[str, Any]]:
    """Each spec's paired ratio at each size (``None`` where either side is missing)."""
    rows = []
    for spec in specs:
        by_size: dict[int, Any] = {}
        for leaves in index.sizes:
            num, den = index.get(spec.numerator, leaves), index.get(spec.denominator, leaves)
            if num and den and num.runs and den.runs:
                value, pairs = paired_ratio(num, den)
                by_size[leaves] = {"ratio": value, "pairs": pairs}
        judged = by_size.get(GOAL_LEAVES)
        rows.append(
            {
                "name": spec.name,
                "numerator": spec.numerator,
                "denominator": spec.denominator,
                "goal": spec.goal,
                "by_size": by_size,
                "met": spec.met(judged["ratio"]) if judged else None,
            }
        )
    return rows


def _slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``log(y)`` against ``log(x)``."""
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def linearity(index: Index) -> list[dict[str, Any]]:
    """Per contender: microseconds per leaf at each size and the log-log slope of
    time against leaves from :data:`LINEAR_FROM` to :data:`LINEAR_TO` leaves."""
    rows = []
    for label in index.labels:
        per_leaf = {}
        points = []
        for leaves in index.sizes:
            median = index.median(label, leaves)
            if median is None:
                continue
            per_leaf[leaves] = median / leaves * 1e6
            if LINEAR_FROM <= leaves <= LINEAR_TO:
                points.append((float(leaves), median))
        slope = _slope(points) if len(points) >= 2 else None
        growth = ""
        if len(points) >= 2:
            (x0, y0), (x1, y1) = points[0], points[-1]
            growth = f": per-leaf cost ×{(y1 / x1) / (y0 / x0):.2f} from {x0:,.0f} to {x1:,.0f}"
        if slope is None:
            verdict = "not enough sizes"
        elif slope < LINEAR_SLOPE[0]:
            verdict = f"sub-linear (fixed costs still matter at {LINEAR_FROM:,}){growth}"
        elif slope > LINEAR_SLOPE[1]:
            verdict = f"super-linear{growth}"
        else:
            verdict = "linear"
        rows.append({"label": label, "us_per_leaf": per_leaf, "slope": slope, "verdict": verdict})
    return rows

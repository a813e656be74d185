"""Geometry for small server-side SVG charts: the templates draw it, so there is no chart library to vendor.

Only numbers leave here; labels stay plain strings that the template escapes like any other text.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


def histogram(counts: list[tuple[object, int]], width: int = 160, height: int = 40) -> list[Bar]:
    """One bar per (label, count), scaled to the tallest, left to right."""
    if not counts:
        return []
    top = max(c for _, c in counts) or 1
    step = width / len(counts)
    bars = []
    for i, (label, count) in enumerate(counts):
        h = height * count / top
        bars.append(
            Bar(round(i * step, 1), round(height - h, 1), round(max(step - 1, 1), 1), round(h, 1), str(label), count)
        )
    return bars


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    value: float
    low_y: float | None = None
    high_y: float | None = None


@dataclass(frozen=True)
class LineChart:
    title: str
    points: list[Point]
    width: int
    height: int
    top: float
    bottom: float

    @property
    def path(self) -> str:
        return " ".join(f"{'M' if i == 0 else 'L'}{p.x},{p.y}" for i, p in enumerate(self.points))


def line_chart(
    title: str,
    values: list[tuple[str, float, tuple[float, float] | None]],
    bounds: tuple[float, float] | None = None,
    width: int = 260,
    height: int = 110,
) -> LineChart | None:
    """A line through (label, value) with optional (low, high) whiskers, on `bounds` or the data's range."""
    if not values:
        return None
    pad = 14
    numbers = [v for _, v, _ in values] + [b for *_, ci in values if ci for b in ci]
    bottom, top = bounds or (min(numbers), max(numbers))
    if top == bottom:
        top, bottom = top + 1, bottom - 1
    step = (width - 2 * pad) / max(len(values) - 1, 1)

    def y(v: float) -> float:
        return round(pad + (height - 2 * pad) * (top - v) / (top - bottom), 1)

    points = [
        Point(round(pad + i * step, 1), y(v), label, v, *(y(ci[0]), y(ci[1])) if ci else (None, None))
        for i, (label, v, ci) in enumerate(values)
    ]
    return LineChart(title, points, width, height, top, bottom)

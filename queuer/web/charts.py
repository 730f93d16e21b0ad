"""The overview's charts as SVG shapes (the template draws them; no JavaScript library)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from queuer.web.overview import Minute

WIDTH = 640.0
HEIGHT = 170.0
LEFT = 44.0  # room for the y labels
RIGHT = 8.0
TOP = 10.0
BOTTOM = 22.0  # room for the x labels
OUTCOMES = ("succeeded", "failed", "cancelled")  # bottom to top


@dataclass
class Rect:
    x: float
    y: float
    width: float
    height: float
    kind: str
    title: str


@dataclass
class Tick:
    position: float
    label: str


@dataclass
class Chart:
    width: float = WIDTH
    height: float = HEIGHT
    rects: list[Rect] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    line: str = ""  # an SVG path
    area: str = ""
    empty: bool = True
    plot_left: float = LEFT
    plot_right: float = WIDTH - RIGHT
    plot_top: float = TOP
    plot_bottom: float = HEIGHT - BOTTOM


def nice_ceiling(value: float) -> int:
    """An axis top of four equal whole steps, each 1, 2 or 5 x 10^n, at or above ``value``."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m * 4 >= value:
                return step * m * 4
        step *= 10


def _axes(chart: Chart, minutes: Sequence[Minute], top: int) -> tuple[float, float]:
    """Draw the ticks; return the plot's height and the width of one minute's slot."""
    plot_h = chart.plot_bottom - chart.plot_top
    for i in range(5):
        chart.y_ticks.append(Tick(chart.plot_bottom - plot_h * i / 4, f"{top * i // 4:,}"))
    slot = (chart.plot_right - chart.plot_left) / max(1, len(minutes))
    for i, m in enumerate(minutes):
        if m.minute.minute % 15 == 0:
            chart.x_ticks.append(Tick(chart.plot_left + slot * (i + 0.5), m.minute.strftime("%H:%M")))
    return plot_h, slot


def ended_chart(minutes: Sequence[Minute]) -> Chart:
    """Stacked bars: jobs ended per minute, by outcome."""
    chart = Chart()
    top = nice_ceiling(max((m.ended for m in minutes), default=0))
    plot_h, slot = _axes(chart, minutes, top)
    for i, m in enumerate(minutes):
        y = chart.plot_bottom
        when = m.minute.strftime("%H:%M")
        for kind in OUTCOMES:
            n = getattr(m, kind)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            chart.rects.append(Rect(round(chart.plot_left + slot * i + 1, 2), round(y, 2), round(max(slot - 2, 1), 2),
                                    round(h, 2), kind, f"{when}: {n:,} {kind}"))
            chart.empty = False
    return chart


def depth_chart(minutes: Sequence[Minute]) -> Chart:
    """A line (and the area under it): jobs due and not started, at the end of each minute."""
    chart = Chart()
    top = nice_ceiling(max((m.depth for m in minutes), default=0))
    plot_h, slot = _axes(chart, minutes, top)
    points = [(chart.plot_left + slot * (i + 0.5), chart.plot_bottom - plot_h * m.depth / top)
              for i, m in enumerate(minutes)]
    if points:
        chart.line = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in points)
        chart.area = (chart.line + f" L{points[-1][0]:.1f},{chart.plot_bottom:.1f}"
                      f" L{points[0][0]:.1f},{chart.plot_bottom:.1f} Z")
        chart.empty = all(m.depth == 0 for m in minutes)
        # Invisible hover targets, one per minute, carry the exact figures.
        for i, m in enumerate(minutes):
            chart.rects.append(Rect(round(chart.plot_left + slot * i, 2), chart.plot_top, round(slot, 2), plot_h,
                                    "hover", f"{m.minute.strftime('%H:%M')}: {m.depth:,} waiting"))
    return chart

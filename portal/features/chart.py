"""The storage volume chart of 機能契約, drawn on the server as SVG geometry (no script, no CDN)."""
import math
from dataclasses import dataclass

from portal.features.services import VolumePoint

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 12, 28  # room for the axis labels
PLOT_WIDTH, PLOT_HEIGHT = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


@dataclass(frozen=True)
class Bar:
    """One month's bar: its box in the SVG, its label under the axis and its value."""

    x: float
    y: float
    width: float
    height: float
    label: str
    month: str
    bytes: int


@dataclass(frozen=True)
class Tick:
    """A horizontal grid line with its value."""

    y: float
    bytes: int


@dataclass(frozen=True)
class VolumeChart:
    """Everything the template draws."""

    width: int
    height: int
    left: int
    plot_right: int
    baseline: float
    bars: list[Bar]
    ticks: list[Tick]


def nice_ceiling(value: int) -> int:
    """A round axis maximum at or above the value: 1, 2 or 5 times a power of ten, in bytes, KB, MB or GB.

    Round in the unit the labels use (1024-based, as the filesize filter shows sizes), so the grid reads 5.0 MB,
    not 4.8 MB.
    """
    if value <= 0:
        return 1024
    unit = 1
    while value / unit >= 1000 and unit < 1024 ** 3:
        unit *= 1024
    scaled = value / unit
    power = 10 ** math.floor(math.log10(scaled))
    step = next(step for step in (1, 2, 5, 10) if step * power >= scaled)
    return int(step * power * unit)


def volume_chart(points: list[VolumePoint]) -> VolumeChart:
    """Bars for each month, scaled to a round maximum with three grid lines."""
    top = nice_ceiling(max((point.bytes for point in points), default=0))
    slot = PLOT_WIDTH / max(len(points), 1)
    bars = []
    for index, point in enumerate(points):
        height = PLOT_HEIGHT * point.bytes / top
        bars.append(Bar(x=round(LEFT + index * slot + slot * 0.15, 1), y=round(TOP + PLOT_HEIGHT - height, 1),
                        width=round(slot * 0.7, 1), height=round(height, 1),
                        label=f"{point.month.month}月" if point.month.month != 1 or index == 0
                        else f"{point.month.year % 100}年1月",
                        month=f"{point.month.year}年{point.month.month}月", bytes=point.bytes))
    ticks = [Tick(y=round(TOP + PLOT_HEIGHT * (1 - share), 1), bytes=int(top * share)) for share in (0, 0.5, 1)]
    return VolumeChart(width=WIDTH, height=HEIGHT, left=LEFT, plot_right=WIDTH - RIGHT,
                       baseline=TOP + PLOT_HEIGHT, bars=bars, ticks=ticks)

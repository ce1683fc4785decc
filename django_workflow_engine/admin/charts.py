"""A bar chart of daily cost, drawn on the server as inline SVG."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from .common import fmt_cost

WIDTH = 960
HEIGHT = 240
LEFT = 70
BOTTOM = 36
TOP = 14


def daily_cost_chart(days: Sequence[tuple[date, Decimal]]) -> SafeString:
    """One bar per day (days with no spend are drawn as empty slots)."""
    if not days:
        return mark_safe('<p class="quiet">No days in range.</p>')
    peak = max((cost for _, cost in days), default=Decimal(0)) or Decimal(1)
    plot_w, plot_h = WIDTH - LEFT - 10, HEIGHT - BOTTOM - TOP
    slot = plot_w / len(days)
    bar_w = max(1.0, slot * 0.8)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dwe-cost-chart" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Daily AI cost" '
        'style="max-width:100%;height:auto;font:11px sans-serif">'
    ]
    for i in range(5):
        value = peak * i / 4
        gy = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" y1="{gy:.1f}" x2="{WIDTH - 10}" y2="{gy:.1f}" stroke="#eee"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end" fill="#666">{escape(fmt_cost(value))}</text>'
        )
    label_every = max(1, round(len(days) / 10))
    for index, (day, cost) in enumerate(days):
        h = float(cost / peak) * plot_h if cost else 0.0
        bx = LEFT + index * slot + (slot - bar_w) / 2
        parts.append(
            f'<rect class="dwe-day" x="{bx:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w:.1f}" '
            f'height="{max(h, 0.0):.1f}" fill="#417690"><title>{day.isoformat()}: {escape(fmt_cost(cost))}</title>'
            "</rect>"
        )
        if index % label_every == 0:
            parts.append(
                f'<text x="{bx + bar_w / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" fill="#666">'
                f"{day:%b %d}</text>"
            )
    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 10}" y2="{TOP + plot_h}" stroke="#999"/></svg>')
    return mark_safe("".join(parts))  # noqa: S308  (only numbers and escaped text above)

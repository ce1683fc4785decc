"""The run timeline: one inline SVG drawn on the server (no JavaScript, no external assets).

Rows are stages, banded by execution group (a group with several stages ran them in parallel). A bar spans a
stage's start to its end (or now, while it runs); the part spent suspended, waiting for external work to finish,
is hatched. Every piece of text from the database is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from .common import STATUS_COLORS, fmt_duration

WIDTH = 960
LABEL_W = 190
RIGHT_PAD = 20
ROW_H = 26
BAR_H = 14
AXIS_H = 28
GROUP_GAP = 6


@dataclass
class Row:
    stage_id: str
    name: str
    group: int
    status: str
    started: datetime | None
    finished: datetime | None
    suspended_at: datetime | None
    next_poll_at: datetime | None
    items: Any = None  # a map stage: its items' counts (admin/maps.py MapCounts)


def build_rows(
    stages: Sequence[Any],
    plan: Sequence[Sequence[Any]] | None,
    suspended_at: Mapping[str, datetime],
    maps: Mapping[str, Any] | None = None,
) -> list[Row]:
    """Stage rows in plan order; planned stages that have no record yet are shown as not started. A map is one
    row (its items are not in ``stages``) with its items' counts from ``maps``."""
    by_id = {s.stage_id: s for s in stages}
    rows: list[Row] = []
    seen: set[str] = set()
    if plan:
        for group_no, group in enumerate(plan, start=1):
            for stage_def in group:
                record = by_id.get(stage_def.id)
                rows.append(_row(stage_def.id, stage_def.name, group_no, record, suspended_at))
                seen.add(stage_def.id)
    for record in sorted(stages, key=lambda s: (s.execution_group, s.stage_number)):
        if record.stage_id not in seen:  # stages of a workflow no longer registered (or renamed)
            rows.append(_row(record.stage_id, record.stage_name, record.execution_group, record, suspended_at))
    rows.sort(key=lambda r: r.group)
    for row in rows:
        row.items = (maps or {}).get(row.stage_id)
    return rows


def _row(stage_id: str, name: str, group: int, record: Any, suspended_at: Mapping[str, datetime]) -> Row:
    if record is None:
        return Row(stage_id, name, group, "NOT STARTED", None, None, None, None)
    return Row(
        stage_id,
        record.stage_name or name,
        group,
        record.status,
        record.started_at,
        record.completed_at,
        suspended_at.get(stage_id) if record.suspended_state is not None or record.status == "SUSPENDED" else None,
        record.next_poll_at,
    )


def render_timeline(run: Any, rows: Iterable[Row], now: datetime | None = None) -> SafeString:
    """The SVG for ``rows`` (see :func:`build_rows`)."""
    rows = list(rows)
    now = now or timezone.now()
    if not rows:
        return format_html('<p class="quiet">{}</p>', "This run has no stages.")
    starts = [r.started for r in rows if r.started] + ([run.started_at] if run.started_at else [])
    if not starts:
        return format_html('<p class="quiet">{}</p>', "No stage has started yet.")
    t0 = min(starts)
    ends = [r.finished or now for r in rows if r.started]
    if run.completed_at:
        ends.append(run.completed_at)
    t1 = max([*ends, t0])
    span = max((t1 - t0).total_seconds(), 0.001)
    plot_w = WIDTH - LABEL_W - RIGHT_PAD

    def x(t: datetime) -> float:
        return LABEL_W + max(0.0, min(1.0, (t - t0).total_seconds() / span)) * plot_w

    groups: dict[int, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    height = AXIS_H + sum(len(g) * ROW_H + GROUP_GAP for g in groups.values()) + 34

    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dwe-timeline" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="Stage timeline" '
        # Full width on a wide screen; never below 90 % of its drawn size, so its text stays legible on a phone
        # (the wrapper scrolls it sideways instead of the page).
        f'style="width:100%;min-width:{int(WIDTH * 0.9)}px;height:auto;font:11px sans-serif">',
        '<defs><pattern id="dwe-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fdf1d8"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#c88a00" stroke-width="3"/></pattern></defs>',
    ]
    # Axis: five ticks, labelled with the time since the first stage started.
    for i in range(5):
        tx = LABEL_W + plot_w * i / 4
        label = "+" + fmt_duration(span * 1000 * i / 4) if i else "0"
        parts.append(
            f'<line x1="{tx:.1f}" y1="{AXIS_H - 6}" x2="{tx:.1f}" y2="{height - 34}" style="stroke:var(--hairline-color,#e5e5e5)"/>'
        )
        anchor = "end" if i == 4 else ("start" if i == 0 else "middle")
        parts.append(
            f'<text x="{tx:.1f}" y="{AXIS_H - 10}" text-anchor="{anchor}" style="fill:var(--body-quiet-color,#666)">{escape(label)}</text>'
        )

    y = AXIS_H
    for index, (group_no, group_rows) in enumerate(sorted(groups.items())):
        band_h = len(group_rows) * ROW_H
        # Django admin's colour variables, so the bands follow its light and dark schemes.
        fill = "var(--darkened-bg,#f7f9fb)" if index % 2 == 0 else "var(--body-bg,#ffffff)"
        parts.append(f'<rect class="dwe-group" x="0" y="{y}" width="{WIDTH}" height="{band_h}" style="fill:{fill}"/>')
        if len(group_rows) > 1:
            # A bracket marks the stages of one group that ran side by side.
            parts.append(
                f'<path d="M{LABEL_W - 8} {y + 4} h-4 v{band_h - 8} h4" fill="none" stroke="#79aec8" '
                f'stroke-width="2"><title>Group {group_no}: {len(group_rows)} stages in parallel</title></path>'
            )
        for row in group_rows:
            parts.append(_render_row(row, y, x, now))
            y += ROW_H
        parts.append(
            f'<text x="4" y="{y - band_h + 11}" style="fill:var(--body-quiet-color,#999)" font-size="9">G{group_no}'
            f"{' ∥' if len(group_rows) > 1 else ''}</text>"
        )
        y += GROUP_GAP

    parts.append(_legend(height - 16))
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308  (every database value above went through escape())


def _render_row(row: Row, y: int, x: Any, now: datetime) -> str:
    fg, bg = STATUS_COLORS.get(row.status, ("#999", "#f3f3f3"))
    label = f"{row.name} ({row.stage_id})" if row.name and row.name != row.stage_id else row.stage_id
    text = (
        f'<text x="26" y="{y + ROW_H / 2 + 4:.1f}" style="fill:var(--body-fg,#333)">{escape(_clip(label, 28))}'
        f"<title>{escape(label)}</title></text>"
    )
    if row.items is not None:  # a map: its label links to its items
        text = f'<a class="dwe-map-items" href="{escape(row.items.url)}">{text}</a>'
    out = [text]
    bar_y = y + (ROW_H - BAR_H) / 2
    if row.started is None:
        out.append(
            f'<text x="{LABEL_W + 4}" y="{y + ROW_H / 2 + 4:.1f}" style="fill:var(--body-quiet-color,#999)" '
            f'font-style="italic">{escape(row.status.lower())}</text>'
        )
        return "".join(out)
    end = row.finished or now
    x0, x1 = x(row.started), x(end)
    width = max(x1 - x0, 2.0)
    duration = fmt_duration((end - row.started).total_seconds() * 1000)
    tip = f"{row.stage_id}: {row.status}, {duration}" + ("" if row.finished else " so far")
    if row.items is not None:
        duration += f" · {row.items.summary()}"
        tip += f"; {row.items.total} items: {row.items.summary()}"
    if row.suspended_at and row.next_poll_at and row.status == "SUSPENDED":
        tip += f"; next poll {row.next_poll_at:%Y-%m-%d %H:%M:%S}"
    out.append(
        f'<g class="dwe-bar" data-stage="{escape(row.stage_id)}" data-status="{escape(row.status)}">'
        f"<title>{escape(tip)}</title>"
        f'<rect x="{x0:.1f}" y="{bar_y:.1f}" width="{width:.1f}" height="{BAR_H}" rx="3" fill="{bg}" '
        f'stroke="{fg}"/>'
    )
    if row.suspended_at:
        sx = x(row.suspended_at)
        wait_end = row.finished or now
        out.append(
            f'<rect class="dwe-wait" x="{sx:.1f}" y="{bar_y:.1f}" width="{max(x(wait_end) - sx, 2.0):.1f}" '
            f'height="{BAR_H}" fill="url(#dwe-hatch)" stroke="#c88a00"><title>suspended: waiting for external '
            f"work{' (still waiting)' if row.status == 'SUSPENDED' else ''}</title></rect>"
        )
    out.append("</g>")
    # The duration goes right of the bar, or left of it when the bar ends near the right edge.
    after = x1 + 4 <= WIDTH - RIGHT_PAD - (60 if row.items is None else 330)
    text_x, anchor = (x1 + 4, "start") if after else (x0 - 4, "end")
    out.append(
        f'<text x="{text_x:.1f}" y="{y + ROW_H / 2 + 4:.1f}" text-anchor="{anchor}" fill="{fg}">'
        f"{escape(duration)}{' ⏸' if row.status == 'SUSPENDED' else ''}</text>"
    )
    return "".join(out)


def _legend(y: int) -> str:
    items = [("COMPLETED", None), ("RUNNING", None), ("FAILED", None), ("CANCELLED", None), ("suspended wait", "wait")]
    out, lx = [], LABEL_W
    for label, kind in items:
        if kind == "wait":
            out.append(f'<rect x="{lx}" y="{y}" width="14" height="10" fill="url(#dwe-hatch)" stroke="#c88a00"/>')
        else:
            fg, bg = STATUS_COLORS[label]
            out.append(f'<rect x="{lx}" y="{y}" width="14" height="10" rx="2" fill="{bg}" stroke="{fg}"/>')
        out.append(f'<text x="{lx + 18}" y="{y + 9}" style="fill:var(--body-quiet-color,#555)">{label.lower()}</text>')
        lx += 110
    out.append(
        f'<path d="M{lx + 4} {y} h-4 v10 h4" fill="none" stroke="#79aec8" stroke-width="2"/>'
        f'<text x="{lx + 10}" y="{y + 9}" style="fill:var(--body-quiet-color,#555)">parallel group</text>'
    )
    return "".join(out)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"

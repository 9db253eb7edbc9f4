"""A run's timeline as one SVG picture: no script, no external asset, no font file.

It is drawn here, in Python, so that the post-incident report is a document that shows
the same picture in any browser or viewer, mailed or attached years later, without the
dashboard. Everything a run's journal holds (titles, sites, names) is escaped: a step
title or an approver's name is data, never markup.

Layout: a time axis on top; one row per plan step with its bar from start to end (gates
hatched, the approval wait inside its row, the undo of a rolled-back step as a thin bar
under it); the write-unavailability window as a band across every row, labelled with its
measured length; the point of no return as a dashed vertical line. Classes name each
part (``step``, ``wait``, ``undo``, ``write-unavailability``, ``point-of-no-return``)
so that tests and style sheets can find them.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape, quoteattr

from failback.report.timeline import Timeline, TimelineStep, WriteWindow

WIDTH = 1000
LABEL_W = 300
RIGHT_PAD = 30
TOP = 58
ROW_H = 22
BAR_H = 14
PLOT_W = WIDTH - LABEL_W - RIGHT_PAD
MIN_BAR_W = 2.0
TITLE_CHARS = 44

STATUS_FILL = {
    "done": "#2e7d32",
    "skipped": "#9e9e9e",
    "failed": "#c62828",
    "waiting": "#f9a825",
    "applying": "#1565c0",
    "verifying": "#1565c0",
    "reverted": "#6a1b9a",
    "pending": "#e0e0e0",
}

STYLE = """
text { font-family: sans-serif; font-size: 11px; fill: #212121; }
.axis line { stroke: #bdbdbd; }
.axis text { fill: #616161; font-size: 10px; }
.write-unavailability { fill: #ef5350; fill-opacity: 0.18; stroke: #c62828; stroke-width: 1; }
.write-unavailability-label { fill: #b71c1c; font-weight: bold; }
.point-of-no-return { stroke: #4a148c; stroke-width: 1.5; stroke-dasharray: 5 3; }
.point-of-no-return-label { fill: #4a148c; font-weight: bold; }
.wait { fill: url(#hatch); stroke: #f57f17; stroke-width: 1; }
.undo { fill: #6d4c41; }
.undo-failed { fill: #000000; }
.gate { stroke: #424242; stroke-width: 0.5; }
.approval { fill: #f57f17; }
"""


def timeline_svg(timeline: Timeline) -> str:
    """The picture of ``timeline`` as a standalone SVG document (UTF-8 text)."""
    span = max(timeline.end_s, 0.001)
    scale = _Scale(span)
    rows = len(timeline.steps)
    height = TOP + rows * ROW_H + 40
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}"'
        f' viewBox="0 0 {WIDTH} {height}" role="img" class="timeline"'
        f" aria-label={quoteattr(_caption(timeline))}>",
        f"<title>{escape(_caption(timeline))}</title>",
        f"<style>{STYLE}</style>",
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse"'
        ' patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff8e1"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#f9a825" stroke-width="3"/>'
        "</pattern></defs>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
    ]
    out += _axis(scale, TOP, TOP + rows * ROW_H)
    for window in timeline.write_unavailability:
        out += _write_window(window, scale, rows)
    index = {s.id: s.index for s in timeline.steps}
    for i, step in enumerate(timeline.steps):
        out += _row(i, step, scale, timeline.end_s)
    for wait in timeline.waits:
        if wait.kind != "approval" or wait.step not in index:
            continue
        y = TOP + index[wait.step] * ROW_H + (ROW_H - BAR_H) / 2
        x0, x1 = scale.x(wait.start_s), scale.x(wait.end_s if wait.end_s is not None else span)
        who = f", approved by {wait.by}" if wait.by else ", not approved (yet)"
        out.append(
            f'<rect class="wait" data-step={quoteattr(wait.step)} x="{x0:.1f}" y="{y:.1f}"'
            f' width="{max(x1 - x0, MIN_BAR_W):.1f}" height="{BAR_H}">'
            f"<title>{escape(f'waiting for approval {_secs(wait.start_s, wait.end_s)}{who}')}"
            "</title></rect>"
        )
    for approval in timeline.approvals:
        if approval.step not in index:
            continue
        x = scale.x(approval.at_s)
        y = TOP + index[approval.step] * ROW_H + ROW_H / 2
        label = f"approved by {approval.by or '?'} at +{_fmt(approval.at_s)}"
        out.append(
            f'<path class="approval" d="M{x:.1f} {y - 6:.1f} l5 6 l-5 6 l-5 -6 z">'
            f"<title>{escape(label)}</title></path>"
        )
    for undo in timeline.undos:
        if undo.step not in index:
            continue
        y = TOP + index[undo.step] * ROW_H + ROW_H - 4
        x0, x1 = scale.x(undo.start_s), scale.x(undo.end_s)
        cls = "undo" if undo.status == "undone" else "undo undo-failed"
        out.append(
            f'<rect class="{cls}" data-step={quoteattr(undo.step)} x="{x0:.1f}" y="{y:.1f}"'
            f' width="{max(x1 - x0, MIN_BAR_W):.1f}" height="3">'
            f"<title>{escape(f'{undo.status} {_secs(undo.start_s, undo.end_s)}')}</title></rect>"
        )
    ponr = timeline.point_of_no_return
    if ponr is not None and ponr.passed and ponr.at_s is not None:
        x = scale.x(ponr.at_s)
        bottom = TOP + rows * ROW_H
        out.append(
            f'<line class="point-of-no-return" x1="{x:.1f}" y1="{TOP - 14}" x2="{x:.1f}"'
            f' y2="{bottom + 6}"><title>{escape(f"point of no return: {ponr.title}")}</title>'
            "</line>"
        )
        out.append(
            f'<text class="point-of-no-return-label" x="{x + 3:.1f}" y="{bottom + 18}">'
            f"point of no return +{_fmt(ponr.at_s)}</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


class _Scale:
    """Seconds -> x pixels of the plot area."""

    def __init__(self, span: float) -> None:
        self.span = span

    def x(self, seconds: float) -> float:
        return LABEL_W + PLOT_W * min(max(seconds, 0.0), self.span) / self.span


def _caption(tl: Timeline) -> str:
    return (
        f"run {tl.run_id}: {tl.kind} of {tl.service} from {tl.from_site} to {tl.to_site},"
        f" {tl.status}, {_fmt(tl.end_s)}"
    )


def _axis(scale: _Scale, top: float, bottom: float) -> list[str]:
    step = _tick_step(scale.span)
    out = ['<g class="axis">']
    n = 0
    while n * step <= scale.span + 1e-9 and n <= 50:
        t = n * step
        x = scale.x(t)
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{bottom}"/>')
        out.append(f'<text x="{x:.1f}" y="{top - 9}" text-anchor="middle">+{_fmt(t)}</text>')
        n += 1
    out.append("</g>")
    return out


def _tick_step(span: float) -> float:
    """A round step giving about eight ticks: 1, 2 or 5 times a power of ten."""
    raw = span / 8
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return float(factor * power)
    return float(10 * power)


def _write_window(window: WriteWindow, scale: _Scale, rows: int) -> list[str]:
    end = window.end_s if window.end_s is not None else scale.span
    x0, x1 = scale.x(window.start_s), scale.x(end)
    length = (
        f"{window.measured_s:.3f} s measured"
        if window.measured_s is not None
        else ("not ended" if window.end_s is None else f"{end - window.start_s:.3f} s, unmeasured")
    )
    where = f"{window.stopped_site} -> {window.resumed_site or '?'}"
    if window.rollback:
        where += " (rollback)"
    label = f"writes unavailable: {length}"
    bottom = TOP + rows * ROW_H
    return [
        f'<rect class="write-unavailability" x="{x0:.1f}" y="{TOP - 4}"'
        f' width="{max(x1 - x0, MIN_BAR_W):.1f}" height="{bottom - TOP + 8}">'
        f"<title>{escape(f'{label} ({where})')}</title></rect>",
        f'<text class="write-unavailability-label" x="{x0 if x0 < WIDTH - 260 else x1:.1f}"'
        f' y="{TOP - 34}" text-anchor="{"start" if x0 < WIDTH - 260 else "end"}">'
        f"{escape(label)}</text>",
    ]


def _row(i: int, step: TimelineStep, scale: _Scale, end_s: float) -> list[str]:
    y = TOP + i * ROW_H
    title = step.title if len(step.title) <= TITLE_CHARS else step.title[: TITLE_CHARS - 1] + "…"
    out = [
        f'<text class="step-label" x="6" y="{y + ROW_H / 2 + 4:.1f}">'
        f"{escape(f'{step.index + 1}. {title}')}</text>"
    ]
    if step.start_s is None:
        return out
    stop = step.end_s if step.end_s is not None else end_s
    x0, x1 = scale.x(step.start_s), scale.x(stop)
    fill = STATUS_FILL.get(step.status, "#757575")
    classes = f"step step-{step.status}" + (" gate" if step.kind == "gate" else "")
    tip = f"{step.title}: {step.status} {_secs(step.start_s, step.end_s)}"
    if step.error:
        tip += f" — {step.error}"
    out.append(
        f'<rect class={quoteattr(classes)} data-step={quoteattr(step.id)} x="{x0:.1f}"'
        f' y="{y + (ROW_H - BAR_H) / 2:.1f}" width="{max(x1 - x0, MIN_BAR_W):.1f}"'
        f' height="{BAR_H}" fill="{fill}" rx="2"><title>{escape(tip)}</title></rect>'
    )
    return out


def _secs(start: float, end: float | None) -> str:
    if end is None:
        return f"from +{_fmt(start)} (not ended)"
    return f"+{_fmt(start)} to +{_fmt(end)} ({_fmt(end - start)})"


def _fmt(seconds: float) -> str:
    """1.234 -> ``1.23s``; 75 -> ``1m15s``; axis labels and tips."""
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"

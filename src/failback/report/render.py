"""A post-incident report as Markdown or HTML, from ``incident_document``.

Both are one self-contained document: no script, no style sheet or font from elsewhere;
the timeline is the SVG of ``report/svg.py``. Everything from the journal is text, never
markup: HTML escapes it (``html.escape``), Markdown escapes what a renderer would read
as HTML or table syntax, and puts step outputs in code fences longer than any run of
backticks inside them.

Markdown and the picture: few viewers render an ``<svg>`` element written into
Markdown (GitHub strips it), and none strips an image link. So the caller chooses:
``svg_link`` (a sibling ``.svg`` file beside the ``.md``, which ``failback report --out``
writes) or, without it, the picture inline as a ``data:`` image (renders where data
images do: VS Code, Typora, Obsidian, browsers' Markdown viewers).
"""

from __future__ import annotations

import base64
import html
import json
import re
import time
from typing import Any

from failback.report.svg import timeline_svg
from failback.report.timeline import Timeline

DOC_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1040px; color: #212121; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top;
  font-size: 13px; }
th { background: #f5f5f5; }
pre { background: #fafafa; border: 1px solid #eee; padding: 4px 8px; margin: 0;
  white-space: pre-wrap; word-break: break-all; font-size: 12px; max-width: 520px; }
.status-succeeded { color: #2e7d32; } .status-failed, .status-rolled-back,
.status-aborted { color: #c62828; }
.muted { color: #757575; }
.steps td:nth-child(4), .steps td:nth-child(5), .steps td:nth-child(6) { white-space: nowrap; }
"""


# --------------------------------------------------------------------------- shared


def _utc(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d} UTC"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _rel(ts: float | None, t0: float) -> str:
    return "-" if ts is None else f"+{ts - t0:.3f} s"


def _value(m: dict[str, Any]) -> str:
    if m.get("value") is None:
        return "not measured"
    unit = m.get("unit") or ""
    return f"{m['value']:.3f} {unit}".strip() if unit == "s" else f"{m['value']:g} {unit}".strip()


def _header_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    run = doc["run"]
    tl = doc["timeline"]
    rows = [
        ("service", run["service"]),
        ("kind", run["kind"]),
        ("from → to", f"{run['from_site']} → {run['to_site']}"),
        ("status", run["status"]),
        ("started", _utc(run["started_at"])),
        ("started by", run["started_by"] or "not recorded"),
        ("finished", _utc(run["finished_at"])),
        ("duration", _secs(run["duration_s"])),
    ]
    for approval in doc["approvals"]:
        rows.append(
            (
                f"approved: {approval['step']}",
                f"by {approval['by'] or '?'} at {_utc(tl['t0'] + approval['at_s'])}",
            )
        )
    ponr = tl.get("point_of_no_return")
    if ponr:
        passed = f"passed at +{ponr['at_s']:.3f} s" if ponr["passed"] else "not passed"
        rows.append(("point of no return", f"{ponr['title']} ({passed})"))
    for window in tl["write_unavailability"]:
        rows.append(("writes unavailable", _window_text(window)))
    if run["rollback"]:
        rows.append(("rolled back because", str(run["rollback"].get("reason"))))
    if run["error"]:
        rows.append(("error", run["error"]))
    if run["hint"]:
        rows.append(("hint", run["hint"]))
    if doc["diverged"]:
        rows.append(("diverged data", doc["diverged"]["line"]))
    return rows


def _window_text(window: dict[str, Any]) -> str:
    length = (
        f"{window['measured_s']:.3f} s (measured)"
        if window["measured_s"] is not None
        else "not measured"
    )
    end = "not ended" if window["end_s"] is None else f"+{window['end_s']:.3f} s"
    return (
        f"{length}: from +{window['start_s']:.3f} s to {end},"
        f" {window['stopped_site']} → {window['resumed_site'] or '?'}"
        + (" (rollback)" if window["rollback"] else "")
    )


def _outcome(doc: dict[str, Any]) -> str:
    run = doc["run"]
    text = f"{run['kind']} of {run['service']} from {run['from_site']} to {run['to_site']}"
    return f"{text}: {run['status']}"


def _timeline(doc: dict[str, Any]) -> str:
    return timeline_svg(Timeline.model_validate(doc["timeline"]))


# --------------------------------------------------------------------------- HTML


def render_html(doc: dict[str, Any]) -> str:
    """One HTML file: inline style, inline SVG, no script, every value escaped."""
    e = html.escape
    run = doc["run"]
    t0 = doc["timeline"]["t0"]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>failback run {run['id']}: {e(_outcome(doc))}</title>",
        f"<style>{DOC_STYLE}</style></head><body>",
        f"<h1>Run {run['id']}: {e(_outcome(doc))}</h1>",
        '<table class="header">',
    ]
    for key, value in _header_rows(doc):
        cls = f' class="status-{e(value)}"' if key == "status" else ""
        out.append(f"<tr><th>{e(key)}</th><td{cls}>{e(value)}</td></tr>")
    out.append("</table>")
    out += ["<h2>Timeline</h2>", '<div class="timeline">', _timeline(doc), "</div>"]
    out += [
        "<h2>Steps</h2>",
        '<table class="steps"><tr><th>#</th><th>step</th><th>status</th><th>start</th>'
        "<th>end</th><th>duration</th><th>attempts</th><th>undo</th><th>output</th></tr>",
    ]
    for i, step in enumerate(doc["steps"], 1):
        mark = " (point of no return)" if step["point_of_no_return"] else ""
        error = f'<div class="error">{e(step["error"])}</div>' if step.get("error") else ""
        output = step.get("output_summary")
        out.append(
            f'<tr data-step="{e(step["id"])}"><td>{i}</td>'
            f'<td>{e(step["title"])}{e(mark)}<div class="muted">{e(step["id"])}</div></td>'
            f"<td>{e(step['status'])}{error}</td>"
            f"<td>{e(_rel(step['started_at'], t0))}</td><td>{e(_rel(step['finished_at'], t0))}"
            f"</td><td>{e(_secs(step['duration_s']))}</td><td>{step['attempts']}</td>"
            f"<td>{e(step.get('undo') or '')}</td>"
            f"<td>{f'<pre>{e(output)}</pre>' if output else ''}</td></tr>"
        )
    out.append("</table>")
    out += ["<h2>Measurements</h2>"]
    if doc["measurements"]:
        out.append(
            '<table class="measurements"><tr><th>measurement</th><th>value</th><th>step</th>'
            "<th>note</th></tr>"
        )
        for m in doc["measurements"]:
            out.append(
                f"<tr><td>{e(m['name'])}</td><td>{e(_value(m))}</td>"
                f"<td>{e(m.get('step') or '')}</td><td>{e(m.get('note') or '')}</td></tr>"
            )
        out.append("</table>")
    else:
        out.append('<p class="muted">This run measured nothing.</p>')
    out += _html_diverged(doc)
    out += _html_drills(doc)
    out += [
        "<h2>Events</h2>",
        '<table class="events"><tr><th>time</th><th>kind</th><th>step</th><th>message</th></tr>',
    ]
    for ev in doc["events"]:
        out.append(
            f"<tr><td>{e(_rel(ev['ts'], t0))}</td><td>{e(ev['kind'])}</td>"
            f"<td>{e(ev.get('step') or '')}</td><td>{e(ev['message'])}</td></tr>"
        )
    out.append("</table>")
    out.append(
        f'<p class="muted">Generated by failback at {e(_utc(time.time()))} from the run\'s'
        " journal; secrets the topology refers to are masked.</p></body></html>"
    )
    return "\n".join(out) + "\n"


def _html_diverged(doc: dict[str, Any]) -> list[str]:
    diverged = doc["diverged"]
    if not diverged:
        return []
    e = html.escape
    out = ["<h2>Diverged data</h2>", f"<p>{e(diverged['line'])}</p>"]
    changes = diverged["changes"]
    if changes:
        out.append(
            '<table class="diverged"><tr><th>database</th><th>table</th><th>op</th>'
            "<th>key</th><th>old</th><th>new</th><th>xid</th><th>committed</th></tr>"
        )
        for c in changes:
            cells = [
                c.get("database"),
                c.get("table"),
                c.get("op"),
                _json(c.get("key")),
                _json(c.get("old")),
                _json(c.get("new")),
                c.get("xid"),
                c.get("commit_time"),
            ]
            out.append("<tr>" + "".join(f"<td>{e(_cell(v))}</td>" for v in cells) + "</tr>")
        out.append("</table>")
    return out


def _html_drills(doc: dict[str, Any]) -> list[str]:
    rows = _drill_rows(doc)
    if not rows:
        return []
    e = html.escape
    out = ["<h2>Drills</h2>", '<table class="drills">']
    out += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows]
    out.append("</table>")
    return out


def _drill_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    drills = doc["drills"]
    rows = []
    for key, label in (
        ("this_run", "this drill"),
        ("last_before", "last drill before this run"),
        ("last_success_before", "last successful drill before this run"),
    ):
        row = drills.get(key)
        if row:
            rto = "" if row["rto_s"] is None else f", RTO {row['rto_s']:.3f} s"
            rows.append(
                (label, f"run {row['id']} at {row['site']}: {row['status']},"
                 f" {_utc(row['started_at'])}{rto}")
            )  # fmt: skip
    return rows


def _json(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


# --------------------------------------------------------------------------- Markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_MD_LEADING = re.compile(r"^([#+>=-])")
_MD_NUMBERED = re.compile(r"^(\d+)([.)])")


def md_text(value: Any) -> str:
    """Text for a Markdown paragraph or table cell: no markup, no HTML, one line."""
    text = html.escape(_cell(value), quote=False)
    text = " ".join(_MD_SPECIAL.sub(r"\\\1", text).splitlines())
    text = _MD_NUMBERED.sub(r"\1\\\2", _MD_LEADING.sub(r"\\\1", text))
    return text or " "


def _fence(text: str) -> list[str]:
    """``text`` in a code fence no backtick run inside it can close."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, text, fence]


def svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def render_markdown(doc: dict[str, Any], *, svg_link: str | None = None) -> str:
    """Markdown; the timeline as an image: ``svg_link`` (a file written beside it), or
    inline as a data: URI."""
    run = doc["run"]
    t0 = doc["timeline"]["t0"]
    m = md_text
    target = svg_link if svg_link is not None else svg_data_uri(_timeline(doc))
    out = [
        f"# Run {run['id']}: {m(_outcome(doc))}",
        "",
        "| | |",
        "|---|---|",
        *[f"| {m(k)} | {m(v)} |" for k, v in _header_rows(doc)],
        "",
        "## Timeline",
        "",
        f"![timeline of run {run['id']}]({target.replace(')', '%29').replace(' ', '%20')})",
        "",
        "## Steps",
        "",
        "| # | step | status | start | end | duration | attempts | undo |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, step in enumerate(doc["steps"], 1):
        mark = " (point of no return)" if step["point_of_no_return"] else ""
        out.append(
            f"| {i} | {m(step['title'] + mark)} | {m(step['status'])} |"
            f" {m(_rel(step['started_at'], t0))} | {m(_rel(step['finished_at'], t0))} |"
            f" {m(_secs(step['duration_s']))} | {step['attempts']} | {m(step.get('undo') or '')} |"
        )
    details = [s for s in doc["steps"] if s.get("error") or s.get("output_summary")]
    if details:
        out += ["", "### Step outputs and errors"]
        for step in details:
            out += ["", f"**{m(step['title'])}** ({m(step['id'])})", ""]
            if step.get("error"):
                out += [f"error: {m(step['error'])}", ""]
            if step.get("output_summary"):
                out += _fence(step["output_summary"])
    out += ["", "## Measurements", ""]
    if doc["measurements"]:
        out += ["| measurement | value | step | note |", "|---|---|---|---|"]
        out += [
            f"| {m(x['name'])} | {m(_value(x))} | {m(x.get('step') or '')} |"
            f" {m(x.get('note') or '')} |"
            for x in doc["measurements"]
        ]
    else:
        out.append("This run measured nothing.")
    diverged = doc["diverged"]
    if diverged:
        out += ["", "## Diverged data", "", m(diverged["line"])]
        if diverged["changes"]:
            out += [
                "",
                "| database | table | op | key | old | new | xid | committed |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for c in diverged["changes"]:
                cells = [c.get("database"), c.get("table"), c.get("op"), _json(c.get("key")),
                         _json(c.get("old")), _json(c.get("new")), c.get("xid"),
                         c.get("commit_time")]  # fmt: skip
                out.append("| " + " | ".join(m(v) for v in cells) + " |")
    drills = _drill_rows(doc)
    if drills:
        out += ["", "## Drills", "", "| | |", "|---|---|"]
        out += [f"| {m(k)} | {m(v)} |" for k, v in drills]
    out += ["", "## Events", "", "| time | kind | step | message |", "|---|---|---|---|"]
    out += [
        f"| {m(_rel(ev['ts'], t0))} | {m(ev['kind'])} | {m(ev.get('step') or '')} |"
        f" {m(ev['message'])} |"
        for ev in doc["events"]
    ]
    out += [
        "",
        f"_Generated by failback at {m(_utc(time.time()))} from the run's journal; secrets"
        " the topology refers to are masked._",
    ]
    return "\n".join(out) + "\n"

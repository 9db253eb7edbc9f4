// failback console charts: small SVG drawings made here, no library, no build step.
// Three pictures: a run's timeline (steps as bars on a time axis), a component's
// health and lag history, and the measured figures of past runs. Every label is
// inserted as text (textContent), never as markup.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svgTitle(text) { return svg("title", {}, text); }

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return `${Math.round(s * 1000)}ms`;
  if (s < 120) return `${s.toFixed(2)}s`;
  return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
}

function fmtClock(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function fmtLag(b) {
  if (b === null || b === undefined) return "–";
  if (b < 1024) return `${b} B`;
  if (b < 1048576) return `${(b / 1024).toFixed(1)} KiB`;
  return `${(b / 1048576).toFixed(1)} MiB`;
}

// A time axis: `ticks` evenly spaced labels between t0 and t1 under a chart.
function timeAxis(x, t0, t1, y, ticks, relative) {
  const g = svg("g", { class: "axis" });
  for (let i = 0; i <= ticks; i++) {
    const t = t0 + ((t1 - t0) * i) / ticks;
    const px = x(t);
    g.append(svg("line", { x1: px, x2: px, y1: 0, y2: y, class: "grid" }));
    g.append(svg("text", { x: px, y: y + 12, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle" },
      relative ? `+${fmtSeconds(t - t0)}` : fmtClock(t)));
  }
  return g;
}

// ------------------------------------------------------------------ run timeline

const TL = { width: 960, label: 250, row: 20, top: 26, right: 12 };

// The timeline of one run in absolute times, as the drawing needs it: from the server's
// timeline document (GET /api/v1/runs/{id}/timeline, failback.report.timeline) when it
// is there for this run, else from the run document alone (report steps, write window).
function timelineOf(doc, tl, now) {
  const run = doc.run;
  const ended = ["succeeded", "rolled-back", "aborted", "failed"].includes(run.status);
  if (tl && tl.run_id === run.id) {
    const t0 = tl.t0;
    const live = tl.live && !ended;
    const end = live ? Math.max(now, t0 + tl.end_s) : t0 + tl.end_s;
    const at = (v) => (v === null || v === undefined ? null : t0 + v);
    return {
      start: t0, end, live,
      steps: tl.steps.map((s) => ({ ...s, start: at(s.start_s), end: s.end_s !== null ? at(s.end_s) : (s.start_s !== null ? end : null),
        open: s.start_s !== null && s.end_s === null })),
      waits: tl.waits.map((w) => ({ ...w, start: at(w.start_s), end: w.end_s !== null ? at(w.end_s) : end, open: w.end_s === null })),
      undos: tl.undos.map((u) => ({ ...u, start: at(u.start_s), end: at(u.end_s) })),
      windows: tl.write_unavailability.map((w) => ({ start: at(w.start_s), end: w.end_s !== null ? at(w.end_s) : end,
        open: w.end_s === null, length_s: w.measured_s, rollback: w.rollback })),
      pnr: tl.point_of_no_return && tl.point_of_no_return.at_s !== null
        ? { step: tl.point_of_no_return.step, title: tl.point_of_no_return.title, at: at(tl.point_of_no_return.at_s), passed: tl.point_of_no_return.passed }
        : null,
    };
  }
  const live = !ended;
  const steps = doc.report.steps.map((s) => ({
    id: s.id, title: s.title, kind: s.kind, status: s.status, site: s.site,
    start: s.started_at, end: s.finished_at ?? (s.started_at && live ? now : s.started_at),
    open: !s.finished_at && !!s.started_at, point_of_no_return: s.point_of_no_return,
    undo: s.undo, error: s.error,
  }));
  const m = (doc.report.measurements || []).find((x) => x.name === "write_unavailability_s");
  const w = doc.write_window;
  const end = run.finished_at || (live ? now : Math.max(run.created_at, ...steps.map((s) => s.end || 0)));
  const pnrStep = steps.find((s) => s.point_of_no_return && s.start);
  return {
    start: run.created_at, end, live, steps, waits: [], undos: [],
    windows: w ? [{ start: w.start, end: w.end ?? end, open: w.end === null, length_s: m ? m.value : null }] : [],
    pnr: pnrStep ? { step: pnrStep.id, title: pnrStep.title, at: pnrStep.start, passed: pnrStep.status === "done" } : null,
  };
}

function drawTimeline(doc, tlDoc, now) {
  const tl = timelineOf(doc, tlDoc, now);
  const steps = tl.steps;
  const height = TL.top + steps.length * TL.row + 34;
  const t0 = tl.start, t1 = Math.max(tl.end, t0 + 1);
  const span = TL.width - TL.label - TL.right;
  const x = (t) => TL.label + ((Math.min(Math.max(t, t0), t1) - t0) / (t1 - t0)) * span;
  const root = svg("svg", { viewBox: `0 0 ${TL.width} ${height}`, class: "timeline-chart", role: "img",
    "aria-label": `timeline of run ${doc.run.id}`, "data-run-id": doc.run.id,
    "data-source": tlDoc && tlDoc.run_id === doc.run.id ? "timeline" : "run" });
  root.append(svg("defs", {},
    svg("pattern", { id: "wait-hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
      svg("rect", { width: 6, height: 6, class: "hatch-bg" }), svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "hatch" }))));
  const body = TL.top + steps.length * TL.row;
  const rowOf = Object.fromEntries(steps.map((s, i) => [s.id, TL.top + i * TL.row]));
  root.append(svg("g", { transform: `translate(0,${TL.top})` }, timeAxis(x, t0, t1, steps.length * TL.row, 6, true)));
  // the write-unavailability windows, under the bars, each with its measured length
  for (const w of tl.windows) {
    const wx = x(w.start), ww = Math.max(2, x(w.end) - wx);
    const len = w.length_s ?? (w.open ? null : w.end - w.start);
    const label = len === null ? "writes unavailable (open)" : `writes unavailable ${fmtSeconds(len)}${w.rollback ? " (rollback)" : ""}`;
    root.append(svg("g", { class: "write-window", "data-write-window": len ?? "open" },
      svg("rect", { x: wx, y: TL.top - 4, width: ww, height: body - TL.top + 4 }, svgTitle(label)),
      svg("text", { x: Math.min(Math.max(wx + ww / 2, 80), TL.width - 80), y: 11, "text-anchor": "middle" }, label)));
  }
  steps.forEach((s, i) => {
    const y = TL.top + i * TL.row;
    const g = svg("g", { class: `bar bar-${s.kind} bar-${s.status}`, "data-bar": s.id, "data-bar-status": s.status,
      "data-bar-kind": s.kind });
    g.append(svg("text", { x: TL.label - 8, y: y + 14, "text-anchor": "end", class: "bar-label" },
      s.title.length > 38 ? `${s.title.slice(0, 36)}…` : s.title));
    if (s.start) {
      const bx = x(s.start), bw = Math.max(3, x(s.end ?? s.start) - bx);
      const tip = `${s.title} (${s.kind}) — ${s.status}` +
        `${s.end && s.start ? `, ${fmtSeconds(s.end - s.start)}` : ""}${s.undo ? `, undo: ${s.undo}` : ""}` +
        `${s.error ? `\n${s.error}` : ""}`;
      // a gate or a wait in progress is hatched (an inline style: it wins over the status colour)
      g.append(svg("rect", { x: bx, y: y + 3, width: bw, height: TL.row - 6, rx: 2,
        style: s.status === "waiting" || (s.kind === "gate" && s.open) ? "fill: url(#wait-hatch)" : null }, svgTitle(tip)));
      const dur = s.end - s.start;
      const waited = tl.waits.some((w) => w.step === s.id); // the wait's own label says how long
      if (s.status !== "waiting" && !waited && (dur >= (t1 - t0) * 0.04 || s.kind === "gate")) {
        g.append(svg("text", { x: Math.min(bx + bw + 4, TL.width - 40), y: y + 14, class: "bar-note" }, fmtSeconds(dur)));
      }
    }
    root.append(g);
  });
  // waits: approvals from the question to the answer (who), the other gates over their step
  for (const w of tl.waits) {
    const y = rowOf[w.step];
    if (y === undefined || w.start === null) continue;
    const wx = x(w.start), ww = Math.max(3, x(w.end) - wx);
    const label = w.kind === "approval"
      ? (w.open ? "waiting for approval" : `approved${w.by ? ` by ${w.by}` : ""} after ${fmtSeconds(w.end - w.start)}`)
      : `${w.kind}${w.open ? "…" : ` ${fmtSeconds(w.end - w.start)}`}`;
    // the label right of the bar, else inside it when it is wide enough, else left of it
    const fitsRight = wx + ww + 4 <= TL.width - 150;
    const inside = !fitsRight && ww > 7 * label.length;
    root.append(svg("g", { class: `wait wait-${w.kind}`, "data-wait": w.step, "data-wait-open": String(w.open) },
      svg("rect", { x: wx, y: y + 3, width: ww, height: TL.row - 6, rx: 2, style: w.open ? "fill: url(#wait-hatch)" : null },
        svgTitle(`${label}${w.question ? `: ${w.question}` : ""}`)),
      svg("text", { x: fitsRight ? wx + ww + 4 : inside ? wx + ww - 4 : wx - 4, y: y + 14,
        class: inside ? "bar-note inside" : "bar-note", "text-anchor": fitsRight ? "start" : "end" }, label)));
  }
  // undos: each undone step's undo, on its step's row
  for (const u of tl.undos) {
    const y = rowOf[u.step];
    if (y === undefined) continue;
    const ux = x(u.start), uw = Math.max(3, x(u.end) - ux);
    root.append(svg("g", { class: `undo undo-${u.status}`, "data-undo": u.step },
      svg("rect", { x: ux, y: y + 6, width: uw, height: TL.row - 12, rx: 2 }, svgTitle(`undo: ${u.message}`))));
  }
  // the point of no return: once that step applied, a failure no longer rolls back
  if (tl.pnr) {
    const px = x(tl.pnr.at);
    root.append(svg("g", { class: "pnr", "data-pnr": tl.pnr.step, "data-pnr-passed": String(!!tl.pnr.passed) },
      svg("line", { x1: px, x2: px, y1: TL.top - 4, y2: body }),
      svg("text", { x: px, y: body + 28, "text-anchor": "middle" }, "▲ point of no return"),
      svgTitle(`point of no return: ${tl.pnr.title}`)));
  }
  if (tl.live) {
    const nx = x(now);
    root.append(svg("line", { x1: nx, x2: nx, y1: TL.top - 4, y2: body, class: "now" }));
  }
  return root;
}

// ------------------------------------------------------------------ health and lag history

const HC = { width: 960, label: 170, height: 46, right: 70 };

// One chart per component and site: health as a band (green up, red down, grey: no
// sample), replication lag as a line over it (scaled to its largest value), and the
// runs as vertical marks.
function drawHistory(doc, t0, t1) {
  const groups = new Map();
  for (const s of doc.samples) {
    const key = `${s.component}@${s.site}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(s);
  }
  const root = document.createElement("div");
  root.className = "history-service";
  root.dataset.history = doc.service;
  if (!groups.size) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = `${doc.service}: no samples yet (the monitor and this server record them while they observe)`;
    root.append(p);
    return root;
  }
  const span = HC.width - HC.label - HC.right;
  const x = (t) => HC.label + ((Math.min(Math.max(t, t0), t1) - t0) / (t1 - t0)) * span;
  const bucket = doc.bucket_s;
  const keys = [...groups.keys()].sort();
  // a row with a lag line is tall enough to read it; a health band alone is thin
  const rowHeight = (key) => (groups.get(key).some((s) => s.lag_bytes !== null) ? HC.height : 12);
  const tops = [];
  let height = 16;
  for (const key of keys) { tops.push(height); height += rowHeight(key) + 6; }
  height += 14;
  const chart = svg("svg", { viewBox: `0 0 ${HC.width} ${height}`, class: "history-chart", role: "img",
    "aria-label": `health and lag of ${doc.service}` });
  keys.forEach((key, i) => {
    const samples = groups.get(key);
    const y0 = tops[i], rh = rowHeight(key);
    const [component, site] = key.split("@");
    const g = svg("g", { class: "history-row", "data-component": component, "data-site": site,
      "data-samples": samples.length });
    g.append(svg("text", { x: HC.label - 8, y: y0 + Math.min(18, rh - 2), "text-anchor": "end", class: "bar-label" }, key));
    g.append(svg("rect", { x: HC.label, y: y0, width: span, height: rh, class: "band-none" }));
    for (const s of samples) {
      const bx = x(s.at), bw = Math.max(1, x(s.at + bucket) - bx);
      g.append(svg("rect", { x: bx, y: y0 + rh - 8, width: bw, height: 8,
        class: s.healthy ? "band-up" : "band-down", "data-healthy": String(s.healthy) },
        svgTitle(`${fmtClock(s.at)}: ${s.healthy ? "up" : "down"} (${s.role})` +
          `${s.lag_bytes !== null ? `, lag ${fmtLag(s.lag_bytes)}` : ""}`)));
    }
    const lagged = samples.filter((s) => s.lag_bytes !== null);
    if (lagged.length) {
      const max = Math.max(1, ...lagged.map((s) => s.lag_bytes));
      const ly = (v) => y0 + HC.height - 10 - (v / max) * (HC.height - 14);
      const points = lagged.map((s) => `${x(s.at + bucket / 2).toFixed(1)},${ly(s.lag_bytes).toFixed(1)}`);
      g.append(svg("polyline", { points: points.join(" "), class: "lag-line", "data-lag-points": lagged.length }));
      g.append(svg("text", { x: HC.width - HC.right + 4, y: y0 + 10, class: "axis-note" }, `max ${fmtLag(max)}`));
      g.append(svg("text", { x: HC.width - HC.right + 4, y: y0 + HC.height - 10, class: "axis-note" }, "lag"));
    }
    chart.append(g);
  });
  for (const r of doc.runs) {
    const rx = x(r.created_at);
    const rw = Math.max(2, x(r.finished_at || t1) - rx);
    chart.append(svg("g", { class: `run-mark run-${r.kind}`, "data-run-mark": r.id },
      svg("rect", { x: rx, y: 12, width: rw, height: height - 26 }),
      svg("text", { x: rx + 2, y: 10 }, `${r.kind} ${r.id}`),
      svgTitle(`run ${r.id}: ${r.kind} ${r.from_site} → ${r.to_site}, ${r.status}`)));
  }
  chart.append(svg("g", { transform: `translate(0,${height - 14})` }, timeAxis(x, t0, t1, 0, 6, false)));
  const h = document.createElement("h3");
  h.textContent = doc.service;
  root.append(h, chart);
  return root;
}

// ------------------------------------------------------------------ runs measured

// Each ended failover or failback with its measured RTO and write-unavailability, side
// by side, oldest on the left: how the service's moves went over time.
function drawRunsChart(runs) {
  const measured = runs
    .filter((r) => ["failover", "failback"].includes(r.kind) && r.finished_at)
    .filter((r) => (r.measurements || {}).rto_s != null || (r.measurements || {}).write_unavailability_s != null)
    .slice(0, 30).reverse();
  if (!measured.length) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "no measured run yet";
    return p;
  }
  const W = 960, H = 170, left = 50, bottom = 34, top = 16;
  const max = Math.max(0.001, ...measured.flatMap((r) => [r.measurements.rto_s || 0, r.measurements.write_unavailability_s || 0]));
  const slot = Math.min(70, (W - left - 10) / measured.length);
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "runs-chart", role: "img",
    "aria-label": "RTO and write-unavailability of past runs" });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    root.append(svg("line", { x1: left, x2: W - 10, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end", class: "axis-note" }, fmtSeconds(v)));
  }
  measured.forEach((r, i) => {
    const m = r.measurements, bx = left + i * slot + 4, bw = (slot - 12) / 2;
    const g = svg("g", { class: "run-bars", "data-run-bars": r.id });
    for (const [j, key, cls] of [[0, "rto_s", "rto"], [1, "write_unavailability_s", "wu"]]) {
      const v = m[key];
      if (v === null || v === undefined) continue;
      g.append(svg("rect", { x: bx + j * bw, y: y(v), width: bw - 1, height: Math.max(1, y(0) - y(v)),
        class: `m-${cls}`, [`data-${cls}`]: v }, svgTitle(`run ${r.id} ${r.kind}: ${cls === "rto" ? "RTO" : "write-unavailability"} ${fmtSeconds(v)}`)));
    }
    g.append(svg("text", { x: bx + bw, y: H - bottom + 14, "text-anchor": "middle", class: "axis-note" }, `${r.id}`),
      svg("text", { x: bx + bw, y: H - bottom + 26, "text-anchor": "middle", class: "axis-note" }, r.kind === "failover" ? "fo" : "fb"));
    root.append(g);
  });
  root.append(svg("g", { class: "legend" },
    svg("rect", { x: W - 260, y: 2, width: 10, height: 10, class: "m-rto" }), svg("text", { x: W - 246, y: 11 }, "RTO"),
    svg("rect", { x: W - 200, y: 2, width: 10, height: 10, class: "m-wu" }), svg("text", { x: W - 186, y: 11 }, "write-unavailability")));
  return root;
}

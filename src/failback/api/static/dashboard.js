// failback console: plain JavaScript, no build step. Reads /api/v1, listens to
// /api/v1/stream (server-sent events), draws the charts of charts.js, and asks for the
// token only to act (fail over, fail back, approve, abort, the automatic-failback
// switch), each after a confirmation that shows the plan first. The token is kept in
// sessionStorage for the tab at most, never in a URL. Every value is inserted as text
// (never as HTML), so nothing observed can inject markup.
"use strict";

const TOKEN_KEY = "failback-api-token";
const state = { status: null, runs: [], focus: null, timeline: null, action: null, histories: {} };
const HISTORY_WINDOW_S = 3600;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return `${Math.round(s * 1000)}ms`;
  if (s < 120) return `${s.toFixed(2)}s`;
  return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
}
function fmtBytes(b) {
  if (b === null || b === undefined) return "–";
  if (b < 1024) return `${b} B`;
  if (b < 1048576) return `${(b / 1024).toFixed(1)} KiB`;
  return `${(b / 1048576).toFixed(1)} MiB`;
}
function fmtTime(ts) { return ts ? new Date(ts * 1000).toLocaleTimeString() : "–"; }
function statusClass(s) {
  if (["succeeded", "primary", "active", "standby"].includes(s)) return "ok";
  if (["failed", "rolled-back", "aborted", "interrupted", "stale-primary", "down", "unknown"].includes(s)) return "bad";
  return "warn";
}

async function getJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

// ------------------------------------------------------------------ services

function renderServices() {
  const root = document.getElementById("services");
  if (!state.status) return;
  root.replaceChildren(...state.status.services.map(renderService));
  document.getElementById("observed").textContent =
    `observed ${fmtTime(state.status.observed_at)}`;
}

function renderService(svc) {
  const auto = svc.auto_failback || {};
  const autoText = auto.policy === "automatic"
    ? (auto.enabled ? "automatic failback on" : `automatic failback suspended${auto.reason ? ": " + auto.reason : ""}`)
    : "failback: manual";
  return h("div", { class: "service", "data-service": svc.service },
    h("h2", {}, svc.service, " ",
      h("span", { class: `badge ${svc.degraded ? "bad" : "ok"}`, "data-degraded": String(svc.degraded) },
        svc.degraded ? `DEGRADED: active at ${svc.active_site}` : `home at ${svc.active_site}`),
      " ", h("span", { class: "badge" }, autoText),
      svc.current_run ? [" ", h("span", { class: `badge ${statusClass(svc.current_run.status)}` },
        `run ${svc.current_run.id} ${svc.current_run.kind}: ${svc.current_run.status}`)] : null,
      svc.needs_resync.length ? [" ", h("span", { class: "badge warn" }, `needs resync: ${svc.needs_resync.join(", ")}`)] : null),
    actionsOf(svc),
    h("div", { class: "sites" }, svc.sites.map((site) => renderSite(svc, site))));
}

// The service's action buttons: kept between status updates (the card is redrawn every
// second) so that a click never lands on a button being replaced.
const actionBars = new Map();
function actionsOf(svc) {
  const auto = svc.auto_failback || {};
  const key = JSON.stringify([svc.degraded, auto.enabled, auto.policy]);
  const kept = actionBars.get(svc.service);
  if (kept && kept.key === key) return kept.el;
  const suspended = auto.enabled === false;
  const el = h("div", { class: "actions", "data-actions": svc.service },
    h("button", { "data-action": "failover", onclick: () => openAction({ type: "failover", service: svc.service }) },
      "Fail over…"),
    h("button", { "data-action": "failback", class: svc.degraded ? "primary" : null,
      onclick: () => openAction({ type: "failback", service: svc.service }) }, "Fail back…"),
    h("button", { "data-action": suspended ? "auto-enable" : "auto-disable",
      onclick: () => openAction({ type: suspended ? "auto-enable" : "auto-disable", service: svc.service, policy: auto.policy }) },
      suspended ? "Allow automatic failback…" : "Suspend automatic failback…"));
  actionBars.set(svc.service, { key, el });
  return el;
}

function renderSite(svc, site) {
  const comps = svc.components.filter((c) => c.site === site);
  const marks = [];
  if (site === svc.primary_site) marks.push("primary site");
  if (site === svc.active_site) marks.push("active");
  return h("div", { class: `site${site === svc.active_site ? " active" : ""}`, "data-site": site },
    h("h3", {}, site, " ", marks.map((m) => h("span", { class: "badge" }, m))),
    h("table", {},
      h("thead", {}, h("tr", {}, ["component", "role", "health", "lag", "traffic"].map((t) => h("th", {}, t)))),
      h("tbody", {}, comps.map((c) => {
        const t = (svc.traffic[c.component] || {})[site];
        const lag = c.lag_bytes !== null && c.lag_bytes !== undefined
          ? `${fmtBytes(c.lag_bytes)}${c.lag_seconds !== null && c.lag_seconds !== undefined ? " / " + fmtDuration(c.lag_seconds) : ""}`
          : "–";
        const traffic = t ? `weight ${t.effective_weight} (${Math.round(t.share * 100)}%)` : "–";
        return h("tr", { "data-component": c.component, title: c.detail },
          h("td", {}, c.component, h("span", { class: "muted" }, ` ${c.driver}`)),
          h("td", {}, h("span", { class: `badge ${statusClass(c.role)}`, "data-role": c.role }, c.role)),
          h("td", {}, h("span", { class: `dot ${c.healthy ? "up" : "down"}` }), c.healthy ? "up" : "down"),
          h("td", { "data-lag": c.lag_bytes ?? "" }, lag),
          h("td", { "data-weight": t ? t.effective_weight : "" }, traffic));
      }))));
}

// ------------------------------------------------------------------ current run

function renderCurrent() {
  const root = document.getElementById("current");
  const doc = state.focus;
  if (!doc) { root.replaceChildren(h("h2", {}, "Current run"), h("p", { class: "muted" }, "no run yet")); return; }
  const run = doc.run, steps = doc.report.steps;
  const live = !["succeeded", "rolled-back", "aborted", "failed"].includes(run.status);
  const pct = run.steps_total ? Math.round((100 * run.steps_done) / run.steps_total) : 0;
  const now = Date.now() / 1000;
  root.replaceChildren(
    h("h2", {}, live ? "Current run" : "Last run"),
    h("div", { class: "run", "data-run-id": run.id },
      h("div", {},
        h("strong", {}, `run ${run.id}: ${run.kind} of ${run.service} ${run.from_site} → ${run.to_site} `),
        h("span", { class: `badge ${statusClass(run.status)}`, id: "run-status", "data-run-status": run.status }, run.status),
        h("span", { class: "muted" }, `  ${run.steps_done}/${run.steps_total} steps, ${fmtDuration(live ? now - run.created_at : run.duration_s)}`)),
      h("div", { class: "progress", title: `${pct}%` }, h("div", { style: `width:${pct}%` })),
      doc.report.diverged ? renderDiverged(run, doc.report.diverged) : null,
      doc.waiting_gate ? renderGate(run, doc.waiting_gate) : null,
      live ? h("div", { class: "run-actions" },
        h("button", { id: "abort-button", class: "danger", "data-run-id": run.id,
          onclick: () => openAction({ type: "abort", runId: run.id }) }, "Abort (undo)…")) : null,
      run.error ? h("p", { class: "error", id: "run-error" }, run.error, run.hint ? ` — ${run.hint}` : "") : null,
      h("div", { id: "timeline", class: "timeline-box" }, drawTimeline(doc, state.timeline, now)),
      h("ol", { class: "timeline" }, steps.map((s) => {
        const dur = s.duration_s ?? (s.started_at && !s.finished_at && live ? now - s.started_at : null);
        return h("li", { "data-step": s.id, "data-status": s.status },
          h("span", { class: `st-${s.status}` }, symbol(s.status)),
          h("span", {}, s.title, s.kind === "gate" ? h("span", { class: "muted" }, " (gate)") : null,
            s.point_of_no_return ? h("span", { class: "muted" }, " (point of no return)") : null,
            s.error ? h("div", { class: "error" }, s.error) : null),
          h("span", { class: `st-${s.status}` }, s.status),
          h("span", { class: "muted" }, fmtDuration(dur)));
      }))));
}

function symbol(s) {
  return { done: "✓", skipped: "✓", failed: "✗", waiting: "‖", applying: "…", verifying: "…" }[s] || "·";
}

// what the returning site committed after the fork: counts for everyone, the rows (clients'
// data) only with the API token
function renderDiverged(run, d) {
  const text = !d.captured
    ? `not captured${d.loss_accepted ? " (resynced with approval)" : ""}: ${d.reason}`
    : `${d.transactions} transaction(s), ${d.rows} row(s) committed on ${d.site} after the fork`
      + ((d.unkeyed || []).length ? `, ${d.unkeyed.length} change(s) of tables without a key not readable` : "");
  return h("p", { class: d.captured && !d.rows ? "muted" : "error", id: "diverged", "data-rows": d.rows ?? 0 },
    h("strong", {}, "Diverged: "), text,
    d.rows ? h("span", {}, " — ",
      h("a", { href: "#", id: "diverged-sql", onclick: (e) => { e.preventDefault(); openDiverged(run.id); } },
        "SQL for review"),
      h("span", { class: "muted" }, ` (or: failback diverged ${run.id})`)) : null);
}

async function openDiverged(runId) {
  let token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    token = (window.prompt("API token (the rows are clients' data)") || "").trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
  }
  const r = await fetch(`/api/v1/runs/${runId}/diverged?format=sql`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  if (r.status === 401 || r.status === 403) { sessionStorage.removeItem(TOKEN_KEY); }
  if (!r.ok) { window.alert((await r.json()).error || `HTTP ${r.status}`); return; }
  const url = URL.createObjectURL(new Blob([await r.text()], { type: "text/plain" }));
  window.open(url, "_blank");
}

function renderGate(run, gate) {
  return h("div", { class: "gate" },
    h("p", {}, h("strong", {}, "Waiting for approval: "), gate.question || gate.title),
    h("button", { class: "primary", id: "approve-button", "data-run-id": run.id,
      onclick: () => openAction({ type: "approve", runId: run.id, gate }) }, "Approve"));
}

// ------------------------------------------------------------------ history

function renderHistory() {
  renderRunsChart();
  const body = document.querySelector("#history tbody");
  body.replaceChildren(...state.runs.map((r) => {
    const m = r.measurements || {};
    return h("tr", { "data-run-id": r.id, onclick: () => showRun(r.id) },
      h("td", {}, r.id), h("td", {}, r.service), h("td", {}, r.kind),
      h("td", {}, `${r.from_site} → ${r.to_site}`),
      h("td", {}, h("span", { class: `badge ${statusClass(r.status)} status` }, r.status)),
      h("td", {}, fmtTime(r.created_at)), h("td", {}, fmtDuration(r.duration_s)),
      h("td", { "data-rto": m.rto_s ?? "" }, fmtDuration(m.rto_s)),
      h("td", { "data-write-unavailability": m.write_unavailability_s ?? "" }, fmtDuration(m.write_unavailability_s)),
      h("td", {}, m.possible_loss_bytes === null || m.possible_loss_bytes === undefined ? (r.kind === "failback" && r.status === "succeeded" ? "0 at risk (exact final position replayed)" : "–") : fmtBytes(m.possible_loss_bytes)));
  }));
}

// ------------------------------------------------------------------ actions

// Every action goes through one confirmation: what it does, the plan it would follow
// (asked from the server, which plans without starting anything), the token when the
// tab has none yet, and the API's own words when it refuses.
const ACTIONS = {
  failover: {
    title: (a) => `Fail over ${a.service}?`,
    ok: "Start failover",
    text: (a) => `Moves ${a.service} from its active site to the other one. The plan below is what the server would do now.`,
    options: [
      { name: "planned", label: "planned: zero-loss move of a healthy active site (switchover)", checked: (a) => !serviceOf(a.service)?.degraded },
      { name: "force", label: "force: fail over although the active site looks healthy" },
    ],
    plan: (a, o) => `/api/v1/services/${enc(a.service)}/plan?kind=failover&planned=${!!o.planned}&force=${!!o.force}`,
    send: (a, o) => [`/api/v1/services/${enc(a.service)}/failover`, { planned: !!o.planned, force: !!o.force }],
  },
  failback: {
    title: (a) => `Fail back ${a.service}?`,
    ok: "Start failback",
    text: (a) => `Brings ${a.service} home to ${serviceOf(a.service)?.primary_site ?? "its primary site"}: resync, validate, switch with no lost write, re-protect. The plan below is what the server would do now.`,
    options: [{ name: "approval", label: "stop for my approval before the switchover" }],
    plan: (a, o) => `/api/v1/services/${enc(a.service)}/plan?kind=failback${o.approval ? "&approval=true" : ""}`,
    send: (a, o) => [`/api/v1/services/${enc(a.service)}/failback`, { approval: o.approval ? true : null }],
  },
  approve: {
    title: (a) => `Approve run ${a.runId}?`,
    ok: "Approve",
    text: (a) => { const r = runOf(a.runId); return `${a.gate.question || a.gate.title} — the ${r?.kind ?? "run"} of ${r?.service ?? ""} continues to ${r?.to_site ?? ""}.`; },
    steps: (a) => remainingSteps(a.runId),
    stepsTitle: "what follows once approved",
    send: (a) => [`/api/v1/runs/${a.runId}/approve`, { by: "dashboard" }],
  },
  abort: {
    title: (a) => `Abort run ${a.runId}?`,
    ok: "Abort and undo",
    danger: true,
    text: (a) => { const r = runOf(a.runId); return `Stops the ${r?.kind ?? "run"} of ${r?.service ?? ""} and undoes what it applied, newest first, back to a safe state. Past the point of no return the server refuses (it says so below).`; },
    steps: (a) => undoSteps(a.runId),
    stepsTitle: "what would be undone, in this order",
    send: (a) => [`/api/v1/runs/${a.runId}/abort`, { force: false }],
  },
  "auto-disable": {
    title: (a) => `Suspend automatic failback of ${a.service}?`,
    ok: "Suspend",
    reason: true,
    text: (a) => `The monitor will not start a failback of ${a.service} by itself until it is allowed again${a.policy === "automatic" ? "" : " (its policy is manual anyway: the switch is recorded for when it becomes automatic)"}. No run starts or stops.`,
    send: (a, o) => [`/api/v1/services/${enc(a.service)}/auto-failback/disable`, { reason: o.reason || "", by: "dashboard" }],
  },
  "auto-enable": {
    title: (a) => `Allow automatic failback of ${a.service}?`,
    ok: "Allow",
    reason: true,
    text: (a) => `The monitor may start a failback of ${a.service} by itself when its policy says automatic${a.policy === "automatic" ? "" : " (it is manual now: nothing changes until the topology says automatic)"}. No run starts now.`,
    send: (a, o) => [`/api/v1/services/${enc(a.service)}/auto-failback/enable`, { reason: o.reason || "", by: "dashboard" }],
  },
};

function enc(s) { return encodeURIComponent(s); }
function serviceOf(name) { return (state.status?.services || []).find((s) => s.service === name); }
function runOf(id) { return state.focus && state.focus.run.id === id ? state.focus.run : state.runs.find((r) => r.id === id); }
function remainingSteps(id) {
  if (!state.focus || state.focus.run.id !== id) return [];
  const kinds = Object.fromEntries(state.focus.plan.steps.map((p) => [p.id, p]));
  return state.focus.report.steps.filter((s) => !["done", "skipped"].includes(s.status))
    .map((s) => ({ ...kinds[s.id], title: s.title, kind: s.kind, point_of_no_return: s.point_of_no_return }));
}
function undoSteps(id) {
  if (!state.focus || state.focus.run.id !== id) return [];
  return state.focus.report.steps.filter((s) => ["done", "applying", "verifying", "waiting"].includes(s.status))
    .reverse().map((s) => ({ id: s.id, title: `undo: ${s.title}`, kind: s.kind, point_of_no_return: s.point_of_no_return }));
}

function optionValues() {
  const o = {};
  for (const el of document.querySelectorAll("#confirm-options input")) o[el.name] = el.checked;
  o.reason = document.getElementById("reason-input").value;
  return o;
}

function renderPlanSteps(steps, title) {
  return h("div", { class: "plan" },
    h("p", { class: "muted small" }, title),
    h("ol", { id: "plan-steps" }, steps.map((st) => h("li", { "data-plan-step": st.id, class: `plan-${st.kind}` },
      st.title,
      st.kind === "gate" ? h("span", { class: "badge warn" }, "gate") : null,
      st.point_of_no_return ? h("span", { class: "badge bad" }, "point of no return") : null,
      st.params && st.params.window_s ? h("span", { class: "muted" }, ` ${fmtDuration(st.params.window_s)}`) : null,
      st.why ? h("div", { class: "muted small" }, st.why) : null))));
}

async function loadPlan() {
  const a = state.action;
  const spec = ACTIONS[a.type];
  const box = document.getElementById("confirm-plan");
  const ok = document.getElementById("confirm-ok");
  if (spec.steps) {
    const steps = spec.steps(a);
    box.replaceChildren(steps.length ? renderPlanSteps(steps, spec.stepsTitle) : h("p", { class: "muted" }, "no step to show"));
    ok.disabled = false;
    return;
  }
  if (!spec.plan) { box.replaceChildren(); ok.disabled = false; return; }
  const seq = (a.planSeq = (a.planSeq || 0) + 1);
  ok.disabled = true;
  box.replaceChildren(h("p", { class: "muted", id: "plan-loading" }, "planning (observing the service, nothing is changed)…"));
  let r, body;
  try {
    r = await fetch(spec.plan(a, optionValues()), { headers: { Accept: "application/json" } });
    body = await r.json();
  } catch (e) {
    if (state.action === a && seq === a.planSeq) box.replaceChildren(h("p", { class: "error" }, String(e)));
    return;
  }
  if (state.action !== a || seq !== a.planSeq) return; // closed, or options changed since
  if (!r.ok) {
    box.replaceChildren(h("p", { class: "error", id: "plan-refused" }, apiWords(body, r.status)));
    return; // the server would refuse it: nothing to confirm
  }
  const plan = body.plan;
  box.replaceChildren(h("div", {},
    h("p", {}, h("strong", {}, `${plan.kind} ${plan.from_site} → ${plan.to_site}`), `, ${plan.steps.length} steps`),
    renderPlanSteps(plan.steps, "the plan"),
    (plan.notes || []).length ? h("ul", { class: "muted small" }, plan.notes.map((n) => h("li", {}, n))) : null));
  ok.disabled = false;
}

function apiWords(body, status) {
  if (body && typeof body.error === "string") return body.hint ? `${body.error} — ${body.hint}` : body.error;
  if (body && Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
  return `HTTP ${status}`;
}

function openAction(a) {
  state.action = a;
  const spec = ACTIONS[a.type];
  document.getElementById("confirm-title").textContent = spec.title(a);
  document.getElementById("confirm-text").textContent = spec.text(a);
  const opts = (spec.options || []).map((o) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: o.name, checked: o.checked ? o.checked(a) : false, onchange: loadPlan }), o.label));
  document.getElementById("confirm-options").replaceChildren(...opts);
  document.getElementById("reason-label").hidden = !spec.reason;
  document.getElementById("reason-input").value = "";
  const ok = document.getElementById("confirm-ok");
  ok.textContent = spec.ok;
  ok.className = spec.danger ? "danger" : "primary";
  document.getElementById("token-label").hidden = !!sessionStorage.getItem(TOKEN_KEY);
  document.getElementById("token-input").value = "";
  document.getElementById("confirm-error").textContent = "";
  delete document.getElementById("confirm-error").dataset.status;
  document.getElementById("confirm-plan").replaceChildren();
  document.getElementById("confirm").dataset.action = a.type;
  document.getElementById("confirm").showModal();
  loadPlan();
}

async function submitAction(event) {
  event.preventDefault();
  const a = state.action;
  if (!a) return;
  const spec = ACTIONS[a.type];
  const input = document.getElementById("token-input");
  if (input.value.trim()) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  const token = sessionStorage.getItem(TOKEN_KEY);
  const err = document.getElementById("confirm-error");
  const ok = document.getElementById("confirm-ok");
  const [path, body] = spec.send(a, optionValues());
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`; // without one, the server says what it needs
  err.textContent = "";
  ok.disabled = true;
  const label = ok.textContent;
  ok.textContent = a.type === "abort" ? "undoing…" : "sending…";
  let r, answer;
  try {
    r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
    answer = await r.json().catch(() => null);
  } catch (e) {
    err.textContent = String(e);
    return;
  } finally {
    ok.disabled = false;
    ok.textContent = label;
  }
  if (state.action !== a) return;
  if (r.status === 401 || r.status === 403) {
    sessionStorage.removeItem(TOKEN_KEY);
    document.getElementById("token-label").hidden = false;
  }
  showTokenState();
  if (!r.ok) { err.textContent = apiWords(answer, r.status); err.dataset.status = r.status; return; }
  state.action = null;
  document.getElementById("confirm").close();
  if (answer && answer.run_id) await showRun(answer.run_id);
  refreshRuns();
}

function showTokenState() {
  document.getElementById("forget-token").hidden = !sessionStorage.getItem(TOKEN_KEY);
}

// ------------------------------------------------------------------ charts

async function refreshHistories() {
  const services = (state.status?.services || []).map((s) => s.service);
  const now = Date.now() / 1000, since = now - HISTORY_WINDOW_S;
  for (const name of services) {
    try { state.histories[name] = await getJSON(`/api/v1/services/${enc(name)}/history?since=${Math.floor(since)}`); }
    catch (e) { console.error(e); }
  }
  renderHistories();
}

function renderHistories() {
  const now = Date.now() / 1000;
  const docs = Object.values(state.histories);
  // from the oldest sample or run mark (at most the window), so a young history fills the width
  const starts = docs.flatMap((d) => [...d.samples.map((s) => s.at), ...d.runs.map((r) => r.created_at)]);
  const t0 = Math.max(now - HISTORY_WINDOW_S, Math.min(now - 60, ...starts));
  document.getElementById("charts-range").textContent =
    `(${fmtTime(t0)} – ${fmtTime(now)}; worst of every ${docs[0]?.bucket_s ?? 10} s)`;
  document.getElementById("history-charts").replaceChildren(...docs.map((d) => drawHistory(d, t0, now)));
}

function renderRunsChart() {
  document.getElementById("runs-chart").replaceChildren(drawRunsChart(state.runs));
}

// ------------------------------------------------------------------ data flow

async function showRun(id) {
  state.focus = await getJSON(`/api/v1/runs/${id}`);
  renderCurrent();
  refreshTimeline(id);
}

// The focused run's timeline from the server (waits, approvals, undos, measured write
// windows). Fetched again when the run changes; one request at a time, the last wins.
let timelineWanted = null, timelineBusy = false;
async function refreshTimeline(id) {
  timelineWanted = id;
  if (timelineBusy) return;
  timelineBusy = true;
  try {
    while (timelineWanted !== null) {
      const want = timelineWanted;
      timelineWanted = null;
      try {
        const doc = await getJSON(`/api/v1/runs/${want}/timeline`);
        if (state.focus && state.focus.run.id === doc.run_id) {
          state.timeline = doc;
          const box = document.getElementById("timeline");
          if (box) box.replaceChildren(drawTimeline(state.focus, state.timeline, Date.now() / 1000));
        }
      } catch (e) { console.error(e); }
    }
  } finally { timelineBusy = false; }
}

function currentRunId() {
  const current = (state.status?.services || []).map((s) => s.current_run).find(Boolean);
  if (current) return current.id;
  return state.runs.length ? state.runs[0].id : null;
}

async function refreshRuns() {
  state.runs = (await getJSON("/api/v1/runs?limit=20")).runs;
  renderHistory();
  const id = currentRunId();
  if (id !== null && (!state.focus || state.focus.run.id !== id || state.focus.run.status !== state.runs.find((r) => r.id === id)?.status)) {
    await showRun(id);
  } else if (id === null) {
    renderCurrent();
  }
}

async function refreshStatus() {
  state.status = await getJSON("/api/v1/status");
  renderServices();
}

// The control plane's leader (only when the topology has one): read from etcd by the
// API, so it shows who acts now, and says so plainly when nobody does.
async function refreshCluster() {
  const badge = document.getElementById("leader");
  let doc;
  try { doc = await getJSON("/api/v1/cluster"); } catch (e) { badge.textContent = "control plane: ?"; return; }
  if (!doc.configured) { badge.hidden = true; return false; }
  badge.hidden = false;
  if (doc.error) {
    badge.textContent = `control plane: ${doc.error}`; badge.className = "badge bad";
  } else if (!doc.leader) {
    badge.textContent = "no leader: no monitor acts"; badge.className = "badge bad";
  } else {
    const left = doc.leader.lease_ttl_left;
    badge.textContent = `leader ${doc.leader.node}${left >= 0 ? ` (lease ${left} s)` : ""}`;
    badge.className = "badge ok";
  }
  badge.dataset.leader = doc.leader ? doc.leader.node : "";
  return true;
}

function onRunEvent(doc) {
  const i = state.runs.findIndex((r) => r.id === doc.run.id);
  if (i >= 0) state.runs[i] = doc.run; else { state.runs.unshift(doc.run); state.runs.sort((a, b) => b.id - a.id); }
  renderHistory();
  if (!state.focus || doc.run.id >= state.focus.run.id) {
    state.focus = doc;
    renderCurrent();
    refreshTimeline(doc.run.id);
    if (["succeeded", "rolled-back", "aborted", "failed"].includes(doc.run.status)) refreshHistories();
  }
}

function connect() {
  const badge = document.getElementById("connection");
  const es = new EventSource("/api/v1/stream");
  es.addEventListener("open", () => { badge.textContent = "live"; badge.className = "badge ok"; });
  es.addEventListener("error", () => { badge.textContent = "reconnecting…"; badge.className = "badge warn"; });
  es.addEventListener("status", (e) => { state.status = JSON.parse(e.data); renderServices(); });
  es.addEventListener("run", (e) => onRunEvent(JSON.parse(e.data)));
}

document.getElementById("confirm-form").addEventListener("submit", submitAction);
document.getElementById("confirm-cancel").addEventListener("click", () => {
  state.action = null; document.getElementById("confirm").close();
});
document.getElementById("confirm").addEventListener("close", () => { state.action = null; });
document.getElementById("forget-token").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY); showTokenState();
});
// a live run's bars grow with the clock between the stream's updates
setInterval(() => {
  const run = state.focus?.run;
  if (run && !["succeeded", "rolled-back", "aborted", "failed"].includes(run.status)) {
    const box = document.getElementById("timeline");
    if (box) box.replaceChildren(drawTimeline(state.focus, state.timeline, Date.now() / 1000));
  }
}, 1000);

(async () => {
  try { await refreshStatus(); } catch (e) { document.getElementById("services").textContent = String(e); }
  try { await refreshRuns(); } catch (e) { console.error(e); }
  showTokenState();
  connect();
  refreshHistories();
  setInterval(refreshHistories, 10000);
  if (await refreshCluster()) setInterval(refreshCluster, 2000);
})();

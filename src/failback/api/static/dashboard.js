// failback dashboard: plain JavaScript, no build step. Reads /api/v1, listens to
// /api/v1/stream (server-sent events) and asks for the token only to approve a gate.
// Every value is inserted as text (never as HTML), so nothing observed can inject markup.
"use strict";

const TOKEN_KEY = "failback-api-token";
const state = { status: null, runs: [], focus: null, approving: null };

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
    h("div", { class: "sites" }, svc.sites.map((site) => renderSite(svc, site))));
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
      run.error ? h("p", { class: "error" }, run.error, run.hint ? ` — ${run.hint}` : "") : null,
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
      onclick: () => openApprove(run, gate) }, "Approve"));
}

// ------------------------------------------------------------------ history

function renderHistory() {
  const body = document.querySelector("#history tbody");
  body.replaceChildren(...state.runs.map((r) => {
    const m = r.measurements || {};
    return h("tr", { "data-run-id": r.id, onclick: () => focusRun(r.id) },
      h("td", {}, r.id), h("td", {}, r.service), h("td", {}, r.kind),
      h("td", {}, `${r.from_site} → ${r.to_site}`),
      h("td", {}, h("span", { class: `badge ${statusClass(r.status)} status` }, r.status)),
      h("td", {}, fmtTime(r.created_at)), h("td", {}, fmtDuration(r.duration_s)),
      h("td", { "data-rto": m.rto_s ?? "" }, fmtDuration(m.rto_s)),
      h("td", { "data-write-unavailability": m.write_unavailability_s ?? "" }, fmtDuration(m.write_unavailability_s)),
      h("td", {}, m.possible_loss_bytes === null || m.possible_loss_bytes === undefined ? (r.kind === "failback" && r.status === "succeeded" ? "0 at risk (exact final position replayed)" : "–") : fmtBytes(m.possible_loss_bytes)));
  }));
}

// ------------------------------------------------------------------ approve

function openApprove(run, gate) {
  state.approving = { runId: run.id, gate };
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = `Approve run ${run.id}?`;
  document.getElementById("confirm-text").textContent =
    `${gate.question || gate.title} — the ${run.kind} of ${run.service} continues to ${run.to_site}.`;
  const hasToken = !!sessionStorage.getItem(TOKEN_KEY);
  document.getElementById("token-label").hidden = hasToken;
  document.getElementById("token-input").value = "";
  document.getElementById("confirm-error").textContent = "";
  dlg.showModal();
}

async function submitApprove(event) {
  event.preventDefault();
  const a = state.approving;
  if (!a) return;
  const input = document.getElementById("token-input");
  if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  const token = sessionStorage.getItem(TOKEN_KEY);
  const err = document.getElementById("confirm-error");
  if (!token) { err.textContent = "the API token is needed"; return; }
  const r = await fetch(`/api/v1/runs/${a.runId}/approve`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ by: "dashboard" }),
  });
  if (r.status === 401 || r.status === 403) {
    sessionStorage.removeItem(TOKEN_KEY);
    document.getElementById("token-label").hidden = false;
    err.textContent = (await r.json()).error;
    return;
  }
  if (!r.ok) { err.textContent = (await r.json()).error || `HTTP ${r.status}`; return; }
  state.approving = null;
  document.getElementById("confirm").close();
  refreshRuns();
}

// ------------------------------------------------------------------ data flow

async function focusRun(id) {
  state.focus = await getJSON(`/api/v1/runs/${id}`);
  renderCurrent();
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
    await focusRun(id);
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
  if (!state.focus || doc.run.id >= state.focus.run.id) { state.focus = doc; renderCurrent(); }
}

function connect() {
  const badge = document.getElementById("connection");
  const es = new EventSource("/api/v1/stream");
  es.addEventListener("open", () => { badge.textContent = "live"; badge.className = "badge ok"; });
  es.addEventListener("error", () => { badge.textContent = "reconnecting…"; badge.className = "badge warn"; });
  es.addEventListener("status", (e) => { state.status = JSON.parse(e.data); renderServices(); });
  es.addEventListener("run", (e) => onRunEvent(JSON.parse(e.data)));
}

document.getElementById("confirm-form").addEventListener("submit", submitApprove);
document.getElementById("confirm-cancel").addEventListener("click", () => {
  state.approving = null; document.getElementById("confirm").close();
});

(async () => {
  try { await refreshStatus(); } catch (e) { document.getElementById("services").textContent = String(e); }
  try { await refreshRuns(); } catch (e) { console.error(e); }
  connect();
  if (await refreshCluster()) setInterval(refreshCluster, 2000);
})();

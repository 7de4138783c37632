// gpufleet dashboard: plain modern JS, no build step, no network beyond this api.
// Live updates come from GET /api/v1/stream (server-sent events read with fetch, so that a
// bearer token can be sent); the job page reads GET /api/v1/jobs/{id}.

import { makeWaste, wasteTenantOf } from "./waste.js";

const $ = (sel) => document.querySelector(sel);
const RAMP = [[48, 18, 59], [70, 98, 215], [26, 228, 182], [162, 252, 60], [251, 128, 34],
              [210, 49, 5]];  // turbo-like, 0 -> 100 %

function utilColour(util) {
  if (util === null || util === undefined) return "#2a2f36";
  const x = Math.max(0, Math.min(100, util)) / 100 * (RAMP.length - 1);
  const i = Math.min(Math.floor(x), RAMP.length - 2), f = x - i;
  const c = RAMP[i].map((v, k) => Math.round(v + (RAMP[i + 1][k] - v) * f));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") node.style.cssText = v;
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

const fmt = {
  pct: (v) => `${(v * 100).toFixed(1)} %`,
  num: (v, d = 0) => Number(v).toLocaleString(undefined, { maximumFractionDigits: d }),
  age: (s) => s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min`
    : `${(s / 3600).toFixed(1)} h`,
  time: (ts) => new Date(ts * 1000).toLocaleTimeString(),
  gpus: (j) => j.gpu_milli < 1000 ? `${j.gpu_milli / 1000}` : `${j.gpus}`,
};

function headers() {
  const token = localStorage.getItem("gpufleet-token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function getJSON(path) {
  const r = await fetch(path, { headers: headers() });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

// ---------------------------------------------------------------- fleet page

function renderTotals(s) {
  const cards = [
    ["nodes", `${s.nodes_online}/${s.nodes}`],
    ["GPUs", fmt.num(s.gpus)],
    ["allocated", fmt.pct(s.allocated_share)],
    ["busy (mean util)", fmt.pct(s.busy_share)],
    ["queue depth", fmt.num(s.queue_depth)],
    ["running jobs", fmt.num(s.running_jobs)],
    ["idle allocated GPUs", fmt.num(s.idle_allocated_gpus), s.idle_allocated_gpus > 0],
    ["idle allocated GPU-h", fmt.num(s.idle_allocated_gpu_hours, 2)],
    ["power", `${fmt.num(s.power_w / 1000, 1)} kW`],
    ["open alerts", fmt.num(s.open_alerts), s.open_alerts > 0],
    ["decisions/s", fmt.num(s.decisions_per_s, 1)],
  ];
  $("#totals").replaceChildren(...cards.map(([k, v, warn]) =>
    el("div", { class: warn ? "card warn" : "card", dataset: { metric: k } },
      el("div", { class: "v" }, v), el("div", { class: "k" }, k))));
  $("#cluster-name").textContent = `cluster ${s.cluster}`;
}

function gpuTitle(node, g) {
  const parts = [`${node.node} GPU ${g.index}`, g.model, `state ${g.state}`,
    g.util === undefined ? "no sample" : `util ${g.util} %`];
  if (g.temp_c !== undefined) parts.push(`${g.temp_c} °C`);
  if (g.power_w !== undefined) parts.push(`${Math.round(g.power_w)} W`);
  if (g.jobs && g.jobs.length) parts.push(`jobs: ${g.jobs.join(", ")}`);
  if (g.health !== "ok") parts.push(`health ${g.health}`);
  if (g.drain) parts.push(`drained (${g.drain}): ${g.drain_reason ?? ""}`);
  return parts.join(" · ");
}

function renderHeatmap(nodes) {
  let count = 0;
  const rows = nodes.map((n) => el("div", { class: "node-row", dataset: { node: n.node } },
    el("div", { class: n.online ? "node-name" : "node-name offline", title: n.node },
      `${n.node} ${n.model ? "· " + n.model : ""}`),
    el("div", { class: "cells" }, ...n.gpus.map((g) => {
      count += 1;
      const cell = el("div", {
        class: "gpu-cell", title: gpuTitle(n, g), style: `background:${utilColour(g.util)}`,
        dataset: { state: g.state, node: n.node, gpu: g.index, util: g.util ?? "",
          drain: g.drain ?? "" },
      }, g.drain ? "D" : g.util === undefined ? "–" : `${Math.round(g.util)}`);
      if (g.jobs && g.jobs.length === 1) cell.onclick = () => { location.hash = `#/job/${g.jobs[0]}`; };
      return cell;
    }))));
  $("#heatmap").replaceChildren(...rows);
  $("#heatmap-caption").textContent = `${nodes.length} nodes · ${count} GPUs`;
}

function jobLink(id) { return el("a", { href: `#/job/${encodeURIComponent(id)}` }, id); }

function renderRows(table, jobs, cells, empty) {
  const body = $(`${table} tbody`);
  if (!jobs.length) {
    body.replaceChildren(el("tr", {}, el("td", { class: "empty", colspan: 6 }, empty)));
    return;
  }
  body.replaceChildren(...jobs.map((j) => el("tr", { dataset: { job: j.job_id } },
    ...cells(j).map((c) => el("td", {}, c)))));
}

function renderJobs(queued, running) {
  const now = Date.now() / 1000;
  renderRows("#queue", queued, (j) => [jobLink(j.job_id), j.tenant, j.queue, fmt.gpus(j),
    `${j.priority}`, j.submitted ? fmt.age(now - j.submitted) : ""], "the queue is empty");
  renderRows("#running", running, (j) => [jobLink(j.job_id), j.tenant, j.node ?? "",
    fmt.gpus(j), j.state], "nothing is running");
  $("#queue-count").textContent = `${queued.length}`;
  $("#running-count").textContent = `${running.length}`;
}

function renderTenants(tenants) {
  if (!tenants.length) { $("#tenants").replaceChildren(el("p", { class: "muted" }, "no tenants yet")); return; }
  $("#tenants").replaceChildren(...tenants.flatMap((t) => {
    const share = t.fair_share ? Math.min(1, t.gpus_used / t.fair_share) : 0;
    const over = t.quota !== null && t.quota !== undefined && t.gpus_used > t.quota;
    return [
      el("div", { class: "tenant-line", dataset: { tenant: t.tenant } },
        el("a", { href: `#/waste/${encodeURIComponent(t.tenant)}`, title: "waste" }, `${t.tenant}`),
        el("span", { class: "muted" }, `${fmt.num(t.gpus_used, 1)} GPUs of fair ${fmt.num(t.fair_share, 1)}`
          + (t.quota != null ? ` · quota ${fmt.num(t.quota, 1)}` : "")
          + ` · ${t.running_jobs} running, ${t.queued_jobs} queued`)),
      el("div", { class: over ? "bar over" : "bar" }, el("span", { style: `width:${share * 100}%` })),
    ];
  }));
}

function renderAlerts(alerts) {
  $("#alert-count").textContent = `${alerts.length}`;
  if (!alerts.length) { $("#alerts").replaceChildren(el("li", { class: "muted" }, "no open alerts")); return; }
  $("#alerts").replaceChildren(...alerts.map((a) => el("li", { dataset: { alert: a.alert_id } },
    el("span", { class: `sev ${a.severity}` }, a.severity), `${a.kind} `,
    el("span", { class: "muted" }, [a.node, a.gpu !== undefined ? `GPU ${a.gpu}` : null, a.job_id]
      .filter((x) => x !== null && x !== undefined).join(" · ")), ` ${a.message}`)));
}

function renderFleet(f) {
  renderTotals(f.summary);
  renderHeatmap(f.nodes);
  renderJobs(f.queued, f.running);
  renderTenants(f.tenants);
  renderAlerts(f.alerts);
}

// ---------------------------------------------------------------- job page

function renderChart(points) {
  const svg = $("#job-chart");
  const w = Math.max(300, svg.clientWidth || 800), h = 240, pad = 32;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "xMinYMin meet");
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  };
  const parts = [];
  for (const u of [0, 25, 50, 75, 100]) {
    const y = h - pad - (h - 2 * pad) * u / 100;
    parts.push(make("line", { class: "grid", x1: pad, x2: w - 8, y1: y, y2: y }),
      make("text", { class: "axis", x: 2, y: y + 4 }, `${u}%`));
  }
  if (points.length) {
    const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 1);
    const xy = points.map(([t, u]) => [pad + (w - pad - 8) * (t - t0) / (t1 - t0),
      h - pad - (h - 2 * pad) * u / 100]);
    const line = xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
    parts.push(make("polygon", { class: "area", points: `${pad},${h - pad} ${line} ${xy[xy.length - 1][0]},${h - pad}` }),
      make("polyline", { class: "line", points: line }),
      make("text", { class: "axis", x: pad, y: h - 8 }, fmt.time(t0)),
      make("text", { class: "axis", x: w - 80, y: h - 8 }, fmt.time(t1)));
  } else {
    parts.push(make("text", { class: "axis", x: w / 2 - 80, y: h / 2 }, "no utilization samples yet"));
  }
  svg.replaceChildren(...parts);
}

async function showJob(id) {
  let d;
  try { d = await getJSON(`/api/v1/jobs/${encodeURIComponent(id)}`); } catch (e) {
    $("#job-title").textContent = `job ${id}: not found`;
    return;
  }
  const j = d.job;
  $("#job-title").textContent = `job ${j.job_id}`;
  const now = Date.now() / 1000;
  const facts = [["state", j.state], ["tenant", j.tenant], ["queue", j.queue], ["GPUs", fmt.gpus(j)],
    ["priority", j.priority], ["node", j.node ?? "–"], ["submitted", j.submitted ? fmt.time(j.submitted) : "–"]];
  if (j.reason) facts.push(["reason", j.reason]);  // only while it applies to the state
  if (j.last_seen) {  // heartbeats are folded in here, not listed as events
    facts.push(["last seen", `${fmt.time(j.last_seen)} (${fmt.age(Math.max(0, now - j.last_seen))} ago)`]);
  }
  $("#job-facts").replaceChildren(...facts.flatMap(([k, v]) =>
    [el("dt", {}, k), el("dd", { dataset: { fact: k } }, `${v}`)]));
  let points = d.utilization, source = "live samples";
  if (!points.length) {  // not seen live (e.g. the api restarted): ask the warehouse
    const from = Math.floor(j.submitted ?? j.updated - 86400);
    const to = Math.ceil(Math.max(j.updated, from + 60) + 60);
    try {
      const step = Math.max(60, Math.ceil((to - from) / 1000 / 60) * 60);  // up to 1000 points
      const h = await getJSON(`/api/v1/history/utilization?group_by=job&step=${step}&job_id=${
        encodeURIComponent(j.job_id)}&from=${from}&to=${to}`);
      points = h.points.map((p) => [p.ts, p.util_mean]);
      source = `warehouse, per ${step / 60} min`;
    } catch (e) { source = "no samples"; }
  }
  $("#job-util-mean").textContent = d.util_mean === null ? source : `mean ${d.util_mean} % · ${source}`;
  renderChart(points);
  const rows = (sel, items, cells) => $(`${sel} tbody`).replaceChildren(...items.map((x) =>
    el("tr", {}, ...cells(x).map((c) => el("td", {}, `${c ?? ""}`)))));
  rows("#job-events", d.events, (e) => [fmt.time(e.ts), e.state, e.node, e.gpus?.join(", "), e.reason]);
  rows("#job-placements", d.placements, (p) => [fmt.time(p.ts), p.node, p.gpus.join(", "),
    p.gpu_milli / 1000, p.member + 1]);
  await waste.showJobWaste(d);
}

const waste = makeWaste({ el, getJSON, fmt, $ });

// ---------------------------------------------------------------- live stream and routing

let currentJob = null;

async function stream() {
  const conn = $("#conn");
  for (;;) {
    try {
      const r = await fetch("/api/v1/stream", { headers: headers() });
      if (!r.ok || !r.body) throw new Error(`stream: ${r.status}`);
      conn.dataset.state = "live"; conn.textContent = "live";
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          handle(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
      }
    } catch (e) {
      conn.dataset.state = "error"; conn.textContent = "reconnecting";
    }
    await new Promise((ok) => setTimeout(ok, 2000));
  }
}

function handle(block) {
  let name = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) name = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (!data) return;
  const payload = JSON.parse(data);
  if (name === "fleet") renderFleet(payload);
  else if (name === "job" && currentJob === payload.job_id) showJob(currentJob);
}

function route() {
  const m = location.hash.match(/^#\/job\/(.+)$/);
  currentJob = m ? decodeURIComponent(m[1]) : null;
  const tenant = wasteTenantOf(location.hash);
  $("#fleet-page").hidden = currentJob !== null || tenant !== null;
  $("#job-page").hidden = currentJob === null;
  $("#waste-page").hidden = tenant === null;
  if (currentJob) showJob(currentJob);
  if (tenant !== null) waste.showTenantWaste(tenant);
}

$("#token").value = localStorage.getItem("gpufleet-token") ?? "";
$("#token").addEventListener("change", (e) => {
  localStorage.setItem("gpufleet-token", e.target.value.trim());
  location.reload();
});
window.addEventListener("hashchange", route);
route();
stream();
setInterval(() => { if (currentJob) showJob(currentJob); }, 5000);

// gpufleet dashboard: waste. A tenant's page (#/waste/<tenant>): GPUs allocated against busy
// over time, totals, what was reclaimed, the jobs that asked for more than they used
// (GET /api/v1/tenants/{t}/waste). A job's panel: measured usage per GPU, its right-sizing and
// reclaims (from GET /api/v1/jobs/{id}), allocated against busy over its life (the history).
// The page helpers (el, getJSON, fmt, $) come from app.js, so that they live in one place.

const SVG = "http://www.w3.org/2000/svg";
const GIB = 2 ** 30;

export function wasteTenantOf(hash) {
  const m = hash.match(/^#\/waste\/(.+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

export function makeWaste({ el, getJSON, fmt, $ }) {
  const svgEl = (tag, attrs, text) => {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  };

  // points: [{ts, allocated, busy}] in GPUs (GPU-hours per step over the step's hours)
  function chart(svg, points, empty) {
    const w = Math.max(300, svg.clientWidth || 800), h = 200, pad = 36;
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("preserveAspectRatio", "xMinYMin meet");
    const top = Math.max(1, ...points.map((p) => p.allocated));
    const parts = [];
    for (const f of [0, 0.5, 1]) {
      const y = h - pad - (h - 2 * pad) * f;
      parts.push(svgEl("line", { class: "grid", x1: pad, x2: w - 8, y1: y, y2: y }),
        svgEl("text", { class: "axis", x: 2, y: y + 4 }, `${fmt.num(top * f, 1)}`));
    }
    if (!points.length) {
      parts.push(svgEl("text", { class: "axis", x: w / 2 - 80, y: h / 2 }, empty));
      svg.replaceChildren(...parts);
      return;
    }
    const t0 = points[0].ts, t1 = Math.max(points[points.length - 1].ts, t0 + 1);
    const x = (t) => pad + (w - pad - 8) * (t - t0) / (t1 - t0);
    const y = (v) => h - pad - (h - 2 * pad) * v / top;
    const line = (key) => points.map((p) => `${x(p.ts).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    const base = `${x(t1).toFixed(1)},${h - pad} ${x(t0).toFixed(1)},${h - pad}`;
    parts.push(
      svgEl("polygon", { class: "allocated", points: `${line("allocated")} ${base}` }),
      svgEl("polygon", { class: "busy", points: `${line("busy")} ${base}` }),
      svgEl("text", { class: "axis", x: pad, y: h - 8 }, fmt.time(t0)),
      svgEl("text", { class: "axis", x: w - 80, y: h - 8 }, fmt.time(t1)));
    svg.replaceChildren(...parts);
    svg.dataset.points = `${points.length}`;
  }

  const asGpus = (series, step) => series.map((p) => ({
    ts: p.ts, allocated: p.allocated_gpu_hours * 3600 / step, busy: p.busy_gpu_hours * 3600 / step,
  }));

  function rows(sel, items, cells, empty) {
    const body = $(`${sel} tbody`);
    if (!items.length) {
      body.replaceChildren(el("tr", {}, el("td", { class: "empty", colspan: 8 }, empty)));
      return;
    }
    body.replaceChildren(...items.map((x) => el("tr", {}, ...cells(x).map((c) =>
      el("td", {}, c instanceof Node ? c : `${c ?? ""}`)))));
  }

  const jobLink = (id) => el("a", { href: `#/job/${encodeURIComponent(id)}` }, id);
  const when = (ts) => ts === null || ts === undefined ? "–" : fmt.time(ts);

  async function showTenantWaste(tenant) {
    $("#waste-title").textContent = `waste · tenant ${tenant}`;
    let d;
    try {
      d = await getJSON(`/api/v1/tenants/${encodeURIComponent(tenant)}/waste?step=3600`);
    } catch (e) {
      $("#waste-totals").replaceChildren(el("p", { class: "muted" }, `no waste figures: ${e.message}`));
      chart($("#waste-chart"), [], "the warehouse did not answer");
      return;
    }
    const t = d.totals;
    const cards = [
      ["allocated GPU-h", fmt.num(t.allocated_gpu_hours, 1)],
      ["busy GPU-h", fmt.num(t.busy_gpu_hours, 1)],
      ["busy share", t.busy_share === null ? "–" : fmt.pct(t.busy_share)],
      ["idle GPU-h", fmt.num(t.idle_gpu_hours, 1), t.idle_gpu_hours > 0],
      ["energy", `${fmt.num(t.energy_kwh, 1)} kWh`],
      ["jobs warned idle", fmt.num(t.warned_jobs)],
      ["jobs reclaimed", fmt.num(t.reclaimed_jobs)],
      ["idle GPU-h reclaimed", fmt.num(t.idle_gpu_hours_reclaimed, 1)],
      ["GPUs to give back", fmt.num(t.gpus_to_give_back), t.gpus_to_give_back > 0],
    ];
    $("#waste-totals").replaceChildren(...cards.map(([k, v, warn]) =>
      el("div", { class: warn ? "card warn" : "card", dataset: { metric: k } },
        el("div", { class: "v" }, v), el("div", { class: "k" }, k))));
    chart($("#waste-chart"), asGpus(d.series, d.step), "no GPU-hours in the last day");
    rows("#waste-reclaims", d.reclaims, (r) => [jobLink(r.job_id), when(r.warned_at),
      r.reclaimed_at ? `${when(r.reclaimed_at)} (${r.action})`
        : r.withdrawn_at ? `withdrawn ${when(r.withdrawn_at)}` : "warned", r.gpus,
      fmt.num(r.idle_gpu_hours_reclaimed, 2), r.reason], "nothing warned or reclaimed");
    rows("#waste-jobs", d.jobs, (j) => [jobLink(j.job_id), j.gpus_requested, j.gpus_busy,
      j.recommended_gpus, fmt.num(j.idle_gpu_hours, 2), `${fmt.num(j.util_p95, 0)} %`,
      j.recommendation], "no right-sizing reports");
  }

  async function showJobWaste(d) {
    const j = d.job, r = d.rightsizing, u = d.usage;
    const facts = [];
    if (u) facts.push(["measured", `${fmt.num(u.gpu_hours, 2)} GPU-h, busy ${fmt.num(u.busy_gpu_hours, 2)}`
      + `, mean ${u.util_mean ?? "–"} %, peak memory ${fmt.num(u.mem_peak_bytes / GIB, 1)} GiB`
      + `, ${fmt.num(u.energy_kwh, 3)} kWh`]);
    else facts.push(["measured", d.usage_note ?? "–"]);
    if (r) facts.push(["right-sizing", `${r.recommendation}${r.final ? "" : " (so far)"}`]);
    $("#job-waste-facts").replaceChildren(...facts.flatMap(([k, v]) =>
      [el("dt", {}, k), el("dd", { dataset: { fact: k } }, v)]));
    rows("#job-gpus", u ? u.gpus : [], (g) => [`${g.node}/${g.gpu}`, `${g.util_mean} %`,
      `${g.util_max} %`, `${fmt.num(g.mem_peak_bytes / GIB, 1)} GiB`, fmt.num(g.gpu_hours, 2)],
    "no measured windows yet");
    rows("#job-reclaims", d.reclaims, (c) => [fmt.time(c.ts), c.kind, c.action, c.reason],
      "never warned idle");
    const from = Math.floor(j.submitted ?? j.updated - 86400);
    const to = Math.ceil(Math.max(j.updated, Date.now() / 1000, from + 60) + 60);
    const step = Math.max(60, Math.ceil((to - from) / 500 / 60) * 60);  // up to 500 points
    try {
      const h = await getJSON(`/api/v1/history/utilization?group_by=job&step=${step}&job_id=${
        encodeURIComponent(j.job_id)}&from=${from}&to=${to}`);
      chart($("#job-waste-chart"), asGpus(h.points.map((p) => ({
        ts: p.ts, allocated_gpu_hours: p.gpu_hours,
        busy_gpu_hours: Math.max(0, p.gpu_hours - p.idle_allocated_gpu_hours),
      })), step), "no GPU-hours in the warehouse yet");
    } catch (e) {
      chart($("#job-waste-chart"), [], "the warehouse did not answer");
    }
  }

  return { showTenantWaste, showJobWaste };
}

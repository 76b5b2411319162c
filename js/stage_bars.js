// Own time per pipeline stage: stacked bars per index (or per-stage totals), a stage filter
// and a statistics table. Anywidget front-end module; reads `stages` and `store_state`,
// and sets `selected_index` when a bar is clicked.

const PALETTE = ["#76b900", "#3b82f6", "#e8a317", "#a855f7", "#14b8a6", "#e5484d", "#64748b", "#f472b6"];

const STYLE = `
.psnc-stages { font: 12px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: inherit; }
.psnc-stages .psnc-banner { padding: 8px 10px; border-radius: 4px; background: rgba(138,143,152,.15); }
.psnc-stages .psnc-banner.invalid { background: rgba(229,72,77,.15); color: #c62828; }
.psnc-stages .psnc-filter { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 4px; }
.psnc-stages svg { width: 100%; display: block; }
.psnc-stages svg rect.psnc-bar:hover { opacity: .8; cursor: pointer; }
.psnc-stages table { border-collapse: collapse; margin-top: 6px; font-variant-numeric: tabular-nums; }
.psnc-stages th, .psnc-stages td { padding: 2px 10px; text-align: right; white-space: nowrap; border-bottom: 1px solid rgba(138,143,152,.25); }
.psnc-stages th:first-child, .psnc-stages td:first-child { text-align: left; }
`;

const SVG = "http://www.w3.org/2000/svg";

function fmtSeconds(s) {
  if (s === null || s === undefined || !isFinite(s)) return "-";
  if (s >= 1) return `${s.toFixed(s >= 100 ? 0 : 2)} s`;
  if (s >= 1e-3) return `${(s * 1e3).toFixed(2)} ms`;
  return `${(s * 1e6).toFixed(1)} µs`;
}

function svgNode(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function render({ model, el: host }) {
  const style = document.createElement("style");
  style.textContent = STYLE;
  const root = document.createElement("div");
  root.className = "psnc-stages";
  host.append(style, root);
  const hidden = new Set();

  function draw() {
    const state = model.get("store_state") || {};
    const p = model.get("stages") || {};
    root.replaceChildren();
    if (state.state === "waiting" || state.state === "invalid") {
      const banner = document.createElement("div");
      banner.className = `psnc-banner ${state.state}`;
      banner.textContent = state.message || "Waiting for run";
      root.append(banner);
      return;
    }
    const names = p.stages || [];
    const stats = p.stats || [];
    if (!names.length || !p.n_indices) {
      root.append(document.createTextNode("No stage times recorded yet."));
      return;
    }

    const filter = document.createElement("div");
    filter.className = "psnc-filter";
    names.forEach((name, s) => {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = !hidden.has(s);
      box.addEventListener("change", () => {
        if (box.checked) hidden.delete(s); else hidden.add(s);
        draw();
      });
      const swatch = document.createElement("span");
      swatch.textContent = "■ ";
      swatch.style.color = PALETTE[s % PALETTE.length];
      label.append(box, swatch, document.createTextNode(name));
      filter.append(label);
    });
    root.append(filter);

    const shown = names.map((_, s) => s).filter((s) => !hidden.has(s));
    const width = Math.max(300, root.clientWidth || host.clientWidth || 600);
    const selected = model.get("selected_index");

    if (p.mode === "per_index") {
      const height = 180;
      const pad = { left: 60, bottom: 22, top: 6 };
      const rows = p.values || [];
      let top = 0;
      const sums = rows.map((row) => shown.reduce((acc, s) => acc + (row[s] || 0), 0));
      for (const v of sums) if (v > top) top = v;
      if (!(top > 0)) top = 1;
      const svg = svgNode("svg", { viewBox: `0 0 ${width} ${height}`, height, class: "psnc-stage-chart" });
      const plotW = width - pad.left - 8;
      const plotH = height - pad.top - pad.bottom;
      const slot = plotW / Math.max(rows.length, 1);
      const barW = Math.max(1, slot * 0.8);
      for (const t of [0, top / 2, top]) {
        const y = pad.top + plotH - (t / top) * plotH;
        svg.append(svgNode("line", { x1: pad.left, x2: width - 8, y1: y, y2: y, stroke: "rgba(138,143,152,.3)" }));
        const text = svgNode("text", { x: pad.left - 4, y: y + 4, "text-anchor": "end", "font-size": 10, fill: "currentColor" });
        text.textContent = fmtSeconds(t);
        svg.append(text);
      }
      rows.forEach((row, i) => {
        const index = p.indices[i];
        let y = pad.top + plotH;
        const x = pad.left + i * slot + (slot - barW) / 2;
        for (const s of shown) {
          const v = row[s] || 0;
          const h = (v / top) * plotH;
          y -= h;
          const rect = svgNode("rect", { x, y, width: barW, height: Math.max(h, 0), fill: PALETTE[s % PALETTE.length], class: "psnc-bar" });
          const title = svgNode("title", {});
          title.textContent = `index ${index} · ${names[s]}: ${fmtSeconds(v)}`;
          rect.append(title);
          rect.addEventListener("click", () => {
            model.set("selected_index", index);
            model.save_changes();
          });
          svg.append(rect);
        }
        if (index === selected) {
          svg.append(svgNode("rect", { x: x - 1, y: pad.top, width: barW + 2, height: plotH, fill: "none", stroke: "currentColor", "stroke-width": 1.5 }));
        }
        if (rows.length <= 20 || i % Math.ceil(rows.length / 20) === 0) {
          const text = svgNode("text", { x: x + barW / 2, y: height - 6, "text-anchor": "middle", "font-size": 10, fill: "currentColor" });
          text.textContent = String(index);
          svg.append(text);
        }
      });
      root.append(svg);
    } else {
      const rowH = 22;
      const height = shown.length * rowH + 8;
      const svg = svgNode("svg", { viewBox: `0 0 ${width} ${height}`, height, class: "psnc-stage-chart" });
      let top = 0;
      for (const s of shown) top = Math.max(top, (stats[s] && stats[s].total) || 0);
      if (!(top > 0)) top = 1;
      const left = 120;
      shown.forEach((s, k) => {
        const total = (stats[s] && stats[s].total) || 0;
        const y = 4 + k * rowH;
        const label = svgNode("text", { x: left - 6, y: y + 14, "text-anchor": "end", "font-size": 11, fill: "currentColor" });
        label.textContent = names[s];
        const w = ((width - left - 90) * total) / top;
        const rect = svgNode("rect", { x: left, y, width: Math.max(w, 1), height: rowH - 6, fill: PALETTE[s % PALETTE.length] });
        const value = svgNode("text", { x: left + w + 6, y: y + 14, "font-size": 11, fill: "currentColor" });
        value.textContent = `${fmtSeconds(total)} total`;
        svg.append(label, rect, value);
      });
      root.append(svg);
      const note = document.createElement("div");
      note.textContent = `Per-stage totals over ${p.n_indices} indices.`;
      root.append(note);
    }

    const table = document.createElement("table");
    table.className = "psnc-stage-stats";
    const head = document.createElement("tr");
    for (const h of ["stage", "count", "mean", "median", "p95", "max"]) {
      const th = document.createElement("th");
      th.textContent = h;
      head.append(th);
    }
    table.append(head);
    let approximate = false;
    for (const s of shown) {
      const st = stats[s];
      if (!st) continue;
      approximate ||= st.approximate;
      const row = document.createElement("tr");
      for (const v of [st.name, String(st.count), fmtSeconds(st.mean), fmtSeconds(st.median), fmtSeconds(st.p95), fmtSeconds(st.max)]) {
        const td = document.createElement("td");
        td.textContent = v;
        row.append(td);
      }
      table.append(row);
    }
    root.append(table);
    if (approximate) {
      const note = document.createElement("div");
      note.textContent = "Median and p95 are estimated from log-binned histograms (within 2.3 %).";
      root.append(note);
    }
  }

  model.on("change:stages", draw);
  model.on("change:store_state", draw);
  model.on("change:selected_index", draw);
  draw();
  return () => {
    model.off?.("change:stages", draw);
    model.off?.("change:store_state", draw);
    model.off?.("change:selected_index", draw);
  };
}

export default { render };

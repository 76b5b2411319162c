// Progress of a pipeline run: counts, a bar, elapsed time, rate, ETA and worker heartbeats.
// Anywidget front-end module; reads the `progress` and `store_state` traits.

const STATE_COLOURS = {
  busy: "#76b900",
  idle: "#8a8f98",
  stale: "#e8a317",
  dead: "#e5484d",
  stopped: "#5b6270",
};

const STYLE = `
.psnc-progress { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: inherit; padding: 6px 2px; }
.psnc-progress .psnc-banner { padding: 8px 10px; border-radius: 4px; background: rgba(138,143,152,.15); }
.psnc-progress .psnc-banner.invalid { background: rgba(229,72,77,.15); color: #c62828; }
.psnc-progress .psnc-counts { display: flex; gap: 18px; flex-wrap: wrap; margin-bottom: 6px; }
.psnc-progress .psnc-count b { font-size: 18px; display: block; font-variant-numeric: tabular-nums; }
.psnc-progress .psnc-bar { height: 10px; border-radius: 5px; background: rgba(138,143,152,.25); overflow: hidden; display: flex; }
.psnc-progress .psnc-bar > div { height: 100%; transition: width .3s; }
.psnc-progress .psnc-times { margin-top: 6px; opacity: .85; font-variant-numeric: tabular-nums; }
.psnc-progress .psnc-workers { margin-top: 6px; display: flex; gap: 6px; flex-wrap: wrap; }
.psnc-progress .psnc-chip { border-radius: 10px; padding: 1px 8px; color: #fff; font-size: 12px; }
.psnc-progress table { border-collapse: collapse; margin-top: 6px; font-size: 12px; }
.psnc-progress td, .psnc-progress th { padding: 1px 8px; text-align: left; }
`;

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds) || seconds < 0) return "-";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function fmtRate(rate) {
  if (!rate || !isFinite(rate)) return "-";
  if (rate >= 10) return `${rate.toFixed(0)} /s`;
  if (rate >= 1) return `${rate.toFixed(1)} /s`;
  return `${(rate * 60).toFixed(1)} /min`;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function count(label, value, cls) {
  const box = el("div", `psnc-count ${cls}`);
  const number = el("b", `${cls}-value`, value === null || value === undefined ? "-" : String(value));
  box.append(number, el("span", "", label));
  return box;
}

function draw(model, root) {
  const state = model.get("store_state") || {};
  const p = model.get("progress") || {};
  root.replaceChildren();
  if (state.state === "waiting" || state.state === "invalid") {
    root.append(el("div", `psnc-banner ${state.state}`, state.message || "Waiting for run"));
    return;
  }
  const counts = el("div", "psnc-counts");
  counts.append(
    count("completed", p.completed ?? 0, "psnc-progress-completed"),
    count("failed", p.failed ?? 0, "psnc-progress-failed"),
    count("remaining", p.remaining, "psnc-progress-remaining"),
    count("total", p.total, "psnc-progress-total"),
  );
  root.append(counts);

  const bar = el("div", "psnc-bar");
  const total = p.total || (p.completed || 0) + (p.failed || 0) || 1;
  const done = el("div");
  done.style.width = `${(100 * (p.completed || 0)) / total}%`;
  done.style.background = "#76b900";
  const failed = el("div");
  failed.style.width = `${(100 * (p.failed || 0)) / total}%`;
  failed.style.background = "#e5484d";
  bar.append(done, failed);
  root.append(bar);

  root.append(
    el(
      "div",
      "psnc-times",
      `state ${p.state || state.state || "-"} · elapsed ${fmtDuration(p.elapsed_s)} · rate ${fmtRate(p.rate_per_s)} · ETA ${fmtDuration(p.eta_s)}`,
    ),
  );

  const workers = p.workers || [];
  if (workers.length) {
    const chips = el("div", "psnc-workers");
    for (const [name, n] of Object.entries(p.worker_states || {})) {
      if (!n) continue;
      const chip = el("span", "psnc-chip", `${n} ${name}`);
      chip.style.background = STATE_COLOURS[name] || "#5b6270";
      chips.append(chip);
    }
    root.append(chips);
    const active = workers.filter((w) => w.state !== "stopped").slice(0, 16);
    if (active.length) {
      const table = el("table");
      const head = el("tr");
      for (const h of ["worker", "pid", "state", "index", "done", "heartbeat"]) head.append(el("th", "", h));
      table.append(head);
      for (const w of active) {
        const row = el("tr");
        const age = w.heartbeat_age_s === null || w.heartbeat_age_s === undefined ? "-" : `${w.heartbeat_age_s.toFixed(0)} s ago`;
        const cells = [w.worker_id, w.pid, w.state, w.current_index ?? "", w.n_done, age];
        for (const c of cells) row.append(el("td", "", String(c ?? "")));
        row.children[2].style.color = STATE_COLOURS[w.state] || "";
        table.append(row);
      }
      root.append(table);
    }
  }
}

function render({ model, el: host }) {
  const style = document.createElement("style");
  style.textContent = STYLE;
  const root = el("div", "psnc-progress");
  host.append(style, root);
  const redraw = () => draw(model, root);
  model.on("change:progress", redraw);
  model.on("change:store_state", redraw);
  redraw();
  return () => {
    model.off?.("change:progress", redraw);
    model.off?.("change:store_state", redraw);
  };
}

export default { render };

// The run monitor: a header (run name, database path, state) above the progress, timeline,
// stage bars and artifact preview components, all rendered on the same model.
// Anywidget front-end module. The four component modules are embedded below by
// physicsnemo_curator.monitor.assets.esm("monitor") and imported from blob: URLs, so
// nothing is fetched from the network and no import map is needed.

const SOURCES = /*__PSNC_COMPONENT_SOURCES__*/null;

const STATE_LABELS = { waiting: "waiting for run", invalid: "not a run store" };

const STATE_COLOURS = { live: "#76b900", finished: "#3b82f6", failed: "#e5484d", interrupted: "#e8a317", invalid: "#e5484d" };

const STYLE = `
.psnc-monitor { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: inherit; border: 1px solid rgba(138,143,152,.35); border-radius: 6px; padding: 8px 12px; }
.psnc-monitor .psnc-header { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; border-bottom: 1px solid rgba(138,143,152,.3); padding-bottom: 6px; margin-bottom: 4px; }
.psnc-monitor .psnc-name { font-weight: 600; font-size: 14px; }
.psnc-monitor .psnc-path { opacity: .7; font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
.psnc-monitor .psnc-state { border-radius: 10px; padding: 0 8px; color: #fff; background: #8a8f98; font-size: 12px; }
.psnc-monitor .psnc-grid { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 10px 16px; }
.psnc-monitor .psnc-cell h3 { margin: 6px 0 2px; font-size: 13px; }
.psnc-monitor .psnc-wide { grid-column: 1 / -1; }
.psnc-monitor .psnc-monitor-banner { padding: 8px 10px; margin-top: 6px; border-radius: 4px; background: rgba(138,143,152,.15); }
.psnc-monitor .psnc-monitor-banner.invalid { background: rgba(229,72,77,.15); color: #c62828; }
@media (max-width: 800px) { .psnc-monitor .psnc-grid { grid-template-columns: minmax(0, 1fr); } }
`;

const modules = {};

async function load(name) {
  if (!modules[name]) {
    if (!SOURCES || !SOURCES[name]) throw new Error(`component ${name} is not embedded in this module`);
    const url = URL.createObjectURL(new Blob([SOURCES[name]], { type: "text/javascript" }));
    try {
      modules[name] = (await import(url)).default;
    } finally {
      URL.revokeObjectURL(url);
    }
  }
  return modules[name];
}

function cell(title, wide) {
  const box = document.createElement("div");
  box.className = `psnc-cell${wide ? " psnc-wide" : ""}`;
  const h = document.createElement("h3");
  h.textContent = title;
  const body = document.createElement("div");
  box.append(h, body);
  return [box, body];
}

async function render({ model, el: host }) {
  const style = document.createElement("style");
  style.textContent = STYLE;
  const root = document.createElement("div");
  root.className = "psnc-monitor";
  const header = document.createElement("div");
  header.className = "psnc-header";
  const name = document.createElement("span");
  name.className = "psnc-name";
  const state = document.createElement("span");
  state.className = "psnc-state";
  const path = document.createElement("span");
  path.className = "psnc-path";
  header.append(name, state, path);
  const grid = document.createElement("div");
  grid.className = "psnc-grid";
  const banner = document.createElement("div");
  banner.className = "psnc-monitor-banner";
  root.append(header, banner, grid);
  host.append(style, root);

  const drawHeader = () => {
    const s = model.get("store_state") || {};
    name.textContent = s.name || "run";
    path.textContent = s.db_path || "";
    state.textContent = STATE_LABELS[s.state] || s.state || "-";
    // Without data, one message replaces the four empty views.
    const empty = s.state === "waiting" || s.state === "invalid";
    banner.className = `psnc-monitor-banner ${s.state || ""}`;
    banner.textContent = empty ? s.message || "Waiting for run" : "";
    banner.style.display = empty ? "" : "none";
    grid.style.display = empty ? "none" : "";
    state.style.background = STATE_COLOURS[s.state] || "#8a8f98";
  };
  model.on("change:store_state", drawHeader);
  drawHeader();

  const layout = [
    ["progress", "Progress", true],
    ["timeline", "Wall time per index", false],
    ["stage_bars", "Stages", false],
    ["artifact_preview", "Outputs and artifacts", true],
  ];
  const cleanups = [() => model.off?.("change:store_state", drawHeader)];
  for (const [component, title, wide] of layout) {
    const [box, body] = cell(title, wide);
    grid.append(box);
    try {
      const mod = await load(component);
      const cleanup = await mod.render({ model, el: body });
      if (typeof cleanup === "function") cleanups.push(cleanup);
    } catch (error) {
      body.textContent = `Could not draw ${component}: ${error}`;
    }
  }
  return () => {
    for (const cleanup of cleanups) cleanup();
  };
}

export default { render };

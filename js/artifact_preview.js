// Output files and filter artifacts of the selected index (or of the whole run), with Parquet
// previews and the filter's own view when it defines dashboard_panel(). Anywidget front-end
// module; reads `artifacts`, `selected_index` and `store_state`.

const STYLE = `
.psnc-artifacts { font: 12px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: inherit; }
.psnc-artifacts .psnc-banner { padding: 8px 10px; border-radius: 4px; background: rgba(138,143,152,.15); }
.psnc-artifacts .psnc-banner.invalid { background: rgba(229,72,77,.15); color: #c62828; }
.psnc-artifacts h4 { margin: 8px 0 4px; font-size: 13px; }
.psnc-artifacts ul { margin: 0; padding-left: 18px; }
.psnc-artifacts .missing { opacity: .6; text-decoration: line-through; }
.psnc-artifacts .psnc-preview { overflow-x: auto; max-height: 320px; overflow-y: auto; margin: 4px 0 8px; }
.psnc-artifacts table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
.psnc-artifacts th, .psnc-artifacts td { padding: 1px 8px; border-bottom: 1px solid rgba(138,143,152,.25); text-align: left; white-space: nowrap; }
.psnc-artifacts th small { display: block; opacity: .7; font-weight: normal; }
.psnc-artifacts .psnc-error { color: #c62828; }
.psnc-artifacts iframe { width: 100%; min-height: 320px; border: 1px solid rgba(138,143,152,.3); }
`;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function fileItem(file) {
  const li = el("li", file.exists === false ? "missing" : "", file.path);
  if (file.index !== null && file.index !== undefined) li.title = `index ${file.index}`;
  else li.title = "written at the worker's final flush";
  if (file.exists === false) li.title += " (file no longer exists)";
  return li;
}

function previewTable(preview) {
  const box = el("div", "psnc-preview");
  if (preview.error) {
    box.append(el("div", "psnc-error", preview.error));
    return box;
  }
  const table = el("table", "psnc-parquet");
  const head = el("tr");
  for (const c of preview.columns || []) {
    const th = el("th", "", c.name);
    th.append(el("small", "", c.type));
    head.append(th);
  }
  table.append(head);
  for (const row of preview.rows || []) {
    const tr = el("tr");
    for (const cell of row) tr.append(el("td", "", cell === null ? "null" : cell));
    table.append(tr);
  }
  box.append(table);
  const shown = (preview.rows || []).length;
  if (preview.num_rows !== null && preview.num_rows !== undefined) box.append(el("div", "", `${shown} of ${preview.num_rows} rows`));
  return box;
}

function render({ model, el: host }) {
  const style = document.createElement("style");
  style.textContent = STYLE;
  const root = el("div", "psnc-artifacts");
  host.append(style, root);

  function draw() {
    const state = model.get("store_state") || {};
    const p = model.get("artifacts") || {};
    root.replaceChildren();
    if (state.state === "waiting" || state.state === "invalid") {
      root.append(el("div", `psnc-banner ${state.state}`, state.message || "Waiting for run"));
      return;
    }
    const selected = model.get("selected_index");
    const title = el("div", "psnc-artifacts-title");
    title.append(el("b", "", selected === null || selected === undefined ? "All indices" : `Index ${selected}`));
    if (selected !== null && selected !== undefined) {
      const clear = el("button", "", "show all");
      clear.style.marginLeft = "10px";
      clear.addEventListener("click", () => {
        model.set("selected_index", null);
        model.save_changes();
      });
      title.append(clear);
    }
    root.append(title);
    if (p.error) root.append(el("div", "psnc-error", p.error));

    const outputs = p.outputs || [];
    root.append(el("h4", "", selected === null || selected === undefined ? "Most recent output files" : "Output files"));
    if (outputs.length) {
      const ul = el("ul");
      for (const f of outputs) ul.append(fileItem(f));
      root.append(ul);
    } else {
      root.append(el("div", "", "none"));
    }

    for (const group of p.groups || []) {
      root.append(el("h4", "", `Artifacts of ${group.stage}`));
      const ul = el("ul");
      for (const f of group.files) ul.append(fileItem(f));
      root.append(ul);
      for (const f of group.files) if (f.preview) root.append(el("div", "", f.path), previewTable(f.preview));
      if (group.panel_error) root.append(el("div", "psnc-error", group.panel_error));
      if (group.panel_html) {
        const frame = document.createElement("iframe");
        frame.className = "psnc-filter-panel";
        // The filter's own view runs scripts, but in its own origin: it cannot reach the notebook.
        frame.setAttribute("sandbox", "allow-scripts");
        frame.srcdoc = group.panel_html;
        root.append(frame);
      }
    }
    if (!(p.groups || []).length) root.append(el("div", "", "No filter artifacts."));
  }

  model.on("change:artifacts", draw);
  model.on("change:store_state", draw);
  model.on("change:selected_index", draw);
  draw();
  return () => {
    model.off?.("change:artifacts", draw);
    model.off?.("change:store_state", draw);
    model.off?.("change:selected_index", draw);
  };
}

export default { render };

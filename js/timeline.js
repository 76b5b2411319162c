// Wall time per index as a canvas scatter, coloured by status, with a memory overlay.
// Anywidget front-end module; reads `timeline` (bytes), `timeline_meta` and `store_state`,
// and sets the synced `selected_index` when a point is clicked.

const COLOURS = ["#76b900", "#e5484d", "#8a8f98"];
const MEMORY_COLOUR = "#8fb8f8";
const MEMORY_TEXT = "#3b82f6";
const PAD = { left: 58, right: 58, top: 10, bottom: 30 };

const STYLE = `
.psnc-timeline { font: 12px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: inherit; }
.psnc-timeline .psnc-banner { padding: 8px 10px; border-radius: 4px; background: rgba(138,143,152,.15); }
.psnc-timeline .psnc-banner.invalid { background: rgba(229,72,77,.15); color: #c62828; }
.psnc-timeline .psnc-tools { display: flex; gap: 14px; align-items: center; margin-bottom: 4px; }
.psnc-timeline canvas { width: 100%; height: 260px; display: block; cursor: crosshair; }
.psnc-timeline .psnc-info { min-height: 1.4em; opacity: .85; font-variant-numeric: tabular-nums; }
`;

// anywidget hands bytes over as a DataView; Panel may hand an ArrayBuffer, a typed array or base64 text.
function toDataView(value) {
  if (!value) return null;
  if (value instanceof DataView) return value;
  if (value instanceof ArrayBuffer) return new DataView(value);
  if (ArrayBuffer.isView(value)) return new DataView(value.buffer, value.byteOffset, value.byteLength);
  if (value.buffer instanceof ArrayBuffer) return new DataView(value.buffer, value.byteOffset || 0, value.byteLength ?? value.buffer.byteLength);
  if (typeof value === "string") {
    const raw = atob(value);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return new DataView(bytes.buffer);
  }
  return null;
}

function column(view, offset, n, Type) {
  const size = n * Type.BYTES_PER_ELEMENT;
  if (!view || view.byteLength < offset + size) return new Type(0);
  // Copy so the typed array is aligned whatever the offset inside the message buffer.
  return new Type(new Uint8Array(view.buffer, view.byteOffset + offset, size).slice().buffer);
}

function decode(meta, value) {
  const n = (meta && meta.n) || 0;
  const view = toDataView(value);
  if (!n || !view) return { n: 0 };
  const o = meta.offsets;
  return {
    n,
    idx: column(view, o.idx, n, Float64Array),
    wall: column(view, o.wall_s, n, Float32Array),
    memory: column(view, o.memory, n, Float32Array),
    status: column(view, o.status, n, Uint8Array),
    total: meta.total_points || n,
  };
}

function hexToRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

// Fill a size x size square of opaque pixels centred on (x, y), in device pixels, inside clip.
function plot(image, clip, x, y, size, rgb) {
  const x0 = Math.max(clip[0], Math.round(x - size / 2));
  const y0 = Math.max(clip[1], Math.round(y - size / 2));
  const x1 = Math.min(clip[2], x0 + size);
  const y1 = Math.min(clip[3], y0 + size);
  const data = image.data;
  const width = image.width;
  for (let row = y0; row < y1; row++) {
    for (let col = x0; col < x1; col++) {
      const o = (row * width + col) * 4;
      data[o] = rgb[0];
      data[o + 1] = rgb[1];
      data[o + 2] = rgb[2];
      data[o + 3] = 255;
    }
  }
}

function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(t);
  return ticks;
}

function fmtSeconds(s) {
  if (!isFinite(s)) return "-";
  if (s >= 1) return `${s.toFixed(s >= 10 ? 0 : 1)} s`;
  if (s >= 1e-3) return `${(s * 1e3).toFixed(s >= 1e-2 ? 0 : 1)} ms`;
  return `${(s * 1e6).toFixed(0)} µs`;
}

function fmtBytes(b) {
  if (!isFinite(b)) return "-";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (b >= 1000 && i < units.length - 1) { b /= 1000; i++; }
  return `${b.toFixed(b >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

function render({ model, el: host }) {
  const style = document.createElement("style");
  style.textContent = STYLE;
  const root = document.createElement("div");
  root.className = "psnc-timeline";
  const banner = document.createElement("div");
  banner.className = "psnc-banner";
  const tools = document.createElement("div");
  tools.className = "psnc-tools";
  const label = document.createElement("label");
  const toggle = document.createElement("input");
  toggle.type = "checkbox";
  toggle.className = "psnc-memory-toggle";
  label.append(toggle, document.createTextNode(" memory overlay"));
  const legend = document.createElement("span");
  legend.innerHTML =
    '<span style="color:#76b900">●</span> completed <span style="color:#e5484d">●</span> error ' +
    `<span style="color:${MEMORY_COLOUR}">●</span> memory`;
  tools.append(label, legend);
  const canvas = document.createElement("canvas");
  canvas.className = "psnc-timeline-canvas";
  const info = document.createElement("div");
  info.className = "psnc-info";
  root.append(banner, tools, canvas, info);
  host.append(style, root);

  let data = { n: 0 };
  let screenX = new Float32Array(0);
  let screenY = new Float32Array(0);
  let frame = 0;
  let memoryTicks = [];

  function describe(i) {
    if (i < 0 || i >= data.n) return "";
    const mem = data.memory[i];
    const status = ["completed", "error", "other"][data.status[i]] || "other";
    return `index ${data.idx[i]} · ${fmtSeconds(data.wall[i])} · ${isFinite(mem) ? fmtBytes(mem) : "memory not measured"} · ${status}`;
  }

  function draw() {
    frame = 0;
    const state = model.get("store_state") || {};
    const waiting = state.state === "waiting" || state.state === "invalid";
    banner.style.display = waiting ? "" : "none";
    banner.className = `psnc-banner ${state.state || ""}`;
    banner.textContent = waiting ? state.message || "Waiting for run" : "";

    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(200, canvas.clientWidth || host.clientWidth || 600);
    const height = canvas.clientHeight || 260;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);

    const n = data.n;
    canvas.dataset.drawnPoints = "0";
    const plotW = width - PAD.left - PAD.right;
    const plotH = height - PAD.top - PAD.bottom;
    ctx.strokeStyle = "rgba(138,143,152,.6)";
    ctx.lineWidth = 1;
    ctx.strokeRect(PAD.left, PAD.top, plotW, plotH);
    ctx.fillStyle = getComputedStyle(root).color || "#444";
    ctx.font = "11px system-ui, sans-serif";
    if (!n) {
      ctx.fillText(waiting ? "" : "No index recorded yet", PAD.left + 8, PAD.top + 18);
      return;
    }

    let x0 = Infinity, x1 = -Infinity, y1 = 0, m1 = 0;
    for (let i = 0; i < n; i++) {
      const x = data.idx[i];
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      const y = data.wall[i];
      if (y > y1) y1 = y;
      const m = data.memory[i];
      if (m > m1) m1 = m;
    }
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (!(y1 > 0)) y1 = 1;
    y1 *= 1.05;
    const sx = (x) => PAD.left + ((x - x0) / (x1 - x0)) * plotW;
    const sy = (y) => PAD.top + plotH - (y / y1) * plotH;

    ctx.textAlign = "right";
    for (const t of niceTicks(0, y1, 5)) {
      ctx.fillText(fmtSeconds(t), PAD.left - 6, sy(t) + 4);
      ctx.strokeStyle = "rgba(138,143,152,.18)";
      ctx.beginPath(); ctx.moveTo(PAD.left, sy(t)); ctx.lineTo(PAD.left + plotW, sy(t)); ctx.stroke();
    }
    ctx.textAlign = "center";
    for (const t of niceTicks(x0, x1, 8)) ctx.fillText(String(Math.round(t)), sx(t), height - PAD.bottom + 16);
    ctx.fillText("index", PAD.left + plotW / 2, height - 2);

    // Points are written straight into the pixel buffer: canvas paths of 10^5 overlapping
    // rectangles take Chromium's rasterizer hundreds of milliseconds.
    const image = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const clip = [PAD.left * ratio, PAD.top * ratio, (PAD.left + plotW) * ratio, (PAD.top + plotH) * ratio];
    const size = Math.max(1, Math.round((n > 20000 ? 2 : 3) * ratio));

    if (toggle.checked && m1 > 0) {
      const sm = (m) => PAD.top + plotH - (m / (m1 * 1.05)) * plotH;
      const rgb = hexToRgb(MEMORY_COLOUR);
      for (let i = 0; i < n; i++) {
        const m = data.memory[i];
        if (isFinite(m)) plot(image, clip, sx(data.idx[i]) * ratio, sm(m) * ratio, size, rgb);
      }
      memoryTicks = niceTicks(0, m1 * 1.05, 5).map((t) => [fmtBytes(t), sm(t) + 4]);
    } else {
      memoryTicks = [];
    }

    screenX = new Float32Array(n);
    screenY = new Float32Array(n);
    let drawn = 0;
    // Errors are plotted last so they stay visible among many completed points.
    for (const s of [0, 2, 1]) {
      const rgb = hexToRgb(COLOURS[s]);
      for (let i = 0; i < n; i++) {
        const status = Math.min(data.status[i], 2);
        if (status !== s) continue;
        const y = data.wall[i];
        const px = sx(data.idx[i]);
        const py = isFinite(y) ? sy(y) : PAD.top + plotH;
        screenX[i] = px;
        screenY[i] = py;
        plot(image, clip, px * ratio, py * ratio, size, rgb);
        drawn++;
      }
    }
    ctx.putImageData(image, 0, 0);
    ctx.textAlign = "left";
    ctx.fillStyle = MEMORY_TEXT;
    for (const [label, y] of memoryTicks) ctx.fillText(label, PAD.left + plotW + 6, y);
    canvas.dataset.drawnPoints = String(drawn);

    const selected = model.get("selected_index");
    if (selected !== null && selected !== undefined) {
      for (let i = 0; i < n; i++) {
        if (data.idx[i] === selected) {
          ctx.strokeStyle = "#111";
          ctx.lineWidth = 2;
          ctx.beginPath();
          ctx.arc(screenX[i], screenY[i], 6, 0, 2 * Math.PI);
          ctx.stroke();
          info.textContent = `selected: ${describe(i)}`;
          break;
        }
      }
    }
    if (data.total > n) {
      ctx.textAlign = "right";
      ctx.fillStyle = "rgba(138,143,152,.9)";
      ctx.fillText(`showing ${n} of ${data.total} points (every failure kept)`, PAD.left + plotW - 4, PAD.top + 12);
    }
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function reload() {
    data = decode(model.get("timeline_meta"), model.get("timeline"));
    schedule();
  }

  function nearest(event) {
    const rect = canvas.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const y = event.clientY - rect.top;
    let best = -1;
    let bestD = 100;
    for (let i = 0; i < screenX.length; i++) {
      const dx = screenX[i] - x;
      const dy = screenY[i] - y;
      const d = dx * dx + dy * dy;
      if (d < bestD) { bestD = d; best = i; }
    }
    return best;
  }

  const onClick = (event) => {
    const i = nearest(event);
    if (i < 0) return;
    model.set("selected_index", Math.round(data.idx[i]));
    model.save_changes();
  };
  const onMove = (event) => {
    const i = nearest(event);
    if (i >= 0) info.textContent = describe(i);
  };
  canvas.addEventListener("click", onClick);
  canvas.addEventListener("mousemove", onMove);
  toggle.addEventListener("change", schedule);
  const observer = typeof ResizeObserver === "function" ? new ResizeObserver(schedule) : null;
  observer?.observe(canvas);

  model.on("change:timeline", reload);
  model.on("change:timeline_meta", reload);
  model.on("change:selected_index", schedule);
  model.on("change:store_state", schedule);
  reload();

  return () => {
    observer?.disconnect();
    model.off?.("change:timeline", reload);
    model.off?.("change:timeline_meta", reload);
    model.off?.("change:selected_index", schedule);
    model.off?.("change:store_state", schedule);
  };
}

export default { render };

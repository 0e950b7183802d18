// deltaflow playground: the page only draws. Every number comes from the server, which
// runs deltaflow's engine; nothing here computes a cost, a gradient or a delta.
"use strict";

const $ = (id) => document.getElementById(id);
const NEG = [245, 147, 34], MID = [232, 234, 235], POS = [8, 119, 189];
const LAYER_COLOURS = ["#0877bd", "#f59322", "#2ca02c", "#9467bd", "#d62728", "#8c564b", "#17becf"];
const RATES = [0.00001, 0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10];
const L2S = [0, 0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1];

let ws = null;
let net = null;          // the last "network" message
let upd = null;          // the last "update" message
let trace = null;        // the last "trace" message
let curve = [];          // [examples, train cost, test cost]
let norms = [];          // mean |delta| per layer, one entry per update that had them
let playing = false;

// ------------------------------------------------------------------ colours and maps
function colour(v) {       // v in [-1, 1]
  const t = Math.min(1, Math.abs(v)), to = v < 0 ? NEG : POS;
  return MID.map((m, i) => Math.round(m + (to[i] - m) * t));
}
const css = (rgb, a = 1) => `rgba(${rgb[0]},${rgb[1]},${rgb[2]},${a})`;

function bytes(b64) {
  const s = atob(b64), out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

// A quantised heat map (bytes 0..255 standing for -1..1) of side n, painted on canvas.
function paintMap(canvas, b64, n, soft = 0) {
  const q = bytes(b64), img = new ImageData(n, n);
  for (let i = 0; i < n * n; i++) {
    const c = colour((q[i] / 127.5 - 1) * (1 - soft));
    img.data.set([c[0], c[1], c[2], 255], 4 * i);
  }
  const tmp = document.createElement("canvas");
  tmp.width = tmp.height = n;
  tmp.getContext("2d").putImageData(img, 0, 0);
  const g = canvas.getContext("2d");
  g.imageSmoothingEnabled = true;
  g.drawImage(tmp, 0, 0, canvas.width, canvas.height);
}

// A number for the page (HTML); plain=true gives text for a canvas.
function fmt(x, d = 4, plain = false) {
  if (x === null || x === undefined) return "-";
  const v = Number(x);
  if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential(Math.max(1, d - 2)).replace("e-", plain ? "e-" : "e&minus;");
  return v.toPrecision(d).replace(/\.?0+(e|$)/, "$1");
}
const sub = (s, l) => `${s}<sup>(${l})</sup>`;

// ------------------------------------------------------------------ socket
function connect() {
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onopen = () => status("connected", false);
  ws.onclose = () => { status("disconnected from the server; reload the page to start again", true); setPlaying(false); };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "network") onNetwork(msg);
    else if (msg.type === "update") onUpdate(msg);
    else if (msg.type === "trace") onTrace(msg);
    else if (msg.type === "error") status(msg.message, true);
  };
}
function send(msg) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(msg)); }
function configure(settings) { send({ type: "configure", settings }); }

let statusTimer = null;
function status(text, bad) {
  const el = $("status");
  el.textContent = text;
  el.className = bad ? "bad shown" : "shown";
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => (el.className = ""), bad ? 6000 : 1500);
}

function setPlaying(on) {
  playing = on;
  $("train").innerHTML = on ? '<svg viewBox="0 0 24 24"><path d="M6 5h4v14H6zM14 5h4v14h-4z"/></svg>'
    : '<svg viewBox="0 0 24 24"><path d="M7 4l13 8-13 8z"/></svg>';
  $("train").classList.toggle("playing", on);
}

// ------------------------------------------------------------------ messages
function fillSelect(el, values, current, label = (v) => v) {
  el.innerHTML = values.map((v) => `<option value="${v}">${label(v)}</option>`).join("");
  el.value = String(current);
}

function onNetwork(msg) {
  net = msg;
  curve = [];
  norms = [];
  trace = null;
  const s = msg.settings, o = msg.options;
  fillSelect($("dataset"), o.datasets, s.dataset, (v) => ({ circle: "Circle", xor: "Exclusive or", gauss: "Gaussian clusters", spiral: "Spiral", digits: "Digits 8x8" })[v] || v);
  fillSelect($("cost"), o.costs, s.cost, (v) => v.replace(/_/g, " "));
  fillSelect($("optimizer"), o.optimizers, s.optimizer);
  fillSelect($("learning-rate"), RATES.includes(s.learning_rate) ? RATES : [...RATES, s.learning_rate].sort((a, b) => a - b), s.learning_rate);
  fillSelect($("l2"), L2S.includes(s.l2) ? L2S : [...L2S, s.l2].sort((a, b) => a - b), s.l2);
  $("batch-size").value = s.batch_size;
  $("train-ratio").value = s.train_ratio; $("train-ratio-value").textContent = s.train_ratio;
  $("noise").value = s.noise; $("noise-value").textContent = s.noise;
  $("noise").disabled = msg.digits;
  $("layer-count").textContent = `${s.hidden.length} hidden layer${s.hidden.length === 1 ? "" : "s"}`;
  $("add-layer").disabled = s.hidden.length >= msg.limits.hidden_layers;
  $("remove-layer").disabled = s.hidden.length === 0;
  buildNetwork();
  $("dp-caption").textContent = "";
  $("dp-body").innerHTML = '<p class="muted">Press step, or pause, to trace a step through the engine.</p>';
  drawDeltaLegend();
}

function onUpdate(msg) {
  upd = msg;
  setPlaying(msg.playing);
  $("epoch").textContent = String(msg.epoch).padStart(4, "0");
  $("loss").textContent = fmt(msg.loss, 4);
  $("test-loss").textContent = fmt(msg.test_loss, 4);
  $("accuracy").textContent = msg.accuracy === null ? "-" : (100 * msg.accuracy).toFixed(1) + "%";
  $("test-accuracy").textContent = msg.test_accuracy === null ? "-" : (100 * msg.test_accuracy).toFixed(1) + "%";
  const last = curve[curve.length - 1];
  if (!last || last[0] !== msg.examples) curve.push([msg.examples, msg.loss, msg.test_loss]);
  else curve[curve.length - 1] = [msg.examples, msg.loss, msg.test_loss];
  if (msg.delta_norms && (!norms.length || norms[norms.length - 1][0] !== msg.examples)) norms.push([msg.examples, msg.delta_norms]);
  if (curve.length > 600) curve = curve.filter((_, i) => i % 2 === 0);
  if (norms.length > 600) norms = norms.filter((_, i) => i % 2 === 0);
  drawUnits();
  drawEdges();
  drawBoundary();
  drawCostChart();
  drawDeltaChart();
}

function onTrace(msg) {
  trace = msg;
  renderDP();
  drawBoundary();
}

// ------------------------------------------------------------------ the network diagram
const NODE = 40, GAP = 10;

function columnsOf() {        // [{kind, units}] for input, hidden layers and output
  const s = net.settings, cols = [];
  if (net.digits) cols.push({ kind: "input", units: 1 });
  else cols.push({ kind: "input", units: net.options.features.length });
  s.hidden.forEach((n, i) => cols.push({ kind: "hidden", units: n, layer: i + 1 }));
  cols.push({ kind: "output", units: net.digits ? 10 : 1, layer: s.hidden.length + 1 });
  return cols;
}

function buildNetwork() {
  const host = $("columns"), s = net.settings;
  host.innerHTML = "";
  columnsOf().forEach((col, c) => {
    const div = document.createElement("div");
    div.className = `column ${col.kind}`;
    const head = document.createElement("div");
    head.className = "col-head";
    if (col.kind === "input") head.innerHTML = `<span>Features</span>`;
    else if (col.kind === "output") head.innerHTML = `<span>Output</span><small>${net.activations[net.activations.length - 1]}</small>`;
    else {
      const i = col.layer - 1;
      head.innerHTML = `<div class="units-bar"><button data-d="1" title="add a unit">+</button><button data-d="-1" title="remove a unit">&minus;</button></div>
        <span>${col.units} unit${col.units === 1 ? "" : "s"}</span>`;
      head.querySelectorAll("button").forEach((b) => {
        const n = col.units + Number(b.dataset.d);
        b.disabled = n < 1 || n > net.limits.units;
        b.onclick = () => { const h = [...s.hidden]; h[i] = n; configure({ hidden: h }); };
      });
      const sel = document.createElement("select");
      sel.className = "act";
      sel.title = `activation of layer ${col.layer}`;
      fillSelect(sel, net.options.activations, s.activations[i], (v) => v.replace("_", " "));
      sel.onchange = () => { const a = [...s.activations]; a[i] = sel.value; configure({ activations: a }); };
      head.appendChild(sel);
    }
    div.appendChild(head);
    const nodes = document.createElement("div");
    nodes.className = "nodes";
    const size = col.units > 8 ? 28 : NODE;
    for (let j = 0; j < col.units; j++) {
      const wrap = document.createElement("div");
      wrap.className = "node";
      const cv = document.createElement("canvas");
      cv.width = cv.height = size;
      cv.dataset.col = c;
      cv.dataset.unit = j;
      wrap.appendChild(cv);
      if (col.kind === "input" && !net.digits) {
        const name = net.options.features[j], on = s.features.includes(name);
        wrap.classList.toggle("off", !on);
        wrap.insertAdjacentHTML("beforeend", `<span class="name">${name.replace("^2", "²")}</span>`);
        wrap.onclick = () => {
          const f = on ? s.features.filter((x) => x !== name) : [...s.features, name];
          if (f.length) configure({ features: f });
        };
        wrap.title = on ? "click to drop this feature" : "click to use this feature";
      } else if (col.kind === "input") {
        wrap.insertAdjacentHTML("beforeend", `<span class="name">64 pixels</span>`);
        cv.width = cv.height = 56;
      } else if (net.digits && col.kind === "output") {
        wrap.insertAdjacentHTML("beforeend", `<span class="name">${j}</span>`);
      }
      wrap.onmousemove = (e) => showTip(e, c, j);
      wrap.onmouseleave = () => ($("tooltip").hidden = true);
      nodes.appendChild(wrap);
    }
    div.appendChild(nodes);
    host.appendChild(div);
  });
}

function drawUnits() {
  if (!net || !upd) return;
  const canvases = $("columns").querySelectorAll("canvas");
  canvases.forEach((cv) => {
    const c = Number(cv.dataset.col), j = Number(cv.dataset.unit);
    if (c === 0) {
      if (net.digits) return drawInputDigit(cv);
      const name = net.options.features[j], k = net.settings.features.indexOf(name);
      if (k >= 0) return paintMap(cv, net.feature_maps[k], 20);
      const g = cv.getContext("2d");
      g.fillStyle = "#f1f2f3";
      return g.fillRect(0, 0, cv.width, cv.height);
    }
    const maps = upd.units[c - 1];
    if (maps && maps[j]) paintMap(cv, maps[j], net.digits ? 10 : 20);
  });
}

function drawInputDigit(cv) {
  const g = cv.getContext("2d");
  g.fillStyle = "#fff";
  g.fillRect(0, 0, cv.width, cv.height);
  if (!trace) return;
  const x = trace.trace.x, n = 8, px = cv.width / n;
  for (let i = 0; i < 64; i++) {
    const v = Math.round(255 * (1 - x[i]));
    g.fillStyle = `rgb(${v},${v},${v})`;
    g.fillRect((i % n) * px, Math.floor(i / n) * px, px + 0.5, px + 0.5);
  }
}

// Input column unit j -> index of a^(0) (features that are on only); null when off.
function inputIndex(j) {
  if (net.digits) return null;
  const k = net.settings.features.indexOf(net.options.features[j]);
  return k >= 0 ? k : null;
}

function centre(el, box) {
  const r = el.getBoundingClientRect();
  return [r.left - box.left + r.width / 2, r.top - box.top + r.height / 2, r.width / 2];
}

function drawEdges() {
  const svg = $("edges"), host = $("network");
  if (!net || !upd) return;
  const box = host.getBoundingClientRect();
  svg.setAttribute("width", box.width);
  svg.setAttribute("height", box.height);
  const cols = [...$("columns").children].map((col) => [...col.querySelectorAll(".node canvas")].map((cv) => centre(cv, box)));
  let out = "";
  for (let l = 1; l < cols.length; l++) {
    const W = upd.weights[l - 1];
    cols[l].forEach((to, j) => {
      cols[l - 1].forEach((from, kk) => {
        let k = kk;
        if (l === 1 && !net.digits) { k = inputIndex(kk); if (k === null) return; }
        let w;
        if (l === 1 && net.digits) {     // one edge from the pixel block: the mean |Theta| of the unit's 64 weights
          let sum = 0; for (const row of W) sum += Math.abs(row[j]); w = sum / W.length; k = -1;
        } else w = W[k][j];
        const width = Math.min(8, Math.max(0.4, Math.abs(w) * 2));
        const x1 = from[0] + from[2], x2 = to[0] - to[2], mx = (x1 + x2) / 2;
        const rgb = k < 0 ? [150, 160, 170] : colour(Math.max(-1, Math.min(1, w)));
        const hot = trace && trace.trace.layers[l - 1] ? " dp" : "";
        out += `<path class="edge${hot}" d="M${x1},${from[1]} C${mx},${from[1]} ${mx},${to[1]} ${x2},${to[1]}" stroke="${css(rgb, 0.85)}" stroke-width="${width.toFixed(2)}"><title>${k >= 0 ? `Θ(${l})_${k}${j} = ${fmt(w)}` : `mean |Θ(1)| into unit ${j} = ${fmt(w)}`}</title></path>`;
      });
    });
  }
  svg.innerHTML = out;
}

function showTip(e, c, j) {
  const tip = $("tooltip");
  let html;
  if (!trace) html = "Step or pause to trace an example; then each unit shows its z, a, g′(z) and δ.";
  else if (c === 0) {
    const k = inputIndex(j);
    html = net.digits ? `a${sup(0)} = the traced image's 64 pixels` : k === null ? "feature not used" : `a${sup(0)}<sub>${k}</sub> = x = ${fmt(trace.trace.x[k])}`;
  } else {
    const lay = trace.trace.layers[c - 1];
    if (!lay) html = "";
    else {
      const gp = lay.g_prime ? fmt(lay.g_prime[j]) : "softmax: the layer's Jacobian";
      html = `<b>layer ${c}, unit ${j}</b> (${lay.activation}), example #${trace.row}<table>
        <tr><td>z</td><td>${fmt(lay.z[j])}</td></tr><tr><td>a = g(z)</td><td>${fmt(lay.a[j])}</td></tr>
        <tr><td>g′(z)</td><td>${gp}</td></tr><tr><td>δ = ∂C/∂z</td><td>${fmt(lay.delta[j])}</td></tr></table>`;
    }
  }
  tip.innerHTML = html;
  tip.hidden = false;
  tip.style.left = `${Math.min(e.clientX + 14, innerWidth - 240)}px`;
  tip.style.top = `${e.clientY + 14}px`;
}
const sup = (l) => `<sup>(${l})</sup>`;

// ------------------------------------------------------------------ output panels
function toCanvas(p, cv) {
  const d = net.domain;
  return [((p[0] + d) / (2 * d)) * cv.width, ((d - p[1]) / (2 * d)) * cv.height];
}

function drawBoundary() {
  const cv = $("boundary"), g = cv.getContext("2d");
  if (!net || !upd) return;
  $("legend-2d").hidden = net.digits;
  $("legend-digits").hidden = !net.digits;
  if (net.digits) return drawDigits(cv, g);
  paintMap(cv, upd.boundary, 50, 0.3);
  const n = net.train_size;
  net.points.forEach((p, i) => {
    const [x, y] = toCanvas(p, cv), rgb = net.labels[i] ? POS : NEG;
    g.beginPath();
    g.arc(x, y, 3, 0, 2 * Math.PI);
    if (i < n) { g.fillStyle = css(rgb); g.fill(); g.strokeStyle = "#fff"; g.lineWidth = 0.8; g.stroke(); }
    else { g.strokeStyle = css(rgb); g.lineWidth = 1.5; g.stroke(); }
  });
  if (trace && trace.point) {
    const [x, y] = toCanvas(trace.point, cv);
    g.beginPath(); g.arc(x, y, 8, 0, 2 * Math.PI);
    g.strokeStyle = "#111"; g.lineWidth = 2; g.stroke();
  }
}

function drawDigits(cv, g) {
  const q = bytes(net.images), side = 10, cell = cv.width / side, px = (cell - 4) / 8;
  g.fillStyle = "#fff";
  g.fillRect(0, 0, cv.width, cv.height);
  net.image_labels.forEach((label, i) => {
    const ox = (i % side) * cell + 2, oy = Math.floor(i / side) * cell + 2;
    for (let p = 0; p < 64; p++) {
      const v = 255 - q[i * 64 + p];
      g.fillStyle = `rgb(${v},${v},${v})`;
      g.fillRect(ox + (p % 8) * px, oy + Math.floor(p / 8) * px, px + 0.3, px + 0.3);
    }
    const guess = upd.predictions[i];
    g.strokeStyle = guess === label ? "rgba(44,160,44,0.9)" : "rgba(214,39,40,0.95)";
    g.lineWidth = 2;
    g.strokeRect(ox - 1, oy - 1, cell - 2, cell - 2);
    if (guess !== label) { g.fillStyle = "#d62728"; g.font = "bold 10px sans-serif"; g.fillText(String(guess), ox + cell - 12, oy + cell - 6); }
  });
}

function chartFrame(g, cv) {
  g.clearRect(0, 0, cv.width, cv.height);
  g.strokeStyle = "#ddd";
  g.lineWidth = 1;
  g.strokeRect(0.5, 0.5, cv.width - 1, cv.height - 1);
}

function drawLine(g, cv, pts, colour, lo, hi, log, width = 1.5) {
  const xs = pts.map((p) => p[0]), x0 = xs[0], x1 = Math.max(xs[xs.length - 1], x0 + 1);
  const f = log ? Math.log10 : (v) => v, a = f(lo), b = f(hi) === a ? a + 1 : f(hi);
  g.beginPath();
  let started = false;
  pts.forEach(([x, v]) => {
    if (v === null || !(v > (log ? 0 : -Infinity))) return;
    const X = 3 + ((x - x0) / (x1 - x0)) * (cv.width - 6), Y = cv.height - 4 - ((f(v) - a) / (b - a)) * (cv.height - 8);
    if (started) g.lineTo(X, Y); else { g.moveTo(X, Y); started = true; }
  });
  g.strokeStyle = colour;
  g.lineWidth = width;
  g.stroke();
}

function drawCostChart() {
  const cv = $("cost-chart"), g = cv.getContext("2d");
  chartFrame(g, cv);
  if (curve.length < 2) return;
  const vals = curve.flatMap((c) => [c[1], c[2]]).filter((v) => v !== null);
  const hi = Math.max(...vals);
  drawLine(g, cv, curve.map((c) => [c[0], c[2]]), "#999", 0, hi, false);
  drawLine(g, cv, curve.map((c) => [c[0], c[1]]), "#222", 0, hi, false);
}

function drawDeltaLegend() {
  const L = net.sizes.length - 1;
  $("delta-legend").innerHTML = Array.from({ length: L }, (_, i) =>
    `<span><span class="sw" style="background:${LAYER_COLOURS[i % LAYER_COLOURS.length]}"></span> δ${sup(i + 1)}</span>`).join(" ") +
    ' <span class="muted">(log scale)</span>';
}

function drawDeltaChart() {
  const cv = $("delta-chart"), g = cv.getContext("2d");
  chartFrame(g, cv);
  if (norms.length < 2) return;
  const vals = norms.flatMap((n) => n[1]).filter((v) => v > 0);
  if (!vals.length) return;
  const lo = Math.min(...vals), hi = Math.max(...vals);
  norms[0][1].forEach((_, l) => drawLine(g, cv, norms.map((n) => [n[0], n[1][l]]), LAYER_COLOURS[l % LAYER_COLOURS.length], lo, hi, true));
  g.fillStyle = "#888";
  g.font = "10px sans-serif";
  g.fillText(fmt(hi, 2, true), 4, 11);
  g.fillText(fmt(lo, 2, true), 4, cv.height - 5);
}

// ------------------------------------------------------------------ the dynamic-programme panel
const MAX_ROWS = 16;

// A vector of numbers; with a layer l, entry j is marked as delta^(l)_j for highlighting.
function vec(values, cls = "", l = null) {
  const ref = (j) => (l === null ? "" : ` data-ref="${l}:${j}"`);
  return `<span class="vec">[${values.map((v, j) => `<span class="num ${cls}"${ref(j)}>${fmt(v)}</span>`).join(", ")}]</span>`;
}

function renderDP() {
  const t = trace.trace, L = t.sizes.length - 1;
  $("dp-caption").innerHTML = `&mdash; training example #${trace.row} (class ${trace.label}), parameters at epoch ${trace.epoch}, step ${trace.steps}, before the update`;
  const cards = [];

  // the base case
  const out = t.layers[L - 1];
  let base = `<h3>1 &middot; Base case ${sub("δ", L)} from the cost</h3>
    <p>Cost ${t.cost_name.replace(/_/g, " ")}: C<sub>0</sub> = <span class="num">${fmt(t.cost)}</span>.</p>
    <table><tr><th>j</th><th>${sub("a", L)}<sub>j</sub></th><th>y<sub>j</sub></th>`;
  if (out.dC_da === null) {
    base += `<th>${sub("δ", L)}<sub>j</sub> = a &minus; y</th></tr>`;
    out.delta.forEach((d, j) => (base += `<tr><td>${j}</td><td>${fmt(out.a[j])}</td><td>${fmt(t.y[j])}</td><td class="num delta" data-ref="${L}:${j}">${fmt(d)}</td></tr>`));
    base += `</table><p class="muted">With this output and cost the 1/a of the cost's derivative cancels g′: the engine's base case is a &minus; y.</p>`;
  } else {
    base += `<th>∂C/∂a<sub>j</sub></th><th>g′(z<sub>j</sub>)</th><th>${sub("δ", L)}<sub>j</sub></th></tr>`;
    out.delta.forEach((d, j) => (base += `<tr><td>${j}</td><td>${fmt(out.a[j])}</td><td>${fmt(t.y[j])}</td><td>${fmt(out.dC_da[j])}</td><td>${out.g_prime ? fmt(out.g_prime[j]) : "Jacobian"}</td><td class="num delta" data-ref="${L}:${j}">${fmt(d)}</td></tr>`));
    base += "</table>";
  }
  cards.push(base);

  // the recursion
  let rec = `<h3>2 &middot; Recursion: each ${sub("δ", "l")} from ${sub("δ", "l+1")}</h3>`;
  if (L === 1) rec += "<p>No hidden layer: no recursion.</p>";
  else rec += `<p>${sub("δ", "l")}<sub>k</sub> = g′(${sub("z", "l")}<sub>k</sub>) &middot; &Sigma;<sub>j</sub> ${sub("Θ", "l+1")}<sub>kj</sub> ${sub("δ", "l+1")}<sub>j</sub>.
    The highlighted entries were computed once, one layer up, and every unit below reuses them:
    point at one to see everywhere it is used.</p>`;
  for (let l = L - 1; l >= 1; l--) {
    const lay = t.layers[l - 1], nxt = t.layers[l], S = lay.delta.length, Sn = nxt.delta.length;
    rec += `<div class="layer-rec"><div>Layer ${l} reuses ${sub("δ", l + 1)} = ${vec(nxt.delta, "reused", l + 1)} in each of its ${S} units
      <span class="muted">(${S * Sn} reuses of ${Sn} stored entries)</span></div>
      <table><tr><th>k</th><th>&Sigma;<sub>j</sub> Θ<sub>kj</sub> &middot; δ<sub>j</sub></th><th>= ${sub("Θ", l + 1)}${sub("δ", l + 1)}</th><th>g′(z<sub>k</sub>)</th><th>${sub("δ", l)}<sub>k</sub></th></tr>`;
    for (let k = 0; k < Math.min(S, MAX_ROWS); k++) {
      const shown = Math.min(Sn, 3);
      let terms = [];
      for (let j = 0; j < shown; j++) terms.push(`${fmt(nxt.theta[k][j], 3)}&times;<span class="num reused" data-ref="${l + 1}:${j}">${fmt(nxt.delta[j], 3)}</span>`);
      if (Sn > shown) terms.push("&hellip;");
      rec += `<tr><td>${k}</td><td class="terms">${terms.join(" + ")}</td><td>${fmt(lay.dC_da[k])}</td><td>${lay.g_prime ? fmt(lay.g_prime[k]) : "Jacobian"}</td><td class="num delta" data-ref="${l}:${k}">${fmt(lay.delta[k])}</td></tr>`;
    }
    rec += "</table></div>";
  }
  cards.push(rec);

  // read-off beside finite differences
  let ro = `<h3>3 &middot; Read-off: ∂C/∂Θ<sub>kj</sub> = a<sub>k</sub> δ<sub>j</sub></h3>
    <p>One product of two stored numbers per weight, beside the central finite difference (ε = ${fmt(t.eps, 2)}).
    Largest relative difference over all parameters: <span class="num">${fmt(t.fd_max_error, 2)}</span>.</p>
    <div class="tabs">${t.layers.map((_, i) => `<button data-l="${i + 1}">${sub("Θ", i + 1)}</button>`).join("")}</div><div id="readoff"></div>`;
  cards.push(ro);

  // counting
  const c = t.counts;
  let cnt = `<h3>4 &middot; Why a dynamic programme</h3>
    <p>Multiply-adds per example for every weight's gradient, after the forward sweep (${c.forward}):</p>
    <table><tr><th>dynamic programme</th><td class="num">${c.backward}</td></tr>
    <tr><th>path enumeration</th><td class="num">${c.path_total}</td></tr></table>
    <p class="muted">The programme: ${c.recursion} for Θδ, ${c.derivative} for g′ and ${c.read_off} to read off a<sub>k</sub>δ<sub>j</sub>.
    Path enumeration: each weight on its own, summed over every path to the output.</p>
    <table><tr><th>layer</th>${c.paths.map((_, i) => `<td>${i + 1}</td>`).join("")}</tr>
    <tr><th>paths per weight</th>${c.paths.map((p) => `<td>${p}</td>`).join("")}</tr>
    <tr><th>enumeration cost</th>${c.path_enumeration.map((p) => `<td>${p}</td>`).join("")}</tr></table>`;
  if (t.path_multiplications !== null) cnt += `<p>Enumerating this network's paths for real took <span class="num">${t.path_multiplications}</span> multiplications and agreed with the dynamic programme to ${fmt(t.path_max_difference, 2)}.</p>`;
  cnt += `<p>After one SGD step on this example (α = ${fmt(t.learning_rate)}), C<sub>0</sub> goes from ${fmt(t.cost)} to ${fmt(t.cost_after)}.</p>`;
  cards.push(cnt);

  const wide = [false, true, true, false];  // the recursion and the read-off get a whole row
  $("dp-body").innerHTML = cards.map((h, i) => `<div class="card${wide[i] ? " wide" : ""}">${h}</div>`).join("");
  const tabs = $("dp-body").querySelectorAll(".tabs button");
  tabs.forEach((b) => (b.onclick = () => { tabs.forEach((x) => x.classList.toggle("on", x === b)); renderReadOff(Number(b.dataset.l)); }));
  tabs[tabs.length - 1].click();
}

function renderReadOff(l) {
  const t = trace.trace, lay = t.layers[l - 1], aPrev = l === 1 ? t.x : t.layers[l - 2].a;
  const rows = [];
  for (let k = 0; k < lay.theta.length && rows.length < MAX_ROWS; k++)
    for (let j = 0; j < lay.theta[0].length && rows.length < MAX_ROWS; j++) rows.push([k, j]);
  const total = lay.theta.length * lay.theta[0].length;
  let h = `<table><tr><th>Θ<sub>kj</sub></th><th>a<sub>k</sub></th><th>δ<sub>j</sub></th><th>engine ∂C/∂Θ</th><th>finite difference</th></tr>`;
  rows.forEach(([k, j]) => (h += `<tr><td>${sub("Θ", l)}<sub>${k},${j}</sub></td><td>${fmt(aPrev[k])}</td><td class="num delta" data-ref="${l}:${j}">${fmt(lay.delta[j])}</td><td class="num">${fmt(lay.dtheta[k][j])}</td><td>${fmt(lay.fd_dtheta[k][j])}</td></tr>`));
  h += "</table>";
  if (total > rows.length) h += `<p class="muted">${rows.length} of ${total} weights shown.</p>`;
  $("readoff").innerHTML = h;
}

// ------------------------------------------------------------------ wiring
function wire() {
  $("train").onclick = () => { send({ type: playing ? "pause" : "play" }); setPlaying(!playing); };
  $("step").onclick = () => { send({ type: "step" }); setPlaying(false); };
  $("reset").onclick = () => send({ type: "reset" });
  $("regenerate").onclick = () => configure({ seed: (net.settings.seed + 7919) % 2147483647 });
  $("dataset").onchange = (e) => {
    const settings = { dataset: e.target.value };
    if (e.target.value === "digits" && net.settings.cost !== "cross_entropy") settings.cost = "cross_entropy";
    configure(settings);
  };
  $("cost").onchange = (e) => configure({ cost: e.target.value });
  $("optimizer").onchange = (e) => configure({ optimizer: e.target.value });
  $("learning-rate").onchange = (e) => configure({ learning_rate: Number(e.target.value) });
  $("l2").onchange = (e) => configure({ l2: Number(e.target.value) });
  $("batch-size").onchange = (e) => {
    const v = Math.round(Number(e.target.value));
    if (v >= 1 && v <= 100) configure({ batch_size: v }); else status("batch size must be from 1 to 100", true);
  };
  for (const id of ["train-ratio", "noise"]) {
    $(id).oninput = (e) => ($(`${id}-value`).textContent = e.target.value);
    $(id).onchange = (e) => configure({ [id.replace("-", "_")]: Number(e.target.value) });
  }
  $("add-layer").onclick = () => {
    const h = net.settings.hidden;
    configure({ hidden: [...h, h.length ? h[h.length - 1] : 4] });
  };
  $("remove-layer").onclick = () => configure({ hidden: net.settings.hidden.slice(0, -1) });
  $("boundary").onclick = (e) => {
    if (!net || net.digits) return;
    const cv = $("boundary"), r = cv.getBoundingClientRect();
    const x = ((e.clientX - r.left) / r.width) * cv.width, y = ((e.clientY - r.top) / r.height) * cv.height;
    let best = null, bestD = 144;
    for (let i = 0; i < net.train_size; i++) {
      const [px, py] = toCanvas(net.points[i], cv), d = (px - x) ** 2 + (py - y) ** 2;
      if (d < bestD) { best = i; bestD = d; }
    }
    if (best !== null) send({ type: "trace", row: best });
  };
  addEventListener("resize", () => drawEdges());
  // pointing at an entry delta^(l)_j lights up every place the panel shows it
  $("dp-body").onmouseover = (e) => {
    const ref = e.target.closest("[data-ref]")?.dataset.ref;
    $("dp-body").querySelectorAll(".hl").forEach((el) => el.classList.remove("hl"));
    if (ref) $("dp-body").querySelectorAll(`[data-ref="${ref}"]`).forEach((el) => el.classList.add("hl"));
  };
}

wire();
setPlaying(false);
connect();

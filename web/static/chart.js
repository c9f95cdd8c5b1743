// evhub charts: small time-series SVG charts drawn with DOM calls (no innerHTML, no library).
// EvChart.draw(container, [{name, points: [[Date, value], ...], step, axis: "left"|"right"}], opts)
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const H = 220, PAD = { l: 46, r: 46, t: 22, b: 26 };
  let W = 640;
  const tzMeta = document.querySelector('meta[name="time-zone"]');
  const timeFormat = new Intl.DateTimeFormat([], {
    hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    timeZone: tzMeta ? tzMeta.content : undefined,
  });

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, value, cls, anchor) {
    const t = el("text", { x, y, class: cls || "axis", "text-anchor": anchor || "middle" }, parent);
    t.textContent = value;
    return t;
  }

  function range(values) {
    let lo = Math.min(0, ...values), hi = Math.max(...values, 0);
    if (hi === lo) hi = lo + 1;
    return [lo, hi + (hi - lo) * 0.08];
  }

  function fmt(v) {
    const a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  }

  function draw(container, series, opts) {
    opts = opts || {};
    // One SVG unit per CSS pixel: text keeps its size whatever the card's width.
    W = Math.max(320, container.clientWidth || 640);
    while (container.firstChild) container.removeChild(container.firstChild);
    const all = series.flatMap((s) => s.points);
    if (!all.length) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = opts.empty || "No data yet.";
      container.appendChild(p);
      return;
    }
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img" }, container);
    if (opts.label) el("title", {}, svg).textContent = opts.label;
    const times = all.map((p) => +p[0]).concat(series.filter((s) => s.end).map((s) => +s.end));
    const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 60000);
    const x = (t) => PAD.l + ((+t - t0) / (t1 - t0)) * (W - PAD.l - PAD.r);
    const axes = {};
    for (const side of ["left", "right"]) {
      const vals = series.filter((s) => (s.axis || "left") === side).flatMap((s) => s.points.map((p) => p[1]));
      if (!vals.length) continue;
      const [lo, hi] = range(vals);
      axes[side] = (v) => H - PAD.b - ((v - lo) / (hi - lo)) * (H - PAD.t - PAD.b);
      for (let i = 0; i <= 4; i++) {
        const v = lo + ((hi - lo) * i) / 4, yy = axes[side](v);
        if (side === "left") el("line", { x1: PAD.l, x2: W - PAD.r, y1: yy, y2: yy, class: "grid" }, svg);
        text(svg, side === "left" ? PAD.l - 4 : W - PAD.r + 4, yy + 4, fmt(v), "axis", side === "left" ? "end" : "start");
      }
    }
    for (let i = 0; i <= 4; i++) {
      const t = new Date(t0 + ((t1 - t0) * i) / 4);
      text(svg, x(t), H - 8, timeFormat.format(t));
    }
    series.forEach((s, i) => {
      const y = axes[s.axis || "left"];
      if (!s.points.length) return;
      let d = "";
      s.points.forEach((p, j) => {
        if (j === 0) d += `M${x(p[0])},${y(p[1])}`;
        else if (s.step) d += `H${x(p[0])}V${y(p[1])}`;
        else d += `L${x(p[0])},${y(p[1])}`;
      });
      if (s.step && s.end) d += `H${x(s.end)}`;
      el("path", { d, class: `series s${i}` }, svg);
      if (s.name) text(svg, PAD.l + 8 + i * 200, PAD.t - 8, s.name, `legend s${i}`, "start");
    });
    if (opts.now) {
      const nx = x(opts.now);
      if (nx >= PAD.l && nx <= W - PAD.r) el("line", { x1: nx, x2: nx, y1: PAD.t, y2: H - PAD.b, class: "now" }, svg);
    }
  }

  function slots(sig) {
    const pts = sig.slots.map((s) => [new Date(s.start), s.value]);
    const end = sig.slots.length ? new Date(sig.slots[sig.slots.length - 1].end) : null;
    return { pts, end };
  }

  // The overview's price curve with the plan (and caps) over it, from data-curve.
  function priceChart(container) {
    const curve = JSON.parse(container.dataset.curve || "{}");
    const series = [];
    for (const p of curve.prices || []) {
      const { pts, end } = slots(p);
      series.push({ name: `${p.name} (${curve.currency}/kWh)`, points: pts, step: true, end });
    }
    for (const p of curve.plans || []) {
      const { pts, end } = slots(p);
      series.push({ name: `${p.name} (${p.unit})`, points: pts, step: true, end, axis: "right" });
    }
    if (series.length) draw(container, series, { now: new Date(curve.now), label: "prices and plan" });
  }

  window.EvChart = { draw, priceChart };
})();

// evhub pages: live updates over /api/websocket, charts, confirmations. Text is only ever set
// with textContent (never innerHTML), so whatever a charger sends stays text.
"use strict";
(function () {
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // Forms that need a second thought.
  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    if (form.classList && form.classList.contains("confirm") && !window.confirm(form.dataset.confirm || "Sure?")) {
      ev.preventDefault();
    }
  });

  const num = (v, d) => (typeof v === "number" ? v.toFixed(d) : "–");

  // The same fields the server renders in a tile (web/views.py charger_tile).
  function fields(state) {
    const a = state.attributes || {};
    const limit = a.limit && typeof a.limit === "object" ? `${+a.limit.value} ${a.limit.unit}` : "—";
    return {
      status: String(state.state),
      power_kw: num((a.power_w || 0) / 1000, 2),
      session: a.session_id ? String(a.id_tag || "—") : "—",
      vehicle: typeof a.soc === "number" ? `SoC ${a.soc.toFixed(0)} %` : "—",
      limit,
      limit_reason: a.limit_reason ? String(a.limit_reason) : "",
      error_code: a.error_code ? String(a.error_code) : "—",
      name: String(a.friendly_name || state.entity_id),
    };
  }

  // A charger that connected after the page loaded gets a tile from the page's <template>.
  function addTile(entityId) {
    const tpl = document.getElementById("tile-template");
    const box = document.getElementById("tiles");
    if (!tpl || !box || !entityId.startsWith("charger.")) return;
    const tile = tpl.content.firstElementChild.cloneNode(true);
    tile.dataset.entity = entityId;
    tile.querySelector("a").href = `/chargers/${encodeURIComponent(entityId)}`;
    const empty = document.getElementById("no-chargers");
    if (empty) empty.remove();
    const after = [...box.querySelectorAll(".tile")].find((t) => t.dataset.entity > entityId);
    box.insertBefore(tile, after || null);
  }

  function applyState(entityId, state) {
    if (!state) return;
    if (!document.querySelector(`[data-entity="${CSS.escape(entityId)}"]`)) addTile(entityId);
    const nodes = document.querySelectorAll(`[data-entity="${CSS.escape(entityId)}"]`);
    const f = fields(state);
    nodes.forEach((node) => {
      node.querySelectorAll("[data-field]").forEach((child) => {
        const key = child.dataset.field;
        if (key in f && child.textContent !== f[key]) child.textContent = f[key];
      });
      if (node.classList.contains("tile") || node.classList.contains("badge")) {
        node.className = node.className.replace(/\bstatus-[a-z_]+/g, "").trim() + ` status-${f.status}`;
      }
    });
    document.dispatchEvent(new CustomEvent("evhub:state", { detail: state }));
  }

  // --- the electrical tree: loads are re-read (debounced) when a charger changes ---------------
  let treeTimer = null;
  function refreshTree() {
    if (!document.getElementById("site-tree") || treeTimer) return;
    treeTimer = setTimeout(async () => {
      treeTimer = null;
      const res = await fetch("/api/site", { credentials: "same-origin" });
      if (!res.ok) return;
      const site = await res.json();
      for (const n of site.nodes) {
        const row = document.querySelector(`tr[data-node="${CSS.escape(n.id)}"]`);
        if (!row) continue;
        row.querySelector('[data-field="current_a"]').textContent = n.current_a.join(" / ");
        row.querySelector('[data-field="power_kw"]').textContent = `${n.power_kw.toFixed(1)} kW`;
        row.querySelector('[data-field="utilization"]').value = n.utilization || 0;
      }
      const charging = site.chargers.filter((c) => c.status === "charging").length;
      const count = document.getElementById("charging-count");
      if (count) count.textContent = `${charging} / ${site.chargers.length}`;
    }, 1500);
  }

  // --- charts ------------------------------------------------------------------------------
  function meterChart() {
    const box = document.getElementById("meter-chart");
    if (!box || !window.EvChart) return;
    const points = JSON.parse(box.dataset.points || "[]").map((p) => [new Date(p.t), p.kw]);
    const render = () => EvChart.draw(box, [{ name: "kW", points }], { empty: "No power readings in the last two hours.", label: "power" });
    render();
    document.addEventListener("evhub:state", (ev) => {
      const s = ev.detail;
      if (s.entity_id !== box.dataset.entity || typeof (s.attributes || {}).power_w !== "number") return;
      points.push([new Date(s.last_updated), s.attributes.power_w / 1000]);
      if (points.length > 2000) points.shift();
      render();
    });
  }

  function sessionChart() {
    const box = document.getElementById("session-chart");
    if (!box || !window.EvChart) return;
    const raw = JSON.parse(box.dataset.points || "[]");
    EvChart.draw(box, [
      { name: "kW", points: raw.map((p) => [new Date(p.t), p.kw]), step: true },
      { name: "kWh", points: raw.map((p) => [new Date(p.t), p.kwh]), axis: "right" },
    ], { empty: "No energy readings for this session.", label: "meter curve" });
  }

  // --- the websocket ---------------------------------------------------------------------------
  // A page on its way out (a form posted, a link followed) must not reload itself when the
  // server closes its socket: logging out closes it, and a reload would race the navigation.
  let leaving = false;
  window.addEventListener("beforeunload", () => { leaving = true; });
  document.addEventListener("submit", (ev) => { if (!ev.defaultPrevented) leaving = true; });

  function connect(delay) {
    const live = document.getElementById("live");
    const wanted = [...new Set([...document.querySelectorAll("[data-entity]")].map((n) => n.dataset.entity).filter(Boolean))];
    const overview = !!document.getElementById("tiles") || !!document.getElementById("site-tree");
    if (!csrf || (!wanted.length && !overview)) return;
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/websocket`);
    let id = 0;
    const send = (msg) => ws.send(JSON.stringify(msg));
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "auth_required") send({ type: "auth", csrf_token: csrf });
      else if (msg.type === "auth_invalid") location.reload();
      else if (msg.type === "auth_ok") {
        if (live) live.classList.add("on");
        const sub = overview ? { domains: ["charger"], entity_ids: wanted } : { entity_ids: wanted };
        send({ id: ++id, type: "subscribe_entities", ...sub });
        delay = 1000;
      } else if (msg.type === "entities") {
        for (const [eid, state] of Object.entries(msg.added || msg.changed || {})) applyState(eid, state);
        if (msg.changed) refreshTree();
      }
    };
    ws.onclose = (ev) => {
      if (live) live.classList.remove("on");
      if (leaving) return;
      // 1008: the session ended (logout elsewhere, expiry, revocation): back to the login page.
      if (ev.code === 1008) { location.reload(); return; }
      setTimeout(() => connect(Math.min(delay * 2, 30000)), delay);
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    const price = document.getElementById("price-chart");
    if (price && window.EvChart) EvChart.priceChart(price);
    meterChart();
    sessionChart();
    connect(1000);
  });
})();

// edge_ad console, live page: follows /events (server-sent events) and updates the page in place.
// No framework, no outside source (the Content-Security-Policy allows scripts from the console only).
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const KEEP = 20; // verdict rows shown
  const $ = (id) => document.getElementById(id);
  const text = (id, value) => { const el = $(id); if (el) el.textContent = value; };
  const show = (id, visible) => { const el = $(id); if (el) el.hidden = !visible; };
  const num = (v, digits) => (typeof v === "number" && isFinite(v) ? v.toFixed(digits) : "–");

  function fillTable(id, values) {
    const table = $(id);
    if (!table || !values) return;
    const rows = [];
    for (const [key, value] of Object.entries(values)) {
      if (value !== null && typeof value === "object") continue;
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      const td = document.createElement("td");
      th.textContent = key;
      td.textContent = value === null ? "None" : String(value);
      tr.append(th, td);
      rows.push(tr);
    }
    table.replaceChildren(...rows);
  }

  function line(svg, y, cls) {
    const l = document.createElementNS(SVG, "line");
    l.setAttribute("x1", "0"); l.setAttribute("x2", "300");
    l.setAttribute("y1", String(y)); l.setAttribute("y2", String(y));
    l.setAttribute("class", cls);
    svg.appendChild(l);
  }

  function sparkline(values, limit) {
    const svg = $("drift");
    if (!svg) return;
    svg.replaceChildren();
    const top = Math.max(0.55, ...values.map((v) => v * 1.1));
    const y = (v) => 80 - (Math.min(Math.max(v, 0), top) / top) * 78 - 1;
    line(svg, y(0.5), "threshold");
    if (typeof limit === "number") line(svg, y(limit), "limit");
    if (values.length > 0) {
      const step = values.length > 1 ? 300 / (values.length - 1) : 0;
      const points = values.map((v, i) => `${(i * step).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
      const p = document.createElementNS(SVG, "polyline");
      p.setAttribute("points", values.length > 1 ? points : `0,${y(values[0])} 300,${y(values[0])}`);
      p.setAttribute("class", "series");
      svg.appendChild(p);
    }
    show("drift-limit-note", typeof limit === "number");
  }

  function lastNg(v) {
    if (!v) return;
    show("last-ng-none", false);
    show("last-ng-figure", true);
    const img = $("last-ng-image");
    const src = v.heatmap_url || v.image_url;
    if (img) {
      if (src) { if (img.getAttribute("src") !== src) img.src = src; img.hidden = false; }
      else { img.removeAttribute("src"); img.hidden = true; }
    }
    let caption = `${v.time || ""}  seq ${v.seq ?? "?"}  score ${num(v.score, 4)} / threshold ${num(v.threshold, 4)}`;
    if (v.label) caption += `  hint: ${v.label}` + (v.similarity != null ? ` (${num(v.similarity, 2)})` : "");
    if (!src) caption += "  (no evidence picture served)";
    text("last-ng-caption", caption);
  }

  function onState(s) {
    const state = $("live-state");
    if (state) { state.textContent = s.state || "?"; state.className = `state state-${s.state || "unknown"}`; }
    text("live-fps", num(s.fps, 1));
    text("live-latency", s.latency_p50 != null ? `${num(s.latency_p50, 1)} / ${num(s.latency_p99, 1)} ms` : "–");
    text("live-ngrate", typeof s.ng_rate === "number" ? `${(100 * s.ng_rate).toFixed(1)} %` : "–");
    const feed = $("live-feed");
    if (feed) {
      feed.textContent = s.connected ? "live" : "broker away";
      feed.className = `state ${s.connected ? "state-online" : "state-offline"}`;
    }
    text("live-error", s.error || "");
    show("live-error", !!s.error && !s.connected);
    if (s.status) { fillTable("status-table", s.status); show("status-none", false); }
    if (s.stats) { fillTable("stats-table", s.stats); show("stats-none", false); }
    show("stats-stale", !!s.stats && !s.current);
    show("drift-alarm", !!s.drift_alarm);
    sparkline(s.drift || [], s.drift_limit);
    lastNg(s.last_ng);
  }

  function onVerdict(v) {
    const body = $("verdicts");
    if (!body) return;
    const tr = document.createElement("tr");
    tr.className = `verdict-${v.verdict}`;
    const hint = v.label ? v.label : (v.reason || "");
    for (const value of [v.time || "", v.seq ?? "", v.verdict, num(v.score, 4), num(v.threshold, 4), hint]) {
      const td = document.createElement("td");
      td.textContent = String(value);
      tr.appendChild(td);
    }
    body.prepend(tr);
    while (body.rows.length > KEEP) body.deleteRow(body.rows.length - 1);
  }

  function parse(handler) {
    return (event) => {
      try { handler(JSON.parse(event.data)); } catch (err) { console.warn("edge_ad live:", err); }
    };
  }

  if (!window.EventSource) return;
  const source = new EventSource("/events");
  source.addEventListener("state", parse(onState));
  source.addEventListener("verdict", parse(onVerdict));
  source.onerror = () => {
    const feed = $("live-feed");
    if (feed) { feed.textContent = "reconnecting…"; feed.className = "state state-stale"; }
  };
})();

// rgcd explorer: five views over `rgcd serve`'s read-only routes. No library, no network beyond this
// server. Views are picked by the address's hash: #user/<id>?at=..., #item/<photo:id>?at=..., #space,
// #report, #platform. Text from the data is always set as text (never parsed as HTML).
"use strict";

const state = { overview: null, report: null, projection: null };

// -- small helpers ---------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// replaceChildren with h's rules: arrays flattened, null / false left out
const fill = (el, ...children) => el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));

async function get(path) {
  const resp = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await resp.json();
  if (!resp.ok) throw new Error(`${resp.status} ${body.error || ""}: ${body.message || resp.statusText}`);
  return body;
}

const fmt = (v, d = 4) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
const main = () => document.getElementById("main");
const fail = (err) => h("p", { class: "error" }, String(err.message || err));
const itemLink = (id) => h("a", { class: "item", href: id.startsWith("photo:") ? `#item/${id}` : `#room/${id}` }, id);
const knowledge = (k) => [k.vertical_domain, k.key_subject, k.content_theme].filter(Boolean).join(" · ") || "–";

function params(query) {
  const out = {};
  for (const [k, v] of new URLSearchParams(query || "")) out[k] = v;
  return out;
}

function table(headers, rows, attrs) {
  return h("table", attrs || {},
    h("thead", {}, h("tr", {}, headers.map((c) => h("th", { class: c.num ? "num" : null }, c.label || c)))),
    h("tbody", {}, rows));
}

// -- 1. a user ----------------------------------------------------------------------------------------

async function userView(arg, query) {
  const ov = state.overview;
  const q = params(query);
  const picked = ov.users.find((u) => String(u.user_id) === arg);
  const userId = arg || (ov.users[0] && String(ov.users[0].user_id)) || "";
  const at = q.at || (picked && picked.at) || (ov.users[0] && !arg && ov.users[0].at) || ov.default_at;
  const k = q.k || ov.k;
  const idInput = h("input", { id: "user-id", value: userId, size: 10 });
  const atInput = h("input", { id: "user-at", value: at, size: 24 });
  const kInput = h("input", { id: "user-k", value: k, size: 4 });
  const go = () => { location.hash = `#user/${idInput.value.trim()}?at=${encodeURIComponent(atInput.value.trim())}&k=${kInput.value}`; };
  const pick = h("select", { id: "user-pick", onchange: (e) => {
    const u = ov.users[e.target.selectedIndex - 1];
    if (u) location.hash = `#user/${u.user_id}?at=${encodeURIComponent(u.at)}&k=${kInput.value}`;
  } }, h("option", {}, "pick a user…"),
  ov.users.map((u) => h("option", { selected: String(u.user_id) === userId },
    `${u.user_id}${u.cold_start === true ? " (cold start)" : u.cold_start === false ? " (live history)" : ""} — ${u.why}`)));
  main().replaceChildren(h("div", { class: "controls" },
    h("label", {}, "suggested", pick), h("label", {}, "user_id", idInput),
    h("label", {}, "at (request time, UTC)", atInput), h("label", {}, "k", kInput),
    h("button", { onclick: go }, "Show")), h("div", { id: "user-body" }, h("p", { class: "muted" }, "Loading…")));
  if (!userId) return;
  const enc = encodeURIComponent(at);
  try {
    const [user, model, baseline] = await Promise.all([
      get(`/explore/api/user/${userId}?at=${enc}`),
      get(`/retrieve/user/${userId}?at=${enc}&k=${k}`),
      get(`/explore/api/popular?at=${enc}&k=${k}`),
    ]);
    const ids = [...new Set([...model.candidates, ...baseline.candidates].map((c) => c.item_id))];
    const facts = ids.length ? (await get(`/explore/api/items?ids=${ids.join(",")}`)).items : {};
    renderUser(user, model, baseline, facts);
  } catch (err) {
    document.getElementById("user-body").replaceChildren(fail(err));
  }
}

function renderUser(user, model, baseline, facts) {
  const entered = new Set(user.entered.map((e) => e.item_id));
  const rankOf = (list) => list.candidates.map((c, i) => (entered.has(c.item_id) ? i + 1 : null)).filter(Boolean);
  const profile = h("div", { class: "card", id: "user-profile" },
    h("strong", {}, `user ${user.user_id}`), " ",
    h("span", { class: user.cold_start ? "badge cold" : "badge warm", id: "cold-start" },
      user.cold_start ? "cold start: no live session before this time" : `${user.live_sessions_before} live sessions before`),
    " ", h("span", { class: "muted" }, `${user.short_video_plays_before} short-video plays before · `,
      user.has_vector ? `user vector of ${user.vector_version}` : "no user vector (retrieval falls back)"),
    h("div", { class: "summary", id: "entered-summary" }, user.entered.length
      ? [`entered ${user.entered.length} room(s) in the ${user.window_h} h after ${user.at}: `,
        user.entered.map((e) => e.item_id).join(", "), ` — the model has them at rank ${rankOf(model).join(", ") || "none of top " + model.candidates.length}`,
        `, the baseline at rank ${rankOf(baseline).join(", ") || "none of top " + baseline.candidates.length}`]
      : `entered no room in the ${user.window_h} h after ${user.at}`));
  const recent = table(["short video", "title", "category", "teacher: vertical · subject · theme"],
    user.recent_videos.map((v) => h("tr", {}, h("td", {}, itemLink(v.item_id)), h("td", {}, v.title || "–"),
      h("td", {}, v.category || "–"), h("td", {}, knowledge(v)))));
  const history = table(["room", "entered at", "title", "category"],
    user.live_history.map((v) => h("tr", {}, h("td", {}, itemLink(v.item_id)), h("td", {}, v.at),
      h("td", {}, v.title || "–"), h("td", {}, v.category || "–"))));
  document.getElementById("user-body").replaceChildren(profile,
    h("div", { class: "grid2" },
      candidates("model", `Published model ${model.model_version} — source ${model.source}`, model, facts, entered, true),
      candidates("baseline", "Baseline: the most popular rooms on air", baseline, facts, entered, false)),
    h("div", { class: "grid2" },
      h("div", { class: "card" }, h("h3", {}, "Recent short videos (as retrieval reads them online)"),
        user.recent_videos.length ? recent : h("p", { class: "muted" }, "none")),
      h("div", { class: "card" }, h("h3", {}, "Live history before this time (newest first)"),
        user.live_history.length ? history : h("p", { class: "muted" }, "none: a cold-start user"))));
}

function candidates(id, title, answer, facts, entered, withReason) {
  const rows = answer.candidates.map((c, i) => {
    const f = facts[c.item_id] || {};
    return h("tr", { class: entered.has(c.item_id) ? "entered" : null, "data-item": c.item_id },
      h("td", { class: "num" }, i + 1),
      h("td", {}, itemLink(c.item_id), entered.has(c.item_id) ? [" ", h("span", { class: "badge entered" }, "entered")] : null),
      h("td", {}, f.title || "–", h("div", { class: "reason" }, f.category || "", f.key_subject ? ` · ${knowledge(f)}` : "")),
      h("td", { class: "num" }, fmt(c.score)),
      withReason ? h("td", { class: "reason" }, c.reason) : null);
  });
  const headers = ["#", "room", "title", { label: "score", num: true }].concat(withReason ? ["why"] : []);
  return h("div", { class: "card", id: `candidates-${id}` }, h("h3", {}, title),
    h("p", { class: "muted" }, `${answer.candidates.length} rooms on air at ${answer.at}`),
    table(headers, rows, { class: "candidates" }));
}

// -- 2. a short video (I2I), and a room's card -------------------------------------------------------------

async function itemView(arg, query) {
  const ov = state.overview;
  const q = params(query);
  const itemId = arg || ov.videos[0] || "";
  const at = q.at || ov.default_at;
  const idInput = h("input", { id: "item-id", value: itemId, size: 16 });
  const atInput = h("input", { id: "item-at", value: at, size: 24 });
  const go = () => { location.hash = `#item/${idInput.value.trim()}?at=${encodeURIComponent(atInput.value.trim())}`; };
  const pick = h("select", { onchange: (e) => { if (e.target.value) location.hash = `#item/${e.target.value}?at=${encodeURIComponent(atInput.value)}`; } },
    h("option", { value: "" }, "pick a short video…"), ov.videos.map((v) => h("option", { value: v, selected: v === itemId }, v)));
  main().replaceChildren(h("div", { class: "controls" }, h("label", {}, "suggested", pick),
    h("label", {}, "short video (photo:<id>)", idInput), h("label", {}, "at (UTC)", atInput),
    h("button", { onclick: go }, "Show")), h("div", { id: "item-body" }, h("p", { class: "muted" }, "Loading…")));
  if (!itemId) return;
  try {
    const [item, answer] = await Promise.all([get(`/explore/api/item/${itemId}`),
      get(`/retrieve/item/${itemId}?at=${encodeURIComponent(at)}&k=${ov.k}`)]);
    const ids = answer.candidates.map((c) => c.item_id);
    const facts = ids.length ? (await get(`/explore/api/items?ids=${ids.join(",")}`)).items : {};
    document.getElementById("item-body").replaceChildren(itemCard(item),
      candidates("i2i", `Rooms for ${itemId} (I2I, ${answer.model_version})`, answer, facts, new Set(), true));
  } catch (err) {
    document.getElementById("item-body").replaceChildren(fail(err));
  }
}

function itemCard(item) {
  return h("div", { class: "card", id: "item-card" }, h("strong", {}, item.item_id), " ",
    h("span", { class: "muted" }, item.domain || "", item.author_id ? ` · author ${item.author_id}` : ""),
    h("div", {}, item.title || "(no title in the marts)"),
    h("div", { class: "muted" }, item.category || ""),
    h("div", {}, "teacher: ", knowledge(item), item.teacher_id ? ` (${item.teacher_id})` : ""),
    h("div", { class: "muted" }, item.has_vector ? `vector of ${item.model_version}` : "no published vector"));
}

async function roomView(arg) {
  main().replaceChildren(h("p", { class: "muted" }, "Loading…"));
  try {
    main().replaceChildren(itemCard(await get(`/explore/api/item/${arg}`)),
      h("p", { class: "muted" }, "A room is a candidate, not a query: open a short video or a user to retrieve rooms."));
  } catch (err) { main().replaceChildren(fail(err)); }
}

// -- 3. the space ----------------------------------------------------------------------------------------

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
  "#ea580c", "#4f46e5", "#0d9488", "#be123c", "#a16207", "#9333ea", "#0284c7", "#15803d"];

async function spaceView(_arg, query) {
  const q = params(query);
  main().replaceChildren(h("p", { class: "muted" }, "Loading the projection (computed once per published version)…"));
  try {
    state.projection = state.projection || await get("/explore/api/projection");
  } catch (err) { main().replaceChildren(fail(err)); return; }
  const p = state.projection;
  const space = q.space || "transferable";
  const colour = q.colour || (p.topic ? "topic" : "domain");
  const setQ = (k, v) => { const n = { space, colour, [k]: v }; location.hash = `#space?space=${n.space}&colour=${n.colour}`; };
  const spaceSel = h("select", { id: "space-pick", onchange: (e) => setQ("space", e.target.value) },
    ["transferable", "residual"].map((s) => h("option", { value: s, selected: s === space, disabled: !p[s] }, s)));
  const colourSel = h("select", { id: "colour-pick", onchange: (e) => setQ("colour", e.target.value) },
    ["domain", "category"].concat(p.topic ? ["topic"] : []).map((c) => h("option", { value: c, selected: c === colour },
      c === "topic" ? "latent topic (demo world)" : c)));
  const canvas = h("canvas", { id: "space-canvas", width: 900, height: 600 });
  const tip = h("div", { id: "tip" });
  const legend = h("div", { class: "legend", id: "legend" });
  const xy = p[space];
  main().replaceChildren(h("div", { class: "controls" }, h("label", {}, "space", spaceSel), h("label", {}, "colour by", colourSel),
    h("span", { class: "muted" }, `${p.n} items of ${p.model_version}; ${p.method}`,
      xy ? `; the two axes hold ${(xy.variance[0] * 100).toFixed(0)}% and ${(xy.variance[1] * 100).toFixed(0)}% of the variance` : "")),
  h("div", { id: "space-wrap" }, canvas, tip), legend,
  h("p", { class: "muted" }, "Hover a point to see the item; click it to open it (a short video opens its rooms)."));
  if (!xy) { legend.append(fail(new Error(`no ${space} vectors in this version`))); return; }
  drawSpace(canvas, tip, legend, p, xy, colour);
}

function drawSpace(canvas, tip, legend, p, xy, colour) {
  const values = colour === "topic" ? p.topic.map((t) => (t === null ? "none" : `topic ${t}`))
    : colour === "category" ? p.category.map((c) => c || "none") : p.domain;
  const counts = new Map();
  values.forEach((v) => counts.set(v, (counts.get(v) || 0) + 1));
  const keys = [...counts.keys()].sort((a, b) => counts.get(b) - counts.get(a));
  const colourOf = new Map(keys.map((k, i) => [k, i < PALETTE.length ? PALETTE[i] : "#9ca3af"]));
  const ctx = canvas.getContext("2d");
  const pad = 20;
  const [minX, maxX] = [Math.min(...xy.x), Math.max(...xy.x)];
  const [minY, maxY] = [Math.min(...xy.y), Math.max(...xy.y)];
  const sx = (x) => pad + ((x - minX) / (maxX - minX || 1)) * (canvas.width - 2 * pad);
  const sy = (y) => canvas.height - pad - ((y - minY) / (maxY - minY || 1)) * (canvas.height - 2 * pad);
  const px = xy.x.map(sx);
  const py = xy.y.map(sy);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.globalAlpha = 0.7;
  for (let i = 0; i < px.length; i++) {
    ctx.fillStyle = colourOf.get(values[i]);
    ctx.beginPath();
    if (p.domain[i] === "live") ctx.rect(px[i] - 3, py[i] - 3, 6, 6); else ctx.arc(px[i], py[i], 2.6, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.globalAlpha = 1;
  canvas.dataset.drawn = String(px.length);
  fill(legend, h("span", {}, "■ room  ● short video"), keys.slice(0, PALETTE.length).map((k) =>
    h("span", {}, h("i", { style: `background:${colourOf.get(k)}` }), `${k} (${counts.get(k)})`)),
  keys.length > PALETTE.length ? h("span", { class: "muted" }, `+${keys.length - PALETTE.length} more in grey`) : null);
  const nearest = (ev) => {
    const r = canvas.getBoundingClientRect();
    const x = (ev.clientX - r.left) * (canvas.width / r.width);
    const y = (ev.clientY - r.top) * (canvas.height / r.height);
    let best = -1; let bestD = 64;
    for (let i = 0; i < px.length; i++) {
      const d = (px[i] - x) ** 2 + (py[i] - y) ** 2;
      if (d < bestD) { bestD = d; best = i; }
    }
    return [best, x, y];
  };
  canvas.onmousemove = (ev) => {
    const [i, x, y] = nearest(ev);
    if (i < 0) { tip.style.display = "none"; return; }
    tip.textContent = `${p.item_id[i]} · ${p.domain[i]} · ${p.category[i] || "no category"}${p.topic ? ` · topic ${p.topic[i]}` : ""}`;
    tip.style.left = `${x + 12}px`; tip.style.top = `${y + 8}px`; tip.style.display = "block";
  };
  canvas.onmouseleave = () => { tip.style.display = "none"; };
  canvas.onclick = (ev) => {
    const [i] = nearest(ev);
    if (i >= 0) location.hash = p.item_id[i].startsWith("photo:") ? `#item/${p.item_id[i]}` : `#room/${p.item_id[i]}`;
  };
}

// -- 4. the yardstick --------------------------------------------------------------------------------

const SLICE_TITLE = { all: "Overall", cold_start: "Cold-start users", tail: "Tail items", not_linked: "Not linked",
  cold_start_not_linked: "Cold-start, not linked", new_streamer: "New streamers", off_topic: "Off topic" };

async function reportView(_arg, query) {
  main().replaceChildren(h("p", { class: "muted" }, "Loading…"));
  let r;
  try { r = state.report = await get("/explore/api/report"); } catch (err) { main().replaceChildren(fail(err)); return; }
  if (!r.run || !r.protocols) { main().replaceChildren(h("p", { class: "muted" }, r.message || "no report")); return; }
  const q = params(query);
  const metrics = [...new Set(Object.values(r.protocols).flatMap((models) => Object.values(models)
    .flatMap((slices) => Object.values(slices).flatMap((m) => Object.keys(m)))))].sort();
  const metric = q.metric || (metrics.includes("NDCG@10") ? "NDCG@10" : metrics[0]);
  const sel = h("select", { id: "metric-pick", onchange: (e) => { location.hash = `#report?metric=${e.target.value}`; } },
    metrics.map((m) => h("option", { selected: m === metric }, m)));
  const parts = [h("div", { class: "controls" }, h("label", {}, "metric", sel),
    h("span", { class: "muted" }, `run ${r.run}, ${r.created || ""}, seeds ${JSON.stringify(r.seeds)} (mean ± std over seeds)`))];
  for (const [protocol, models] of Object.entries(r.protocols)) {
    // every slice the report names (an empty one shows –), in the report's order
    const slices = [...new Set(Object.values(models).flatMap((bySlice) => Object.keys(bySlice)))];
    parts.push(h("h2", {}, protocol), h("p", { class: "muted" }, "cases: ",
      slices.map((s) => `${s} ${(r.cases[protocol] || {})[s] ?? "?"}`).join(", ")));
    // the best model per slice in bold; the oracle (an upper bound, not a model) never is
    const contenders = Object.keys(models).filter((m) => m !== "oracle");
    const best = Object.fromEntries(slices.map((s) => [s, contenders.reduce((a, m) =>
      ((models[m][s] || {})[metric] ?? -1) > ((models[a][s] || {})[metric] ?? -1) ? m : a, contenders[0])]));
    const rows = Object.entries(models).map(([model, bySlice]) => h("tr", { class: model === "oracle" ? "muted" : null },
      h("td", {}, model === "oracle" ? "oracle (upper bound, not a model)" : model),
      slices.map((s) => {
        const v = (bySlice[s] || {})[metric];
        const sd = ((((r.std || {})[protocol] || {})[model] || {})[s] || {})[metric];
        return h("td", { class: `num${best[s] === model && v !== undefined ? " best" : ""}`, "data-protocol": protocol,
          "data-model": model, "data-slice": s, "data-metric": metric, "data-value": v ?? "" },
        v === undefined ? "–" : fmt(v), sd !== null && sd !== undefined ? h("span", { class: "muted" }, ` ±${fmt(sd)}`) : null);
      })));
    parts.push(h("div", { class: "card" }, table(["model"].concat(slices.map((s) => ({ label: SLICE_TITLE[s] || s, num: true }))),
      rows, { class: "report", "data-protocol": protocol })));
    const iv = (r.intervals || {})[protocol];
    if (iv) parts.push(intervalsTable(protocol, iv, metric, slices));
    const share = (r.oracle_share || {})[protocol];
    if (share) parts.push(shareTable(protocol, share, slices));
  }
  const plots = r.plots.map((name) => h("img", { src: `/explore/api/report/plot/${name}`, alt: name, title: name, loading: "lazy" }));
  parts.push(h("h2", {}, "Plots"), h("div", { class: "plots" }, plots));
  main().replaceChildren(...parts);
}

function intervalsTable(protocol, iv, metric, slices) {
  const m = ["NDCG@10", "HR@10"].includes(metric) ? metric : "NDCG@10";
  const models = [...new Set(Object.values(iv).flatMap((s) => Object.keys(s.models || {})))];
  const rows = models.map((model) => h("tr", {}, h("td", {}, model), slices.map((s) => {
    const d = (((iv[s] || {}).models || {})[model] || {})[m];
    return h("td", { class: "num" }, d ? `${d.delta >= 0 ? "+" : ""}${fmt(d.delta)} [${fmt(d.lo)}, ${fmt(d.hi)}]${d.significant ? " *" : ""}` : "–");
  })));
  const base = h("tr", {}, h("td", { class: "muted" }, "against"), slices.map((s) => h("td", { class: "num muted" }, (iv[s] || {}).baseline || "–")));
  return h("div", { class: "card" }, h("h3", {}, `${protocol}: Δ${m} to the slice's strongest baseline, 95% paired bootstrap interval (* holds after Holm)`),
    table(["model"].concat(slices.map((s) => ({ label: SLICE_TITLE[s] || s, num: true }))), [base, ...rows]));
}

function shareTable(protocol, share, slices) {
  const rows = Object.entries(share).map(([model, bySlice]) => h("tr", {}, h("td", {}, model),
    slices.map((s) => h("td", { class: "num" }, fmt(((bySlice || {})[s] || {})["NDCG@10"], 3)))));
  return h("div", { class: "card" }, h("h3", {}, `${protocol}: share of the oracle's NDCG@10 (the demo world's latent truth; an upper bound, not a model)`),
    table(["model"].concat(slices.map((s) => ({ label: SLICE_TITLE[s] || s, num: true }))), rows));
}

// -- 5. the platform ---------------------------------------------------------------------------------

async function platformView() {
  main().replaceChildren(h("p", { class: "muted" }, "Loading…"));
  let p;
  try { p = await get("/explore/api/platform"); } catch (err) { main().replaceChildren(fail(err)); return; }
  const m = p.models;
  const versions = table(["collection", "model version", "rows", "validated", "published at", "alias"],
    m.collections.map((c) => h("tr", {}, h("td", {}, c.collection), h("td", {}, c.model_version), h("td", { class: "num" }, c.rows),
      h("td", {}, c.validated ? "yes" : "no"), h("td", {}, c.published_at || "–"),
      h("td", {}, c.serving ? h("span", { class: "badge warm" }, `${m.alias} →`) : ""))), { id: "versions" });
  const history = p.alias_history.length ? table(["at", "action", "model version", "collection", "previous"],
    p.alias_history.slice().reverse().map((e) => h("tr", {}, h("td", {}, e.at), h("td", {}, e.action), h("td", {}, e.model_version),
      h("td", {}, e.collection), h("td", {}, e.previous || "–"))))
    : h("p", { class: "muted" }, "no switch logged yet (publish and rollback log them from now on)");
  const run = p.last_run.length ? table(["stage", "figures", { label: "seconds", num: true }, { label: "peak MiB", num: true }],
    p.last_run.map((s) => h("tr", {}, h("td", {}, s.ok ? s.stage : `✗ ${s.stage}`), h("td", { class: "reason" }, s.line),
      h("td", { class: "num" }, s.seconds), h("td", { class: "num" }, Math.round(s.peak_bytes / 2 ** 20)))), { id: "last-run" })
    : h("p", { class: "muted" }, "no run logged in this workspace yet (`rgcd run` logs each stage)");
  const quarantine = table(["file", { label: "rows", num: true }, "reasons"],
    p.quarantine.map((q) => h("tr", {}, h("td", {}, q.file), h("td", { class: "num" }, q.rows),
      h("td", { class: "reason" }, q.reasons.map((r) => `${r.reason}: ${r.rows}`).join("; ")))), { id: "quarantine" });
  const fs = p.feature_services;
  const now = Date.parse(fs.now);
  const age = (t) => { if (!t) return "never"; const hrs = (now - Date.parse(t)) / 3.6e6; return hrs < 48 ? `${hrs.toFixed(1)} h ago` : `${(hrs / 24).toFixed(1)} days ago`; };
  const services = table(["service", "views (features)", "for"], fs.services.map((s) => h("tr", {}, h("td", {}, s.name),
    h("td", {}, s.views.map((v) => `${v.name} (${v.features})`).join(", ")), h("td", { class: "reason" }, s.description || ""))), { id: "services" });
  const views = table(["view", "online", { label: "features", num: true }, "TTL", "materialized until", "freshness"],
    fs.views.map((v) => h("tr", {}, h("td", {}, v.name), h("td", {}, v.online ? "yes" : "no"), h("td", { class: "num" }, v.features),
      h("td", {}, v.ttl_s ? `${(v.ttl_s / 86400).toFixed(0)} d` : "none"), h("td", {}, v.materialized_until || "–"),
      h("td", {}, v.online ? age(v.materialized_until) : "offline only"))), { id: "views" });
  main().replaceChildren(
    h("h2", {}, "Model versions"), h("div", { class: "card" }, versions),
    h("h2", {}, "Alias history (publish / rollback)"), h("div", { class: "card" }, history),
    h("h2", {}, "Last run"), h("div", { class: "card" }, run),
    h("h2", {}, "Ingest quarantine"), h("div", { class: "card" }, p.quarantine.length ? quarantine : h("p", { class: "muted" }, "nothing quarantined")),
    h("h2", {}, "Feature services"), h("div", { class: "card" }, services),
    h("h2", {}, "Feature views and freshness"), h("div", { class: "card" }, views));
}

// -- routing -------------------------------------------------------------------------------------------

const VIEWS = { user: userView, item: itemView, room: roomView, space: spaceView, report: reportView, platform: platformView };

async function route() {
  const hash = location.hash.replace(/^#/, "") || "user";
  const [path, query] = hash.split("?");
  const [view, ...rest] = path.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active",
    a.dataset.view === view || (view === "room" && a.dataset.view === "item")));
  document.body.dataset.view = view;
  document.body.dataset.ready = "";
  await (VIEWS[view] || userView)(arg, query);
  document.body.dataset.ready = view;
}

async function start() {
  try {
    state.overview = await get("/explore/api/overview");
  } catch (err) {
    main().replaceChildren(fail(err));
    document.body.dataset.ready = "error";
    return;
  }
  document.getElementById("version").textContent = `serving ${state.overview.model_version}` +
    (state.overview.cut ? ` · cut ${state.overview.cut.slice(0, 10)}` : "");
  window.addEventListener("hashchange", route);
  await route();
}

start();

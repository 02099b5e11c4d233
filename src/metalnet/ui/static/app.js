// metalnet dashboard: reads and changes everything through the /v1 API, polling it
// once a second. Every value from the server is put into the page as text
// (textContent, text nodes, attributes): nothing is ever parsed as HTML.
"use strict";

const POLL_MS = 1000;
const CHART_WINDOW_S = 300;
const CHART_BINS = 30;
const SVG_NS = "http://www.w3.org/2000/svg";

const state = {
  me: null, // {admin, project, actor}
  view: "fabric",
  selected: null, // {switch, interface} of the port whose details are shown
  timelineOf: null, // instance name
  depth: [], // [seconds since epoch, queue depth] sampled at each fabric poll
  timer: null,
  generation: 0, // a poll of an older generation schedules no successor
  polls: 0,
  shown: {}, // view -> the data it was last drawn from; unchanged data is not redrawn
};

const $ = (id) => document.getElementById(id);

// An element with properties and children; strings become text nodes.
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function table(target, headers, rows) {
  target.replaceChildren(
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, rows),
  );
}

// The server's times are UTC; SQLite hands them back without a zone.
function parseTime(text) {
  return Date.parse(/(Z|[+-]\d\d:\d\d)$/.test(text) ? text : `${text}Z`);
}

// API ----------------------------------------------------------------------------

class SignedOut extends Error {}

function csrfValue() {
  const entry = document.cookie.split("; ").find((c) => c.startsWith("metalnet_csrf="));
  return entry ? entry.slice("metalnet_csrf=".length) : "";
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-Metalnet-CSRF"] = csrfValue();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && path !== "/ui/session") {
    showSignIn();
    throw new SignedOut();
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const message = data && data.error ? data.error.message : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return data;
}

// Sign-in ------------------------------------------------------------------------

function showSignIn(message = "") {
  stopPolling();
  state.me = null;
  for (const view of document.querySelectorAll(".view")) view.hidden = true;
  $("tabs").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  $("signin").hidden = false;
  $("signin-error").textContent = message;
}

async function signIn(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  try {
    await api("POST", "/ui/session", { token });
  } catch (error) {
    $("signin-error").textContent = error.message;
    return;
  }
  $("token").value = "";
  await start();
}

async function signOut() {
  await api("DELETE", "/ui/session").catch(() => null);
  showSignIn("Signed out.");
}

async function start() {
  try {
    state.me = await api("GET", "/ui/session");
  } catch (error) {
    showSignIn(error instanceof SignedOut ? "" : error.message);
    return;
  }
  Object.assign(state, { selected: null, timelineOf: null, depth: [] }); // not the last user's
  $("signin").hidden = true;
  $("tabs").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = state.me.admin ? "admin" : `project ${state.me.project}`;
  document.body.classList.toggle("is-admin", state.me.admin);
  for (const node of document.querySelectorAll(".admin-only")) node.hidden = !state.me.admin;
  await fillSpawnForm();
  show(state.view);
}

// Views and polling ---------------------------------------------------------------

const RENDER = { fabric: pollFabric, nodes: pollNodes, changes: pollChanges };

function show(view) {
  state.view = view;
  for (const tab of document.querySelectorAll(".tab")) {
    tab.classList.toggle("active", tab.dataset.view === view);
  }
  for (const name of Object.keys(RENDER)) $(`view-${name}`).hidden = name !== view;
  refresh();
}

function stopPolling() {
  clearTimeout(state.timer);
  state.timer = null;
  state.generation += 1;
}

// Poll now, and from then on POLL_MS after each poll ends.
function refresh() {
  state.shown = {};
  stopPolling();
  poll();
}

// Whether `data` differs from what `part` was last drawn from (and remember it), so
// an unchanged page is left alone: hovering and clicking are not disturbed every second.
function changed(part, data) {
  const key = JSON.stringify(data);
  if (state.shown[part] === key) return false;
  state.shown[part] = key;
  return true;
}

async function poll() {
  const view = state.view;
  const generation = state.generation;
  try {
    await RENDER[view]();
    state.polls += 1;
    $("live").textContent = `live · updated ${new Date().toLocaleTimeString()}`;
    $("live").dataset.polls = String(state.polls);
  } catch (error) {
    if (error instanceof SignedOut) return;
    $("live").textContent = `not updated: ${error.message}`;
  }
  if (state.me && state.generation === generation) state.timer = setTimeout(poll, POLL_MS);
}

// Fabric -----------------------------------------------------------------------------

const KIND_TAG = { service: "svc", parking: "park", unknown: "?" };
const KIND_TEXT = {
  service: "service VLAN",
  parking: "parking",
  unknown: "unknown / not ours",
  project: "project network",
};

function hue(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
  return (h * 7) % 360;
}

function portNumber(interfaceName) {
  const match = interfaceName.match(/(\d+)$/);
  return match ? match[1] : interfaceName;
}

function whatText(port) {
  const what = port.in;
  if (what.kind === "project") return `project ${what.project} / network ${what.network}`;
  return KIND_TEXT[what.kind];
}

function desiredText(port) {
  const vlan = port.desired_vlan ?? "none";
  return port.desired_enabled === false ? `${vlan}, port disabled` : String(vlan);
}

function syncText(port) {
  if (port.in_sync === null) return "device not read";
  return port.in_sync ? "in sync" : "DRIFT";
}

function portTitle(sw, port) {
  const lines = [
    `${sw} ${port.interface}`,
    `in: ${whatText(port)}`,
    `node: ${port.node ?? "none"}`,
    `desired VLAN: ${desiredText(port)}`,
    `actual: ${port.actual ? port.actual.text : "not configured"}`,
    syncText(port),
  ];
  if (port.last_commit) {
    const c = port.last_commit;
    lines.push(`last commit: ${c.at} VLAN ${c.vlan} ${c.ok ? "ok" : "FAILED"} ${c.seconds}s`);
  }
  return lines.join("\n");
}

function portBox(sw, port, extraClass = "") {
  const kind = port.in.kind;
  const drift = port.in_sync === false;
  const classes = ["port", `kind-${kind}`, extraClass];
  if (drift) classes.push("drift");
  if (port.in_sync === null) classes.push("unread");
  const disabled = port.desired_enabled === false;
  if (disabled) classes.push("disabled");
  const selected = state.selected;
  if (selected && selected.switch === sw && selected.interface === port.interface) {
    classes.push("selected");
  }
  const box = el(
    "button",
    {
      type: "button",
      class: classes.join(" "),
      title: portTitle(sw, port),
      "data-switch": sw,
      "data-interface": port.interface,
      "data-kind": kind,
      "data-project": port.in.project ?? "",
      "data-drift": String(drift),
      "data-disabled": String(disabled),
      onclick: () => {
        state.selected = { switch: sw, interface: port.interface };
        refresh();
      },
    },
    el("span", { class: "num", text: portNumber(port.interface) }),
    el("span", { class: "tag", text: kind === "project" ? port.in.project : KIND_TAG[kind] }),
    drift ? el("span", { class: "mark", text: "!" }) : null,
  );
  if (kind === "project") box.style.setProperty("--hue", String(hue(port.in.project)));
  return box;
}

function legend(projects) {
  const sample = (kind, project, extra = "") => ({
    interface: "n",
    in: { kind, project },
    in_sync: extra === "drift" ? false : extra === "unread" ? null : true,
    desired_enabled: extra !== "disabled",
  });
  const items = [
    ["service VLAN", sample("service")],
    ["parking", sample("parking")],
    ["unknown / not ours", sample("unknown")],
    ...projects.map((p) => [`project ${p}`, sample("project", p)]),
    ["drift: device differs", sample("service", undefined, "drift")],
    ["device not read", sample("service", undefined, "unread")],
    ["disabled: its node may still run", sample("service", undefined, "disabled")],
  ];
  $("legend").replaceChildren(
    ...items.map(([text, port]) => {
      const box = portBox("", port);
      box.disabled = true;
      box.removeAttribute("title");
      box.querySelector(".num").textContent = "";
      return el("span", { class: "item" }, box, el("span", { text }));
    }),
  );
}

function portDetail(fabric) {
  const aside = $("port-detail");
  const sel = state.selected;
  const sw = sel && fabric.switches.find((s) => s.name === sel.switch);
  const port = sw && sw.ports.find((p) => p.interface === sel.interface);
  if (!port) {
    aside.hidden = true;
    return;
  }
  const c = port.last_commit;
  const i = port.instance;
  const rows = [
    ["switch", sw.name],
    ["port", port.interface],
    ["in", whatText(port)],
    ["node", port.node ? `${port.node} (${port.node_state})` : "none"],
    ["instance", i ? `${i.name} of ${i.project}: ${i.state}, step ${i.step}` : "none"],
    ["desired VLAN", desiredText(port)],
    ["actual", port.actual ? port.actual.text : "not configured"],
    ["state", syncText(port)],
    ["last commit", c ? `${c.at}: VLAN ${c.vlan}, ${c.ok ? "ok" : "FAILED"}, ${c.seconds}s, ${c.size} port(s)` : "none"],
  ];
  aside.replaceChildren(
    el("h3", { text: `${sw.name} ${port.interface}` }),
    el("dl", {}, rows.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
  );
  aside.hidden = false;
}

async function pollFabric() {
  const fabric = await api("GET", "/v1/fabric");
  sampleDepth(fabric.queue_depth);
  if (!changed("fabric", fabric)) return;
  const projects = new Set();
  const panels = fabric.switches.map((sw) => {
    for (const p of sw.ports) if (p.in.project) projects.add(p.in.project);
    return el(
      "div",
      { class: "switch", "data-switch": sw.name },
      el("h3", { text: `${sw.name} · ${sw.ports.length} ports` }),
      sw.error ? el("p", { class: "error", text: sw.error }) : null,
      el("div", { class: "panel" }, sw.ports.map((p) => portBox(sw.name, p))),
    );
  });
  legend([...projects].sort());
  $("switches").replaceChildren(
    ...(panels.length ? panels : [el("p", { class: "hint", text: "No ports to show." })]),
  );
  $("queue").textContent =
    fabric.queue_depth === null ? "" : `switch queue: ${fabric.queue_depth} change(s) waiting`;
  portDetail(fabric);
}

async function dryRun() {
  const target = $("dry-run-result");
  target.replaceChildren(el("p", { class: "hint", text: "Reading every switch…" }));
  try {
    const reports = await api("POST", "/v1/reconcile/dry-run");
    const rows = reports.flatMap((r) =>
      r.error
        ? [el("tr", {}, el("td", { text: r.switch }), el("td", { class: "failed", colspan: 4, text: r.error }))]
        : r.drift.map((d) =>
            el(
              "tr",
              {},
              [d.switch, d.interface, d.node ?? "", d.expected_vlan, d.actual_vlan ?? "none"].map((v) =>
                el("td", { text: v }),
              ),
            ),
          ),
    );
    const checked = reports.reduce((n, r) => n + r.ports_checked, 0);
    const t = el("table");
    table(t, ["switch", "port", "node", "expected VLAN", "actual VLAN"], rows);
    target.replaceChildren(
      el("h3", { text: `Reconcile dry-run: ${rows.length} drifting of ${checked} ports checked` }),
      t,
    );
  } catch (error) {
    if (!(error instanceof SignedOut)) target.replaceChildren(el("p", { class: "error", text: error.message }));
  }
}

// Nodes and instances ---------------------------------------------------------------

function actionButton(text, run) {
  return el("button", {
    type: "button",
    text,
    onclick: async () => {
      $("action-error").textContent = "";
      try {
        await run();
      } catch (error) {
        if (!(error instanceof SignedOut)) $("action-error").textContent = error.message;
      }
      refresh();
    },
  });
}

async function pollNodes() {
  const [nodes, instances] = await Promise.all([
    state.me.admin ? api("GET", "/v1/nodes") : Promise.resolve([]),
    api("GET", "/v1/instances?all=true"),
  ]);
  if (state.timelineOf) {
    await renderTimeline(state.timelineOf).catch((error) => {
      if (error instanceof SignedOut) throw error;
      $("timeline").replaceChildren(el("p", { class: "error", text: error.message }));
    });
  }
  if (!changed("nodes", [nodes, instances])) return;
  const byNode = new Map(
    instances.filter((i) => i.state !== "deleted").map((i) => [i.node, i]),
  );
  if (state.me.admin) {
    table(
      $("nodes"),
      ["node", "state", "reason", "switch", "port", "desired VLAN", "instance", "step", ""],
      nodes.map((n) => {
        const inst = byNode.get(n.name);
        const path = `/v1/nodes/${encodeURIComponent(n.name)}/clear`;
        return el(
          "tr",
          { "data-node": n.name },
          [n.name, n.state, n.state_reason ?? "", n.switch ?? "", n.port ?? "", n.desired_vlan ?? ""].map(
            (v) => el("td", { text: v }),
          ),
          el("td", { text: inst ? inst.name : "" }),
          el("td", { text: inst ? inst.step : "" }),
          el("td", {}, n.state !== "quarantined" ? null : actionButton("clear", () => api("POST", path))),
        );
      }),
    );
  }
  const shown = instances.slice(-50).reverse();
  table(
    $("instances"),
    ["instance", "project", "network", "node", "state", "step", "error", "created", ""],
    shown.map((i) =>
      el(
        "tr",
        { "data-instance": i.name },
        el(
          "td",
          {},
          el("a", {
            class: "instance",
            text: i.name,
            onclick: () => {
              state.timelineOf = i.name;
              refresh();
            },
          }),
        ),
        [i.project, i.network, i.node, i.state].map((v) => el("td", { text: v })),
        el("td", { text: i.step }),
        el("td", { class: i.error ? "failed" : "", text: i.error ?? "" }),
        el("td", { text: i.created_at }),
        el(
          "td",
          {},
          i.state === "deleted" || i.state === "deleting"
            ? null
            : actionButton("delete", () => api("DELETE", `/v1/instances/${encodeURIComponent(i.name)}`)),
        ),
      ),
    ),
  );
}

// Steps from the instance's history: a "started" event opens a step, "done" (with its
// seconds) or a failure message closes it; other events are markers.
function steps(history) {
  const rows = [];
  const open = new Map();
  for (const event of history) {
    const at = parseTime(event.at);
    if (event.message === "started") {
      const row = { step: event.step, start: at, end: null, status: "running", message: "" };
      open.set(event.step, row);
      rows.push(row);
    } else if (open.has(event.step)) {
      const row = open.get(event.step);
      open.delete(event.step);
      row.end = at;
      row.status = event.message === "done" ? "done" : "failed";
      if (row.status === "failed") row.message = event.message;
      if (event.seconds !== null) row.seconds = event.seconds;
    } else {
      const failed = event.message.includes("failed");
      rows.push({ step: event.step, start: at, end: at, status: failed ? "failed" : "event", message: event.message });
    }
  }
  return rows;
}

async function renderTimeline(name) {
  const inst = await api("GET", `/v1/instances/${encodeURIComponent(name)}`);
  const running = inst.state === "building" || inst.state === "deleting";
  if (!changed("timeline", inst) && !running) return;
  const rows = steps(inst.history);
  const now = Date.now();
  const t0 = rows.length ? rows[0].start : now;
  const t1 = Math.max(t0 + 1, ...rows.map((r) => r.end ?? now));
  const span = t1 - t0;
  $("timeline-title").textContent = `Timeline of ${inst.name} (${inst.project}): ${inst.state}, step ${inst.step}`;
  const lines = rows.map((r) => {
    const seconds = r.seconds ?? ((r.end ?? now) - r.start) / 1000;
    const bar = el("div", { class: `bar ${r.status}`, title: `${r.step}: ${r.status}` });
    bar.style.left = `${(100 * (r.start - t0)) / span}%`;
    bar.style.width = `${(100 * ((r.end ?? now) - r.start)) / span}%`;
    const label = r.status === "event" ? r.message : r.status;
    return el(
      "div",
      { class: "row", "data-step": r.step, "data-status": r.status },
      el("span", { text: r.step }),
      el("div", { class: "track" }, bar),
      el("span", { class: r.status === "failed" ? "failed" : "", text: `${seconds.toFixed(2)} s ${label}` }),
      r.status === "failed" ? el("span", { class: "message", text: r.message }) : null,
    );
  });
  $("timeline").replaceChildren(el("div", { class: "timeline", "data-instance": inst.name }, lines));
}

async function fillSpawnForm() {
  const projects = state.me.admin ? await api("GET", "/v1/projects") : [{ name: state.me.project }];
  $("spawn-project").replaceChildren(...projects.map((p) => el("option", { value: p.name, text: p.name })));
  await fillNetworks();
  if (state.me.admin) {
    const nodes = await api("GET", "/v1/nodes");
    $("spawn-node").replaceChildren(
      el("option", { value: "", text: "any available" }),
      ...nodes.filter((n) => n.state === "available").map((n) => el("option", { value: n.name, text: n.name })),
    );
  }
}

async function fillNetworks() {
  const project = $("spawn-project").value || state.me.project;
  const networks = project ? await api("GET", `/v1/projects/${encodeURIComponent(project)}/networks`) : [];
  $("spawn-network").replaceChildren(
    ...networks.map((n) => el("option", { value: n.name, text: `${n.name} (VLAN ${n.vlan})` })),
  );
}

async function spawn(event) {
  event.preventDefault();
  $("action-error").textContent = "";
  const body = {
    name: $("spawn-name").value,
    network: $("spawn-network").value,
    image_url: $("spawn-image").value,
    sha256: $("spawn-sha").value,
  };
  if (state.me.admin) {
    body.project = $("spawn-project").value;
    if ($("spawn-node").value) body.node = $("spawn-node").value;
  }
  try {
    const inst = await api("POST", "/v1/instances", body);
    state.timelineOf = inst.name;
    await fillSpawnForm();
  } catch (error) {
    if (!(error instanceof SignedOut)) $("action-error").textContent = error.message;
  }
  refresh();
}

// Change log ------------------------------------------------------------------------

function sampleDepth(depth) {
  if (depth === null) return;
  const now = Date.now() / 1000;
  state.depth.push([now, depth]);
  while (state.depth.length && state.depth[0][0] < now - CHART_WINDOW_S) state.depth.shift();
}

function chart(changes) {
  const width = 640;
  const height = 160;
  const pad = 24;
  const now = Date.now() / 1000;
  const start = now - CHART_WINDOW_S;
  const bin = CHART_WINDOW_S / CHART_BINS;
  const ok = new Array(CHART_BINS).fill(0);
  const failed = new Array(CHART_BINS).fill(0);
  for (const c of changes) {
    const at = parseTime(c.at) / 1000;
    if (at < start) continue;
    const i = Math.min(CHART_BINS - 1, Math.floor((at - start) / bin));
    (c.ok ? ok : failed)[i] += 1;
  }
  const top = Math.max(1, ...ok.map((n, i) => n + failed[i]), ...state.depth.map(([, d]) => d));
  const x = (t) => pad + ((t - start) / CHART_WINDOW_S) * (width - 2 * pad);
  const y = (n) => height - pad - (n / top) * (height - 2 * pad);
  const bars = [];
  const barWidth = (width - 2 * pad) / CHART_BINS - 2;
  for (let i = 0; i < CHART_BINS; i++) {
    const left = x(start + i * bin) + 1;
    bars.push(svg("rect", { class: "commits", x: left, y: y(ok[i]), width: barWidth, height: y(0) - y(ok[i]) }));
    if (failed[i]) {
      const base = y(ok[i]);
      bars.push(svg("rect", { class: "commits failed", x: left, y: base - (y(0) - y(failed[i])), width: barWidth, height: y(0) - y(failed[i]) }));
    }
  }
  const depthPath = state.depth.map(([t, d], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(d).toFixed(1)}`).join(" ");
  $("chart").replaceChildren(
    svg(
      "svg",
      { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "commits and queue depth over the last five minutes" },
      svg("line", { class: "axis", x1: pad, y1: y(0), x2: width - pad, y2: y(0) }),
      ...bars,
      svg("path", { class: "depth", d: depthPath || "M0,0" }),
      svg("text", { x: pad, y: 14 }, `commits per ${bin} s (blue ok, red failed) and switch queue depth (line); max ${top}`),
      svg("text", { x: pad, y: height - 6 }, "-5 min"),
      svg("text", { x: width - pad - 20, y: height - 6 }, "now"),
    ),
  );
}

async function pollChanges() {
  if (!state.me.admin) {
    $("changes-note").textContent = "The switch change log is shown to admins only.";
    return;
  }
  const [changes, queue] = await Promise.all([
    api("GET", "/v1/switch-changes?limit=500"),
    api("GET", "/v1/switch-queue"),
  ]);
  sampleDepth(queue.depth);
  chart(changes);
  if (!changed("changes", changes)) return;
  const perSwitch = new Map();
  for (const c of changes) {
    const s = perSwitch.get(c.switch) ?? { commits: 0, failed: 0, ports: 0, seconds: 0 };
    s.commits += 1;
    s.failed += c.ok ? 0 : 1;
    s.ports += c.ports.length;
    s.seconds += c.seconds;
    perSwitch.set(c.switch, s);
  }
  table(
    $("switch-summary"),
    ["switch", "commits", "failed", "ports changed", "mean latency (s)"],
    [...perSwitch].sort().map(([name, s]) =>
      el("tr", {}, [name, s.commits, s.failed, s.ports, (s.seconds / s.commits).toFixed(3)].map((v) => el("td", { text: v }))),
    ),
  );
  table(
    $("changes"),
    ["at", "switch", "size", "ports", "result", "latency (s)", "message"],
    changes.slice(0, 100).map((c) =>
      el(
        "tr",
        {},
        el("td", { text: c.at }),
        el("td", { text: c.switch }),
        el("td", { text: c.ports.length }),
        el("td", { text: c.ports.map((p) => `${p.interface}→${p.vlan}`).join(" ") }),
        el("td", { class: c.ok ? "ok" : "failed", text: c.ok ? "ok" : "FAILED" }),
        el("td", { text: c.seconds }),
        el("td", { text: c.message }),
      ),
    ),
  );
}

// Wiring ----------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", signOut);
  $("dry-run").addEventListener("click", dryRun);
  $("spawn-form").addEventListener("submit", spawn);
  $("spawn-project").addEventListener("change", fillNetworks);
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => show(tab.dataset.view));
  }
  start();
});

// The wasmjob console: a client of the API (/v1) and its event stream,
// signed in with a bearer token kept in this tab's session storage.
// Everything a tenant or a job wrote (names, args, results, logs, reasons)
// is shown as text, never as markup.

const STATES = ["queued", "started", "retry", "success", "failure", "revoked"];
const PAGE = 50;

const session = {
  get token() { return sessionStorage.getItem("wasmjob.token"); },
  get role() { return sessionStorage.getItem("wasmjob.role"); },
  set(token, role) { sessionStorage.setItem("wasmjob.token", token); sessionStorage.setItem("wasmjob.role", role); },
  clear() { sessionStorage.removeItem("wasmjob.token"); sessionStorage.removeItem("wasmjob.role"); },
};

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body, contentType) {
  const headers = { Authorization: `Bearer ${session.token}` };
  let payload;
  if (body instanceof ArrayBuffer) { payload = body; headers["Content-Type"] = contentType; }
  else if (body !== undefined) { payload = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
  const response = await fetch(path, { method, headers, body: payload });
  const text = await response.text();
  let value = text;
  try { value = text ? JSON.parse(text) : null; } catch (_) { /* a text answer */ }
  if (!response.ok) {
    const error = value && value.error ? value.error : { code: "error", message: text || response.statusText };
    if (response.status === 401) { session.clear(); }
    throw new ApiError(response.status, error.code, error.message);
  }
  return value;
}

// A node: el("a", {href: "#"}, "text", child...). Strings become text.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const $ = (selector) => document.querySelector(selector);
const time = (ms) => (ms === null || ms === undefined ? "-" : new Date(ms).toLocaleString());
const json = (value) => (value === undefined || value === null ? "-" : JSON.stringify(value, null, 2));
const badge = (state) => el("span", { class: `state ${state}`, "data-state": state }, state);
function took(task) {
  if (!task.started_at || !task.finished_at) return "-";
  const ms = task.finished_at - task.started_at;
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function toast(message) {
  const box = $("#toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 5000);
}

function page(...children) {
  const main = $("#main");
  main.replaceChildren(...children.flat().filter((child) => child !== null && child !== undefined));
  return main;
}

// The event stream: fetch (EventSource cannot send a bearer token), read as
// Server-Sent Events, resumed from the last id after a drop.
const events = {
  listeners: new Set(),
  last: null,
  controller: null,
  on(listener) { this.listeners.add(listener); return () => this.listeners.delete(listener); },
  stop() { if (this.controller) this.controller.abort(); this.controller = null; },
  async start() {
    this.stop();
    const controller = new AbortController();
    this.controller = controller;
    const live = $("#live");
    live.hidden = false;
    while (this.controller === controller && session.token && session.role !== "admin") {
      try {
        const headers = { Authorization: `Bearer ${session.token}` };
        if (this.last) headers["Last-Event-ID"] = this.last;
        const response = await fetch("/v1/events", { headers, signal: controller.signal });
        if (!response.ok) throw new Error(`the stream answered ${response.status}`);
        live.classList.remove("off");
        // What happened before the stream (re)opened is not in it: re-read.
        for (const listener of this.listeners) listener("open", {});
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            this.dispatch(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch (e) {
        if (controller.signal.aborted) return;
      }
      live.classList.add("off");
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  },
  dispatch(block) {
    let id = null, type = null, data = "";
    for (const line of block.split("\n")) {
      const at = line.indexOf(":");
      if (at <= 0) continue;
      const field = line.slice(0, at), value = line.slice(at + 1).trimStart();
      if (field === "id") id = value;
      else if (field === "event") type = value;
      else if (field === "data") data += value;
    }
    if (!type) return;
    if (id) this.last = id;
    // Events were dropped (`lost`) or may have been (`reset`): the page
    // re-reads what it shows, as on a (re)connect.
    if (type === "lost" || type === "reset") type = "open";
    let parsed = null;
    try { parsed = JSON.parse(data); } catch (_) { return; }
    for (const listener of this.listeners) listener(type, parsed);
  },
};

// Calls `refresh(ids)` at most every 300 ms with the ids gathered meanwhile.
function gather(refresh) {
  let ids = new Set(), timer = null;
  return (id) => {
    ids.add(id);
    if (timer) return;
    timer = setTimeout(() => { const batch = ids; ids = new Set(); timer = null; refresh(batch); }, 300);
  };
}

let leave = () => {};
// How the last upload went: kept while the jobs page re-renders.
let uploadNote = { text: "", error: false };
// An upload from the jobs page is under way (its end renders the page).
let uploadBusy = false;

async function route() {
  leave();
  leave = () => {};
  if (!session.token) return signin();
  $("#nav").hidden = false;
  $("#signout").hidden = false;
  $("#who").textContent = session.role === "admin" ? "admin" : "tenant token";
  for (const link of document.querySelectorAll("[data-admin]")) link.hidden = session.role !== "admin";
  for (const link of document.querySelectorAll("[data-tenant]")) link.hidden = session.role === "admin";
  const [, name, arg] = location.hash.split("?")[0].split("/");
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.page === name || link.dataset.page === `${name}s`);
  try {
    if (name === "activity") return await activity();
    if (session.role === "admin") {
      if (name === "tenants" || !name || name === "tasks" || name === "jobs") return await tenants();
    }
    if (name === "task" && arg) return await task(decodeURIComponent(arg));
    if (name === "workflow" && arg) return await workflow(decodeURIComponent(arg));
    if (name === "jobs") return await jobs();
    if (name === "job" && arg) return await job(decodeURIComponent(arg));
    return await tasks();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signin(e.message);
    page(el("p", { class: "error" }, e.message));
  }
}

function signin(problem) {
  events.stop();
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  $("#live").hidden = true;
  $("#who").textContent = "";
  const input = el("input", { id: "token", type: "password", placeholder: "wj_...", autocomplete: "off", required: true });
  const error = el("p", { class: "error", id: "signin-error" }, problem || "");
  const form = el("form", { class: "panel signin", onsubmit: async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    session.set(token, "tenant");
    try {
      await api("GET", "/v1/jobs");
    } catch (e) {
      if (e.status === 403 && /admin/.test(e.message)) {
        session.set(token, "admin");
      } else {
        session.clear();
        error.textContent = e.status === 401 ? `Cannot sign in: ${e.message}.` : e.message;
        return;
      }
    }
    if (session.role !== "admin") events.start();
    const target = session.role === "admin" ? "#/tenants" : "#/tasks";
    if (location.hash === target) route(); else location.hash = target;
  } },
  el("h1", {}, "Sign in"),
  el("p", { class: "muted" }, "With a tenant's token (read or write) or the admin's."),
  el("label", {}, "Token", input), el("p"), el("button", { type: "submit", id: "signin" }, "Sign in"), error);
  page(form);
  input.focus();
}

// The task list: filters, one page at a time, rows kept current by the events.
async function tasks() {
  const query = new URLSearchParams(location.hash.split("?")[1] || "");
  const stateSelect = el("select", { name: "state" }, el("option", { value: "" }, "any state"),
    STATES.map((s) => el("option", { value: s, selected: query.get("state") === s }, s)));
  const jobInput = el("input", { name: "job", placeholder: "any job", value: query.get("job") || "" });
  const after = el("input", { name: "after", type: "datetime-local", value: query.get("after") || "" });
  const before = el("input", { name: "before", type: "datetime-local", value: query.get("before") || "" });
  const filters = el("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (stateSelect.value) next.set("state", stateSelect.value);
    if (jobInput.value.trim()) next.set("job", jobInput.value.trim());
    if (after.value) next.set("after", after.value);
    if (before.value) next.set("before", before.value);
    location.hash = `#/tasks?${next}`;
  } }, el("label", {}, "State", stateSelect), el("label", {}, "Job", jobInput),
    el("label", {}, "Queued after", after), el("label", {}, "Queued before", before),
    el("button", { type: "submit" }, "Filter"));

  const params = new URLSearchParams({ limit: PAGE });
  if (query.get("state")) params.set("state", query.get("state"));
  if (query.get("job")) params.set("job", query.get("job"));
  if (query.get("after")) params.set("queued_after", new Date(query.get("after")).getTime());
  if (query.get("before")) params.set("queued_before", new Date(query.get("before")).getTime());
  if (query.get("cursor")) params.set("before", query.get("cursor"));
  const answer = await api("GET", `/v1/tasks?${params}`);

  const body = el("tbody", { id: "tasks" });
  const rows = new Map();
  const row = (t) => el("tr", { "data-task": t.id },
    el("td", {}, el("a", { href: `#/task/${t.id}` }, t.id)), el("td", {}, t.job), el("td", {}, badge(t.state)),
    el("td", { class: "num" }, t.attempt), el("td", {}, time(t.queued_at)), el("td", { class: "num" }, took(t)),
    el("td", {}, t.reason || ""));
  const empty = el("p", { class: "muted", id: "empty" }, "No task matches.");
  const put = (t, fresh) => {
    empty.remove();
    const next = row(t);
    if (fresh) next.classList.add("flash");
    const old = rows.get(t.id);
    if (old) old.replaceWith(next); else body.prepend(next);
    rows.set(t.id, next);
    while (rows.size > PAGE) { const [id, last] = rows.entries().next().value; last.remove(); rows.delete(id); }
  };
  for (const t of answer.tasks.slice().reverse()) put(t, false);

  const firstPage = !query.get("cursor");
  const wanted = (t) => (!query.get("state") || t.state === query.get("state"))
    && (!query.get("job") || t.job === query.get("job").toLowerCase());
  const refresh = gather(async (ids) => {
    for (const id of ids) {
      try {
        const t = await api("GET", `/v1/tasks/${id}`);
        if (rows.has(id) || (firstPage && wanted(t))) put(t, true);
      } catch (_) { /* gone: pruned or not ours */ }
    }
  });
  leave = events.on((type, event) => {
    if (type === "open") for (const id of rows.keys()) refresh(id);
    if (!event.task) return;
    if (rows.has(event.task) || (firstPage && type === "task-queued")) refresh(event.task);
  });

  const queueJob = el("input", { id: "queue-job", placeholder: "job", required: true });
  const queueArgs = el("input", { id: "queue-args", placeholder: '{"a": 1}', value: "{}" });
  const queueStatus = el("span", { id: "queue-status", class: "muted" });
  const queue = el("form", { class: "filters", id: "queue", onsubmit: async (event) => {
    event.preventDefault();
    let args;
    try { args = JSON.parse(queueArgs.value || "{}"); } catch (e) { queueStatus.textContent = `Args are not JSON: ${e.message}`; return; }
    try {
      const answer = await api("POST", "/v1/tasks", { job: queueJob.value.trim(), args });
      queueStatus.textContent = `Queued task ${answer.id}.`;
      refresh(answer.id);
    } catch (e) { queueStatus.textContent = e.message; }
  } }, el("label", {}, "Job", queueJob), el("label", {}, "Args (JSON)", queueArgs),
    el("button", { type: "submit" }, "Queue"), queueStatus);

  const pager = el("div", { class: "pager" });
  if (answer.next) {
    const next = new URLSearchParams(query);
    next.set("cursor", answer.next);
    pager.append(el("a", { href: `#/tasks?${next}`, id: "older" }, "Older tasks →"));
  }
  page(el("h1", {}, "Tasks"), el("div", { class: "panel" }, el("h2", {}, "Queue a task"), queue), filters,
    el("table", {}, el("thead", {}, el("tr", {}, ["Id", "Job", "State", "Attempt", "Queued", "Took", "Reason"].map((h) => el("th", {}, h)))), body),
    rows.size ? null : empty, pager);
}

// One task: what it ran with, how it ended, its log and its tree.
async function task(id) {
  const [detail, tree, log] = await Promise.all([
    api("GET", `/v1/tasks/${encodeURIComponent(id)}`),
    api("GET", `/v1/tasks/${encodeURIComponent(id)}/tree`),
    api("GET", `/v1/tasks/${encodeURIComponent(id)}/logs`),
  ]);
  const t = detail;
  const ended = ["success", "failure", "revoked"].includes(t.state);
  const act = (label, path, kind) => el("button", { class: kind, id: label.toLowerCase(), onclick: async (event) => {
    event.target.disabled = true;
    try {
      const answer = await api("POST", path, {});
      toast(`Task ${id} is ${answer.state}.`);
    } catch (e) { toast(e.message); }
    route();
  } }, label);
  const actions = el("div", { class: "actions" },
    ended ? null : act("Revoke", `/v1/tasks/${id}/revoke`, "danger"),
    ["failure", "revoked"].includes(t.state) && !t.workflow ? act("Retry", `/v1/tasks/${id}/retry`) : null);

  const byParent = new Map();
  for (const node of tree.tasks) {
    const list = byParent.get(node.from_task) || [];
    list.push(node);
    byParent.set(node.from_task, list);
  }
  const branch = (node) => el("li", {}, node.id === t.id ? el("strong", {}, node.id) : el("a", { href: `#/task/${node.id}` }, node.id),
    " ", node.job, " ", badge(node.state),
    (byParent.get(node.id) || []).length ? el("ul", { class: "tree" }, byParent.get(node.id).map(branch)) : null);
  const top = tree.tasks.filter((node) => node.id === t.id);

  page(el("h1", {}, "Task ", el("span", { id: "task-id" }, t.id), " ", el("span", { id: "task-state" }, badge(t.state))),
    actions,
    el("div", { class: "row" },
      el("div", { class: "panel" }, el("dl", {},
        el("dt", {}, "Job"), el("dd", {}, el("a", { href: `#/job/${encodeURIComponent(t.job)}` }, t.job)),
        el("dt", {}, "Version"), el("dd", {}, t.version),
        el("dt", {}, "Reason"), el("dd", { id: "task-reason" }, t.reason || "-"),
        el("dt", {}, "Attempt"), el("dd", {}, `${t.attempt} of at most ${t.max_retries + 1}`),
        el("dt", {}, "Queue"), el("dd", { id: "task-queue" }, t.queue),
        el("dt", {}, "Priority"), el("dd", {}, t.priority),
        el("dt", {}, "Queued"), el("dd", {}, time(t.queued_at)),
        el("dt", {}, "Runs at"), el("dd", {}, time(t.run_at)),
        el("dt", {}, "Expires"), el("dd", {}, time(t.expires_at)),
        el("dt", {}, "Started"), el("dd", {}, time(t.started_at)),
        el("dt", {}, "Finished"), el("dd", {}, time(t.finished_at)),
        el("dt", {}, "Progress"), el("dd", { id: "task-progress" }, t.progress ? `${Math.round(t.progress.fraction * 100)}% ${t.progress.message}` : "-"),
        el("dt", {}, "Fuel"), el("dd", {}, t.fuel ?? "-"),
        el("dt", {}, "Wall time"), el("dd", {}, t.wall_time_us == null ? "-" : `${t.wall_time_us} µs`),
        el("dt", {}, "HTTP"), el("dd", {}, t.http ? `${t.http.requests} requests, ${t.http.bytes_sent} B sent, ${t.http.bytes_received} B received` : "-"),
        el("dt", {}, "Queued by"), el("dd", {}, t.from_task ? el("a", { href: `#/task/${t.from_task}` }, t.from_task) : "-"),
        el("dt", {}, "Workflow"), el("dd", { id: "task-workflow" }, t.workflow ? el("a", { href: `#/workflow/${t.workflow}` }, t.workflow) : "-"),
      )),
      el("div", { class: "panel" }, el("h2", {}, "Args"), el("pre", { id: "task-args" }, json(t.args)),
        el("h2", {}, t.error ? "Error" : "Result"), el("pre", { id: "task-result" }, t.error ? t.error : json(t.result)))),
    el("div", { class: "panel" }, el("h2", {}, "Log"), el("pre", { id: "task-log" }, log || "(empty)")),
    el("div", { class: "panel" }, el("h2", {}, "Attempts"), attemptsTable(detail.attempts)),
    el("div", { class: "panel" }, el("h2", {}, `Tree of ${tree.root}`),
      el("ul", { class: "tree root", id: "task-tree" }, top.map(branch)),
      tree.truncated ? el("p", { class: "muted" }, "More tasks not shown.") : null));

  const members = new Set(tree.tasks.map((node) => node.id));
  const refresh = gather(() => route());
  leave = events.on((type, event) => {
    if (type === "open" || (event.task && (members.has(event.task) || type === "task-queued"))) refresh(event.task);
  });
}

// A workflow as a whole: its state, then its stages side by side, each
// step with its state and result; live.
async function workflow(id) {
  const w = await api("GET", `/v1/workflows/${encodeURIComponent(id)}`);
  const step = (s) => el("li", { "data-step": s.id }, el("a", { href: `#/task/${s.id}` }, s.id), " ", s.job, " ", badge(s.state),
    s.result !== null && s.result !== undefined ? el("code", {}, " → ", JSON.stringify(s.result)) : null,
    s.reason && s.state !== "success" ? el("span", { class: "muted" }, ` (${s.reason})`) : null);
  page(el("h1", {}, "Workflow ", w.id, " ", el("span", { id: "workflow-state" }, badge(w.state))),
    el("div", { class: "panel" }, el("dl", {},
      el("dt", {}, "Created"), el("dd", {}, time(w.created_at)),
      el("dt", {}, "Reason"), el("dd", { id: "workflow-reason" }, w.reason || "-"),
      el("dt", {}, "Result"), el("dd", {}, el("pre", { id: "workflow-result" }, w.result === null || w.result === undefined ? "-" : json(w.result))))),
    el("div", { class: "row", id: "workflow-stages" }, w.stages.map((stage, i) => el("div", { class: "panel" },
      el("h2", {}, `Stage ${i + 1}`), el("ul", { class: "tree" }, stage.map(step))))));
  const members = new Set(w.stages.flat().map((s) => s.id));
  const refresh = gather(() => route());
  leave = events.on((type, event) => {
    if (type === "open" || (event.task && members.has(event.task))) refresh(event.task);
  });
}

// Every attempt of a task, oldest first; an attempt's log opens on demand.
function attemptsTable(attempts) {
  if (!attempts.length) return el("p", { class: "muted", id: "task-attempts" }, "None yet.");
  const micros = (us) => (us == null ? "-" : us < 1000 ? `${us} µs` : `${(us / 1000).toFixed(1)} ms`);
  return el("table", { id: "task-attempts" },
    el("thead", {}, el("tr", {}, ["#", "Ended as", "Reason", "Node", "Started", "Wall time", "Fuel", "Error"].map((h) => el("th", {}, h)))),
    el("tbody", {}, attempts.map((a) => el("tr", { "data-attempt": a.attempt },
      el("td", { class: "num" }, a.attempt), el("td", {}, badge(a.state)), el("td", {}, a.reason || "-"),
      el("td", {}, a.node || "-"), el("td", {}, time(a.started_at)), el("td", { class: "num" }, micros(a.wall_time_us)),
      el("td", { class: "num" }, a.fuel ?? "-"),
      el("td", {}, a.error || "", a.log ? el("details", {}, el("summary", {}, "log (its end)"), el("pre", {}, a.log)) : null)))));
}

// SVG: svg("rect", {x: 1}, child...).
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const W = 560, H = 180, PAD = 34;
const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

// Bars per minute, stacked by `series` ([field, class, label]).
function stacked(minutes, series, id) {
  const totals = minutes.map((m) => series.reduce((sum, [field]) => sum + m[field], 0));
  const top = Math.max(1, ...totals);
  const step = (W - PAD) / minutes.length;
  const bars = minutes.map((m, i) => {
    let y = H - 16;
    return series.map(([field, kind, label]) => {
      const h = ((H - 30) * m[field]) / top;
      y -= h;
      return m[field] ? svg("rect", { x: PAD + i * step, y, width: Math.max(1, step - 1), height: h, class: kind },
        svg("title", {}, `${clock(m.at)}: ${m[field]} ${label}`)) : null;
    });
  });
  return chart(id, top, minutes, bars, series.map(([, kind, label]) => [kind, label]));
}

// Lines per minute of `series` ([field, class, label]), log scale (waits
// span from 1 ms to an hour).
function lines(minutes, series, id) {
  const top = Math.max(1, ...minutes.flatMap((m) => series.map(([field]) => m[field] || 0)));
  const scale = (v) => (H - 16) - ((H - 30) * Math.log10(1 + v)) / Math.log10(1 + top);
  const step = (W - PAD) / minutes.length;
  // A line through the minutes that have a figure, and a dot on each (a
  // lone minute shows as its dot).
  const paths = series.map(([field, kind, label]) => {
    const points = minutes.map((m, i) => (m[field] == null ? null : [PAD + i * step + step / 2, scale(m[field]), m])).filter(Boolean);
    if (!points.length) return null;
    return [svg("polyline", { points: points.map(([x, y]) => `${x},${y}`).join(" "), class: `line ${kind}` }, svg("title", {}, label)),
      points.map(([x, y, m]) => svg("circle", { cx: x, cy: y, r: 2.5, class: kind }, svg("title", {}, `${clock(m.at)}: ${label} ≤ ${m[field]} ms`)))];
  });
  return chart(id, `${top} ms`, minutes, paths, series.map(([, kind, label]) => [kind, label]));
}

function chart(id, top, minutes, marks, legend) {
  const first = minutes[0], last = minutes[minutes.length - 1];
  return el("figure", { class: "chart", id },
    svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" },
      svg("line", { x1: PAD, y1: H - 16, x2: W, y2: H - 16, class: "axis" }),
      svg("text", { x: 2, y: 20, class: "tick" }, top),
      svg("text", { x: 2, y: H - 18, class: "tick" }, 0),
      first ? svg("text", { x: PAD, y: H - 2, class: "tick" }, clock(first.at)) : null,
      last ? svg("text", { x: W, y: H - 2, class: "tick", "text-anchor": "end" }, clock(last.at)) : null,
      marks),
    el("figcaption", {}, legend.map(([kind, label]) => el("span", { class: `key ${kind}` }, label))));
}

// Horizontal bars: `items` of [label, value], the largest first.
function ranking(items, unit, id) {
  const shown = items.filter(([, value]) => value > 0).slice(0, 10);
  if (!shown.length) return el("p", { class: "muted", id }, "Nothing in this window.");
  const top = Math.max(...shown.map(([, value]) => value));
  return el("table", { class: "ranking", id }, el("tbody", {}, shown.map(([label, value]) => el("tr", {},
    el("td", {}, label),
    el("td", { class: "bar" }, svg("svg", { viewBox: "0 0 100 10", preserveAspectRatio: "none" },
      svg("rect", { x: 0, y: 0, height: 10, width: Math.max(0.5, (100 * value) / top), class: "failed" === unit ? "failed" : "fuel" }))),
    el("td", { class: "num" }, value.toLocaleString())))));
}

// What the workers did per minute: throughput, waits, failures by job and
// fuel by tenant (the admin) or by job (a tenant).
async function activity() {
  const windows = [[15, "15 minutes"], [60, "hour"], [360, "6 hours"], [1440, "day"]];
  const asked = Number(new URLSearchParams(location.hash.split("?")[1] || "").get("minutes")) || 60;
  const a = await api("GET", `/v1/activity?minutes=${asked}`);
  const sum = (field) => a.minutes.reduce((total, m) => total + m[field], 0);
  const picker = el("div", { class: "actions" }, windows.map(([minutes, label]) =>
    el("a", { href: `#/activity?minutes=${minutes}`, class: minutes === asked ? "chip active" : "chip" }, `Last ${label}`)));
  const admin = session.role === "admin";
  page(el("h1", {}, "Activity"), picker,
    el("p", { class: "muted", id: "activity-totals" },
      `${sum("succeeded")} succeeded, ${sum("failed")} failed, ${sum("retried")} retried, ${sum("revoked")} revoked; ${sum("fuel").toLocaleString()} fuel.`),
    el("div", { class: "row" },
      el("div", { class: "panel" }, el("h2", {}, "Throughput (attempts ended per minute)"),
        stacked(a.minutes, [["succeeded", "ok", "succeeded"], ["retried", "warn", "retried"], ["failed", "failed", "failed"], ["revoked", "revoked", "revoked"]], "chart-throughput")),
      el("div", { class: "panel" }, el("h2", {}, "Latency (wait once due)"),
        lines(a.minutes, [["wait_p50_ms", "p50", "p50"], ["wait_p99_ms", "p99", "p99"]], "chart-latency"))),
    el("div", { class: "row" },
      el("div", { class: "panel" }, el("h2", {}, "Failures by job"),
        ranking(a.jobs.map((j) => [admin ? `${j.tenant} / ${j.job}` : j.job, j.failed]), "failed", "chart-failures")),
      el("div", { class: "panel" }, el("h2", {}, admin ? "Fuel by tenant" : "Fuel by job"),
        ranking(admin ? a.tenants.map((t) => [t.tenant, t.fuel]) : a.jobs.map((j) => [j.job, j.fuel]).sort((x, y) => y[1] - x[1]), "fuel", "chart-fuel"))));
  // Nodes write their counts every few seconds: read again meanwhile.
  const timer = setInterval(() => { if (location.hash.startsWith("#/activity")) route(); }, 10000);
  leave = () => clearInterval(timer);
}

// `fresh`: render even over a chosen file (the upload's end does).
async function jobs(fresh = false) {
  const [list, planned] = await Promise.all([api("GET", "/v1/jobs"), api("GET", "/v1/schedules")]);
  // Judged once the lists are in, not when asked: a render asked before a
  // file was chosen and ending after would replace the form, losing the
  // choice (and a submit would then send nothing).
  const chosen = $("#upload-file");
  if (!fresh && (uploadBusy || (chosen && chosen.files.length))) return;
  const table = (kind, items) => el("table", { id: `jobs-${kind}` },
    el("thead", {}, el("tr", {}, ["Name", "Version", "Registered", "Doc"].map((h) => el("th", {}, h)))),
    el("tbody", {}, items.map((j) => el("tr", { "data-job": j.name },
      el("td", {}, el("a", { href: `#/job/${encodeURIComponent(j.name)}` }, j.name)),
      el("td", {}, j.version.slice(0, 12)), el("td", {}, j.registered_at ? new Date(j.registered_at).toLocaleString() : "-"),
      el("td", {}, j.doc.split("\n")[0])))));
  const file = el("input", { type: "file", id: "upload-file", accept: ".wasm,application/wasm", required: true });
  const name = el("input", { id: "upload-name", placeholder: "optional: its job's name" });
  const status = el("p", { id: "upload-status", class: uploadNote.error ? "error" : "muted" }, uploadNote.text);
  const note = (text, error) => { uploadNote = { text, error }; status.textContent = text; status.className = error ? "error" : "muted"; };
  const upload = el("form", { class: "filters", id: "upload", onsubmit: async (event) => {
    event.preventDefault();
    if (!file.files.length) return;
    uploadBusy = true;
    note("Uploading…", false);
    try {
      const bytes = await file.files[0].arrayBuffer();
      const query = name.value.trim() ? `&name=${encodeURIComponent(name.value.trim())}` : "";
      let answer = await api("POST", `/v1/jobs?wait=60s${query}`, bytes, "application/wasm");
      // Still compiling: follow it until it ends.
      while (!answer.metadata && answer.state === "compiling") {
        note(`Upload ${answer.id.slice(0, 12)} is compiling (for ${answer.compiling_for || "a moment"})…`, false);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        answer = await api("GET", answer.location);
      }
      if (answer.metadata) note(`Registered ${answer.name} (version ${answer.version.slice(0, 12)}).`, false);
      else if (answer.state === "ready") note(`Registered ${answer.name} (version ${answer.id.slice(0, 12)}).`, false);
      else note(`Refused: ${answer.reason}`, true);
    } catch (e) { note(`Refused: ${e.message}`, true); }
    uploadBusy = false;
    jobs(true);
  } }, el("label", {}, "Component (.wasm)", file), el("label", {}, "Name", name), el("button", { type: "submit" }, "Upload"));
  const pending = list.uploads.length ? el("table", {}, el("tbody", {}, list.uploads.map((u) => el("tr", {},
    el("td", {}, u.id.slice(0, 12)), el("td", {}, u.name || "-"), el("td", {}, badge(u.state)),
    el("td", {}, u.state === "compiling" ? `for ${u.compiling_for}` : u.reason || ""))))) : null;
  page(el("h1", {}, "Jobs"), el("div", { class: "panel" }, el("h2", {}, "Upload a job"), upload, status),
    el("h2", {}, "Regular"), list.regular.length ? table("regular", list.regular) : el("p", { class: "muted" }, "None."),
    el("h2", {}, "Periodic"), list.periodic.length ? table("periodic", list.periodic) : el("p", { class: "muted" }, "None."),
    pending ? el("h2", {}, "Uploads not ready") : null, pending,
    el("h2", {}, "Schedules"), schedulesTable(planned.schedules));
  // Live: jobs() itself leaves the page as it is while a file is chosen or
  // an upload is under way.
  const refresh = gather(() => jobs());
  leave = events.on((type) => { if (type === "open" || type.startsWith("job-")) refresh(type); });
}

// A tenant's schedules (`/v1/schedules`), each with pause or resume and delete.
function schedulesTable(schedules) {
  if (!schedules.length) return el("p", { class: "muted", id: "schedules" }, "None: make one with `wasmjob schedule set` or PUT /v1/schedules/{name}.");
  const act = (method, path) => async () => {
    try { await api(method, path); jobs(); } catch (e) { toast(e.message); }
  };
  return el("table", { id: "schedules" },
    el("thead", {}, el("tr", {}, ["Name", "Job", "When", "Args", "Next", "Last", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, schedules.map((p) => {
      const path = `/v1/schedules/${encodeURIComponent(p.name)}`;
      const when = p.cron ? `cron "${p.cron}" in ${p.zone}` : `every ${p.every_ms} ms`;
      return el("tr", { "data-schedule": p.name },
        el("td", {}, p.name), el("td", {}, el("a", { href: `#/job/${encodeURIComponent(p.job)}` }, p.job)),
        el("td", {}, when), el("td", {}, el("code", {}, JSON.stringify(p.args))),
        el("td", {}, p.paused ? el("span", { class: "state revoked" }, "paused") : p.next_run_at ? new Date(p.next_run_at).toLocaleString() : "-"),
        el("td", {}, p.last_run_at ? new Date(p.last_run_at).toLocaleString() : "-"),
        el("td", {}, el("button", { onclick: act("POST", `${path}/${p.paused ? "resume" : "pause"}`) }, p.paused ? "Resume" : "Pause"),
          " ", el("button", { class: "danger", onclick: act("DELETE", path) }, "Delete")));
    })));
}

async function job(name) {
  const j = await api("GET", `/v1/jobs/${encodeURIComponent(name)}`);
  if (j.state === "compiling") {
    return page(el("h1", {}, j.name, " ", badge("queued")), el("p", {}, `Compiling (upload ${j.upload.id.slice(0, 12)}, for ${j.upload.compiling_for}).`));
  }
  const m = j.metadata;
  const kind = m.kind.type === "periodic" ? `periodic, every ${m.kind.run_every} ms`
    : m.kind.type === "cron" ? `periodic, cron "${m.kind.expression}" in ${m.kind.zone}` : "regular";
  page(el("h1", {}, j.name),
    el("div", { class: "row" },
      el("div", { class: "panel" }, el("dl", {},
        el("dt", {}, "Kind"), el("dd", {}, kind),
        el("dt", {}, "Version"), el("dd", {}, j.version),
        el("dt", {}, "Contract"), el("dd", {}, j.contract),
        el("dt", {}, "Next due"), el("dd", {}, j.next_due ? new Date(j.next_due).toLocaleString() : "-"),
        el("dt", {}, "Last run"), el("dd", {}, j.last_run ? new Date(j.last_run).toLocaleString() : "-"),
        el("dt", {}, "Overlap"), el("dd", {}, m.overlap),
        el("dt", {}, "Retries"), el("dd", {}, m.retry.max_retries),
        el("dt", {}, "Nodes ready"), el("dd", {}, `${j.nodes.ready} of ${j.nodes.alive} alive`),
        el("dt", {}, "Hosts"), el("dd", {}, j.allowed_hosts.join(", ") || "none"),
        el("dt", {}, "Missing secrets"), el("dd", {}, j.missing_secrets.join(", ") || "none"))),
      el("div", { class: "panel" }, el("h2", {}, "Doc"), el("pre", {}, m.doc || "-"))),
    el("div", { class: "panel" }, el("h2", {}, "Versions"), el("table", {}, el("tbody", {},
      j.versions.map((v) => el("tr", {}, el("td", {}, v.version), el("td", {}, v.registered_at ? new Date(v.registered_at).toLocaleString() : "-")))))),
    el("p", {}, el("a", { href: `#/tasks?job=${encodeURIComponent(j.name)}` }, "Its tasks →")));
}

async function tenants() {
  // The tenants' last hour, if it can be read: the page stands without it.
  const [list, usage] = await Promise.all([api("GET", "/v1/tenants"),
    api("GET", "/v1/activity?minutes=60").catch(() => ({ tenants: [] }))]);
  const used = new Map(usage.tenants.map((t) => [t.tenant, t]));
  const shown = ["max_running", "max_queued", "queue_rate", "max_fuel", "max_memory_bytes", "retention_ms"];
  const name = el("input", { id: "tenant-name", placeholder: "name", required: true, pattern: "[A-Za-z0-9_-]{1,64}" });
  const status = el("div", { id: "tenant-status" });
  const create = el("form", { class: "filters", onsubmit: async (event) => {
    event.preventDefault();
    try {
      await api("POST", "/v1/tenants", { name: name.value.trim(), quotas: {} });
      tenants();
    } catch (e) { status.replaceChildren(el("p", { class: "error" }, e.message)); }
  } }, el("label", {}, "New tenant", name), el("button", { type: "submit" }, "Create"));
  const token = (tenant) => el("button", { class: "secondary", onclick: async () => {
    try {
      const answer = await api("POST", `/v1/tenants/${encodeURIComponent(tenant)}/tokens`, { scope: "write" });
      status.replaceChildren(el("p", {}, `A write token for ${tenant}, shown this once:`), el("p", { class: "token" }, answer.token));
    } catch (e) { status.replaceChildren(el("p", { class: "error" }, e.message)); }
  } }, "New token");
  page(el("h1", {}, "Tenants"), el("div", { class: "panel" }, create, status),
    el("table", { id: "tenants" }, el("thead", {}, el("tr", {}, ["Name", ...shown, "Last hour", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, list.tenants.map((t) => {
        const u = used.get(t.name);
        return el("tr", { "data-tenant": t.name }, el("td", {}, t.name),
          shown.map((q) => el("td", { class: "num" }, t.quotas[q])),
          el("td", { class: "usage" }, u ? `${u.started} started, ${u.succeeded} succeeded, ${u.failed} failed, ${u.fuel.toLocaleString()} fuel` : "idle"),
          el("td", {}, token(t.name)));
      }))));
}

$("#signout").addEventListener("click", () => { session.clear(); events.stop(); location.hash = ""; route(); });
window.addEventListener("hashchange", route);
if (session.token && session.role !== "admin") events.start();
route();

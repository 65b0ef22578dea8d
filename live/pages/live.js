// hotline12345 live pages: the shared part (no build step, no framework, no CDN).
// Token: opened as /wallboard#token=hl_… (the fragment never reaches a server log) or typed in once;
// kept in this tab's sessionStorage and sent as a bearer header. The stream is read with fetch
// (EventSource cannot send a header), so the token never travels in a URL.
"use strict";
const Live = (() => {
  const KEY = "hotline_token";
  const state = {snap: null, skew: 0, listeners: [], status: () => {}};

  function token() {
    const m = location.hash.match(/token=([A-Za-z0-9_\-]+)/);
    if (m) {
      sessionStorage.setItem(KEY, m[1]);
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(KEY) || "";
  }

  function askToken(why) {
    const box = document.getElementById("login");
    if (!box) return;
    box.hidden = false;
    box.querySelector(".why").textContent = why || "";
    box.querySelector("form").onsubmit = (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(KEY, box.querySelector("input").value.trim());
      location.reload();
    };
  }

  async function api(path, options = {}) {
    const headers = Object.assign({"Authorization": "Bearer " + token()}, options.headers || {});
    if (options.body && !headers["Content-Type"]) headers["Content-Type"] = "application/json";
    const r = await fetch(path, Object.assign({}, options, {headers}));
    if (r.status === 401) {
      sessionStorage.removeItem(KEY);
      askToken("令牌无效或已过期");
    }
    return r;
  }

  // the server's clock, seconds (figures like the longest wait tick between events)
  function now() { return Date.now() / 1000 + state.skew; }

  function merge(parts) {
    const s = state.snap;
    for (const [key, value] of Object.entries(parts)) {
      if (["queues", "agents", "calls", "lines"].includes(key) && value && typeof value === "object") {
        s[key] = s[key] || {};
        for (const [id, v] of Object.entries(value)) {
          if (v === null) delete s[key][id]; else s[key][id] = v;
        }
      } else {
        s[key] = value;
      }
    }
  }

  function emit() { for (const f of state.listeners) f(state.snap); }

  async function snapshot() {
    const r = await api(Live.paths.snapshot);
    if (!r.ok) throw new Error("snapshot " + r.status);
    state.snap = await r.json();
    if (typeof state.snap.at === "number") state.skew = state.snap.at - Date.now() / 1000;
    emit();
  }

  // Server-Sent Events over fetch: "event:", "data:" lines, a blank line ends one message.
  async function stream() {
    const r = await api(Live.paths.stream, {headers: {"Accept": "text/event-stream"}});
    if (!r.ok || !r.body) throw new Error("stream " + r.status);
    state.status(true);
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      buf += dec.decode(value, {stream: true});
      let cut;
      while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut).replace(/^\r?\n\r?\n/, "");
        let event = "message", data = "";
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "") + "\n";
        }
        if (!data) continue;
        let msg;
        try { msg = JSON.parse(data); } catch (e) { continue; }
        if (event === "snapshot" || (msg && msg.center_name !== undefined && msg.parts === undefined)) {
          state.snap = msg;
        } else if (state.snap) {
          merge(msg.parts || msg);
        }
        if (msg && typeof msg.at === "number") state.skew = msg.at - Date.now() / 1000;
        emit();
      }
    }
  }

  async function run(onChange, onStatus) {
    state.listeners.push(onChange);
    state.status = onStatus || (() => {});
    if (!token()) { askToken(""); return; }
    for (;;) {
      try {
        await snapshot();
        await stream();
      } catch (e) {
        console.warn(e);
      }
      state.status(false);
      if (!token()) return;
      await new Promise((res) => setTimeout(res, 1000));  // the stream dropped: again from a snapshot
    }
  }

  function pct(v) { return v === null || v === undefined ? "—" : (v * 100).toFixed(1) + "%"; }
  function esc(s) {
    return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g,
      (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  }
  function clock(t) {
    const d = new Date(t * 1000);
    return d.toLocaleTimeString("zh-CN", {hour12: false, timeZone: Live.zone});
  }

  const namesEl = document.getElementById("names");
  const names = namesEl ? JSON.parse(namesEl.textContent) : {queues: {}, lines: {}};
  const queueName = (q) => (q && names.queues[q]) || q || "";
  const lineName = (n) => names.lines[n] || "";

  // an IVR path (ivr/menu.py's steps) in the center's words
  const STEPS = {"timeout": "未按键", "agent:0": "按0转人工", "agent:retries": "重试用完转人工", "repeat": "重听",
                 "back": "返回上级", "back:top": "返回主菜单", "speech:low": "语音未识别", "max_events": "操作过多"};
  function step(s) {
    if (STEPS[s]) return STEPS[s];
    const [kind, ...rest] = String(s).split(":");
    const arg = rest.join(":");
    switch (kind) {
      case "key": return "按" + arg;
      case "menu": return arg === "main" ? "主菜单" : "菜单 " + arg;
      case "speech": return "语音“" + arg + "”";
      case "line": return "热线 " + arg;
      case "route": return "转" + arg.replace(/^queue:([^/]+).*/, (m, q) => "队列 " + queueName(q));
      case "announce": return "播报";
      case "invalid": return "无效按键";
      case "closed": return "非服务时间";
      case "fail_open": return "转人工（兜底）";
      default: return s;
    }
  }

  return {run, api, now, pct, esc, clock, token, state, names, queueName, lineName, step,
          paths: {snapshot: "/api/v1/live", stream: "/api/v1/live/stream"}, zone: "Asia/Shanghai"};
})();

// The wallboard (大屏): live figures from the snapshot + SSE stream; red past the GB/T 33358 figures.
"use strict";
(() => {
  const body = document.body;
  const WAIT_RED = parseFloat(body.dataset.waitRed);
  const ANSWER_MIN = parseFloat(body.dataset.answerMin);
  Live.zone = body.dataset.zone || Live.zone;
  const $ = (id) => document.getElementById(id);
  const STATES = [["ready", "示闲"], ["ringing", "振铃"], ["talking", "通话"], ["wrap_up", "话后整理"],
                  ["busy", "示忙"], ["signed_out", "签出"]];

  function longest(q) {
    // ticks locally between events: now − the longest waiter's join time (server clock)
    if (!q.waiting || q.oldest_since === null || q.oldest_since === undefined) return 0;
    return Math.max(0, Live.now() - q.oldest_since);
  }

  function setText(id, text) { const el = $(id); if (el.textContent !== text) el.textContent = text; }

  function render(s) {
    if (!s) return;
    const c = s.center || {};
    const queues = Object.values(s.queues || {}).sort((a, b) => a.queue.localeCompare(b.queue));
    const worst = queues.reduce((m, q) => Math.max(m, longest(q)), 0);
    setText("waiting", String(c.waiting ?? "—"));
    setText("longest", Math.floor(worst) + " 秒");
    setText("talking", String(c.talking ?? "—"));
    setText("in_ivr", String(c.in_ivr ?? "—"));
    setText("calls_today", String(c.calls_today ?? "—"));
    setText("answer_rate", Live.pct(c.answer_rate));
    setText("within_rate", Live.pct(c.answered_within_rate));
    setText("abandon_rate", Live.pct(c.abandon_rate));
    $("t-longest").classList.toggle("red", worst > WAIT_RED);
    $("t-waiting").classList.toggle("red", worst > WAIT_RED);
    $("t-answer").classList.toggle("red", c.answer_rate !== null && c.answer_rate !== undefined && c.answer_rate < ANSWER_MIN);
    if (c.day) setText("day", c.day);

    const rows = queues.map((q) => {
      const w = longest(q);
      const red = w > WAIT_RED || (q.answer_rate !== null && q.answer_rate < ANSWER_MIN);
      return `<tr class="${red ? "red" : ""}" data-queue="${Live.esc(q.queue)}"><td>${Live.esc(Live.queueName(q.queue))}</td>` +
        `<td class="num waiting">${q.waiting}</td><td class="num">${Math.floor(w)} 秒</td><td class="num">${q.talking}</td>` +
        `<td class="num">${q.offered}</td><td class="num">${q.answered}</td><td class="num">${q.answered_within_15s}</td>` +
        `<td class="num">${q.abandoned}</td><td class="num">${Live.pct(q.answer_rate)}</td></tr>`;
    }).join("");
    const tbody = $("queues").querySelector("tbody");
    if (tbody.innerHTML !== rows) tbody.innerHTML = rows;

    const counts = {};
    for (const a of Object.values(s.agents || {})) counts[a.state] = (counts[a.state] || 0) + 1;
    const agents = STATES.map(([k, label]) => `<li><span>${label}</span><b>${counts[k] || 0}</b></li>`).join("");
    if ($("agents").innerHTML !== agents) $("agents").innerHTML = agents;

    const lines = Object.entries(s.lines || {}).sort((a, b) => b[1] - a[1]).slice(0, 8)
      .map(([n, k]) => `<li><span>${Live.esc(n)} <small>${Live.esc(Live.lineName(n))}</small></span><b>${k}</b></li>`).join("");
    if ($("lines").innerHTML !== lines) $("lines").innerHTML = lines;

    const seats = Object.values(s.agents || {}).sort((a, b) => a.agent.localeCompare(b.agent)).map((a) => {
      const secs = a.since ? Math.max(0, Math.floor(Live.now() - a.since)) : null;
      const dur = secs === null ? "" : secs >= 3600 ? Math.floor(secs / 3600) + "时" + Math.floor(secs % 3600 / 60) + "分"
        : Math.floor(secs / 60) + ":" + String(secs % 60).padStart(2, "0");
      return `<div class="seat s-${Live.esc(a.state)}"><b>${Live.esc(a.agent)}</b> ${Live.esc(a.name && a.name !== a.agent ? a.name : "")}` +
        `<span>${Live.esc(a.label)}${a.reason ? "·" + Live.esc(a.reason) : ""} ${dur}</span></div>`;
    }).join("");
    if ($("seats").innerHTML !== seats) $("seats").innerHTML = seats;

    chart(s.half_hours || []);
  }

  let lastChart = "";
  function chart(hh) {
    // drawn in the element's own pixels (no stretching: the labels keep their shape on any screen)
    const svg = $("chart");
    const W = Math.max(480, svg.clientWidth || 960), H = Math.max(120, svg.clientHeight || 200);
    const key = `${W}x${H}:` + hh.join(",");
    if (key === lastChart) return;
    lastChart = key;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const top = 22, base = H - 26, n = 48, bw = W / n;
    const max = Math.max(1, ...hh);
    let out = `<line x1="0" y1="${base}" x2="${W}" y2="${base}" class="axis"/>`;
    hh.forEach((v, i) => {
      const h = (base - top) * v / max;
      out += `<rect x="${(i * bw + 2).toFixed(1)}" y="${(base - h).toFixed(1)}" width="${(bw - 4).toFixed(1)}" height="${h.toFixed(1)}"><title>${String(Math.floor(i / 2)).padStart(2, "0")}:${i % 2 ? "30" : "00"} ${v}</title></rect>`;
      if (v > 0) out += `<text x="${(i * bw + bw / 2).toFixed(1)}" y="${(base - h - 5).toFixed(1)}" class="v">${v}</text>`;
    });
    for (let hr = 0; hr <= 24; hr += 3) {
      const anchor = hr === 0 ? "start" : hr === 24 ? "end" : "middle";
      out += `<text x="${(hr * 2 * bw).toFixed(1)}" y="${H - 5}" class="t" text-anchor="${anchor}">${hr}时</text>`;
    }
    svg.innerHTML = out;
    setText("chart-total", "共 " + hh.reduce((a, b) => a + b, 0) + " 通");
  }

  function status(up) {
    const el = $("link");
    el.textContent = up ? "实时" : "重连中";
    el.classList.toggle("down", !up);
  }

  setInterval(() => { setText("clock", Live.clock(Live.now())); render(Live.state.snap); }, 500);
  Live.run(render, status);
})();

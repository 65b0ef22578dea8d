// The agent's screen pop (座席弹屏): when this seat's phone rings from a queue, the call's context,
// the caller's earlier tickets and this call's ticket; the intake form saves into that ticket.
"use strict";
(() => {
  Live.zone = document.body.dataset.zone || Live.zone;
  const $ = (id) => document.getElementById(id);
  const wanted = new URLSearchParams(location.search).get("agent");  // a supervisor may pick a seat
  let me = null, shown = null, pop = null, filled = null, retryAt = 0, sug = null, sugTimer = null;

  function myAgent(s) {
    const agents = s.agents || {};
    if (wanted && agents[wanted]) return agents[wanted];
    const all = Object.values(agents);
    return all.length === 1 ? all[0] : null;
  }

  function set(id, text) { const el = $(id); const t = text === null || text === undefined || text === "" ? "—" : String(text); if (el.textContent !== t) el.textContent = t; }

  function render(s) {
    if (!s) return;
    const a = myAgent(s);
    if (!a) { set("state", "—"); return; }
    me = a.agent;
    set("seat", a.name && a.name !== a.agent ? `${a.agent} ${a.name}` : a.agent);
    set("state", a.label + (a.reason ? "·" + a.reason : ""));
    set("since", a.since ? "自 " + Live.clock(a.since) : "");
    const lid = a.ringing || a.call;
    const call = lid ? (s.calls || {})[lid] : null;
    if (lid && lid !== shown && call && call.queue && Date.now() >= retryAt) load(lid);  // a queue call rings here: pop
    if (pop) {
      const live = shown ? (s.calls || {})[shown] : null;
      const ringing = live && a.ringing === shown && a.call !== shown;
      $("pop").classList.toggle("ringing", !!ringing);
      set("pop-title", !live ? "已挂机 · 请完成受理登记" : ringing ? "来电振铃" : "通话中");
      if (!live) awaitSuggestion(shown);  // the transcript is made after the call: ask until it is there
    }
  }

  async function load(lid) {
    shown = lid;
    if (sugTimer !== null) { clearTimeout(sugTimer); sugTimer = null; }
    sug = null;
    let r;
    try {
      r = await Live.api(`/api/v1/calls/${encodeURIComponent(lid)}/screenpop`);
    } catch (e) {
      r = null;
    }
    if (shown !== lid) return;
    if (!r || !r.ok) { shown = null; retryAt = Date.now() + 2000; return; }  // again at a later change
    pop = await r.json();
    const c = pop.call || {};
    $("idle").hidden = true;
    for (const id of ["pop", "history", "intake"]) $(id).hidden = false;
    set("caller", c.caller);
    $("show-number").hidden = false;
    set("dialed", c.dialed);
    set("line", pop.line_name ? `${c.legacy_line} ${pop.line_name}` : c.legacy_line);
    set("ivr", (c.ivr_path || []).map(Live.step).join(" → "));
    set("category", c.category);
    set("queue", Live.queueName(c.queue));
    set("wait", c.wait_s === null || c.wait_s === undefined ? "" : Math.round(c.wait_s) + " 秒");
    showTicket(pop.ticket);
    const rows = (pop.previous || []).map((t) =>
      `<tr><td>${Live.esc(t.ticket_no)}</td><td>${Live.esc(t.date)}</td><td>${Live.esc(t.category || "—")}</td><td>${Live.esc(t.state_label)}</td><td>${Live.esc(asked(t))}</td></tr>`).join("");
    $("previous").innerHTML = rows;
    $("no-previous").hidden = !!rows;
    if (filled !== lid) fillForm(pop);
    render(Live.state.snap);
  }

  // what the caller asked last time: the agent's 诉求内容, else the transcript's 诉求摘要 (marked as such)
  function asked(t) {
    if (t.request_text) return t.request_text.length > 60 ? t.request_text.slice(0, 59) + "…" : t.request_text;
    return t.summary && t.summary.request ? "（转写）" + t.summary.request : "—";
  }

  function showTicket(t) {
    set("ticket", t ? t.ticket_no : "");
    set("ticket-state", t ? t.state_label : "");
  }

  function fillForm(p) {
    filled = shown;
    const sel = $("form-category");
    sel.innerHTML = '<option value="">请选择</option>' + (p.categories || []).map((c) => `<option>${Live.esc(c)}</option>`).join("");
    $("departments").innerHTML = (p.departments || []).map((d) => `<option value="${Live.esc(d)}">`).join("");
    const t = p.ticket || {};
    $("text").value = t.request_text || "";
    sel.value = t.category || (p.call && p.call.category) || "";
    showSuggestion(t.transcribed ? t : null);
    $("department").value = t.department || "";
    for (const r of document.querySelectorAll('input[name="disposition"]')) r.checked = r.value === (t.disposition || "");
    setMsg("", "");
  }

  // the transcript's suggestion (issue 17): shown, taken into the form only by the agent's click, saved only by 保存
  const SIDE = {caller: "市民", agent: "座席"};
  function showSuggestion(t) {
    sug = t && t.transcribed ? t : null;
    const s = sug && sug.suggestion, m = (sug && sug.summary) || {};
    const waiting = !sug && !!(pop && pop.transcripts) && sugTimer !== null;
    $("suggestion").hidden = !sug && !waiting;
    $("sug-pending").hidden = !waiting;
    $("sug-body").hidden = !sug;
    $("accept").hidden = !sug || !(s || m.request);
    if (!sug) return;
    set("sug-category", s ? [s.category, s.subcategory].filter(Boolean).join(" · ") : "无（未匹配分类规则）");
    set("sug-department", s && s.department);
    set("sug-evidence", s ? (s.evidence || []).map((e) => `${e.word}×${e.count}（${SIDE[e.side] || e.side}）`).join("、") + `，得分 ${s.score}` : "");
    set("sug-request", m.request);
    set("sug-places", (m.places || []).join("、"));
    set("sug-times", (m.times || []).join("、"));
    set("sug-numbers", (m.numbers || []).join("、"));
  }

  function awaitSuggestion(lid) {
    if (!pop || !pop.transcripts || sug || sugTimer !== null || filled !== lid) return;
    const until = Date.now() + 15 * 60 * 1000;  // a backlog may take a while; the agent may move on meanwhile
    const ask = async () => {
      if (shown !== lid || sug) { sugTimer = null; return; }
      try {
        const r = await Live.api(`/api/v1/calls/${encodeURIComponent(lid)}/suggestion`);
        if (r.ok && shown === lid) {
          const got = await r.json();
          if (got.transcribed) { sugTimer = null; showSuggestion(got); return; }
        }
      } catch (e) { /* asked again below */ }
      sugTimer = Date.now() < until && shown === lid ? setTimeout(ask, 3000) : null;
      if (sugTimer === null) showSuggestion(null);
    };
    sugTimer = setTimeout(ask, 1000);
    showSuggestion(null);
  }

  $("accept").addEventListener("click", () => {
    if (!sug) return;
    const s = sug.suggestion, m = sug.summary || {};
    if (s) {
      $("form-category").value = s.category;
      if (s.department) $("department").value = s.department;
    }
    if (m.request && !$("text").value.trim()) $("text").value = m.request;
    setMsg("已填入建议，请核对后保存", "ok");
  });

  // the full number: only if this token may see it, and the API writes the read to the audit log first
  $("show-number").addEventListener("click", async () => {
    if (!shown) return;
    const r = await Live.api(`/api/v1/calls/${encodeURIComponent(shown)}/screenpop?numbers=full`);
    if (r.ok) { const p = await r.json(); set("caller", p.call.caller); $("show-number").hidden = true; }
    else set("caller", $("caller").textContent + "（无权查看完整号码）");
  });

  function setMsg(text, kind) { const m = $("msg"); m.textContent = text; m.className = "msg " + kind; }

  $("intake-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!shown) return;
    const body = {text: $("text").value, category: $("form-category").value, department: $("department").value,
                  disposition: (document.querySelector('input[name="disposition"]:checked') || {}).value || ""};
    $("save").disabled = true;
    try {
      const r = await Live.api(`/api/v1/calls/${encodeURIComponent(shown)}/intake`, {method: "PUT", body: JSON.stringify(body)});
      const out = await r.json().catch(() => ({}));
      if (r.ok) {
        showTicket(out.ticket);
        setMsg(`已保存 · 工单 ${out.ticket.ticket_no} · ${out.ticket.state_label}`, "ok");
      } else {
        const e = out.error || {};
        const label = {text: "诉求内容", category: "诉求类型", department: "承办单位", disposition: "处理方式"}[e.field];
        setMsg("未保存" + (label ? "（" + label + "）" : "") + "：" + (e.message || r.status), "err");
        if (e.field) { const el = $(e.field === "category" ? "form-category" : e.field); if (el) el.focus(); }
      }
    } catch (e) {
      setMsg("未保存：网络错误", "err");
    } finally {
      $("save").disabled = false;
    }
  });

  function status(up) { const el = $("link"); el.textContent = up ? "实时" : "重连中"; el.classList.toggle("down", !up); }
  Live.run(render, status);
})();

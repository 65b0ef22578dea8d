"""The live API's OpenAPI 3.1 description, written by hand (served at /api/v1/openapi.json).

The shapes here are a contract with the pages (wallboard, agent screen pop): add fields, never rename
or remove one. tests/unit/test_live_api.py checks every route of live/api.py is described here.
"""

from __future__ import annotations

from typing import Any

_num_or_null = {"type": ["number", "null"]}
_rate = {"type": ["number", "null"], "description": "0..1, null when its denominator is 0"}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string", "examples": ["unauthorized", "forbidden", "not_found",
                                                                "bad_request", "conflict", "audit_unavailable",
                                                                "not_implemented"]},
                       "message": {"type": "string"}}}}},
    "Center": {"type": "object", "description": "today (center.timezone) and now, center-wide", "properties": {
        "day": {"type": "string", "format": "date"},
        "calls_today": {"type": "integer", "description": "hotline calls started today (进线)"},
        "offered": {"type": "integer", "description": "calls that reached a queue today"},
        "answered": {"type": "integer", "description": "calls an agent answered today"},
        "answered_within_15s": {"type": "integer", "description": "answered within 15 s of joining the first queue"},
        "abandoned": {"type": "integer", "description": "callers who hung up waiting in a queue"},
        "answer_rate": {**_rate, "description": "接通率 = answered / (offered - waiting now)"},
        "answered_within_rate": {**_rate, "description": "15 秒接通率 = answered_within_15s / answered"},
        "abandon_rate": {**_rate, "description": "放弃率 = abandoned / (offered - waiting now)"},
        "calls_now": {"type": "integer"}, "in_ivr": {"type": "integer", "description": "calls in the IVR now"},
        "waiting": {"type": "integer"}, "talking": {"type": "integer"},
        "after_agent": {"type": "integer", "description": "the agent hung up, the caller is in the survey"},
        "connected": {"type": "integer", "description": "put through without a queue (forwarded, dialed on)"}}},
    "Queue": {"type": "object", "properties": {
        "queue": {"type": "string"}, "waiting": {"type": "integer"},
        "oldest_since": {**_num_or_null, "description": "epoch s the longest waiter joined (tick locally)"},
        "longest_wait_s": {"type": "number", "description": "at the snapshot's `at`"},
        "talking": {"type": "integer"}, "offered": {"type": "integer"}, "answered": {"type": "integer"},
        "answered_within_15s": {"type": "integer"}, "abandoned": {"type": "integer"},
        "answer_rate": _rate, "answered_within_rate": _rate, "abandon_rate": _rate}},
    "Agent": {"type": "object", "properties": {
        "agent": {"type": "string", "description": "agent ID = the seat's extension"},
        "name": {"type": "string"},
        "state": {"enum": ["signed_out", "ready", "ringing", "talking", "wrap_up", "busy"]},
        "label": {"type": "string", "description": "签出 示闲 振铃 通话 话后整理 示忙"},
        "reason": {"type": "string", "description": "busy reason (小休, 就餐, …, 未接) or 话后整理"},
        "since": {"type": "number", "description": "epoch s of the last state change"},
        "queues": {"type": "array", "items": {"type": "string"}},
        "device": {"type": "string", "description": "Asterisk device state: not_in_use, in_use, ringing, "
                                                    "unavailable, …; unknown before any report"},
        "paused": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "call": {"type": ["string", "null"], "description": "linkedid of the call it talks on"},
        "ringing": {"type": ["string", "null"], "description": "linkedid of the queue call ringing it"}}},
    "Call": {"type": "object", "properties": {
        "linkedid": {"type": "string"},
        "caller": {"type": "string", "description": "masked (138******00) unless numbers=full (audited)"},
        "dialed": {"type": "string"}, "line": {"type": "string", "description": "legacy line, else dialed"},
        "legacy_line": {"type": ["string", "null"]}, "category": {"type": ["string", "null"]},
        "mode": {"type": ["string", "null"]}, "ivr_path": {"type": "array", "items": {"type": "string"}},
        "phase": {"enum": ["ivr", "queued", "talking", "after_agent", "connected"]},
        "queue": {"type": ["string", "null"]}, "waiting_since": _num_or_null, "first_queued_at": _num_or_null,
        "wait_s": _num_or_null,
        "agent": {"type": ["string", "null"]}, "agent_channel": {"type": ["string", "null"]},
        "answered_at": _num_or_null, "ringing": {"type": "array", "items": {"type": "string"}},
        "started_at": {"type": "number"}}},
    "Snapshot": {"type": "object", "properties": {
        "seq": {"type": "integer", "description": "the last change included; a stream's changes have larger seq"},
        "at": {"type": "number"}, "center_name": {"type": "string"},
        "center": {"$ref": "#/components/schemas/Center"},
        "queues": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Queue"}},
        "agents": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Agent"},
                   "description": "an agent token sees its own only"},
        "calls": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Call"},
                  "description": "calls up now by linkedid; an agent token sees the calls on its seat only"},
        "lines": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "calls today per line"},
        "half_hours": {"type": "array", "items": {"type": "integer"}, "minItems": 48, "maxItems": 48,
                       "description": "calls started per half-hour today, [0] = 00:00-00:30"}}},
    "Change": {"type": "object", "description": "SSE `change`: only the parts that moved. Merge by key: "
               "center replaces, queues/agents/calls/lines entries replace (a call null = ended), half_hours replaces",
               "properties": {"seq": {"type": "integer"}, "at": {"type": "number"},
                              "center": {"$ref": "#/components/schemas/Center"},
                              "queues": {"type": "object"}, "agents": {"type": "object"},
                              "calls": {"type": "object", "additionalProperties": {
                                  "oneOf": [{"$ref": "#/components/schemas/Call"}, {"type": "null"}]}},
                              "lines": {"type": "object"}, "half_hours": {"type": "array"}}},
    "Result": {"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"},
                                                                     "error": {"type": "string"}}},
}


def _resp(desc: str, schema: str | None = None, errors: tuple[int, ...] = (401,)) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": desc}}
    if schema:
        out["200"]["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    words = {400: "bad request", 401: "no, unknown or revoked token", 403: "the role or seat may not",
             404: "no such call/agent (or not yours)", 409: "refused in the current state",
             501: "not available in this controller", 503: "the audit log cannot be written: nothing done or shown"}
    for e in errors:
        out[str(e)] = {"description": words[e], **err}
    return out


_numbers = {"name": "numbers", "in": "query", "schema": {"enum": ["masked", "full"], "default": "masked"},
            "description": "full: caller numbers in clear, written to the audit log first (agents: own calls)"}


def _body(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": required, "properties": props}}}}


def openapi() -> dict[str, Any]:
    lid = {"name": "linkedid", "in": "path", "required": True, "schema": {"type": "string"}}
    agent = {"name": "agent", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "hotline12345 live API", "version": "1",
                 "description": "What is happening now (wallboard, screen pop) and supervisors' actions. Off "
                                "until a token exists (`hotline tokens create`). Tokens: Authorization: Bearer "
                                "only; bodies application/json. Roles: agent (its "
                                "seat only), supervisor, admin. Every action and every read of full numbers is "
                                "written to the audit log."},
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/openapi.json": {"get": {"summary": "this description", "security": [],
                                             "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/api/v1/whoami": {"get": {"summary": "the token's name, role and seat", "responses": _resp("who")}},
            "/api/v1/live": {"get": {"summary": "snapshot of everything live", "parameters": [_numbers],
                                     "responses": _resp("snapshot", "Snapshot", (400, 401, 503))}},
            "/api/v1/live/stream": {"get": {
                "summary": "Server-Sent Events: `snapshot` (a Snapshot) then `change` events (a Change, id = seq) "
                           "within a second of each event; `: keepalive` every 15 s. Reconnect to resync.",
                "parameters": [_numbers],
                "responses": {"200": {"description": "text/event-stream",
                                      "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                              **{k: v for k, v in _resp("", None, (400, 401, 503)).items() if k != "200"}}}},
            "/api/v1/calls/{linkedid}": {"get": {"summary": "one live call (screen pop)", "parameters": [lid, _numbers],
                                                 "responses": _resp("the call", "Call", (400, 401, 404, 503))}},
            "/api/v1/agents/{agent}": {"get": {"summary": "one agent and its current call (caller masked)",
                                               "parameters": [agent],
                                               "responses": _resp("agent + current_call", "Agent", (401, 403, 404))}},
            "/api/v1/agents/{agent}/state": {"post": {
                "summary": "签入/签出/示忙/示闲 an agent (agents: their own seat) through the agent state machine",
                "parameters": [agent],
                "requestBody": _body({"action": {"enum": ["signin", "signout", "busy", "ready"]},
                                      "reason": {"type": "string", "description": "busy: one of agents.busy_reasons"},
                                      "why": {"type": "string"}}, ["action"]),
                "responses": _resp('{"ok": true, "agent", "state", "reason"}', "Result",
                                   (400, 401, 403, 404, 409, 503))}},
            "/api/v1/callbacks": {"post": {
                "summary": "call a missed caller back (漏接回拨; what `hotline tickets callback` does)",
                "requestBody": _body({"ticket": {"type": "string"}}, ["ticket"]),
                "responses": _resp('{"ok", "ticket", "status", "attempts", "result"}', "Result",
                                   (400, 401, 403, 409, 503))}},
            "/api/v1/calls/{linkedid}/transfer": {"post": {
                "summary": "one-key transfer (一键转接) of the agent's caller to a transfer target or branch center",
                "parameters": [lid],
                "requestBody": _body({"target": {"type": "string", "description": "a key of transfer_targets or "
                                                                                  "branch_centers (110, 12366, …)"}},
                                     ["target"]),
                "responses": _resp("the transfer started", "Result", (400, 401, 403, 404, 409, 503))}},
            "/api/v1/calls/{linkedid}/intervene": {"post": {
                "summary": "监听 listen / 耳语 whisper / 强插 barge: ring the supervisor's seat, then ChanSpy the agent",
                "parameters": [lid],
                "requestBody": _body({"mode": {"enum": ["listen", "whisper", "barge"]},
                                      "seat": {"type": "string", "description": "the supervisor's phone "
                                                                                "(default: the token's seat)"}},
                                     ["mode"]),
                "responses": _resp("started", "Result", (400, 401, 403, 404, 409, 501, 503))}},
            "/api/v1/calls/{linkedid}/screenpop": {"get": {
                "summary": "座席弹屏 of a live call (live/pages.py): the call (caller masked unless numbers=full, "
                           "audited), line name, queue wait, this call's ticket (opened now if the call has none "
                           "yet), the caller's earlier tickets, the form's categories and departments",
                "parameters": [lid, _numbers],
                "responses": _resp("the screen pop", "Result", (400, 401, 404, 503))}},
            "/api/v1/calls/{linkedid}/intake": {"put": {
                "summary": "受理登记: the agent's intake saved into the call's ticket (agents: their own current or "
                           "last call); on_spot 当场解答 moves 受理→办结, dispatch 派单 受理→派单, none keeps a draft",
                "parameters": [lid],
                "requestBody": _body({"text": {"type": "string", "description": "诉求内容, ≤ 4000 characters"},
                                      "category": {"enum": ["咨询", "投诉举报", "求助", "意见建议", "其他", ""]},
                                      "department": {"type": "string", "description": "承办单位 (派单 needs one)"},
                                      "disposition": {"enum": ["on_spot", "dispatch", "当场解答", "派单", ""]}},
                                     []),
                "responses": _resp('{"ok": true, "ticket": {ticket_no, state, state_label, …}}; 400 names the '
                                   "field (error.field)", "Result", (400, 401, 403, 409, 503))}},
            "/api/v1/calls/{linkedid}/suggestion": {"get": {
                "summary": "录音转写建议 of a call, also after it ended (话后处理): transcribed (false until the worker "
                           "wrote the transcript), suggestion {category, subcategory, department, score, evidence "
                           "[{word, side, count}], classifier}, summary {request, request_at, places, times, numbers "
                           "(masked)}; never applied — the agent takes it into the intake form and saves (agents: "
                           "their own current or last call)",
                "parameters": [lid],
                "responses": _resp("the suggestion", "Result", (401, 403, 404))}},
            "/api/v1/calls/{linkedid}/release": {"post": {
                "summary": "强拆 force release: end the call", "parameters": [lid],
                "requestBody": _body({"seat": {"type": "string", "description": "the supervisor's seat (default: "
                                                                                "the token's seat)"},
                                      "why": {"type": "string"}}, []),
                "responses": _resp("released", "Result", (400, 401, 403, 404, 409, 501, 503))}},
        },
    }

"""Settings of the caller's loop (config sections `ticket_notice:`, `sms:`, `deadline_rules:`).

The ticket number told to the caller with their query password after the agent hangs up,
the optional SMS carrying the same, and what makes a ticket urgent and when its reminder is
due. Pure models; `model/config.py` puts them into `Config`.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TicketNotice(_M):
    """What the caller hears after the agent hung up, before the survey: ticket number and query password."""

    enabled: bool = True
    #: "您的工单编号是", "查询密码是", "重听请按星号键"
    ticket_prompt: str = "notice_ticket_is"
    password_prompt: str = "notice_password_is"
    repeat_prompt: str = "notice_repeat"
    #: how long the caller has to press * after the repeat prompt (s)
    repeat_wait_s: float = Field(4.0, gt=0, le=30)
    #: how many times * may repeat the notice
    max_repeats: int = Field(3, ge=0, le=10)
    #: a pause between two digits (s): read slowly, one digit at a time
    digit_gap_s: float = Field(0.3, ge=0, le=2)


#: `{ticket_no}` and `{password}` are the only fields a template may use
_TEMPLATE_FIELDS = {"ticket_no", "password"}


class SmsSettings(_M):
    """The ticket notice as an SMS, through the outbox to an SMS gateway (its own endpoint and event type)."""

    #: where the SMS is POSTed as JSON {"to", "text", "ticket_no"} (header Idempotency-Key); None: no SMS
    url: str | None = None
    #: the gateway's bearer token comes from this environment variable (never from the YAML)
    token_env: str | None = None
    #: the key sealing the password inside the outbox row until it is sent (urlsafe base64 of 32 bytes,
    #: e.g. `python -c 'import os,base64;print(base64.urlsafe_b64encode(os.urandom(32)).decode())'`)
    key_env: str = "HOTLINE_SMS_KEY"
    #: accept a plain http:// url: only for tests against a local receiver
    allow_http: bool = False
    template: str = "您的工单编号{ticket_no}，查询密码{password}。拨打12345按5可查询办理进度。"
    timeout_s: float = 10.0
    max_attempts: int = 10
    backoff_s: float = 30.0
    max_backoff_s: float = 3600.0
    poll_s: float = 2.0

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @model_validator(mode="after")
    def _safe(self) -> "SmsSettings":
        used = set(re.findall(r"{(\w*)}", self.template))
        if used - _TEMPLATE_FIELDS or not {"ticket_no", "password"} <= used:
            raise ValueError("template must use {ticket_no} and {password} and no other field "
                             f"(uses: {', '.join(sorted(used)) or 'none'})")
        if self.url is None:
            return self
        scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else ""
        if scheme != "https" and not (scheme == "http" and self.allow_http):
            raise ValueError(f"url must be https:// (got {scheme or 'no scheme'}; allow_http: true is for tests only)")
        if not self.token_env:
            raise ValueError("token_env is required with a url: the gateway is never called without a token")
        return self


class DeadlineRules(_M):
    """What makes a ticket urgent, and when a reminder about its deadline goes out (through the outbox)."""

    #: categories whose tickets are urgent from the start (e.g. [求助])
    urgent_categories: list[str] = Field(default_factory=list)
    #: a reminder event (`deadline_reminder`) is written once this many hours before the deadline; None: none
    remind_before_h: float | None = Field(None, gt=0)
    #: `hotline tickets due` lists tickets whose deadline is this close (h), and those past it
    due_within_h: float = Field(24.0, gt=0)
    #: how often the controller looks for reminders to write (s)
    poll_s: float = Field(60.0, gt=0)

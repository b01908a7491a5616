"""Alert notifiers: webhook (JSON POST), e-mail (SMTP) and log, chosen by ``alerts.notifiers``.

An :class:`Alert` names what failed (a quality gate, a DAG task, a sensor), the table or DAG,
the date and the failing checks with their observed values. :func:`send` delivers one alert
through every configured notifier; a notifier that fails is logged and never hides the
failure being reported. Secrets (webhook URL, SMTP password) are never logged.
"""

from __future__ import annotations

import json
import logging
import re
import smtplib
import urllib.request
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

from ecdctr_pipeline.core.settings import AlertSettings

log = logging.getLogger("ecdctr.alerts")


@dataclass(frozen=True)
class Alert:
    # "quality_gate" | "task_failure" | "sensor_timeout" | "cpm_fallback" | "not_evaluable" |
    # "model_rejected" | "served_model_stale" | "transfer_harmful" | "deadline_missed"
    kind: str
    subject: str  # table or DAG id
    logical_date: str
    summary: str  # one line
    details: list[dict[str, Any]] = field(default_factory=list)  # failing checks / reasons
    context: dict[str, Any] = field(default_factory=dict)  # task id, run id, result URI, ...

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def title(self) -> str:
        return f"[ecdctr] {self.kind} {self.subject} {self.logical_date}: {self.summary}"


class Notifier(Protocol):
    name: str

    def send(self, alert: Alert) -> None: ...


class LogNotifier:
    name = "log"

    def send(self, alert: Alert) -> None:
        log.error("%s %s", alert.title, json.dumps(alert.details, default=str)[:2000])


class WebhookNotifier:
    name = "webhook"

    def __init__(self, settings: AlertSettings):
        if settings.webhook_url is None:
            raise ValueError("alerts.webhook_url is not set")
        self._url = settings.webhook_url.get_secret_value()
        self.timeout = settings.webhook_timeout_s

    def send(self, alert: Alert) -> None:
        body = json.dumps({"text": alert.title, **alert.to_dict()}, default=str).encode()
        req = urllib.request.Request(self._url, data=body, headers={"Content-Type": "application/json"},
                                     method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"webhook answered HTTP {resp.status}")


class EmailNotifier:
    name = "email"

    def __init__(self, settings: AlertSettings):
        if not settings.email_to:
            raise ValueError("alerts.email_to is empty")
        self.s = settings

    def send(self, alert: Alert) -> None:
        msg = EmailMessage()
        msg["Subject"] = alert.title
        msg["From"] = self.s.email_from
        msg["To"] = ", ".join(self.s.email_to)
        lines = [alert.summary, ""] + [json.dumps(d, default=str) for d in alert.details]
        lines += ["", json.dumps(alert.context, default=str)]
        msg.set_content("\n".join(lines))
        with smtplib.SMTP(self.s.smtp_host, self.s.smtp_port, timeout=10) as smtp:
            if self.s.smtp_starttls:
                smtp.starttls()
            if self.s.smtp_user and self.s.smtp_password:
                smtp.login(self.s.smtp_user, self.s.smtp_password.get_secret_value())
            smtp.send_message(msg)


def notifiers(settings: AlertSettings) -> list[Notifier]:
    out: list[Notifier] = []
    for name in settings.notifiers:
        try:
            out.append({"log": lambda: LogNotifier(), "webhook": lambda: WebhookNotifier(settings),
                        "email": lambda: EmailNotifier(settings)}[name]())
        except ValueError as exc:
            log.error("alert notifier %s is not usable: %s", name, exc)
    return out


def redact(text: str, settings: AlertSettings) -> str:
    """``text`` without the alert settings' secrets (the webhook URL, whose path is often a token,
    the SMTP password) and without the user:password part of any URL."""
    for secret in (settings.webhook_url, settings.smtp_password):
        value = secret.get_secret_value() if secret is not None else ""
        if value:
            text = text.replace(value, "<secret>")
    return re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@", r"\1***@", text)


def send(settings: AlertSettings, alert: Alert) -> dict[str, str]:
    """Deliver ``alert`` through every configured notifier; returns notifier → "sent" or the error
    (secrets redacted: the status is logged and stored with the run's results)."""
    status = {}
    for n in notifiers(settings):
        try:
            n.send(alert)
            status[n.name] = "sent"
        except Exception as exc:  # noqa: BLE001 - a broken notifier must not hide the failure
            reason = getattr(exc, "reason", None) if isinstance(exc, urllib.error.URLError) else exc
            err = redact(f"{type(exc).__name__}: {str(reason)[:200]}", settings)
            log.error("alert notifier %s failed (%s); the alert was: %s", n.name, err, alert.title)
            status[n.name] = f"failed: {err}"
    return status

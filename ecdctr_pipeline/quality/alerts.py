"""Alert notifiers, chosen by ``alerts.notifiers``: log, webhook (the alert as JSON), e-mail
(SMTP), Slack (an incoming webhook: text and Block Kit blocks), Microsoft Teams (a Workflows or
incoming webhook: an Adaptive Card) and PagerDuty (Events API v2: a ``trigger`` event whose
dedup key is the alert's kind, subject and date, so a retried task does not page twice).

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


def _post_json(url: str, body: dict, timeout: float, what: str) -> None:
    req = urllib.request.Request(url, data=json.dumps(body, default=str).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        if resp.status >= 300:
            raise RuntimeError(f"{what} answered HTTP {resp.status}")


def _facts(alert: Alert, limit: int = 10) -> list[tuple[str, str]]:
    """(name, value) lines of an alert's details for chat cards (the first ``limit``)."""
    out = []
    for d in alert.details[:limit]:
        name = str(d.get("check") or d.get("name") or d.get("reason") or next(iter(d), "detail"))
        rest = {k: v for k, v in d.items() if str(v) != name}
        out.append((name[:200], json.dumps(rest, default=str)[:500]))
    if len(alert.details) > limit:
        out.append(("…", f"{len(alert.details) - limit} more"))
    return out


def _required_secret(settings: AlertSettings, field: str) -> str:
    """The value of the secret setting ``alerts.<field>``; a notifier without it is not usable."""
    secret = getattr(settings, field)
    if secret is None:
        raise ValueError(f"alerts.{field} is not set")
    return secret.get_secret_value()


class WebhookNotifier:
    name = "webhook"

    def __init__(self, settings: AlertSettings):
        self._url = _required_secret(settings, "webhook_url")
        self.timeout = settings.webhook_timeout_s

    def send(self, alert: Alert) -> None:
        _post_json(self._url, {"text": alert.title, **alert.to_dict()}, self.timeout, "webhook")


class SlackNotifier:
    """A Slack incoming webhook: ``text`` (the notification line) and Block Kit blocks."""

    name = "slack"

    def __init__(self, settings: AlertSettings):
        self._url = _required_secret(settings, "slack_webhook_url")
        self.timeout = settings.webhook_timeout_s

    def send(self, alert: Alert) -> None:
        blocks = [{"type": "header", "text": {"type": "plain_text", "text": f"ecdctr {alert.kind}"[:150]}},
                  {"type": "section", "text": {"type": "mrkdwn",
                                               "text": f"*{alert.subject}* {alert.logical_date}\n{alert.summary}"[:3000]}}]
        facts = _facts(alert)
        if facts:
            blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"[:2000]}
                                                         for k, v in facts]})
        if alert.context:
            blocks.append({"type": "context", "elements": [
                {"type": "mrkdwn", "text": json.dumps(alert.context, default=str)[:3000]}]})
        _post_json(self._url, {"text": alert.title, "blocks": blocks}, self.timeout, "slack")


class TeamsNotifier:
    """A Microsoft Teams Workflows (or incoming) webhook: one message with an Adaptive Card."""

    name = "teams"

    def __init__(self, settings: AlertSettings):
        self._url = _required_secret(settings, "teams_webhook_url")
        self.timeout = settings.webhook_timeout_s

    def send(self, alert: Alert) -> None:
        body = [{"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": True, "text": alert.title},
                {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in
                                              [("subject", alert.subject), ("date", alert.logical_date),
                                               *_facts(alert)]]}]
        if alert.context:
            body.append({"type": "TextBlock", "wrap": True, "isSubtle": True,
                         "text": json.dumps(alert.context, default=str)[:3000]})
        card = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4", "body": body}
        _post_json(self._url, {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}, self.timeout, "teams")


# PagerDuty severities by alert kind (others: "error")
PAGERDUTY_SEVERITY = {"task_failure": "critical", "deadline_missed": "critical", "quality_gate": "error",
                      "served_model_stale": "warning", "cpm_fallback": "warning", "model_rejected": "warning",
                      "not_evaluable": "warning", "transfer_harmful": "warning", "sensor_timeout": "error"}


class PagerDutyNotifier:
    """PagerDuty Events API v2: a ``trigger`` event on the integration's routing key."""

    name = "pagerduty"

    def __init__(self, settings: AlertSettings):
        self._key = _required_secret(settings, "pagerduty_routing_key")
        self.url = settings.pagerduty_events_url
        self.timeout = settings.webhook_timeout_s

    @staticmethod
    def dedup_key(alert: Alert) -> str:
        return f"ecdctr:{alert.kind}:{alert.subject}:{alert.logical_date}"

    def send(self, alert: Alert) -> None:
        _post_json(self.url, {
            "routing_key": self._key, "event_action": "trigger", "dedup_key": self.dedup_key(alert),
            "payload": {"summary": alert.title[:1024], "source": alert.subject, "component": "ecdctr",
                        "group": alert.kind, "class": alert.kind,
                        "severity": PAGERDUTY_SEVERITY.get(alert.kind, "error"),
                        "custom_details": {"logical_date": alert.logical_date, "details": alert.details,
                                           "context": alert.context}}}, self.timeout, "pagerduty")


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
                        "email": lambda: EmailNotifier(settings), "slack": lambda: SlackNotifier(settings),
                        "teams": lambda: TeamsNotifier(settings),
                        "pagerduty": lambda: PagerDutyNotifier(settings)}[name]())
        except ValueError as exc:
            log.error("alert notifier %s is not usable: %s", name, exc)
    return out


def redact(text: str, settings: AlertSettings) -> str:
    """``text`` without the alert settings' secrets (the webhook URLs, whose paths are often
    tokens, the PagerDuty routing key, the SMTP password) and without the user:password part of
    any URL."""
    for secret in (settings.webhook_url, settings.slack_webhook_url, settings.teams_webhook_url,
                   settings.pagerduty_routing_key, settings.smtp_password):
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
            if isinstance(exc, urllib.error.HTTPError):  # the service answered: its status says why
                reason = f"HTTP {exc.code} {exc.reason}"
            else:
                reason = getattr(exc, "reason", None) if isinstance(exc, urllib.error.URLError) else exc
            err = redact(f"{type(exc).__name__}: {str(reason)[:200]}", settings)
            log.error("alert notifier %s failed (%s); the alert was: %s", n.name, err, alert.title)
            status[n.name] = f"failed: {err}"
    return status

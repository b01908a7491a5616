"""Slack, Teams and PagerDuty notifiers against a loopback receiver that answers as each service
does (Slack 200 "ok", Teams 202, PagerDuty 202 with a dedup key): payload shapes, one event per
alert, secrets kept out of a failure's status."""

from __future__ import annotations

import json

import pytest

from ecdctr_pipeline.core.settings import AlertSettings
from ecdctr_pipeline.quality import alerts


def _answer(path: str, body: dict) -> tuple[int, bytes]:
    if path.startswith("/broken"):
        return 500, b""
    if path.startswith(("/v2/enqueue", "/teams")):
        return 202, json.dumps({"status": "success", "dedup_key": body.get("dedup_key")}).encode()
    return 200, b"ok"


@pytest.fixture
def services():
    from tests.conftest import serve_json_posts

    yield from serve_json_posts(_answer)


ALERT = alerts.Alert("quality_gate", "features/complete/ad", "2026-11-24", "2 of 14 expectations failed",
                     details=[{"check": "ctr within bounds", "observed": 0.41, "bounds": [0.002, 0.3]},
                              {"check": "volume band", "observed": 0.2}],
                     context={"dag_id": "ecdctr_actr_daily", "run_id": "scheduled__2026-11-24"})


def test_slack_teams_and_pagerduty_each_get_their_own_payload(services):
    base, got = services
    s = AlertSettings(notifiers=["slack", "teams", "pagerduty"], slack_webhook_url=f"{base}/services/T0/B0/tok",
                      teams_webhook_url=f"{base}/teams/workflows/tok", pagerduty_routing_key="R0UT1NGKEY",
                      pagerduty_events_url=f"{base}/v2/enqueue")
    assert alerts.send(s, ALERT) == {"slack": "sent", "teams": "sent", "pagerduty": "sent"}
    paths = [p for p, _ in got]
    assert paths == ["/services/T0/B0/tok", "/teams/workflows/tok", "/v2/enqueue"]
    slack, teams, pd = (b for _, b in got)
    # Slack: the notification line and Block Kit blocks naming every failing check
    assert slack["text"] == ALERT.title and [b["type"] for b in slack["blocks"]] == ["header", "section", "section",
                                                                                     "context"]
    fields = " ".join(f["text"] for f in slack["blocks"][2]["fields"])
    assert "ctr within bounds" in fields and "0.41" in fields and "volume band" in fields
    # Teams: one message with an Adaptive Card
    (att,) = teams["attachments"]
    assert teams["type"] == "message" and att["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = att["content"]
    assert card["type"] == "AdaptiveCard" and card["body"][0]["text"] == ALERT.title
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["subject"] == "features/complete/ad" and "0.41" in facts["ctr within bounds"]
    # PagerDuty Events API v2: a trigger whose dedup key makes a retried task's alert the same incident
    assert pd["routing_key"] == "R0UT1NGKEY" and pd["event_action"] == "trigger"
    assert pd["dedup_key"] == "ecdctr:quality_gate:features/complete/ad:2026-11-24"
    assert pd["payload"]["severity"] == "error" and pd["payload"]["source"] == "features/complete/ad"
    assert pd["payload"]["summary"] == ALERT.title and pd["payload"]["custom_details"]["details"] == ALERT.details
    stale = alerts.Alert("served_model_stale", "actr", "2026-11-24", "served model is 5 days old")
    alerts.send(s, stale)
    assert got[-1][1]["payload"]["severity"] == "warning" and got[-1][1]["dedup_key"].startswith("ecdctr:served")


def test_a_failing_service_is_reported_without_its_secret_and_the_others_still_get_the_alert(services):
    base, got = services
    s = AlertSettings(notifiers=["slack", "pagerduty", "log"], slack_webhook_url=f"{base}/broken/T0/sl4ck-t0ken",
                      pagerduty_routing_key="R0UT1NGKEY", pagerduty_events_url=f"{base}/v2/enqueue")
    status = alerts.send(s, ALERT)
    assert status["slack"].startswith("failed: ") and "500" in status["slack"]
    assert "sl4ck-t0ken" not in json.dumps(status) and status["pagerduty"] == "sent" and status["log"] == "sent"
    assert [p for p, _ in got] == ["/broken/T0/sl4ck-t0ken", "/v2/enqueue"]


def test_a_notifier_without_its_setting_is_skipped_and_bad_urls_are_refused():
    assert [n.name for n in alerts.notifiers(AlertSettings(notifiers=["slack", "teams", "pagerduty", "log"]))] == ["log"]
    with pytest.raises(ValueError, match="http:// or https:// URL"):
        AlertSettings(slack_webhook_url="hooks.slack.com/services/x")
    with pytest.raises(ValueError, match="http:// or https:// URL"):
        AlertSettings(pagerduty_events_url="ftp://events.example/v2")

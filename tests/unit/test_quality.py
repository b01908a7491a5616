"""Each data-quality check broken alone fails exactly that expectation, with the observed value;
a clean simulated day passes every suite; alerts reach real receivers on 127.0.0.1."""

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ecdctr_pipeline.data import artifacts, delta, embedding_sets
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.quality import gates
from ecdctr_pipeline.quality import suites as quality
from ecdctr_pipeline.app.main import main
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data.simulate import World, get_scale
from ecdctr_pipeline.data.store import open_store

DAY = dt.date(2026, 11, 20)
WORLD = World(get_scale("tiny"), 5)


def clean_raw(domain="natural", day=DAY):
    t = WORLD.day(domain, day)
    return t.append_column("dt", pa.array([day.isoformat()] * t.num_rows))


def settings_for(tmp_path, **over):
    return Settings.model_validate({"store": {"root": f"file://{tmp_path}/store"}, **over})


def failing(result):
    return sorted(f["label"] for f in result["failed"])


def put(tmp_path, table, data):
    s = settings_for(tmp_path)
    delta.write(open_store(s.store), table, data)
    return s


def replace_col(t, name, arr):
    return t.set_column(t.schema.get_field_index(name), name, arr)


CASES = {
    "column set": lambda t: t.append_column("foo", pa.array(np.zeros(t.num_rows, np.int64))),
    "type of user_city": lambda t: replace_col(t, "user_city", pc.cast(t["user_city"], pa.int32())),
    "event_time not null": lambda t: replace_col(
        t, "event_time", pa.array([None] + t["event_time"].to_pylist()[1:], t.schema.field("event_time").type)),
    "click in {0,1}": lambda t: replace_col(t, "click", pa.array([2] + t["click"].to_pylist()[1:], pa.int8())),
    "CTR within [0.01, 0.5]": lambda t: replace_col(t, "click", pa.array(np.zeros(t.num_rows, np.int8))),
    "no duplicate impressions": lambda t: pa.concat_tables([t, t.slice(0, 1)]),
}


@pytest.mark.parametrize("label", sorted(CASES))
def test_each_raw_check_fails_alone(tmp_path, label):
    s = put(tmp_path, "raw/natural", CASES[label](clean_raw()))
    r = quality.validate(s, open_store(s.store), "raw/natural", DAY.isoformat())
    assert failing(r) == [label]
    f = r["failed"][0]
    assert f["observed"] is not None or f["unexpected_count"]
    if label.startswith("CTR"):
        assert f["observed"] == 0.0
    if label == "click in {0,1}":
        assert f["examples"] == [2]


def test_clean_days_pass_every_suite(tmp_path):
    s = settings_for(tmp_path, features={"engine": "duckdb"})
    store = open_store(s.store)
    from ecdctr_pipeline.data import extract
    from ecdctr_pipeline.data.simulate import simulate

    simulate(store, dt.date(2026, 9, 25), dt.date(2026, 11, 24), "tiny", seed=5, progress=False)
    extract.extract_complete(s, open_store(s.store), "ad", "2026-11-24")
    extract.extract_complete(s, open_store(s.store), "natural", "2026-11-23")
    for table, day in (("raw/natural", DAY), ("raw/ad", DAY), ("features/complete/ad", DAY),
                       ("features/complete/natural", DAY)):
        r = quality.validate(s, open_store(s.store), table, day.isoformat())
        assert r["success"], (table, failing(r))
        assert r["checks"] >= 20
    assert "_user_known_natural" in json.dumps(quality.validate(s, open_store(s.store), "raw/ad", DAY.isoformat())["results"])


def test_freshness_and_volume(tmp_path):
    s = settings_for(tmp_path)
    store = open_store(s.store)
    for i in range(1, 8):
        delta.write(store, "raw/natural", clean_raw(day=DAY - dt.timedelta(days=i)))
    r = quality.validate(s, open_store(s.store), "raw/natural", DAY.isoformat())
    assert failing(r) == ["freshness: the day's partition is not empty"] and r["failed"][0]["observed"] == 0
    big = [clean_raw(day=DAY)]
    for k in range(1, 3):  # the same day three times over, shifted by k µs: no duplicates
        t = clean_raw(day=DAY)
        big.append(replace_col(t, "event_time", pc.cast(pc.add(pc.cast(t["event_time"], pa.int64()), k),
                                                         t.schema.field("event_time").type)))
    delta.write(store, "raw/natural", pa.concat_tables(big))
    r = quality.validate(s, open_store(s.store), "raw/natural", DAY.isoformat())
    assert len(failing(r)) == 1 and failing(r)[0].startswith("volume within 0.5-2.0")
    assert r["failed"][0]["observed"] == 3 * clean_raw().num_rows


def _ad_users_unknown(tmp_path, **over):
    s = settings_for(tmp_path, **over)
    store = open_store(s.store)
    delta.write(store, "raw/natural", clean_raw())
    ad = clean_raw("ad")
    ad = replace_col(ad, "user_id", pc.add(ad["user_id"], 10**9))
    delta.write(store, "raw/ad", ad)
    return s, quality.validate(s, open_store(s.store), "raw/ad", DAY.isoformat())


def test_ad_users_unknown_to_natural_fail_the_gate_under_cross_domain_fail(tmp_path):
    _, r = _ad_users_unknown(tmp_path, quality={"cross_domain": "fail"})
    assert failing(r) == ["share user known natural >= 0.5"] and r["failed"][0]["observed"] == 0.0
    assert r["warnings"] == []


def test_cross_domain_shares_warn_by_default_and_the_gate_passes(tmp_path, caplog):
    """Disjoint catalogues are normal for ads vs content: by default a low share is a warning
    with the share observed, in the stored result and the log, and the A-CTR gate passes."""
    s, r = _ad_users_unknown(tmp_path)
    assert r["success"] and r["failed"] == []
    assert [(w["label"], w["observed"], w["severity"]) for w in r["warnings"]] == [
        ("share user known natural >= 0.5", 0.0, "warn")]
    stored = json.loads(open_store(s.store).get_bytes(f"{paths.quality_result('raw/ad', DAY.isoformat())}/result.json"))
    assert stored["warnings"][0]["observed"] == 0.0
    assert "warning: share user known natural >= 0.5: observed 0.0" in quality.summary_text(r)
    assert any("share user known natural" in m and "not failing the gate" in m for m in caplog.messages)


def _publish_set(store, dim=16, nan=False, month="2026-10"):
    files = {}
    rng = np.random.default_rng(0)
    for side in ("user", "item"):
        for m in ("2026-07", "2026-08", "2026-09"):
            ids = np.arange(300 if side == "user" else 240, dtype=np.int64)
            vec = rng.normal(size=(len(ids), dim)).astype("float32")
            if nan:
                vec[3, 2] = np.nan
            vecs = pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), dim)
            import io

            import pyarrow.parquet as pq

            buf = io.BytesIO()
            pq.write_table(pa.table({"id": ids, "vector": vecs}), buf)
            files[embedding_sets.table_name(side, m)] = buf.getvalue()
    artifacts.publish(store, paths.tpm_set(month), files, artifacts.Manifest(
        kind="tpm_embedding_set", artifact_id=month, logical_date=f"{month}-01",
        months=["2026-07", "2026-08", "2026-09"], params={"dim": dim}))


@pytest.mark.parametrize("kind, label", [("nan", "vectors are finite"), ("dim", "vectors have the set's dimension")])
def test_embedding_set_checks(tmp_path, kind, label):
    s = settings_for(tmp_path)
    _publish_set(open_store(s.store), dim=8 if kind == "dim" else 16, nan=kind == "nan")
    r = quality.validate(s, open_store(s.store), "tpm_set", "2026-10")
    assert failing(r) == [label]
    assert r["failed"][0]["unexpected_count"] == (6 if kind == "nan" else 1620)  # one bad row per table


def test_sequence_length_and_embedding_coverage(tmp_path):
    from ecdctr_pipeline.data import extract
    from ecdctr_pipeline.data.simulate import simulate

    s = settings_for(tmp_path, features={"engine": "duckdb"}, quality={"cross_domain": "fail"})
    store = open_store(s.store)
    simulate(store, dt.date(2026, 10, 1), dt.date(2026, 11, 24), "tiny", seed=5, progress=False)
    extract.extract_complete(s, open_store(s.store), "ad", "2026-11-24")
    _publish_set(store)
    ok = quality.validate(s, open_store(s.store), "features/complete/ad", DAY.isoformat())
    assert ok["success"], failing(ok)
    t, _ = delta.read(store, "features/complete/ad", partitions=[DAY.isoformat()])
    long = t["hist_item_ids"].to_pylist()
    long[0] = list(range(60))
    t = replace_col(t, "hist_item_ids", pa.array(long, pa.list_(pa.int64())))
    t = replace_col(t, "item_id", pc.add(t["item_id"], 10**9))  # items unknown to the embedding set
    delta.write(store, "features/complete/ad", t)
    r = quality.validate(s, open_store(s.store), "features/complete/ad", DAY.isoformat())
    assert failing(r) == ["hist_item_ids no longer than 50", "share item known embeddings >= 0.3"]
    warned = quality.validate(s.model_copy(update={"quality": s.quality.model_copy(update={"cross_domain": "warn"})}),
                              open_store(s.store), "features/complete/ad", DAY.isoformat())
    assert failing(warned) == ["hist_item_ids no longer than 50"]
    assert [w["label"] for w in warned["warnings"]] == ["share item known embeddings >= 0.3"]


# --------------------------------------------------------------------------- alerts
@pytest.fixture
def webhook(webhook_receiver):
    base, received = webhook_receiver
    return f"{base}/hooks/secret-token-123", received


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller

    from tests.conftest import free_port

    messages = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            messages.append(envelope.content.decode())
            return "250 OK"

    c = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    c.start()
    yield c.port, messages
    c.stop()


def test_failed_gate_sends_one_alert_per_notifier_and_masks_secrets(tmp_path, webhook, smtp, caplog, capsys):
    url, received = webhook
    port, messages = smtp
    s = settings_for(tmp_path, alerts={"notifiers": ["log", "webhook", "email"], "webhook_url": url,
                                       "smtp_port": port, "email_to": ["oncall@example.org"],
                                       "smtp_password": "smtp-secret-456"})
    store = open_store(s.store)
    delta.write(store, "raw/natural", CASES["click in {0,1}"](clean_raw()))
    with pytest.raises(quality.QualityGateFailed) as exc:
        gates.gate_days(s, store, "raw/natural", [DAY.isoformat()], dag_id="ecdctr_tpm_monthly", ds=DAY.isoformat())
    assert "raw/natural 2026-11-20" in str(exc.value) and exc.value.result["alerts"] == {
        "log": "sent", "webhook": "sent", "email": "sent"}
    assert len(received) == 1
    a = received[0]
    assert (a["kind"], a["subject"], a["logical_date"]) == ("quality_gate", "raw/natural", "2026-11-20")
    assert a["details"][0]["label"] == "click in {0,1}" and a["details"][0]["examples"] == [2]
    assert len(messages) == 1 and "click in {0,1}" in messages[0] and "oncall@example.org" in messages[0]
    stored = store.get_bytes("quality/raw/natural/2026-11-20/result.json").decode()
    # the alert links Great Expectations' Data Docs page of the run, stored beside the result
    docs = store.uri("quality/raw/natural/2026-11-20/data_docs.html")
    assert a["context"]["data_docs"] == [docs] and json.loads(stored)["data_docs"] == docs
    page = store.get_bytes("quality/raw/natural/2026-11-20/data_docs.html").decode()
    assert "Expectation Validation Result" in page and "click" in page and "Unsuccessful Expectations" in page
    from PIL import Image

    from ecdctr_pipeline.core.report import screenshot

    shot = screenshot(docs, tmp_path / "data_docs.png", size="1200,900", budget_ms=3000)
    with Image.open(shot) as im:  # rendered by a browser: text on the page, not a blank canvas
        assert len(im.convert("RGB").getcolors(1 << 20) or []) > 20
    logs = caplog.text + capsys.readouterr().err
    for secret in ("secret-token-123", "smtp-secret-456"):
        assert secret not in stored and secret not in logs and secret not in json.dumps(a)


def test_broken_notifier_does_not_hide_the_failure(tmp_path):
    from tests.conftest import free_port

    s = settings_for(tmp_path, alerts={"notifiers": ["webhook"], "webhook_url": f"http://127.0.0.1:{free_port()}/x",
                                       "webhook_timeout_s": 2})
    delta.write(open_store(s.store), "raw/natural", CASES["CTR within [0.01, 0.5]"](clean_raw()))
    with pytest.raises(quality.QualityGateFailed) as exc:
        gates.gate_days(s, open_store(s.store), "raw/natural", [DAY.isoformat()], dag_id="ecdctr_tpm_monthly",
                        ds=DAY.isoformat())
    assert exc.value.result["alerts"]["webhook"].startswith("failed")


def test_validate_cli_exit_codes(tmp_path, monkeypatch, capsys):
    s = put(tmp_path, "raw/natural", clean_raw())
    monkeypatch.setenv("ECDCTR_STORE", s.store.root)
    assert main(["validate", "--table", "raw/natural", "--as-of", DAY.isoformat()]) == 0
    assert main(["validate", "--table", "raw/natural", "--as-of", "2026-11-21", "--json"]) == 1
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["failed"][0]["label"].startswith("freshness")


@pytest.mark.parametrize("url", ["http://ops:pass-789@127.0.0.1:1/hooks/tok-789",
                                 "http://ops:pass-789@127.0.0.1:notaport/hooks/tok-789"])
def test_a_failing_webhook_never_shows_its_credentials(url, caplog):
    from ecdctr_pipeline.core.settings import AlertSettings
    from ecdctr_pipeline.quality import alerts

    settings = AlertSettings(notifiers=["webhook"], webhook_url=url, webhook_timeout_s=2)
    status = alerts.send(settings, alerts.Alert(kind="quality_gate", subject="raw/ad", logical_date="2026-11-20",
                                                summary="x"))
    assert status["webhook"].startswith("failed: ")
    assert "pass-789" not in status["webhook"] and "tok-789" not in status["webhook"]
    assert "alert notifier webhook failed" in caplog.text and "pass-789" not in caplog.text
    assert "tok-789" not in caplog.text
    assert alerts.redact(f"see {url} and https://u:p@x.org/y", settings) == "see <secret> and https://***@x.org/y"


@pytest.mark.parametrize("url", ["gopher2://ops:pass-789@127.0.0.1/hooks/tok-789", "file:///etc/tok-789",
                                 "ops:pass-789@127.0.0.1/hooks/tok-789"])
def test_a_webhook_url_that_is_not_http_is_refused_by_the_settings_without_showing_it(url):
    """Not http(s): refused when the settings are read (it used to fail at the first alert)."""
    from ecdctr_pipeline.core.errors import ConfigError
    from ecdctr_pipeline.core.settings import load_settings

    with pytest.raises(ConfigError, match="alerts.webhook_url .*must be an http:// or https:// URL") as info:
        load_settings(environ={"ECDCTR_ALERTS__WEBHOOK_URL": url})
    assert "pass-789" not in str(info.value) and "tok-789" not in str(info.value)

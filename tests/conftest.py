"""Shared fixtures. Real components only, on 127.0.0.1, started and stopped by the tests."""

from __future__ import annotations

import os
from ecdctr_pipeline.core.net import free_port
import uuid

import pytest

import datetime as dt
import shutil
import tempfile

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# Airflow reads AIRFLOW_HOME when first imported: give the session a private one (SQLite)
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="ecdctr-test-airflow-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dags")
os.environ.pop("ECDCTR_CONFIG", None)
for _k in [k for k in os.environ if k.startswith("ECDCTR_")]:
    os.environ.pop(_k)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# the test session must never reach a real AWS account
for _k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(_k, None)


def pytest_collection_modifyitems(session, config, items):
    """Modules with a slow test first (whole modules, their order otherwise kept): ``make test``
    spreads the tests over workers (pytest-xdist ``--dist load`` hands them out from the front),
    and a long test that starts last leaves the other workers idle at the end."""
    slow = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ not in slow)


def _fault_counts(config) -> dict[str, int]:
    if not hasattr(config, "_ecdctr_fault_counts"):
        config._ecdctr_fault_counts = {}
    return config._ecdctr_fault_counts


@pytest.fixture(scope="session")
def fault_counts(pytestconfig) -> dict[str, int]:
    """What the fault suite tried (name → count), summed over the run's workers."""
    return _fault_counts(pytestconfig)


def pytest_sessionfinish(session, exitstatus):
    output = getattr(session.config, "workeroutput", None)
    if output is not None:  # a pytest-xdist worker: its counts go to the controller
        import json

        output["fault_counts"] = json.dumps(_fault_counts(session.config))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    import json

    counts = _fault_counts(node.config)
    for name, n in json.loads(getattr(node, "workeroutput", {}).get("fault_counts", "{}")).items():
        counts[name] = counts.get(name, 0) + n


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    import json

    counts = _fault_counts(config)
    if not counts or getattr(config, "workeroutput", None) is not None:
        return
    terminalreporter.section("fault suite")
    for name, n in sorted(counts.items()):
        terminalreporter.write_line(f"{name}: {n}")
    try:
        (config._tmp_path_factory.getbasetemp() / "fault-counts.json").write_text(json.dumps(counts, indent=2))
    except Exception:  # noqa: BLE001 - the summary is a convenience
        pass


def json_result(printed: str) -> dict:
    """The JSON object ``ecdctr ... --json`` printed (log lines of Airflow, GX or Spark may surround it)."""
    import json
    import re

    starts = [m.start() for m in re.finditer(r"^\{$", printed, re.M)]
    assert starts, printed[-2000:]
    body = printed[starts[-1]:]
    end = re.search(r"^\}$", body, re.M)
    assert end, printed[-2000:]
    return json.loads(body[:end.end()])



@pytest.fixture(scope="session")
def s3_endpoint():
    """moto in server mode on 127.0.0.1: a real S3-compatible HTTP endpoint for the session.

    It runs as its own process: delta-rs holds the GIL during its blocking S3 calls, so an
    in-process (threaded) server would deadlock against it.
    """
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"moto server did not start on {url}")
            time.sleep(0.2)
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION")}
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"})
    yield url
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_store_settings(s3_endpoint):
    """StoreSettings for a fresh bucket on the loopback server."""
    return new_bucket(s3_endpoint)


@pytest.fixture
def local_store_settings(tmp_path):
    from ecdctr_pipeline.core.settings import StoreSettings

    return StoreSettings(root=f"file://{tmp_path / 'store'}")


@pytest.fixture(params=["local", "s3"])
def any_store_settings(request):
    """Run a test on both store back ends."""
    if request.param == "local":
        return request.getfixturevalue("local_store_settings")
    request.applymarker(pytest.mark.integration)
    return request.getfixturevalue("s3_store_settings")


@pytest.fixture(scope="session")
def spark():
    """One local Spark session (2 cores, delta-spark and s3a) for the test session."""
    from ecdctr_pipeline.core.settings import Settings, SparkSettings
    from ecdctr_pipeline.data.spark import get_spark

    session = get_spark(Settings(spark=SparkSettings(master="local[2]", shuffle_partitions=2)))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def spark_cluster():
    """A Spark standalone master and two 1-core workers on 127.0.0.1 (the pinned pyspark)."""
    from ecdctr_pipeline.data.spark_standalone import StandaloneCluster

    with StandaloneCluster(workers=2, cores_per_worker=1, worker_memory="1g") as cluster:
        yield cluster


def new_bucket(s3_endpoint: str, prefix: str = "ecdctr"):
    """StoreSettings for a fresh bucket on the loopback S3 server."""
    import boto3

    from ecdctr_pipeline.core.settings import StoreSettings

    bucket = f"{prefix}-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    return StoreSettings(root=f"s3://{bucket}/pipeline", endpoint_url=s3_endpoint, region="us-east-1",
                         access_key_id="testing", secret_access_key="testing", allow_http=True)


# ------------------------------------------------------------------ a tiny pipeline store (DuckDB features)


def tiny_settings(root: str, **over):
    from ecdctr_pipeline.core.settings import Settings

    return Settings.model_validate({
        "store": {"root": root},
        "features": {"engine": "duckdb", "max_seq_len": 10,
                     "hash_buckets": {"user_id": 400, "item_id": 300, "category_id": 16, "item_brand": 50}},
        "tpm": {"batch_size": 1024, "hidden_units": [16]},
        "cpm": {"hidden_units": [32, 16], "batch_size": 512, "epochs": 1, "attention_units": [8]},
        # min_gauc 0: at tiny, holdout GAUC is noise around 0.5, and the plumbing tests need a served
        # model every run; the floor itself is tested on its own (test_training)
        "actr": {"batch_size": 256, "epochs": 1, "min_gauc": 0.0},
        **over,
    })


@pytest.fixture(scope="session")
def tiny_pipeline_store(tmp_path_factory):
    """Raw 2026-03-01..2026-11-24 (March: KEEP-style's seventh month before 2026-10) plus features
    for TPM 2026-10, CPM 2026-11-23 and A-CTR 2026-11-24."""
    from ecdctr_pipeline.data import extract
    from ecdctr_pipeline.data.simulate import simulate
    from ecdctr_pipeline.data.store import open_store

    root = tmp_path_factory.mktemp("tiny-pipeline")
    s = tiny_settings(f"file://{root}")
    simulate(open_store(s.store), dt.date(2026, 3, 1), dt.date(2026, 11, 24), "tiny", seed=3, progress=False)
    store = open_store(s.store)
    extract.extract_tpm(s, store, "2026-10")
    extract.extract_complete(s, store, "natural", "2026-11-23")
    extract.extract_complete(s, store, "ad", "2026-11-24")
    return root


@pytest.fixture(scope="session")
def cpm_trained_store(tiny_pipeline_store, tmp_path_factory):
    """The tiny store with TPM 2026-10 and CPM 2026-11-23 trained once per test session (tests
    copy it before publishing into it)."""
    from ecdctr_pipeline import tiers
    from ecdctr_pipeline.data.store import open_store

    dest = tmp_path_factory.mktemp("cpm-trained") / "store"
    shutil.copytree(tiny_pipeline_store, dest)
    s = tiny_settings(f"file://{dest}")
    store = open_store(s.store)
    tiers.train("tpm", s, store, "2026-10")
    r = tiers.train("cpm", s, store, "2026-11-23")
    assert not r.skipped and 0 < r.metrics["gauc_coverage"] <= 1
    return dest


@pytest.fixture
def pipeline_settings(tiny_pipeline_store, tmp_path):
    """A private copy of the tiny store (tests publish artifacts into it)."""
    dest = tmp_path / "store"
    shutil.copytree(tiny_pipeline_store, dest)
    return tiny_settings(f"file://{dest}")


def serve_json_posts(answer=lambda path, body: (200, b"")):
    """A loopback HTTP receiver of JSON POSTs that answers ``answer(path, body) -> (status, bytes)``
    (as the service a notifier or emitter talks to would): yields (base URL, list of (path, body))."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            got.append((self.path, body))
            code, data = answer(self.path, body)
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", got
    httpd.shutdown()


def serve_webhooks():
    """A loopback HTTP receiver for alert webhooks: yields (base URL, list of received JSON bodies)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", received
    httpd.shutdown()


@pytest.fixture
def webhook_receiver():
    yield from serve_webhooks()


@pytest.fixture(scope="module")
def webhook_receiver_module():
    """The same receiver for a module (a deployment whose alerts a module's tests read)."""
    yield from serve_webhooks()

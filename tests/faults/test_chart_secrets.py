"""Fault suite, secrets through the Helm chart: a secret setting given under ``pipeline.*``
(rendered into the settings ConfigMap) is refused by ``values.schema.json``; secrets reach the
pods only through a Kubernetes Secret (``secrets.existingSecret``, or one the chart creates from
``secrets.*``), which every pod loads — the chart's serving Deployment (its serving-sync
containers), and the pods and Jobs the DAGs build in Kubernetes mode from the chart's rendered
settings. The real Helm CLI renders the chart (``make helm``)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ecdctr_pipeline.core.settings import SECRET_KEYS, load_settings

pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / ".tools" / "bin" / "helm"
CHART = ROOT / "helm" / "ecdctr"
RELEASE = "ecdctr"
EXISTING = "ecdctr-credentials"
# a value per secret setting, unlike anything else a rendering holds
VALUES = {k: f"s3cr3t-{k.replace('.', '-').replace('_', '-')}-7731" for k in sorted(SECRET_KEYS)}
VALUES["alerts.webhook_url"] = "https://hooks.example/T0/tok-webhook-7731"
VALUES["alerts.slack_webhook_url"] = "https://hooks.example/services/T0/tok-slack-7731"
VALUES["alerts.teams_webhook_url"] = "https://hooks.example/workflows/tok-teams-7731"
# the chart's value under `secrets` of each secret setting
CHART_KEYS = {"store.access_key_id": "storeAccessKeyId", "store.secret_access_key": "storeSecretAccessKey",
              "alerts.webhook_url": "alertsWebhookUrl", "alerts.smtp_password": "alertsSmtpPassword",
              "alerts.slack_webhook_url": "alertsSlackWebhookUrl", "alerts.teams_webhook_url": "alertsTeamsWebhookUrl",
              "alerts.pagerduty_routing_key": "alertsPagerdutyRoutingKey"}


def env_name(key: str) -> str:
    section, name = key.split(".")
    return f"ECDCTR_{section.upper()}__{name.upper()}"


def helm_template(tmp_path: Path, values: dict, name: str = "values.yaml") -> subprocess.CompletedProcess:
    assert HELM.is_file(), f"helm not found at {HELM} (run `make helm`)"
    f = tmp_path / name
    f.write_text(yaml.safe_dump(values))
    return subprocess.run([str(HELM), "template", RELEASE, str(CHART), "--namespace", "ecdctr", "-f", str(f)],
                          capture_output=True, text=True)


def rendered(tmp_path: Path, values: dict) -> list[dict]:
    r = helm_template(tmp_path, values)
    assert r.returncode == 0, r.stderr[-2000:]
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def config_maps(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}


def settings_config_map(docs: list[dict]) -> dict:
    return config_maps(docs)[f"{RELEASE}-ecdctr-config"]


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    """Every pod spec the chart renders: workload templates and pod templates in ConfigMaps."""
    specs = {}
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            specs[f"{d['kind']}/{d['metadata']['name']}"] = d["spec"]["template"]["spec"]
        if d["kind"] == "Pod":
            specs[f"Pod/{d['metadata']['name']}"] = d["spec"]
    for name, cm in config_maps(docs).items():
        for key, text in cm.get("data", {}).items():
            doc = yaml.safe_load(text)
            if isinstance(doc, dict) and doc.get("kind") == "Pod":
                specs[f"ConfigMap/{name}/{key}"] = doc["spec"]
    return specs


def ecdctr_containers(spec: dict) -> list[dict]:
    """The containers (init containers too) that run the pipeline's code; TF Serving reads only its
    local volume (the serving-sync containers copy the served version into it)."""
    return [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] != "tf-serving"]


def tf_serving(docs: list[dict]) -> dict:
    return next(c for c in pod_specs(docs)["Deployment/ecdctr-ecdctr-serving"]["containers"] if c["name"] == "tf-serving")


def secret_refs(container: dict) -> set[str]:
    """Names of the Secrets a container loads (envFrom secretRef, env secretKeyRef)."""
    names = {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
    names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", [])
              if "secretKeyRef" in e.get("valueFrom", {})}
    return names


def test_every_secret_setting_has_a_key_in_the_chart():
    """The chart's `secrets.*` values cover every secret setting (a new SecretStr setting needs
    its chart value, its Secret key and the schema's refusal under `pipeline`)."""
    assert set(CHART_KEYS) == set(SECRET_KEYS)
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(chart_values["secrets"]) == {"existingSecret", *CHART_KEYS.values()}
    schema = json.loads((CHART / "values.schema.json").read_text())
    refused = " ".join(schema["definitions"]["noSecrets"]["patternProperties"])
    assert all(k.split(".")[1] in refused for k in SECRET_KEYS)


@pytest.mark.parametrize("path", [*sorted(SECRET_KEYS), "spark.extra_conf.spark.hadoop.fs.s3a.secret.key"])
def test_a_secret_under_pipeline_is_refused_by_the_schema(tmp_path, path, fault_counts):
    section, rest = path.split(".", 1)
    value = VALUES.get(path, "s3cr3t-spark-conf-7731")
    nested = {"extra_conf": {rest.split(".", 1)[1]: value}} if section == "spark" else {rest: value}
    r = helm_template(tmp_path, {"pipeline": {section: nested}})
    assert r.returncode != 0, f"pipeline.{path} was rendered:\n" + r.stdout[:1500]
    err = " ".join(r.stderr.split())
    assert "values don't meet the specifications of the schema" in err
    where = "/pipeline/" + path.replace(".", "/", 1 if section != "spark" else 2)
    assert where in err, err
    assert value not in r.stderr and value not in r.stdout
    fault_counts["chart: secrets refused under pipeline.*"] = fault_counts.get(
        "chart: secrets refused under pipeline.*", 0) + 1


def test_the_chart_names_the_secret_and_configmap_the_dags_mount_not_the_pipeline_values(tmp_path):
    r = helm_template(tmp_path, {"pipeline": {"orchestration": {"kubernetes": {"secret_env": "other"}}}})
    assert r.returncode != 0 and "/pipeline/orchestration/kubernetes/secret_env" in r.stderr


def test_existing_secret_is_loaded_by_every_pod_and_no_configmap_holds_a_secret(tmp_path):
    docs = rendered(tmp_path, {"secrets": {"existingSecret": EXISTING}})
    assert not [d for d in docs if d["kind"] == "Secret"]  # the operator's own Secret: not rendered
    specs = pod_specs(docs)
    assert "Deployment/ecdctr-ecdctr-serving" in specs
    for name, spec in specs.items():
        for c in ecdctr_containers(spec):
            assert EXISTING in secret_refs(c), f"{name} container {c['name']} does not load Secret {EXISTING}"
    serving = specs["Deployment/ecdctr-ecdctr-serving"]
    assert {c["name"] for c in ecdctr_containers(serving)} == {"serving-sync", "serving-sync-follow"}
    # TF Serving (>= 2.7) reads no S3: it gets no credentials, the serving-sync containers do
    assert secret_refs(tf_serving(docs)) == set() and "AWS_" not in json.dumps(tf_serving(docs))
    cfg = yaml.safe_load(settings_config_map(docs)["data"]["config.yaml"])
    k8s = cfg["orchestration"]["kubernetes"]
    assert (k8s["config_map"], k8s["secret_env"]) == ("ecdctr-ecdctr-config", EXISTING)


def test_chart_created_secret_holds_the_values_and_no_configmap_does(tmp_path):
    docs = rendered(tmp_path, {"secrets": {CHART_KEYS[k]: v for k, v in VALUES.items()}})
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert len(secrets) == 1 and secrets[0]["metadata"]["name"] == "ecdctr-ecdctr-secrets"
    data = {k: base64.b64decode(v).decode() for k, v in secrets[0]["data"].items()}
    assert data == {env_name(k): v for k, v in VALUES.items()}
    # the Secret's keys are what the settings read
    s = load_settings(environ=data)
    assert s.store.secret_access_key.get_secret_value() == VALUES["store.secret_access_key"]
    assert s.alerts.webhook_url.get_secret_value() == VALUES["alerts.webhook_url"]
    for name, cm in config_maps(docs).items():
        text = json.dumps(cm)
        for key, value in VALUES.items():
            assert value not in text and base64.b64encode(value.encode()).decode() not in text, (name, key)
    for name, spec in pod_specs(docs).items():
        for c in ecdctr_containers(spec):
            assert "ecdctr-ecdctr-secrets" in secret_refs(c), name
        for c in spec.get("initContainers", []) + spec["containers"]:
            assert not any(v in json.dumps(c) for v in VALUES.values()), name  # by reference, never inline
    assert secret_refs(tf_serving(docs)) == set()


def test_without_secrets_no_secret_is_rendered_or_referenced(tmp_path):
    docs = rendered(tmp_path, {})
    assert not [d for d in docs if d["kind"] == "Secret"]
    for name, spec in pod_specs(docs).items():
        assert not any(secret_refs(c) for c in spec.get("initContainers", []) + spec["containers"]), name
    s_cfg = yaml.safe_load(settings_config_map(docs)["data"]["config.yaml"])
    assert s_cfg["orchestration"]["kubernetes"]["secret_env"] is None


def test_both_an_existing_secret_and_values_is_refused(tmp_path):
    r = helm_template(tmp_path, {"secrets": {"existingSecret": EXISTING, "alertsSmtpPassword": "pw-7731"}})
    assert r.returncode != 0 and "not both" in r.stderr and "pw-7731" not in r.stderr


def _rendered_settings(tmp_path: Path, docs: list[dict]) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(settings_config_map(docs)["data"]["config.yaml"])
    return cfg


@pytest.mark.parametrize("workers", [1, 2])
def test_dag_pods_from_the_rendered_settings_load_the_secret_and_mount_the_configmap(tmp_path, monkeypatch,
                                                                                       workers):
    """The pods (and with training.workers > 1 the Indexed Jobs) the DAGs' operators run, built
    from the settings file the chart renders (what the Airflow workers read via ECDCTR_CONFIG):
    each loads the Secret and mounts the chart's ConfigMap by its rendered name."""
    from ecdctr_pipeline.orchestration import pods

    docs = rendered(tmp_path, {"secrets": {"existingSecret": EXISTING},
                               "pipeline": {"training": {"workers": workers}}})
    monkeypatch.setenv("ECDCTR_CONFIG", str(_rendered_settings(tmp_path, docs)))
    for k in [k for k in os.environ if k.startswith("ECDCTR_") and k != "ECDCTR_CONFIG"]:
        monkeypatch.delenv(k)
    out = tmp_path / "k8s"
    assert pods.main(["--out", str(out)]) == 0
    manifests = [json.loads(f.read_text()) for f in sorted(out.glob("*.json"))]
    specs = [m["spec"] if m["kind"] == "Pod" else m["spec"]["template"]["spec"]
             for m in manifests if m["kind"] in ("Pod", "Job")]
    assert len(specs) == (12 if workers == 1 else 3)
    for spec in specs:
        c = spec["containers"][0]
        assert EXISTING in secret_refs(c), c["args"]
        assert {v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v} == {"ecdctr-ecdctr-config"}
    assert "ecdctr-ecdctr-config" in config_maps(docs)  # the ConfigMap they mount is the chart's


@pytest.fixture(scope="module")
def airflow_db():
    r = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_airflow_kubernetes_operators_from_the_rendered_settings_load_the_secret(airflow_db, tmp_path, monkeypatch):
    """The same through Airflow: the DAG files parsed in Kubernetes mode with the chart's settings."""
    from airflow.dag_processing.dagbag import DagBag

    from ecdctr_pipeline.orchestration import steps
    from ecdctr_pipeline.orchestration.runner import DAGS_FOLDER

    docs = rendered(tmp_path, {"secrets": {"existingSecret": EXISTING}})
    monkeypatch.setenv("ECDCTR_CONFIG", str(_rendered_settings(tmp_path, docs)))
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    checked = 0
    for t in steps.TIERS.values():
        for step in t.steps:
            if step.kind not in steps.POD_KINDS:
                continue
            pod = bag.get_dag(t.dag_id).get_task(step.name).full_pod_spec
            c = pod.spec.containers[0]
            assert [e.secret_ref.name for e in c.env_from or [] if e.secret_ref] == [EXISTING], step.name
            assert [v.config_map.name for v in pod.spec.volumes if v.config_map] == ["ecdctr-ecdctr-config"]
            checked += 1
    assert checked == 12

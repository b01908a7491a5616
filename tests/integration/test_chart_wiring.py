"""The chart and the pods the DAGs build agree: the real Helm CLI renders the chart (default values,
and the production example under another release name and namespace with more of its values
set), the DAG files are parsed in Kubernetes mode with the settings that rendering's ConfigMap
holds (what the Airflow workers read), and every operator's pod or Job is checked against the
rendering: each ConfigMap, Secret, ServiceAccount, PVC and Service it names exists there (or is
the operator's own ``secrets.existingSecret``), and the chart's values — images, pull policy and
Secrets, resources, GPUs, node selector, tolerations, the start-up waits, the namespace — are
what the pods get. Spark steps drive their executors through the ServiceAccount the chart's Role
lets create pods."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / ".tools" / "bin" / "helm"
CHART = ROOT / "helm" / "ecdctr"
PRODUCTION = CHART / "values-production.yaml"
# the production example, plus what its file leaves at the defaults, under another release name
# and namespace (a name the pods hard-coded would show here) and with two trainer workers (Jobs)
PRODUCTION_EXTRA = {
    "serviceAccount": {"name": "ecdctr-prod"},
    "imagePullSecrets": ["regcred-a", "regcred-b"],
    "training": {"image": {"repository": "registry.example.com/ecdctr/trainer", "tag": "0.1.0", "pullPolicy": "Always"},
                 "nodeSelector": {"cloud.example.com/pool": "gpu-a100"},
                 "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
                 "workerService": "prod-trainer-workers", "scheduleTimeoutSeconds": 2700, "startupTimeoutSeconds": 1200},
    "spark": {"resources": {"requests": {"cpu": 3, "memory": "6Gi"}, "limits": {"cpu": 4, "memory": "12Gi"}}},
    "pipeline": {"training": {"workers": 2}},
}
CASES = {"default": ("ecdctr", "ecdctr", []), "production": ("prod", "ml-prod", [PRODUCTION])}


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture(scope="module")
def airflow_db():
    r = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


_WIRED: dict[str, tuple] = {}


@pytest.fixture(scope="module", params=sorted(CASES))
def wired(request, airflow_db, tmp_path_factory):
    """(values, release namespace, rendered docs, the DagBag) for one rendering."""
    if request.param not in _WIRED:
        _WIRED[request.param] = _wire(request.param, tmp_path_factory.mktemp(request.param))
    return _WIRED[request.param]


@pytest.fixture(scope="module")
def default_rendering(airflow_db, tmp_path_factory):
    if "default" not in _WIRED:
        _WIRED["default"] = _wire("default", tmp_path_factory.mktemp("default"))
    return _WIRED["default"]


def _wire(case: str, tmp: Path) -> tuple:
    from airflow.dag_processing.dagbag import DagBag

    from ecdctr_pipeline.orchestration.runner import DAGS_FOLDER

    assert HELM.is_file(), f"helm not found at {HELM} (run `make helm`)"
    release, namespace, files = CASES[case]
    extra = PRODUCTION_EXTRA if case == "production" else {}
    (tmp / "extra.yaml").write_text(yaml.safe_dump(extra))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in files:
        values = _merge(values, yaml.safe_load(f.read_text()))
    values = _merge(values, extra)
    flags = [a for f in [*files, tmp / "extra.yaml"] for a in ("-f", str(f))]
    r = subprocess.run([str(HELM), "template", release, str(CHART), "--namespace", namespace, *flags],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {})]
    (tmp / "config.yaml").write_text(cm["data"]["config.yaml"])
    saved = dict(os.environ)
    try:  # the Airflow workers' environment: ECDCTR_CONFIG and nothing else of ours
        for k in [k for k in os.environ if k.startswith("ECDCTR_")]:
            del os.environ[k]
        os.environ["ECDCTR_CONFIG"] = str(tmp / "config.yaml")
        bag = DagBag(dag_folder=str(DAGS_FOLDER))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert bag.import_errors == {}
    return values, namespace, docs, bag


def _names(docs: list[dict], kind: str) -> set[str]:
    return {d["metadata"]["name"] for d in docs if d["kind"] == kind}


def _image(v: dict) -> str:
    return f"{v['repository']}:{v['tag']}"


def _strings(resources: dict) -> dict:
    return {sec: {k: str(q) for k, q in qs.items()} for sec, qs in resources.items()}


def _operators(bag):
    """(step, operator, pod spec as a dict, metadata) of every step that runs in a pod or Job."""
    from kubernetes.client import ApiClient

    from ecdctr_pipeline.orchestration import steps

    api = ApiClient()
    for t in steps.TIERS.values():
        for step in t.steps:
            if step.kind not in steps.POD_KINDS:
                continue
            op = bag.get_dag(t.dag_id).get_task(step.name)
            if type(op).__name__ == "KubernetesJobOperator":
                job = api.sanitize_for_serialization(op.full_job_spec)
                yield step, op, job["spec"]["template"]["spec"], job["metadata"]
            else:
                pod = api.sanitize_for_serialization(op.full_pod_spec)
                yield step, op, pod["spec"], pod["metadata"]


def test_every_object_a_dag_pod_names_is_in_the_chart(wired):
    values, namespace, docs, bag = wired
    secrets = _names(docs, "Secret") | ({values["secrets"]["existingSecret"]} - {""})
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"}
    checked = 0
    for step, op, spec, meta in _operators(bag):
        where = f"{step.name} ({namespace})"
        assert op.namespace == meta["namespace"] == namespace, where
        assert spec["serviceAccountName"] in _names(docs, "ServiceAccount"), where
        for v in spec.get("volumes", []):
            if "configMap" in v:
                assert v["configMap"]["name"] in _names(docs, "ConfigMap"), where
            if "secret" in v:
                assert v["secret"]["secretName"] in secrets, where
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in _names(docs, "PersistentVolumeClaim"), where
        for c in spec["containers"]:
            refs = {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
            refs |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                     if "secretKeyRef" in e.get("valueFrom", {})}
            assert refs <= secrets, f"{where}: Secrets {refs - secrets} are not in the chart"
        if spec.get("subdomain"):
            assert spec["subdomain"] in services, f"{where}: no headless Service {spec['subdomain']}"
        checked += 1
    assert checked == 12


def test_the_chart_values_reach_the_dag_pods(wired):
    values, namespace, docs, bag = wired
    t, sp = values["training"], values["spark"]
    pull_secrets = [{"name": n} for n in values.get("imagePullSecrets") or []]
    kinds = set()
    for step, op, spec, meta in _operators(bag):
        where = f"{step.name} ({namespace})"
        c = spec["containers"][0]
        kinds.add(step.kind)
        assert spec.get("imagePullSecrets", []) == pull_secrets, where
        assert c["imagePullPolicy"] == t["image"].get("pullPolicy", "IfNotPresent"), where
        # a GPU node scaling up, then a large image pulled: the chart's waits, not the operator's 120 s
        assert (op.schedule_timeout_seconds, op.startup_timeout_seconds) == (
            t["scheduleTimeoutSeconds"], t["startupTimeoutSeconds"]), where
        if step.kind == "trainer":
            gpu = str(t["gpus"])
            assert c["image"] == _image(t["image"]), where
            assert c["resources"] == {sec: {**qs, "nvidia.com/gpu": gpu} for sec, qs in
                                      _strings(t["resources"]).items()}, where
            assert spec["nodeSelector"] == t["nodeSelector"] and spec["tolerations"] == t["tolerations"], where
        elif step.kind == "spark":
            assert c["image"] == _image(sp["image"]) and c["resources"] == _strings(sp["resources"]), where
        else:
            assert c["image"] == _image(t["image"]), where
            assert "nvidia.com/gpu" not in c["resources"].get("limits", {}), where
        if type(op).__name__ == "KubernetesPodOperator":  # the step's JSON result comes back as its XCom
            env = {e["name"]: e.get("value") for e in c["env"]}
            assert op.do_xcom_push and env["ECDCTR_RESULT_FILE"] == "/airflow/xcom/return.json", where
    assert kinds == {"trainer", "spark", "job"}


def test_spark_steps_start_their_executors_through_the_charts_role(wired):
    """spark-submit in client mode: the step's pod is the driver, executors are pods of the Spark
    image in the release's namespace, created through the ServiceAccount the chart's Role allows
    to, and reach the driver at its pod's address (downward API) on the ports the pod declares."""
    values, namespace, docs, bag = wired
    (role,) = [d for d in docs if d["kind"] == "Role"]
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    allowed = {(r, v) for rule in role["rules"] if "" in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert {("pods", "create"), ("pods", "delete"), ("pods", "watch"), ("services", "create"),
            ("configmaps", "create"), ("pods/log", "get")} <= allowed
    jobs = {(r, v) for rule in role["rules"] if "batch" in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert {("jobs", "create"), ("jobs", "watch"), ("jobs", "delete")} <= jobs
    sparks = 0
    for step, op, spec, meta in _operators(bag):
        assert {"kind": "ServiceAccount", "name": spec["serviceAccountName"], "namespace": namespace} in binding["subjects"]
        if step.kind != "spark":
            continue
        sparks += 1
        c = spec["containers"][0]
        args = c["args"]
        conf = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--conf")
        assert args[:2] == ["--master", "k8s://https://kubernetes.default.svc"] and "--deploy-mode" in args
        assert conf["spark.kubernetes.container.image"] == _image(values["spark"]["image"])
        assert conf["spark.kubernetes.namespace"] == namespace
        assert conf["spark.kubernetes.authenticate.driver.serviceAccountName"] == spec["serviceAccountName"]
        env = {e["name"]: e for e in c["env"]}
        assert conf["spark.driver.host"] == "$(ECDCTR_POD_IP)"
        assert env["ECDCTR_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert conf["spark.kubernetes.driver.pod.name"] == "$(ECDCTR_POD_NAME)"
        assert env["ECDCTR_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        ports = {p["containerPort"] for p in c["ports"]}
        assert {int(conf["spark.driver.port"]), int(conf["spark.blockManager.port"])} == ports
        pulls = values.get("imagePullSecrets") or []
        assert conf.get("spark.kubernetes.container.image.pullSecrets", "") == ",".join(pulls)
    assert sparks == 3


def test_airflow_values_mount_the_charts_configmap_and_run_as_its_service_account(default_rendering):
    """helm/airflow-values.yaml (the official Airflow chart, beside release "ecdctr" of this chart):
    the workers mount the ConfigMap this chart renders and run as its ServiceAccount, and set no
    orchestration.kubernetes.* variable that would override what the ConfigMap says."""
    values, namespace, docs, bag = default_rendering
    airflow = yaml.safe_load((ROOT / "helm/airflow-values.yaml").read_text())
    (cm,) = [v["configMap"]["name"] for v in airflow["volumes"] if "configMap" in v]
    assert cm in _names(docs, "ConfigMap")
    assert airflow["workers"]["serviceAccount"]["name"] in _names(docs, "ServiceAccount")
    assert not [e["name"] for e in airflow["env"] if e["name"].startswith("ECDCTR_ORCHESTRATION__KUBERNETES__")]
    production = yaml.safe_load(PRODUCTION.read_text())
    (secret,) = yaml.safe_load(airflow["extraEnvFrom"])
    assert secret["secretRef"]["name"] == production["secrets"]["existingSecret"]

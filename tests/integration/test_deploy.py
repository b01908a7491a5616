"""Deployment files checked by real tools: hadolint, the Helm CLI (lint + template), kubernetes-validate.
No Docker engine or cluster runs here; everything else about the images and chart is checked."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from ecdctr_pipeline.orchestration import commands, steps

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TOOLS_PY = ROOT / ".tools-venv" / "bin" / "python"


@pytest.fixture(scope="module")
def lint_deploy():
    r = subprocess.run(["make", "-s", "lint-deploy"], cwd=ROOT, capture_output=True, text=True)
    return r


def test_make_lint_deploy_passes(lint_deploy):
    assert lint_deploy.returncode == 0, lint_deploy.stdout[-3000:] + lint_deploy.stderr[-3000:]
    assert "lint-deploy: ok (0 problem(s))" in lint_deploy.stdout


def test_wrong_value_type_is_rejected_by_the_schema(lint_deploy, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("serving:\n  replicas: two\n")
    r = subprocess.run([str(TOOLS_PY), "scripts/lint_deploy.py", "--skip-hadolint", "--values", str(bad),
                        "--rendered", str(tmp_path / "rendered")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1, r.stdout
    assert "helm lint (" in r.stdout and "/serving/replicas" in r.stdout and "want integer" in r.stdout


@pytest.mark.parametrize("name", ["chart-default.yaml", "chart-values-production.yaml"])
def test_rendered_chart_is_valid_and_its_settings_load(lint_deploy, name, tmp_path):
    from ecdctr_pipeline.core.settings import load_settings

    docs = [d for d in yaml.safe_load_all((ROOT / "build/helm" / name).read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"ConfigMap", "Deployment", "Service", "ServiceAccount"} <= kinds
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    (tmp_path / "config.yaml").write_text(cm["data"]["config.yaml"])
    s = load_settings(tmp_path / "config.yaml", environ={})
    assert s.spark.jars_dir == "classpath" and s.spark.master.startswith("k8s://")  # jars baked into the image


def test_a_bad_rendered_manifest_fails_kubernetes_validation(lint_deploy, tmp_path):
    docs = [d for d in yaml.safe_load_all((ROOT / "build/helm/chart-default.yaml").read_text()) if d]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    dep["spec"]["replicas"] = "two"
    (tmp_path / "dep.yaml").write_text(yaml.safe_dump(dep))
    r = subprocess.run([str(TOOLS_PY), "scripts/lint_deploy.py", "--skip-hadolint", "--manifests", str(tmp_path),
                        "--rendered", str(tmp_path / "rendered")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and "did not validate" in r.stdout


def test_a_bad_pod_spec_fails_kubernetes_validation(lint_deploy, tmp_path):
    pod = json.loads((ROOT / "build/k8s/chart-default/pod-actr-train-actr.json").read_text())
    pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = [1]
    (tmp_path / "pod.json").write_text(json.dumps(pod))
    r = subprocess.run([str(TOOLS_PY), "scripts/lint_deploy.py", "--skip-hadolint", "--manifests", str(tmp_path),
                        "--rendered", str(tmp_path / "rendered")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and "did not validate" in r.stdout


def test_training_pod_requests_a_gpu(lint_deploy):
    pod = json.loads((ROOT / "build/k8s/chart-default/pod-actr-train-actr.json").read_text())
    c = pod["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1" and c["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert [*c["command"], *c["args"]] == commands.pod_command(
        "trainer", list(steps.argv_of(steps.TIERS["actr"].step("train_actr"))), spark_master="unused")
    assert pod["spec"]["serviceAccountName"] == "ecdctr" and pod["spec"]["tolerations"]


def _instruction(dockerfile: Path, name: str) -> str:
    lines = [ln for ln in dockerfile.read_text().splitlines() if ln.startswith(name + " ")]
    assert lines, f"{dockerfile} has no {name}"
    return lines[-1][len(name) + 1:]


def test_image_entry_points_match_the_dag_commands():
    trainer = json.loads(_instruction(ROOT / "docker/trainer/Dockerfile", "ENTRYPOINT"))
    spark = json.loads(_instruction(ROOT / "docker/spark/Dockerfile", "ENTRYPOINT"))
    assert trainer == commands.TRAINER_ENTRYPOINT == commands.pod_command("trainer", ["x"], spark_master="m")[:1]
    # a step's pod names spark-submit itself (its command replaces the entry point); the entry
    # point runs Spark-on-Kubernetes executors, standalone masters and workers, else spark-submit
    assert commands.SPARK_ENTRYPOINT == commands.pod_command("spark", ["x"], spark_master="m")[:1] == ["spark-submit"]
    assert spark[-1] == "ecdctr-spark-entrypoint"
    spark_df = (ROOT / "docker/spark/Dockerfile").read_text()
    assert "COPY docker/spark/entrypoint.sh /usr/local/bin/ecdctr-spark-entrypoint" in spark_df
    assert "ENV SPARK_HOME=/opt/spark PATH=/opt/spark/bin:${PATH}" in spark_df  # spark-submit on the PATH
    entry = (ROOT / "docker/spark/entrypoint.sh").read_text()
    assert "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend" in entry
    assert re.search(r"^  \*\)\n    exec spark-submit \"\$@\"$", entry, re.M)
    assert "COPY spark_jobs /opt/ecdctr/spark_jobs" in spark_df
    # the image bakes in the same pinned jars (checked against jvm/jars.sha256) for the pinned pyspark
    assert "COPY jvm/pom.xml jvm/jars.sha256" in spark_df and "sha256sum --strict -c ../jars.sha256" in spark_df
    pyspark = re.search(r"^pyspark==(\S+)$", (ROOT / "requirements.lock").read_text(), re.M).group(1)
    assert f"ARG SPARK_VERSION={pyspark}" in spark_df and '"pyspark==${SPARK_VERSION}"' in spark_df
    assert commands.SPARK_JOBS_DIR == "/opt/ecdctr/spark_jobs"
    assert (ROOT / "spark_jobs" / commands.SPARK_CLI_JOB).is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^ecdctr = "ecdctr_pipeline\.app\.main:main"$', pyproject, re.M)
    lock = {ln.split("==")[0].lower() for ln in (ROOT / "requirements.lock").read_text().splitlines() if "==" in ln}
    for image in ("airflow", "spark"):
        reqs = [re.sub(r"\[.*\]", "", ln.strip().lower()) for ln in
                (ROOT / f"docker/{image}/requirements.txt").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
        assert reqs and set(reqs) <= lock, image  # every package, and its version, from the lock
        assert "-c /tmp/requirements.lock -r /tmp/requirements.txt" in (ROOT / f"docker/{image}/Dockerfile").read_text()
        if image == "airflow":
            assert "tensorflow" not in reqs and "pyspark" not in reqs  # DAG parsing stays light
    # the build context is only what the Dockerfiles copy: every COPY source is let in
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert [ln for ln in ignore if ln and not ln.startswith("#")][0] == "*"  # all out, then some in
    allowed = {ln[1:] for ln in ignore if ln.startswith("!")}
    for df in sorted((ROOT / "docker").glob("*/Dockerfile")):
        for ln in df.read_text().splitlines():
            if ln.startswith("COPY ") and "--from=" not in ln:
                for src in ln.split()[1:-1]:
                    if not src.startswith("--"):
                        assert src.rstrip("/") in allowed, f"{df.relative_to(ROOT)}: {src} is outside the build context"


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        if isinstance(d, list):
            d = next(x for x in d if x.get("name") == part)["value"]
        else:
            d = d[part]
    return d


def test_airflow_values_match_what_the_readme_says():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("<!-- airflow-values -->"):readme.index("<!-- /airflow-values -->")]
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]*)` \|", section, re.M)
    assert len(rows) >= 6
    values = yaml.safe_load((ROOT / "helm/airflow-values.yaml").read_text())
    for key, want in rows:
        assert str(_get(values, key)) == want, key


def test_compose_uses_the_settings_names():
    compose = yaml.safe_load((ROOT / "docker/compose.yaml").read_text())
    env = compose["x-ecdctr-env"]
    from ecdctr_pipeline.core.settings import load_settings

    s = load_settings(environ={k: v for k, v in env.items() if k.startswith("ECDCTR_") and "${" not in v})
    assert s.store.root == "s3://ecdctr/pipeline" and s.store.allow_http
    assert {"airflow", "minio", "serving", "serving-sync"} <= set(compose["services"])
    # TF Serving reads the local copy serving-sync keeps in the shared volume, not S3
    serving, syncer = compose["services"]["serving"], compose["services"]["serving-sync"]
    assert serving["environment"] == {"MODEL_CONFIG": "/models/models.config"}
    assert serving["volumes"] == ["models:/models:ro"] and syncer["volumes"] == ["models:/models"]
    assert [*syncer["entrypoint"], *syncer["command"][:3]] == ["ecdctr", "serving-sync", "--to", "/models"]
    assert syncer["environment"]["ECDCTR_STORE"] == env["ECDCTR_STORE"]


@pytest.mark.parametrize("name", ["chart-default.yaml", "chart-values-production.yaml"])
def test_serving_pod_syncs_the_served_version_into_a_local_volume(lint_deploy, name):
    """TF Serving (>= 2.7) reads no s3:// path: the serving pod's init container and sidecar run
    `ecdctr serving-sync` into an emptyDir, with the settings the other ecdctr pods get, and TF
    Serving reads the local models.config."""
    docs = [d for d in yaml.safe_load_all((ROOT / "build/helm" / name).read_text()) if d]
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-serving"))
    pod = dep["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["models"] and volumes["config"]["configMap"]["name"].endswith("-config")
    # a training pod the DAGs build from this rendering's settings (make lint-deploy)
    trainer = json.loads((ROOT / "build/k8s" / Path(name).stem / "pod-actr-train-actr.json").read_text())[
        "spec"]["containers"][0]
    (init,) = pod["initContainers"]
    containers = {c["name"]: c for c in pod["containers"]}
    sidecar, server = containers["serving-sync-follow"], containers["tf-serving"]
    assert init["name"] == "serving-sync" and set(containers) == {"serving-sync-follow", "tf-serving"}
    for c, mode in ((init, "--once"), (sidecar, "--follow")):
        argv = [*c["command"], *c["args"]]
        assert argv[:4] == ["ecdctr", "serving-sync", "--to", "/models"] and mode in argv
        assert c["image"] == trainer["image"]  # the same ecdctr code as the training pods
        assert {"name": "ECDCTR_CONFIG", "value": "/etc/ecdctr/config.yaml"} in c["env"]
        assert c.get("envFrom") == trainer.get("envFrom")
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        assert mounts["models"]["mountPath"] == "/models" and not mounts["models"].get("readOnly")
        assert mounts["config"]["mountPath"] == "/etc/ecdctr"
    assert "--interval" in sidecar["args"]
    args = server["args"]
    assert server["command"] == ["tensorflow_model_server"] and "--model_config_file=/models/models.config" in args
    assert any(a.startswith("--model_config_file_poll_wait_seconds=") for a in args)
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in server["volumeMounts"]
    text = yaml.safe_dump(server)
    assert "s3://" not in text and "AWS_" not in text and "S3_ENDPOINT" not in text  # nothing of S3 left

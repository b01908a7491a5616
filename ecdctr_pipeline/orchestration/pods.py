"""``python -m ecdctr_pipeline.orchestration.pods --out DIR``: write the manifest of every
production step of :mod:`steps` as JSON, for ``make lint-deploy`` to validate against the
Kubernetes schemas: the Pod each KubernetesPodOperator runs, and with ``training.workers`` > 1
the Indexed Job of each trainer step (KubernetesJobOperator) plus the workers' headless
Service."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ecdctr_pipeline.core.settings import Settings, load_settings
from ecdctr_pipeline.orchestration import commands, steps
from ecdctr_pipeline.orchestration.airflow_support import (
    job_manifest, pod_manifest, runs_as_job, worker_service_manifest,
)


def production_steps(s: Settings) -> dict[str, tuple[str, list[str]]]:
    """``{<tier>-<step>: (kind, container command)}`` for every step that runs in a pod."""
    return {f"{tier}-{step.name}".replace("_", "-"): (step.kind, commands.pod_command(
        step.kind, list(steps.argv_of(step)), spark_master=s.spark.master, kubernetes=s.orchestration.kubernetes))
            for tier, t in steps.TIERS.items() for step in t.steps if step.kind in steps.POD_KINDS}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    s = load_settings()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    multi = s.training.workers > 1
    for old in out.glob("job-*.json" if multi else "pod-*.json"):  # steps renamed or removed since the last run
        old.unlink()
    written = 0
    for name, (kind, cmd) in production_steps(s).items():
        if multi:
            if runs_as_job(s, kind, name.split("-", 1)[1]):
                (out / f"job-{name}.json").write_text(json.dumps(job_manifest(s, name=name, command=cmd), indent=2))
                written += 1
            continue
        (out / f"pod-{name}.json").write_text(json.dumps(pod_manifest(s, name=name, kind=kind, command=cmd), indent=2))
        written += 1
    if multi:
        (out / "job-service-trainer-workers.json").write_text(json.dumps(worker_service_manifest(s), indent=2))
        written += 1
    what = f"{s.training.workers}-worker trainer job manifests" if multi else "pod manifests"
    print(f"wrote {written} {what} to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

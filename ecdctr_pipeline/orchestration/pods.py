"""``python -m ecdctr_pipeline.orchestration.pods --out DIR``: write the Pod manifest of every
production step of :mod:`steps` (what the KubernetesPodOperators run) as JSON, for ``make
lint-deploy`` to validate against the Kubernetes schemas."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ecdctr_pipeline.core.settings import load_settings
from ecdctr_pipeline.orchestration import commands, steps
from ecdctr_pipeline.orchestration.airflow_support import pod_manifest


def production_steps(master: str) -> dict[str, tuple[str, list[str]]]:
    """``{<tier>-<step>: (kind, container command)}`` for every step that runs in a pod."""
    return {f"{tier}-{step.name}".replace("_", "-"): (step.kind, commands.pod_command(step.kind, list(step.argv),
                                                                                        spark_master=master))
            for tier, t in steps.TIERS.items() for step in t.steps if step.kind in steps.POD_KINDS}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    s = load_settings()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("pod-*.json"):  # steps renamed or removed since the last run
        old.unlink()
    for name, (kind, cmd) in production_steps(s.spark.master).items():
        (out / f"pod-{name}.json").write_text(json.dumps(pod_manifest(s, name=name, kind=kind, command=cmd), indent=2))
    print(f"wrote {len(production_steps(s.spark.master))} pod manifests to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m ecdctr_pipeline.orchestration.pods --out DIR``: write the Pod manifest of every
production step (what the KubernetesPodOperators run) as JSON, for ``make lint-deploy`` to
validate against the Kubernetes schemas."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..settings import load_settings
from . import commands
from .airflow_support import TEMPLATE_DS, pod_manifest


def production_steps(master: str) -> dict[str, tuple[str, list[str]]]:
    ds = TEMPLATE_DS
    return {
        "extract-tpm-features": ("spark", commands.spark_command("extract_tpm", master, ["--as-of", ds])),
        "extract-natural-features": ("spark", commands.spark_command(
            "extract_complete", master, ["--domain", "natural", "--as-of", ds])),
        "extract-ad-features": ("spark", commands.spark_command("extract_complete", master,
                                                                ["--domain", "ad", "--as-of", ds])),
        "gate-tpm": ("job", commands.gate_command("tpm", ds)),
        "gate-cpm": ("job", commands.gate_command("cpm", ds)),
        "gate-actr": ("job", commands.gate_command("actr", ds)),
        "evaluate-cpm": ("job", commands.evaluate_command(ds, "cpm")),
        "train-tpm": ("trainer", commands.train_command("tpm", ds)),
        "train-cpm": ("trainer", commands.train_command("cpm", ds)),
        "train-actr": ("trainer", commands.train_command("actr", ds)),
        "evaluate": ("trainer", commands.evaluate_command(ds)),
        "export-serving": ("trainer", commands.export_command(ds)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    s = load_settings()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, (kind, cmd) in production_steps(s.spark.master).items():
        (out / f"pod-{name}.json").write_text(json.dumps(pod_manifest(s, name=name, kind=kind, command=cmd), indent=2))
    print(f"wrote {len(production_steps(s.spark.master))} pod manifests to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Deployment checks with real tools (run by `make lint-deploy` from .tools-venv):

* hadolint on every docker/*/Dockerfile (rules ignored only in .hadolint.yaml, each with a reason);
* the real Helm CLI (`make helm`): `helm lint --strict` of helm/ecdctr with its default values
  and with every extra values file given (values.schema.json is enforced), then
  `helm template` of each, the rendered manifests validated by kubernetes-validate --strict;
* the pods the DAGs' operators build (`--pods-python`: ``python -m ecdctr_pipeline.orchestration.pods``
  in the project's venv), from the settings each rendered chart's ConfigMap holds — what the
  Airflow workers read in production — once as pods and once with ``training.workers: 2`` (the
  trainer steps' Indexed Jobs), into build/k8s/<chart rendering>/, validated like the chart;
* kubernetes-validate --strict on the Kubernetes manifests given (`--manifests`).

Exit status 1 and one line per problem on failure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def hadolint() -> list[str]:
    problems = []
    for f in sorted((ROOT / "docker").glob("*/Dockerfile")):
        r = subprocess.run([str(BIN / "hadolint"), "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(f)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            problems += [f"hadolint: {line}" for line in (r.stdout + r.stderr).strip().splitlines()]
    return problems


def helm_check(helm: str, values_file: Path | None, rendered_dir: Path) -> tuple[list[str], Path | None]:
    """`helm lint --strict` and `helm template` with ``values_file``; the rendered manifests' path."""
    chart = ROOT / "helm" / "ecdctr"
    label = "default values" if values_file is None else str(values_file)
    extra = [] if values_file is None else ["-f", str(values_file)]
    problems = []
    r = subprocess.run([helm, "lint", "--strict", str(chart), *extra], capture_output=True, text=True)
    if r.returncode != 0:
        problems += [f"helm lint ({label}): {ln.strip()}" for ln in (r.stdout + r.stderr).splitlines()
                     if ln.strip().startswith(("[ERROR]", "[WARNING]", "Error"))] or [f"helm lint ({label}) failed"]
    r = subprocess.run([helm, "template", "ecdctr", str(chart), "--namespace", "ecdctr", *extra],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return problems + [f"helm template ({label}): {' '.join(r.stderr.split())[:400]}"], None
    rendered_dir.mkdir(parents=True, exist_ok=True)
    out = rendered_dir / ("chart-default.yaml" if values_file is None else f"chart-{Path(values_file).stem}.yaml")
    out.write_text(r.stdout)
    return problems, out


def kube_validate(manifests: list[Path]) -> list[str]:
    problems = []
    for f in manifests:
        r = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", str(f)], capture_output=True, text=True)
        if r.returncode != 0:
            problems += [f"kubernetes-validate {f.name}: {line}" for line in (r.stdout + r.stderr).strip().splitlines()
                         if line.strip() and "PASSED" not in line]
    return problems


def chart_pods(python: str, rendering: Path, out_root: Path) -> tuple[list[str], list[Path]]:
    """The DAGs' pod (and multi-worker Job) manifests built from ``rendering``'s settings ConfigMap."""
    import os

    import yaml

    docs = [d for d in yaml.safe_load_all(rendering.read_text()) if d]
    cms = [d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {})]
    if len(cms) != 1:
        return [f"{rendering.name}: expected one settings ConfigMap (data config.yaml), found {len(cms)}"], []
    config = rendering.with_name(f"{rendering.stem}-config.yaml")
    config.write_text(cms[0]["data"]["config.yaml"])
    out = out_root / rendering.stem
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECDCTR_")} | {"ECDCTR_CONFIG": str(config)}
    problems = []
    for extra in ({}, {"ECDCTR_TRAINING__WORKERS": "2"}):
        r = subprocess.run([python, "-m", "ecdctr_pipeline.orchestration.pods", "--out", str(out)], cwd=ROOT,
                           env=env | extra, capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"pods from {rendering.name}: {' '.join((r.stderr or r.stdout).split())[-400:]}")
    return problems, sorted(out.glob("*.json"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--values", action="append", default=[], help="extra values files to lint the chart with")
    p.add_argument("--manifests", help="a folder of Kubernetes manifests (.json/.yaml) to validate")
    p.add_argument("--skip-hadolint", action="store_true")
    p.add_argument("--helm", default=str(ROOT / ".tools" / "bin" / "helm"), help="the helm binary (`make helm`)")
    p.add_argument("--rendered", default=str(ROOT / "build" / "helm"), help="where `helm template` output goes")
    p.add_argument("--pods-python", help="the project's python: build the DAGs' pods from each rendering's settings")
    p.add_argument("--pods-out", default=str(ROOT / "build" / "k8s"), help="where those pods go (one folder a rendering)")
    args = p.parse_args(argv)
    problems: list[str] = []
    if not Path(args.helm).is_file():
        print(f"lint-deploy: helm not found at {args.helm} (run `make helm`)")
        return 1
    if not args.skip_hadolint:
        problems += hadolint()
    rendered = []
    for v in [None, *[Path(x) for x in args.values]]:
        found, out = helm_check(args.helm, v, Path(args.rendered))
        problems += found
        if out is not None:
            rendered.append(out)
    problems += kube_validate(rendered)
    if args.pods_python:
        for r in rendered:
            found, files = chart_pods(args.pods_python, r, Path(args.pods_out))
            problems += found + kube_validate(files)
    if args.manifests:
        files = sorted(Path(args.manifests).glob("*.json")) + sorted(Path(args.manifests).glob("*.yaml"))
        if not files:
            problems.append(f"no manifests found in {args.manifests}")
        problems += kube_validate(files)
    for line in problems:
        print(line)
    print(f"lint-deploy: {'FAILED' if problems else 'ok'} ({len(problems)} problem(s))")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

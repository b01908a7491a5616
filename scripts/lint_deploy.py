"""Deployment checks with real tools (run by `make lint-deploy` from .tools-venv, Python 3.12):

* hadolint on every docker/*/Dockerfile (rules ignored only in .hadolint.yaml, each with a reason);
* Helm's own lint (helm-sdkpy) of helm/ecdctr with its default values and with every extra
  values file given (it renders the templates and checks values.schema.json);
* kubernetes-validate on the Kubernetes manifests given (the pod specs the operators build).

Exit status 1 and one line per problem on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

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


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def helm_lint(values_file: Path | None) -> list[str]:
    import helm_sdkpy

    chart = ROOT / "helm" / "ecdctr"
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "ecdctr"
        shutil.copytree(chart, target)
        label = "default values"
        if values_file is not None:
            merged = _deep_merge(yaml.safe_load((chart / "values.yaml").read_text()),
                                 yaml.safe_load(Path(values_file).read_text()) or {})
            (target / "values.yaml").write_text(yaml.safe_dump(merged))
            label = str(values_file)
        result = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(str(target)))
    problems = []
    for m in result.get("Messages") or []:
        if m.get("Severity", 0) >= 2:  # 1 info, 2 warning, 4 error
            err = m.get("Err") or {}
            problems.append(f"helm lint ({label}): severity {m['Severity']} in {m.get('Path')}: "
                            f"{json.dumps(err) if err else 'see helm lint'}")
    for e in result.get("Errors") or []:
        problems.append(f"helm lint ({label}): {e}")
    return problems


def kube_validate(manifests: list[Path]) -> list[str]:
    problems = []
    for f in manifests:
        r = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", str(f)], capture_output=True, text=True)
        if r.returncode != 0:
            problems += [f"kubernetes-validate {f.name}: {line}" for line in (r.stdout + r.stderr).strip().splitlines()
                         if line.strip() and "PASSED" not in line]
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--values", action="append", default=[], help="extra values files to lint the chart with")
    p.add_argument("--manifests", help="a folder of Kubernetes manifests (.json/.yaml) to validate")
    p.add_argument("--skip-hadolint", action="store_true")
    args = p.parse_args(argv)
    problems: list[str] = []
    if not args.skip_hadolint:
        problems += hadolint()
    problems += helm_lint(None)
    for v in args.values:
        problems += helm_lint(Path(v))
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

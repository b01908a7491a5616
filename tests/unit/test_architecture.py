"""The package layout is the architecture: layers import only downwards (function-level imports
included), no module import cycle, every package imports on its own, and the data-quality code
never loads TensorFlow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "ecdctr_pipeline"
# lowest first; a package may import its own modules and any package listed before it
LAYERS = ["core", "data", "quality", "modeling", "serving", "evaluation", "tiers", "cli", "orchestration", "app"]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ecdctr_pipeline module ``path`` imports, at any depth (absolute imports only: the
    package uses no relative imports, checked here too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (use absolute ecdctr_pipeline.* imports)"
            if node.module and node.module.startswith("ecdctr_pipeline"):
                for a in node.names:
                    out.add(f"{node.module}.{a.name}" if (PKG.parent / f"{node.module}.{a.name}".replace(".", "/")
                                                          ).with_suffix(".py").exists()
                            or (PKG.parent / f"{node.module}.{a.name}".replace(".", "/")).is_dir()
                            else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("ecdctr_pipeline")}
    return out


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}
EDGES = {m: _imports(p) - {m} for m, p in MODULES.items()}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_package_is_a_known_layer():
    packages = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS), f"packages {sorted(packages)} vs layers {LAYERS}"
    top_modules = {p.stem for p in PKG.glob("*.py")}
    assert top_modules == {"__init__"}, f"modules outside any package: {sorted(top_modules - {'__init__'})}"


def test_layers_import_only_downwards():
    bad = []
    for src, targets in EDGES.items():
        sp = _package(src)
        for dst in targets:
            dp = _package(dst)
            if sp is None or dp is None or sp == dp:
                continue
            if LAYERS.index(dp) > LAYERS.index(sp):
                bad.append(f"{src} -> {dst}")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_no_module_import_cycle():
    graph = {m: {t for t in ts if t in MODULES} for m, ts in EDGES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in graph[m]:
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)


@pytest.mark.parametrize("package", ["core", "data", "quality"])
def test_lower_layers_import_alone_without_tensorflow(package):
    """A fresh interpreter imports the package and all its modules (no hidden order dependence)
    without loading TensorFlow. (Every module of every package is imported by the test session.)"""
    mods = [m for m in MODULES if _package(m) == package]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in mods)
    code += "assert not {'tensorflow', 'keras'} & set(sys.modules), sorted({'tensorflow', 'keras'} & set(sys.modules))\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_quality_gate_path_loads_no_tensorflow():
    """Running a tier's gate (what the quality_gate pod runs) never imports TensorFlow/Keras."""
    code = ("import sys\nfrom ecdctr_pipeline.quality import gates, suites\nfrom ecdctr_pipeline.cli import verbs\n"
            "verbs.build_parser().parse_args(['gate', 'actr', '--as-of', '2026-11-24'])\n"
            "assert not {'tensorflow', 'keras'} & set(sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_readme_module_map_matches_the_tree():
    """Every package row of the README's map names exactly the modules in that package."""
    import re

    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `ecdctr_pipeline/")]
    seen = set()
    for line in rows:
        pkg = re.match(r"\| `ecdctr_pipeline/(\w+)/`", line).group(1)
        seen.add(pkg)
        named = set(re.findall(r"`(\w+)\.py`", line)) | {d.rstrip("/") for d in re.findall(r"`(\w+/)`", line)}
        actual = {p.stem for p in (PKG / pkg).glob("*.py") if p.stem != "__init__"} | {
            d.name for d in (PKG / pkg).iterdir() if d.is_dir() and (d / "__init__.py").exists()}
        assert named == actual, f"README row for {pkg}: names {sorted(named)}, tree has {sorted(actual)}"
    assert seen == set(LAYERS), f"README map covers {sorted(seen)}, packages are {LAYERS}"


def test_every_module_imports():
    import importlib

    for m in MODULES:
        importlib.import_module(m)


def test_the_reports_the_readme_names_are_committed_or_say_they_are_not():
    """A report file the README names (``reports/…/x.md|png|json``) is tracked by git, or the
    line naming it says "not committed": an ignored file never lands with the commit."""
    import re
    import subprocess

    tracked = set(subprocess.run(["git", "ls-files", "reports"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split())
    named = [(n, path) for n, line in enumerate((ROOT / "README.md").read_text().splitlines(), 1)
             for path in re.findall(r"reports/[\w./-]+\.(?:md|png|json)\b", line) if "not committed" not in line]
    assert named, "the README names no report file: the pattern is stale"
    missing = [f"README.md:{n}: {path}" for n, path in named if path not in tracked]
    assert not missing, f"named as if committed, not tracked by git: {missing}"
    # a report folder the README names holds tracked files, or its paragraph says it is not
    # committed, or it is a command's output destination ("→ `reports/…/`")
    folders = [(para[:60], path) for para in (ROOT / "README.md").read_text().split("\n\n")
               for path in re.findall(r"(?<!→ `)reports/[\w./=-]+/(?=[`\s)])", para)
               if "not committed" not in para and "not in the repository" not in para]
    assert folders, "the README names no report folder: the pattern is stale"
    empty = [f"{path} ({para!r}…)" for para, path in folders if not any(t.startswith(path) for t in tracked)]
    assert not empty, f"report folders named as if committed, nothing under them tracked by git: {empty}"

"""Layering: ``pipeline/`` is the runtime and imports ``stages/`` only in its composition root
(pipeline/plan/compose.py); the config reads the backbone table without importing a stage."""
from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT


def stage_imports(path) -> list[int]:
    tree = ast.parse(path.read_text())
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "stages" for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "stages":
            lines.append(node.lineno)
    return lines


def test_only_the_composition_root_imports_stages():
    offenders = {p.name: stage_imports(p) for p in (ROOT / "pipeline").glob("*.py") if p.name != "compose.py"}
    assert not {k: v for k, v in offenders.items() if v}, offenders
    assert stage_imports(ROOT / "pipeline" / "compose.py")  # the root does build the run from stages


def test_validating_a_config_imports_no_stage():
    code = ("import sys; from videoclf.config.schema import parse_config; "
            "c = parse_config({'streams': [{'name': 'a', 'source': 'a.mp4'}], 'model': {'backbone': 'resnet18'}}); "
            "assert c.model.crop == 224 and c.model.resize_to == 256; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'stages'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

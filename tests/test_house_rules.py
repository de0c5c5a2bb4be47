"""House rules the code keeps as it grows: modules of at most 400 lines, functions of at most
60 lines and 7 parameters (``self``/``cls`` not counted), in every module of the package."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_PARAMS = 7


def package_modules() -> list[Path]:
    return sorted(p for root in ("pipeline", "stages") for p in (ROOT / root).rglob("*.py")
                  if "__pycache__" not in p.parts)


def oversize(path: Path, root: Path = ROOT) -> list[str]:
    src = path.read_text()
    rel = path.relative_to(root).as_posix()
    found = []
    if len(src.splitlines()) > MAX_MODULE_LINES:
        found.append(f"{rel}: {len(src.splitlines())} lines")
    for node in ast.walk(ast.parse(src)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        length = node.end_lineno - node.lineno + 1
        a = node.args
        params = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
        params += [x.arg for x in (a.vararg, a.kwarg) if x]
        if length > MAX_FUNCTION_LINES:
            found.append(f"{rel}:{node.lineno} {node.name}: {length} lines")
        if len(params) > MAX_PARAMS:
            found.append(f"{rel}:{node.lineno} {node.name}: {len(params)} parameters")
    return found


def test_the_checker_sees_an_oversized_function(tmp_path):
    # given a module with one function of 61 lines and 8 parameters (a check that cannot fail is no check)
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    big = tmp_path / "pipeline" / "big.py"
    big.parent.mkdir()
    big.write_text(f"def f(a, b, c, d, e, f, g, h):\n{body}\n    return x0\n")
    found = oversize(big, tmp_path)
    # then both limits are reported
    assert found == ["pipeline/big.py:1 f: 61 lines", "pipeline/big.py:1 f: 8 parameters"], found


def test_modules_and_functions_keep_within_the_limits():
    modules = package_modules()
    assert len(modules) > 50  # the whole package was read
    offenders = [o for p in modules for o in oversize(p)]
    assert not offenders, "\n".join(offenders)

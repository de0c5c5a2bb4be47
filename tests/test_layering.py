"""Layering: the import-linter contracts in pyproject.toml ([tool.importlinter]) hold for the
whole package, lazy imports included; validating a config imports no stage, nor av or cv2."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def _skip_links_and_caches(folder: str, names: list[str]) -> list[str]:
    # pipeline/ may hold links to ../stages etc. (a development shim): the copy lays them out itself
    return [n for n in names if n == "__pycache__" or os.path.islink(os.path.join(folder, n))]


def _installed_layout(tmp: Path) -> Path:
    """The package as an install lays it out (pyproject package-dir): pipeline/ is videoclf,
    stages/ is videoclf.stages. grimp follows files, not package-dir, so it reads this copy."""
    shutil.copytree(ROOT / "pipeline", tmp / "videoclf", ignore=_skip_links_and_caches)
    shutil.copytree(ROOT / "stages", tmp / "videoclf" / "stages", ignore=_skip_links_and_caches)
    return tmp


def lint_imports(tmp: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "importlinter.cli"]
    env = {**os.environ, "PYTHONPATH": str(_installed_layout(tmp))}
    return subprocess.run([*cmd, "pyproject.toml", "--no-cache"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_import_contracts_hold(tmp_path):
    # given the package as installed; when import-linter checks the layers, the stages' imports,
    # and cycles between siblings
    res = lint_imports(tmp_path)
    # then every contract is kept
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "4 kept, 0 broken" in res.stdout, res.stdout[-2000:]


def test_no_module_imports_itself_back(tmp_path, monkeypatch):
    # given the package as installed, every import counted, lazy ones too (a package and its
    # own modules included, which the sibling contract does not compare)
    import grimp

    monkeypatch.syspath_prepend(str(_installed_layout(tmp_path)))
    graph = grimp.build_graph("videoclf", cache_dir=None, exclude_type_checking_imports=True)
    # when each import is followed back; then none leads back to its importer
    cycles = sorted((a, b) for a in graph.modules for b in graph.find_modules_directly_imported_by(a)
                    if graph.chain_exists(importer=b, imported=a))
    assert not cycles, cycles


def test_validating_a_config_imports_no_stage_nor_av_or_cv2():
    code = ("import sys; from videoclf.config.load import parse_config; "
            "c = parse_config({'streams': [{'name': 'a', 'source': 'a.mp4'}], 'model': {'backbone': 'resnet18'}}); "
            "assert c.model.crop == 224 and c.model.resize_to == 256; "
            "print(sorted(m for m in sys.modules if m.startswith('videoclf.stages') or m.split('.')[0] in "
            "('av', 'cv2', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_validate_without_sources_imports_no_decoder_library(tmp_path):
    # given a valid config; when `videoclf validate --no-sources` checks it in a process
    cfg = tmp_path / "c.yaml"
    cfg.write_text("streams:\n  - name: a\n    source: a.mp4\n")
    code = ("import sys; from videoclf.cli.main import main\n"
            "try:\n    main(['validate', '--no-sources', sys.argv[1]])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('av', 'cv2')))")
    res = subprocess.run([sys.executable, "-c", code, str(cfg)], cwd=ROOT, capture_output=True, text=True)
    # then it succeeds, and neither PyAV nor OpenCV was imported
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout

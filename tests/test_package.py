"""The installed package works outside the checkout: a wheel in a fresh venv runs the shipped
sample config from an empty directory, and finds the sample clip without the repository. It
installs one import name, ``videoclf``: ``pipeline`` and ``stages`` are other projects' names."""
from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True, timeout=300)
    (path,) = out.glob("videoclf-*.whl")
    return path


def test_the_wheel_carries_the_sample_the_configs_and_the_labels(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("videoclf/samples/bigbuckbunny_360p.mp4", "videoclf/configs/sample.yaml",
                   "videoclf/stages/classify/data/imagenet_classes.txt", "videoclf/config/assets.py",
                   "videoclf/stages/decode/file.py"):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]


def test_the_wheel_installs_one_import_name(wheel):
    # given the wheel's metadata and files
    zf = zipfile.ZipFile(wheel)
    (top_level,) = [n for n in zf.namelist() if n.endswith(".dist-info/top_level.txt")]
    # then videoclf is the only top-level name it installs (pipeline and stages are other projects' names)
    assert zf.read(top_level).decode().split() == ["videoclf"]
    tops = {n.split("/")[0] for n in zf.namelist() if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"videoclf"}, tops
    # and every package folder of the repository is in it (a subpackage left out of pyproject's list
    # would install a videoclf that fails at its first import of it)
    for root, prefix in (("pipeline", "videoclf"), ("stages", "videoclf/stages")):
        for init in (ROOT / root).rglob("__init__.py"):
            rel = init.relative_to(ROOT / root).as_posix()
            assert f"{prefix}/{rel}" in zf.namelist(), rel


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_runs_the_sample_from_an_empty_directory(wheel, tmp_path):
    # given a fresh venv with the wheel installed (its dependencies are read from this venv's
    # site-packages, so nothing is downloaded), and an empty working directory
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    target = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                 check=True, capture_output=True, text=True).stdout.strip())
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    (target / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["VIDEOCLF_CACHE"] = str(tmp_path / "cache")
    # when it runs the shipped sample config by name
    where = subprocess.run([str(py), "-c", "import videoclf, videoclf.stages; "
                            "print(videoclf.__file__, videoclf.stages.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout
    for other in ("pipeline", "stages"):  # not installed under these names
        gone = subprocess.run([str(py), "-c", f"import {other}"], cwd=work, env=env, capture_output=True, text=True)
        assert gone.returncode != 0 and "ModuleNotFoundError" in gone.stderr, (other, gone.stderr)
    res = subprocess.run([str(venv / "bin" / "videoclf"), "run", "sample", "-q", "-o", "out"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=300)
    # then the installed modules ran (not the checkout), and every frame of the sample was classified
    assert str(target) in where and str(ROOT) not in where, where
    assert res.returncode == 0, res.stderr
    report = json.loads((work / "out" / "report.json").read_text())
    assert report["streams"]["bbb"]["frames"] == 132
    assert len((work / "out" / "bbb.jsonl").read_text().splitlines()) == 132

"""README stays true to the code: the config reference and the set-up commands."""
from __future__ import annotations

from conftest import ROOT

from pipeline.config import reference_table
from stages.backbones import BACKBONES

README = (ROOT / "README.md").read_text()


def test_config_reference_in_readme_is_current():
    """Regenerate with `python -m pipeline.config --update-readme` when a config field changes."""
    missing = [row for row in reference_table().splitlines() if row not in README]
    assert not missing, "README config reference is stale:\n" + "\n".join(missing)


def test_every_backbone_is_in_the_readme_table():
    for name in BACKBONES:
        assert f"| `{name}`" in README


def test_ci_runs_the_readme_test_command():
    assert "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()

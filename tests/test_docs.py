"""README stays true to the code: the config reference and the set-up commands."""
from __future__ import annotations

from conftest import ROOT

from videoclf.config.reference import reference_table
from videoclf.stages.classify.backbones import BACKBONES

README = (ROOT / "README.md").read_text()


def test_config_reference_in_readme_is_current():
    """Regenerate with `python -m videoclf.config.reference --update-readme` when a config field changes."""
    missing = [row for row in reference_table().splitlines() if row not in README]
    assert not missing, "README config reference is stale:\n" + "\n".join(missing)


def test_every_backbone_is_in_the_readme_table():
    for name in BACKBONES:
        assert f"| `{name}`" in README


def test_ci_runs_the_readme_test_command():
    assert "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_field_of_every_config_model_is_documented():
    """Each model reachable from the top-level config (alert rules included) has each of its
    fields in the reference, with a description."""
    from pydantic import BaseModel

    from videoclf.config.schema import Config
    from videoclf.config.errors import _submodel

    table = reference_table()
    seen: set[type] = set()

    def walk(model: type[BaseModel]) -> None:
        seen.add(model)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            assert f"{name}` |" in table, f"{model.__name__}.{name} is missing from the reference"
            sub = _submodel(field.annotation)
            if sub is not None and sub not in seen:
                walk(sub)

    walk(Config)
    assert "| `output.alerts[].for_frames` |" in table and len(seen) >= 6

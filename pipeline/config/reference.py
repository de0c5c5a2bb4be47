"""The config reference: a Markdown table generated from the config models, and README's copy
of it (`python -m videoclf.config.reference --update-readme`; `python -m videoclf.config.schema` too)."""
from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel

from videoclf.config.schema import Config


def reference_table() -> str:
    """The config reference as a Markdown table (README's copy is checked against it)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            if f.is_required():
                default = "required"
            elif f.default_factory is not None:
                default = "…"
            else:
                default = "—" if f.default is None else f.default
            rows.append(f"| `{prefix}{name}` | `{default}` | {f.description} |")
        for name, f in model.model_fields.items():
            for sub in (*getattr(f.annotation, "__args__", ()), f.annotation):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    walk(sub, f"{prefix}{name}{'[]' if 'list' in str(f.annotation) else ''}.")
                    break

    walk(Config, "")
    return "\n".join(rows)


def update_readme(path: str = "README.md") -> None:
    """Rewrite the config reference between README's markers."""
    text = Path(path).read_text(encoding="utf-8")
    start, end = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    Path(path).write_text(f"{head}{start}\n{reference_table()}\n{end}{tail}", encoding="utf-8")


def main(argv: list[str]) -> None:
    """``--update-readme`` rewrites README's table; no argument prints the table."""
    if argv == ["--update-readme"]:
        update_readme()
    else:
        print(reference_table())


if __name__ == "__main__":
    main(sys.argv[1:])

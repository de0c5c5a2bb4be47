"""How a config mistake is reported: each one on a line of its own, at its line and column in
the YAML file, with a "did you mean" for a misspelt key and no password shown.

Kept apart from the models in pipeline/config/schema.py; the functions that walk the models take the
root model as an argument, so this module never imports videoclf.config.schema.
"""
from __future__ import annotations

import re
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ValidationError


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses alias expansion bombs (billion laughs) and documents nested
    deeper than any config is (PyYAML composes nodes recursively: thousands of ``[`` would
    end in a RecursionError)."""

    max_aliases = 100
    max_depth = 50  # a config nests 6 levels (streams → stream → live → value); room for lists in lists

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > self.max_aliases:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"more than {self.max_aliases} YAML aliases (line {mark.line + 1})")
        depth = getattr(self, "_depth", 0)
        if depth >= self.max_depth:
            raise yaml.MarkedYAMLError(problem=f"nested deeper than {self.max_depth} levels",
                                       problem_mark=self.peek_event().start_mark)
        self._depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth


Marks = dict[tuple, tuple[int, int]]  # key path → (line, column), 1-based; (*path, KEY) for the key itself
KEY = "\0key"


def yaml_marks(text: str) -> Marks:
    """Where each key and value of a YAML document starts, by key path (from yaml's node tree)."""
    marks: Marks = {}
    try:
        root = yaml.compose(text, Loader=BoundedLoader)
    except yaml.YAMLError:
        return marks

    def walk(node: Any, path: tuple) -> None:
        marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                marks[(*path, k.value, KEY)] = (k.start_mark.line + 1, k.start_mark.column + 1)
                walk(v, (*path, k.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, (*path, i))

    if root is not None:
        walk(root, ())
    return marks


def _submodel(annotation: Any) -> Optional[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _fields_at(root: type[BaseModel], loc: tuple) -> list[str]:
    """The keys ``root`` accepts at ``loc`` (list indices skipped)."""
    model: Optional[type[BaseModel]] = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        model = _submodel(field.annotation) if field else None
        if model is None:
            return []
    return list(model.model_fields) if model else []


def did_you_mean(word: str, choices: Any) -> str:
    """A hint naming the choice closest to ``word``, or "" when none is close."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def _where(origin: str, loc: tuple, marks: Optional[Marks], key: bool = False) -> str:
    """``FILE:LINE:COL`` of the longest prefix of ``loc`` the document has, else ``FILE``."""
    if marks:
        if key and (*loc, KEY) in marks:
            line, col = marks[(*loc, KEY)]
            return f"{origin}:{line}:{col}"
        for n in range(len(loc), -1, -1):
            if loc[:n] in marks and (n or not loc):
                line, col = marks[loc[:n]]
                return f"{origin}:{line}:{col}"
    return origin


def _data_loc(loc: tuple, data: Any) -> tuple:
    """``loc`` without pydantic's union-branch tags ("literal['auto']", "constrained-int"):
    only the keys and indices the data has."""
    out, node = [], data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not out[-1:] == [part]:
            if not re.search(r"[\[\]\-]", part) and part not in ("int", "str", "float", "bool"):
                out.append(part)  # a key the data lacks (missing, or extra when loc ends)
            continue
        else:
            continue
        out.append(part)
    return tuple(out)


def _merge_branches(errors: list[dict], data: Any) -> list[dict]:
    """One error per key: a union's branches each fail on the same value ('auto' or an int ≥ 1)."""
    merged: dict[tuple, dict] = {}
    for e in errors:
        loc = _data_loc(tuple(e["loc"]), data)
        e = {**e, "loc": loc}
        if loc in merged and merged[loc]["type"] != "extra_forbidden":
            first = merged[loc]
            extra = e["msg"].removeprefix("Input should be ")
            merged[loc] = {**first, "msg": f"{first['msg']} or {extra}"}
        else:
            merged[loc] = e
    return list(merged.values())


def format_errors(err: ValidationError, root: type[BaseModel], origin: str, marks: Optional[Marks],
                  data: Any = None) -> list[str]:
    """One line per mistake in ``data`` (validated as ``root``), in file order."""
    errors = _merge_branches(err.errors(include_url=False), data)
    # a misspelt required key also shows up as that key missing: say it once, as the misspelling
    suggested = {(*tuple(e["loc"][:-1]), m.group(1)) for e in errors if e["type"] == "extra_forbidden"
                 for m in [re.match(r"did you mean '(.+)'\?", did_you_mean(e["loc"][-1], _fields_at(root, tuple(e["loc"][:-1]))))]
                 if m}
    lines = []
    for e in errors:
        if e["type"] == "missing" and tuple(e["loc"]) in suggested:
            continue
        loc = tuple(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if not loc:  # a model-level check names its key path at the start of its message
            m = re.match(r"^([\w.]+): ", msg)
            if m:
                loc = tuple(int(x) if x.isdigit() else x for x in m.group(1).split("."))
                msg = msg[m.end():]
        path = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            hint = did_you_mean(loc[-1], _fields_at(root, loc[:-1]))
            lines.append(f"{_where(origin, loc, marks, key=True)}: {path}: unknown key{'; ' + hint if hint else ''}")
            continue
        value = e.get("input")
        shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {redact(str(value))!r})"
        where = f"{path}: " if path and not msg.startswith(path) else ""
        lines.append(f"{_where(origin, loc, marks)}: {where}{msg}{shown}")

    def line_of(text: str) -> tuple[int, int]:
        m = re.match(rf"^{re.escape(origin)}:(\d+):(\d+): ", text)
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)

    return sorted(dict.fromkeys(lines), key=line_of)  # in file order; a union's branches can repeat one mistake


_CRED = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@")


def redact(text: str) -> str:
    """Hide passwords in URLs: rtsp://user:secret@host → rtsp://user:***@host."""
    return _CRED.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@", text)

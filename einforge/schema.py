"""Reading einforge's YAML files: one loader that remembers where every value came from, and one
validation step per file kind (a pydantic model) whose errors name the file, line and column.

Every file kind (architecture, energy and area tables, workloads, bindings, sweep specs) is read
the same way, so the same mistakes get the same messages: unknown keys (with the nearest known
one), values of the wrong type (``fill_drain: "no"`` is not a boolean), quantities without units
or of the wrong dimension. A UTF-8 byte-order mark is accepted; invalid UTF-8 is refused with its
position.

Examples
--------
>>> from pydantic import BaseModel, ConfigDict
>>> class Buffer(BaseModel):
...     model_config = ConfigDict(extra="forbid", strict=True)
...     banks: int
>>> data, marks = load_yaml_text("banks: 4\\nbankss: 8\\n", "arch.yaml")
>>> validate(Buffer, data, marks, "arch.yaml", ValueError)
Traceback (most recent call last):
...
ValueError: arch.yaml:2:1: unknown key 'bankss' (did you mean 'banks'?)
"""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

__all__ = ["load_yaml_text", "load_yaml_file", "safe_load", "validate", "position", "Marks"]

Marks = dict  # path (tuple of keys and indices) -> (line, column), 1-based


def _decode(raw: bytes, file: str, error):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(f"{file}:{line}:{col}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8") from None
    return text.lstrip("\ufeff")


def load_yaml_file(path, what: str, error) -> tuple[object, Marks, str]:
    """(data, marks, file name) of a YAML file; ``error`` is the exception class to raise."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise error(f"cannot read {what} {p}: no such file") from None
    except IsADirectoryError:
        raise error(f"cannot read {what} {p}: it is a directory") from None
    data, marks = load_yaml_text(_decode(raw, str(p), error), str(p), error)
    return data, marks, str(p)


def load_yaml_text(text: str, file: str = "<string>", error=ValueError) -> tuple[object, Marks]:
    """Parse YAML text into plain data (dicts, lists, str, int, float, bool, None) and the position
    of every key and value."""
    text = text.lstrip("\ufeff")
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}: " if mark else f"{file}: "
        raise error(f"{where}invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise error(f"{file}: the YAML nests too deeply") from None
    marks: Marks = {}
    if node is None:
        return None, marks
    try:
        return _construct(node, (), marks, file, error), marks
    except RecursionError:
        raise error(f"{file}: the YAML nests too deeply") from None


def _construct(node, path, marks, file, error):
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise error(f"{file}:{k.start_mark.line + 1}:{k.start_mark.column + 1}: a key must be a plain name")
            key = _scalar(k, file, error)
            if isinstance(key, (list, dict)) or key is None:
                raise error(f"{file}:{k.start_mark.line + 1}:{k.start_mark.column + 1}: a key must be a plain name")
            key = str(key) if not isinstance(key, (int, float)) or isinstance(key, bool) else key
            if key in out:
                raise error(f"{file}:{k.start_mark.line + 1}:{k.start_mark.column + 1}: key {key!r} appears twice")
            marks[path + (("key", key),)] = (k.start_mark.line + 1, k.start_mark.column + 1)
            out[key] = _construct(v, path + (key,), marks, file, error)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, path + (i,), marks, file, error) for i, v in enumerate(node.value)]
    return _scalar(node, file, error)


_FLOAT = __import__("re").compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _scalar(node, file, error):
    try:
        value = yaml.SafeLoader.construct_object(_Constructor(), node)
    except yaml.YAMLError as exc:
        raise error(f"{file}:{node.start_mark.line + 1}:{node.start_mark.column + 1}: {exc}") from None
    if isinstance(value, str) and not node.style and _FLOAT.fullmatch(value):   # plain: None, or "" from libyaml
        return float(value)     # YAML 1.2 reads 53.8e3 as a number; PyYAML (1.1) as text
    return value


# libyaml's parser when PyYAML has it (5-10x faster); the nodes and marks are the same
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str):
    """Plain data from YAML text, with libyaml when PyYAML has it (no positions: see load_yaml_text)."""
    return yaml.load(text, Loader=_LOADER)


class _Constructor(yaml.SafeLoader):
    def __init__(self):  # no stream: only construct_object is used
        yaml.constructor.SafeConstructor.__init__(self)


def position(marks: Marks, loc) -> tuple[int, int] | None:
    """The position of the deepest part of ``loc`` that has one."""
    loc = tuple(loc)
    while True:
        if loc in marks:
            return marks[loc]
        if not loc:
            return None
        loc = loc[:-1]


def validate(model, data, marks: Marks, file: str, error, context: dict | None = None):
    """``model.model_validate(data)``; the first problem becomes ``error`` with file:line:col."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise error(_message(exc, model, marks, file)) from None


def _message(exc, model, marks, file) -> str:
    errors = exc.errors(include_url=False)
    # an unknown key first: it is usually the misspelling of a key reported missing
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        key = loc[-1]
        pos = marks.get(loc[:-1] + (("key", key),)) or position(marks, loc)
        known = _known_keys(model, loc[:-1])
        near = difflib.get_close_matches(str(key), known, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else (f"; known keys: {', '.join(known)}" if known else "")
        return f"{_where(file, pos)}unknown key {key!r}{hint}"
    pos = position(marks, loc)
    known = loc
    while known and known not in marks:
        known = known[:-1]       # drop pydantic's union-member tags (``constrained-float``)
    field = ".".join(str(x) for x in known)
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err["type"] == "missing":
        return f"{_where(file, pos)}missing `{'.'.join(str(x) for x in loc)}`"
    return f"{_where(file, pos)}{field}: {msg}" if field else f"{_where(file, pos)}{msg}"


def _where(file, pos) -> str:
    return f"{file}:{pos[0]}:{pos[1]}: " if pos else f"{file}: "


def _known_keys(model, loc) -> list[str]:
    """The field names of the model reached by ``loc`` (for the did-you-mean hint)."""
    import typing

    tp = model
    for part in loc:
        tp = _strip_optional(tp)
        if typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        elif hasattr(tp, "model_fields") and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return []
    tp = _strip_optional(tp)
    fields = getattr(tp, "model_fields", None)
    return [f.alias or name for name, f in fields.items()] if fields else []


def _strip_optional(tp):
    import types
    import typing

    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        models = [a for a in args if hasattr(a, "model_fields") or typing.get_origin(a) in (dict, list)]
        return models[0] if models else args[0]
    if typing.get_origin(tp) is typing.Annotated:
        return typing.get_args(tp)[0]
    return tp


def _inner_model(tp):
    """The model class inside an annotation such as ``dict[str, Model] | None``."""
    import typing

    if isinstance(tp, type) and hasattr(tp, "model_fields"):
        return tp
    for arg in typing.get_args(tp):
        m = _inner_model(arg)
        if m is not None:
            return m
    return None

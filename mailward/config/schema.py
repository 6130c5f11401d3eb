"""The schema, derived from the settings dataclasses: one :class:`Key` per field, in file order.

``SCHEMA[section]`` lists the keys of one [section] as the file spells them. It is computed
from :class:`mailward.config.settings.Config` (its fields are the sections, in order) and from
each section class's fields (type, default, ``doc``/``minimum``/``check`` metadata), so it
cannot disagree with the classes the loader builds. A field whose type the loader does not
know, or that has no documentation, is refused when this module is imported.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from mailward.config.settings import Config, FilePath

# type of a field → the kind of value the file holds (the words of _expected())
_KINDS: dict[Any, str] = {bool: "bool", int: "int", float: "float", str: "str",
                          FilePath: "path", tuple[str, ...]: "list[str]"}


@dataclass(frozen=True)
class Key:
    """One setting as the file spells it: ``[section] name = value``."""

    name: str
    kind: str  # "int", "float", "bool", "str", "path", "list[str]", "choice"
    default: Any  # as written in the file (a list for list[str], the text for a path)
    doc: str
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None  # returns what was expected, or None

    def expected(self) -> str:
        """What the file must hold here, completing "expected ..."."""
        if self.kind == "choice":
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        if self.kind in ("int", "float"):
            word = "an integer" if self.kind == "int" else "a number"
            return word + (f" >= {self.minimum:g}" if self.minimum is not None else "")
        return {"bool": "true or false", "str": "a string", "path": "a path (string)",
                "list[str]": "a list of strings"}[self.kind]

    def convert(self, value: Any, base: Path) -> Any:
        """The checked value as the settings class holds it, or raise ValueError(what was expected).

        TOML's types are taken strictly: true is not an integer, 1 is not true, "2" is not a
        number. Relative paths are resolved against ``base`` (the config file's folder).
        """
        kind = self.kind
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(self.expected())
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(self.expected())
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(self.expected())
            value = float(value)
        elif kind in ("str", "path", "choice"):
            if not isinstance(value, str):
                raise ValueError(self.expected())
            if kind == "choice" and value not in self.choices:
                raise ValueError(self.expected())
            if kind == "path" and value:
                value = (base / value).resolve() if not Path(value).is_absolute() else Path(value)
        elif kind == "list[str]":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(self.expected())
            value = tuple(value)
        if self.minimum is not None and value < self.minimum:
            raise ValueError(self.expected())
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ValueError(problem)
        return value


def keys_of(settings: type) -> list[Key]:
    """The keys of one settings dataclass, in field order."""
    hints = typing.get_type_hints(settings)
    keys = []
    for f in dataclasses.fields(settings):
        where = f"{settings.__name__}.{f.name}"
        hint = hints[f.name]
        doc = f.metadata.get("doc")
        if not doc:
            raise TypeError(f"{where}: a setting needs its documentation: setting(..., doc=...)")
        if f.default is dataclasses.MISSING:
            raise TypeError(f"{where}: a setting needs a default: setting(DEFAULT, doc=...)")
        choices: tuple[str, ...] = ()
        if typing.get_origin(hint) is Literal:
            kind, choices = "choice", typing.get_args(hint)
        elif hint in _KINDS:
            kind = _KINDS[hint]
        else:
            raise TypeError(f"{where}: the loader cannot read a {hint!r}; use one of "
                            "bool, int, float, str, FilePath, tuple[str, ...], Literal[...]")
        default = list(f.default) if kind == "list[str]" else f.default
        keys.append(Key(f.name, kind, default, doc, f.metadata.get("minimum"), choices,
                        f.metadata.get("check")))
    return keys


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if dataclasses.is_dataclass(hints[f.name])}


# [section] name → its settings class, in the order of the file
SECTIONS: dict[str, type] = _sections()

# [section] name → its keys, in the order of the file
SCHEMA: dict[str, list[Key]] = {name: keys_of(cls) for name, cls in SECTIONS.items()}

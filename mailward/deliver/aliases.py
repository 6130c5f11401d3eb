"""The aliases file (``local.aliases``), in sendmail's form (aliases(5)):

    # comments
    postmaster:  root
    root:        alice
    team:        alice, bob, carol@elsewhere.example
    bob:         bob, bob@backup.example        # keep a copy and forward one
    long-list:   alice,
                 bob                            # a line starting with white space continues

Names are local parts, matched without regard to the case of ASCII letters (:func:`fold_case`;
other letters must match as written); ``user+detail`` falls back to ``user``. Targets
are local users (a bare name), remote addresses, or other aliases, expanded recursively;
a name met again on its own chain (``bob: bob, ...``) is the local mailbox, not a loop.
``|program``, ``/file`` and ``:include:`` targets are not supported: the file is refused.

Failure behaviour: :func:`load_aliases` raises :class:`AliasError` naming ``file:line``;
:class:`AliasTable` re-reads the file when it changes and keeps the previous table (logging
why) when the new one is broken. Expansion itself never raises; it stops at depth 20.
"""

from __future__ import annotations

from pathlib import Path

from mailward import log
from mailward.fsutil import ReloadingFile

MAX_DEPTH = 20
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class AliasError(Exception):
    pass


def fold_case(local: str) -> str:
    """A local part with its ASCII letters lower-cased, and nothing else changed: Unicode's
    lower() would make other names equal too (the Kelvin sign's lower case is "k")."""
    return local.translate(_ASCII_LOWER)


def load_aliases(path: Path) -> dict[str, tuple[str, ...]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise AliasError(f"{path}: cannot read the aliases file: {err.strerror}") from None
    logical: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if raw[:1] in (" ", "\t") and logical:
            logical[-1] = (logical[-1][0], logical[-1][1] + " " + line.strip())
        else:
            logical.append((number, line))
    table: dict[str, tuple[str, ...]] = {}
    for number, line in logical:
        where = f"{path}:{number}"
        name, colon, rest = line.partition(":")
        name = fold_case(name.strip())
        if not colon or not name or " " in name:
            raise AliasError(f"{where}: expected 'name: target, target', got {line!r}")
        targets = tuple(t.strip() for t in rest.split(",") if t.strip())
        if not targets:
            raise AliasError(f"{where}: alias {name} has no targets")
        for t in targets:
            if t[0] in "|/\"" or t.lower().startswith(":include:"):
                raise AliasError(f"{where}: target {t!r} is not supported; use local users or addresses")
            if t.startswith("<") and t.endswith(">"):
                continue
            if " " in t:
                raise AliasError(f"{where}: target {t!r} is not an address; separate targets with commas")
        if name in table:
            raise AliasError(f"{where}: alias {name} is defined twice")
        table[name] = tuple(t.strip("<>") for t in targets)
    return table


def _key(table: dict, local: str) -> str | None:
    local = fold_case(local)
    if local in table:
        return local
    base = local.split("+", 1)[0]
    return base if base in table else None


def expand(table: dict[str, tuple[str, ...]], local: str) -> list[str] | None:
    """The final targets of local part ``local`` (bare names are local users), or None when
    it is not an alias. Order kept, duplicates dropped."""
    if _key(table, local) is None:
        return None
    out: list[str] = []

    def walk(target: str, chain: tuple[str, ...], depth: int) -> None:
        is_local = "@" not in target
        key = _key(table, target) if is_local else None
        if key is None or key in chain or depth >= MAX_DEPTH:
            name = fold_case(target) if is_local else target
            if name not in out:
                out.append(name)
            return
        for t in table[key]:
            walk(t, chain + (key,), depth + 1)

    walk(local, (), 0)
    return out


class AliasTable(ReloadingFile[dict]):
    """The aliases file in use, re-read when it changes (one stat per call)."""

    def __init__(self, path: Path | str | None):
        super().__init__(path, load_aliases, {}, AliasError, lambda err: log.event(
            40, None, aliases="reload failed", reason=str(err), kept="previous aliases"))

    def has(self, local: str) -> bool:
        return _key(self.current(), local) is not None

    def expand(self, local: str) -> list[str] | None:
        return expand(self.current(), local)

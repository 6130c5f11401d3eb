"""The MTA-STS policy file and MX matching (RFC 8461 §3.2, §4.1): pure, no I/O.

Contract: :func:`parse_policy` turns the body of ``/.well-known/mta-sts.txt`` into a frozen
:class:`StsPolicy` or raises :class:`PolicyError` whose message names the line
("line 3: mode 'strict' is not enforce, testing or none"). :meth:`StsPolicy.matches` says
whether an MX host name is allowed by the policy's ``mx`` patterns.

The file (RFC 8461 §3.2): ``key: value`` lines separated by LF or CRLF;
``version: STSv1``, ``mode: enforce|testing|none`` and ``max_age`` (seconds, 0 to
31557600, at most 10 digits) are required; ``mx`` may repeat and is required unless the mode
is ``none`` (a domain withdrawing its policy need not list hosts). Keys and values are
case-sensitive. Unknown keys are ignored; of a repeated key other than ``mx`` the first is
used. Blank lines are ignored. A line that is not ``key: value``, a bad value, or a file that
is not UTF-8 is an error.

An ``mx`` value must be written in A-labels (``xn--``): RFC 8461 §3.2 forbids U-labels there,
so a line with a non-ASCII name is an error.

MX matching (RFC 8461 §4.1): names are compared case-insensitively, without a trailing dot,
and in their A-label form (:func:`pattern_matches` also accepts a U-label on either side, as
a caller may hold one, and converts it). A pattern
``*.example.com`` matches exactly one left-most label: ``mx.example.com`` yes,
``example.com`` and ``a.b.example.com`` no. ``*`` is allowed only as the whole left-most
label; a pattern with it anywhere else is rejected when the file is parsed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Literal

MAX_AGE_LIMIT = 31557600          # RFC 8461 §3.2: max_age at most 31557600 s (one year)
Mode = Literal["enforce", "testing", "none"]
MODES = ("enforce", "testing", "none")

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


class PolicyError(ValueError):
    """A policy file that is not valid; ``line`` is 0 for a problem of the whole file."""

    def __init__(self, line: int, text: str):
        super().__init__(f"line {line}: {text}" if line else text)
        self.line = line


def normalize_host(name: str) -> str | None:
    """A host name as MX matching compares it: lower case, no trailing dot, A-labels.
    None for something that is not a host name (empty label, bad characters)."""
    name = name.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 253:
        return None
    labels = []
    for label in name.split("."):
        if not label:
            return None
        if not label.isascii():
            try:  # IDNA 2003 in the standard library; a U-label becomes its xn-- form
                label = label.encode("idna").decode("ascii")
            except UnicodeError:
                return None
        label = label.lower()
        if not _LABEL.match(label):
            return None
        labels.append(label)
    return ".".join(labels)


def normalize_pattern(pattern: str) -> str | None:
    """An mx pattern normalised as host names are, ``*.`` kept in front; None if invalid."""
    pattern = pattern.strip()
    if pattern.startswith("*."):
        rest = normalize_host(pattern[2:])
        return None if rest is None else "*." + rest
    return normalize_host(pattern)


def pattern_matches(pattern: str, host: str) -> bool:
    """Does one mx pattern match one MX host name (RFC 8461 §4.1)?"""
    p, h = normalize_pattern(pattern), normalize_host(host)
    if p is None or h is None:
        return False
    if p.startswith("*."):
        first, dot, parent = h.partition(".")
        return bool(dot) and bool(first) and parent == p[2:]
    return p == h


@dataclass(frozen=True)
class StsPolicy:
    """A parsed policy: ``id`` is the TXT record's id it was fetched under, ``fetched_at``
    the time (seconds since the epoch) it was fetched; it is fresh for ``max_age`` seconds."""
    mode: Mode
    mx: tuple[str, ...]
    max_age: int
    id: str
    fetched_at: float = field(default_factory=time.time)

    @property
    def expires_at(self) -> float:
        return self.fetched_at + self.max_age

    def fresh(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) < self.expires_at

    def matching_pattern(self, mx_host: str) -> str | None:
        """The first mx pattern that matches ``mx_host``, or None."""
        for pattern in self.mx:
            if pattern_matches(pattern, mx_host):
                return pattern
        return None

    def matches(self, mx_host: str) -> bool:
        """Is ``mx_host`` one of the policy's MX hosts (RFC 8461 §4.1)?"""
        return self.matching_pattern(mx_host) is not None

    def text(self) -> str:
        """The policy file that says this policy (CRLF lines, as RFC 8461 §3.2 shows it)."""
        lines = ["version: STSv1", f"mode: {self.mode}"] + [f"mx: {m}" for m in self.mx]
        lines.append(f"max_age: {self.max_age}")
        return "".join(line + "\r\n" for line in lines)


def parse_policy(body: str | bytes, *, id: str = "", fetched_at: float | None = None) -> StsPolicy:
    """The policy file's text → :class:`StsPolicy`; :class:`PolicyError` naming the line."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as err:
            raise PolicyError(body[:err.start].count(b"\n") + 1, "not UTF-8") from None
    values: dict[str, tuple[int, str]] = {}
    mx: list[str] = []
    for number, raw in enumerate(body.split("\n"), 1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon or not _KEY.match(key):
            raise PolicyError(number, f"{_show(line)} is not 'key: value'")
        value = value.strip(" \t")
        if key == "mx":
            if not value.isascii():
                raise PolicyError(number, f"mx {_show(value)} is not in A-labels (xn--...): RFC 8461 §3.2 "
                                          f"forbids U-labels")
            if normalize_pattern(value) is None:
                raise PolicyError(number, f"mx {_show(value)} is not a host name or *.domain pattern")
            mx.append(value)
        elif key not in values:               # RFC 8461 §3.2: the first of a repeated field counts
            values[key] = (number, value)
    for required in ("version", "mode", "max_age"):
        if required not in values:
            raise PolicyError(0, f"no {required} line")
    number, version = values["version"]
    if version != "STSv1":
        raise PolicyError(number, f"version {_show(version)} is not STSv1")
    number, mode = values["mode"]
    if mode not in MODES:
        raise PolicyError(number, f"mode {_show(mode)} is not enforce, testing or none")
    number, age = values["max_age"]
    if not re.fullmatch(r"[0-9]{1,10}", age):
        raise PolicyError(number, f"max_age {_show(age)} is not a number of seconds")
    if int(age) > MAX_AGE_LIMIT:
        raise PolicyError(number, f"max_age {age} is above {MAX_AGE_LIMIT} (RFC 8461 §3.2)")
    if not mx and mode != "none":
        raise PolicyError(0, f"no mx line (mode {mode} needs at least one)")
    return StsPolicy(mode, tuple(mx), int(age), id, time.time() if fetched_at is None else fetched_at)  # type: ignore[arg-type]


def _show(text: str, limit: int = 60) -> str:
    """A peer's text quoted for an error line: printable, bounded."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return repr(text)

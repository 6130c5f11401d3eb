"""The ``_mta-sts.<domain>`` TXT record (RFC 8461 §3.1): pure parsing, no I/O.

Contract: :func:`find_record` takes the TXT strings of ``_mta-sts.<domain>`` (each record's
strings already joined, as :meth:`mailward.dns.Resolver.txt` returns them) and answers
:class:`RecordResult`: the one valid STSv1 record, or none with the reason.

The rules (RFC 8461 §3.1):

* records that do not begin with ``v=STSv1`` followed by the field separator ``;`` are
  discarded (they are other TXT records sharing the name);
* if not exactly one record remains, the domain has no available policy;
* the remaining record must follow the ABNF: ``v=STSv1`` first, fields separated by ``;``
  with optional spaces or tabs around it, an optional trailing ``;``; exactly one
  ``id=`` of 1 to 32 letters and digits; other fields (extensions: a name of letters, digits,
  ``_``, ``-``, ``.`` up to 32 long, ``=``, a value of visible characters other than ``=``
  and ``;``) are ignored. Anything else makes the record invalid: no available policy.

Failure behaviour: nothing raises; a bad record gives ``RecordResult(None, problem)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION = "v=STSv1"
_ID = re.compile(r"[A-Za-z0-9]{1,32}\Z")
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+\Z")   # VCHAR except "=" and ";"
_BEGINS = re.compile(r"v=STSv1[ \t]*;")


@dataclass(frozen=True)
class StsRecord:
    """A valid STSv1 TXT record: its policy ``id`` and the extension fields it carried."""
    id: str
    extensions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RecordResult:
    """``record`` is the one valid record, or None; ``problem`` says why there is none
    ('' when the name simply has no STSv1 record)."""
    record: StsRecord | None
    problem: str = ""


def parse_record(text: str) -> StsRecord:
    """One record's text → :class:`StsRecord`; ValueError naming what is wrong."""
    fields = [f.strip(" \t") for f in text.split(";")]
    if fields and fields[-1] == "":            # an optional trailing ";"
        fields.pop()
    if not fields or fields[0] != _VERSION:
        raise ValueError(f"does not begin with {_VERSION}")
    ident: str | None = None
    extensions: list[tuple[str, str]] = []
    for field in fields[1:]:
        name, eq, value = field.partition("=")
        if not eq:
            raise ValueError(f"field {field!r} is not NAME=VALUE")
        if name == "id":
            if ident is not None:
                raise ValueError("more than one id field")
            if not _ID.match(value):
                raise ValueError(f"id {value!r} is not 1 to 32 letters and digits")
            ident = value
        elif _EXT_NAME.match(name) and _EXT_VALUE.match(value):
            extensions.append((name, value))   # extensions are ignored (RFC 8461 §3.1)
        else:
            raise ValueError(f"field {field!r} is not a valid extension")
    if ident is None:
        raise ValueError("no id field")
    return StsRecord(ident, tuple(extensions))


def find_record(txts: list[str] | tuple[str, ...]) -> RecordResult:
    """The one STSv1 record among the TXT strings of ``_mta-sts.<domain>`` (RFC 8461 §3.1)."""
    candidates = [t for t in txts if _BEGINS.match(t)]
    if not candidates:
        return RecordResult(None, "")
    if len(candidates) > 1:
        return RecordResult(None, f"{len(candidates)} STSv1 records (exactly one is allowed)")
    try:
        return RecordResult(parse_record(candidates[0]))
    except ValueError as err:
        return RecordResult(None, f"invalid STSv1 record: {err}")

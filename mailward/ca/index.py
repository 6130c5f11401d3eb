"""The CA's record of issued certificates: OpenSSL's ``index.txt`` format, so ``openssl ca``
can read the same folder.

One line per certificate, six tab-separated fields (``openssl ca`` / ``apps/lib/apps.c``):

    status   V (valid) or R (revoked)
    expiry   the notAfter time as ASN.1 prints it: YYMMDDHHMMSSZ (YYYYMMDDHHMMSSZ from 2050)
    revoked  empty, or the revocation time, optionally ",reason"
    serial   upper-case hex, an even number of digits
    file     always "unknown"
    subject  the DN in slash form (X509_NAME_oneline), unencoded

Contract: :func:`read_index` returns the entries or raises ``CAError`` naming the file and
line; :func:`write_index` replaces the file atomically. Callers hold ``store.ca_lock``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path

from mailward.ca.store import CAError, atomic_write, read_bytes

# RFC 5280 §5.3.1 reason names as OpenSSL writes them in index.txt.
REASONS = ("unspecified", "keyCompromise", "CACompromise", "affiliationChanged", "superseded",
           "cessationOfOperation", "certificateHold", "removeFromCRL", "privilegeWithdrawn",
           "AACompromise")


@dataclass(frozen=True)
class Entry:
    status: str             # "V" or "R"
    not_after: dt.datetime  # UTC
    revoked_at: dt.datetime | None
    reason: str             # "" or one of REASONS
    serial: int
    subject: str            # slash form, unencoded

    def revoke(self, when: dt.datetime, reason: str = "") -> "Entry":
        return replace(self, status="R", revoked_at=when, reason=reason)


def asn1_time(when: dt.datetime) -> str:
    when = when.astimezone(dt.timezone.utc)
    if 1950 <= when.year < 2050:
        return when.strftime("%y%m%d%H%M%SZ")
    return when.strftime("%Y%m%d%H%M%SZ")


def parse_asn1_time(text: str) -> dt.datetime:
    fmt = "%y%m%d%H%M%SZ" if len(text) == 13 else "%Y%m%d%H%M%SZ"
    return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc)


def serial_hex(serial: int) -> str:
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


def format_entry(entry: Entry) -> str:
    revoked = ""
    if entry.revoked_at is not None:
        revoked = asn1_time(entry.revoked_at) + (f",{entry.reason}" if entry.reason else "")
    subject = entry.subject.replace("\t", " ").replace("\n", " ")
    return "\t".join([entry.status, asn1_time(entry.not_after), revoked, serial_hex(entry.serial),
                      "unknown", subject])


def read_index(path: Path) -> list[Entry]:
    if not Path(path).exists():
        return []
    text = read_bytes(path, "the CA index").decode("utf-8", "replace")
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            status, expiry, revoked, serial, _file, subject = fields
            if status not in ("V", "R", "E"):
                raise ValueError(status)
            revoked_at, reason = None, ""
            if revoked:
                when, _, reason = revoked.partition(",")
                revoked_at = parse_asn1_time(when)
            entries.append(Entry("R" if status == "R" else "V", parse_asn1_time(expiry), revoked_at,
                                 reason, int(serial, 16), subject))
        except ValueError:
            raise CAError(f"{path}: line {number}: not an index line "
                          "(STATUS, EXPIRY, REVOKED, SERIAL, FILE, SUBJECT separated by tabs)") from None
    return entries


def write_index(path: Path, entries: list[Entry]) -> None:
    atomic_write(path, "".join(format_entry(e) + "\n" for e in entries).encode("utf-8"), 0o600)

"""The sender login map: which authenticated users may use which envelope senders
(Postfix's smtpd_sender_login_maps with reject_authenticated_sender_login_mismatch).

Format, one entry a line (``#`` starts a comment line, blank lines are ignored)::

    alice@example.org       alice
    @example.org            admin, postmaster
    shared@example.org      alice, bob

The key is a full address or ``@domain`` (every address of that domain); the value lists the
users (as they log in with AUTH) separated by commas and/or spaces. Keys compare without case;
user names exactly. An address's own line is looked at first, then its domain's; an
authenticated user may use a sender only when one of those lines names it. The null sender
``<>`` is not checked (bounces and notices).

Pure apart from :meth:`SenderLoginMap.load`, which reads the file. A bad line raises
:class:`SenderLoginMapError` with ``FILE:LINE: why``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class SenderLoginMapError(ValueError):
    pass


@dataclass(frozen=True)
class SenderLoginMap:
    entries: dict[str, frozenset[str]] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def parse(cls, text: str, source: str = "<map>") -> "SenderLoginMap":
        entries: dict[str, frozenset[str]] = {}
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, _, rest = line.replace("\t", " ").partition(" ")
            users = frozenset(u for u in rest.replace(",", " ").split() if u)
            key = key.lower()
            if not users:
                raise SenderLoginMapError(f"{source}:{lineno}: expected 'ADDRESS-OR-@DOMAIN  user1, user2', "
                                          f"no user after {key!r}")
            local, at, domain = key.rpartition("@")
            if not at or not domain or " " in key:
                raise SenderLoginMapError(f"{source}:{lineno}: the key must be an address or @domain, "
                                          f"not {key!r}")
            entries[key] = entries.get(key, frozenset()) | users
        return cls(entries, source)

    @classmethod
    def load(cls, path: str | Path) -> "SenderLoginMap":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise SenderLoginMapError(f"{path}: cannot read: {getattr(err, 'strerror', None) or err}") from None
        return cls.parse(text, str(path))

    def owners(self, sender: str) -> frozenset[str]:
        """The users that may send as ``sender`` (its own line and its domain's)."""
        address = sender.strip("<>").lower()
        _, at, domain = address.rpartition("@")
        found = self.entries.get(address, frozenset())
        if at:
            found = found | self.entries.get("@" + domain, frozenset())
        return found

    def owns(self, user: str, sender: str) -> bool:
        if sender.strip("<>") == "":
            return True
        return user in self.owners(sender)

"""The outcome of a policy check: a frozen :class:`Decision`.

A decision carries the SMTP reply (code, enhanced status, text), the ruleset that made it
and its arguments (for sendmail's log line), the access map entry that decided it and
every key looked up on the way (for ``mailward policy test``).

Reply lines follow sendmail 8.17 (as observed): ``454 4.7.0 not authenticated``; for
the codes sendmail prints the address with (050, 250, 252, 450, 550, 553: sendmail's
fmtmsg), the address comes first: ``550 5.7.1 <user@remote.example>... Relaying denied``,
``250 2.1.5 <root@oracle.test>... Recipient ok``. Log fragments follow sendmail's
``ruleset=tls_client, arg1=NO, arg2=STARTTLS, relay=localhost [127.0.0.1], reject=454 4.7.0
...``; the caller adds the queue id (``6APJTViE020812: ``) where it has one.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailward.policy.accessmap import Entry

ACTIONS = ("continue", "ok", "relay", "reject", "tempfail", "discard")
# Reply codes after which sendmail names the address (sendmail/err.c fmtmsg).
_ADDRESS_CODES = frozenset({50, 250, 252, 450, 550, 553})


@dataclass(frozen=True)
class Decision:
    """What to do, and what to answer.

    ``action``: "continue" (nothing objected: go on), "ok" (accepted by an OK entry),
    "relay" (accepted, relaying allowed), "reject" (5xx), "tempfail" (4xx), "discard"
    (accept, then throw the message away). ``code``/``status``/``text``: the reply (code 0:
    no reply of its own, e.g. a passed TLS check). ``address``: the address the reply
    names (``<user@x>``, '' for none). ``ruleset``/``args``: sendmail's ruleset name and
    arguments for the log. ``relay``: the peer as sendmail logs it (``name [addr]``).
    ``entry``: the access map entry that decided (None: the default). ``lookups``: keys
    tried, in order, each with the entry found or None.
    """

    action: str
    ruleset: str
    code: int = 0
    status: str = ""
    text: str = ""
    address: str = ""
    args: tuple[str, ...] = ()
    relay: str = ""
    entry: Entry | None = None
    lookups: tuple[tuple[str, Entry | None], ...] = ()

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {self.action!r}")

    @property
    def failed(self) -> bool:
        """True when the command must be refused (reject or tempfail)."""
        return self.action in ("reject", "tempfail")

    @property
    def reply_text(self) -> str:
        """The reply after code and status: ``<u@x>... Relaying denied`` or ``not authenticated``."""
        if self.address and self.code in _ADDRESS_CODES:
            return f"{self.address}... {self.text}" if self.text else f"{self.address}..."
        return self.text

    @property
    def reply(self) -> str:
        """The reply line without CRLF, '' when the decision has no reply of its own."""
        if not self.code:
            return ""
        return " ".join(part for part in (str(self.code), self.status, self.reply_text) if part)

    @property
    def log_fragment(self) -> str:
        """sendmail's log text for a refusal or discard ('' otherwise), e.g.
        ``ruleset=check_rcpt, arg1=<u@x>, relay=h [1.2.3.4], reject=550 5.7.1 <u@x>... Relaying denied``."""
        if not (self.failed or self.action == "discard"):
            return ""
        parts = [f"ruleset={self.ruleset}"]
        parts += [f"arg{i}={arg}" for i, arg in enumerate(self.args, 1)]
        if self.relay:
            parts.append(f"relay={self.relay}")
        parts.append(f"reject={self.reply}" if self.failed else "discard")
        return ", ".join(parts)


def relay_name(name: str, addr: str) -> str:
    """The peer as sendmail logs it: ``localhost [127.0.0.1]``, or ``[192.0.2.1]``."""
    if not name or name.startswith("["):
        return name or (f"[{addr}]" if addr else "")
    return f"{name} [{addr}]" if addr else name


def error_action(code: int) -> str:
    return "tempfail" if 400 <= code < 500 else "reject"


def default_status(code: int) -> str:
    """sendmail's enhanced status when a reply gives none: 4.0.0 / 5.0.0."""
    return f"{str(code)[0]}.0.0"


def first_failure(*decisions: Decision) -> Decision:
    """One decision from several sources of requirements for the same step (the access
    map today; MTA-STS and DANE later): the first that refuses, else the first given."""
    if not decisions:
        raise ValueError("first_failure needs at least one decision")
    for decision in decisions:
        if decision.failed:
            return decision
    return decisions[0]

"""Events and transactions of the SMTP client core (:mod:`mailward.smtp.client`). Small values.

Events come out of ``ClientConnection.next_event()``; the I/O layer answers them with calls
on the core. :class:`Transaction` is what :meth:`ClientConnection.send_transaction` sends,
:class:`TransactionResult` what comes back (one reply per recipient). :func:`mail_params`
and :func:`rcpt_params` keep only the ESMTP parameters the server announced (RFC 1869 §6).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailward.smtp.replies import Reply


# ---- events ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Greeting:
    reply: Reply              # 220: EHLO is on its way; anything else: QUIT is on its way


@dataclass(frozen=True)
class Ready:
    extensions: dict[str, str]   # upper-case keyword → its parameters ("" when none)
    esmtp: bool                  # False after a HELO fallback
    reply: Reply


@dataclass(frozen=True)
class HeloFailed:
    reply: Reply              # both EHLO and HELO refused (or EHLO 4xx): QUIT is on its way


@dataclass(frozen=True)
class TLSReady:
    """220 to STARTTLS: run the handshake now, then call tls_started()."""


@dataclass(frozen=True)
class TLSRefused:
    reply: Reply


@dataclass(frozen=True)
class SendContent:
    """354: feed the message with send_content() and end it with end_content()."""


@dataclass(frozen=True)
class TransactionDone:
    result: "TransactionResult"


@dataclass(frozen=True)
class Closed:
    reply: Reply | None       # 221, a 421, or None when the peer simply closed


class _Sentinel:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")   # flush data_to_send() and feed more bytes
WAITING = _Sentinel("WAITING")       # the core waits for a call (send_transaction, quit, ...)


# ---- transactions --------------------------------------------------------------------------
@dataclass(frozen=True)
class Transaction:
    sender: str                                        # "" for the null reverse-path
    recipients: tuple[tuple[str, dict], ...]           # (address, ESMTP params as received)
    mail_params: dict = field(default_factory=dict)    # MAIL params as received
    size: int = 0                                      # message size for SIZE=


@dataclass
class TransactionResult:
    mail: Reply | None = None
    rcpts: list[Reply | None] = field(default_factory=list)
    data: Reply | None = None        # the reply to DATA if refused, else the final reply
    content_sent: bool = False
    interrupted: bool = False        # the connection closed (or 421) before the transaction ended

    def outcome(self, index: int) -> Reply:
        """The reply that decides recipient ``index``: its RCPT refusal, else the end of DATA,
        else whatever stopped the transaction before that."""
        rcpt = self.rcpts[index] if index < len(self.rcpts) else None
        if self.mail is not None and not self.mail.is_positive:
            return self.mail
        if rcpt is not None and not rcpt.is_positive:
            return rcpt
        if self.data is not None:
            return self.data
        return rcpt or self.mail or Reply(451, "4.4.2", "Connection lost before the reply")


def xtext_params(params: dict) -> str:
    return "".join(f" {k}" if v is None else f" {k}={v}" for k, v in params.items())


def mail_params(tx: Transaction, ext: dict[str, str]) -> dict:
    """MAIL FROM parameters the next hop understands (RFC 1869 §6: never send the others)."""
    out: dict = {}
    given = {k.upper(): v for k, v in tx.mail_params.items()}
    if "SIZE" in ext and tx.size:
        out["SIZE"] = str(tx.size)
    if "8BITMIME" in ext and (given.get("BODY") or "").upper() in ("8BITMIME", "7BIT"):
        out["BODY"] = given["BODY"].upper()
    if "SMTPUTF8" in ext and "SMTPUTF8" in given:
        out["SMTPUTF8"] = None
    if "REQUIRETLS" in ext and "REQUIRETLS" in given:   # RFC 8689 §4.2.1: the next hop enforces it too
        out["REQUIRETLS"] = None
    if "DSN" in ext:
        for key in ("RET", "ENVID"):
            if given.get(key):
                out[key] = given[key]
    return out


def rcpt_params(params: dict, ext: dict[str, str]) -> dict:
    """RCPT TO parameters: NOTIFY and ORCPT only to a server that does DSN (RFC 3461 §4.1)."""
    if "DSN" not in ext:
        return {}
    given = {k.upper(): v for k, v in params.items()}
    return {k: given[k] for k in ("NOTIFY", "ORCPT") if given.get(k)}

"""Delivery status notifications: RFC 3464 ``multipart/report`` messages, under RFC 3461's rules.

:func:`wants_notice` says whether a recipient asked for a notice of this kind (RFC 3461 §4.1,
NOTIFY): without NOTIFY, failures (and delays) are reported and successes are not; ``NEVER``
silences everything; otherwise only the listed kinds. The null sender never gets one
(RFC 5321 §4.5.5, RFC 3461 §6.2): :func:`build_dsn` is not even called for it.

:func:`build_dsn` renders the notice: a human-readable part, the ``message/delivery-status``
part (per-message fields Reporting-MTA, Original-Envelope-Id, Arrival-Date; per-recipient
fields Original-Recipient, Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
Last-Attempt-Date, Will-Retry-Until, RFC 3464 §2.2-2.3), and the original: the whole message
(``message/rfc822``) when RET=FULL or no RET on a failure, its header only
(``text/rfc822-headers``) when RET=HDRS, for success and delay notices without RET
(RFC 3461 §4.3), when the message is bigger than ``bounce_max_content``, and always for a
message that carried REQUIRETLS (RFC 8689 §5: its content is not sent back without TLS
guarantees).

Pure: bytes in, bytes out (CRLF line ends); the runner puts the notice in the spool.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass

_SUBJECTS = {
    "failed": "Returned mail: see transcript for details",
    "delayed": "Warning: could not send message for past {hours}",
    "delivered": "Return receipt",
    "relayed": "Return receipt",
    "expanded": "Return receipt",
}
_NOTIFY_KIND = {"failed": "FAILURE", "delayed": "DELAY", "delivered": "SUCCESS", "relayed": "SUCCESS",
                "expanded": "SUCCESS"}


@dataclass(frozen=True)
class RecipientReport:
    address: str                 # Final-Recipient
    action: str                  # failed, delayed, delivered, relayed, expanded
    status: str                  # enhanced status code, e.g. 5.1.1
    diagnostic: str = ""         # the remote reply, e.g. "550 5.1.1 <u@x>... User unknown"
    remote_mta: str = ""         # the host that gave it
    orcpt: str = ""              # the ORCPT parameter as received ("rfc822;u+40x")
    last_attempt: float = 0.0
    retry_until: float = 0.0
    note: str = ""               # said in the human-readable part: "Message could not be delivered for ..."


def wants_notice(rcpt_params: dict, action: str) -> bool:
    """RFC 3461 §4.1: does NOTIFY ask for a notice of this action?"""
    notify = {k.upper(): v for k, v in rcpt_params.items()}.get("NOTIFY")
    if notify is None:
        return action in ("failed", "delayed")
    kinds = {item.strip().upper() for item in notify.split(",")}
    if "NEVER" in kinds:
        return False
    return _NOTIFY_KIND[action] in kinds


def xtext_decode(value: str) -> str:
    """RFC 3461 §4: ``+XX`` → the character."""
    return re.sub(r"\+([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)


def xtext_encode(value: str) -> str:
    """RFC 3461 §4: '+', '=', and characters outside '!'..'~' as ``+XX``."""
    return "".join(f"+{b:02X}" if b < 33 or b > 126 or b in (43, 61) else chr(b) for b in value.encode("utf-8"))


def header_block(message: bytes) -> bytes:
    """The original's header section, CRLF-terminated."""
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    return head if head.endswith(b"\r\n") else head + b"\r\n"


def _date(t: float) -> str:
    return email.utils.formatdate(t, localtime=True)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_dsn(*, reporting_mta: str, queue_id: str, sender: str, sender_params: dict, arrival: float,
              client: str, reports: list[RecipientReport], original: bytes, max_full: int = 1 << 20,
              now: float | None = None) -> bytes:
    """The notice as bytes (CRLF). ``reports`` share one kind of action family per notice."""
    now = time.time() if now is None else now
    params = {k.upper(): v for k, v in sender_params.items()}
    ret = (params.get("RET") or "").upper()
    failure = any(r.action == "failed" for r in reports)
    full = (ret == "FULL" or (not ret and failure)) and len(original) <= max_full
    if "REQUIRETLS" in params:
        # RFC 8689 §5: the sender asked that this content travel only over verified TLS; the
        # notice goes back without that guarantee, so it carries the header section only.
        full = False
    action = reports[0].action
    hours = int(max(0, now - arrival) // 3600)
    subject = _SUBJECTS[action].format(hours=f"{hours} hour{'s' if hours != 1 else ''}")
    boundary = f"{queue_id}.{int(now)}/{reporting_mta}"
    crlf = "\r\n"

    head = [
        f"From: Mail Delivery Subsystem <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{sender}>",
        f"Subject: {subject}",
        f"Date: {_date(now)}",
        f"Message-ID: <{queue_id}.{int(now * 1000)}@{reporting_mta}>",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status;{crlf}\tboundary="{boundary}"',
    ]

    text = ["This is a MIME-encapsulated message", "", f"--{boundary}",
            "Content-Type: text/plain; charset=utf-8", "",
            f"The original message was received at {_date(arrival)}",
            f"from {client}", ""]
    if action == "failed":
        text.append("   ----- The following addresses had permanent fatal errors -----")
    elif action == "delayed":
        text.append(f"   ----- The following addresses have not been delivered for {hours} hours; "
                    f"delivery will be tried until {_date(reports[0].retry_until)} -----")
    else:
        text.append("   ----- The following addresses were delivered -----")
    for r in reports:
        text.append(f"<{r.address}>")
        if r.note:
            text.append(f"    {r.note}")
        if r.diagnostic:
            text.append(f"    ({'reason' if action != 'delivered' else 'result'}: {_one_line(r.diagnostic)})")
    text.append("")

    status = [f"--{boundary}", "Content-Type: message/delivery-status", "",
              f"Reporting-MTA: dns; {reporting_mta}"]
    if params.get("ENVID"):
        status.append(f"Original-Envelope-Id: {xtext_decode(params['ENVID'])}")
    status.append(f"Arrival-Date: {_date(arrival)}")
    for r in reports:
        status.append("")
        if r.orcpt:
            addr_type, _, value = r.orcpt.partition(";")
            status.append(f"Original-Recipient: {addr_type}; {xtext_decode(value)}")
        status += [f"Final-Recipient: rfc822; {r.address}", f"Action: {r.action}", f"Status: {r.status}"]
        if r.remote_mta:
            status.append(f"Remote-MTA: dns; {r.remote_mta}")
        if r.diagnostic:
            status.append(f"Diagnostic-Code: SMTP; {_one_line(r.diagnostic)}")
        status.append(f"Last-Attempt-Date: {_date(r.last_attempt or now)}")
        if r.action == "delayed" and r.retry_until:
            status.append(f"Will-Retry-Until: {_date(r.retry_until)}")
    status.append("")

    parts = crlf.join(head) + crlf + crlf + crlf.join(text) + crlf + crlf.join(status) + crlf
    if full:
        body = original if original.endswith(b"\r\n") or not original else original + b"\r\n"
        tail = f"--{boundary}{crlf}Content-Type: message/rfc822{crlf}{crlf}".encode() + body
    else:
        tail = f"--{boundary}{crlf}Content-Type: text/rfc822-headers{crlf}{crlf}".encode() + header_block(original)
    return parts.encode("utf-8") + tail + f"{crlf}--{boundary}--{crlf}".encode()

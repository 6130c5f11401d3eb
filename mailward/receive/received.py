"""The Received: header mailward adds, in sendmail's form ("sendmail cf/README, STARTTLS", Received: header).

    Received: from HELO (client_name [client_addr])
    \tby HOSTNAME (mailward VERSION) with ESMTPS id QID
    \t(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256 verify=OK)
    \tfor <rcpt>; DATE

With SMTP AUTH, sendmail's ``(authenticated bits=0)`` line follows the ``from`` line (the
user is not named; ``bits`` is ${auth_ssf}, 0 without a SASL security layer) and the protocol
is ESMTPA or ESMTPSA. The TLS line appears only after STARTTLS; ``for`` only with a single recipient, as sendmail
does (several would disclose Bcc recipients to each other), its address escaped where a
client could break the header with it (a quoted local part may hold U+2028, U+0085, ';'...:
see :func:`mailward.smtp.parse.printable_address`). The protocol keyword follows
RFC 3848 / RFC 6531: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP, UTF8SMTPS, UTF8SMTPA,
UTF8SMTPSA.
"""

from __future__ import annotations

import email.utils
import time

from mailward import __version__
from mailward.smtp.parse import printable_address
from mailward.tls.facts import TLSFacts


def protocol_name(extended: bool, tls: bool, smtputf8: bool, authenticated: bool = False) -> str:
    """RFC 3848 (ESMTPA, ESMTPS, ESMTPSA), RFC 6531 (UTF8SMTP, UTF8SMTPS, UTF8SMTPA,
    UTF8SMTPSA). AUTH needs EHLO, so an authenticated session is always extended."""
    suffix = ("S" if tls else "") + ("A" if authenticated else "")
    if smtputf8:
        return "UTF8SMTP" + suffix
    if not extended:
        return "SMTPS" if tls else "SMTP"
    return "ESMTP" + suffix


_date_cache: tuple[int, str] = (-1, "")


def _date(when: float | None) -> str:
    """RFC 5322 §3.3 date in GMT, as email.utils.formatdate gives it (whole seconds: the one
    string is reused for every header made within the same second)."""
    global _date_cache
    second = int((time.time() if when is None else when) // 1)
    cached = _date_cache
    if cached[0] != second:
        cached = _date_cache = (second, email.utils.formatdate(second, localtime=False, usegmt=True))
    return cached[1]


def _clean(text: str) -> str:
    """A client-supplied name may not break the header: no CR, LF, or other controls."""
    return "".join(ch if ch.isprintable() and ch not in "()" else "?" for ch in text)


def received_header(*, helo: str, client_name: str, client_addr: str, hostname: str, protocol: str,
                    queue_id: str, tls: TLSFacts, recipients: list[str], when: float | None = None,
                    claimed_name: str = "", authenticated: bool = False) -> bytes:
    """``claimed_name``: a reverse name that its forward lookup did not confirm, shown as
    sendmail shows it: ``(claimed.example [192.0.2.1] (may be forged))``. ``authenticated``:
    the client passed SMTP AUTH; sendmail's default header then adds ``(authenticated
    bits=${auth_ssf})`` before ``by`` — the user is not named, and ``bits`` is 0 because no
    SASL security layer is negotiated."""
    date = _date(when)
    from_part = f"from {_clean(helo) or '[' + client_addr + ']'} ({_clean(client_name)} [{client_addr}])"
    if client_name == f"[{client_addr}]" or not client_name:
        from_part = f"from {_clean(helo) or '[' + client_addr + ']'} ([{client_addr}])"
        if claimed_name:
            from_part = (f"from {_clean(helo) or '[' + client_addr + ']'} "
                         f"({_clean(claimed_name)} [{client_addr}] (may be forged))")
    lines = [f"Received: {from_part}"]
    if authenticated:
        lines.append("\t(authenticated bits=0)")
    lines += [f"\tby {hostname} (mailward {__version__}) with {protocol} id {queue_id}"]
    if tls.active:
        lines.append(f"\t(version={tls.tls_version} cipher={tls.cipher} bits={tls.cipher_bits} "
                     f"verify={tls.verify})")
    if len(recipients) == 1:
        lines.append(f"\tfor <{printable_address(recipients[0])}>; {date}")
    else:
        lines[-1] += f"; {date}"
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")

"""The ESMTP parameters of MAIL and RCPT the server core accepts, checked in one place.

Pure: a parsed :class:`~mailward.smtp.parse.Path` and the session's facts in, nothing out,
or :class:`~mailward.smtp.parse.SyntaxProblem` carrying the reply. The core
(:mod:`mailward.smtp.server`) calls these before it asks the world about the address.

MAIL: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), RET and ENVID (RFC 3461),
REQUIRETLS (RFC 8689), AUTH (RFC 4954 §5, when the server has AUTH). RCPT: NOTIFY and ORCPT (RFC 3461). A parameter given twice was
already refused by the parser (501 5.5.4), so REQUIRETLS is accepted at most once per MAIL.
Any other parameter: 555 5.5.4 (RFC 5321 §4.1.1.11), as is REQUIRETLS where it is not
offered (the extension turned off with ``server.requiretls = false``).

SECURITY
    Every value is the client's. Nothing here is trusted further than its syntax; the
    caller keeps the parameters as the client wrote them (the spool's ``sender_params``).
    REQUIRETLS in a session without TLS is refused (530 5.7.10): RFC 8689 §2 lets a client
    ask for it only over TLS, and a tag that arrived in clear could have been added or
    stripped by anyone on the path.
"""

from __future__ import annotations

from mailward.smtp import replies as R
from mailward.smtp.parse import Path, SyntaxProblem, check_xtext
from mailward.smtp.replies import Reply

_NOTIFY = {"SUCCESS", "FAILURE", "DELAY"}

# RFC 8689 §2 (the option only in a session that uses TLS); X.7.10 "Encryption Needed"
# (RFC 5248's registry, from RFC 4954) with RFC 4954's 530 "must issue STARTTLS first".
REQUIRETLS_NEEDS_TLS = Reply(530, "5.7.10", "REQUIRETLS needed: the option is accepted only over TLS (RFC 8689 §2)")
REQUIRETLS_NO_VALUE = Reply(501, "5.5.4", "REQUIRETLS takes no value")


def unrecognized(key: str) -> SyntaxProblem:
    return SyntaxProblem(Reply(555, "5.5.4", f"{key} parameter unrecognized"))


def check_mail_params(path: Path, *, max_message_size: int, tls_active: bool, requiretls: bool,
                      auth: bool = False) -> None:
    """Check MAIL's parameters; ``requiretls``: the extension is on (``server.requiretls``);
    ``auth``: the server has AUTH (RFC 4954 §5's AUTH= parameter is then known)."""
    for key, value in path.params.items():
        if key == "SIZE":
            if value is None or not value.isdigit():
                raise SyntaxProblem(Reply(501, "5.5.4", "SIZE requires a number of octets"))
            if int(value) > max_message_size:
                raise SyntaxProblem(R.MESSAGE_TOO_BIG)
        elif key == "BODY":
            if (value or "").upper() not in ("7BIT", "8BITMIME"):
                raise SyntaxProblem(Reply(501, "5.5.4", "BODY must be 7BIT or 8BITMIME"))
        elif key == "SMTPUTF8":
            if value is not None:
                raise SyntaxProblem(Reply(501, "5.5.4", "SMTPUTF8 takes no value"))
        elif key == "RET":
            if (value or "").upper() not in ("FULL", "HDRS"):
                raise SyntaxProblem(Reply(501, "5.5.4", "RET must be FULL or HDRS"))
        elif key == "ENVID":
            if value is None or len(value) > 100 or not check_xtext(value):
                raise SyntaxProblem(Reply(501, "5.5.4", "ENVID must be xtext of at most 100 characters"))
        elif key == "REQUIRETLS" and requiretls:
            # RFC 8689 §2: no value; §4.1: the server tags the message (the caller keeps it
            # in the envelope's sender parameters, which the spool stores).
            if value is not None:
                raise SyntaxProblem(REQUIRETLS_NO_VALUE)
            if not tls_active:
                raise SyntaxProblem(REQUIRETLS_NEEDS_TLS)
        elif key == "AUTH" and auth:
            # RFC 4954 §5: AUTH=<> or AUTH=xtext(mailbox); whether it is kept is the session's
            # decision (an unauthenticated client's becomes <>).
            if value is None or (value != "<>" and not check_xtext(value)):
                raise SyntaxProblem(Reply(501, "5.5.4", "AUTH parameter must be <> or an xtext mailbox "
                                                        "(RFC 4954 §5)"))
        else:
            raise unrecognized(key)


def check_rcpt_params(path: Path) -> None:
    for key, value in path.params.items():
        if key == "NOTIFY":
            items = {v.upper() for v in (value or "").split(",")}
            if not (items == {"NEVER"} or (items and items <= _NOTIFY)):
                raise SyntaxProblem(Reply(501, "5.5.4", "NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY"))
        elif key == "ORCPT":
            addr_type, semi, xtext = (value or "").partition(";")
            if not semi or not addr_type or not xtext or not check_xtext(xtext):
                raise SyntaxProblem(Reply(501, "5.5.4", "ORCPT must be addr-type;xtext (RFC 3461 §4.2)"))
        else:
            raise unrecognized(key)

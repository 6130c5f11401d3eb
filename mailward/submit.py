"""Local submission: a message from a program on this machine into the queue (``sendmail``).

Two ways in, chosen per message by :func:`submit`:

1. **Straight into the spool**, when the invoking user may write it (root, or the account the
   server runs as): :meth:`mailward.spool.store.Spool.begin` / ``write`` / ``commit`` — the
   same durability contract as a message received over SMTP (fsync, rename into ``queue/``,
   fsync the folder) — so once :func:`submit` returns, the message survives a crash. Then a
   running server is told to look at the queue (SIGUSR2 to the spool's lock holder, as
   ``mailward queue flush``); with no server running the message waits in the spool and is
   delivered at the next start (the runner schedules every spool file at start). Files written
   by root are given to the spool's owner, so a server that runs as ``server.user`` can read
   them whatever root's umask.
2. **Over SMTP to the local listener** (the first ``server.listen`` address), when the spool
   is not writable: the server's own receive path, with its policy and its ``250``.

Why the spool first: it works with the server down, and a message from root or the mail
account is not made to pass the checks meant for network clients. Why SMTP otherwise: an
ordinary user must not be able to write queue files (they carry the envelope), and the
server that receives them then logs and checks them as any other message.

The message text is read from the program as-is and made into what the spool holds: line
ends become CRLF (LF, CR and CRLF alike, so no bare CR or LF can reach a next hop), a
``Received:`` header in mailward's form is put first, and ``From:``, ``Date:`` and
``Message-ID:`` are added when missing (as Postfix's cleanup does for local mail; RFC 5322
§3.6 requires From and Date).

Failure behaviour: :class:`SubmitError` carries one line and a sysexits code (75 when the
message was not taken and trying later may work; 65 for a message that can never be taken,
67 when the server refused every recipient as unknown). Nothing is half-written: a spool write
that fails is aborted (its ``incoming/`` file removed).
"""

from __future__ import annotations

import email.utils
import errno
import os
import re
import signal
import smtplib
import time
from dataclasses import dataclass
from pathlib import Path

from mailward import __version__
from mailward.smtp.parse import printable_address
from mailward.spool.store import (
    PID_FILE,
    Envelope,
    Recipient,
    Spool,
    new_queue_id,
    running_server,
)

EX_DATAERR = 65
EX_NOUSER = 67
EX_SOFTWARE = 70
EX_TEMPFAIL = 75

SIGNAL_WAIT = 10.0       # seconds to wait for a starting server to be ready for SIGUSR2


class SubmitError(Exception):
    """The message was not taken: str(err) is the one line, ``exit_code`` the sysexits code."""

    def __init__(self, text: str, exit_code: int = EX_TEMPFAIL):
        super().__init__(text)
        self.exit_code = exit_code


@dataclass
class Submission:
    """One message as the program gave it, and its envelope."""
    sender: str                      # "" is the null sender (-f '<>')
    recipients: list[str]
    content: bytes                   # CRLF line ends, headers added, without our Received:
    user: str = ""                   # the invoking account, for the Received: header
    uid: int = -1


@dataclass(frozen=True)
class Result:
    """Where the message went: ``route`` is "spool" or "smtp"; ``detail`` says more (-v)."""
    queue_id: str
    route: str
    detail: str


# ---- the message text -------------------------------------------------------------------

_LINE_END = re.compile(rb"\r\n|\r|\n")


def crlf(data: bytes) -> bytes:
    """Every line end as CRLF; the text ends with one."""
    data = _LINE_END.sub(b"\r\n", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def drop_mbox_from(content: bytes) -> bytes:
    """A first line ``From sender date`` (an mbox separator some programs write) is not a
    header: sendmail and Postfix drop it."""
    if content.startswith(b"From "):
        return content.partition(b"\r\n")[2]
    return content


def split_head(content: bytes) -> tuple[bytes, bytes]:
    """(header section with its final CRLF, body with the separating empty line); a text that
    does not start with a header line is all body."""
    if not re.match(rb"[!-9;-~]+:", content):
        return b"", content
    end = content.find(b"\r\n\r\n")
    if end < 0:
        return content, b""
    return content[:end + 2], content[end + 2:]


def header_fields(head: bytes) -> list[tuple[str, bytes]]:
    """(name, whole field with its folded lines and CRLF) in order."""
    fields: list[tuple[str, bytes]] = []
    for line in head.split(b"\r\n")[:-1] if head else []:
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + line + b"\r\n")
        else:
            fields.append((line.split(b":", 1)[0].strip().decode("ascii", "replace").lower(), line + b"\r\n"))
    return fields


def field_value(raw: bytes) -> str:
    value = raw.split(b":", 1)[1] if b":" in raw else b""
    return re.sub(r"\r\n[ \t]", " ", value.decode("utf-8", "replace")).strip()


def recipients_from_headers(fields: list[tuple[str, bytes]]) -> list[str]:
    """``-t``: the addresses of To:, Cc: and Bcc: (RFC 5322 §3.6.3), groups flattened."""
    values = [field_value(raw) for name, raw in fields if name in ("to", "cc", "bcc")]
    return [addr.strip() for _, addr in email.utils.getaddresses(values) if addr.strip()]


def complete_headers(content: bytes, *, sender: str, full_name: str, domain: str, drop_bcc: bool) -> bytes:
    """The message with Bcc: removed and From:, Date:, Message-ID: added when missing (a
    "To: undisclosed-recipients:;" too when no recipient header is left, as Postfix's cleanup).
    Bcc: goes with or without -t: a header that names the blind copies must reach no one."""
    head, body = split_head(content)
    fields = header_fields(head)
    if drop_bcc:
        fields = [(n, raw) for n, raw in fields if n != "bcc"]
    names = {n for n, _ in fields}
    added = []
    if "from" not in names:
        addr = sender or f"MAILER-DAEMON@{domain}"
        added.append("From: " + (email.utils.formataddr((full_name, addr)) if full_name else addr))
    if "date" not in names:
        added.append("Date: " + email.utils.formatdate(localtime=True))
    if "message-id" not in names:
        added.append("Message-ID: " + email.utils.make_msgid(domain=domain))
    if not names & {"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"}:
        added.append("To: undisclosed-recipients:;")
    extra = b"".join(line.encode("utf-8") + b"\r\n" for line in added)
    if not head:
        body = b"\r\n" + body if body and not body.startswith(b"\r\n") else body or b"\r\n"
    return b"".join(raw for _, raw in fields) + extra + body


def received(*, user: str, uid: int, hostname: str, queue_id: str, recipients: list[str],
             when: float | None = None) -> bytes:
    """mailward's Received: header for a local submission, in sendmail's form for mail from a
    program ("(from user@localhost)", no network peer): ``for`` only with one recipient, as
    :func:`mailward.receive.received.received_header` does (several would disclose Bcc)."""
    date = email.utils.formatdate(when, localtime=False, usegmt=True)
    lines = [f"Received: (from {user or 'uid ' + str(uid)}@localhost, uid {uid})",
             f"\tby {hostname} (mailward {__version__}) with local id {queue_id}"]
    if len(recipients) == 1:
        lines.append(f"\tfor <{printable_address(recipients[0])}>; {date}")
    else:
        lines[-1] += f"; {date}"
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def envelope_params(sender: str, recipients: list[str], content: bytes) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if any(b > 0x7F for b in content):
        params["BODY"] = "8BITMIME"
    if any(not a.isascii() for a in [sender, *recipients]):
        params["SMTPUTF8"] = None
    return params


# ---- into the spool ----------------------------------------------------------------------

def spool_writable(directory: Path) -> bool:
    """May this process write queue files? (root, or the account the server runs as.) A spool
    this user cannot even look into (a 0700 folder of the mail account) is not writable."""
    directory = Path(directory)
    if not os.path.isdir(directory):      # missing, or not ours to see: may we create it?
        return not os.path.lexists(directory) and os.access(directory.parent, os.W_OK | os.X_OK)
    return all(os.access(d, os.W_OK | os.X_OK) for d in (directory, directory / "incoming", directory / "queue")
               if d == directory or os.path.isdir(d))


def to_spool(sub: Submission, directory: Path, *, fsync: bool, hostname: str) -> str:
    """Write the message durably; returns its queue id. A server starting at that moment
    may sweep ``incoming/`` under us: the rename then fails and the write is done again."""
    spool = Spool(directory, fsync=fsync)
    owner = os.stat(spool.queue)
    for attempt in range(3):
        qid = new_queue_id()
        now = time.time()
        content = received(user=sub.user, uid=sub.uid, hostname=hostname, queue_id=qid,
                           recipients=sub.recipients, when=now) + sub.content
        env = Envelope(qid, sub.sender, envelope_params(sub.sender, sub.recipients, content),
                       [Recipient(a, {}) for a in sub.recipients], now, client_name="localhost",
                       client_addr="127.0.0.1", helo="localhost")
        incoming = spool.begin(env)
        try:
            for i in range(0, len(content), 1 << 16):
                incoming.write(content[i:i + (1 << 16)])
            if os.geteuid() == 0 and (owner.st_uid, owner.st_gid) != (0, 0):
                os.chown(incoming.path, owner.st_uid, owner.st_gid)   # the server must read it
            spool.commit(incoming)
        except FileNotFoundError:
            incoming.abort()
            if attempt == 2:
                raise
            continue
        except BaseException:
            incoming.abort()
            raise
        return qid
    raise AssertionError("unreachable")


def _catches_sigusr2(pid: int) -> bool | None:
    """Has the process installed its SIGUSR2 handler? (Linux: SigCgt in /proc/PID/status.)
    Until it has, the signal would be lost. None: cannot tell."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"^SigCgt:\s*([0-9a-fA-F]+)", text, re.MULTILINE)
    if not m:
        return None
    return bool(int(m.group(1), 16) >> (signal.SIGUSR2 - 1) & 1)


def wake_server(directory: Path, wait: float = SIGNAL_WAIT) -> str:
    """Ask the server that holds the spool's lock to take the new queue files (SIGUSR2: only
    messages it does not know yet, so deferred ones keep their retry times); returns what
    happened, in words. A server still starting is waited for (its runner may have read the
    queue before our message arrived); no server: the message waits for the next start."""
    deadline = time.monotonic() + wait
    while True:
        pid = running_server(directory)
        if pid is None:
            return "no mailward server is running; delivered when it starts"
        if pid:
            ready = _catches_sigusr2(pid)
            if ready or ready is None:
                try:
                    os.kill(pid, signal.SIGUSR2)
                except OSError as err:
                    return (f"cannot signal the mailward server (pid {pid}, {directory / PID_FILE}): "
                            f"{err.strerror}; delivered at its next queue run or start")
                return f"the mailward server (pid {pid}) was asked to deliver it"
        if time.monotonic() >= deadline:
            return "the mailward server is still starting; delivered at its next queue run"
        time.sleep(0.1)


# ---- over SMTP --------------------------------------------------------------------------

def listen_address(listen: tuple[str, ...] | list[str]) -> tuple[str, int]:
    """Where to connect: the first ``server.listen`` entry of role mx (a submission listener
    would ask for TLS and AUTH), else the first entry; a wildcard means loopback."""
    from mailward.listen import parse_listen, parse_listener

    plain = [item for item in listen if parse_listener(item).role == "mx"]
    host, port = parse_listen((plain or list(listen))[0])
    if host in ("0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def to_smtp(sub: Submission, host: str, port: int, *, timeout: float = 60.0) -> tuple[str, list[str]]:
    """Submit over SMTP; returns (the server's 250 text, recipients it refused). Raises
    SubmitError when the message was not taken."""
    where = f"{host}:{port}"
    params = envelope_params(sub.sender, sub.recipients, sub.content)
    mail_opts = [f"{k}={v}" if v else k for k, v in params.items()]
    try:
        with smtplib.SMTP(host, port, local_hostname="localhost", timeout=timeout) as smtp:
            smtp.ehlo()
            code, text = smtp.mail(sub.sender, mail_opts)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, text, sub.sender)
            refused, unknown = [], 0
            for rcpt in sub.recipients:
                code, text = smtp.rcpt(rcpt)
                if code >= 300:
                    refused.append(f"<{rcpt}>: {code} {text.decode('utf-8', 'replace')}")
                    unknown += code == 550 and b"5.1.1" in text
            if len(refused) == len(sub.recipients):
                smtp.rset()
                raise SubmitError(f"the mailward server at {where} refused every recipient: " + "; ".join(refused),
                                  EX_NOUSER if unknown == len(refused) else EX_DATAERR)
            code, text = smtp.data(sub.content)
            if code != 250:
                raise SubmitError(f"the mailward server at {where} refused the message: {code} "
                                  f"{text.decode('utf-8', 'replace')}", EX_TEMPFAIL if code < 500 else EX_DATAERR)
            return text.decode("utf-8", "replace"), refused
    except smtplib.SMTPResponseException as err:   # sender refused, DATA refused, 421
        raise SubmitError(f"the mailward server at {where} did not take the message: {err.smtp_code} "
                          f"{err.smtp_error.decode('utf-8', 'replace')}",
                          EX_TEMPFAIL if err.smtp_code < 500 else EX_DATAERR) from None
    except (OSError, smtplib.SMTPException) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err) or type(err).__name__
        if isinstance(err, OSError) and err.errno == errno.ECONNREFUSED:
            why = "connection refused (is mailward running?)"
        raise SubmitError(f"cannot reach the mailward server at {where}: {why}") from None


def submit(sub: Submission, config) -> Result:
    """Into the spool if this process may write it, otherwise over SMTP (see the module)."""
    directory = Path(config.spool.directory)
    if spool_writable(directory):
        try:
            qid = to_spool(sub, directory, fsync=config.spool.fsync, hostname=config.server.hostname)
        except OSError as err:
            raise SubmitError(f"{directory}: cannot write the message into the spool: "
                              f"{err.strerror or err}") from None
        return Result(qid, "spool", f"queued in {directory / 'queue' / qid}; " + wake_server(directory))
    host, port = listen_address(config.server.listen)
    text, refused = to_smtp(sub, host, port)
    qid = text.split()[1] if text.startswith("2.") and len(text.split()) > 1 else text
    detail = f"handed to the mailward server at {host}:{port}: 250 {text}"
    if refused:
        detail += "; refused: " + "; ".join(refused)
    return Result(qid, "smtp", detail)

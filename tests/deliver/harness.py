"""Test helpers for delivery: the real runner in-process over a real spool, and aiosmtpd sinks
listening on 127.0.0.x as "MX hosts". Nothing here mocks a network part."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import ssl
from pathlib import Path

from aiosmtpd.controller import Controller

from mailward.config import from_dict
from mailward.deliver.enqueue import enqueue
from mailward.deliver.runner import build_runner
from mailward.spool.store import Spool


class Sink:
    """An aiosmtpd server that records what it gets; replies can be set per recipient."""

    def __init__(self, host: str, port: int, *, rcpt_replies: dict | None = None, data_reply: str | None = None,
                 tls: ssl.SSLContext | None = None, **server_kwargs):
        self.host, self.port = host, port
        self.rcpt_replies = dict(rcpt_replies or {})   # address → reply, or a list of replies in turn
        self.data_reply = data_reply
        self.messages: list[dict] = []
        self.sessions: set[int] = set()
        self.controller = Controller(self, hostname=host, port=port, decode_data=False,
                                     tls_context=tls, require_starttls=False, server_hostname="sink.test",
                                     **{"enable_SMTPUTF8": True, **server_kwargs})

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.sessions.add(id(session))
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.get(address)
        if isinstance(reply, list):
            reply = reply.pop(0) if reply else None
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "content": envelope.original_content or envelope.content,
                              "mail_options": list(envelope.mail_options),
                              "tls": session.ssl is not None})
        return self.data_reply or "250 2.0.0 Message accepted for delivery"

    def __enter__(self) -> "Sink":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def text(self) -> str:
        return "\n".join(self.lines)


class Harness:
    """The delivery side as the server builds it, driven from the test's event loop."""

    def __init__(self, base: Path, dns_server: str, mx_port: int, settings: dict | None = None):
        settings = {k: dict(v) for k, v in (settings or {}).items()}
        d = settings.setdefault("delivery", {})
        d.setdefault("resolver", [dns_server])
        d.setdefault("smtp_port", mx_port)
        d.setdefault("dns_timeout", 3.0)
        d.setdefault("connect_timeout", 2.0)
        d.setdefault("command_timeout", 5.0)
        d.setdefault("retry_jitter", 0.0)
        settings.setdefault("server", {}).setdefault("hostname", "mw.test")
        settings.setdefault("spool", {}).setdefault("fsync", False)
        settings.setdefault("spool", {}).setdefault("directory", str(base / "spool"))
        settings.setdefault("local", {}).setdefault("maildir_root", str(base / "maildir"))
        settings["local"].setdefault("accept_unknown_users", not settings["local"].get("users"))
        self.base = base
        self.config = from_dict(settings, base / "mailward.toml")
        self.spool = Spool(self.config.spool.directory, fsync=False, format=self.config.spool.format)
        self.maildir = Path(self.config.local.maildir_root)
        self.log = LogCapture()
        logger = logging.getLogger("mailward")
        logger.addHandler(self.log)
        logger.setLevel(logging.DEBUG)
        self.runner = None

    def send(self, sender: str, rcpts: list, content: bytes, sender_params: dict | None = None) -> str:
        """Queue a message as the receiving side would have: rcpts are addresses or (address, params)."""
        pairs = [(r, {}) if isinstance(r, str) else r for r in rcpts]
        return enqueue(self.spool, sender, pairs, content, sender_params=sender_params or {}, origin="client.test")

    async def start(self):
        self.runner = build_runner(self.config, self.spool)
        self.runner.start()
        return self.runner

    async def settle(self, timeout: float = 20.0) -> None:
        await asyncio.wait_for(self.runner.idle(), timeout)

    async def stop(self) -> None:
        if self.runner:
            await self.runner.stop()
        logging.getLogger("mailward").removeHandler(self.log)

    def mailbox(self, user: str) -> list[bytes]:
        new = self.maildir / user / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []

    def dsn(self, user: str) -> email.message.Message:
        (raw,) = self.mailbox(user)
        return email.message_from_bytes(raw, policy=email.policy.default)


def message(subject: str = "test", body: bytes = b"Hello.\r\n") -> bytes:
    return (b"Received: from client.test by mw.test; Thu, 26 Nov 2026 01:00:00 +0000\r\n"
            b"From: <a@localhost>\r\nTo: <u@example>\r\nSubject: " + subject.encode() + b"\r\n"
            b"Message-ID: <" + subject.encode().replace(b" ", b".") + b"@client.test>\r\n\r\n" + body)


def run(coro_fn):
    """Run an async test body with a fresh loop."""
    return asyncio.run(coro_fn())

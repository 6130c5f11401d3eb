"""The one loop that drives the SMTP server core in tests: bytes in, decisions answered,
replies out — what :mod:`mailward.receive.session` does over a socket, as plain calls.

    d = ServerDriver()                       # greeted, like a session after its 220
    d.send(b"EHLO c\\r\\n")                    # → ["250-mx.test Hello ...", ...]
    d.events, d.body                         # every event so far, the message text kept

Decisions (MAIL, RCPT, DATA, the end of data, STARTTLS) are answered by ``decide(event)``:
a :class:`Reply`, or ``None`` for the core's default (accept). ``auto_tls`` plays a
handshake that succeeds right after the 220 to STARTTLS. The loop goes on while the core
holds replies back (``output_full``), as the session does once they are written.
"""

from __future__ import annotations

from collections.abc import Callable

from mailward.smtp import events as ev
from mailward.smtp.replies import Reply
from mailward.smtp.server import ServerConnection, ServerLimits
from mailward.smtp.server_state import ServerState

DECISIONS = (ev.MailFrom, ev.RcptTo, ev.DataRequested, ev.DataComplete, ev.StartTLS)


def accept_all(event) -> Reply | None:
    return None


class ServerDriver:
    def __init__(self, limits: ServerLimits = ServerLimits(), *, starttls: bool = True,
                 hostname: str = "mx.test", client_desc: str = "client.test [127.0.0.1]",
                 greeting: str | None = "mx.test ESMTP mailward",
                 decide: Callable[[object], Reply | None] = accept_all, auto_tls: bool = False,
                 max_steps: int = 100000):
        self.core = ServerConnection(hostname, client_desc, limits, starttls_available=starttls)
        self.decide = decide
        self.auto_tls = auto_tls
        self.max_steps = max_steps
        self.events: list = []
        self.body = b""
        if greeting is not None:
            self.core.greet(greeting)

    def feed(self, data: bytes) -> bytes:
        """Give the core ``data``; return every reply octet it has to send once it has
        done all it can with its input."""
        self.core.receive_data(data)
        return self.settle()

    def settle(self) -> bytes:
        core = self.core
        out = []
        for _ in range(self.max_steps):  # a hang would exhaust this
            event = core.next_event()
            if event is ev.NEED_DATA or event is ev.PAUSED:
                held_back = core.output_full  # read before data_to_send() clears it
                out.append(core.data_to_send())
                if held_back:
                    continue
                if event is ev.PAUSED and self.auto_tls and core.state is ServerState.TLS_HANDSHAKE:
                    core.tls_started()
                    continue
                return b"".join(out)
            self.events.append(event)
            if isinstance(event, ev.DataChunk):
                self.body += event.data
            if isinstance(event, DECISIONS):
                core.respond(self.decide(event))
        raise AssertionError("the core did not settle")

    def send(self, data: bytes) -> list[str]:
        """:meth:`feed`, with the replies as text lines."""
        return self.feed(data).decode("utf-8").splitlines()

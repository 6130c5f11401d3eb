"""One SMTP connection of the delivery client, and the pool that keeps idle ones for reuse.

:class:`OutboundConnection` couples an asyncio stream, the sans-IO core (:mod:`mailward.smtp.client`)
and, after STARTTLS, a :class:`~mailward.tls.engine.TLSEngine`: :meth:`OutboundConnection.event` reads
until the core has something to say, :meth:`OutboundConnection.handshake` runs the client handshake
over the memory BIOs and records the TLS facts (sendmail's ${verify}, ${cipher}, ...).

:class:`Pool` keeps connections that finished a transaction cleanly, by (address, port), for
the next message to the same host (RFC 5321 §4.1.4 allows many transactions per session):
at most ``max_messages_per_connection`` messages and ``connection_idle`` seconds idle.

Failure behaviour: a read error or a TLS failure inside :meth:`OutboundConnection.event` is seen by the
core as the connection closing (its transaction ends as 4xx); :meth:`OutboundConnection.handshake`
raises :class:`~mailward.tls.engine.TLSFailure`, ``TimeoutError`` or ``OSError``;
:meth:`OutboundConnection.close` never raises.
"""

from __future__ import annotations

import asyncio
import time

from mailward.deliver.routes import Hop
from mailward.smtp import client as C
from mailward.tls.engine import TLSClosed, TLSEngine, TLSFailure
from mailward.tls.facts import NO_TLS, ConnectionFacts, TLSFacts


class OutboundConnection:
    """One open connection to one hop."""

    def __init__(self, hop: Hop, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 core: C.ClientConnection, timeout: float):
        self.hop = hop
        self.reader, self.writer, self.core = reader, writer, core
        self.engine: TLSEngine | None = None
        self.tls: TLSFacts = NO_TLS
        self.tls_disabled = False       # STARTTLS offered but not used here: sendmail's verify=CLEAR
        self.try_tls_refused = False    # Try_TLS said NO for this server
        self.tls_refused = False        # a TLS check refused this server or a recipient: do not reuse
        self.hop_tls = None             # the TLS decision it was opened under (deliver.tls_sources.HopTls)
        self.timeout = timeout
        self.idle_since = time.monotonic()

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self.writer.write(self.engine.encrypt(data) if self.engine else data)
        await self.writer.drain()

    async def _read(self, timeout: float) -> bytes:
        while True:
            async with asyncio.timeout(timeout):    # (wait_for would make a task per read)
                raw = await self.reader.read(65536)
            if not raw or not self.engine:
                return raw
            plain, out = self.engine.feed(raw)
            if out:
                self.writer.write(out)
            if plain:
                return plain

    async def event(self, timeout: float | None = None):
        """The core's next event, reading as needed; WAITING when the core waits for a call."""
        while True:
            ev = self.core.next_event()
            if ev is not C.NEED_DATA:
                await self.write(self.core.data_to_send())
                return ev
            await self.write(self.core.data_to_send())
            try:
                data = await self._read(timeout or self.timeout)
            except (OSError, TLSFailure, TLSClosed, asyncio.IncompleteReadError):
                data = b""   # the core sees the connection close; its transaction ends as 4xx
            self.core.receive_data(data)

    async def handshake(self, ctx, timeout: float) -> None:
        engine = TLSEngine(ctx, server_side=False, server_hostname=self.hop.sni)
        self.writer.write(engine.start())
        await self.writer.drain()
        while not engine.handshake_done:
            raw = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not raw:
                raise TLSFailure("connection closed during the handshake")
            try:
                _, out = engine.feed(raw)
            except TLSFailure as err:
                alert = getattr(err.__cause__, "output", b"")
                if alert:
                    self.writer.write(alert)
                raise
            if out:
                self.writer.write(out)
                await self.writer.drain()
        self.engine = engine
        self.tls = engine.facts or NO_TLS

    def facts(self) -> ConnectionFacts:
        return ConnectionFacts(self.hop.name, self.hop.addr, tls=self.tls)

    async def close(self) -> None:
        try:
            if not self.core.closed and self.core.ready:
                self.core.quit()
            if self.core.quitting:   # QUIT queued (here or by the core): send it, read 221
                await asyncio.wait_for(self.event(), 2)
        except Exception:
            pass
        try:
            if self.engine:
                self.writer.write(self.engine.close())
            self.writer.close()
        except Exception:
            pass


class Pool:
    """Idle sessions by (server name, address, port), for reuse by the next message: the
    server name is part of the key because the TLS policy was checked for that name."""

    def __init__(self, idle: float, max_messages: int):
        self.idle, self.max_messages = idle, max_messages
        self._idle: dict[tuple[str, int], list[OutboundConnection]] = {}

    def take(self, hop: Hop) -> OutboundConnection | None:
        sessions = self._idle.get((hop.name, hop.addr, hop.port), [])
        now = time.monotonic()
        while sessions:
            s = sessions.pop()
            if s.core.ready and not s.reader.at_eof() and now - s.idle_since < self.idle:
                return s
            asyncio.ensure_future(s.close())
        return None

    async def give_back(self, session: OutboundConnection) -> None:
        if (session.core.ready and session.core.transactions < self.max_messages and self.idle > 0):
            session.idle_since = time.monotonic()
            self._idle.setdefault((session.hop.name, session.hop.addr, session.hop.port), []).append(session)
        else:
            await session.close()

    async def expire(self) -> None:
        now = time.monotonic()
        for key, sessions in list(self._idle.items()):
            keep = [s for s in sessions if now - s.idle_since < self.idle]
            for s in sessions:
                if s not in keep:
                    await s.close()
            self._idle[key] = keep

    async def close_all(self) -> None:
        for sessions in self._idle.values():
            for s in sessions:
                await s.close()
        self._idle.clear()

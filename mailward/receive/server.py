"""The listener: sockets, connection limits, client names, the spool's publication of
accepted messages, signals.

Contract: :class:`SMTPServer` is given what it needs, built elsewhere
(:func:`mailward.service.build_receiving`: spool, TLS context, policy, gate) and, in the
process that delivers, the queue runner — receive does not build or import the delivery side.
SIGHUP calls ``on_reload`` (set by :mod:`mailward.service.reload`: the whole configuration
is read again and the receiving components are rebuilt and handed over with :meth:`swap`);
without it, certificates, keys, CA files, CRLs and the access map are reloaded. Either way no
open connection is dropped (a session keeps its timers and limits; its next command asks the
new policy), and a failed reload keeps what was in use and logs why. ``on_ready`` is called
once the sockets accept, ``on_stopping`` when a stop begins (the service manager's
READY=1/STOPPING=1). SIGTERM/SIGINT: stop listening, give open sessions ``shutdown_grace``
seconds, then 421; in-flight deliveries finish or stay queued.

SMTP AUTH: the backend (``receiving.auth``) is started in the serving event loop before the
sockets accept and closed at stop; a reload that builds a new one starts it and closes the old.
Which role a connection has is looked up from its listening socket's address
(:meth:`SMTPServer.role_of`). The AUTH failures per client address (an IPv6 client by its
network, :meth:`SMTPServer.auth_key`) and the messages per authenticated user are counted
here, in this process (:mod:`.auth_limits`); a reload keeps the counts.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import select
import signal
import threading
import time
from concurrent.futures import Future
from collections import Counter
from typing import Callable

from mailward import log
from mailward.config import Config, ConfigError
from mailward.dns import ClientName, Resolver, confirmed_client_name, system_client_name
from mailward.listen import role_of
from mailward.receive.auth_limits import WindowCounter, address_key
from mailward.receive.received import protocol_name
from mailward.receive.role_limits import group_connection_limit, role_group, server_settings_for
from mailward.receive.session import SMTPSession
from mailward.smtp.parse import printable_address
from mailward.smtp.replies import Reply
from mailward.smtp.server import ServerLimits
from mailward.spool.queue import Queue

NAME_CACHE_SECONDS = 300.0   # how long a client's reverse name (confirmed or not) is reused


def limits_from_config(s) -> ServerLimits:
    return ServerLimits(max_command_line=s.max_command_line, max_text_line=s.max_text_line,
                        max_message_size=s.max_message_size, max_recipients=s.max_recipients,
                        max_bad_commands=s.max_bad_commands,
                        normalise_bare_line_endings=s.bare_line_endings == "normalise",
                        requiretls=s.requiretls)


class Publisher:
    """Collects the messages whose data became durable in this turn of the event loop and
    publishes them together (one folder fsync or one log sync), then lets each session send
    its 250 (each message is logged just before: :meth:`SMTPServer.accepted`), and then
    tells the master's queue runner about all of them in one pipe write
    (:meth:`SMTPServer.announce`). A worker killed between a 250 and that write loses no
    mail: the master adopts queued messages it was not told about (within a minute). The
    notice is not written before the 250s on purpose: every step between a message's record
    reaching the disk and its 250 widens the window in which a kill makes the client send it
    again (a duplicate: tests/reliability/test_crash_log.py bounds them).

    Wake-ups: a spool commit that is already done (``spool.log_sync = "loop"``: the sync is
    the publish itself) is taken at once, without a round trip through the event loop's
    self-pipe; commits finished by the spool's thread wake the loop once per batch, not once
    per message."""

    def __init__(self, spool: Queue, server: "SMTPServer"):
        self.spool = spool
        self.server = server
        self._items: list = []
        self._inbox: list = []              # finished by the commit thread, not yet taken
        self._inbox_lock = threading.Lock()

    def wait(self, session, incoming, commit: Future) -> None:
        """``commit``: the spool's future for ``incoming``'s data (sync_async); once it is
        done the message is :meth:`add`-ed in the event loop's thread."""
        loop = asyncio.get_running_loop()
        if commit.done():
            err = commit.exception()
            if err is None:
                self.add(session, incoming, None)
            else:   # committed() answers and pumps: not from inside the session's own pump
                loop.call_soon(self.add, session, incoming, err)
            return

        def finished(f: Future) -> None:   # in the spool's commit thread
            with self._inbox_lock:
                first = not self._inbox
                self._inbox.append((session, incoming, f.exception()))
            if first:
                loop.call_soon_threadsafe(self._take_inbox)
        commit.add_done_callback(finished)

    def _take_inbox(self) -> None:
        with self._inbox_lock:
            taken, self._inbox = self._inbox, []
        for session, incoming, err in taken:
            self.add(session, incoming, err)

    def add(self, session, incoming, err: Exception | None) -> None:
        if err is not None:
            session.committed(incoming, err)
            return
        if not self._items:
            asyncio.get_running_loop().call_soon(self._flush)
        self._items.append((session, incoming))

    def _flush(self) -> None:
        items, self._items = self._items, []
        results = self.spool.publish([incoming for _, incoming in items])
        try:
            for (session, incoming), err in zip(items, results):
                session.committed(incoming, err)
        finally:
            self.server.announce()


class SMTPServer:
    """Receiving, and (given ``runner``: the process that delivers) delivering.

    ``receiving``: :class:`mailward.service.Receiving` (spool, TLS context, receive policy); ``listen_socks``: sockets bound by
    :func:`mailward.service.startup.bind`; ``notify_fd``: where a worker tells the master's
    queue runner about each accepted message (one queue id per line). With ``runner``, the
    caller holds the spool lock (``lock``, kept while this object lives)."""

    def __init__(self, config: Config, receiving, *, listen_socks, notify_fd: int | None = None,
                 runner=None, lock=None):
        self.config = config
        self.listen_socks = listen_socks
        self.lock = lock
        self.notify_fd = notify_fd
        self._notices: list[str] = []   # queue ids accepted, not yet written to notify_fd
        self.runner = runner
        self.run_delivery = runner is not None
        self.hostname = config.server.hostname
        self._role_settings(config)
        self.tls_context = receiving.tls_context
        self._reload_tls = receiving.reload_tls
        self.policy = receiving.policy
        self.spool = receiving.spool
        self.publisher = Publisher(self.spool, self)
        self.gate = receiving.policy    # the session asks it every question (receive policy)
        self.auth = getattr(receiving, "auth", None)   # the AUTH backend (mailward.auth), or None
        self._limit_counters(config)
        self.rate_held: Counter[str] = Counter()   # open transactions of each authenticated user
        self.auth_inflight: Counter[str] = Counter()   # AUTH exchanges in progress per address key
        self.sessions: set[SMTPSession] = set()
        self.per_client: Counter[tuple[str, str]] = Counter()   # (role group, address) -> connections
        self.per_group: Counter[str] = Counter()                 # role group -> connections
        self.refusing: set[SMTPSession] = set()   # refused on 465, saying so inside TLS
        self.servers: list[asyncio.base_events.Server] = []
        self._name_cache: dict[str, tuple[float, ClientName]] = {}
        self.resolver = Resolver(list(config.delivery.resolver), timeout=config.delivery.dns_timeout)
        self._free_checked, self._free, self._block = -1.0, 0, 4096
        self._stopping = asyncio.Event()
        self.on_reload: Callable[[], None] | None = None     # SIGHUP: rebuild (mailward.service.reload)
        self.on_ready: Callable[[], None] | None = None      # accepting connections
        self.on_stopping: Callable[[], None] | None = None   # a stop has begun

    def _role_settings(self, config: Config) -> None:
        """[server] as each listener role applies it (mailward.receive.role_limits)."""
        self.limits = limits_from_config(config.server)   # mx's
        self._settings = {role: server_settings_for(role, config.server, getattr(config, "submission", None))
                          for role in ("mx", "submission", "submissions")}
        self._limits = {role: limits_from_config(s) if s is not config.server else self.limits
                        for role, s in self._settings.items()}

    def settings_for(self, role: str):
        """The [server] settings a session on a listener of ``role`` runs under."""
        return self._settings.get(role, self.config.server)

    def limits_for(self, role: str) -> ServerLimits:
        return self._limits.get(role, self.limits)

    def _limit_counters(self, config: Config) -> None:
        """Failed AUTH per client address, messages per authenticated user ([submission]);
        a reload that changes the limits keeps what was counted (an attacker's failures are
        not forgiven by the administrator's SIGHUP)."""
        sub = config.submission
        old_failures, old_messages = getattr(self, "auth_failures", None), getattr(self, "submissions", None)
        self.auth_failures = (old_failures.resized(sub.auth_failure_window, sub.max_auth_failures)
                              if old_failures is not None
                              else WindowCounter(sub.auth_failure_window, sub.max_auth_failures))
        self.submissions = (old_messages.resized(sub.rate_limit_window, sub.rate_limit_messages or 1)
                            if old_messages is not None
                            else WindowCounter(sub.rate_limit_window, sub.rate_limit_messages or 1))
        if not sub.rate_limit_messages:
            self.submissions.reached = lambda user: False

    def rate_hold(self, user: str) -> bool:
        """A place for one more message of ``user`` within submission.rate_limit_messages,
        held by an open transaction until :meth:`rate_release` (messages accepted count in
        ``submissions``); False when none is left."""
        if not self.config.submission.rate_limit_messages:
            return True
        if self.submissions.count(user) + self.rate_held[user] >= self.submissions.limit:
            return False
        self.rate_held[user] += 1
        return True

    def rate_release(self, user: str) -> None:
        self.rate_held[user] -= 1
        if self.rate_held[user] <= 0:
            del self.rate_held[user]

    def auth_key(self, addr: str) -> str:
        """What a client address counts as for submission.max_auth_failures (auth_limits.address_key)."""
        return address_key(addr, getattr(self.config.submission, "auth_failure_prefix_length", 64))

    def role_of(self, sockname) -> str:
        """The role of the listener a connection came in on (mailward.listen)."""
        try:
            return role_of(sockname, self.config.server.listen) if sockname else "mx"
        except ValueError:
            return "mx"

    # ---- admission ---------------------------------------------------------------------
    def admit(self, session: SMTPSession) -> Reply | None:
        """A place for a new connection, or the 421 that refuses it: server.max_connections in
        all, the role group's own cap, and the per-client limit of its role (a client's port 25
        and submission connections are counted apart)."""
        s, group = self.settings_for(session.role), role_group(session.role)
        group_cap = group_connection_limit(session.role, getattr(self.config, "submission", None))
        if len(self.sessions) >= self.config.server.max_connections or (
                group_cap and self.per_group[group] >= group_cap):
            log.notice(None, relay=f"[{session.client_addr}]", reject="421 4.3.2 too many connections",
                       role=session.role if group != "mx" else None)
            return Reply(421, "4.3.2", f"{self.hostname} Too many connections, try again later")
        if (self.per_client[group, session.client_addr] >= s.max_connections_per_client
                and not self._limit_exempt(session.client_addr)):
            log.notice(None, relay=f"[{session.client_addr}]", reject="421 4.7.0 too many connections from you",
                       role=session.role if group != "mx" else None)
            return Reply(421, "4.7.0", f"{self.hostname} Too many connections from your address")
        self.sessions.add(session)
        self.per_client[group, session.client_addr] += 1
        self.per_group[group] += 1
        return None

    def refuse_in_tls(self, session: SMTPSession) -> bool:
        """Whether a refused connection on an implicit-TLS listener may hold its socket for
        the handshake its 421 must travel in: while fewer than server.max_connections are
        open or being refused in all (beyond that it is closed without a word)."""
        if self.tls_context is None or \
                len(self.sessions) + len(self.refusing) >= 2 * self.config.server.max_connections:
            return False
        self.refusing.add(session)
        return True

    def _limit_exempt(self, addr: str) -> bool:
        """server.client_limit_exceptions: networks whose clients the per-client limit spares."""
        return in_networks(addr, self.config.server.client_limit_exceptions)

    def forget(self, session: SMTPSession) -> None:
        self.refusing.discard(session)
        if session in self.sessions:
            self.sessions.discard(session)
            key = role_group(session.role), session.client_addr
            self.per_client[key] -= 1
            if self.per_client[key] <= 0:
                del self.per_client[key]
            self.per_group[key[0]] -= 1

    async def client_name(self, addr: str) -> str:
        """sendmail's ${client_name}: the reverse name when its forward lookup confirms it,
        else ``[addr]`` — a PTR record alone proves nothing (anyone who controls their
        reverse zone can claim any name), and names decide relaying. A claimed but
        unconfirmed name is remembered for display (:meth:`claimed_name`)."""
        if not self.config.server.reverse_lookup:
            return f"[{addr}]"
        now = time.monotonic()
        cached = self._name_cache.get(addr)
        if cached is not None and now - cached[0] < NAME_CACHE_SECONDS:
            return cached[1].name or f"[{addr}]"
        try:
            if self.config.delivery.resolver:
                found = await asyncio.wait_for(confirmed_client_name(self.resolver, addr), 10)
            else:   # the system's resolver: /etc/hosts too
                found = await asyncio.wait_for(system_client_name(addr), 10)
        except asyncio.TimeoutError:
            found = ClientName()
        if len(self._name_cache) > 10000:
            self._name_cache.clear()
        self._name_cache[addr] = (now, found)
        return found.name or f"[{addr}]"

    def claimed_name(self, addr: str) -> str:
        """The PTR name of ``addr`` when its forward lookup did not confirm it ('' otherwise):
        logs and the Received header show it as sendmail does, ``name [addr] (may be forged)``."""
        cached = self._name_cache.get(addr)
        return cached[1].claimed if cached is not None and cached[1].forged else ""

    def spool_has_room(self, declared_size: int = 0) -> bool:
        """Room for a message of ``declared_size`` (MAIL's SIZE=) plus ``spool.min_free_space``;
        with neither, at least a few blocks must be free (a full disk gets 452 at MAIL)."""
        now = time.monotonic()
        if now - self._free_checked > 0.25:  # statvfs at most 4 times a second, not per MAIL
            try:
                st = os.statvfs(self.spool.directory)
                self._free, self._block = st.f_bavail * st.f_frsize, st.f_frsize
            except OSError:
                self._free, self._block = 0, 4096
            self._free_checked = now
        need = max(self.config.spool.min_free_space + declared_size, 4 * self._block)
        return self._free >= need

    def forget_free_space(self) -> None:
        self._free_checked = -1.0

    def accepted(self, envelope, session: SMTPSession) -> None:
        """A message is durable in the queue: its log line, and (one process) the runner is
        told; a worker tells the master with :meth:`announce`, called by the publisher."""
        tls, core = session.tls, session.core
        user = core.authenticated if core is not None else None
        if user is not None:
            self.submissions.add(user)
        proto = protocol_name(core.extended if core else True, tls.active,
                              "SMTPUTF8" in envelope.sender_params, user is not None)
        log.info(envelope.queue_id, **{"from": f"<{printable_address(envelope.sender)}>"},
                 size=envelope.content_size or None, nrcpts=len(envelope.recipients), proto=proto,
                 relay=session.relay, authid=printable_address(user) if user is not None else None)
        if self.notify_fd is None:
            self.runner.submit(envelope.queue_id)
        else:
            self._notices.append(envelope.queue_id)   # for announce(), once the batch is answered

    def announce(self) -> None:
        """A worker tells the master's queue runner about the messages accepted since the last
        call: one queue id per line, in as few writes as PIPE_BUF allows (each write of at most
        PIPE_BUF octets reaches the pipe whole, never mixed with another worker's; POSIX write(2))."""
        if not self._notices:
            return
        data = "".join(f"{qid}\n" for qid in self._notices).encode()
        self._notices.clear()
        while data:
            cut = len(data) if len(data) <= select.PIPE_BUF else data.rindex(b"\n", 0, select.PIPE_BUF) + 1
            try:
                os.write(self.notify_fd, data[:cut])
            except OSError:
                pass  # the master adopts unknown queue files on its own within a minute
            data = data[cut:]

    # ---- lifecycle -----------------------------------------------------------------------
    def reload(self) -> None:
        if self.on_reload is not None:
            self.on_reload()
            return
        try:
            new_context = self._reload_tls()
        except ConfigError as err:
            log.event(40, None, reload="failed", reason=str(err), kept="previous certificates")
            return
        self.tls_context = new_context
        self.policy.reload()
        log.info(None, reload="ok", tls="reloaded")

    def swap(self, config: Config, receiving) -> None:
        """Use a new configuration and what :func:`mailward.service.build_receiving` built from
        it, for every new connection and every next command of the open ones. The listening
        sockets, the spool and the runner stay (changing them needs a restart)."""
        self.config = config
        self.hostname = config.server.hostname
        self._role_settings(config)
        self.tls_context = receiving.tls_context
        self._reload_tls = receiving.reload_tls
        self.policy = self.gate = receiving.policy
        old_auth, self.auth = self.auth, getattr(receiving, "auth", None)
        if self.auth is not old_auth:
            loop = asyncio.get_running_loop()
            if self.auth is not None:
                loop.create_task(self.auth.start())
            if old_auth is not None:
                loop.create_task(old_auth.close())
        if (config.submission.max_auth_failures, config.submission.auth_failure_window,
                config.submission.rate_limit_messages, config.submission.rate_limit_window) != \
                (self.auth_failures.limit, self.auth_failures.window, self.submissions.limit,
                 self.submissions.window):
            self._limit_counters(config)
        self.resolver = Resolver(list(config.delivery.resolver), timeout=config.delivery.dns_timeout)
        self._name_cache.clear()
        self.forget_free_space()

    async def start(self) -> None:
        if self.run_delivery:
            removed = self.spool.recover()
            if removed:
                log.info(None, spool="recovered", discarded_partial=removed)
            self.runner.start()
        if self.auth is not None:
            await self.auth.start()
        loop = asyncio.get_running_loop()
        for sock in self.listen_socks:
            self.servers.append(await loop.create_server(lambda: SMTPSession(self), sock=sock, backlog=1024))
        log.info(None, daemon="started", listen=",".join(self.config.server.listen),
                 starttls="on" if self.tls_context else "off", pid=os.getpid())

    async def stop(self) -> None:
        if self.on_stopping is not None:
            self.on_stopping()
        for server in self.servers:
            server.close()
        grace = self.config.server.shutdown_grace
        for session in list(self.sessions):
            if session.idle:
                session.shutdown()
        deadline = asyncio.get_running_loop().time() + grace
        while any(not s.idle for s in self.sessions) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            session.shutdown()
        if self.run_delivery:
            await self.runner.stop()
        if self.auth is not None:
            await self.auth.close()
        log.info(None, daemon="stopped")

    def request_stop(self) -> None:
        """Stop as on SIGTERM (a worker whose master is gone)."""
        self._stopping.set()

    async def run_forever(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        if self.run_delivery:
            loop.add_signal_handler(signal.SIGUSR1, self.runner.flush)
            loop.add_signal_handler(signal.SIGUSR2, self.runner.adopt)   # new queue files (sendmail)
        if self.on_ready is not None:   # accepting, and SIGHUP/SIGTERM are handled
            self.on_ready()
        await self._stopping.wait()
        await self.stop()


@functools.lru_cache(maxsize=8)
def _networks(items: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def in_networks(addr: str, items: tuple[str, ...]) -> bool:
    """Whether the client address ``addr`` lies in one of the CIDR networks ``items``."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in _networks(tuple(items)) if net.version == ip.version)

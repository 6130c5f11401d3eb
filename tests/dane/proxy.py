"""A DNS proxy on loopback that plays the active attacker between mailward and its resolver:
it forwards queries (UDP and TCP, one port) to the real validating Unbound and, as told,
drops some of them, answers SERVFAIL, strips the AD bit, or sets TC on UDP answers.

``DnsProxy(upstream_port, rule).start()``; ``rule(query, transport)`` returns ``None``
(forward unchanged) or a set of actions: ``"drop"``, ``"servfail"``, ``"strip-ad"``,
``"tc"`` (UDP: an empty truncated answer). ``rewrite(query, response)``, when given, may
change or replace each forwarded response (placed in front of NSD: the attacker on the path
between the validating resolver and the authoritative server). ``upstream_port`` may be a
callable (a port known only once the upstream starts). ``proxy.address`` is "127.0.0.1:PORT";
``proxy.seen`` lists ``(qname, qtype, transport)`` in arrival order. :meth:`stop` ends it.
"""

from __future__ import annotations

import socket
import struct
import threading

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from tests.dane.dnssec import free_port


class DnsProxy:
    def __init__(self, upstream_port, rule, rewrite=None):
        self._upstream = upstream_port
        self.rule = rule
        self.rewrite = rewrite
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.seen: list[tuple[str, str, str]] = []
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(("127.0.0.1", self.port))
        self._tcp = socket.socket()
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind(("127.0.0.1", self.port))
        self._tcp.listen(16)
        self._stop = False
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True),
                         threading.Thread(target=self._serve_tcp, daemon=True)]

    @property
    def upstream(self) -> int:
        return self._upstream() if callable(self._upstream) else self._upstream

    def start(self) -> "DnsProxy":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop = True
        for s in (self._udp, self._tcp):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _answer(self, wire: bytes, transport: str) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        q = query.question[0]
        self.seen.append((q.name.to_text(omit_final_dot=True), dns.rdatatype.to_text(q.rdtype), transport))
        actions = self.rule(query, transport) or set()
        if "drop" in actions:
            return None
        if "servfail" in actions:
            reply = dns.message.make_response(query)
            reply.set_rcode(dns.rcode.SERVFAIL)
            return reply.to_wire()
        if "tc" in actions and transport == "udp":
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.TC
            return reply.to_wire()
        try:
            if transport == "udp":
                response = dns.query.udp(query, "127.0.0.1", port=self.upstream, timeout=5)
            else:
                response = dns.query.tcp(query, "127.0.0.1", port=self.upstream, timeout=5)
        except Exception:
            return None
        if "strip-ad" in actions:
            response.flags &= ~dns.flags.AD
        if self.rewrite is not None:
            response = self.rewrite(query, response) or response
        return response.to_wire(max_size=65535)

    def _serve_udp(self) -> None:
        while not self._stop:
            try:
                wire, peer = self._udp.recvfrom(65535)
            except OSError:
                return
            reply = self._answer(wire, "udp")
            if reply is not None:
                try:
                    self._udp.sendto(reply, peer)
                except OSError:
                    pass

    def _serve_tcp(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._one_tcp, args=(conn,), daemon=True).start()

    def _one_tcp(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn:
            try:
                while True:
                    head = conn.recv(2, socket.MSG_WAITALL)
                    if len(head) < 2:
                        return
                    wire = conn.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
                    reply = self._answer(wire, "tcp")
                    if reply is None:
                        continue        # a dropped TCP query: the client waits for nothing
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                return

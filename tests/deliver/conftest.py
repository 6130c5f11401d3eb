"""Fixtures for the delivery tests: a real DNS server (NSD, Debian's package) on loopback with
the test zone below, a port shared by the "MX hosts" on 127.0.0.x, and aiosmtpd sinks."""

from __future__ import annotations

import socket

import pytest

from recorder import Receiver, places, server_context
from tests.nsd import free_udp_tcp_port, nsd_serving

# The MX hosts of the tests live on 127.0.0.x addresses (Linux routes all of 127/8 to lo).
ZONE = """$ORIGIN test.
$TTL 5
@            IN SOA ns.test. hostmaster.test. 1 3600 600 86400 5
@            IN NS  ns.test.
ns           IN A   127.0.0.1
; MX order: mx1 (10) before mx2 (20)
order        IN MX 20 mx2.order.test.
order        IN MX 10 mx1.order.test.
mx1.order    IN A   127.0.0.11
mx2.order    IN A   127.0.0.12
; the first MX refuses connections, the second accepts
fallback     IN MX 10 dead.fallback.test.
fallback     IN MX 20 live.fallback.test.
dead.fallback IN A  127.0.0.21
live.fallback IN A  127.0.0.22
; two hosts of one preference
same         IN MX 10 a.same.test.
same         IN MX 10 b.same.test.
a.same       IN A   127.0.0.31
b.same       IN A   127.0.0.32
; no MX: the domain's own address (RFC 5321 §5.1)
nomx         IN A   127.0.0.41
; null MX (RFC 7505)
null         IN MX 0 .
; neither MX nor address
nodata       IN TXT "no mail here"
; the seed's multiple-MX example: a TLS primary and a clear-text backup
secure       IN MX 10 primary.secure.test.
secure       IN MX 50 backup.secure.test.
primary.secure IN A 127.0.0.51
backup.secure  IN A 127.0.0.52
; a mailward with TLS and client certificates
tls          IN MX 10 mx.tls.test.
mx.tls       IN A   127.0.0.61
; a Postfix instance (tests/deliver/postfix.py)
postfix      IN MX 10 mx.postfix.test.
mx.postfix   IN A   127.0.0.81
; a client whose reverse name is confirmed by its forward lookup (127.0.0.4), see REVERSE_ZONE
good.client  IN A   127.0.0.4
; a sink that says what the tests tell it to
sink         IN MX 10 mx.sink.test.
mx.sink      IN A   127.0.0.71
""" + "".join(
    # the TLS policy receivers (recorder.py): kind K reached by name (mx.K-n.sweep.test, an A
    # record) on 127.0.1.2x and by MX (K-m.sweep.test MX mx.K-m.sweep.test) on 127.0.1.3x;
    # the bracketed routes use 127.0.1.1x
    f"mx.{kind}-n.sweep IN A 127.0.1.{21 + i}\n{kind}-m.sweep IN MX 10 mx.{kind}-m.sweep.test.\n"
    f"mx.{kind}-m.sweep IN A 127.0.1.{31 + i}\n"
    for i, kind in enumerate(("ca", "reqcert", "wrongcn", "self", "plain")))

# PTR records: 127.0.0.4 is good.client.test (confirmed); 127.0.0.3 claims mx.sink.test, whose
# address is 127.0.0.71 (a forged reverse name); 127.0.0.5 claims localhost, which this server
# does not answer for (the forward lookup fails)
REVERSE_ZONE = """$ORIGIN 127.in-addr.arpa.
$TTL 5
@            IN SOA ns.test. hostmaster.test. 1 3600 600 86400 5
@            IN NS  ns.test.
4.0.0        IN PTR good.client.test.
3.0.0        IN PTR mx.sink.test.
5.0.0        IN PTR localhost.
"""

@pytest.fixture(scope="session")
def dns_server(tmp_path_factory) -> str:
    """NSD serving the zones above on 127.0.0.1:PORT; yields "127.0.0.1:PORT". broken.test is a
    secondary zone never transferred: NSD answers SERVFAIL for it."""
    with nsd_serving(tmp_path_factory.mktemp("nsd"), {"test": ZONE, "127.in-addr.arpa": REVERSE_ZONE},
                     probe="ns.test", unserved=("broken.test",)) as port:
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def mx_port() -> int:
    """One port free on every 127.0.0.x address the zone uses: MX records carry no port,
    so every MX host of the tests listens on this one (delivery.smtp_port)."""
    hosts = ["127.0.0.11", "127.0.0.12", "127.0.0.21", "127.0.0.22", "127.0.0.31", "127.0.0.32",
             "127.0.0.41", "127.0.0.51", "127.0.0.52", "127.0.0.61", "127.0.0.71", "127.0.0.81"]
    hosts += [f"127.0.1.{form + i}" for form in (11, 21, 31) for i in range(5)]   # policy receivers
    for _ in range(100):
        port = free_udp_tcp_port()
        ok = True
        for h in hosts:
            with socket.socket() as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no port free on all test addresses")


# ---- the TLS policy receivers (recorder.py) ------------------------------------------------
@pytest.fixture(scope="session")
def receivers(pki, mx_port, tmp_path_factory):
    """The fifteen recording receivers: every kind, once per route form; {addr: Receiver}."""
    from mailward.ca import authority

    d = tmp_path_factory.mktemp("receivers")
    running = {}
    for place in places():
        cert, key = d / f"{place.addr}.pem", d / f"{place.addr}-key.pem"
        if place.kind == "self":
            authority.self_signed(place.host, cert, key, [place.host], usage="server", subject="/C=XX/O=Self Signed")
        elif place.kind != "plain":
            cn = "wrong.sweep.test" if place.kind == "wrongcn" else place.host
            authority.issue(pki.dir / "ca", cn, [cn], cert, key, usage="server")
        ctx = None if place.kind == "plain" else server_context(
            cert, key, request_cert=place.kind == "reqcert", ca=pki.ca)
        running[place.addr] = Receiver(place.addr, mx_port, place.kind, place.host, ctx).start()
    yield running
    for r in running.values():
        r.stop()

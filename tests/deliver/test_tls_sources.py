"""End to end: the sending side's one TLS decision with real sources (docs/outbound-tls.md).

A real ``mailward serve`` delivers to recording TLS receivers on 127.0.3.x. DNS is the DANE
helper's lab (tests/dane/dnssec.py: NSD serving signed and unsigned zones, a validating
Unbound in front); MTA-STS policies come from a real HTTPS host (tests/mtasts/policyhost.py).
What is asserted is what a user sees: what each receiver got (and in clear or under TLS),
the log lines, the queue.

Destinations (one zone each; MX ``mx.<zone>`` on the address shown):

    dane.test       signed, TLSA 3 1 1 of the receiver's key     127.0.3.1  offers REQUIRETLS
    danebad.test    signed, TLSA of another key                  127.0.3.2
    danebogus.test  signed, the TLSA RRset tampered (bogus)       127.0.3.3
    insecure.test   unsigned (TLSA present but not trusted)       127.0.3.4  self-signed cert
    sts.test        MTA-STS enforce, mx: mx.sts.test              127.0.3.5  CA cert
    stsbad.test     MTA-STS enforce                               127.0.3.6  self-signed cert
    ststest.test    MTA-STS testing, mx: other.ststest.test       127.0.3.7  self-signed cert
    stsmx.test      MTA-STS enforce, mx: other.stsmx.test         127.0.3.8  CA cert
    plain.test      unsigned, no STARTTLS                         127.0.3.9
"""

from __future__ import annotations

import hashlib
import smtplib
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.dane.dnssec import DnssecLab, Zone, free_port, missing_tools
from tests.mtasts.policyhost import Answer, PolicyHost

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=f"not installed: {missing_tools()}")

HOSTS = {"dane": "127.0.3.1", "danebad": "127.0.3.2", "danebogus": "127.0.3.3", "insecure": "127.0.3.4",
         "sts": "127.0.3.5", "stsbad": "127.0.3.6", "ststest": "127.0.3.7", "stsmx": "127.0.3.8",
         "plain": "127.0.3.9"}
SELF_SIGNED = ("insecure", "stsbad", "ststest")
OTHER_DIGEST = "ab" * 32
TAMPERED_DIGEST = "cd" * 32


# ---- a recording receiver that can offer REQUIRETLS (RFC 8689 §2: only after STARTTLS) --------
@dataclass
class Connection:
    commands: list[tuple[str, bool]] = field(default_factory=list)    # (line, under TLS)
    messages: list[bytes] = field(default_factory=list)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        rx: Receiver = self.server.rx   # type: ignore[attr-defined]
        conn = Connection()
        with rx.lock:
            rx.connections.append(conn)
        sock, tls = self.request, False
        sock.settimeout(15)
        reader = sock.makefile("rb")

        def send(text: str) -> None:
            sock.sendall(text.encode() + b"\r\n")
        try:
            send(f"220 {rx.name} ESMTP")
            while True:
                raw = reader.readline(4000)
                if not raw:
                    return
                line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
                conn.commands.append((line, tls))
                verb = line.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    ext = ["PIPELINING", "ENHANCEDSTATUSCODES"]
                    ext += ["STARTTLS"] if rx.context is not None and not tls else []
                    ext += ["REQUIRETLS"] if rx.requiretls and tls else []
                    lines = [rx.name] + ext
                    send("\r\n".join(f"250{'-' if i < len(lines) - 1 else ' '}{x}" for i, x in enumerate(lines)))
                elif verb == "STARTTLS" and rx.context is not None and not tls:
                    send("220 2.0.0 Ready to start TLS")
                    sock = rx.context.wrap_socket(sock, server_side=True)
                    reader, tls = sock.makefile("rb"), True
                elif verb == "DATA":
                    send("354 go ahead")
                    body = bytearray()
                    while (chunk := reader.readline(1 << 20)) and chunk != b".\r\n":
                        body += chunk
                    conn.messages.append(bytes(body))
                    send("250 2.0.0 Ok: queued")
                elif verb == "QUIT":
                    send("221 2.0.0 Bye")
                    return
                else:
                    send("250 2.0.0 Ok")
        except (OSError, ssl.SSLError):
            return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Receiver:
    def __init__(self, addr: str, port: int, name: str, context: ssl.SSLContext | None, requiretls: bool = False):
        self.name, self.context, self.requiretls = name, context, requiretls
        self.connections: list[Connection] = []
        self.lock = threading.Lock()
        self._server = _Server((addr, port), _Handler)
        self._server.rx = self   # type: ignore[attr-defined]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def clear(self) -> None:
        with self.lock:
            self.connections = []

    @property
    def messages(self) -> list[bytes]:
        return [m for c in self.connections for m in c.messages]

    def lines(self, verb: str) -> list[tuple[str, bool]]:
        return [(line, tls) for c in self.connections for line, tls in c.commands
                if line.split(" ", 1)[0].upper() == verb]


# ---- the world: certificates, DNS, the policy host, the receivers ------------------------------
def _spki_sha256(cert_pem: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def _zone(label: str, port: int, certs: dict, extra: str = "", **kw) -> Zone:
    records = f"@ MX 10 mx\nmx A {HOSTS[label]}\n" + extra
    return Zone(f"{label}.test", records, **kw)


@dataclass
class World:
    resolver: str
    port: int
    pki: object
    policy_port: int
    receivers: dict


@pytest.fixture(scope="module")
def world(tmp_path_factory, pki):
    from mailward.ca import authority
    d = tmp_path_factory.mktemp("tls-sources")
    certs = {}
    for label in HOSTS:
        name = f"mx.{label}.test"
        if label in SELF_SIGNED:
            authority.self_signed(name, d / f"{label}.pem", d / f"{label}-key.pem", subject="/C=XX/O=Self")
        else:
            authority.issue(pki.dir / "ca", name, [name], d / f"{label}.pem", d / f"{label}-key.pem", usage="both")
        certs[label] = (d / f"{label}.pem", d / f"{label}-key.pem")
    names = [f"mta-sts.{x}.test" for x in ("sts", "stsbad", "ststest", "stsmx")]
    authority.issue(pki.dir / "ca", names[0], names, d / "policy.pem", d / "policy-key.pem", usage="both")
    port = free_port()
    tlsa = f"_{port}._tcp.mx TLSA 3 1 1"
    sts_rr = 'mta-sts A 127.0.0.1\n_mta-sts TXT "v=STSv1; id=1"\n'
    zones = [
        _zone("dane", port, certs, f"{tlsa} {_spki_sha256(certs['dane'][0])}\n"),
        _zone("danebad", port, certs, f"{tlsa} {OTHER_DIGEST}\n"),
        _zone("danebogus", port, certs, f"{tlsa} {_spki_sha256(certs['danebogus'][0])}\n",
              broken="tamper", tamper=((_spki_sha256(certs['danebogus'][0]), TAMPERED_DIGEST),)),
        _zone("insecure", port, certs, f"{tlsa} {OTHER_DIGEST}\n", signed=False),
        _zone("plain", port, certs, signed=False),
    ] + [_zone(x, port, certs, sts_rr, signed=False) for x in ("sts", "stsbad", "ststest", "stsmx")]
    lab = DnssecLab(zones, d / "dns", port53=False)
    resolver = lab.start()
    host = PolicyHost("127.0.0.1", 0, (d / "policy.pem", d / "policy-key.pem"), {}).start()
    policy = "version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 86400\n"
    host.serve("sts.test", Answer(policy.format(mode="enforce", mx="mx.sts.test").encode()))
    host.serve("stsbad.test", Answer(policy.format(mode="enforce", mx="*.stsbad.test").encode()))
    host.serve("ststest.test", Answer(policy.format(mode="testing", mx="other.ststest.test").encode()))
    host.serve("stsmx.test", Answer(policy.format(mode="enforce", mx="other.stsmx.test").encode()))
    receivers = {}
    for label, addr in HOSTS.items():
        ctx = None
        if label != "plain":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*map(str, certs[label]))
        receivers[label] = Receiver(addr, port, f"mx.{label}.test", ctx, requiretls=label == "dane")
    yield World(resolver, port, pki, host.port, receivers)
    for rx in receivers.values():
        rx.stop()
    host.stop()
    lab.stop()


def sender(make_mta, world: World, tmp_path: Path, *, floor: str = "may", dane: bool = True, sts: bool = True,
           routes: str = ""):
    from tests.conftest import tls_settings
    (tmp_path / "access").write_text("Connect:127.0.0.1 RELAY\n")
    (tmp_path / "routes").write_text(routes)
    return make_mta({
        "server": {"hostname": "sender.test"},
        "tls": tls_settings(world.pki),
        "local": {"domains": ["localhost"]},
        "policy": {"access_map": str(tmp_path / "access")},
        "delivery": {"resolver": [world.resolver], "smtp_port": world.port, "connect_timeout": 2.0,
                     "command_timeout": 5.0, "retry_first": 3600.0, "retry_jitter": 0.0, "tls_floor": floor,
                     "route_file": str(tmp_path / "routes")},
        "dane": {"resolver": [world.resolver] if dane else []},
        "mta_sts": {"enabled": sts, "ca_file": str(world.pki.ca), "https_port": world.policy_port},
    })


def message(extra: str = "") -> bytes:
    return (f"From: <a@localhost>\r\nTo: <u@x>\r\nSubject: tls sources\r\n{extra}"
            f"Message-ID: <{time.time_ns()}@client.test>\r\n\r\nThe body.\r\n").encode()


def submit(mta, rcpts: list[str], *, body: bytes | None = None, requiretls: bool = False) -> None:
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
        s.ehlo("client.test")
        if requiretls:   # RFC 8689 §2: REQUIRETLS is given over TLS only
            s.starttls(context=ssl._create_unverified_context())
            s.ehlo("client.test")
        s.sendmail("a@localhost", rcpts, body or message(), mail_options=["REQUIRETLS"] if requiretls else [])


def wait_to_lines(mta, rcpts: list[str], timeout: float = 30) -> dict[str, str]:
    deadline = time.time() + timeout
    while True:
        log = mta.log_text()
        found = {r: next((x for x in log.splitlines() if f"to=<{r}>," in x), "") for r in rcpts}
        if all(found.values()):
            return found
        if time.time() > deadline:
            raise AssertionError(f"no to= line for {[r for r, v in found.items() if not v]}\n{log}")
        time.sleep(0.05)


def line_with(log: str, *parts: str) -> str:
    return next((x for x in log.splitlines() if all(p in x for p in parts)), "")


# ---- DANE and MTA-STS, one server, one message each -------------------------------------------
def test_dane_and_mta_sts_decide(make_mta, world, tmp_path):
    for rx in world.receivers.values():
        rx.clear()
    mta = sender(make_mta, world, tmp_path)
    rcpts = [f"u@{x}.test" for x in ("dane", "danebad", "danebogus", "insecure", "sts", "stsbad", "ststest",
                                     "stsmx")]
    submit(mta, rcpts)
    to = wait_to_lines(mta, rcpts)
    log = mta.log_text()
    rx = world.receivers

    # DANE match: delivered under TLS, the line says so
    assert "stat=Sent" in to["u@dane.test"]
    tls_line = line_with(log, "STARTTLS=client, relay=mx.dane.test, version=")
    assert tls_line.endswith("policy=dane, dane=verified"), tls_line
    assert rx["dane"].messages and all(tls for _, tls in rx["dane"].lines("MAIL"))

    # DANE mismatch: refused after the handshake, nothing sent, deferred naming the source
    assert "stat=Deferred: 454 4.7.5 TLS policy=dane, level=dane: mx.danebad.test" in to["u@danebad.test"]
    assert line_with(log, "policy=dane, relay=mx.danebad.test, reject=454 4.7.5")
    assert line_with(log, "STARTTLS=client, relay=mx.danebad.test, version=").endswith("policy=dane, dane=failed")
    assert rx["danebad"].lines("MAIL") == [] and rx["danebad"].messages == []

    # DANE bogus: deferred before any connection (never in clear)
    assert "Deferred: 454 4.7.5 TLS policy=dane, level=dane: mx.danebogus.test" in to["u@danebogus.test"]
    assert rx["danebogus"].connections == []

    # insecure zone: the (wrong) TLSA record is not trusted; opportunistic TLS, sendmail's lines
    assert "stat=Sent" in to["u@insecure.test"]
    assert line_with(log, "STARTTLS=client, relay=mx.insecure.test, version=").endswith(
        tuple(f"bits={b}/{b}" for b in (128, 256)))

    # MTA-STS enforce: delivered with a verified certificate for the MX name
    assert "stat=Sent" in to["u@sts.test"]
    assert line_with(log, "STARTTLS=client, relay=mx.sts.test, version=").endswith("policy=mta-sts, sts=enforce")
    # ... an untrusted certificate: refused, nothing sent
    assert "Deferred: 454 4.7.5 TLS policy=mta-sts, level=sts: mx.stsbad.test: certificate not verified" \
        in to["u@stsbad.test"]
    assert rx["stsbad"].lines("MAIL") == []
    # ... testing: the failure is logged and the message delivered anyway
    assert "stat=Sent" in to["u@ststest.test"]
    assert line_with(log, "policy=mta-sts, relay=mx.ststest.test, sts=testing, failure=certificate-not-trusted")
    assert line_with(log, "policy=mta-sts, relay=mx.ststest.test, sts=testing, failure=validation-failure, "
                          "reason=mx.ststest.test matches no mx of the policy (other.ststest.test)")
    # ... an MX the policy does not list: not even connected to
    assert "Deferred: 451 4.7.5 TLS policy=mta-sts, level=sts: mx.stsmx.test" in to["u@stsmx.test"]
    assert rx["stsmx"].connections == []

    # nothing that a decision forbade went out in clear
    for label in ("danebad", "danebogus", "stsbad", "stsmx"):
        assert not any(not tls for _, tls in rx[label].lines("MAIL"))

    # the queue names the source and the level
    listing = subprocess.run([sys.executable, "-m", "mailward", "queue", "-c", str(mta.config), "list"],
                             capture_output=True, text=True, timeout=30).stdout
    assert "TLS policy=dane, level=dane" in listing and "TLS policy=mta-sts, level=sts" in listing, listing

    # mailward policy test explains the same decisions, asking DNS and the policy host itself
    def explain(domain: str) -> str:
        done = subprocess.run([sys.executable, "-m", "mailward", "policy", "test", "--role", "client", "-c",
                               str(mta.config), "--domain", domain], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout
    out = explain("dane.test")
    assert f"== TLS decision for mx.dane.test [{HOSTS['dane']}] (MX RRset DNSSEC-secure)" in out
    assert "2. dane       1 usable TLSA record(s)" in out and "decision: policy=dane, level=dane" in out
    out = explain("stsmx.test")
    assert "2. dane       MX RRset of mx.stsmx.test not DNSSEC-secure" in out
    assert "decision: policy=mta-sts, level=sts" in out and "delivery: do not use this MX" in out
    assert "delivery: defer" in explain("danebogus.test")
    assert "decision: policy=floor, level=may" in explain("insecure.test")

    # TLS-RPT counted the sessions by policy type (RFC 8460 §4.3, §4.4)
    from mailward.tlsrpt.store import TlsRptStore
    store = TlsRptStore.read_only(mta.spool / "tlsrpt")
    day = store.days()[-1]
    kinds = {(domain, key.policy_type, pc.successes, tuple(sorted(f.result_type for f in pc.failures)))
             for domain, policies in store.domains(day).items() for key, pc in policies.items()}
    assert ("dane.test", "tlsa", 1, ()) in kinds
    assert ("danebad.test", "tlsa", 0, ("validation-failure",)) in kinds
    assert ("danebogus.test", "tlsa", 0, ("dnssec-invalid",)) in kinds
    assert ("sts.test", "sts", 1, ()) in kinds
    assert ("stsbad.test", "sts", 0, ("certificate-not-trusted",)) in kinds
    assert ("insecure.test", "no-policy-found", 1, ()) in kinds


# ---- REQUIRETLS and TLS-Required: No --------------------------------------------------------
def test_requiretls_and_tls_required_no(make_mta, world, tmp_path):
    for rx in world.receivers.values():
        rx.clear()
    # a smarthost named by the route file: no MX lookup to secure, its certificate must verify
    mta = sender(make_mta, world, tmp_path, routes="relayed.test esmtp:mx.dane.test\n")
    submit(mta, ["r@dane.test", "r@insecure.test", "r@sts.test"], requiretls=True)
    submit(mta, ["n@danebad.test"], body=message("TLS-Required: No\r\n"))
    submit(mta, ["s@relayed.test"], requiretls=True)
    to = wait_to_lines(mta, ["r@dane.test", "r@insecure.test", "r@sts.test", "n@danebad.test", "s@relayed.test"])
    rx = world.receivers
    # DANE-verified TLS to a server that offers REQUIRETLS: delivered, REQUIRETLS on MAIL
    assert "stat=Sent" in to["r@dane.test"], to
    mail = rx["dane"].lines("MAIL")
    assert mail and all(tls for _, tls in mail)
    # no DNSSEC-secure MX and no MTA-STS: bounced 5.7.10, nothing sent
    assert "dsn=5.7.10" in to["r@insecure.test"] and "REQUIRETLS needed" in to["r@insecure.test"]
    assert rx["insecure"].lines("MAIL") == []
    # MTA-STS verified, but the server does not offer REQUIRETLS: 5.7.30, nothing sent
    assert "dsn=5.7.30" in to["r@sts.test"], to["r@sts.test"]
    assert rx["sts"].lines("MAIL") == []
    # TLS-Required: No: DANE failure not enforced, delivered over opportunistic TLS
    assert "stat=Sent" in to["n@danebad.test"], to["n@danebad.test"]
    assert rx["danebad"].messages and all(tls for _, tls in rx["danebad"].lines("MAIL"))
    # the bounce goes back with the header section only (RFC 8689 §5): the body stays off the way back
    notice = mta.wait_mail("a", 1)[0].read_bytes()
    assert b"Status: 5.7.10" in notice and b"Status: 5.7.30" in notice
    assert b"text/rfc822-headers" in notice and b"The body." not in notice
    # the smarthost: PKIX with its name, REQUIRETLS offered → delivered
    assert "stat=Sent" in to["s@relayed.test"], to["s@relayed.test"]
    log = mta.log_text()
    assert "policy=requiretls, level=verify, requiretls=required" in log
    assert len(rx["dane"].messages) == 2
    # the next hop was told (RFC 8689 §4.2.1): REQUIRETLS on MAIL FROM
    assert all("REQUIRETLS" in line for line, _ in mail)


# ---- the floor ----------------------------------------------------------------------------
def test_floor_verify(make_mta, world, tmp_path):
    for rx in world.receivers.values():
        rx.clear()
    mta = sender(make_mta, world, tmp_path, floor="verify", dane=False, sts=False)
    rcpts = ["f@sts.test", "f@insecure.test", "f@plain.test"]
    submit(mta, rcpts)
    to = wait_to_lines(mta, rcpts)
    log = mta.log_text()
    rx = world.receivers
    assert "stat=Sent" in to["f@sts.test"]
    assert line_with(log, "STARTTLS=client, relay=mx.sts.test, version=").endswith("policy=floor, level=verify")
    assert "Deferred: 454 4.7.5 TLS policy=floor, level=verify: mx.insecure.test: certificate not verified" \
        in to["f@insecure.test"]
    assert "Deferred: 454 4.7.5 TLS policy=floor, level=verify: mx.plain.test: STARTTLS not offered" \
        in to["f@plain.test"]
    assert rx["insecure"].lines("MAIL") == [] and rx["plain"].lines("MAIL") == []
    assert line_with(log, "policy=floor, relay=mx.plain.test, reject=454 4.7.5")


def test_floor_encrypt(make_mta, world, tmp_path):
    for rx in world.receivers.values():
        rx.clear()
    mta = sender(make_mta, world, tmp_path, floor="encrypt", dane=False, sts=False)
    rcpts = ["e@insecure.test", "e@plain.test"]
    submit(mta, rcpts)
    to = wait_to_lines(mta, rcpts)
    log = mta.log_text()
    # a self-signed certificate is fine for encrypt; a server without STARTTLS is not
    assert "stat=Sent" in to["e@insecure.test"]
    assert line_with(log, "STARTTLS=client, relay=mx.insecure.test, version=").endswith("policy=floor, level=encrypt")
    assert "Deferred: 454 4.7.5 TLS policy=floor, level=encrypt: mx.plain.test: STARTTLS not offered" \
        in to["e@plain.test"]
    assert world.receivers["plain"].lines("MAIL") == []

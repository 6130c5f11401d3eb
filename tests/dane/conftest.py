"""The DANE test world: certificates from mailward's own CA, TLSA records computed from them,
a signed zone ``dane.test``, an unsigned ``plain.test`` and a bogus ``bogus.test`` served by
NSD and validated by Unbound (tests/dane/dnssec.py), and STARTTLS receivers on 127.0.2.x.

Receivers (host ``NAME.dane.test``, all on one port P; the TLSA owner is ``_P._tcp.NAME``):

=============  ======================  ===========================  =================
NAME           certificate             TLSA                         DANE verdict
=============  ======================  ===========================  =================
ee-good        CA-issued, right name   3 1 1 (leaf key)             match (EE)
ee-wrong       CA-issued, right name   3 1 1 of another key         no match
ee-sha512      CA-issued, right name   3 0 2 (leaf cert)            match (EE)
ee-self        self-signed             3 0 0 (leaf cert)            match (EE)
ee-expired     expired, wrong name     3 1 2 (leaf key)             match (EE: no date/name)
ta-good        CA-issued, right name   2 0 1 (CA cert)              match (TA)
ta-key         CA-issued, right name   2 1 1 (CA key)               match (TA)
ta-wrongname   CA-issued, wrong name   2 1 1 (CA key)               no match (name)
ta-expired     expired, right name     2 0 1 (CA cert)              no match (date)
unusable       CA-issued, right name   0 0 1 + 1 1 1                no usable records
ta-self        self-signed             2 0 1 (the leaf itself)      no match (TA is not the leaf)
=============  ======================  ===========================  =================
"""

from __future__ import annotations

import datetime as dt
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailward import dane
from mailward.ca import authority
from tests.dane.dnssec import DnssecLab, Zone, free_port, missing_tools
from tests.dane.starttls import StartTLSServer

BASE = "127.0.2."


@dataclass(frozen=True)
class Host:
    name: str            # first label: NAME.dane.test
    addr: str
    cert: str            # which certificate: good, wrongname, expired, expiredright, self
    tlsa: tuple[str, ...]
    verdict: bool        # the DANE verdict the table above gives

    @property
    def fqdn(self) -> str:
        return f"{self.name}.dane.test"


@dataclass
class World:
    lab: DnssecLab
    resolver: str        # "127.0.0.1:PORT" of the validating Unbound
    port: int            # the receivers' port (and the TLSA owner's _PORT)
    hosts: dict[str, Host]
    chains: dict[str, list[bytes]]     # certificate kind → chain DER (leaf first)
    certs: Path


def _der(path: Path) -> list[bytes]:
    return [c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(path.read_bytes())]


def _make_certs(d: Path) -> dict[str, Path]:
    """certificate kind → PEM file with the chain (leaf, then the CA for CA-issued ones)."""
    authority.init_ca(d / "ca", "DANE Test CA")
    ca_pem = (d / "ca" / "ca.pem").read_bytes()
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    out = {}
    for kind, cn, kwargs in (("good", "*.dane.test", {}), ("wrongname", "mx.elsewhere.example", {}),
                             ("expired", "mx.elsewhere.example", {"days": 2, "valid_from": long_ago}),
                             ("expiredright", "*.dane.test", {"days": 2, "valid_from": long_ago}),
                             ("other", "other.dane.test", {})):
        leaf, key = d / f"{kind}-leaf.pem", d / f"{kind}-key.pem"
        authority.issue(d / "ca", cn, [cn], leaf, key, **kwargs)
        (d / f"{kind}.pem").write_bytes(leaf.read_bytes() + ca_pem)
        out[kind] = d / f"{kind}.pem"
    authority.self_signed("ee-self.dane.test", d / "self.pem", d / "self-key.pem", ["ee-self.dane.test"],
                          usage="server")
    out["self"] = d / "self.pem"
    return out


def _tlsa(chains: dict[str, list[bytes]], spec: str) -> str:
    """'3 1 1 good' → the TLSA record of the good leaf; 'ca' names the CA certificate."""
    usage, selector, mtype, kind = spec.split()
    der = chains["good"][1] if kind == "ca" else chains[kind][0]
    return str(dane.tlsa_for(der, int(usage), int(selector), int(mtype)))


HOSTS = (
    Host("ee-good", BASE + "1", "good", ("3 1 1 good",), True),
    Host("ee-wrong", BASE + "2", "good", ("3 1 1 other",), False),
    Host("ee-sha512", BASE + "3", "good", ("3 0 2 good",), True),
    Host("ee-self", BASE + "4", "self", ("3 0 0 self",), True),
    Host("ee-expired", BASE + "5", "expired", ("3 1 2 expired",), True),
    Host("ta-good", BASE + "6", "good", ("2 0 1 ca",), True),
    Host("ta-key", BASE + "7", "good", ("2 1 1 ca",), True),
    Host("ta-wrongname", BASE + "8", "wrongname", ("2 1 1 ca",), False),
    Host("ta-expired", BASE + "9", "expiredright", ("2 0 1 ca",), False),
    Host("unusable", BASE + "10", "good", ("0 0 1 ca", "1 1 1 good"), False),
    Host("ta-self", BASE + "11", "self", ("2 0 1 self",), False),
)


def _common_port(addrs: list[str]) -> int:
    for _ in range(100):
        port = free_port()
        try:
            for a in addrs:
                with socket.socket() as s:
                    s.bind((a, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on all 127.0.2.x addresses")


def zones(port: int, chains: dict[str, list[bytes]]) -> list[Zone]:
    lines = []
    for h in HOSTS:
        lines.append(f"{h.name} A {h.addr}")
        lines += [f"_{port}._tcp.{h.name} TLSA {_tlsa(chains, t)}" for t in h.tlsa]
    good = _tlsa(chains, "3 1 1 good")
    lines += [
        "@ MX 10 ee-good",                         # the domain's MX: a signed RRset
        "notlsa A 127.0.2.20",                     # secure, no TLSA: "none"
        "nomx.sub A 127.0.2.21",                   # no MX: implicit MX, secure
        "alias CNAME ee-good",                     # TLSA at the expanded name
        "alias2 CNAME notlsa",                     # nothing at the expanded name: the original
        f"_{port}._tcp.alias2 TLSA {good}",
        "outside CNAME mx.plain.test.",            # expansion leaves the signed zone
        "badtlsa A 127.0.2.22",                    # the TLSA RRset's signature is broken
        f"_{port}._tcp.badtlsa TLSA 3 1 1 {'c0ffee' * 10}c0ffee00",
        "unsig MX 10 mx.plain.test.",              # a signed MX naming an unsigned host
        "badaaaa A 127.0.2.23",                    # A fine, the AAAA RRset's signature broken
        "badaaaa AAAA 2001:db8::dead:beef",
    ]
    signed = Zone("dane.test", "\n".join(lines) + "\n", broken="tamper",
                  tamper=(("c0ffee" * 10 + "c0ffee00", "badbad" * 10 + "badbad00"),
                          ("2001:db8::dead:beef", "2001:db8::bad:beef")))
    plain = Zone("plain.test", f"@ MX 10 mx\nmx A 127.0.2.30\n_{port}._tcp.mx TLSA {good}\n", signed=False)
    bogus = Zone("bogus.test", f"@ MX 10 mx\nmx A 127.0.2.40\n_{port}._tcp.mx TLSA {good}\n", broken="expired")
    return [signed, plain, bogus]


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    missing = missing_tools()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/install-test-deps)")
    d = tmp_path_factory.mktemp("dane")
    files = _make_certs(d / "certs")
    chains = {kind: _der(path) for kind, path in files.items()}
    port = _common_port([h.addr for h in HOSTS])
    lab = DnssecLab(zones(port, chains), d / "dns")
    resolver = lab.start()
    servers = []
    try:
        for h in HOSTS:
            key = files[h.cert].with_name(files[h.cert].name.replace(".pem", "-key.pem"))
            servers.append(StartTLSServer(h.addr, port, h.fqdn, files[h.cert], key).start())
        yield World(lab, resolver, port, {h.name: h for h in HOSTS}, chains, d / "certs")
    finally:
        for s in servers:
            s.stop()
        lab.stop()

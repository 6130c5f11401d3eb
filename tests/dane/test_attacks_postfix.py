"""The attack chains of test_attacks.py served by real STARTTLS receivers, judged by mailward
and by Postfix's ``posttls-finger -l dane`` (OpenSSL's DANE code) from the same TLSA records
in the same validating Unbound: both must give the verdict the table says.

Each receiver is ``NAME.pf.test`` on 127.0.4.x (one port P for all; TLSA at ``_P._tcp.NAME``);
``wide.test`` is a zone of its own whose apex is a receiver (a ``*.test`` certificate).
posttls-finger runs as in test_posttls_finger.py (root, ``unshare -m``, a bind-mounted
resolv.conf naming the lab's Unbound on 127.53.x.y:53); skipped otherwise.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization

from mailward import dane
from mailward.dns import SecureResolver
from tests.dane import certs
from tests.dane.conftest import _common_port
from tests.dane.dnssec import DnssecLab, Zone, missing_tools
from tests.dane.starttls import StartTLSServer, peer_chain

pytestmark = pytest.mark.peer

POSTTLS_FINGER = shutil.which("posttls-finger") or "/usr/sbin/posttls-finger"

ROOT = certs.make("PF Root", ca=True)
INTER = certs.make("PF Intermediate", issuer=ROOT, ca=True)


@dataclass(frozen=True)
class Case:
    name: str
    chain: tuple[certs.Cert, ...]       # leaf first, as the receiver sends it
    tlsa: tuple[str, ...]
    verdict: bool | None                # None: whatever Postfix says, mailward must agree

    @property
    def fqdn(self) -> str:
        return self.name if self.name.endswith(".test") else f"{self.name}.pf.test"


def _leaf(name: str, issuer=INTER, **kw) -> certs.Cert:
    fqdn = name if name.endswith(".test") else f"{name}.pf.test"
    return certs.make(fqdn, issuer=issuer, sans=kw.pop("sans", [fqdn]), **kw)


def _cases() -> list[Case]:
    def ta(c, s=0, m=1):
        return str(dane.tlsa_for(c.der, 2, s, m))

    def ee(c, s=1, m=1):
        return str(dane.tlsa_for(c.der, 3, s, m))

    out = []
    good = _leaf("good")
    out.append(Case("good", (good, INTER, ROOT), (ta(ROOT),), True))
    out.append(Case("reordered", (_leaf("reordered"), ROOT, INTER), (ta(ROOT),), True))
    absent = _leaf("absent0")
    out.append(Case("absent0", (absent, INTER), (ta(ROOT, 0, 0),), True))
    out.append(Case("absent1", (_leaf("absent1"), INTER), (ta(ROOT, 1, 0),), True))
    out.append(Case("absentdigest", (_leaf("absentdigest"), INTER), (ta(ROOT, 0, 1),), False))
    for name, kw in (("noksign", {"key_cert_sign": False}), ("ncother", {"permitted": ("other.example",)}),
                     ("ncexcluded", {"excluded": ("pf.test",)}), ("critical", {"unknown_critical": True})):
        bent = certs.make(f"PF Bent {name}", issuer=ROOT, ca=True, **kw)
        out.append(Case(name, (_leaf(name, issuer=bent), bent, ROOT), (ta(ROOT),), False))
    zero = certs.make("PF Pathlen 0", issuer=ROOT, ca=True, path_len=0)
    lower = certs.make("PF Lower", issuer=zero, ca=True)
    out.append(Case("pathlen", (_leaf("pathlen", issuer=lower), lower, zero, ROOT), (ta(ROOT),), False))
    past = certs.NOW - dt.timedelta(days=60)
    old = certs.make("PF Old", issuer=ROOT, ca=True, not_before=past, not_after=past + dt.timedelta(days=1))
    out.append(Case("oldinter", (_leaf("oldinter", issuer=old), old, ROOT), (ta(ROOT),), False))
    out.append(Case("caleaf", (_leaf("caleaf", ca=True, digital_signature=True), INTER, ROOT), (ta(ROOT),), True))
    out.append(Case("caleafnods", (_leaf("caleafnods", ca=True), INTER, ROOT), (ta(ROOT),), False))
    for name, kw, verdict in (("kusign", {"leaf_usage": ("digital_signature",)}, True),
                              ("kuenc", {"leaf_usage": ("key_encipherment",)}, True),
                              ("kucrl", {"leaf_usage": ("crl_sign",)}, False),
                              ("ekuserver", {"eku": ("serverAuth", "clientAuth")}, True),
                              ("ekuclient", {"eku": ("clientAuth",)}, False),
                              ("ekuany", {"eku": ("any",)}, None)):
        leaf = _leaf(name, **kw)
        out.append(Case(name, (leaf, INTER, ROOT), (ta(ROOT),), verdict))
        out.append(Case(name + "-ee", (leaf, INTER, ROOT), (ee(leaf),), True))   # DANE-EE: no checks
    for name, eku, verdict in (("caclient", ("clientAuth",), False), ("caserver", ("serverAuth",), True),
                               ("caany", ("any",), None)):
        bent = certs.make(f"PF EKU {name}", issuer=ROOT, ca=True, eku=eku)
        out.append(Case(name, (_leaf(name, issuer=bent), bent, ROOT), (ta(ROOT),), verdict))
    out.append(Case("wildcard", (_leaf("wildcard", sans=["*.pf.test"]), INTER, ROOT), (ta(ROOT),), True))
    out.append(Case("wide.test", (_leaf("wide.test", sans=["*.test"]), INTER, ROOT), (ta(ROOT),), False))
    out.append(Case("cnonly", (_leaf("cnonly", sans=[], ip_sans=("192.0.2.1",)), INTER, ROOT), (ta(ROOT),), True))
    agile = _leaf("agile")
    other = _leaf("agile")
    out.append(Case("agile", (agile, INTER, ROOT), (ee(agile, 1, 1), ee(other, 1, 2)), False))
    out.append(Case("agile512", (agile, INTER, ROOT), (ee(other, 1, 1), ee(agile, 1, 2)), True))
    return out


CASES = _cases()


def _pem(chain) -> bytes:
    return b"".join(c.cert.public_bytes(serialization.Encoding.PEM) for c in chain)


@pytest.fixture(scope="module")
def pf(tmp_path_factory):
    if missing_tools():
        pytest.skip(f"not installed: {', '.join(missing_tools())}")
    if not os.path.exists(POSTTLS_FINGER):
        pytest.skip("posttls-finger (Postfix) is not installed")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("posttls-finger needs root (unshare -m, a bind mount over /etc/resolv.conf, port 53)")
    d = tmp_path_factory.mktemp("pf")
    addrs = {c.name: f"127.0.4.{i + 1}" for i, c in enumerate(CASES)}
    port = _common_port(list(addrs.values()))
    lines, wide = [], ""
    for c in CASES:
        tlsa = "".join(f"_{port}._tcp{'' if c.name == 'wide.test' else '.' + c.name} TLSA {t}\n" for t in c.tlsa)
        if c.name == "wide.test":
            wide = f"@ A {addrs[c.name]}\n{tlsa}"
        else:
            lines.append(f"{c.name} A {addrs[c.name]}\n{tlsa}")
    lab = DnssecLab([Zone("pf.test", "".join(lines)), Zone("wide.test", wide)], d / "dns")
    lab.start()
    servers = []
    try:
        if not lab.port53:
            pytest.skip("no 127.53.x.y address with port 53 free for the test resolver")
        for c in CASES:
            (d / f"{c.name}.pem").write_bytes(_pem(c.chain))
            (d / f"{c.name}-key.pem").write_bytes(c.chain[0].key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            servers.append(StartTLSServer(addrs[c.name], port, c.fqdn, d / f"{c.name}.pem",
                                          d / f"{c.name}-key.pem").start())
        (d / "main.cf").write_text("compatibility_level = 3.6\n")
        (d / "resolv.conf").write_text(f"nameserver {lab.port53}\noptions trust-ad edns0\n")
        yield lab, port, addrs, d
    finally:
        for s in servers:
            s.stop()
        lab.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_same_verdict_as_postfix(pf, case):
    lab, port, addrs, d = pf
    script = (f"mount --bind {d / 'resolv.conf'} /etc/resolv.conf && exec {POSTTLS_FINGER} "
              f"-t30 -T180 -c -l dane -P /etc/ssl/certs '[{case.fqdn}]:{port}'")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MAIL_CONFIG": str(d)})
    output = proc.stdout + proc.stderr
    assert "TLS connection established" in output, output
    postfix = "Verified TLS connection established" in output
    resolver = SecureResolver([f"127.0.0.1:{lab.port}"], timeout=5)
    lookup = asyncio.run(dane.tlsa_lookup(resolver, case.fqdn, port))
    assert lookup.state == "secure", lookup
    ours = dane.match_chain(lookup.usable, peer_chain(addrs[case.name], port), [case.fqdn])
    want = postfix if case.verdict is None else case.verdict
    assert (ours.ok, postfix) == (want, want), f"mailward: {ours.reason}\nposttls-finger:\n{output}"

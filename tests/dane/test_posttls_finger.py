"""Cross-check with Postfix: for every receiver of tests/dane/conftest.py, mailward's
match_chain verdict equals posttls-finger's (``-l dane``: "Verified TLS connection" or not),
both reading the same TLSA records from the same validating Unbound.

posttls-finger resolves through libc, which reads /etc/resolv.conf and reaches name servers on
port 53 only. Each run is therefore made in a private mount namespace (``unshare -m``) in which
a resolv.conf naming the lab's Unbound on 127.53.x.y:53 (``options trust-ad``: glibc passes the
AD bit on only then) is bind-mounted over /etc/resolv.conf; the real file is never touched.
This needs root (port 53, mount namespaces): otherwise the test is skipped and says why.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mailward import dane
from mailward.dns import SecureResolver
from tests.dane.conftest import HOSTS
from tests.dane.starttls import peer_chain

pytestmark = pytest.mark.peer

POSTTLS_FINGER = shutil.which("posttls-finger") or "/usr/sbin/posttls-finger"


@pytest.fixture(scope="module")
def finger(world, tmp_path_factory):
    if not Path(POSTTLS_FINGER).exists():
        pytest.skip("posttls-finger (Postfix) is not installed")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("posttls-finger needs a resolv.conf naming the test resolver: that takes root "
                    "(unshare -m and a bind mount over /etc/resolv.conf, a resolver on port 53)")
    if not world.lab.port53:
        pytest.skip("no 127.53.x.y address with port 53 free for the test resolver")
    d = tmp_path_factory.mktemp("posttls-finger")
    (d / "main.cf").write_text("compatibility_level = 3.6\n")
    (d / "resolv.conf").write_text(f"nameserver {world.lab.port53}\noptions trust-ad edns0\n")

    def run(host: str) -> str:
        script = (f"mount --bind {d / 'resolv.conf'} /etc/resolv.conf && exec {POSTTLS_FINGER} "
                  f"-t30 -T180 -c -l dane -P /etc/ssl/certs '[{host}]:{world.port}'")
        proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "MAIL_CONFIG": str(d)})
        return proc.stdout + proc.stderr

    return run


@pytest.mark.parametrize("host", HOSTS, ids=[h.name for h in HOSTS])
def test_same_verdict_as_posttls_finger(world, finger, host):
    output = finger(host.fqdn)
    assert "TLS connection established" in output, output
    postfix = "Verified TLS connection established" in output
    resolver = SecureResolver([world.resolver], timeout=5)
    lookup = asyncio.run(dane.tlsa_lookup(resolver, host.fqdn, world.port))
    ours = dane.match_chain(lookup.usable, peer_chain(host.addr, world.port), [host.fqdn])
    assert ours.ok is postfix, f"mailward: {ours.reason}\nposttls-finger:\n{output}"
    assert ours.ok is host.verdict


def test_bogus_tlsa_is_a_lookup_error_for_both(world, finger):
    output = finger("badtlsa.dane.test")
    assert "TLSA lookup error" in output, output
    resolver = SecureResolver([world.resolver], timeout=5)
    assert asyncio.run(dane.tlsa_lookup(resolver, "badtlsa.dane.test", world.port)).state == "bogus"

"""Fixtures for the MTA-STS tests: a real NSD on loopback serving the ``sts.test`` zone below
(the ``_mta-sts`` TXT records and the ``mta-sts.<domain>`` addresses), certificates from
mailward's own CA, and a real HTTPS policy host (policyhost.py) on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from policyhost import PolicyHost

ZONE_HEAD = """$ORIGIN sts.test.
$TTL 2
@            IN SOA ns.sts.test. hostmaster.sts.test. 1 3600 600 86400 2
@            IN NS  ns.sts.test.
ns           IN A   127.0.0.1
"""

# domain label → the _mta-sts TXT strings of that domain (several: several records)
RECORDS: dict[str, list[str]] = {
    "enforce": ["v=STSv1; id=enf20260101"],
    "testing": ["v=STSv1; id=tst1;"],
    "none": ["v=STSv1;id=none1"],
    "changed": ["v=STSv1; id=new2"],
    "same": ["v=STSv1; id=same1"],
    "restart": ["v=STSv1; id=rst1"],
    "refresh": ["v=STSv1; id=ref1"],
    "wrongname": ["v=STSv1; id=w1"],
    "untrusted": ["v=STSv1; id=u1"],
    "notfound": ["v=STSv1; id=n1"],
    "redirect": ["v=STSv1; id=r1"],
    "ctype": ["v=STSv1; id=c1"],
    "big": ["v=STSv1; id=b1"],
    "bigstream": ["v=STSv1; id=b2"],
    "slow": ["v=STSv1; id=s1"],
    "malformed": ["v=STSv1; id=m1"],
    "noaddr": ["v=STSv1; id=a1"],
    "cached": ["v=STSv1; id=k1"],
    "twotxt": ["v=STSv1; id=t1", "v=STSv1; id=t2"],
    "badtxt": ["v=STSv1; id=bad id"],
    "othertxt": ["v=spf1 -all", "v=STSv1; id=o1; ext=x"],
    "notxt": [],
    "cmd": ["v=STSv1; id=cmd1"],
}


def zone_text() -> str:
    lines = [ZONE_HEAD]
    for label, txts in RECORDS.items():
        for txt in txts:
            lines.append(f'_mta-sts.{label} IN TXT "{txt}"\n')
        if label != "noaddr":
            lines.append(f"mta-sts.{label} IN A 127.0.0.1\n")
        lines.append(f"{label} IN MX 10 mx1.{label}.sts.test.\n")
    return "".join(lines)


NSD_CONF = """server:
    ip-address: 127.0.0.1@{port}
    port: {port}
    username: ""
    chroot: ""
    zonesdir: "{dir}"
    database: ""
    pidfile: "{dir}/nsd.pid"
    xfrdfile: "{dir}/xfrd.state"
    zonelistfile: "{dir}/zone.list"
    xfrdir: "{dir}"
    logfile: "{dir}/nsd.log"
    server-count: 1
    hide-version: yes
remote-control:
    control-enable: no
zone:
    name: "sts.test"
    zonefile: "sts.zone"
"""


def free_udp_tcp_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` (NSD listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            with socket.socket() as t:
                try:
                    t.bind((host, port))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no free port")


@pytest.fixture(scope="session")
def sts_dns(tmp_path_factory) -> str:
    """NSD serving sts.test on 127.0.0.1:PORT; yields "127.0.0.1:PORT"."""
    nsd = shutil.which("nsd") or ("/usr/sbin/nsd" if Path("/usr/sbin/nsd").exists() else None)
    if not nsd:
        pytest.skip("nsd is not installed (scripts/install-test-deps installs it)")
    d = tmp_path_factory.mktemp("sts-nsd")
    port = free_udp_tcp_port()
    (d / "sts.zone").write_text(zone_text())
    (d / "nsd.conf").write_text(NSD_CONF.format(port=port, dir=d))
    proc = subprocess.Popen([nsd, "-d", "-c", str(d / "nsd.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    import dns.message
    import dns.query
    deadline = time.time() + 10
    while True:
        try:
            answer = dns.query.udp(dns.message.make_query("ns.sts.test", "A"), "127.0.0.1", timeout=0.2, port=port)
            if answer.answer:
                break
        except Exception:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            log = (d / "nsd.log").read_text() if (d / "nsd.log").exists() else ""
            raise RuntimeError(f"nsd did not start: {log}")
        time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class StsPKI:
    ca: Path            # the CA the tests trust (mta_sts.ca_file)
    other_ca: Path      # a CA nobody trusts
    dir: Path


def _names() -> list[str]:
    return [f"mta-sts.{label}.sts.test" for label in RECORDS if label not in ("wrongname", "untrusted")]


@pytest.fixture(scope="session")
def sts_pki(tmp_path_factory) -> StsPKI:
    """Certificates from mailward's own CA: one for every good policy host, one for the wrong
    name, one from a CA the tests do not trust."""
    from mailward.ca import authority

    d = tmp_path_factory.mktemp("sts-pki")
    authority.init_ca(d / "ca", "STS Test CA", subject="/C=XX/O=Mailward MTA-STS Test")
    authority.init_ca(d / "other", "Untrusted CA", subject="/C=XX/O=Untrusted")
    names = _names()
    authority.issue(d / "ca", names[0], names, d / "good.pem", d / "good-key.pem", usage="server")
    authority.issue(d / "ca", "mta-sts.elsewhere.test", ["mta-sts.elsewhere.test"], d / "wrong.pem",
                    d / "wrong-key.pem", usage="server")
    authority.issue(d / "other", "mta-sts.untrusted.sts.test", ["mta-sts.untrusted.sts.test"],
                    d / "untrusted.pem", d / "untrusted-key.pem", usage="server")
    return StsPKI(d / "ca" / "ca.pem", d / "other" / "ca.pem", d)


def start_policy_host(pki: StsPKI, port: int = 0) -> PolicyHost:
    d = pki.dir
    return PolicyHost("127.0.0.1", port, (d / "good.pem", d / "good-key.pem"), {
        "mta-sts.wrongname.sts.test": (d / "wrong.pem", d / "wrong-key.pem"),
        "mta-sts.untrusted.sts.test": (d / "untrusted.pem", d / "untrusted-key.pem"),
    }).start()


@pytest.fixture(scope="session")
def policy_host(sts_pki) -> PolicyHost:
    host = start_policy_host(sts_pki)
    yield host
    host.stop()

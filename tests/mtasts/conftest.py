"""Fixtures for the MTA-STS tests: a real NSD on loopback serving the ``sts.test`` zone below
(the ``_mta-sts`` TXT records and the ``mta-sts.<domain>`` addresses), certificates from
mailward's own CA, and a real HTTPS policy host (policyhost.py) on 127.0.0.1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from policyhost import PolicyHost
from tests.nsd import nsd_serving

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


@pytest.fixture(scope="session")
def sts_dns(tmp_path_factory) -> str:
    """NSD serving sts.test on 127.0.0.1:PORT; yields "127.0.0.1:PORT"."""
    with nsd_serving(tmp_path_factory.mktemp("sts-nsd"), {"sts.test": zone_text()}, probe="ns.sts.test") as port:
        yield f"127.0.0.1:{port}"


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

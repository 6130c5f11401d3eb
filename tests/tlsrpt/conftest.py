"""Fixtures for the TLS-RPT tests: a real NSD on loopback serving the ``rpt.test`` zone (the
``_smtp._tls`` TXT records of the report domains, the collector's and the MX host's
addresses), certificates from mailward's own CA, a real HTTPS collector and a real SMTP
receiver (rpt_servers.py)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from rpt_servers import Collector, SMTPReceiver
from tests.nsd import nsd_serving

MX_ADDR = "127.0.0.91"        # mx.rua.rpt.test: where mailto: reports are delivered

# label → the _smtp._tls TXT strings of <label>.rpt.test ({https} is the collector's host:port)
RECORDS: dict[str, list[str]] = {
    "both": ["v=TLSRPTv1; rua=mailto:tlsrpt@rua.rpt.test,https://{https}/v1/both"],
    "mailonly": ["v=TLSRPTv1;rua=mailto:tls-reports%2Bmail@rua.rpt.test;"],
    "httpsonly": ["v=TLSRPTv1; rua=https://{https}/v1/httpsonly"],
    "flaky": ["v=TLSRPTv1; rua=https://{https}/v1/flaky"],
    "untrusted": ["v=TLSRPTv1; rua=https://{untrusted}/v1/untrusted"],
    "tworecords": ["v=TLSRPTv1; rua=mailto:a@rua.rpt.test", "v=TLSRPTv1; rua=mailto:b@rua.rpt.test"],
    "badrecord": ["v=TLSRPTv1; rua=mailto:not an address"],
    "norecord": [],
    "periodic": ["v=TLSRPTv1; rua=https://{https}/v1/periodic"],
    "slow": ["v=TLSRPTv1; rua=https://{https}/v1/slow"],
}

ZONE_HEAD = """$ORIGIN rpt.test.
$TTL 2
@            IN SOA ns.rpt.test. hostmaster.rpt.test. 1 3600 600 86400 2
@            IN NS  ns.rpt.test.
ns           IN A   127.0.0.1
reports      IN A   127.0.0.1
untrusted    IN A   127.0.0.1
rua          IN MX  10 mx.rua.rpt.test.
mx.rua       IN A   {mx}
"""

def free_tcp_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class World:
    """Everything the end-to-end tests talk to."""
    dns: str               # "127.0.0.1:PORT" (delivery.resolver)
    https_port: int
    collector: Collector
    receiver: SMTPReceiver
    mx_port: int           # delivery.smtp_port
    ca: Path               # tls_rpt.ca_file: the CA of the collector's certificate


def zone_text(https: str, untrusted: str) -> str:
    lines = [ZONE_HEAD.format(mx=MX_ADDR)]
    for label, txts in RECORDS.items():
        for txt in txts:
            txt = txt.format(https=https, untrusted=untrusted)
            lines.append(f'_smtp._tls.{label} IN TXT "{txt}"\n')
    return "".join(lines)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    from mailward.ca import authority

    d = tmp_path_factory.mktemp("tlsrpt-world")
    authority.init_ca(d / "ca", "TLS-RPT Test CA", subject="/C=XX/O=Mailward TLS-RPT Test")
    # the collector's certificate names reports.rpt.test only: untrusted.rpt.test (same address)
    # gets a certificate that does not match its name
    authority.issue(d / "ca", "reports.rpt.test", ["reports.rpt.test"], d / "collector.pem",
                    d / "collector-key.pem", usage="server")
    https_port = free_tcp_port("127.0.0.1")
    collector = Collector("127.0.0.1", https_port, d / "collector.pem", d / "collector-key.pem").start()
    mx_port = free_tcp_port(MX_ADDR)
    receiver = SMTPReceiver(MX_ADDR, mx_port).start()
    zone = zone_text(f"reports.rpt.test:{https_port}", f"untrusted.rpt.test:{https_port}")
    # broken.rpt.test: a secondary zone never transferred, so NSD answers SERVFAIL (a temporary failure)
    with nsd_serving(d, {"rpt.test": zone}, probe="ns.rpt.test", unserved=("broken.rpt.test",)) as dns_port:
        yield World(f"127.0.0.1:{dns_port}", https_port, collector, receiver, mx_port, d / "ca" / "ca.pem")
    collector.stop()
    receiver.stop()

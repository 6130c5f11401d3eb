"""A real NSD on loopback for the tests: one place that writes its config, starts it in the
foreground on a free port, waits until it answers, and stops it.

    with nsd_serving(folder, {"sts.test": zone_text}, probe="ns.sts.test") as port:
        ...   # resolver "127.0.0.1:PORT"

``unserved`` names secondary zones that are never transferred: NSD answers SERVFAIL for
them (a temporary DNS failure, as a broken authoritative server gives)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

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


def nsd_binary() -> str:
    nsd = shutil.which("nsd") or ("/usr/sbin/nsd" if Path("/usr/sbin/nsd").exists() else None)
    if not nsd:
        pytest.skip("nsd is not installed (scripts/install-test-deps installs it)")
    return nsd


@contextlib.contextmanager
def nsd_serving(folder: Path, zones: dict[str, str], *, probe: str, unserved: tuple[str, ...] = ()):
    """NSD serving ``zones`` (origin → zone file text) on 127.0.0.1; yields the port once
    ``probe`` (an A record) is answered."""
    nsd = nsd_binary()
    port = free_udp_tcp_port()
    conf = NSD_CONF.format(port=port, dir=folder)
    for origin, text in zones.items():
        (folder / f"{origin}.zone").write_text(text)
        conf += f'zone:\n    name: "{origin}"\n    zonefile: "{origin}.zone"\n'
    for origin in unserved:
        conf += f'zone:\n    name: "{origin}"\n    request-xfr: 127.0.0.1@9 NOKEY\n    allow-notify: 127.0.0.1 NOKEY\n'
    (folder / "nsd.conf").write_text(conf)
    proc = subprocess.Popen([nsd, "-d", "-c", str(folder / "nsd.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    import dns.message
    import dns.query
    deadline = time.time() + 10
    while True:
        try:
            answer = dns.query.udp(dns.message.make_query(probe, "A"), "127.0.0.1", timeout=0.2, port=port)
            if answer.answer:
                break
        except Exception:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            log = (folder / "nsd.log").read_text() if (folder / "nsd.log").exists() else ""
            raise RuntimeError(f"nsd did not start: {log}")
        time.sleep(0.05)
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

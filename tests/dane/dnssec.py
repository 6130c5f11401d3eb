"""A real DNSSEC setup on loopback for the DANE tests: signed zones served by NSD, validated
by Unbound (Debian's packages; scripts/install-test-deps installs them).

Use::

    from tests.dane.dnssec import DnssecLab, Zone

    lab = DnssecLab([Zone("dane.test", "mx A 127.0.2.1\\n_25._tcp.mx TLSA 3 1 1 ab..\\n"),
                     Zone("plain.test", "mx A 127.0.2.50\\n", signed=False),
                     Zone("bogus.test", "mx A 127.0.2.60\\n", broken="expired")], tmp_path)
    resolver = lab.start()          # "127.0.0.1:PORT" of the validating Unbound
    ...                             # SecureResolver([resolver]) / dane.resolver = [resolver]
    lab.stop()                      # or: with DnssecLab(...) as lab: ...

What it does: for each zone, ``records`` (zone-file lines relative to the zone's origin; an
SOA and an NS record are added) is written to a zone file. A signed zone gets a KSK and a ZSK
(``ldns-keygen -a ECDSAP256SHA256``) and is signed with ``ldns-signzone`` (NSEC, signatures valid
from an hour ago for 30 days). ``broken`` makes a zone bogus on purpose:

* ``"expired"``: the whole zone is signed with signatures that expired in 2020;
* ``"tamper"``: the zone is signed correctly, then each (old, new) pair of ``tamper`` is
  replaced in the signed file (change an RR's data: its RRSIG no longer verifies, so only that
  RRset is bogus).

NSD serves every zone on 127.0.0.1:NSD_PORT (``stub_port``: Unbound asks that port instead,
where a test puts a proxy in front of NSD). Unbound (``-d``, foreground, config and logs in
the work folder) listens on 127.0.0.1:PORT, sends the test zones to NSD (``stub-zone``), trusts
each signed zone's KSK (``trust-anchor``) and treats the unsigned ones as insecure
(``domain-insecure``); ``local-zone: "test." nodefault`` lifts Unbound's built-in NXDOMAIN for
the reserved ``test.`` names (RFC 6761 §6.2). Unbound answers SERVFAIL for a bogus RRset and sets the AD bit for a
validated one. When running as root, Unbound also listens on port 53 of a free 127.53.x.y
address (``port53``): libc resolvers (posttls-finger) can only reach a name server on port 53,
through a resolv.conf that names it.

Failure: :meth:`DnssecLab.start` raises :class:`RuntimeError` with the tool's output when a tool
is missing or a server does not come up within ``startup_timeout`` seconds.
"""

from __future__ import annotations

import datetime
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode

from tests.nsd import free_udp_tcp_port as free_port   # also used by the DANE tests and proxy

TOOLS = ("nsd", "unbound", "ldns-keygen", "ldns-signzone")


def missing_tools() -> list[str]:
    """The tools this lab needs that are not installed (tests skip on a non-empty list)."""
    return [t for t in TOOLS if not (shutil.which(t) or Path("/usr/sbin", t).exists())]


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@dataclass(frozen=True)
class Zone:
    origin: str                     # "dane.test"
    records: str                    # zone-file lines, names relative to origin or absolute
    signed: bool = True
    broken: str = ""                # "", "expired" or "tamper" (see the module docstring)
    tamper: tuple[tuple[str, str], ...] = ()


def _free_port53_address() -> str | None:
    """A 127.53.x.y address whose port 53 is free (root only), for libc resolvers."""
    import random

    rng = random.Random()
    for _ in range(50):
        addr = f"127.53.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
                u.bind((addr, 53))
                t.bind((addr, 53))
            return addr
        except OSError:
            continue
    return None


def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


def _stamp(when: datetime.datetime) -> str:
    return when.strftime("%Y%m%d%H%M%S")


class DnssecLab:
    """NSD + Unbound with the given zones in ``workdir`` (see the module docstring)."""

    def __init__(self, zones: list[Zone], workdir: Path, *, startup_timeout: float = 10.0,
                 port53: bool = True, stub_port: int = 0):
        self.stub_port = stub_port        # Unbound asks this port instead of NSD's (a proxy in between)
        self.zones = list(zones)
        self.dir = Path(workdir)
        self.startup_timeout = startup_timeout
        self.want_port53 = port53
        self.port = 0                     # Unbound's port on 127.0.0.1
        self.nsd_port = 0
        self.port53: str | None = None    # "127.53.x.y" when Unbound also listens on port 53
        self.trust_anchors: dict[str, str] = {}   # zone → its KSK's DNSKEY record
        self._procs: list[subprocess.Popen] = []

    # ---- building the zones ---------------------------------------------------------------
    def _zone_text(self, zone: Zone) -> str:
        origin = zone.origin.rstrip(".") + "."
        return (f"$ORIGIN {origin}\n$TTL 30\n"
                f"@ IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 30\n"
                f"@ IN NS ns.{origin}\nns IN A 127.0.0.1\n{zone.records}\n")

    def _sign(self, zone: Zone, path: Path) -> Path:
        origin = zone.origin.rstrip(".")
        keys = self.dir / f"keys-{origin}"
        keys.mkdir()
        ksk = _run([_tool("ldns-keygen"), "-a", "ECDSAP256SHA256", "-k", origin], keys)
        zsk = _run([_tool("ldns-keygen"), "-a", "ECDSAP256SHA256", origin], keys)
        now = datetime.datetime.now(datetime.timezone.utc)
        if zone.broken == "expired":
            inception, expiration = datetime.datetime(2019, 1, 1), datetime.datetime(2020, 1, 1)
        else:
            inception, expiration = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=30)
        signed = path.with_suffix(".signed")
        _run([_tool("ldns-signzone"), "-i", _stamp(inception), "-e", _stamp(expiration), "-o", origin + ".",
              "-f", str(signed), str(path), str(keys / zsk), str(keys / ksk)], keys)
        self.trust_anchors[origin] = (keys / f"{ksk}.key").read_text().strip()
        if zone.broken == "tamper":
            text = signed.read_text()
            for old, new in zone.tamper:
                if old not in text:
                    raise RuntimeError(f"tamper: {old!r} is not in the signed zone {origin}")
                text = text.replace(old, new)
            signed.write_text(text)
        return signed

    def _write(self) -> tuple[str, str]:
        nsd_zones, unbound_zones = [], []
        for zone in self.zones:
            origin = zone.origin.rstrip(".")
            path = self.dir / f"{origin}.zone"
            path.write_text(self._zone_text(zone))
            served = self._sign(zone, path) if zone.signed else path
            nsd_zones.append(f'zone:\n    name: "{origin}"\n    zonefile: "{served}"\n')
            unbound_zones.append(f'stub-zone:\n    name: "{origin}"\n'
                                 f'    stub-addr: 127.0.0.1@{self.stub_port or self.nsd_port}\n')
        return "".join(nsd_zones), "".join(unbound_zones)

    # ---- running the servers --------------------------------------------------------------
    def start(self) -> str:
        """Build, sign, serve and validate; returns Unbound's "127.0.0.1:PORT"."""
        missing = missing_tools()
        if missing:
            raise RuntimeError(f"not installed: {', '.join(missing)} (scripts/install-test-deps)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.nsd_port, self.port = free_port(), free_port()
        nsd_zones, stubs = self._write()
        (self.dir / "nsd.conf").write_text(
            f'server:\n    ip-address: 127.0.0.1@{self.nsd_port}\n    port: {self.nsd_port}\n'
            f'    username: ""\n    chroot: ""\n    zonesdir: "{self.dir}"\n    database: ""\n'
            f'    pidfile: "{self.dir}/nsd.pid"\n    xfrdfile: "{self.dir}/xfrd.state"\n'
            f'    zonelistfile: "{self.dir}/zone.list"\n    xfrdir: "{self.dir}"\n'
            f'    logfile: "{self.dir}/nsd.log"\n    server-count: 1\n    hide-version: yes\n'
            f'remote-control:\n    control-enable: no\n{nsd_zones}')
        if self.want_port53:
            self.port53 = _free_port53_address()
        interfaces = f"    interface: 127.0.0.1@{self.port}\n"
        if self.port53:
            interfaces += f"    interface: {self.port53}@53\n"
        anchors = "".join(f'    trust-anchor: "{rr}"\n' for rr in self.trust_anchors.values())
        insecure = "".join(f'    domain-insecure: "{z.origin.rstrip(".")}"\n' for z in self.zones if not z.signed)
        (self.dir / "unbound.conf").write_text(
            f'server:\n{interfaces}    port: {self.port}\n    do-ip6: no\n    do-daemonize: no\n'
            f'    chroot: ""\n    username: ""\n    directory: "{self.dir}"\n'
            f'    pidfile: "{self.dir}/unbound.pid"\n    logfile: "{self.dir}/unbound.log"\n'
            f'    use-syslog: no\n    verbosity: 1\n    val-log-level: 2\n'
            f'    access-control: 127.0.0.0/8 allow\n    do-not-query-localhost: no\n'
            f'    module-config: "validator iterator"\n    num-threads: 1\n    outgoing-range: 64\n'
            f'    so-reuseport: no\n    harden-referral-path: no\n    qname-minimisation: no\n'
            f'    cache-max-ttl: 30\n    cache-max-negative-ttl: 5\n    val-bogus-ttl: 1\n'
            f'    root-hints: ""\n    local-zone: "test." nodefault\n'
            f'{anchors}{insecure}remote-control:\n    control-enable: no\n{stubs}')
        try:
            self._spawn([_tool("nsd"), "-d", "-c", str(self.dir / "nsd.conf")], "nsd.out")
            self._wait(self.nsd_port, f"ns.{self.zones[0].origin}", "nsd")
            self._spawn([_tool("unbound"), "-d", "-c", str(self.dir / "unbound.conf")], "unbound.out")
            self._wait(self.port, f"ns.{self.zones[0].origin}", "unbound")
        except BaseException:
            self.stop()
            raise
        return f"127.0.0.1:{self.port}"

    def _spawn(self, cmd: list[str], out: str) -> None:
        log = open(self.dir / out, "wb")
        self._procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        log.close()

    def _wait(self, port: int, name: str, what: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        proc = self._procs[-1]
        while True:
            try:
                reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", timeout=0.3, port=port)
                if reply.rcode() != dns.rcode.REFUSED:
                    return
            except (OSError, dns.exception.Timeout):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                logs = "; ".join(p.read_text(errors="replace")[-2000:] for p in
                                 (self.dir / f"{what}.out", self.dir / f"{what}.log") if p.exists())
                raise RuntimeError(f"{what} did not start on port {port}: {logs}")
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()

    def __enter__(self) -> "DnssecLab":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- a direct question, for tests and diagnostics ----------------------------------------
    def ask(self, name: str, rdtype: str) -> dns.message.Message:
        """One query to Unbound with DO and AD (what mailward's SecureResolver sends)."""
        query = dns.message.make_query(name, rdtype, want_dnssec=True)
        query.flags |= dns.flags.AD
        return dns.query.udp(query, "127.0.0.1", timeout=3, port=self.port)

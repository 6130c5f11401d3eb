"""The servers the benchmark runs, each started fresh for a cell and stopped after it.

* :class:`Mailward` — ``python -m mailward serve`` with ``spool.fsync = true``. The benchmark's
  recipient is in a domain that is not local (``bench.invalid``); loopback clients may relay
  (an access map is configured, so sendmail's relay rules apply). mailward has no ``discard``
  delivery, so by default its delivery is *parked*: the route file sends ``bench.invalid`` to
  a loopback port where the benchmark listens and never accepts, and ``max_deliveries = 1``,
  so one delivery attempt waits for a greeting for the whole cell and every accepted message
  stays queued. What is measured is receiving (SMTP, TLS, the fsynced spool) with nothing
  else competing for the CPU; Postfix's figures include its qmgr and discard agent.
  ``delivery="sink"`` routes ``bench.invalid`` to a real SMTP sink instead (outbound runs).
* :class:`Postfix` — Debian's Postfix as its own instance (``postfix -c DIR start``): its own
  config_directory, queue_directory and data_directory in the work folder, smtpd on a high
  loopback port with STARTTLS, the queue written and fsynced by cleanup as Postfix always
  does, every recipient delivered to ``discard:`` (default_transport, relay_transport,
  local_transport), no chroot, logging to a file (maillog_file).
* :class:`Aiosmtpd` — ``python -m bench.sinks`` in discard or fsync mode.

Every server gets the same certificate (ECDSA P-256 from ``mailward.ca``) and listens on
127.0.0.1 only. :func:`openssl_handshake_rate` measures the machine's limit with
``openssl s_time -new`` against ``openssl s_server`` and the same certificate.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
RCPT_DOMAIN = "bench.invalid"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_smtp(port: int, proc: subprocess.Popen | None = None, timeout: float = 20.0,
                  log: Path | None = None) -> None:
    """Until the server answers 220 on the port (or fail with its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(5)
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"server on port {port} did not answer 220 within {timeout}s\n{tail}")


def make_certs(workdir: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, cert.pem, key.pem): one ECDSA P-256 server certificate for every server."""
    from mailward.ca.authority import init_ca, issue

    ca = workdir / "ca"
    cert, key = workdir / "certs" / "server.pem", workdir / "certs" / "server.key"
    if not cert.exists():
        (workdir / "certs").mkdir(mode=0o755, parents=True, exist_ok=True)
        init_ca(ca, "mailward bench CA", passphrase=None)
        issue(ca, "localhost", ["127.0.0.1"], cert, key, usage="both")
        # Postfix's smtpd and aiosmtpd read the same key; it stays 0600 (root reads it).
    return ca / "ca.pem", cert, key


class Server:
    name = "server"

    def __init__(self, workdir: Path, cert: Path, key: Path, ca: Path):
        self.base = workdir
        self.cert, self.key, self.ca = cert, key, ca
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.dir: Path | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _fresh_dir(self) -> Path:
        d = self.base / self.name
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        self.dir = d
        return d

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        if self.dir is not None and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        self.cleanup()


class Blackhole:
    """A loopback TCP port that takes connections into its backlog and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


class Mailward(Server):
    name = "mailward"

    def __init__(self, *args, profile: str = "", profile_out: Path | None = None, delivery: str = "parked",
                 sink_port: int = 0, src: Path | None = None, workers: int = 0, spool_format: str = "",
                 spool_extra: list[str] | None = None, **kw):
        super().__init__(*args, **kw)
        self.workers = workers            # server.workers (0: leave the key out)
        self.spool_format = spool_format  # spool.format ("": leave the key out)
        self.spool_extra = list(spool_extra or [])   # more [spool] lines, KEY=VALUE
        self.src = src                    # a folder holding the mailward package to run (None: this checkout)
        self.profile = profile            # "", "cprofile" or "py-spy"
        self.profile_out = profile_out
        self.spy: subprocess.Popen | None = None
        self.delivery = delivery          # "parked" or "sink"
        self.sink_port = sink_port
        self.blackhole: Blackhole | None = None

    def delivery_text(self, d: Path) -> str:
        if self.delivery == "sink":
            (d / "routes").write_text(f"{RCPT_DOMAIN}\t[127.0.0.1]:{self.sink_port}\n")
            return f"""[delivery]
route_file = "{d / 'routes'}"
"""
        if self.blackhole is None:
            self.blackhole = Blackhole()
        (d / "routes").write_text(f"{RCPT_DOMAIN}\t[127.0.0.1]:{self.blackhole.port}\n")
        return f"""[delivery]
# Parked: the next hop never sends its greeting; one attempt waits, everything stays queued.
route_file = "{d / 'routes'}"
max_deliveries = 1
max_per_destination = 1
connect_timeout = 3600.0
"""

    def config_text(self, d: Path) -> str:
        return f"""# mailward for the benchmark (bench/peers.py)
[server]
hostname = "bench-mailward.invalid"
listen = ["127.0.0.1:{self.port}"]
max_connections = 20000
max_connections_per_client = 20000
{f"workers = {self.workers}" if self.workers else ""}

[tls]
cert_file = "{self.cert}"
key_file = "{self.key}"
ca_file = "{self.ca}"

[spool]
directory = "{d / 'spool'}"
fsync = true
{f'format = "{self.spool_format}"' if self.spool_format else ""}
{chr(10).join(self.spool_extra)}

[local]
domains = ["localhost"]
maildir_root = "{d / 'maildir'}"

[policy]
# Having an access map turns on sendmail's relay rules: loopback clients may relay.
access_map = "{d / 'access'}"

[log]
file = "{d / 'mailward.log'}"

{self.delivery_text(d)}"""

    def start(self, fresh: bool = True) -> None:
        """Start the server; ``fresh=False`` keeps the spool of the previous start."""
        self._reader = None
        d = self._fresh_dir() if fresh else self.dir
        self.port = free_port()
        (d / "access").write_text("# bench: no entries; loopback relays by sendmail's rules\n")
        (d / "mailward.toml").write_text(self.config_text(d))
        cmd = [PYTHON, "-m", "mailward", "serve", "-c", str(d / "mailward.toml")]
        if self.profile == "cprofile" and self.profile_out:
            cmd = [PYTHON, "-m", "cProfile", "-o", str(self.profile_out), "-m", "mailward", "serve",
                   "-c", str(d / "mailward.toml")]
        env = dict(os.environ)
        if self.src:
            env["PYTHONPATH"] = str(self.src)
        self.proc = subprocess.Popen(cmd, cwd=self.src or ROOT, stdout=subprocess.DEVNULL, env=env,
                                     stderr=open(d / "stderr.log", "wb"))
        wait_for_smtp(self.port, self.proc, log=d / "stderr.log")
        if self.profile == "py-spy" and self.profile_out:
            spy = Path(PYTHON).with_name("py-spy")
            self.spy = subprocess.Popen([str(spy), "record", "--pid", str(self.proc.pid), "--rate", "250",
                                         "--format", "raw", "--threads", "--nonblocking", "--subprocesses",
                                         "-o", str(self.profile_out)],
                                        stdout=subprocess.DEVNULL, stderr=open(d / "py-spy.log", "wb"))
            time.sleep(1.0)

    def stop(self) -> None:
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)
            try:
                self.spy.wait(30)
            except subprocess.TimeoutExpired:
                self.spy.kill()
            self.spy = None
        super().stop()
        if self.blackhole is not None:
            self.blackhole.close()
            self.blackhole = None

    def spool_files(self) -> int:
        """Messages queued (either spool format), as `mailward queue list` counts them; one
        reader per start, so a log is read incrementally."""
        spool = self.dir / "spool" if self.dir else None
        if not spool or not (spool / "queue").exists():
            return 0
        from mailward.spool.store import Spool

        if getattr(self, "_reader", None) is None or self._reader.directory != spool:
            self._reader = Spool(spool, fsync=False)
        return len(self._reader.ids())


class Aiosmtpd(Server):
    def __init__(self, *args, mode: str = "discard", **kw):
        super().__init__(*args, **kw)
        self.mode = mode
        self.name = f"aiosmtpd-{mode}"

    def start(self) -> None:
        d = self._fresh_dir()
        self.port = free_port()
        (d / "messages").mkdir()
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "bench.sinks", "--port", str(self.port), "--cert", str(self.cert), "--key", str(self.key),
             "--mode", self.mode, "--dir", str(d / "messages")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(d / "stderr.log", "wb"))
        wait_for_smtp(self.port, self.proc, log=d / "stderr.log")


POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"


def postfix_available() -> bool:
    return os.path.exists(POSTFIX) and os.geteuid() == 0


def postfix_version() -> str:
    try:
        return subprocess.run([POSTCONF, "-dh", "mail_version"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


class Postfix(Server):
    """Debian's Postfix as a separate instance; smtpd's TLS, cleanup's fsynced queue, discard:."""

    name = "postfix"

    def start(self) -> None:
        d = self._fresh_dir()
        self.base.chmod(0o755)  # the postfix user walks to its queue and data folders
        d.chmod(0o755)
        self.port = free_port()
        etc, queue, data = d / "etc", d / "queue", d / "data"
        etc.mkdir()
        data.mkdir()
        queue.mkdir()
        shutil.chown(data, "postfix", "postfix")  # master.lock and the TLS caches live there
        for f in ("dynamicmaps.cf", "master.cf"):
            shutil.copy(f"/etc/postfix/{f}", etc / f)
        if os.path.isdir("/etc/postfix/dynamicmaps.cf.d"):
            shutil.copytree("/etc/postfix/dynamicmaps.cf.d", etc / "dynamicmaps.cf.d")
        (etc / "main.cf").write_text(f"""# Postfix instance for the mailward benchmark (bench/peers.py)
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = bench-postfix.invalid
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
default_transport = discard
relay_transport = discard
local_transport = discard
smtpd_tls_security_level = may
smtpd_tls_cert_file = {self.cert}
smtpd_tls_key_file = {self.key}
smtpd_tls_CAfile = {self.ca}
smtpd_tls_loglevel = 0
smtpd_tls_session_cache_database =
default_process_limit = 300
maillog_file = {d / 'postfix.log'}
biff = no
alias_maps =
alias_database =
""")
        pc = [POSTCONF, "-c", str(etc)]
        # Our smtpd on a high loopback port instead of port 25; no chroot (no jail to populate).
        subprocess.run(pc + ["-MX", "smtp/inet"], check=True)
        subprocess.run(pc + ["-M", f"{self.port}/inet={self.port} inet n - n - - smtpd"], check=True)
        subprocess.run(pc + ["-F", "*/*/chroot = n"], check=True)
        env = dict(os.environ)
        r = subprocess.run([POSTFIX, "-c", str(etc), "start"], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"postfix -c {etc} start failed: {r.stdout}{r.stderr}")
        wait_for_smtp(self.port, log=d / "postfix.log")

    @property
    def pid(self) -> int:
        return int((self.dir / "queue" / "pid" / "master.pid").read_text().split()[0])

    def stop(self) -> None:
        if self.dir is None:
            return
        etc = self.dir / "etc"
        try:
            pid = self.pid
        except (OSError, ValueError):
            return
        subprocess.run([POSTFIX, "-c", str(etc), "stop"], capture_output=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            subprocess.run([POSTFIX, "-c", str(etc), "abort"], capture_output=True)

    def queued(self) -> int:
        n = 0
        for sub in ("incoming", "active", "deferred", "hold"):
            p = self.dir / "queue" / sub
            if p.exists():
                n += sum(len(files) for _, _, files in os.walk(p))
        return n


def openssl_handshake_rate(cert: Path, key: Path, seconds: float = 5.0) -> float:
    """Full TLS handshakes per second of `openssl s_time -new` against `openssl s_server`."""
    port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert),
                               "-key", str(key), "-quiet", "-no_dhe"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        r = subprocess.run(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
                            "-time", str(int(max(1, seconds)))],
                           capture_output=True, text=True, timeout=seconds + 60)
        m = re.search(r"(\d+) connections in (\d+(?:\.\d+)?) real seconds", r.stdout)
        if not m:
            raise RuntimeError(f"openssl s_time: unexpected output: {r.stdout[-500:]} {r.stderr[-500:]}")
        return int(m.group(1)) / float(m.group(2))
    finally:
        server.terminate()
        server.wait()

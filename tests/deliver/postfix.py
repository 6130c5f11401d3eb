"""A private Postfix instance for the interop tests (Debian's package), on 127.0.0.81:PORT.

Its own config, queue, Maildir folder and log under one temporary folder; nothing in
/etc/postfix is used or changed. Mail for ``postfix.test`` goes into MAIL/u/ (Maildir); other
mail is relayed to ``relayhost``. STARTTLS both ways with the test PKI: the server asks for
client certificates (``smtpd_tls_ask_ccert``), the client presents one."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ADDRESS = "127.0.0.81"


def postfix_bin() -> str:
    found = shutil.which("postfix") or ("/usr/sbin/postfix" if Path("/usr/sbin/postfix").exists() else "")
    if not found:
        pytest.skip("postfix is not installed (scripts/install-test-deps installs it)")
    return found


class Postfix:
    def __init__(self, base: Path, port: int, pki, relayhost: str):
        self.bin = postfix_bin()
        self.base, self.port = base, port
        self.conf, self.queue, self.data, self.mail = (base / n for n in ("conf", "queue", "data", "mail"))
        for d in (self.conf, self.queue, self.data, self.mail):
            d.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.data, "postfix")
        shutil.chown(self.mail, "postfix", "postfix")
        self.maillog = base / "maillog"
        master = Path("/etc/postfix/master.cf").read_text().splitlines()
        out = [f"{ADDRESS}:{port} inet n - n - - smtpd"]
        skipping = False
        for line in master:
            fields = line.split()
            if not fields or line.startswith("#"):
                continue
            if line[0] in " \t":          # the options of the service above
                if not skipping:
                    out.append(line)
                continue
            skipping = fields[:2] == ["smtp", "inet"]   # replaced by our address:port line
            if skipping:
                continue
            if len(fields) >= 8 and fields[4] == "y":   # no chroot: the queue is a temporary folder
                fields[4] = "n"
            out.append("  ".join(fields))
        (self.conf / "master.cf").write_text("\n".join(out) + "\n")
        uid = subprocess.run(["id", "-u", "postfix"], capture_output=True, text=True).stdout.strip()
        gid = subprocess.run(["id", "-g", "postfix"], capture_output=True, text=True).stdout.strip()
        (self.conf / "main.cf").write_text(f"""compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.postfix.test
mydestination =
mynetworks = 127.0.0.0/8
maillog_file_prefixes = {base}
maillog_file = {self.maillog}
virtual_mailbox_domains = postfix.test
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = static:u/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtp_dns_support_level = disabled
relayhost = {relayhost}
smtpd_tls_security_level = may
smtpd_tls_cert_file = {pki.server_cert}
smtpd_tls_key_file = {pki.server_key}
smtpd_tls_CAfile = {pki.ca}
smtpd_tls_ask_ccert = yes
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtp_tls_security_level = may
smtp_tls_CAfile = {pki.ca}
smtp_tls_cert_file = {pki.client_cert}
smtp_tls_key_file = {pki.client_key}
smtp_tls_loglevel = 1
""")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> "Postfix":
        check = subprocess.run([self.bin, "-c", str(self.conf), "check"], capture_output=True, text=True)
        if check.returncode:
            raise RuntimeError(f"postfix check failed: {check.stdout}{check.stderr}")
        self.proc = subprocess.Popen([self.bin, "-c", str(self.conf), "start-fg"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        import socket
        while time.time() < deadline:
            try:
                with socket.create_connection((ADDRESS, self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"220"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("postfix did not start: " + self.log())

    def stop(self) -> None:
        subprocess.run([self.bin, "-c", str(self.conf), "stop"], capture_output=True)
        if self.proc:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def log(self) -> str:
        return self.maillog.read_text() if self.maillog.exists() else ""

    def wait_log(self, pattern: str, timeout: float = 15) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.log()
            if re.search(pattern, text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not in the Postfix log:\n{self.log()}")

    def mailbox(self) -> list[bytes]:
        new = self.mail / "u" / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []

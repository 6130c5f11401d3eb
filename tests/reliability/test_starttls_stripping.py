"""STARTTLS stripping: a man in the middle removes STARTTLS from the receiver's EHLO reply.
When the access map requires encryption for the recipient (TLS_Rcpt) or the server
(TLS_Srv), the sending mailward defers the message instead of sending it in clear; once
the path is clean again, the message goes through over TLS. Two real mailward processes,
a real proxy between them."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import free_port, tls_settings


class StrippingProxy:
    """Forwards TCP; while ``strip`` is set, STARTTLS in EHLO replies becomes XXXXXXXX."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.port = free_port()
        self.strip = True
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, src, dst, from_server):
        try:
            while data := src.recv(65536):
                if from_server and self.strip:
                    data = data.replace(b"STARTTLS", b"XXXXXXXX")
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


@pytest.mark.parametrize("requirement", ["TLS_Rcpt:secure.example ENCR:112", "TLS_Srv:127.0.0.1 ENCR:112"])
def test_stripped_starttls_defers_instead_of_sending_in_clear(make_mta, pki, tmp_path, requirement):
    receiver = make_mta({"tls": tls_settings(pki), "local": {"domains": ["secure.example"]}})
    proxy = StrippingProxy((receiver.host, receiver.port))
    routes = tmp_path / "routes"
    routes.write_text(f"secure.example [127.0.0.1]:{proxy.port}\n")
    access = tmp_path / "access"
    access.write_text(requirement + "\n")
    sender = make_mta({"tls": tls_settings(pki), "policy": {"access_map": str(access)},
                       "delivery": {"route_file": str(routes), "retry_first": 3600}})
    try:
        import smtplib
        with smtplib.SMTP(sender.host, sender.port, timeout=10) as s:
            s.sendmail("a@localhost", ["user@secure.example"], "Subject: secret\r\n\r\nnot in clear\r\n")
        log = sender.wait_log("stat=Deferred", timeout=15)
        assert "encryption too weak 0 less than 112" in log or "other side does not support STARTTLS" in log
        time.sleep(0.5)
        assert receiver.maildir_files("user") == []
        assert "from=<a@localhost>" not in receiver.log_text()  # nothing was sent in clear
        # the path is clean again: the retry goes over TLS
        proxy.strip = False
        subprocess.run([sys.executable, "-m", "mailward", "queue", "-c", str(sender.config), "flush"],
                       check=True, capture_output=True)
        text = receiver.wait_mail("user")[0].read_text()
        assert "not in clear" in text and "with ESMTPS" in text
        assert "STARTTLS=client, relay=" in sender.wait_log("STARTTLS=client")
    finally:
        proxy.close()

"""mailward-issued certificates in a real TLS handshake with ``openssl s_client``.

No SMTP here (the receiving tests do STARTTLS): a plain TLS listener from Python's ``ssl``
module (OpenSSL underneath, as the server uses) checks that the certificates, the CA file and
the CRL work the way a server configured with them will see them.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading

import pytest

from ca_testlib import PASSPHRASE
from mailward.ca import authority, revocation


def _serve_once(cert, key, ca_file, crl=None):
    """Listen on 127.0.0.1; return (port, thread, result dict) for one handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=str(ca_file))
    ctx.verify_mode = ssl.CERT_REQUIRED
    if crl is not None:
        ctx.load_verify_locations(cafile=str(crl))
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)
    result: dict = {}

    def run():
        try:
            conn, _ = listener.accept()
            with ctx.wrap_socket(conn, server_side=True) as tls:
                result["peer"] = tls.getpeercert()
                tls.sendall(b"hello\n")
        except (ssl.SSLError, OSError) as err:
            result["error"] = str(err)
        finally:
            listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread, result


def _s_client(openssl_bin, port, ca_file, cert, key, hostname="mx.example"):
    return subprocess.run([openssl_bin, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(ca_file),
                           "-cert", str(cert), "-key", str(key), "-verify_return_error",
                           "-verify_hostname", hostname],
                          input="", capture_output=True, text=True, timeout=30)


@pytest.fixture
def pki(ca_dir, certs):
    authority.issue(ca_dir, "mx.example", ["127.0.0.1"], certs / "srv.pem", certs / "srv.key",
                    usage="server", passphrase=PASSPHRASE)
    authority.issue(ca_dir, "relay.example", None, certs / "cl.pem", certs / "cl.key", usage="client",
                    passphrase=PASSPHRASE)
    authority.self_signed("rogue.example", certs / "rogue.pem", certs / "rogue.key")
    return certs


def test_both_sides_verify_mailward_certificates(ca_dir, pki, openssl_bin):
    port, thread, result = _serve_once(pki / "srv.pem", pki / "srv.key", ca_dir / "ca.pem", ca_dir / "crl.pem")
    client = _s_client(openssl_bin, port, ca_dir / "ca.pem", pki / "cl.pem", pki / "cl.key")
    thread.join(20)
    assert "Verify return code: 0 (ok)" in client.stdout, client.stdout + client.stderr
    assert "error" not in result, result
    subject = dict(x[0] for x in result["peer"]["subject"])
    assert subject["commonName"] == "relay.example"


def test_a_self_signed_client_certificate_is_refused(ca_dir, pki, openssl_bin):
    port, thread, result = _serve_once(pki / "srv.pem", pki / "srv.key", ca_dir / "ca.pem")
    _s_client(openssl_bin, port, ca_dir / "ca.pem", pki / "rogue.pem", pki / "rogue.key")
    thread.join(20)
    assert "peer" not in result and "certificate verify failed" in result.get("error", ""), result


def test_a_revoked_client_certificate_is_refused_after_ca_crl(ca_dir, pki, openssl_bin):
    revocation.revoke(ca_dir, pki / "cl.pem")
    revocation.make_crl(ca_dir, PASSPHRASE)
    port, thread, result = _serve_once(pki / "srv.pem", pki / "srv.key", ca_dir / "ca.pem", ca_dir / "crl.pem")
    _s_client(openssl_bin, port, ca_dir / "ca.pem", pki / "cl.pem", pki / "cl.key")
    thread.join(20)
    assert "peer" not in result and "revoked" in result.get("error", ""), result


def test_the_client_refuses_a_server_certificate_for_another_name(ca_dir, pki, openssl_bin):
    port, thread, _ = _serve_once(pki / "srv.pem", pki / "srv.key", ca_dir / "ca.pem")
    client = _s_client(openssl_bin, port, ca_dir / "ca.pem", pki / "cl.pem", pki / "cl.key",
                       hostname="other.example")
    thread.join(20)
    assert "Verify return code: 0 (ok)" not in client.stdout
    assert "hostname mismatch" in client.stdout + client.stderr

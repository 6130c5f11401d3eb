"""TLS edge cases: close_notify inside DATA followed by cleartext, renegotiation, a client
certificate with a huge chain, a ClientHello with no shared cipher. Each is handled cleanly
(no message queued from it, the server keeps serving) and logged."""

from __future__ import annotations

import datetime as dt
import smtplib
import socket
import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from tests.receive.test_attacks_and_bad_input import read_reply, still_serving


def starttls_socket(mta) -> socket.socket:
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    read_reply(s)
    s.sendall(b"EHLO c\r\n")
    read_reply(s)
    s.sendall(b"STARTTLS\r\n")
    assert read_reply(s).startswith(b"220")
    return s


def test_close_notify_mid_data_then_cleartext(mta, pki):
    raw = starttls_socket(mta)
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    t = ctx.wrap_socket(raw, server_hostname="localhost")
    t.sendall(b"EHLO c\r\n")
    read_reply(t)
    t.sendall(b"MAIL FROM:<a@b>\r\nRCPT TO:<cn@localhost>\r\nDATA\r\n")
    data = b""
    while b"354" not in data:
        data += t.recv(4096)
    t.sendall(b"Subject: cut\r\n\r\nfirst half\r\n")
    plain = t.unwrap()  # close_notify
    try:
        plain.sendall(b".\r\nMAIL FROM:<injected@x>\r\nRCPT TO:<cn@localhost>\r\nDATA\r\nforged\r\n.\r\n")
    except OSError:
        pass
    time.sleep(0.5)
    plain.close()
    mta.wait_log("client closed the TLS session (close_notify), during=DATA")
    assert not (mta.maildir / "cn").exists()
    still_serving(mta)


def _retry(call, deadline):
    while True:
        try:
            return call()
        except SSL.WantReadError:
            if time.time() > deadline:
                raise TimeoutError("no answer") from None
            time.sleep(0.02)


def test_renegotiation_is_refused(mta, pki):
    raw = starttls_socket(mta)
    raw.setblocking(False)
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)  # renegotiation exists only up to TLS 1.2
    conn = SSL.Connection(ctx, raw)
    conn.set_connect_state()
    deadline = time.time() + 5
    _retry(conn.do_handshake, deadline)
    conn.send(b"EHLO c\r\n")
    assert _retry(lambda: conn.recv(4096), deadline).startswith(b"250")
    conn.renegotiate()
    with pytest.raises((SSL.Error, OSError)):
        _retry(conn.do_handshake, deadline)  # the server answers no_renegotiation: it fails
        conn.send(b"NOOP\r\n")
        _retry(lambda: conn.recv(4096), deadline)
    mta.wait_log("STARTTLS=server, error: read error=tls alert handshake failure")
    still_serving(mta)


def test_no_shared_cipher(mta):
    raw = starttls_socket(mta)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("AES128-SHA")  # RSA key exchange with CBC: not in mailward's list
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        ctx.wrap_socket(raw)
    log = mta.wait_log("no shared cipher")
    assert "verify=SOFTWARE" in log.split("no shared cipher")[1].splitlines()[0]
    still_serving(mta)


def test_client_certificate_with_a_huge_chain(mta, pki, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    chain = []
    for i in range(400):  # about 200 KB of certificates, over OpenSSL's 100 KB limit
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"junk {i} " + "x" * 50)] * 4)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(i + 1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
                .sign(key, hashes.SHA256()))
        chain.append(cert.public_bytes(serialization.Encoding.PEM))
    certfile, keyfile = tmp_path / "chain.pem", tmp_path / "key.pem"
    certfile.write_bytes(b"".join(chain))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.load_cert_chain(str(certfile), str(keyfile))
    start = time.time()
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionResetError, OSError)):
        with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
            s.starttls(context=ctx)
            s.noop()
    assert time.time() - start < 5
    mta.wait_log("excessive message size")
    still_serving(mta)

"""The sans-IO TLS engine, both ways of driving OpenSSL: directly through pyOpenSSL's cffi
bindings (the fast path) and through pyOpenSSL's public methods (the fallback for a pyOpenSSL
whose internals moved). Two engines talk through memory: handshake with client certificate,
data both ways (one octet to 100 KiB, more than one record), close_notify, and a corrupted
record — the same results on both paths."""

from __future__ import annotations

import pytest

from mailward.tls import engine as engine_mod
from mailward.tls.context import TLSFiles, client_context, server_context
from mailward.tls.engine import TLSClosed, TLSEngine, TLSFailure


@pytest.fixture(params=["direct", "public"])
def path(request, monkeypatch):
    if request.param == "direct" and not engine_mod.DIRECT:
        pytest.skip("this pyOpenSSL has no direct path")
    monkeypatch.setattr(engine_mod, "DIRECT", request.param == "direct")
    return request.param


def pair(pki):
    server = TLSEngine(server_context(TLSFiles(pki.server_cert, pki.server_key, pki.ca)), server_side=True)
    client = TLSEngine(client_context(TLSFiles(pki.client_cert, pki.client_key, pki.ca)), server_side=False,
                       server_hostname="localhost")
    to_server, to_client = client.start(), b""
    for _ in range(10):
        plain, to_client = server.feed(to_server)
        assert plain == b""
        plain, to_server = client.feed(to_client)
        assert plain == b""
        if server.handshake_done and client.handshake_done and not to_server:
            break
    assert server.handshake_done and client.handshake_done
    return server, client


def test_data_both_ways(pki, path):
    server, client = pair(pki)
    assert server.facts is not None and server.facts.verify == "OK"
    for size in (1, 4096, 16384, 16385, 102400):
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        plain, out = server.feed(client.encrypt(data))
        assert plain == data and out == b""
        plain, _ = client.feed(server.encrypt(data[::-1]))
        assert plain == data[::-1]


def test_close_notify(pki, path):
    server, client = pair(pki)
    with pytest.raises(TLSClosed):
        server.feed(client.close())


def test_data_then_close_notify_in_one_read(pki, path):
    server, client = pair(pki)
    plain, _ = server.feed(client.encrypt(b"QUIT\r\n") + client.close())
    assert plain == b"QUIT\r\n"


def test_a_corrupted_record_fails_with_an_alert(pki, path):
    server, client = pair(pki)
    record = bytearray(client.encrypt(b"MAIL FROM:<a@b.example>\r\n"))
    record[-3] ^= 0xFF
    with pytest.raises(TLSFailure) as err:
        server.feed(bytes(record))
    assert err.value.__cause__.output   # the alert still goes out

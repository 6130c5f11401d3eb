"""After a failed tls_client check at STARTTLS, mailward answers as sendmail 8.17 does
(as observed with TLS_Clt ENCR:512 and VERIFY; sendmail cf/README, STARTTLS: tls_client):
the next EHLO offers only ENHANCEDSTATUSCODES, MAIL and RCPT get the tls_client reply, QUIT
is served."""

from __future__ import annotations

import socket
import ssl

from tests.conftest import tls_settings
from tests.receive.test_attacks_and_bad_input import read_reply


def verify_mta(make_mta, pki, tmp_path):
    amap = tmp_path / "access"
    amap.write_text("TLS_Clt:127.0.0.1 VERIFY\n")
    return make_mta({"tls": tls_settings(pki), "policy": {"access_map": str(amap)},
                     "local": {"domains": ["localhost", "mx.test"]}, "server": {"reverse_lookup": False}})


def test_ehlo_after_a_failed_tls_client_check_offers_only_enhancedstatuscodes(make_mta, pki, tmp_path):
    mta = verify_mta(make_mta, pki, tmp_path)
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    read_reply(s)
    s.sendall(b"EHLO client.test\r\n")
    before = read_reply(s)
    assert b"250-PIPELINING\r\n" in before and b"250-STARTTLS\r\n" in before  # in clear: everything
    s.sendall(b"STARTTLS\r\n")
    assert read_reply(s) == b"220 2.0.0 Ready to start TLS\r\n"
    t = ssl.create_default_context(cafile=str(pki.ca)).wrap_socket(s, server_hostname="localhost")  # no cert
    t.sendall(b"EHLO client.test\r\n")
    assert read_reply(t) == (b"250-mx.test Hello [127.0.0.1], pleased to meet you\r\n"
                             b"250 ENHANCEDSTATUSCODES\r\n")
    t.sendall(b"MAIL FROM:<sender@client.test>\r\n")
    assert read_reply(t) == b"454 4.7.0 not authenticated\r\n"
    t.sendall(b"RCPT TO:<root@mx.test>\r\n")
    assert read_reply(t) == b"454 4.7.0 not authenticated\r\n"
    t.sendall(b"NOOP\r\n")
    assert read_reply(t) == b"250 2.0.0 OK\r\n"
    t.sendall(b"QUIT\r\n")
    assert read_reply(t) == b"221 2.0.0 mx.test closing connection\r\n"
    t.close()
    mta.wait_log("ruleset=tls_client, arg1=NO, arg2=STARTTLS, relay=[127.0.0.1], "
                 "reject=454 4.7.0 not authenticated")


def test_ehlo_after_a_passed_tls_client_check_offers_everything(make_mta, pki, tmp_path):
    mta = verify_mta(make_mta, pki, tmp_path)
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    read_reply(s)
    s.sendall(b"EHLO client.test\r\n")
    read_reply(s)
    s.sendall(b"STARTTLS\r\n")
    read_reply(s)
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    t = ctx.wrap_socket(s, server_hostname="localhost")
    t.sendall(b"EHLO client.test\r\n")
    reply = read_reply(t)
    assert b"250-PIPELINING\r\n" in reply and b"250-SIZE" in reply and reply.endswith(b"250 HELP\r\n")
    t.sendall(b"MAIL FROM:<sender@client.test>\r\n")
    assert read_reply(t).startswith(b"250 2.1.0")
    t.close()

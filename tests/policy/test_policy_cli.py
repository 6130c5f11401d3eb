"""``mailward policy test`` and ``mailward policy check``."""

from __future__ import annotations

from mailward.cli import main

MAP = """\
# reference d5 and d1
CERTISSUER:/C=XX/O=Oracle+20Test/CN=Oracle+20Test+20CA SUBJECT
CERTSUBJECT:/C=XX/O=Oracle+20Test/CN=client.test RELAY
TLS_Clt:127.0.0.1 ENCR:512
TLS_Rcpt:secure.domain ENCR:112
Try_TLS:broken.example NO
"""


def _map(tmp_path, text=MAP):
    path = tmp_path / "access"
    path.write_text(text)
    return str(path)


def test_policy_check_ok(tmp_path, capsys):
    path = _map(tmp_path)
    assert main(["policy", "check", path]) == 0
    assert capsys.readouterr().out == f"{path}: 5 entries, syntax OK\n"


def test_policy_check_error_exit_2(tmp_path, capsys):
    path = _map(tmp_path, "Connect:a RELAY\nTLS_Clt:x ENCR:lots\n")
    assert main(["policy", "check", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mailward: {path}:2: ENCR needs a number of bits")


def test_policy_test_relay_by_certificate(tmp_path, capsys):
    path = _map(tmp_path)
    rc = main(["policy", "test", "--map", path, "--client-name", "client.test", "--client-addr", "127.0.0.2",
               "--verify", "OK", "--cipher-bits", "256",
               "--cert-issuer", "/C=XX/O=Oracle+20Test/CN=Oracle+20Test+20CA",
               "--cert-subject", "/C=XX/O=Oracle+20Test/CN=client.test", "--local-domain", "oracle.test",
               "--sender", "sender@client.test", "--rcpt", "user@remote.example"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "== check_rcpt user@remote.example" in out
    assert "lookup CERTISSUER:/C=XX/O=Oracle+20Test/CN=Oracle+20Test+20CA" in out
    assert f"found 'SUBJECT' at {path}:2" in out
    assert f"found 'RELAY' at {path}:3" in out
    assert "decision: relay: 250 2.1.5 <user@remote.example>... Recipient ok" in out


def test_policy_test_tls_client_failure_shows_reply_and_log(tmp_path, capsys):
    path = _map(tmp_path)
    main(["policy", "test", "--map", path, "--client-name", "localhost", "--client-addr", "127.0.0.1",
          "--verify", "NO", "--stage", "STARTTLS"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    start = lines.index("== tls_client (STARTTLS)")
    assert lines[start + 1].split() == ["lookup", "TLS_Clt:localhost", "not", "found"]
    assert [line.split()[1] for line in lines[start + 2:start + 7]] == [
        "TLS_Clt:[127.0.0.1]", "TLS_Clt:[127.0.0]", "TLS_Clt:[127.0]", "TLS_Clt:[127]", "TLS_Clt:127.0.0.1"]
    assert f"matched: tls_clt:127.0.0.1 ENCR:512 ({path}:4)" in out
    assert "decision: tempfail: 454 4.7.0 encryption too weak 256 less than 512" in out
    assert ("log: ruleset=tls_client, arg1=NO, arg2=STARTTLS, relay=localhost [127.0.0.1], "
            "reject=454 4.7.0 encryption too weak 256 less than 512") in out
    assert "check_mail" not in out  # --stage STARTTLS stops there


def test_policy_test_client_role_try_tls_and_tls_rcpt(tmp_path, capsys):
    path = _map(tmp_path)
    main(["policy", "test", "--map", path, "--role", "client", "--server-name", "mx.broken.example",
          "--server-addr", "192.0.2.8", "--rcpt", "user@secure.domain"])
    out = capsys.readouterr().out
    assert "STARTTLS is not used toward this server (Try_TLS NO)" in out
    assert "decision: tempfail: 454 4.7.0 encryption too weak 0 less than 112" in out


def test_policy_test_needs_a_client(tmp_path, capsys):
    assert main(["policy", "test", "--map", _map(tmp_path)]) == 2
    assert "needs --client-name" in capsys.readouterr().err

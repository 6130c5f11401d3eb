"""Atomic reload of the access map, and the adapter the receiving server uses."""

from __future__ import annotations

import logging
import os

import pytest

from mailward.config import ConfigError, from_dict
from mailward.policy import AccessMapError, AccessMapHolder
from mailward.policy.receive import ReceivePolicy
from mailward.tls.facts import ConnectionFacts, TLSFacts


def write(path, text, bump=0):
    path.write_text(text)
    if bump:  # make sure the modification time changes even on coarse file systems
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def test_open_and_reload(tmp_path):
    path = tmp_path / "access"
    write(path, "TLS_Clt:a.example VERIFY\n")
    holder = AccessMapHolder.open(path)
    first = holder.current
    assert len(first) == 1
    write(path, "TLS_Clt:a.example VERIFY\nTLS_Clt:b.example ENCR:112\n", bump=1)
    assert holder.reload()
    assert len(holder.current) == 2
    assert len(first) == 1  # a snapshot taken before the reload is unchanged


def test_bad_file_keeps_old_map_and_logs_file_line_why(tmp_path, caplog):
    path = tmp_path / "access"
    write(path, "TLS_Clt:a.example VERIFY\n")
    holder = AccessMapHolder.open(path)
    old = holder.current
    write(path, "TLS_Clt:a.example VERIFY\nTLS_Clt:b.example VERFY\n", bump=1)
    with caplog.at_level(logging.ERROR, logger="mailward.policy"):
        assert not holder.maybe_reload()
    assert holder.current is old
    assert f"{path}:2: unknown TLS requirement 'VERFY'" in caplog.text
    assert "keeping the previous map (1 entries)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="mailward.policy"):
        assert not holder.maybe_reload()  # unchanged broken file: not retried, not logged again
    assert caplog.text == ""
    write(path, "TLS_Clt:b.example ENCR:112\n", bump=2)
    assert holder.maybe_reload()
    assert holder.current.get("TLS_Clt:b.example").value == "ENCR:112"


def test_maybe_reload_only_when_changed(tmp_path):
    path = tmp_path / "access"
    write(path, "Connect:a RELAY\n")
    holder = AccessMapHolder.open(path)
    assert not holder.maybe_reload()
    write(path, "Connect:a RELAY\nConnect:b RELAY\n", bump=1)
    assert holder.maybe_reload()
    assert not holder.maybe_reload()


def test_missing_file_keeps_map(tmp_path, caplog):
    path = tmp_path / "access"
    write(path, "Connect:a RELAY\n")
    holder = AccessMapHolder.open(path)
    path.unlink()
    with caplog.at_level(logging.ERROR, logger="mailward.policy"):
        assert not holder.maybe_reload()
    assert len(holder.current) == 1
    assert "cannot read the access map: No such file or directory; keeping the previous map" in caplog.text


def test_open_fails_on_bad_map(tmp_path):
    path = tmp_path / "access"
    write(path, "Try_TLS:x PERHAPS\n")
    with pytest.raises(AccessMapError, match=r"access:1: Try_TLS takes NO"):
        AccessMapHolder.open(path)


def test_srv_features_ignored_letters_logged_once_per_load(tmp_path, caplog):
    path = tmp_path / "access"
    write(path, "Srv_Features: V A\n")
    with caplog.at_level(logging.WARNING, logger="mailward.policy"):
        AccessMapHolder.open(path)
    assert caplog.text.count("Srv_Features letters A ignored") == 1


def _config(tmp_path, text, **policy):
    path = tmp_path / "access"
    write(path, text)
    return from_dict({"policy": {"access_map": str(path), **policy}, "local": {"domains": ["oracle.test"]}},
                     tmp_path / "mailward.toml")


def test_receive_policy_from_config(tmp_path):
    config = _config(tmp_path, "TLS_Clt:127.0.0.1 ENCR:112\nSrv_Features:127.0.0.1 V\n", tls_perm_err=True)
    policy = ReceivePolicy.from_config(config, is_local=lambda address: address.endswith("@oracle.test"))
    plain = ConnectionFacts("localhost", "127.0.0.1")
    verdict = policy.mail(plain, "sender@client.test", tls_checked=False)   # runs tls_client for MAIL
    assert (verdict.reply.code, verdict.reply.status, verdict.reply.text) == (
        554, "5.7.0", "encryption too weak 0 less than 112")
    assert policy.features(plain).request_client_cert is False
    assert policy.features(ConnectionFacts("x", "192.0.2.1")).request_client_cert is True
    denied = policy.rcpt(ConnectionFacts("client.test", "127.0.0.2"), "user@remote.example")
    assert str(denied.reply) == "550 5.7.1 <user@remote.example>... Relaying denied"
    assert policy.rcpt(ConnectionFacts("client.test", "127.0.0.2"), "root@oracle.test").reply is None
    tls = TLSFacts(verify="NO", tls_version="TLSv1.3", cipher_bits=256, alg_bits=256)
    assert policy.tls_client(ConnectionFacts("localhost", "127.0.0.1", tls=tls), "STARTTLS").reply is None


def test_receive_policy_discard_and_no_map(tmp_path):
    config = _config(tmp_path, "From:toss.example DISCARD\n")
    verdict = ReceivePolicy.from_config(config).mail(ConnectionFacts("h", "192.0.2.1"), "x@toss.example")
    assert verdict.reply is None and verdict.discard
    # without a map: the same rules over an empty one (relaying refused, local domains taken)
    empty = ReceivePolicy.from_config(from_dict({}))
    assert empty.rcpt(ConnectionFacts("h", "192.0.2.1"), "u@far.example").reply.code == 550
    assert empty.rcpt(ConnectionFacts("h", "192.0.2.1"), "u@localhost").reply is None


def test_receive_policy_bad_map_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"policy.access_map: .*access:1: "):
        ReceivePolicy.from_config(_config(tmp_path, "TLS_Clt:x VERFY\n"))


def test_delivery_policy_shares_the_map(tmp_path):
    from mailward.policy.deliver import DeliveryPolicy

    config = _config(tmp_path, "TLS_Rcpt:secure.domain ENCR:112\nTry_TLS:broken.example NO\n")
    delivery = DeliveryPolicy.from_config(config)
    assert delivery.holder is ReceivePolicy.from_config(config).holder
    assert not delivery.try_tls("mx.broken.example", "192.0.2.1")
    assert delivery.try_tls("mx.example", "192.0.2.2")
    clear = ConnectionFacts("mail.other.domain", "192.0.2.50")
    assert delivery.tls_rcpt(clear, "user@secure.domain").reply == "454 4.7.0 encryption too weak 0 less than 112"
    assert not delivery.tls_server(clear).failed
    assert not DeliveryPolicy.from_config(from_dict({})).tls_rcpt(clear, "user@secure.domain").failed

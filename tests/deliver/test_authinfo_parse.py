"""``AuthInfo:`` values ("sendmail cf/README, SMTP AUTHENTICATION") parsed, and the access map
loading them: errors name the line and never the value (it holds a password)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from mailward.policy.accessmap import AccessMap, AccessMapError
from mailward.policy.authinfo import AuthInfoError, parse
from mailward.policy.lookup import Trace, lookup_host


def test_the_readme_examples():
    a = parse('"U:user" "I:user" "P:secret" "R:other.dom" "M:DIGEST-MD5"')
    assert (a.user, a.authid, a.password, a.realm, a.mechanisms) == ("user", "user", "secret", "other.dom",
                                                                     ("DIGEST-MD5",))
    b = parse('"U:user" "P=c2VjcmV0"')
    assert (b.user, b.authid, b.password, b.mechanisms) == ("user", "user", "secret", ())


def test_missing_user_or_authid_takes_the_other():
    a = parse('"I:authid" "P:pw" "M:PLAIN LOGIN"')
    assert a.user == a.authid == "authid" and a.mechanisms == ("PLAIN", "LOGIN")
    a = parse('"U:boss" "I:relay" "P:pw with spaces"')
    assert (a.user, a.authid, a.password) == ("boss", "relay", "pw with spaces")


def test_lower_case_tags_and_mechanisms():
    a = parse('"u:x" "p:y" "m:plain"')
    assert a.user == "x" and a.password == "y" and a.mechanisms == ("PLAIN",)


@pytest.mark.parametrize("value,why", [
    ('"U:user"', "no password"),
    ('"P:pw"', "no user"),
    ('"U:user" P:pw', "outside quotes"),
    ('"U:user" "P:pw', "unterminated quote"),
    ('"X:what" "U:u" "P:pw"', "must start with U, I, P, R or M"),
    ('"U:u" "P=not*base64"', "not base64"),
    ('"U:u" "U:v" "P:pw"', "twice"),
    ('"U:u" "P:pw" "M:PLAIN,LOGIN"', "not a SASL mechanism"),
    ('"U:u" "Pxhunter2"', "password item must be"),
])
def test_bad_values_say_why_without_the_password(value, why):
    with pytest.raises(AuthInfoError, match=why) as err:
        parse(value)
    assert "pw" not in str(err.value) and "hunter2" not in str(err.value)


def test_the_map_loads_authinfo_without_a_warning_and_refuses_a_bad_line_without_quoting_it():
    amap = AccessMap.from_text('AuthInfo:relay.example "U:me" "P:pw"\nAuthInfo: "U:d" "P:x"\n', "access")
    assert amap.warnings == []
    with pytest.raises(AccessMapError) as err:
        AccessMap.from_text('Connect:10 OK\nAuthInfo:relay.example "U:me" "P:TopSecret\n', "access")
    assert str(err.value).startswith("access:2: AuthInfo: unterminated quote")
    assert "TopSecret" not in str(err.value)


def test_sendmail_lookup_order_name_parents_address_bare_tag():
    amap = AccessMap.from_text('AuthInfo:example.net "U:domain" "P:1"\nAuthInfo:192.0.2 "U:net" "P:2"\n'
                               'AuthInfo: "U:default" "P:3"\nAuthInfo:[192.0.2.9] "U:bracket" "P:4"\n')

    def who(name, addr):
        entry = lookup_host(amap, Trace(), "AuthInfo", name, addr)
        return parse(entry.value).user if entry else None
    assert who("smtp.relay.example.net", "198.51.100.1") == "domain"
    assert who("other.example", "192.0.2.7") == "net"
    assert who("other.example", "203.0.113.1") == "default"
    assert who("[192.0.2.9]", "192.0.2.9") == "bracket"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_value_parses_or_fails_cleanly_and_never_echoes(value):
    try:
        parse(value)
    except AuthInfoError as err:
        text = str(err)
        secret = value.split('"P:', 1)[1].split('"', 1)[0] if '"P:' in value else ""
        assert len(secret) < 4 or secret not in text

"""The access map parser: format, line-numbered errors, and a property test that nothing
but AccessMapError ever escapes it."""

from __future__ import annotations

import pytest
from tests.fuzzing import examples  # noqa: E402
from hypothesis import given, settings
from hypothesis import strategies as st

from mailward.policy import AccessMap, AccessMapError
from mailward.policy.rhs import parse_ordinary, parse_tls_requirement


def test_format_comments_blank_lines_tabs_quotes():
    amap = AccessMap.from_text(
        "# a comment\n\n   \nConnect:10.1\tRELAY\n  TLS_Clt:127.0.0.1 ENCR:112  \n"
        'From:x@y.example   ERROR:"550 We do not want your mail"\r\n', "access")
    assert len(amap) == 3
    entry = amap.get("CONNECT:10.1")
    assert (entry.value, entry.line, entry.where) == ("RELAY", 4, "access:4")
    assert amap.get("tls_clt:127.0.0.1").value == "ENCR:112"
    assert amap.get("From:x@y.example").value == 'ERROR:"550 We do not want your mail"'


def test_duplicate_key_keeps_first_and_warns():
    amap = AccessMap.from_text("Connect:a RELAY\nconnect:A REJECT\n", "access")
    assert amap.get("Connect:a").value == "RELAY"
    assert amap.warnings == ["access:2: duplicate key 'connect:a' ignored (first entry on line 1 is used)"]


def test_unknown_tags_are_kept_unchecked():
    amap = AccessMap.from_text("Spam:abuse@ FRIEND\nClientRate:192.0.2.1 2\nGreetPause:localhost 0\n")
    assert len(amap) == 3


@pytest.mark.parametrize("text,line,why", [
    ("Connect:1.2.3.4\n", 1, "no value for key 'Connect:1.2.3.4'"),
    ("# ok\nTLS_Clt:x VERFY\n", 2, "unknown TLS requirement 'VERFY'"),
    ("TLS_Srv:x ENCR:abc\n", 1, "ENCR needs a number of bits"),
    ("TLS_Srv:x ENCR\n", 1, "ENCR needs a number of bits"),
    ("TLS_Rcpt:x VERIFY:\n", 1, "VERIFY needs a number of bits"),
    ("TLS_Clt:x PERM+VERIFY+XX:y\n", 1, "unknown TLS extension 'XX:y'"),
    ("TLS_Clt:x VERIFY+CN:a+CS:b\n", 1, "join extensions with '++'"),
    ('From:x ERROR:"550 text\n', 1, "unterminated quote"),
    ("Connect:x MAYBE\n", 1, "unknown value 'MAYBE'"),
    ("x.example ALLOW\n", 1, "unknown value 'ALLOW'"),
    ('To:x ERROR:"250 fine"\n', 1, "must be 4xx or 5xx"),
    ("To:x ERROR:4.7.1:550 no\n", 1, "does not agree"),
    ("Try_TLS:x MAYBE\n", 1, "Try_TLS takes NO"),
    ("Srv_Features:x 12\n", 1, "Srv_Features takes letters"),
    ("CERTISSUER:/C=XX FOO\n", 1, "CERTISSUER takes RELAY or SUBJECT"),
    ("CERTSUBJECT:/C=XX SUBJECT\n", 1, "CERTSUBJECT takes RELAY"),
])
def test_errors_name_file_line_and_why(text, line, why):
    with pytest.raises(AccessMapError) as info:
        AccessMap.from_text(text, "/etc/mail/access")
    assert info.value.line == line
    assert str(info.value).startswith(f"/etc/mail/access:{line}: ")
    assert why in str(info.value)


def test_unreadable_file(tmp_path):
    with pytest.raises(AccessMapError) as info:
        AccessMap.load(tmp_path / "missing")
    assert "cannot read the access map" in str(info.value)


def test_tls_requirement_grammar():
    req = parse_tls_requirement("perm+verify:112+CN++CS:/C=XX/CN=a++CI:/C=XX/CN=ca++CITag:MyCA")
    assert (req.kind, req.prefix, req.bits) == ("VERIFY", "PERM", 112)
    assert req.extensions == (("CN", None), ("CS", "/C=XX/CN=a"), ("CI", "/C=XX/CN=ca"), ("CITag", "MyCA"))
    assert parse_tls_requirement("TEMP+ENCR:128") == parse_tls_requirement("temp+encr:128")


@pytest.mark.parametrize("value,word,code,status,text", [
    ('ERROR:"550 Go away"', "ERROR", 550, "", "Go away"),
    ("ERROR:5.7.1:550 Go away", "ERROR", 550, "5.7.1", "Go away"),
    ('ERROR:"550 5.7.2 Go away"', "ERROR", 550, "5.7.2", "Go away"),
    ("ERROR:451 Later", "ERROR", 451, "", "Later"),
    ("550 Legacy text", "ERROR", 550, "", "Legacy text"),
    ("relay", "RELAY", 0, "", ""),
])
def test_ordinary_values(value, word, code, status, text):
    parsed = parse_ordinary(value)
    assert (parsed.word, parsed.code, parsed.status, parsed.text) == (word, code, status, text)


_TOKENS = st.sampled_from([
    "TLS_Clt:", "TLS_Srv:", "TLS_Rcpt:", "Try_TLS:", "Srv_Features:", "CERTISSUER:", "CERTSUBJECT:", "Connect:",
    "From:", "To:", "Spam:", "IPv6:", "x.example", "192.0.2.1", "2001:db8::1", "u@", "@", "VERIFY", "ENCR", ":",
    "+", "++", "PERM+", "TEMP+", "CN", "CS:", "CI:", "112", "abc", "OK", "RELAY", "REJECT", "DISCARD", "SUBJECT",
    "NO", "ERROR:", '"', "550", "5.7.1", " ", "\t", "\n", "#", "V", "v", "S", "\x00", "é", "\udcff", "\r",
])


@settings(max_examples=examples(400), deadline=None)
@given(st.lists(_TOKENS, max_size=40).map("".join))
def test_property_parser_only_raises_its_own_error_on_token_soup(text):
    _parse_or_error(text)


@settings(max_examples=examples(300), deadline=None)
@given(st.text(max_size=300))
def test_property_parser_only_raises_its_own_error_on_any_text(text):
    _parse_or_error(text)


def _parse_or_error(text):
    try:
        amap = AccessMap.from_text(text)
    except AccessMapError as err:
        assert err.line >= 1 and str(err).startswith("<text>:")
        return
    for entry in amap.entries():  # every accepted entry is found again by its key
        assert amap.get(entry.key) is not None

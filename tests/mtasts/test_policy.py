"""The pure parts of MTA-STS: the TXT record (RFC 8461 §3.1), the policy file (§3.2) and MX
matching (§4.1), as truth tables and property tests."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailward.mtasts.policy import PolicyError, StsPolicy, parse_policy, pattern_matches
from mailward.mtasts.record import find_record, parse_record

# ---- the TXT record -------------------------------------------------------------------------

@pytest.mark.parametrize("txts, want_id, problem", [
    (["v=STSv1; id=20160831085700Z;"], "20160831085700Z", ""),      # RFC 8461 §3.1's example
    (["v=STSv1; id=abc"], "abc", ""),
    (["v=STSv1;id=abc"], "abc", ""),
    (["v=STSv1 ;\tid=abc ; "], "abc", ""),
    (["v=STSv1; ext_1=hello; id=abc"], "abc", ""),                   # extensions ignored
    (["v=spf1 -all", "v=STSv1; id=abc"], "abc", ""),                 # other TXT records discarded
    ([], None, ""),
    (["v=spf1 -all"], None, ""),
    (["v=STSv1"], None, ""),                                         # does not begin with "v=STSv1;"
    (["v=STSv10; id=abc"], None, ""),
    (["v=STSv1; id=a", "v=STSv1; id=b"], None, "2 STSv1 records"),   # not exactly one
    (["v=STSv1; id=abc", "v=STSv1; id=abc"], None, "2 STSv1 records"),
    (["v=STSv1; id=ab-c"], None, "letters and digits"),
    (["v=STSv1; id=" + "a" * 33], None, "1 to 32"),
    (["v=STSv1; id="], None, "1 to 32"),
    (["v=STSv1; id=a; id=b"], None, "more than one id"),
    (["v=STSv1; ext=1"], None, "no id"),
    (["v=STSv1; id=a; junk"], None, "not NAME=VALUE"),
    (["v=STSv1; id=a; e=b=c"], None, "not a valid extension"),
    (["V=STSv1; id=a"], None, ""),                                   # case-sensitive (%s in the ABNF)
])
def test_txt_record(txts, want_id, problem):
    found = find_record(txts)
    assert (found.record.id if found.record else None) == want_id
    assert problem in found.problem and bool(problem) == bool(found.problem)


def test_record_keeps_extensions():
    assert parse_record("v=STSv1; id=1; tlsrpt=yes").extensions == (("tlsrpt", "yes"),)


# ---- the policy file ------------------------------------------------------------------------
RFC_EXAMPLE = ("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
               "mx: backupmx.example.com\r\nmax_age: 604800\r\n")


def test_rfc_example_crlf_and_lf():
    for body in (RFC_EXAMPLE, RFC_EXAMPLE.replace("\r\n", "\n"), RFC_EXAMPLE.rstrip("\r\n")):
        p = parse_policy(body, id="x", fetched_at=100.0)
        assert p == StsPolicy("enforce", ("mail.example.com", "*.example.net", "backupmx.example.com"), 604800,
                              "x", 100.0)
    assert parse_policy(RFC_EXAMPLE.encode()).mode == "enforce"


def test_text_round_trips():
    p = parse_policy(RFC_EXAMPLE, id="x", fetched_at=1.0)
    assert p.text() == RFC_EXAMPLE
    assert parse_policy(p.text(), id="x", fetched_at=1.0) == p


def test_unknown_keys_ignored_first_of_repeated_wins():
    body = "version: STSv1\nfoo_bar: anything at all\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 5\n"
    p = parse_policy(body)
    assert p.mode == "testing" and p.mx == ("a.example",) and p.max_age == 5


def test_mode_none_needs_no_mx():
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 86400\n").mx == ()


@pytest.mark.parametrize("body, where", [
    ("version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", "line 1: version 'STSv2'"),
    ("version: STSv1\r\nmode: strict\r\nmx: a.example\r\nmax_age: 1\r\n", "line 2: mode 'strict'"),
    ("version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", "line 2: mode 'Enforce'"),
    ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n", "line 4: max_age 31557601 is above"),
    ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", "line 4: max_age '-1'"),
    ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n", "line 4: max_age"),
    ("version: STSv1\nmode: enforce\nmx: a.*.example\nmax_age: 1\n", "line 3: mx 'a.*.example'"),
    ("version: STSv1\nmode: enforce\nmx: *example.com\nmax_age: 1\n", "line 3: mx"),
    ("version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n", "line 3: mx"),
    ("version: STSv1\nmode: enforce\nmx: mx..example\nmax_age: 1\n", "line 3: mx"),
    ("version: STSv1\nmode: enforce\nmx: mx.bücher.example\nmax_age: 1\n",
     "line 3: mx 'mx.bücher.example' is not in A-labels"),
    ("version: STSv1\nmode: enforce\nthis is html\nmax_age: 1\n", "line 3: 'this is html' is not 'key: value'"),
    ("<html>\n", "line 1:"),
    ("version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx line"),
    ("version: STSv1\nmx: a.example\nmax_age: 1\n", "no mode line"),
    ("mode: enforce\nmx: a.example\nmax_age: 1\n", "no version line"),
    ("version: STSv1\nmode: enforce\nmx: a.example\n", "no max_age line"),
    (b"version: STSv1\nmode: enforce\nmx: \xff.example\nmax_age: 1\n", "line 3: not UTF-8"),
])
def test_bad_policies_name_the_line(body, where):
    with pytest.raises(PolicyError) as err:
        parse_policy(body)
    assert str(err.value).startswith(where), str(err.value)


def test_a_label_mx_matches_u_label_host():
    p = parse_policy("version: STSv1\nmode: enforce\nmx: *.XN--BCHER-KVA.example\nmax_age: 1\n")
    assert p.matches("mx.bücher.example") and p.matches("mx.xn--bcher-kva.example.")
    assert not p.matches("a.mx.bücher.example")


def test_max_age_limit_is_allowed():
    assert parse_policy("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557600\n").max_age == 31557600


# ---- MX matching (RFC 8461 §4.1) --------------------------------------------------------------

@pytest.mark.parametrize("pattern, host, want", [
    ("mx.example.com", "mx.example.com", True),
    ("mx.example.com", "MX.Example.COM", True),
    ("mx.example.com", "mx.example.com.", True),
    ("mx.example.com.", "mx.example.com", True),
    ("MX.EXAMPLE.COM", "mx.example.com", True),
    ("mx.example.com", "example.com", False),
    ("mx.example.com", "a.mx.example.com", False),
    ("mx.example.com", "mx.example.co", False),
    ("*.example.com", "mx.example.com", True),
    ("*.example.com", "MX.EXAMPLE.COM.", True),
    ("*.Example.Com", "mx.example.com", True),
    ("*.example.com", "example.com", False),          # the wildcard needs one label
    ("*.example.com", "a.b.example.com", False),      # and only one (the bug seen in other helpers)
    ("*.example.com", ".example.com", False),
    ("*.example.com", "*.example.com", False),        # a host name is never a pattern
    ("*.example.com", "mxexample.com", False),
    ("*.example.com", "mx.example.com.evil", False),
    ("*.example.com", "mx.example.org", False),
    ("*.com", "example.com", True),
    ("a.*.example.com", "a.b.example.com", False),    # no other wildcard positions
    ("mx*.example.com", "mx1.example.com", False),
    ("*mx.example.com", "amx.example.com", False),
    ("**.example.com", "a.example.com", False),
    ("*", "example", False),
    ("mx.bücher.example", "mx.xn--bcher-kva.example", True),   # IDNA: U-label and A-label
    ("*.xn--bcher-kva.example", "mx.bücher.example", True),
    ("*.BÜCHER.example", "MX.bücher.example.", True),
    ("*.bücher.example", "a.b.bücher.example", False),
    ("*.bücher.example", "bücher.example", False),
    ("mx.example.com", "", False),
    ("", "mx.example.com", False),
    ("mx.example.com", "mx..example.com", False),
])
def test_mx_matching(pattern, host, want):
    assert pattern_matches(pattern, host) is want
    policy = StsPolicy("enforce", (pattern,), 60, "id", 0.0)
    assert policy.matches(host) is want


LABEL = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=12)
NAME = st.lists(LABEL, min_size=1, max_size=4).map(".".join)


def _variants(draw_case: bool, dot: bool, name: str) -> str:
    name = name.upper() if draw_case else name
    return name + "." if dot else name


@settings(max_examples=300, deadline=None)
@given(parent=NAME, label=LABEL, extra=LABEL, upper=st.booleans(), dot=st.booleans(),
       pupper=st.booleans(), pdot=st.booleans())
def test_wildcard_matches_exactly_one_leftmost_label(parent, label, extra, upper, dot, pupper, pdot):
    pattern = "*." + _variants(pupper, pdot, parent)
    assert pattern_matches(pattern, _variants(upper, dot, f"{label}.{parent}"))
    assert not pattern_matches(pattern, _variants(upper, dot, parent))
    assert not pattern_matches(pattern, _variants(upper, dot, f"{extra}.{label}.{parent}"))


@settings(max_examples=300, deadline=None)
@given(a=NAME, b=NAME, upper=st.booleans(), dot=st.booleans())
def test_exact_pattern_matches_only_the_same_name(a, b, upper, dot):
    assert pattern_matches(a, _variants(upper, dot, a))
    assert pattern_matches(a, _variants(upper, dot, b)) is (a == b)


@settings(max_examples=200, deadline=None)
@given(pattern=st.text(max_size=30), host=st.text(max_size=30))
def test_matching_never_raises(pattern, host):
    assert pattern_matches(pattern, host) in (True, False)


@settings(max_examples=200, deadline=None)
@given(body=st.text(max_size=300))
def test_parser_raises_only_policy_error(body):
    try:
        parse_policy(body)
    except PolicyError as err:
        assert str(err)


ULABEL = st.text(alphabet="abcxyz019äöüéñ", min_size=1, max_size=10).filter(lambda s: not s.isascii())
MIXED = st.lists(st.one_of(LABEL, ULABEL), min_size=1, max_size=3).map(".".join)


def _a_form(name: str) -> str:
    return ".".join(label.encode("idna").decode() if not label.isascii() else label for label in name.split("."))


@settings(max_examples=200, deadline=None)
@given(parent=MIXED, label=st.one_of(LABEL, ULABEL), extra=LABEL, upper=st.booleans(), dot=st.booleans(),
       a_pattern=st.booleans(), a_host=st.booleans())
def test_idna_names_match_in_either_form(parent, label, extra, upper, dot, a_pattern, a_host):
    """A U-label and its xn-- form are the same name, in the pattern and in the host, and the
    one-label wildcard rule holds for internationalised names too."""
    pattern_parent = _a_form(parent) if a_pattern else parent
    host = f"{label}.{parent}"
    host = _variants(upper, dot, _a_form(host) if a_host else host)
    assert pattern_matches("*." + pattern_parent, host)
    assert pattern_matches(_a_form(f"{label}.{parent}") if a_pattern else f"{label}.{parent}", host)
    assert not pattern_matches("*." + pattern_parent, _variants(upper, dot, parent))
    assert not pattern_matches("*." + pattern_parent, _variants(upper, dot, f"{extra}.{label}.{parent}"))

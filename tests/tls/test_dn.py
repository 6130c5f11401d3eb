"""sendmail's DN form: OpenSSL 3's X509_NAME_oneline, then the +XX encoding."""

import warnings

from OpenSSL import crypto

from mailward.tls import dn


def openssl_oneline(**attrs) -> tuple[str, list]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        name = crypto.X509().get_subject()
        for k, v in attrs.items():
            setattr(name, k, v)
        text = str(name).split("'", 1)[1].rsplit("'", 1)[0]
        comps = [(k.decode(), v.decode()) for k, v in name.get_components()]
    return text, comps


def test_oneline_matches_openssl_byte_for_byte():
    text, comps = openssl_oneline(C="US", O="Darth Mail (Cert)", emailAddress="darth+cert@endmail.org",
                                  CN="caf\u00e9/x")
    assert dn.oneline(comps) == text


def test_seed_example_in_the_8_17_form():
    _, comps = openssl_oneline(C="US", ST="California", O="endmail.org", OU="private", CN="Darth Mail (Cert)",
                               emailAddress="darth+cert@endmail.org")
    assert dn.xtext_encode(dn.oneline(comps)) == (
        "/C=US/ST=California/O=endmail.org/OU=private/CN=Darth+20Mail+20+28Cert+29"
        "/emailAddress=darth+5C+2Bcert@endmail.org")


def test_decode_round_trip():
    for text in ["/C=US/CN=a b", "x+y", "<>()\"", "\u00e9"]:
        assert dn.xtext_decode(dn.xtext_encode(text)) == text


from tests.fuzzing import examples  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_names = st.sampled_from(["C", "ST", "L", "O", "OU", "CN", "emailAddress"])


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.tuples(_names, st.text(min_size=1, max_size=40)), max_size=8))
def test_encoded_dn_is_one_safe_token(components):
    """Whatever a certificate holds, the encoded DN is one access-map key: printable ASCII,
    no space, none of < > ( ) \" and every '+' starts a +XX escape."""
    encoded = dn.xtext_encode(dn.oneline(components))
    assert all(0x21 <= ord(ch) <= 0x7E for ch in encoded)
    assert not any(ch in encoded for ch in '<>()"\\\\')
    i = encoded.find("+")
    while i >= 0:
        assert all(c in "0123456789ABCDEF" for c in encoded[i + 1:i + 3]) and len(encoded) >= i + 3
        i = encoded.find("+", i + 3)
    assert dn.xtext_decode(encoded) == dn.oneline(components)

"""The TLS facts of one SMTP connection: sendmail's STARTTLS macros as a frozen value.

Field names are the macro names of sendmail's cf/README ("sendmail cf/README, STARTTLS"): ``verify``,
``cipher``, ``cipher_bits``, ``alg_bits``, ``tls_version``, ``cert_subject``,
``cert_issuer``, ``cn_subject``, ``cn_issuer``. ``cert_subject``/``cert_issuer`` carry
sendmail's ``+XX`` encoding, exactly as an access map key must spell them.

``verify`` takes sendmail's values and meanings:

    OK        verification succeeded
    NO        no cert presented
    NOT       no cert requested
    FAIL      cert presented but could not be verified
    NONE      STARTTLS has not been performed
    TEMP      temporary error occurred
    PROTOCOL  protocol error occurred (SMTP level)
    SOFTWARE  STARTTLS handshake failed
"""

from __future__ import annotations

from dataclasses import dataclass

VERIFY_VALUES = ("OK", "NO", "NOT", "FAIL", "NONE", "TEMP", "PROTOCOL", "SOFTWARE")


@dataclass(frozen=True)
class TLSFacts:
    verify: str = "NONE"
    tls_version: str = ""
    cipher: str = ""
    cipher_bits: int = 0
    alg_bits: int = 0
    cert_subject: str = ""
    cert_issuer: str = ""
    cn_subject: str = ""
    cn_issuer: str = ""
    # OpenSSL's text for the verification result ("ok", "self-signed certificate", ...).
    verifymsg: str = ""
    # SHA-256 of the peer certificate (hex, colon-free), '' without one.
    cert_fingerprint: str = ""
    # The first verification error as sendmail logs it after "TLS cert verify: " (the DN
    # is not +XX encoded there): "depth=0 /C=XX/CN=mx.example, state=0, reason=...".
    verify_failure: str = ""

    def __post_init__(self) -> None:
        if self.verify not in VERIFY_VALUES:
            raise ValueError(f"verify must be one of {VERIFY_VALUES}, not {self.verify!r}")

    @property
    def active(self) -> bool:
        """True once a TLS session is established on the connection."""
        return bool(self.tls_version)


NO_TLS = TLSFacts()


@dataclass(frozen=True)
class ConnectionFacts:
    """What policy may look at about a connection: who the peer is and its TLS facts.

    On the server side ``peer_name`` is sendmail's ``${client_name}`` (the verified
    reverse name, or ``[addr]`` without one) and ``peer_addr`` its ``${client_addr}``; on
    the delivery side they are ``${server_name}`` and ``${server_addr}``.
    """

    peer_name: str
    peer_addr: str
    helo: str = ""
    tls: TLSFacts = NO_TLS

"""RFC 8460 vocabulary: result types (§4.3), policy types (§4.4), and report-message marking.

Pure constants and predicates, no I/O. A value outside these sets is a programming error:
:meth:`mailward.tlsrpt.store.TlsRptStore.record` raises ``ValueError`` for it.

Loop avoidance (RFC 8460 §5.3: "sending MTAs MUST deliver reports despite any TLS-related
failures and SHOULD NOT include this SMTP session in the next report"): a report message that
:mod:`mailward.tlsrpt.send` queues carries :data:`REPORT_ORIGIN` as its envelope's
``client_name`` and ``helo`` and the header ``TLS-Report-Submitter``. Delivery tests
:func:`is_report_envelope` and then neither records the session nor lets a TLS policy failure
stop it.
"""

from __future__ import annotations

# ---- result types, RFC 8460 §4.3 -----------------------------------------------------------
# §4.3.1 negotiation failures
STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"
CERTIFICATE_EXPIRED = "certificate-expired"
CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"
VALIDATION_FAILURE = "validation-failure"
# §4.3.2 policy failures: DANE
TLSA_INVALID = "tlsa-invalid"
DNSSEC_INVALID = "dnssec-invalid"
DANE_REQUIRED = "dane-required"
# §4.3.2 policy failures: MTA-STS
STS_POLICY_FETCH_ERROR = "sts-policy-fetch-error"
STS_POLICY_INVALID = "sts-policy-invalid"
STS_WEBPKI_INVALID = "sts-webpki-invalid"

RESULT_TYPES = frozenset({
    STARTTLS_NOT_SUPPORTED, CERTIFICATE_HOST_MISMATCH, CERTIFICATE_EXPIRED, CERTIFICATE_NOT_TRUSTED,
    VALIDATION_FAILURE, TLSA_INVALID, DNSSEC_INVALID, DANE_REQUIRED, STS_POLICY_FETCH_ERROR,
    STS_POLICY_INVALID, STS_WEBPKI_INVALID,
})

# ---- policy types, RFC 8460 §4.4 ("policy-type") -------------------------------------------
POLICY_TLSA = "tlsa"
POLICY_STS = "sts"
POLICY_NONE = "no-policy-found"
POLICY_TYPES = frozenset({POLICY_TLSA, POLICY_STS, POLICY_NONE})

# ---- report messages (loop avoidance, RFC 8460 §5.3) ---------------------------------------
REPORT_ORIGIN = "tls-rpt"                   # envelope client_name and helo of a queued report
REPORT_HEADER = "TLS-Report-Submitter"      # §5.3 header every report message carries


def is_report_envelope(envelope) -> bool:
    """Is this spooled message a TLS report mailward generated? (Its delivery is not recorded,
    and it is delivered despite TLS failures, RFC 8460 §5.3.) Takes any object with a
    ``client_name`` attribute (:class:`mailward.spool.store.Envelope`)."""
    return getattr(envelope, "client_name", "") == REPORT_ORIGIN


def is_report_message(head: bytes) -> bool:
    """Does this header section carry ``TLS-Report-Submitter:``? (For callers that have the
    message's headers, not mailward's envelope.)"""
    return any(line.lower().startswith(b"tls-report-submitter:") for line in head.split(b"\n"))

"""MTA-STS (RFC 8461) for the sending side: is a recipient domain's MX host allowed, and must
TLS to it validate?

The API the delivery side uses::

    from mailward.mtasts import MtaSts, StsResult, StsPolicy, mx_allowed

    sts = MtaSts.from_config(config, resolver)          # once, at start-up
    result = await sts.policy_for("example.com")        # StsResult; never raises
    ok, reason = mx_allowed(result, "mx1.example.com")  # skip the host when not ok
    if result.enforced: ...                             # TLS required, certificate must validate
    await sts.refresh_due()                             # periodically, e.g. hourly

Parts, one idea each: :mod:`.record` (the ``_mta-sts`` TXT record), :mod:`.policy` (the policy
file, :class:`StsPolicy`, MX matching), :mod:`.fetch` (HTTPS), :mod:`.cache` (the JSON file),
:mod:`.lookup` (the discovery rules, :class:`MtaSts`, :func:`mx_allowed`). The parsing is
pure; the network and the file are at the edges. See docs/mta-sts.md.
"""

from mailward.mtasts.fetch import FETCH_ERROR, POLICY_INVALID, WEBPKI_INVALID, FetchError, FetchOptions
from mailward.mtasts.lookup import NO_POLICY, MtaSts, StsResult, mx_allowed
from mailward.mtasts.policy import PolicyError, StsPolicy, parse_policy
from mailward.mtasts.record import StsRecord, find_record

__all__ = ["MtaSts", "StsResult", "StsPolicy", "mx_allowed", "NO_POLICY", "FetchOptions", "FetchError",
           "FETCH_ERROR", "POLICY_INVALID", "WEBPKI_INVALID", "PolicyError", "parse_policy", "StsRecord",
           "find_record"]

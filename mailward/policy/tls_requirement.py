"""The one TLS decision of the sending side: which source decides, and what it asks for.

:func:`decide` takes what each source said about one delivery attempt to one host (facts
gathered by the caller: :mod:`mailward.deliver.tls_sources`) and returns one
:class:`TlsRequirement`. Pure: no I/O, no clock. The order of the sources (the first that
applies decides; the others are listed in ``consulted`` for ``mailward policy test``):

1. **access-map** — an explicit ``Try_TLS:``, ``TLS_Srv:`` entry for the host or a
   ``TLS_Rcpt:`` entry for a recipient ("sendmail cf/README, STARTTLS"). The map then
   decides and its checks apply exactly as they always did (the level shown is what the
   entry asks: ``VERIFY`` → verify, ``ENCR`` → encrypt, otherwise may). A message that
   carries REQUIRETLS skips this step (the map's checks still run, but they cannot weaken
   what the sender asked for, RFC 8689 §4.2.1).
2. **dane** — only when the MX RRset is DNSSEC-secure (RFC 7672 §2.2.1) and DANE is
   configured: a secure TLSA RRset with usable records → level ``dane`` (STARTTLS required,
   the chain must match the records, PKIX does not matter, RFC 7672 §2.2, §3); a secure RRset
   whose records are all unusable → level ``encrypt`` (TLS required, no authentication,
   RFC 7672 §2.2); a bogus or failed lookup → ``defer`` (4.7.5: never delivered in clear,
   RFC 7672 §2.1); a secure denial or an insecure answer → the next source.
3. **mta-sts** — the recipient domain's policy (RFC 8461 §5): ``enforce`` and the MX matches
   the policy's ``mx`` patterns → level ``sts`` (STARTTLS required, the certificate must
   verify by WebPKI and carry the MX host name, RFC 8461 §4.2); ``enforce`` and no match →
   ``skip`` this MX (RFC 8461 §4.1); ``testing`` → level ``sts`` with ``testing``: failures are
   logged and reported, and the message is delivered anyway (RFC 8461 §5); ``none``, no
   policy or a failed fetch without a cached policy → the next source.
4. **requiretls** — the message carries REQUIRETLS (RFC 8689 §4.2.1): the next hop must have
   been found by a DNSSEC-secure MX lookup or be allowed by the domain's MTA-STS policy, the
   session must be TLS with the certificate authenticated by DANE or by PKIX with the MX host
   name, and the server must offer REQUIRETLS after STARTTLS (then MAIL carries REQUIRETLS).
   A host named by the route file (a smarthost) was not found through DNS, so step one does not
   apply to it: its certificate must verify with its name (level ``verify``).
   When DANE or MTA-STS applied above, they keep their source and ``requiretls`` is added;
   an MTA-STS ``testing`` policy is then enforced. Without a secure MX and without MTA-STS the
   host cannot qualify: ``bounce`` with ``550 5.7.10`` once no other MX does (RFC 8689 §4.2.1).
5. **floor** — ``delivery.tls_floor``: ``may`` (opportunistic, sendmail's behaviour),
   ``encrypt`` or ``verify``.

``TLS-Required: No`` in the header (RFC 8689 §4.2.2) and a TLS report message (RFC 8460
§5.3) make the recipient domain's policies (DANE, MTA-STS) consulted but not enforced: the
caller passes ``relaxed`` with the reason; the access map and the floor are local policy and
still apply. With REQUIRETLS on the message, ``TLS-Required: No`` is ignored (RFC 8689 §4.2.2).

Failure behaviour: nothing raises for any combination of answers; an unknown state is
treated as "this source does not apply" except that a DANE state other than the known ones
defers (fail closed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Source = Literal["access-map", "dane", "mta-sts", "requiretls", "floor"]
Level = Literal["may", "encrypt", "verify", "dane", "sts"]
Action = Literal["connect", "skip", "defer", "bounce"]
FLOORS = ("may", "encrypt", "verify")
# levels that need STARTTLS to succeed (no clear fallback)
TLS_LEVELS = ("encrypt", "verify", "dane", "sts")


@dataclass(frozen=True)
class AccessView:
    """The access map entry that applies to this host or one of its recipients ('' key: none)."""
    key: str = ""          # "TLS_Srv:mx.example", "TLS_Rcpt:secure.example", "Try_TLS:mx.example"
    value: str = ""        # its right-hand side: "VERIFY:128", "ENCR", "NO", "OK"
    where: str = ""        # file:line


@dataclass(frozen=True)
class DaneView:
    """What DNS said for DANE. ``state``: "off" (no ``[dane] resolver``), "secure" (signed
    TLSA records found), "none" (secure denial), "insecure", "bogus" (SERVFAIL or no answer
    from the validating resolver). ``usable``: the secure RRset holds records an SMTP client
    may use (usages 2 and 3)."""
    state: str = "off"
    mx_secure: bool = False
    usable: bool = False
    detail: str = ""


@dataclass(frozen=True)
class StsView:
    """The recipient domain's MTA-STS policy. ``mode``: "off" (``[mta_sts]`` not enabled),
    "absent" (no ``_mta-sts`` record), "error" (fetch failed, nothing cached), "none",
    "testing", "enforce". ``mx_matches``: this MX matches the policy's patterns."""
    mode: str = "off"
    mx_matches: bool = False
    detail: str = ""


@dataclass(frozen=True)
class TlsRequirement:
    """The decision for one delivery attempt to one host.

    ``source``/``level`` as in the module docstring; ``detail`` one line saying why;
    ``testing`` an MTA-STS policy in testing mode (enforcement failures are logged, not
    acted on). ``action``: "connect" (go on with ``level``), "skip" (do not use this MX),
    "defer" (4xx for this host), "bounce" (this host cannot take the message: 5xx once no
    other host does). ``requiretls``: the message carries REQUIRETLS — the server must
    offer it after STARTTLS, and MAIL carries it. ``consulted``: (source, what it said) in
    order, for ``mailward policy test``."""
    source: Source
    level: Level
    detail: str
    testing: bool = False
    action: Action = "connect"
    requiretls: bool = False
    consulted: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def needs_tls(self) -> bool:
        """STARTTLS must succeed and the session be checked against ``level``: no delivery in
        clear, no fallback to clear. Never for the access map: its own checks (TLS_Srv,
        TLS_Rcpt) apply as they always did."""
        return self.level in TLS_LEVELS and not self.testing and self.source != "access-map"

    @property
    def key(self) -> tuple:
        """What a connection opened under this decision was checked for (connection reuse)."""
        return self.source, self.level, self.testing, self.requiretls, self.action

    @property
    def label(self) -> str:
        """``policy=dane, level=dane`` — how log lines and queue reasons name the decision."""
        text = f"policy={self.source}, level={self.level}"
        return text + (", sts=testing" if self.testing else "") + (", requiretls" if self.requiretls else "")


def access_level(value: str) -> Level:
    """The level an access map value asks for: VERIFY → verify, ENCR → encrypt, else may."""
    from mailward.policy.rhs import RHSError, parse_tls_requirement
    try:
        req = parse_tls_requirement(value)
    except RHSError:
        return "may"
    return {"VERIFY": "verify", "ENCR": "encrypt"}.get(req.kind, "may")


def decide(*, mx: str, access: AccessView | None = None, dane: DaneView = DaneView(), sts: StsView = StsView(),
           requiretls: bool = False, relaxed: str = "", floor: str = "may", routed: bool = False) -> TlsRequirement:
    """The one decision for a delivery attempt to the host ``mx`` (see the module docstring).
    ``relaxed``: why the recipient domain's policies are not enforced ("TLS-Required: No",
    "TLS report"), '' when they are; ignored with ``requiretls``. ``routed``: the host was
    named by the route file, not found by the recipient domain's MX lookup."""
    said: list[tuple[str, str]] = []
    if requiretls:
        relaxed = ""

    def done(source: Source, level: Level, detail: str, **kw) -> TlsRequirement:
        said.append((source, detail + " → decides"))
        return TlsRequirement(source, level, detail, requiretls=requiretls, consulted=tuple(said), **kw)

    # 1. the access map ("sendmail cf/README, STARTTLS")
    if access is not None and access.key:
        entry = f"{access.key} {access.value}" + (f" ({access.where})" if access.where else "")
        if not requiretls:
            return done("access-map", access_level(access.value), f"entry {entry}")
        said.append(("access-map", f"entry {entry}: its checks run, but REQUIRETLS is decided below"))
    else:
        said.append(("access-map", "no Try_TLS/TLS_Srv/TLS_Rcpt entry for this host or its recipients"))

    # 2. DANE (RFC 7672)
    if dane.state == "off":
        said.append(("dane", "not configured ([dane] resolver is empty)"))
    elif not dane.mx_secure:
        said.append(("dane", f"MX RRset of {mx} not DNSSEC-secure: TLSA not used (RFC 7672 §2.2.1)"))
    elif relaxed and dane.state in ("secure", "bogus"):
        said.append(("dane", f"{dane.detail or dane.state}: not enforced ({relaxed})"))
    elif dane.state == "secure" and dane.usable:
        return done("dane", "dane", dane.detail or "usable TLSA records: the chain must match them")
    elif dane.state == "secure":
        if not requiretls:
            return done("dane", "encrypt", dane.detail or "TLSA records all unusable: TLS required, "
                                                          "no authentication (RFC 7672 §2.2)")
        said.append(("dane", "TLSA records all unusable: cannot authenticate for REQUIRETLS"))
    elif dane.state in ("none", "insecure"):
        said.append(("dane", dane.detail or f"no usable DANE ({dane.state})"))
    else:   # bogus, or anything unknown: fail closed (RFC 7672 §2.1)
        return done("dane", "dane", dane.detail or "TLSA lookup failed (bogus DNSSEC)", action="defer")

    # 3. MTA-STS (RFC 8461)
    if sts.mode in ("enforce", "testing") and relaxed:
        said.append(("mta-sts", f"{sts.mode}: not enforced ({relaxed})"))
    elif sts.mode == "enforce" or (sts.mode == "testing" and requiretls):
        how = "enforce" if sts.mode == "enforce" else "testing, enforced for REQUIRETLS"
        if not sts.mx_matches:
            why = sts.detail or f"{mx} matches no mx pattern of the policy"
            return done("mta-sts", "sts", f"{how}: {why} (RFC 8461 §4.1)", action="skip")
        return done("mta-sts", "sts", f"{how}: {sts.detail or mx + ' allowed by the policy'}")
    elif sts.mode == "testing":
        why = "" if sts.mx_matches else " (testing: not enforced)"
        return done("mta-sts", "sts", f"testing: {sts.detail or 'policy in testing mode'}{why}", testing=True)
    else:
        said.append(("mta-sts", sts.detail or {"off": "not enabled ([mta_sts] enabled = false)",
                                               "absent": "no _mta-sts record", "none": "policy mode none",
                                               "error": "no valid policy"}.get(sts.mode, sts.mode)))

    # 4. REQUIRETLS on the message (RFC 8689 §4.2.1)
    if requiretls:
        if dane.mx_secure:
            return done("requiretls", "verify", "REQUIRETLS: MX found by a DNSSEC-secure lookup; the certificate "
                                                "must verify (PKIX) with the host name")
        if routed:
            return done("requiretls", "verify", "REQUIRETLS: host named by the route file (no MX lookup to "
                                                "secure); the certificate must verify (PKIX) with the host name")
        return done("requiretls", "verify", "REQUIRETLS: no DNSSEC-secure MX and no MTA-STS policy for this "
                                            "host", action="bounce")
    said.append(("requiretls", "not on this message"))

    # 5. the floor (delivery.tls_floor)
    level: Level = floor if floor in FLOORS else "may"   # type: ignore[assignment]
    note = f"delivery.tls_floor = {level}" + (f" ({relaxed})" if relaxed else "")
    return done("floor", level, note)

"""The sources of the sending side's TLS decision, asked for one hop; the session checks; TLS-RPT.

:class:`TlsSources` is what :class:`~mailward.deliver.outbound.Outbound` asks before it
connects to a hop: :meth:`TlsSources.for_hop` gathers what each source says — the access map
(:meth:`mailward.policy.deliver.DeliveryPolicy.access_view`), DANE (:func:`mailward.dane.tlsa_lookup`
through the validating resolvers of ``[dane] resolver``), the recipient domain's MTA-STS policy
(:class:`mailward.mtasts.lookup.MtaSts`), REQUIRETLS and ``TLS-Required: No`` from the message —
and returns :class:`HopTls`: the one decision (:func:`mailward.policy.tls_requirement.decide`)
with the DANE records and the MTA-STS result that the session checks need.

DANE and MTA-STS apply only to hosts found by the MX (or implicit MX) lookup of the
recipient domain itself: a host named by the route file is the administrator's choice and
is governed by the access map and the floor (RFC 7672 §2.2.1 and RFC 8461 §4 define their
policies for the recipient domain's MX hosts).

:func:`check_session` (pure) says whether an established TLS session meets the decision:
DANE → the chain matches the usable TLSA records (:func:`mailward.dane.match_chain`, names: the
MX host name and the recipient domain, RFC 7672 §3.2.2; PKIX is not looked at); ``sts`` and
``verify`` → verify=OK against ``tls.ca_file``/``ca_path`` and the MX host name in the
certificate (:mod:`mailward.tls.names`); ``encrypt`` → TLS alone.

:meth:`TlsSources.record` counts the session for TLS-RPT (RFC 8460 §4.3, §4.4): policy type
``tlsa`` when DANE decided, ``sts`` when MTA-STS did, ``no-policy-found`` otherwise; never for
a TLS report message itself (RFC 8460 §5.3, :func:`mailward.tlsrpt.results.is_report_envelope`).

Failure behaviour: :meth:`TlsSources.for_hop` never raises (a DANE lookup failure is the
``bogus`` state, which defers; MTA-STS discovery never raises); :meth:`record` logs and
swallows a recorder error — counting must never stop a delivery.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailward import log
from mailward.policy.tls_requirement import DaneView, StsView, TlsRequirement, decide

NO_POLICY_FOUND = "no-policy-found"


@dataclass(frozen=True)
class HopTls:
    """The decision for one hop and what its checks need."""
    requirement: TlsRequirement
    domain: str = ""
    dane: object | None = None       # mailward.dane.DaneLookup when DANE was asked
    sts: object | None = None        # mailward.mtasts.lookup.StsResult when MTA-STS was asked
    report: bool = False             # the message is a TLS report: do not count its session
    mx_mismatch: str = ""            # MTA-STS testing: this MX is not in the policy (logged, not enforced)

    @property
    def policy_type(self) -> str:
        """RFC 8460 §4.4 policy-type for this session."""
        return {"dane": "tlsa", "mta-sts": "sts"}.get(self.requirement.source, NO_POLICY_FOUND)

    def policy_strings(self) -> list[str]:
        if self.requirement.source == "dane" and self.dane is not None:
            return [str(r) for r in getattr(self.dane, "records", ())]
        if self.requirement.source == "mta-sts" and getattr(self.sts, "policy", None) is not None:
            return [line for line in self.sts.policy.text().splitlines() if line]
        return []


@dataclass(frozen=True)
class SessionCheck:
    """The verdict of :func:`check_session`: ``ok``; ``fields`` for the STARTTLS=client line
    (``dane=verified``); ``failure`` an RFC 8460 §4.3 result type when not ok; ``why`` one line."""
    ok: bool
    fields: dict
    failure: str = ""
    why: str = ""


def floor_requirement(floor: str = "may") -> TlsRequirement:
    return decide(mx="", floor=floor)


def _relaxed(message_relaxed: str, report: bool) -> str:
    if report:
        return "TLS report message (RFC 8460 §5.3)"
    return message_relaxed


class TlsSources:
    def __init__(self, policy=None, *, floor: str = "may", dane_resolver=None, mta_sts=None, recorder=None):
        self.policy = policy              # DeliveryPolicy (the access map), or None
        self.floor = floor
        self.dane_resolver = dane_resolver
        self.mta_sts = mta_sts            # MtaSts, or None when [mta_sts] is not enabled
        self.recorder = recorder          # TlsRptStore, or None when [tls_rpt] is not enabled

    async def for_hop(self, hop, transfer) -> HopTls:
        try:
            return await self._for_hop(hop, transfer)
        except Exception as err:   # a bug must not deliver in clear what a policy forbids: defer
            log.event(40, transfer.qid, relay=hop.name, stat=f"TLS policy error: {err!r}")
            req = TlsRequirement("floor", "encrypt", f"TLS policy error: {type(err).__name__}", action="defer")
            return HopTls(req, getattr(transfer, "domain", ""))

    async def _for_hop(self, hop, transfer) -> HopTls:
        domain = getattr(transfer, "domain", "")
        rcpts = [r.address for r in transfer.recipients]
        access = self.policy.access_view(hop.name, hop.addr, rcpts) if self.policy is not None else None
        requiretls = any(k.upper() == "REQUIRETLS" for k in transfer.sender_params)
        report = bool(getattr(transfer, "report", False))
        relaxed = _relaxed(getattr(transfer, "relaxed", ""), report)
        by_mx = bool(getattr(transfer, "by_mx", False)) and bool(domain)
        # RFC 8460 §5.3: a TLS report is delivered despite TLS failures — the floor included
        floor = "may" if report else self.floor
        if access is not None and not requiretls:   # the map decides: nothing else is asked
            return HopTls(decide(mx=hop.name, access=access, floor=floor), domain, report=report)
        dane_view, lookup = DaneView(), None
        if self.dane_resolver is not None:
            secure = bool(getattr(hop, "secure", False)) and by_mx
            dane_view = DaneView("none", secure, detail="" if by_mx else "host named by the route file")
            if secure:
                from mailward.dane import tlsa_lookup
                lookup = await tlsa_lookup(self.dane_resolver, hop.name, hop.port)
                dane_view = DaneView(lookup.state, True, lookup.authenticate, lookup.reason)
        sts_view, result = StsView(), None
        if self.mta_sts is not None:
            if by_mx:
                result = await self.mta_sts.policy_for(domain)
                policy = result.policy
                if policy is None:
                    mode = "error" if result.failure else "absent"
                    sts_view = StsView(mode, False, f"no policy ({result.error})" if result.error else "")
                else:
                    pattern = policy.matching_pattern(hop.name)
                    detail = (f"{hop.name} matches mx {pattern} (policy id {policy.id}, {result.source})"
                              if pattern else f"{hop.name} matches no mx of the policy ({', '.join(policy.mx)})")
                    sts_view = StsView(policy.mode, pattern is not None, detail)
            else:
                sts_view = StsView("absent", False, "host named by the route file")
        req = decide(mx=hop.name, access=access, dane=dane_view, sts=sts_view, requiretls=requiretls,
                     relaxed=relaxed, floor=floor, routed=not by_mx)
        mismatch = sts_view.detail if req.testing and not sts_view.mx_matches else ""
        return HopTls(req, domain, lookup, result, report, mismatch)

    def record(self, hop_tls: HopTls, hop, *, failure: str = "", why: str = "", helo: str = "") -> None:
        """Count one session for TLS-RPT (success when ``failure`` is '')."""
        if self.recorder is None or hop_tls.report or not hop_tls.domain:
            return
        if not failure and hop_tls.mx_mismatch:   # MTA-STS testing, MX not in the policy: one failed session
            failure, why = "validation-failure", hop_tls.mx_mismatch
        try:
            self.recorder.record(policy_domain=hop_tls.domain, policy_type=hop_tls.policy_type,
                                 policy_strings=hop_tls.policy_strings(), mx_host=hop.name.strip("[]"),
                                 success=not failure, result_type=failure or None, receiving_ip=hop.addr,
                                 receiving_mx_hostname=hop.name.strip("[]"), receiving_mx_helo=helo,
                                 failure_reason_code=why[:200] if failure else "")
        except Exception as err:
            log.event(40, None, tls_rpt="not recorded", relay=hop.name, reason=repr(err))


def check_session(hop_tls: HopTls, hop, tls, chain: list[bytes]) -> SessionCheck:
    """Does this established TLS session (``tls``: :class:`~mailward.tls.facts.TLSFacts`,
    ``chain``: the peer's certificates, leaf first, DER) meet the decision? Pure."""
    req = hop_tls.requirement
    name = hop.name.strip("[]")
    if req.source == "access-map":   # TLS_Srv / TLS_Rcpt judge it, as they always did
        return SessionCheck(True, {})
    if req.level == "dane":
        from mailward.dane import match_chain, reference_names
        records = getattr(hop_tls.dane, "usable", ())   # level dane means there are usable ones
        # RFC 7672 §3.2.2: the MX name, the next-hop domain, and the CNAME-expanded name whose TLSA was used
        names = reference_names(name, hop_tls.domain, hop_tls.dane)
        m = match_chain(records, chain, names)
        if m.ok:
            return SessionCheck(True, {"policy": "dane", "dane": "verified"}, why=m.reason)
        return SessionCheck(False, {"policy": "dane", "dane": "failed"}, m.failure or "validation-failure",
                            m.reason)
    if req.level in ("sts", "verify"):
        fields = {"policy": req.source}
        if req.source == "mta-sts":
            fields["sts"] = "testing" if req.testing else "enforce"
        else:
            fields["level"] = req.level
        problem, failure = _pkix_problem(tls, chain, name)
        if problem:
            if req.source == "mta-sts" and req.testing:
                fields["sts"] = "testing-failed"
            return SessionCheck(False, fields, failure, problem)
        return SessionCheck(True, fields, why=f"certificate verified for {name}")
    if req.level == "encrypt":
        # DANE with only unusable TLSA records: TLS without authentication, reported as
        # tlsa-invalid (RFC 7672 §2.2, RFC 8460 §4.3.2.1)
        invalid = "tlsa-invalid" if req.source == "dane" else ""
        return SessionCheck(True, {"policy": req.source, "level": "encrypt"}, invalid)
    return SessionCheck(True, {})


def _pkix_problem(tls, chain: list[bytes], name: str) -> tuple[str, str]:
    """('', '') when verify=OK and the leaf carries ``name``; else (why, RFC 8460 §4.3 type)."""
    from mailward.tls.names import cert_matches_host
    if tls.verify != "OK":
        msg = tls.verifymsg or tls.verify
        kind = "certificate-expired" if "expired" in msg else "certificate-not-trusted"
        if tls.verify != "FAIL":
            kind = "validation-failure"
        return f"certificate not verified (verify={tls.verify}: {msg})", kind
    if not chain or not cert_matches_host(chain[0], name):
        return f"certificate does not name {name}", "certificate-host-mismatch"
    return "", ""


def requirement_fields(req: TlsRequirement) -> dict:
    """Fields for a log line when the session checks did not add their own."""
    if req.source == "access-map" or (req.source == "floor" and req.level == "may"):
        return {}
    out = {"policy": req.source, "level": req.level}
    if req.testing:
        out["sts"] = "testing"
    return out

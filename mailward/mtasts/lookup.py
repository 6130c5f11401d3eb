"""MTA-STS policy discovery for a recipient domain (RFC 8461 §3, §5.1): the one entry point.

Contract: ``await MtaSts.policy_for(domain)`` never raises and returns :class:`StsResult`:
the policy that applies (or None) and where it came from. The delivery side then asks
:func:`mx_allowed` whether an MX host may be used, and in ``enforce`` mode must also insist on
TLS with a certificate that validates for the MX host name (RFC 8461 §4.2).

The rules, in order:

1. The TXT record ``_mta-sts.<domain>`` is looked up (mailward's resolver).
2. A valid record whose id equals the fresh cached policy's id: the cached policy
   (``source="cache"``), no fetch.
3. A valid record with another id, or nothing cached: the policy is fetched
   (``source="fetched"``) and cached for its ``max_age``.
4. A fetch that fails: the fresh cached policy if there is one (``source="cache"``, with
   ``error`` and ``failure`` set so the failure can be reported), else no policy
   (``source="none"``, ``error``/``failure`` set): RFC 8461 §3.3 says to deliver as if the
   domain had no policy when no fresh one is cached.
5. No record, an invalid record, or a failed TXT lookup: the fresh cached policy if there is
   one (a record removed or an attacker suppressing DNS does not cancel a cached policy before
   its max_age, RFC 8461 §3.3 and §10.2), else no policy.

``failure`` is an RFC 8460 §4.3 result type (``sts-policy-fetch-error``,
``sts-policy-invalid``, ``sts-webpki-invalid``) when a fetch went wrong, else None.

Refreshing (RFC 8461 §3.3: "MTAs SHOULD proactively refresh cached policies before they
expire", suggested once per day; §10.2: an attacker must then block discovery for a whole
max_age): :meth:`MtaSts.refresh_due` fetches again every cached policy fetched
more than ``refresh_after`` seconds ago (at most half its max_age), whether or not its id
changed; a success restarts its max_age, a failure keeps the cached one. The runner calls it
periodically (e.g. hourly); it never raises either.

A fetch that failed is not tried again for the same domain and id for ``fetch_retry``
seconds (``mta_sts.fetch_retry``, default 300): meanwhile the same answer is given at once, so
a dead policy host does not make every delivery wait for ``fetch_timeout`` (the MTA-STS
drafts, draft-ietf-uta-mta-sts, suggested five minutes or more per id). A new id is fetched
at once.

Lookups for one domain that overlap share one TXT lookup and one fetch. Every call looks the
TXT record up again (the resolver's cache honours its TTL), so calling :meth:`policy_for`
before giving up on a message is the check for a new policy that RFC 8461 §5.1 requires
before a delivery refused by an enforce policy may fail permanently.

Log lines (sendmail style, see mailward.log)::

    mta_sts=example.com, source=fetched, mode=enforce, id=20260101, max_age=604800, mx=mx1.example.com
    mta_sts=example.com, failure=sts-webpki-invalid, kept=cache, error: https://...: certificate ...
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from mailward import log
from mailward.dns import DNSError, Resolver
from mailward.mtasts.cache import PolicyCache
from mailward.mtasts.fetch import FetchError, FetchOptions, fetch_policy, tls_context
from mailward.mtasts.policy import StsPolicy, normalize_host
from mailward.mtasts.record import find_record

CACHE_FILE_NAME = "mta-sts-cache.json"


@dataclass(frozen=True)
class StsResult:
    """The MTA-STS policy that applies to a domain, and where it came from."""
    policy: StsPolicy | None
    source: Literal["cache", "fetched", "none"]
    error: str | None = None
    failure: str | None = None      # RFC 8460 §4.3 result type when a fetch went wrong

    @property
    def enforced(self) -> bool:
        """True when the policy's mode is enforce: only matching MX hosts, TLS with a valid
        certificate for the MX name, no fallback to clear text (RFC 8461 §5)."""
        return self.policy is not None and self.policy.mode == "enforce"


NO_POLICY = StsResult(None, "none")


def mx_allowed(result: StsResult, mx_host: str) -> tuple[bool, str]:
    """May mail go to ``mx_host`` under this result (RFC 8461 §4.1, §5)? (ok, reason).

    * no policy, or mode ``none``: ok;
    * the host matches an mx pattern: ok (in enforce mode TLS must still validate);
    * no match, mode ``testing``: ok, and the reason says to report it (RFC 8460);
    * no match, mode ``enforce``: not ok, the reason names the host and the patterns.
    """
    policy = result.policy
    if policy is None:
        return True, "no MTA-STS policy"
    if policy.mode == "none":
        return True, "MTA-STS policy mode none"
    pattern = policy.matching_pattern(mx_host)
    if pattern is not None:
        return True, f"MTA-STS {policy.mode}: {mx_host} matches mx {pattern}"
    patterns = ", ".join(policy.mx)
    if policy.mode == "testing":
        return True, f"MTA-STS testing: {mx_host} matches no mx of the policy ({patterns}); delivered, report only"
    return False, f"MTA-STS enforce: {mx_host} matches no mx of the policy ({patterns})"


class MtaSts:
    """Policy discovery with a cache; see the module docstring for the rules."""

    def __init__(self, resolver: Resolver, *, options: FetchOptions | None = None,
                 cache_file: Path | str = "", enabled: bool = True, refresh_after: float = 86400.0,
                 clock=time.time, cache_read_only: bool = False, fetch_retry: float = 300.0):
        self.resolver = resolver
        self.options = options or FetchOptions()
        self.enabled = enabled
        self.refresh_after = refresh_after
        self.fetch_retry = fetch_retry
        # domain -> (record id, when, the result): a failed fetch, not tried again for that id
        # before fetch_retry seconds
        self._failed: dict[str, tuple[str, float, StsResult]] = {}
        self.clock = clock
        self.cache = PolicyCache(cache_file, clock=clock, read_only=cache_read_only)
        self._context: ssl.SSLContext | None = None
        self._inflight: dict[str, asyncio.Future] = {}

    @classmethod
    def from_config(cls, config, resolver: Resolver | None = None, *,
                    cache: Literal["write", "read", "off"] = "write") -> "MtaSts":
        """Built from ``[mta_sts]`` (and ``delivery.resolver``/``dns_timeout`` when no resolver
        is given). An empty ``mta_sts.cache_file`` means ``<spool.directory>/mta-sts-cache.json``.
        ``cache``: "write" (the delivery side), "read" (use the file, never write it: a command
        run by another user must not take the file from the server), "off" (memory only)."""
        s = config.mta_sts
        resolver = resolver or Resolver(config.delivery.resolver, config.delivery.dns_timeout)
        cache_file = s.cache_file or Path(config.spool.directory) / CACHE_FILE_NAME
        options = FetchOptions(ca_file=s.ca_file, timeout=s.fetch_timeout, max_size=s.max_policy_size,
                               port=s.https_port)
        return cls(resolver, options=options, cache_file="" if cache == "off" else cache_file,
                   enabled=s.enabled, refresh_after=s.refresh_after, cache_read_only=cache == "read",
                   fetch_retry=s.fetch_retry)

    @property
    def context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = tls_context(self.options.ca_file)
        return self._context

    async def policy_for(self, domain: str) -> StsResult:
        """The policy that applies to mail for ``domain`` (never raises)."""
        if not self.enabled:
            return NO_POLICY
        name = normalize_host(domain)
        if name is None:
            return StsResult(None, "none", f"{domain!r} is not a domain name")
        task = self._inflight.get(name)
        if task is None:
            task = asyncio.ensure_future(self._guarded(name))
            self._inflight[name] = task
            task.add_done_callback(lambda _t, n=name: self._inflight.pop(n, None))
        return await asyncio.shield(task)

    async def _guarded(self, domain: str, *, refresh: bool = False) -> StsResult:
        """_discover, with the contract kept even if a bug raises: the cached policy (or none)
        and the error logged, never an exception into the delivery."""
        try:
            return await self._discover(domain, refresh=refresh)
        except Exception as err:  # noqa: BLE001 - the contract says policy_for never raises
            cached = self.cache.get(domain)
            text = f"internal error: {type(err).__name__}: {err}"
            log.event(logging.ERROR, mta_sts=domain, kept="cache" if cached else "none", **{"error:": text})
            return StsResult(cached, "cache" if cached else "none", text)

    async def _discover(self, domain: str, *, refresh: bool = False) -> StsResult:
        cached = self.cache.get(domain)
        try:
            txts = await self.resolver.txt(f"_mta-sts.{domain}")
        except DNSError as err:
            return self._without_record(domain, cached, f"TXT lookup of _mta-sts.{domain} failed: {err}")
        found = find_record(txts)
        if found.record is None:
            return self._without_record(domain, cached, found.problem or None)
        if cached is not None and cached.id == found.record.id and not refresh:
            log.event(logging.DEBUG, mta_sts=domain, source="cache", mode=cached.mode, id=cached.id)
            return StsResult(cached, "cache")
        recent = self._recent_failure(domain, found.record.id)
        if recent is not None:
            return StsResult(cached, "cache" if cached is not None else "none", recent.error, recent.failure)
        try:
            policy = await fetch_policy(domain, found.record.id, self.resolver, self.options, self.context)
        except FetchError as err:
            kept = "cache" if cached is not None else "none"
            log.event(logging.WARNING, mta_sts=domain, failure=err.failure, kept=kept, **{"error:": str(err)})
            result = StsResult(cached, kept, str(err), err.failure)
            self._remember_failure(domain, found.record.id, result)
            return result
        self._failed.pop(domain, None)
        policy = replace(policy, fetched_at=self.clock())
        self.cache.put(domain, policy)
        log.notice(mta_sts=domain, source="fetched", mode=policy.mode, id=policy.id, max_age=policy.max_age,
                   mx="|".join(policy.mx) or None)
        return StsResult(policy, "fetched")

    def _recent_failure(self, domain: str, ident: str) -> StsResult | None:
        """The failed fetch of this domain and id if it is younger than fetch_retry seconds."""
        entry = self._failed.get(domain)
        if entry is None or entry[0] != ident:
            return None
        age = self.clock() - entry[1]
        if age >= self.fetch_retry:
            return None
        log.event(logging.DEBUG, mta_sts=domain, failure=entry[2].failure, age=f"{age:.0f}s", fetch="not retried yet")
        return entry[2]

    def _remember_failure(self, domain: str, ident: str, result: StsResult) -> None:
        if self.fetch_retry <= 0:
            return
        now = self.clock()
        for name in [d for d, (_, at, _) in self._failed.items() if now - at >= self.fetch_retry]:
            del self._failed[name]            # bounded by the domains that failed recently
        self._failed[domain] = (ident, now, result)

    def _without_record(self, domain: str, cached: StsPolicy | None, problem: str | None) -> StsResult:
        if problem:
            log.event(logging.WARNING if cached is None else logging.INFO, mta_sts=domain,
                      kept="cache" if cached else "none", **{"error:": problem})
        if cached is not None:
            return StsResult(cached, "cache", problem)
        return StsResult(None, "none", problem)

    def due(self, now: float | None = None) -> list[str]:
        """The cached domains whose policy should be fetched again now."""
        now = self.clock() if now is None else now
        out = []
        for domain in self.cache.domains():
            policy = self.cache.get(domain)
            if policy is not None and now - policy.fetched_at >= min(self.refresh_after, policy.max_age / 2):
                out.append(domain)
        return out

    async def refresh_due(self) -> dict[str, StsResult]:
        """Fetch again the cached policies that are due (see the module docstring); never raises."""
        if not self.enabled:
            return {}
        results = {}
        for domain in self.due():
            results[domain] = await self._guarded(domain, refresh=True)
        return results

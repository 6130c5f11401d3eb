"""The MTA-STS policy cache: policies kept for their max_age, across restarts (RFC 8461 §3.3).

Contract: :class:`PolicyCache` maps a recipient domain to the last valid
:class:`~mailward.mtasts.policy.StsPolicy` fetched for it. :meth:`PolicyCache.get` returns a
policy only while it is fresh (``fetched_at + max_age`` is in the future); :meth:`put` and
:meth:`drop` change the map and write the file at once.

The file (``mta_sts.cache_file``) is JSON::

    {"version": 1, "policies": {"example.com": {"mode": "enforce", "mx": ["mx.example.com"],
                                                "max_age": 604800, "id": "20260101", "fetched_at": 1.7e9}}}

It is written atomically: a temporary file in the same folder, flushed and fsynced, renamed
over the old one, and the folder fsynced, so a crash leaves the old file or the new one,
never half of one. Expired policies are left out when it is written.

Failure behaviour: a missing file is an empty cache. A file that cannot be read or is not
what is shown above (bad JSON, wrong types, an invalid entry) is logged as one warning naming
the file and ignored (entirely, or that one entry): the cache starts empty and the next
fetch rewrites it. A write that fails is logged as a warning and the policy is kept in memory.
Nothing raises.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from mailward import log
from mailward.fsutil import write_atomically
from mailward.mtasts.policy import MAX_AGE_LIMIT, MODES, StsPolicy

FORMAT_VERSION = 1


class PolicyCache:
    """Fresh policies by domain, kept in memory and (when ``path`` is set) in a JSON file."""

    def __init__(self, path: Path | str = "", *, clock=time.time, read_only: bool = False):
        self.path = Path(path) if path else None
        self.clock = clock
        self.read_only = read_only      # load the file but never write it (mailward mta-sts check)
        self._policies: dict[str, StsPolicy] = {}
        if self.path is not None:
            self._policies = load_file(self.path, clock())

    def get(self, domain: str) -> StsPolicy | None:
        """The fresh policy of ``domain``, or None (none cached, or expired)."""
        policy = self._policies.get(domain)
        if policy is not None and not policy.fresh(self.clock()):
            return None
        return policy

    def domains(self) -> list[str]:
        return sorted(self._policies)

    def put(self, domain: str, policy: StsPolicy) -> None:
        self._policies[domain] = policy
        self.save()

    def drop(self, domain: str) -> None:
        if self._policies.pop(domain, None) is not None:
            self.save()

    def save(self) -> None:
        """Write the fresh policies to the file (atomically); a failure is logged, not raised."""
        if self.path is None or self.read_only:
            return
        now = self.clock()
        data = {"version": FORMAT_VERSION,
                "policies": {d: _entry(p) for d, p in sorted(self._policies.items()) if p.fresh(now)}}
        try:
            write_atomically(self.path, json.dumps(data, indent=1, sort_keys=True).encode() + b"\n")
        except OSError as err:
            log.event(logging.WARNING, mta_sts="cache", file=str(self.path),
                      **{"error:": f"cannot write the policy cache: {err.strerror or err}"})


def _entry(p: StsPolicy) -> dict:
    return {"mode": p.mode, "mx": list(p.mx), "max_age": p.max_age, "id": p.id, "fetched_at": p.fetched_at}


def _policy(entry) -> StsPolicy:
    """One JSON entry → StsPolicy; ValueError when it is not one."""
    if not isinstance(entry, dict):
        raise ValueError("not an object")
    mode, mx, age, ident, at = (entry.get(k) for k in ("mode", "mx", "max_age", "id", "fetched_at"))
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}")
    if not isinstance(mx, list) or not all(isinstance(m, str) for m in mx):
        raise ValueError("mx is not a list of names")
    if not isinstance(age, int) or isinstance(age, bool) or not 0 <= age <= MAX_AGE_LIMIT:
        raise ValueError(f"max_age {age!r}")
    if not isinstance(ident, str):
        raise ValueError("id is not a string")
    if not isinstance(at, (int, float)) or isinstance(at, bool):
        raise ValueError("fetched_at is not a number")
    return StsPolicy(mode, tuple(mx), age, ident, float(at))


def load_file(path: Path, now: float) -> dict[str, StsPolicy]:
    """The fresh policies in ``path``; {} (after one warning) when it cannot be used."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as err:
        _warn(path, f"cannot read it: {err.strerror or err}")
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        _warn(path, f"not JSON ({err})")
        return {}
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION or not isinstance(
            data.get("policies"), dict):
        _warn(path, f"not a version {FORMAT_VERSION} MTA-STS policy cache")
        return {}
    policies: dict[str, StsPolicy] = {}
    for domain, entry in data["policies"].items():
        try:
            policy = _policy(entry)
        except ValueError as err:
            _warn(path, f"entry {domain!r} ignored: {err}")
            continue
        if policy.fresh(now):
            policies[domain] = policy
    return policies


def _warn(path: Path, text: str) -> None:
    log.event(logging.WARNING, mta_sts="cache", file=str(path),
              **{"error:": f"{text}; the cache starts empty and will be rewritten"})

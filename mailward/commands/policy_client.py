"""``mailward policy test --role client --domain D``: the sending side's one TLS decision, explained.

For each MX host of D (or ``--mx``), prints the sources in the order
:func:`mailward.policy.tls_requirement.decide` consults them, what each said, the one that
decides, the level and what delivery will do. Online (the default) the answers come from
the same code delivery uses (:class:`mailward.deliver.tls_sources.TlsSources`: DNS through
``[dane] resolver`` or ``delivery.resolver``, the MTA-STS fetch and cache); with
``--offline KEY=VALUE ...`` they are given on the command line and nothing is asked (the
keys are in ``mailward policy test --help``).

Errors (a bad --offline item, a configuration or map that cannot be read, a DNS failure for
the MX lookup) print one line and exit 2.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from mailward.config import ConfigError
from mailward.policy.tls_requirement import DaneView, StsView, TlsRequirement, decide

OFFLINE_KEYS = ("mx", "mx-secure", "tlsa", "sts", "sts-mx")
TLSA_STATES = ("secure", "unusable", "none", "insecure", "bogus")
STS_MODES = ("enforce", "testing", "none", "absent", "error")
_WHAT = {"connect": "connect; {needs}", "skip": "do not use this MX (the next one is tried)",
         "defer": "defer: this host is not used now (454 4.7.5), never in clear",
         "bounce": "this host cannot take a REQUIRETLS message: 550 5.7.10 once no MX qualifies"}


def _config(args):
    """The configuration when it exists (offline, defaults do without one)."""
    from mailward import config as config_mod
    path = Path(args.config)
    if not path.exists() and args.offline is not None:
        return None
    return config_mod.load(path)


def _policy(args, config):
    """DeliveryPolicy for --map, else the config's policy.access_map, else no map."""
    from mailward.policy.accessmap import AccessMapError
    from mailward.policy.deliver import DeliveryPolicy
    from mailward.policy.holder import AccessMapHolder
    name = args.map or (str(config.policy.access_map) if config is not None and config.policy.access_map else "")
    if not name:
        return DeliveryPolicy(None), "(none)"
    try:
        return DeliveryPolicy(AccessMapHolder.shared(name), args.tls_perm_err), name
    except AccessMapError as err:
        raise ConfigError(str(err)) from None


def parse_offline(items: list[str]) -> dict[str, str]:
    """``["mx=a,b", "tlsa=none"]`` → {"mx": "a,b", "tlsa": "none"}; ValueError naming the item."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in OFFLINE_KEYS:
            raise ValueError(f"--offline {item!r}: expected KEY=VALUE with KEY one of {', '.join(OFFLINE_KEYS)}")
        value = value.strip()
        if key == "mx-secure" and value.lower() not in ("yes", "no"):
            raise ValueError(f"--offline {item!r}: mx-secure is yes or no")
        if key == "tlsa" and value.lower() not in TLSA_STATES:
            raise ValueError(f"--offline {item!r}: tlsa is one of {', '.join(TLSA_STATES)}")
        if key == "sts" and value.lower() not in STS_MODES:
            raise ValueError(f"--offline {item!r}: sts is one of {', '.join(STS_MODES)}")
        out[key] = value
    return out


def offline_decisions(args, answers: dict[str, str], policy, floor: str) -> list[tuple[str, TlsRequirement]]:
    """The decision for each MX from the answers given (pure apart from the access map)."""
    from mailward.mtasts.policy import pattern_matches
    hosts = [h for h in (answers.get("mx") or args.mx or f"mx.{args.domain}").split(",") if h]
    if args.mx:
        hosts = [args.mx]
    secure = answers.get("mx-secure", "no").lower() == "yes"
    patterns = [p for p in answers.get("sts-mx", "").split(",") if p]
    rcpts = [f"postmaster@{args.domain}"] + list(args.rcpt)
    out = []
    for host in hosts:
        tlsa = answers.get("tlsa", "").lower()
        if not tlsa:
            dane = DaneView()
        else:
            state = "secure" if tlsa == "unusable" else tlsa
            dane = DaneView(state, secure, tlsa == "secure", f"TLSA: {tlsa} (given)")
        mode = answers.get("sts", "").lower()
        if not mode:
            sts = StsView()
        else:
            hit = next((p for p in patterns if pattern_matches(p, host)), None) if patterns else host
            detail = (f"{host} matches mx {hit} (policy given)" if hit else
                      f"{host} matches no mx of the policy ({', '.join(patterns)})")
            sts = StsView(mode, hit is not None, detail if mode in ("enforce", "testing") else f"policy {mode} (given)")
        access = policy.access_view(host, "", rcpts)
        relaxed = "TLS-Required: No" if args.tls_required_no else ""
        out.append((host, decide(mx=host, access=access, dane=dane, sts=sts, requiretls=args.requiretls,
                                 relaxed=relaxed, floor=floor)))
    return out


async def online_decisions(args, config, policy, floor: str) -> list[tuple[str, TlsRequirement]]:
    """The decision for each MX as delivery would take it now (DNS, MTA-STS fetch)."""
    from mailward.deliver.outbound import PendingRecipient, Transfer
    from mailward.deliver.routes import next_hops
    from mailward.deliver.runner import dane_resolver, mta_sts
    from mailward.deliver.tls_sources import TlsSources
    from mailward.dns import Resolver
    if config is None:
        raise ConfigError(f"{args.config}: no configuration to take the resolvers from; give -c FILE or --offline")
    d = config.delivery
    secure = dane_resolver(config)
    resolver = secure or Resolver(list(d.resolver), timeout=d.dns_timeout)
    sources = TlsSources(policy, floor=floor, dane_resolver=secure, mta_sts=mta_sts(config, resolver))
    hops = await next_hops(None, args.domain, resolver, d.smtp_port)
    if args.mx:
        hops = [h for h in hops if h.name.lower().rstrip(".") == args.mx.lower().rstrip(".")] or hops[:0]
        if not hops:
            raise ConfigError(f"--mx {args.mx}: not an MX host of {args.domain}")
    params = {"REQUIRETLS": None} if args.requiretls else {}
    rcpts = [PendingRecipient(i, a, {}) for i, a in enumerate([f"postmaster@{args.domain}"] + list(args.rcpt))]
    transfer = Transfer("policy-test", "", params, rcpts, lambda: iter(()), 0, domain=args.domain, by_mx=True,
                        relaxed="TLS-Required: No" if args.tls_required_no else "")
    out, seen = [], set()
    for hop in hops:
        if hop.name in seen:
            continue
        seen.add(hop.name)
        out.append((f"{hop.name} [{hop.addr}]" + (" (MX RRset DNSSEC-secure)" if hop.secure else ""),
                    (await sources.for_hop(hop, transfer)).requirement))
    return out


def print_decision(host: str, req: TlsRequirement, out) -> None:
    print(f"== TLS decision for {host}", file=out)
    for number, (source, said) in enumerate(req.consulted, 1):
        print(f"  {number}. {source:<10} {said}", file=out)
    needs = ("STARTTLS required, checked at level " + req.level) if req.needs_tls else (
        "the access map's checks (TLS_Srv, TLS_Rcpt) apply" if req.source == "access-map" else
        "STARTTLS when offered (opportunistic)" + ("; failures logged and reported" if req.testing else ""))
    if req.requiretls and req.action == "connect":
        needs += "; REQUIRETLS must be offered after STARTTLS and is sent on MAIL"
    print(f"  decision: {req.label}", file=out)
    print(f"  delivery: {_WHAT[req.action].format(needs=needs)}", file=out)


def run_domain(args) -> int:
    out = sys.stdout
    try:
        answers = parse_offline(args.offline) if args.offline is not None else None
        config = _config(args)
        policy, map_name = _policy(args, config)
        floor = args.floor or (config.delivery.tls_floor if config is not None else "may")
        if answers is not None:
            decisions = offline_decisions(args, answers, policy, floor)
        else:
            decisions = asyncio.run(online_decisions(args, config, policy, floor))
    except (ValueError, ConfigError) as err:
        print(f"mailward: {err}", file=sys.stderr)
        return 2
    except Exception as err:   # a DNS failure (mailward.dns.DNSError) and the like: one line
        print(f"mailward: {args.domain}: {err}", file=sys.stderr)
        return 2
    message = ", ".join(filter(None, ["REQUIRETLS" if args.requiretls else "",
                                      "TLS-Required: No" if args.tls_required_no else ""])) or "no TLS request"
    how = "offline answers" if answers is not None else "DNS and MTA-STS as delivery asks them"
    print(f"domain {args.domain}: access map {map_name}; delivery.tls_floor {floor}; message: {message}; "
          f"{how}", file=out)
    for host, req in decisions:
        print_decision(host, req, out)
    return 0

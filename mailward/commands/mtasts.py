"""``mailward mta-sts``: what to publish for your own domain, and what a domain publishes.

``mailward mta-sts --domain example.com --mx mx1.example.com [--mx '*.mail.example.com']
[--mode enforce|testing|none] [--max-age SECONDS] [--id ID] [--write FILE]`` prints what the
receiving side publishes (RFC 8461 §3): the ``_mta-sts`` TXT record with a fresh id made from
the time, the ``mta-sts.<domain>`` host that must serve HTTPS with a certificate for that name,
and the policy file (``--write FILE`` also writes it, atomically, to put on that host).

``mailward mta-sts check DOMAIN [-c CONFIG] [--mx HOST]... [--no-cache]`` looks the policy of
DOMAIN up as delivery does, with the configuration's ``[mta_sts]`` and ``delivery.resolver``
settings: the TXT record, then the policy file over HTTPS. It prints the policy, where it came
from (``fetched``, ``cache``: the server's cache file, read and never written here, or
``none``), and any error with its RFC 8460 failure type; ``--mx HOST`` says whether that MX
host may be used. Exit status: 0 when a policy applies, 1 when none does, 2 for a usage or
configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

from mailward import config as config_mod
from mailward.config import ConfigError
from mailward.fsutil import write_atomically
from mailward.mtasts.fetch import policy_url
from mailward.mtasts.lookup import MtaSts, mx_allowed
from mailward.mtasts.policy import MAX_AGE_LIMIT, MODES, StsPolicy, normalize_host, normalize_pattern, parse_policy

DEFAULT_MAX_AGE = 604800     # one week, as RFC 8461 §3.2's example


def register(subparsers) -> None:
    sts = subparsers.add_parser("mta-sts", help="MTA-STS: the records and policy file to publish; check a domain",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sts.add_argument("--domain", help="your mail domain (the part after @)")
    sts.add_argument("--mx", action="append", default=[], metavar="HOST",
                     help="an MX host of the domain, or *.DOMAIN for any one label below DOMAIN (repeat; "
                          "written in lower case and xn-- form)")
    sts.add_argument("--mode", choices=MODES, default="enforce",
                     help="enforce (refuse MX hosts without valid TLS), testing (report only), none (withdraw)")
    sts.add_argument("--max-age", type=int, default=DEFAULT_MAX_AGE, metavar="SECONDS",
                     help=f"how long senders keep the policy (default {DEFAULT_MAX_AGE}; at most {MAX_AGE_LIMIT})")
    sts.add_argument("--id", default=None, help="the policy id (default: the time, e.g. 20261201120000Z)")
    sts.add_argument("--write", metavar="FILE", type=Path, help="also write the policy file to FILE")
    sts.set_defaults(func=cmd_publish)
    sub = sts.add_subparsers(dest="mta_sts_command", metavar="SUBCOMMAND")
    check = sub.add_parser("check", help="look up a domain's MTA-STS policy as delivery does")
    check.add_argument("domain", metavar="DOMAIN")
    check.add_argument("-c", "--config", type=Path, default=config_mod.default_path(),
                       help="the config whose [mta_sts] and delivery.resolver are used "
                            "(default: $MAILWARD_CONFIG, else /etc/mailward/mailward.toml)")
    check.add_argument("--mx", action="append", default=[], metavar="HOST",
                       help="an MX host to test against the policy (repeat)")
    check.add_argument("--no-cache", action="store_true", help="ignore the cache file: always fetch")
    check.add_argument("-v", "--verbose", action="store_true", help="print the log lines too (standard error)")
    check.set_defaults(func=cmd_check)


def _usage(text: str):
    from mailward.cli import UsageError   # the command table imports us: import it when needed
    return UsageError(text)


def policy_id(now: float | None = None) -> str:
    """A new id from the time (RFC 8461 §3.1: 1 to 32 letters and digits)."""
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() if now is None else now))


def build_policy(domain: str, mx: list[str], mode: str, max_age: int, ident: str) -> tuple[str, StsPolicy]:
    """Check the operator's words and make the policy; UsageError naming the option."""
    name = normalize_host(domain or "")
    if name is None:
        raise _usage(f"--domain {domain!r}: give your mail domain, e.g. --domain example.com")
    for m in mx:
        if normalize_pattern(m) is None:
            raise _usage(f"--mx {m!r}: a host name or *.DOMAIN (the * stands for exactly one label)")
    if not mx and mode != "none":
        raise _usage(f"--mx: mode {mode} needs at least one MX host (--mx mx1.{name})")
    if not 0 <= max_age <= MAX_AGE_LIMIT:
        raise _usage(f"--max-age {max_age}: between 0 and {MAX_AGE_LIMIT} seconds (RFC 8461 §3.2)")
    if not ident.isalnum() or not ident.isascii() or len(ident) > 32:
        raise _usage(f"--id {ident!r}: 1 to 32 letters and digits (RFC 8461 §3.1)")
    # lower case, no trailing dot, and A-labels: RFC 8461 §3.2 allows no U-label in an mx line
    patterns = tuple(normalize_pattern(m) or m for m in mx)
    policy = StsPolicy(mode, patterns, max_age, ident, time.time())  # type: ignore[arg-type]
    parse_policy(policy.text(), id=ident)   # what we print must parse as senders parse it
    return name, policy


def cmd_publish(args) -> int:
    if args.domain is None:
        raise _usage("mta-sts: give --domain and --mx to print what to publish, or 'mta-sts check DOMAIN'")
    domain, policy = build_policy(args.domain, args.mx, args.mode, args.max_age, args.id or policy_id())
    out = sys.stdout
    out.write(f"; MTA-STS for {domain} (RFC 8461): publish 1 and 2 in DNS, serve 3 over HTTPS.\n")
    out.write("; Change the id in 1 whenever you change the policy file: senders fetch it again then.\n\n")
    out.write("; 1. the policy record\n")
    out.write(f'_mta-sts.{domain}. IN TXT "v=STSv1; id={policy.id}"\n\n')
    out.write("; 2. the policy host: an address (or a CNAME) of a web server whose certificate is valid\n")
    out.write(f";    for mta-sts.{domain} and issued by a CA senders trust (WebPKI)\n")
    out.write(f"mta-sts.{domain}. IN A <address of that web server>   ; or: IN CNAME <its name>.\n\n")
    out.write(f"; 3. the policy file, served as {policy_url(domain)}\n")
    out.write(";    with status 200 and Content-Type: text/plain, and no redirect:\n")
    for line in policy.text().splitlines():
        out.write(f"{line}\n")
    if policy.mode == "enforce":
        out.write("\n; enforce: senders will not deliver to an MX host not listed above or without a valid\n"
                  "; certificate for its name; start with --mode testing if unsure.\n")
    if args.write:
        try:
            write_atomically(args.write, policy.text().encode("ascii"), 0o644)   # served by a web server
        except OSError as err:
            raise _usage(f"{args.write}: cannot write the policy file: {err.strerror or err}") from None
        print(f"\n; policy file written to {args.write}")
    return 0


def cmd_check(args) -> int:
    cfg = config_mod.load(args.config)
    logger = logging.getLogger("mailward")
    handler: logging.Handler = logging.StreamHandler(sys.stderr) if args.verbose else logging.NullHandler()
    logger.addHandler(handler)
    if args.verbose:
        logger.setLevel(logging.DEBUG)
    try:
        sts = MtaSts.from_config(cfg, cache="off" if args.no_cache else "read")
        sts.enabled = True                  # asked for by name: look even when delivery does not
        name = normalize_host(args.domain)
        if name is None:
            raise ConfigError(f"mta-sts check: {args.domain!r} is not a domain name")
        result = asyncio.run(sts.policy_for(name))
    finally:
        logger.removeHandler(handler)
    print(f"domain: {name}")
    if not cfg.mta_sts.enabled:
        print(f"note: mta_sts.enabled is false in {args.config}: delivery does not use MTA-STS")
    where = {"fetched": f"fetched from {policy_url(name, sts.options.port)}",
             "cache": f"cache ({sts.cache.path})" if sts.cache.path else "cache",
             "none": "none"}[result.source]
    print(f"source: {where}")
    if result.failure:
        print(f"failure: {result.failure}")
    if result.error:
        print(f"error: {result.error}")
    policy = result.policy
    if policy is None:
        print("policy: none (mail to this domain is delivered as without MTA-STS)")
    else:
        fetched = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(policy.fetched_at))
        expires = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(policy.expires_at))
        print(f"id: {policy.id}")
        print(f"fetched: {fetched}")
        print(f"expires: {expires}")
        print("policy:")
        for line in policy.text().splitlines():
            print(f"  {line}")
    for host in args.mx:
        ok, reason = mx_allowed(result, host)
        print(f"mx {host}: {'allowed' if ok else 'REFUSED'}: {reason}")
    return 0 if policy is not None else 1

"""``mailward policy``: test the access map against given facts, or check its syntax.

Without FILE / ``--map``, both read the map named by the config's ``policy.access_map``
(``-c FILE``, default ``$MAILWARD_CONFIG``, else /etc/mailward/mailward.toml).

``mailward policy check FILE`` parses the map: ``FILE: N entries`` and exit 0, or the first
bad line as ``FILE:LINE: why`` on standard error and exit 2 (duplicate keys are warnings).

``mailward policy test --map FILE [facts]`` is sendmail's ``-bt`` for the access map: it
runs the checks a session would run, in order, and for each prints every key looked up,
the entry that matched (``file:line``) and the decision with its exact reply and log text.

* ``--role server`` (default; mailward receiving): check_relay (Connect), srv_features,
  tls_client at STARTTLS (when TLS facts are given), check_mail (with tls_client at MAIL),
  check_rcpt for each ``--rcpt``. ``--stage CONNECT`` or ``STARTTLS`` stops after that
  stage; ``MAIL`` and ``RCPT`` run every check the options call for.
* ``--role client`` (mailward delivering to ``--server-name``/``--server-addr``): try_tls,
  tls_server, tls_rcpt for each ``--rcpt``.
* ``--role client --domain D [--mx HOST]``: the sending side's one TLS decision for mail to
  D (docs/outbound-tls.md): for each MX host (or only ``--mx``), the sources consulted in
  order — access map, DANE, MTA-STS, REQUIRETLS, delivery.tls_floor — what each said, the
  one that decides and the level. By default it asks DNS (``[dane] resolver`` for the MX
  and TLSA records, else ``delivery.resolver``) and fetches the MTA-STS policy, as delivery
  does. ``--offline KEY=VALUE ...`` gives the answers instead, and nothing is asked:

      mx=HOST[,HOST...]      the MX hosts (default: --mx, else mx.D)
      mx-secure=yes|no       the MX RRset is DNSSEC-secure (default no)
      tlsa=STATE             secure (usable records), unusable (secure, none usable),
                             none (secure denial), insecure, bogus; default: DANE off
      sts=MODE               enforce, testing, none, absent (no record), error (fetch
                             failed, nothing cached); default: MTA-STS off
      sts-mx=PATTERN[,...]   the policy's mx patterns (default: the MX hosts themselves)

  ``--requiretls`` and ``--tls-required-no`` describe the message (REQUIRETLS on MAIL, the
  ``TLS-Required: No`` header); ``--floor`` overrides delivery.tls_floor. The map is the
  config's policy.access_map (or ``--map``); none is fine here. Example::

      mailward policy test --role client --domain example.com --offline mx=mx.example.com \
          mx-secure=yes tlsa=none sts=enforce sts-mx=*.example.com --requiretls

Errors (a map that does not parse, bad facts) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailward import config as config_mod
from mailward.config import ConfigError
from mailward.policy.accessmap import AccessMap, AccessMapError
from mailward.policy.decision import Decision
from mailward.policy.smtp_checks import check_connect, check_mail, check_rcpt
from mailward.policy.tls_checks import ServerFeatures, check_tls_client, check_tls_rcpt, check_tls_server
from mailward.policy.tls_checks import srv_features, try_tls_decision
from mailward.tls.facts import VERIFY_VALUES, ConnectionFacts, TLSFacts

STAGES = ("CONNECT", "STARTTLS", "MAIL", "RCPT")


def register(subparsers) -> None:
    policy = subparsers.add_parser("policy", help="test or check the access map (sendmail's -bt for TLS policy)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = policy.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")

    check = sub.add_parser("check", help="check an access map's syntax (exit 2 with FILE:LINE: why)")
    check.add_argument("file", nargs="?", help="the access map (sendmail text format); default: the config's "
                                               "policy.access_map")
    check.add_argument("-c", "--config", type=Path, default=config_mod.default_path(),
                       help="the config whose policy.access_map is checked when FILE is not given "
                            "(default: $MAILWARD_CONFIG, else /etc/mailward/mailward.toml)")
    check.set_defaults(func=cmd_check)

    test = sub.add_parser("test", help="show the lookups and decisions for given connection facts")
    test.add_argument("--map", "-m", metavar="FILE", help="the access map (default: the config's policy.access_map)")
    test.add_argument("-c", "--config", type=Path, default=config_mod.default_path(),
                      help="the config whose policy.access_map is used when --map is not given "
                           "(default: $MAILWARD_CONFIG, else /etc/mailward/mailward.toml)")
    test.add_argument("--role", choices=("server", "client"), default="server",
                      help="server: mailward receives from --client-*; client: mailward delivers to --server-*")
    test.add_argument("--client-name", default="", help="${client_name}: the client's verified name, or [addr]")
    test.add_argument("--client-addr", default="", help="${client_addr}, e.g. 127.0.0.1 or ::1")
    test.add_argument("--server-name", default="", help="${server_name} (role client)")
    test.add_argument("--server-addr", default="", help="${server_addr} (role client)")
    test.add_argument("--route", default="", metavar="RHS",
                      help="role client: a route file right-hand side (esmtp:[192.0.2.3], esmtp:mx.example); "
                           "${server_name} is taken from its first host exactly as delivery does")
    test.add_argument("--verify", default="NONE", type=str.upper, choices=VERIFY_VALUES,
                      help="${verify}: OK, NO, NOT, FAIL, NONE (no STARTTLS), TEMP, PROTOCOL, SOFTWARE")
    test.add_argument("--cipher-bits", type=int, default=None, help="${cipher_bits} (default 256 with TLS, else 0)")
    test.add_argument("--tls-version", default=None, help="${tls_version} (default TLSv1.3 unless --verify NONE)")
    test.add_argument("--cert-subject", default="", help="${cert_subject} in +XX form (as `mailward ca show` prints)")
    test.add_argument("--cert-issuer", default="", help="${cert_issuer} in +XX form")
    test.add_argument("--cn-subject", default="", help="${cn_subject}")
    test.add_argument("--cn-issuer", default="", help="${cn_issuer}")
    test.add_argument("--sender", default=None, help="MAIL FROM address (default <>)")
    test.add_argument("--rcpt", action="append", default=[], help="recipient (repeat for several)")
    test.add_argument("--stage", type=str.upper, choices=STAGES, default=None,
                      help="role server: CONNECT or STARTTLS stop after that stage; MAIL/RCPT (default) run all")
    test.add_argument("--local-domain", action="append", default=None,
                      help="a local domain (repeatable; default localhost)")
    test.add_argument("--relay-domain", action="append", default=[], help="policy.relay_domains entry (repeatable)")
    test.add_argument("--tls-perm-err", action="store_true", help="policy.tls_perm_err: 554 5.7.0 instead of 454")
    test.add_argument("--cert-regex-issuer", default=None, help="policy.cert_regex_issuer")
    test.add_argument("--cert-regex-subject", default=None, help="policy.cert_regex_subject")
    test.add_argument("--domain", default="", help="role client: explain the TLS decision for mail to this "
                                                   "recipient domain (access map, DANE, MTA-STS, REQUIRETLS, floor)")
    test.add_argument("--mx", default="", help="with --domain: only this MX host")
    test.add_argument("--offline", nargs="+", default=None, metavar="KEY=VALUE",
                      help="with --domain: answers instead of DNS and HTTPS: mx=, mx-secure=, tlsa=, sts=, sts-mx= "
                           "(see the description above)")
    test.add_argument("--requiretls", action="store_true", help="with --domain: the message carries REQUIRETLS")
    test.add_argument("--tls-required-no", action="store_true",
                      help="with --domain: the message has the header TLS-Required: No (RFC 8689)")
    test.add_argument("--floor", choices=("may", "encrypt", "verify"), default=None,
                      help="with --domain: delivery.tls_floor (default: the config's)")
    test.set_defaults(func=cmd_test)
    policy.set_defaults(func=lambda args: (policy.print_help(), 2)[1])


def _load(path: str) -> AccessMap:
    return AccessMap.load(Path(path))


def _map_file(given: str | None, config: Path) -> str:
    """The map named on the command line, else the config's policy.access_map."""
    if given:
        return given
    cfg = config_mod.load(config)
    if not cfg.policy.access_map:
        raise ConfigError(f"{config}: policy.access_map is empty: no access map to use; fix: name the map "
                          f"(mailward policy check FILE, policy test --map FILE) or set policy.access_map")
    return str(cfg.policy.access_map)


def _open_map(name: str, config) -> tuple[str, AccessMap | None]:
    """The map named (or the configuration's), or None after printing why it cannot be used."""
    path = _map_file(name, config)
    try:
        return path, _load(path)
    except AccessMapError as err:
        print(f"mailward: {err}", file=sys.stderr)
        return path, None


def cmd_check(args) -> int:
    args.file, amap = _open_map(args.file, args.config)
    if amap is None:
        return 2
    for warning in amap.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.file}: {len(amap)} entries, syntax OK")
    return 0


def _facts(args, name: str, addr: str) -> ConnectionFacts:
    with_tls = args.verify not in ("NONE",)
    version = args.tls_version if args.tls_version is not None else ("TLSv1.3" if with_tls else "")
    bits = args.cipher_bits if args.cipher_bits is not None else (256 if version else 0)
    tls = TLSFacts(verify=args.verify, tls_version=version, cipher="TLS_AES_256_GCM_SHA384" if version else "",
                   cipher_bits=bits, alg_bits=bits, cert_subject=args.cert_subject, cert_issuer=args.cert_issuer,
                   cn_subject=args.cn_subject, cn_issuer=args.cn_issuer)
    return ConnectionFacts(peer_name=name or (f"[{addr}]" if addr else ""), peer_addr=addr, tls=tls)


def _print_lookups(lookups, out) -> None:
    if not lookups:
        print("  (no access map lookups)", file=out)
    for key, entry in lookups:
        found = f"found {entry.value!r} at {entry.where}" if entry is not None else "not found"
        print(f"  lookup {key:<50} {found}", file=out)


def _print_decision(title: str, decision: Decision, out) -> None:
    print(f"== {title}", file=out)
    _print_lookups(decision.lookups, out)
    entry = f"{decision.entry.key} {decision.entry.value} ({decision.entry.where})" if decision.entry else "none"
    print(f"  matched: {entry}", file=out)
    reply = decision.reply or "(no reply of its own)"
    print(f"  decision: {decision.action}: {reply}", file=out)
    if decision.log_fragment:
        print(f"  log: {decision.log_fragment}", file=out)


def _print_features(features: ServerFeatures, out) -> None:
    print("== srv_features", file=out)
    _print_lookups(features.lookups, out)
    entry = f"{features.entry.key} {features.entry.value} ({features.entry.where})" if features.entry else "none"
    print(f"  matched: {entry}", file=out)
    cert = {True: "request a client certificate (v)", False: "do not request a client certificate (V)",
            None: "client certificate: as tls.request_client_cert"}[features.request_client_cert]
    tls = "offer STARTTLS" if features.offer_starttls else "do not offer STARTTLS (S): 503 5.5.0 TLS not available"
    print(f"  decision: {tls}; {cert}" + (f"; ignored letters {features.ignored}" if features.ignored else ""),
          file=out)


def _run_server(args, amap: AccessMap, out) -> None:
    conn = _facts(args, args.client_name, args.client_addr)
    stage = args.stage or ("RCPT" if args.rcpt else "MAIL")
    last = STAGES.index(stage)
    _print_decision("check_relay (connect)", check_connect(amap, conn), out)
    _print_features(srv_features(amap, conn), out)
    if last >= 1 and conn.tls.verify != "NONE":
        _print_decision("tls_client (STARTTLS)", check_tls_client(amap, conn, "STARTTLS", args.tls_perm_err), out)
    if last >= 2:
        sender = args.sender or "<>"
        _print_decision(f"check_mail {sender} (runs tls_client at MAIL first)",
                        check_mail(amap, conn, sender, args.tls_perm_err), out)
    if last >= 2 and args.rcpt:  # "--stage MAIL --rcpt u@x" still checks the recipients given
        local = args.local_domain or ["localhost"]
        for rcpt in args.rcpt:
            _print_decision(f"check_rcpt {rcpt}",
                            check_rcpt(amap, conn, rcpt, local, args.relay_domain, args.cert_regex_issuer,
                                       args.cert_regex_subject), out)


def _run_client(args, amap: AccessMap, out) -> None:
    try_decision = try_tls_decision(amap, args.server_name, args.server_addr, args.rcpt[0] if args.rcpt else "")
    _print_decision("try_tls", try_decision, out)
    if try_decision.action == "reject":
        # sendmail 8.17: the connection then counts as one without STARTTLS (verify=NONE)
        print("  => STARTTLS is not used toward this server (Try_TLS NO); verify=NONE", file=out)
        args.verify, args.tls_version, args.cipher_bits = "NONE", "", 0
    conn = _facts(args, args.server_name, args.server_addr)
    _print_decision("tls_server", check_tls_server(amap, conn, args.tls_perm_err), out)
    for rcpt in args.rcpt:
        _print_decision(f"tls_rcpt {rcpt}", check_tls_rcpt(amap, conn, rcpt, args.tls_perm_err), out)


def _route_server(route_text: str, server_addr: str) -> tuple[str, str]:
    """${server_name} and ${server_addr} for the first host of a route, as delivery forms
    them (:func:`mailward.deliver.routes.next_hops`): ``esmtp:[192.0.2.3]`` → ``[192.0.2.3]``."""
    from mailward.deliver.routes import RouteError, parse_target
    try:
        route = parse_target(route_text, "--route")
    except RouteError as err:
        raise ValueError(str(err)) from None
    if not route.targets:
        raise ValueError(f"--route {route_text!r} is not an SMTP route")
    first = route.targets[0]
    if first.bracketed:
        literal = first.host[5:] if first.host[:5].lower() == "ipv6:" else first.host
        from mailward.dns import is_address_literal
        return f"[{first.host}]", server_addr or (literal if is_address_literal(literal) else "")
    return first.host, server_addr


def cmd_test(args) -> int:
    if args.role == "client" and args.domain:
        from mailward.commands.policy_client import run_domain
        return run_domain(args)
    args.map, amap = _open_map(args.map, args.config)
    if amap is None:
        return 2
    out = sys.stdout
    print(f"access map {args.map}: {len(amap)} entries", file=out)
    if args.role == "server":
        if not (args.client_name or args.client_addr):
            print("mailward: policy test --role server needs --client-name and/or --client-addr", file=sys.stderr)
            return 2
        _run_server(args, amap, out)
    else:
        if args.route:
            try:
                args.server_name, args.server_addr = _route_server(args.route, args.server_addr)
            except ValueError as err:
                print(f"mailward: {err}", file=sys.stderr)
                return 2
        if not (args.server_name or args.server_addr):
            print("mailward: policy test --role client needs --server-name and/or --server-addr", file=sys.stderr)
            return 2
        _run_client(args, amap, out)
    return 0

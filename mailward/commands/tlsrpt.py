"""``mailward tls-rpt``: the SMTP TLS Reporting counts (RFC 8460) and the reports made of them.

* ``mailward tls-rpt show [--day YYYY-MM-DD]`` — the counts kept so far, per UTC day, policy
  domain and policy: successful and failed sessions, each group of failures, and the
  destinations a day's report has already gone to. Safe while the server runs (reads only).
* ``mailward tls-rpt report DOMAIN [--day YYYY-MM-DD]`` — the JSON report (RFC 8460 §4.4)
  that would be sent for DOMAIN (default: yesterday, UTC). Reads only.
* ``mailward tls-rpt send`` — send every report of a finished day now (yesterday's too,
  whatever ``tls_rpt.send_hour`` says), and print what happened to each destination. It needs
  the spool to itself: with a server running it changes nothing, says so and exits 75 (the
  server sends them itself every ``tls_rpt.check_interval`` seconds after ``send_hour``).
  Report mail is queued in the spool and delivered when the server starts. Exit 0 when
  every report went out, 75 when some were deferred (DNS or https failure: tried again later).

The counts are in ``tls_rpt.state_dir`` (default SPOOL/tlsrpt). Errors print one line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from datetime import datetime
from pathlib import Path

from mailward import config as config_mod
from mailward.config import ConfigError
from mailward.spool.store import Spool, SpoolLock, SpoolLocked, running_server
from mailward.tlsrpt.report import report_json
from mailward.tlsrpt.store import StoreBusy, TlsRptStore, add_days, utc_day
from mailward.tlsrpt.wiring import build_sender, open_store, state_dir

EX_TEMPFAIL = 75


def register(subparsers) -> None:
    p = subparsers.add_parser("tls-rpt", help="SMTP TLS Reporting (RFC 8460): counts, reports, send now",
                              description=__doc__.split("\n\n")[0] + " Sub-commands: show, report, send.")
    p.add_argument("-c", "--config", default=config_mod.default_path(), type=Path,
                   help="the TOML config file (default: $MAILWARD_CONFIG, else /etc/mailward/mailward.toml)")
    sub = p.add_subparsers(dest="tlsrpt_command", metavar="ACTION", required=True)
    s = sub.add_parser("show", help="the counts per day, policy domain and policy")
    s.add_argument("--day", type=_day, help="only this UTC day (YYYY-MM-DD)")
    s.set_defaults(func=_show)
    r = sub.add_parser("report", help="print the JSON report that would be sent for DOMAIN")
    r.add_argument("domain")
    r.add_argument("--day", type=_day, help="the UTC day (YYYY-MM-DD; default: yesterday)")
    r.set_defaults(func=_report)
    n = sub.add_parser("send", help="send the reports of finished days now")
    n.set_defaults(func=_send)


def _day(text: str) -> str:
    try:
        return datetime.strptime(text, "%Y-%m-%d").strftime("%Y-%m-%d")
    except ValueError:
        import argparse
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, not {text!r}") from None


def _config(args):
    return config_mod.load(args.config)


def _read(cfg) -> TlsRptStore:
    t = cfg.tls_rpt
    return TlsRptStore.read_only(state_dir(cfg), keep_days=t.keep_days)


def _show(args) -> int:
    cfg = _config(args)
    store = _read(cfg)
    days = [args.day] if args.day else sorted(set(store.days()) | set(store.sent))
    if not any(store.domains(d) or store.sent.get(d) for d in days):
        print(f"no TLS-RPT counts{' for ' + args.day if args.day else ''} in {state_dir(cfg)}")
        return 0
    for day in days:
        domains = store.domains(day)
        for domain in sorted(set(domains) | set(store.sent.get(day, {}))):
            print(f"{day} {domain}")
            for key, pc in sorted(domains.get(domain, {}).items()):
                mx = f" mx-host={key.mx_host}" if key.mx_host else ""
                print(f"  policy {key.policy_type}{mx}: successful {pc.successes}, failed {pc.failure_total}")
                for s in key.policy_strings:
                    print(f"    policy-string: {s}")
                for f, n in sorted(pc.failures.items()):
                    where = " ".join(x for x in (
                        f.receiving_mx_hostname, f"[{f.receiving_ip}]" if f.receiving_ip else "",
                        f"helo={f.receiving_mx_helo}" if f.receiving_mx_helo else "",
                        f"from {f.sending_ip}" if f.sending_ip else "",
                        f"reason={f.failure_reason_code}" if f.failure_reason_code else "") if x)
                    print(f"    {f.result_type}: {n}" + (f" ({where})" if where else ""))
            sent = sorted(store.sent_to(day, domain))
            if sent:
                rest = [x for x in sent if x != "*"]
                print(f"  report {'finished' if '*' in sent else 'not finished'}"
                      + (": sent to " + ", ".join(rest) if rest else ""))
    return 0


def _report(args) -> int:
    cfg = _config(args)
    day = args.day or add_days(utc_day(time.time()), -1)
    domain = args.domain.lower().rstrip(".")
    store = _read(cfg)
    if domain not in store.domains(day):
        print(f"mailward: no TLS-RPT counts for {domain} on {day} in {state_dir(cfg)} "
              f"(mailward tls-rpt show lists what there is)", file=sys.stderr)
        return 1
    sender = build_sender(cfg, store, spool=None)
    sys.stdout.write(report_json(sender.report_for(day, domain)).decode("utf-8") + "\n")
    return 0


def _send(args) -> int:
    cfg = _config(args)
    if not cfg.tls_rpt.enabled:
        raise ConfigError(f"{args.config}: tls_rpt.enabled is false: no reports are sent")
    try:
        lock = SpoolLock.acquire(cfg.spool.directory)
    except SpoolLocked:
        pid = running_server(cfg.spool.directory)
        print(f"mailward: the mailward server{f' (pid {pid})' if pid else ''} is running on "
              f"{cfg.spool.directory} and sends due reports itself (from tls_rpt.send_hour, every "
              f"tls_rpt.check_interval seconds); nothing was sent", file=sys.stderr)
        return EX_TEMPFAIL
    try:
        try:
            store = open_store(cfg, wait=False)
        except StoreBusy as err:
            print(f"mailward: {err}", file=sys.stderr)
            return EX_TEMPFAIL
        try:
            spool = Spool.from_settings(cfg.spool)
            sender = build_sender(cfg, store, spool)
            sender.settings = dataclasses.replace(sender.settings, send_hour=0)
            outcomes = asyncio.run(sender.send_due(ignore_retry_time=True))
        finally:
            store.close()
    finally:
        lock.release()
    if not outcomes:
        print("no reports due")
    for o in outcomes:
        print(o.line())
    if any(o.status == "queued" for o in outcomes):
        print("report mail is in the queue; it is delivered when the server starts")
    return EX_TEMPFAIL if any(o.status == "deferred" for o in outcomes) else 0

"""``mailward serve`` and ``mailward quickstart``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailward import config as config_mod
from mailward import log


def _serve(args: argparse.Namespace) -> int:
    from mailward.service.serve import serve

    cfg = config_mod.load(args.config)
    log.setup_from_config(cfg)
    return serve(cfg)


def _quickstart(args: argparse.Namespace) -> int:
    from mailward.service.quickstart import banner, create_data_folder
    from mailward.service.serve import serve

    data = Path(args.data)
    made = create_data_folder(data, listen=args.listen)
    cfg = config_mod.load(data / "mailward.toml")
    if args.listen and list(cfg.server.listen) != [args.listen]:
        print(f"mailward: note: {cfg.path} exists and "
              f"listens on {', '.join(cfg.server.listen)}; --listen {args.listen} only applies to a new "
              f"data folder (edit server.listen there)", file=sys.stderr)
    print(banner(cfg, made), file=sys.stderr, flush=True)
    log.setup_from_config(cfg)
    return serve(cfg)


def _worker(args: argparse.Namespace) -> int:
    from mailward.service.master import run_worker

    cfg = config_mod.load(args.config)
    log.setup_from_config(cfg)
    return run_worker(cfg, [int(fd) for fd in args.fds.split(",") if fd], args.notify_fd)


def _print_config(args: argparse.Namespace) -> int:
    print(config_mod.default_config_text())
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the MTA with a config file",
                              description="Run the MTA: listen, receive, queue and deliver.")
    p.add_argument("-c", "--config", required=True, help="the TOML config file")
    p.set_defaults(func=_serve)

    p = subparsers.add_parser("quickstart", help="create a data folder on first start, then serve",
                              description="Create DATA (CA, server certificate, commented config) when "
                                          "missing, then run the MTA on the address of its configuration "
                                          "(127.0.0.1:2525 unless --listen says otherwise).")
    p.add_argument("data", help="data folder, e.g. ./data")
    p.add_argument("--listen", default="", metavar="HOST:PORT",
                   help="server.listen of a new data folder (default 127.0.0.1:2525; make run LISTEN=...)")
    p.set_defaults(func=_quickstart)

    p = subparsers.add_parser("worker", help="a receiving process started by serve (server.workers > 1)",
                              description="A receiving worker started by `mailward serve` (server.workers > 1).")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--fds", required=True, help="listening socket descriptors, comma-separated")
    p.add_argument("--notify-fd", type=int, required=True, help="pipe to the master's queue runner")
    p.set_defaults(func=_worker)

    p = subparsers.add_parser("config", help="print the default config with every key documented",
                              description="Print the commented default configuration.")
    p.set_defaults(func=_print_config)

"""First start: a data folder with a private CA, a server certificate, a commented config.

``mailward quickstart DIR`` (what ``make run`` calls) creates, only when missing:

    DIR/mailward.toml        every key documented, the quick-start values set
    DIR/ca/                  a private CA (mailward ca init), its key 0600
    DIR/certs/server.pem     the server certificate for localhost / 127.0.0.1 / ::1
    DIR/certs/server-key.pem its key, 0600; DIR/certs is 0700
    DIR/spool/, DIR/maildir/ the queue and the local users' Maildirs

then runs the MTA on 127.0.0.1:2525 with that config. A second start reuses everything.
"""

from __future__ import annotations

import os
from pathlib import Path

from mailward.config import default_config_text

QUICKSTART_SETTINGS = {
    "server": {"hostname": "localhost", "listen": ["127.0.0.1:2525"]},
    "tls": {"cert_file": "certs/server.pem", "key_file": "certs/server-key.pem", "ca_file": "ca/ca.pem"},
    "spool": {"directory": "spool"},
    "local": {"domains": ["localhost"], "maildir_root": "maildir", "users": ["user"]},
}


def create_data_folder(data: Path) -> list[str]:
    """Create what is missing; return what was made (for the start-up message)."""
    from mailward.ca import authority

    made = []
    data.mkdir(parents=True, exist_ok=True)
    ca_dir = data / "ca"
    if not (ca_dir / "ca.pem").exists():
        authority.init_ca(ca_dir, "mailward quickstart CA", subject="/O=mailward quickstart",
                          crl_url=f"file://{ca_dir.resolve()}/crl.pem")
        made.append(f"private CA             {ca_dir}/ca.pem (key in {ca_dir}/private/, 0600)")
    certs = data / "certs"
    certs.mkdir(mode=0o700, exist_ok=True)
    os.chmod(certs, 0o700)
    if not (certs / "server.pem").exists():
        authority.issue(ca_dir, "localhost", ["localhost", "127.0.0.1", "::1"], certs / "server.pem",
                        certs / "server-key.pem", usage="both", force=True)
        made.append(f"server certificate     {certs}/server.pem, key {certs}/server-key.pem (0600)")
    config = data / "mailward.toml"
    if not config.exists():
        config.write_text(default_config_text(QUICKSTART_SETTINGS), encoding="utf-8")
        made.append(f"configuration          {config}")
    for sub in ("spool", "maildir"):
        (data / sub).mkdir(mode=0o700, exist_ok=True)
    return made


def banner(data: Path, made: list[str]) -> str:
    data = data.resolve()
    lines = ["mailward quick start"]
    if made:
        lines += ["  created:"] + [f"    {m}" for m in made]
    lines += [
        f"  config:   {data}/mailward.toml",
        f"  CA:       {data}/ca/ca.pem",
        f"  spool:    {data}/spool   (mailward queue list -c {data}/mailward.toml)",
        f"  maildirs: {data}/maildir/USER/new",
        "  listening on 127.0.0.1:2525 with STARTTLS; mail for @localhost is delivered locally.",
        "  send a test message over TLS:",
        f"    swaks --server 127.0.0.1:2525 --tls --tls-verify --tls-ca-path {data}/ca/ca.pem "
        "--from you@example.org --to user@localhost",
        "  stop with Ctrl-C.",
    ]
    return "\n".join(lines)

"""First start: a data folder with a private CA, a server certificate, a commented config.

``mailward quickstart DIR`` (what ``make run`` calls) creates, only when missing:

    DIR/mailward.toml        every key documented, the quick-start values set
    DIR/ca/                  a private CA (mailward ca init), its key 0600
    DIR/certs/server.pem     the server certificate for localhost / 127.0.0.1 / ::1
    DIR/certs/server-key.pem its key, 0600; DIR/certs is 0700
    DIR/spool/, DIR/maildir/ the queue and the local users' Maildirs

then runs the MTA with that config: on 127.0.0.1:2525, or the ``--listen`` address given when
the folder was made (``make run LISTEN=127.0.0.1:2600``). A second start reuses everything.
The banner (:func:`banner`) is built from the configuration that is about to be served, so
its address, paths and swaks command are those in use even after the file was edited.
"""

from __future__ import annotations

import os
from pathlib import Path

from mailward.config import Config, ConfigError, default_config_text
from mailward.listen import parse_listen

QUICKSTART_SETTINGS = {
    "server": {"hostname": "localhost", "listen": ["127.0.0.1:2525"]},
    "tls": {"cert_file": "certs/server.pem", "key_file": "certs/server-key.pem", "ca_file": "ca/ca.pem"},
    "spool": {"directory": "spool"},
    "local": {"domains": ["localhost"], "maildir_root": "maildir", "users": ["user"]},
}


def create_data_folder(data: Path, listen: str = "") -> list[str]:
    """Create what is missing; return what was made (for the start-up message). ``listen``
    (HOST:PORT) is server.listen of a configuration made now."""
    from mailward.ca import authority

    if listen:
        try:
            parse_listen(listen)
        except ValueError as err:
            raise ConfigError(f"--listen: expected {err}; fix: give HOST:PORT, e.g. 127.0.0.1:2600") from None
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
        settings = {section: dict(values) for section, values in QUICKSTART_SETTINGS.items()}
        if listen:
            settings["server"]["listen"] = [listen]
        config.write_text(default_config_text(settings), encoding="utf-8")
        made.append(f"configuration          {config}")
    for sub, what in (("spool", "spool folder"), ("maildir", "Maildir root")):
        if not (data / sub).exists():
            (data / sub).mkdir(mode=0o700)
            made.append(f"{what:<22} {data / sub}/ (0700)")
    return made


def _swaks_server(item: str) -> str:
    """swaks's --server for a server.listen entry: a wildcard address is reached on loopback."""
    host, port = parse_listen(item)
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def banner(config: Config, made: list[str]) -> str:
    """What make run prints: the files it made, where everything is, and a swaks command
    that works with this configuration (its address, its CA, one of its local users)."""
    path = Path(config.path).resolve()
    listen = list(config.server.listen)
    domain = config.local.domains[0] if config.local.domains else "localhost"
    user = config.local.users[0] if config.local.users else "postmaster"
    tls = bool(config.tls.cert_file)
    lines = ["mailward quick start"]
    if made:
        lines += ["  created:"] + [f"    {m}" for m in made]
    lines += [f"  config:   {path}"]
    if config.tls.ca_file:
        lines += [f"  CA:       {config.tls.ca_file}"]
    lines += [
        f"  spool:    {config.spool.directory}   (mailward queue list -c {path})",
        f"  maildirs: {config.local.maildir_root}/USER/new",
        f"  log:      {config.log.file or 'standard error'}",
        f"  listening on {', '.join(listen)}{' with STARTTLS' if tls else ''}; mail for "
        f"{', '.join('@' + d for d in config.local.domains)} is delivered locally.",
        f"  send a test message{' over TLS' if tls else ''}:",
    ]
    swaks = f"    swaks --server {_swaks_server(listen[0])}"
    if tls:
        swaks += " --tls"
        if config.tls.ca_file:
            swaks += f" --tls-verify --tls-ca-path {config.tls.ca_file}"
    lines += [swaks + f" --from you@example.org --to {user}@{domain}", "  stop with Ctrl-C."]
    return "\n".join(lines)

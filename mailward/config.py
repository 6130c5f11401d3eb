"""The TOML configuration file → frozen, validated settings.

Contract: :func:`load` either returns a :class:`Config` whose every value has been checked,
or raises :class:`ConfigError` whose one-line message names the file, the key and what is
expected. Unknown sections and keys are errors (a typo must not silently fall back to a
default). Relative paths are resolved against the directory of the config file.

The schema below is the single source of truth: :func:`default_config_text` renders it as
the commented default file, and the README's table is generated from the same entries.
Each section has its own frozen dataclass; a key is declared once with its type, default,
check and one-line documentation.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


class ConfigError(Exception):
    """A wrong key or value: str(err) is the one line the user sees."""


@dataclass(frozen=True)
class Key:
    name: str
    kind: str  # "int", "float", "bool", "str", "path", "list[str]", "choice"
    default: Any
    doc: str
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None  # returns an error text or None


def _listen_check(value: list[str]) -> str | None:
    for item in value:
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit() or not (0 < int(port) < 65536) or not host:
            return f"HOST:PORT entries like \"127.0.0.1:2525\" or \"[::1]:25\", got {item!r}"
    return None


def _regex_check(value: str) -> str | None:
    """policy.cert_regex_*: empty or a valid Python regular expression."""
    import re

    if not value:
        return None
    try:
        re.compile(value)
    except re.error as err:
        return f"a regular expression ({err})"
    return None


SCHEMA: dict[str, list[Key]] = {
    "server": [
        Key("hostname", "str", "localhost", "Name in the 220 greeting, EHLO reply and Received: header."),
        Key("listen", "list[str]", ["127.0.0.1:2525"], "Addresses to listen on, HOST:PORT ([::1]:25 for IPv6).",
            check=_listen_check),
        Key("max_command_line", "int", 512, "Longest command line in octets, CRLF included (RFC 5321 §4.5.3.1.4).",
            minimum=64),
        Key("max_text_line", "int", 1000, "Longest DATA line in octets, CRLF included (RFC 5321 §4.5.3.1.6).",
            minimum=80),
        Key("max_message_size", "int", 26214400, "Largest message in octets; announced as SIZE in EHLO.",
            minimum=1024),
        Key("max_recipients", "int", 100, "Recipients per message (RFC 5321 §4.5.3.1.8 asks for at least 100).",
            minimum=1),
        Key("workers", "int", 1, "Receiving processes. Above 1, a master process binds the sockets, runs the "
            "queue, and starts this many workers that share the listening sockets (one per core uses "
            "every core). Connection limits then hold per worker.", minimum=1),
        Key("max_connections", "int", 1000, "Concurrent connections in all; more get 421 4.3.2.", minimum=1),
        Key("max_connections_per_client", "int", 20, "Concurrent connections from one client address.",
            minimum=1),
        Key("idle_timeout", "float", 300.0, "Seconds to wait for a command (RFC 5321 §4.5.3.2.7: 5 minutes).",
            minimum=0.1),
        Key("data_timeout", "float", 600.0, "Seconds to wait for each DATA block (RFC 5321 §4.5.3.2.5: 3 minutes "
            "minimum; §4.5.3.2.6 allows 10 for the end).", minimum=0.1),
        Key("tls_handshake_timeout", "float", 30.0, "Seconds a TLS handshake may take.", minimum=0.1),
        Key("max_bad_commands", "int", 20, "Errors in one session before 421 and close.", minimum=1),
        Key("bare_line_endings", "choice", "reject", "A bare CR or LF in a command or DATA: reject (5xx) or "
            "normalise to CRLF.", choices=("reject", "normalise")),
        Key("reverse_lookup", "bool", True, "Look up the client's name (sendmail's ${client_name}); false "
            "uses [address]."),
        Key("shutdown_grace", "float", 10.0, "Seconds open sessions get to finish at shutdown before 421.",
            minimum=0),
        Key("forbid_unauth_pipelining", "bool", True, "Refuse clients that do not wait for a reply where "
            "RFC 2920 §3.1 requires it: EHLO/HELO with more behind it gets 554 5.5.0 and sendmail's nullserver "
            "answers for the rest of the session; bytes before the greeting or message text before the 354 get "
            "554 5.5.0 and the connection is closed (Postfix: smtpd_forbid_unauth_pipelining)."),
        Key("reject_nul_in_data", "bool", True, "A message holding a NUL octet is refused with 554 5.6.0 after "
            "its end (RFC 5322 §3.5); false keeps it byte for byte."),
        Key("user", "str", "", "Account to run as after binding the listening sockets when started as root "
            "(sendmail: RunAsUser). Must exist; nothing creates it. Empty: no privilege drop."),
        Key("group", "str", "", "Group to run as with server.user. Empty: that account's own group."),
        Key("allow_root", "bool", False, "Run as root without server.user even when listening on a port below "
            "1024 (refused otherwise)."),
    ],
    "tls": [
        Key("cert_file", "path", "", "Server certificate (PEM, chain after the leaf). Empty: no STARTTLS. "
            "sendmail: confSERVER_CERT."),
        Key("key_file", "path", "", "Server private key (PEM, unencrypted, mode 0600). sendmail: confSERVER_KEY."),
        Key("ca_file", "path", "", "CA certificates trusted for client certificates. sendmail: confCACERT."),
        Key("ca_path", "path", "", "Folder of hash-named CA certificates (c_rehash layout). "
            "sendmail: confCACERT_PATH."),
        Key("crl_file", "path", "", "Revocation lists (PEM); a revoked client certificate gives verify=FAIL."),
        Key("request_client_cert", "bool", True, "Ask clients for a certificate during the handshake "
            "(verify=NOT when false)."),
        Key("min_version", "choice", "TLSv1.2", "Oldest TLS version accepted.",
            choices=("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")),
        Key("ciphers", "str", "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS",
            "OpenSSL cipher list for TLS 1.2 and older (TLS 1.3 suites are OpenSSL's defaults)."),
    ],
    "spool": [
        Key("directory", "path", "spool", "Queue folder; must be on a file system that honours fsync."),
        Key("fsync", "bool", True, "fsync message files and folders before answering 250. Only turn off "
            "for throwaway test servers."),
        Key("min_free_space", "int", 0, "Octets that must stay free in the spool's file system; below it "
            "MAIL gets 452 4.3.1. 0: rely on the write failing.", minimum=0),
    ],
    "local": [
        Key("domains", "list[str]", ["localhost"], "Domains delivered on this machine."),
        Key("maildir_root", "path", "maildir", "Each local user's Maildir is MAILDIR_ROOT/USER/."),
        Key("users", "list[str]", [], "Local users that exist; empty accepts every local part."),
        Key("aliases", "path", "", "Aliases file (sendmail form: 'name: target, target'); targets are local users, "
            "remote addresses or other aliases. Empty: no aliases."),
    ],
    "policy": [
        Key("access_map", "path", "", "sendmail-format access map (TLS_Clt, TLS_Srv, TLS_Rcpt, CERTISSUER, Try_TLS, "
            "Srv_Features, Connect/From/To). Empty: no map. Reloaded when it changes and on SIGHUP."),
        Key("tls_perm_err", "bool", False, "Unmet TLS requirements without TEMP+/PERM+ fail permanently "
            "(554 5.7.0) instead of 454 4.7.0. sendmail: TLS_PERM_ERR."),
        Key("relay_domains", "list[str]", [], "Domains (and their subdomains) relayed to, and client names or "
            "address prefixes allowed to relay. sendmail: class R / relay-domains."),
        Key("cert_regex_issuer", "str", "", "Regular expression applied to cert_issuer before the CERTISSUER "
            "lookup (first group, or the match). sendmail: _CERT_REGEX_ISSUER_.", check=_regex_check),
        Key("cert_regex_subject", "str", "", "Regular expression applied to cert_subject before the CERTSUBJECT "
            "lookup. sendmail: _CERT_REGEX_SUBJECT_.", check=_regex_check),
    ],
    "delivery": [
        Key("route_file", "path", "", "mailertable-style routes: 'DOMAIN  [host]:port', 'DOMAIN  host' (MX lookup) "
            "or 'DOMAIN  local'; '.DOMAIN' matches subdomains. Empty: DNS for every non-local domain."),
        Key("resolver", "list[str]", [], "DNS servers to ask, \"ADDR\" or \"ADDR:PORT\" ([::1]:53 for IPv6). "
            "Empty: the system's resolv.conf."),
        Key("dns_timeout", "float", 10.0, "Seconds a DNS lookup may take; a timeout defers the mail.", minimum=0.1),
        Key("smtp_port", "int", 25, "Port used for hosts found by MX or address lookup.", minimum=1),
        Key("helo_name", "str", "", "Name sent in EHLO/HELO. Empty: server.hostname."),
        Key("starttls", "bool", True, "Use STARTTLS whenever the next hop offers it (opportunistic TLS; "
            "Try_TLS:host NO in the access map turns it off per host)."),
        Key("tls_fallback_to_clear", "bool", True, "After a failed handshake (verify=SOFTWARE) retry that host "
            "without TLS, subject to TLS_Srv/TLS_Rcpt. sendmail: TLSFallbacktoClear."),
        Key("client_cert_file", "path", "", "Client certificate presented to servers that ask for one "
            "(PEM). sendmail: confCLIENT_CERT. Servers are verified with tls.ca_file/tls.ca_path."),
        Key("client_key_file", "path", "", "Key of the client certificate (unencrypted, mode 0600). "
            "sendmail: confCLIENT_KEY."),
        Key("connect_timeout", "float", 30.0, "Seconds to wait for a TCP connection and the greeting.",
            minimum=0.1),
        Key("command_timeout", "float", 300.0, "Seconds to wait for a reply (RFC 5321 §4.5.3.2: 5 minutes; "
            "10 after the final dot).", minimum=0.1),
        Key("retry_first", "float", 300.0, "Seconds before the first retry of a deferred message.", minimum=0),
        Key("retry_max", "float", 14400.0, "Longest wait between two retries (backoff doubles up to this).",
            minimum=0),
        Key("retry_jitter", "float", 0.2, "Random spread of each retry time, as a fraction (0.2: +/-20%).",
            minimum=0),
        Key("give_up_after", "float", 432000.0, "Seconds after arrival when a deferred recipient is bounced "
            "(5 days, RFC 5321 §4.5.4.1).", minimum=0),
        Key("delay_warning", "float", 0.0, "Seconds after arrival when a delay DSN is sent once to senders "
            "whose NOTIFY allows it. 0: never.", minimum=0),
        Key("max_deliveries", "int", 20, "Messages delivered at the same time in all.", minimum=1),
        Key("max_per_destination", "int", 4, "Connections at the same time to one destination (domain or route).",
            minimum=1),
        Key("max_messages_per_connection", "int", 100, "Messages sent over one connection before it is closed "
            "(connection reuse).", minimum=1),
        Key("connection_idle", "float", 5.0, "Seconds an idle outbound connection is kept for reuse.", minimum=0),
        Key("bounce_max_content", "int", 1048576, "Largest original returned whole in a bounce; bigger ones are "
            "returned as headers only (RET=HDRS).", minimum=0),
    ],
    "log": [
        Key("level", "choice", "info", "Least severe level logged.", choices=("debug", "info", "notice", "warning",
                                                                               "error")),
        Key("file", "path", "", "Log file; empty logs to standard error."),
        Key("json", "bool", False, "Write structured JSON lines instead of sendmail-style lines."),
    ],
}


@dataclass(frozen=True)
class Config:
    """Validated settings: ``config.server.max_command_line`` etc., plus where they came from."""

    path: Path | None
    sections: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.sections[name]
        except KeyError:
            raise AttributeError(name) from None


def _section_class(section: str) -> type:
    keys = SCHEMA[section]
    return dataclasses.make_dataclass(
        f"{section.title()}Settings", [(k.name, Any) for k in keys], frozen=True
    )


_SECTION_CLASSES = {name: _section_class(name) for name in SCHEMA}


def _expected(key: Key) -> str:
    if key.kind == "choice":
        return "one of " + ", ".join(f'"{c}"' for c in key.choices)
    if key.kind in ("int", "float"):
        word = "an integer" if key.kind == "int" else "a number"
        return word + (f" >= {key.minimum:g}" if key.minimum is not None else "")
    return {"bool": "true or false", "str": "a string", "path": "a path (string)",
            "list[str]": "a list of strings"}[key.kind]


def _convert(key: Key, value: Any, base: Path) -> Any:
    """The checked value, or raise ValueError with what is expected."""
    kind = key.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(_expected(key))
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(_expected(key))
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(_expected(key))
        value = float(value)
    elif kind in ("str", "path", "choice"):
        if not isinstance(value, str):
            raise ValueError(_expected(key))
        if kind == "choice" and value not in key.choices:
            raise ValueError(_expected(key))
        if kind == "path" and value:
            value = (base / value).resolve() if not Path(value).is_absolute() else Path(value)
    elif kind == "list[str]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(_expected(key))
        value = tuple(value)
    if key.minimum is not None and value < key.minimum:
        raise ValueError(_expected(key))
    if key.check is not None:
        problem = key.check(value)
        if problem:
            raise ValueError(problem)
    return value


def from_dict(data: dict[str, Any], path: Path | None = None) -> Config:
    """Validate a parsed TOML document; ``path`` names the file in errors and anchors paths."""
    where = str(path) if path else "<config>"
    base = path.parent if path else Path.cwd()
    for section, body in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"{where}: [{section}]: unknown section; expected one of {', '.join(SCHEMA)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: {section}: expected a [{section}] table")
        known = {k.name for k in SCHEMA[section]}
        for name in body:
            if name not in known:
                raise ConfigError(f"{where}: {section}.{name}: unknown key; "
                                  f"expected one of {', '.join(sorted(known))}")
    sections = {}
    for section, keys in SCHEMA.items():
        body = data.get(section, {})
        values = {}
        for key in keys:
            raw = body.get(key.name, key.default)
            try:
                values[key.name] = _convert(key, raw, base)
            except ValueError as err:
                raise ConfigError(f"{where}: {section}.{key.name}: expected {err}, got {raw!r}") from None
        sections[section] = _SECTION_CLASSES[section](**values)
    return Config(path=path, sections=sections)


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file: {err.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return from_dict(data, path.resolve())


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_config_text(overrides: dict[str, dict[str, Any]] | None = None) -> str:
    """The commented default config: every key, its documentation and its default.

    Keys in ``overrides`` are written active; all others are written commented out.
    """
    overrides = overrides or {}
    lines = ["# mailward configuration. Every key is shown with its default; uncomment to change.",
             "# Relative paths are relative to this file's folder. Reference: README.md, 'Configuration'.", ""]
    for section, keys in SCHEMA.items():
        lines.append(f"[{section}]")
        for key in keys:
            lines.append(f"# {key.doc}")
            if section in overrides and key.name in overrides[section]:
                lines.append(f"{key.name} = {_toml_value(overrides[section][key.name])}")
            else:
                lines.append(f"# {key.name} = {_toml_value(key.default)}")
        lines.append("")
    return "\n".join(lines)


def reference_markdown() -> str:
    """The README's configuration table, from the schema."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for section, keys in SCHEMA.items():
        for key in keys:
            rows.append(f"| `{section}.{key.name}` | `{_toml_value(key.default)}` | {key.doc} |")
    return "\n".join(rows)

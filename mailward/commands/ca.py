"""``mailward ca``: the command line of the certificate tool.

Sub-commands: init, request, sign, issue, revoke, crl, show, check, rehash (each has --help).

Failure behaviour: a bad file or value raises :class:`~mailward.ca.store.CAError` (a
``ConfigError``), which ``mailward.cli.main`` prints as one line and exits 2; the library
functions check everything before writing, so the CA folder is left as it was.
``mailward ca check`` exits 1 when it finds an error (warnings alone exit 0).

The CA key's passphrase comes from ``--passphrase-file FILE`` (first line), from
``--passphrase-env VAR``, or from a prompt on the terminal, asked only when the key is
encrypted. Without a terminal and without either option, an encrypted CA key is an error.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from mailward.ca import authority, revocation
from mailward.ca.store import CAError, read_bytes


def _passphrase_given(args) -> bytes | None:
    if getattr(args, "passphrase_file", None):
        lines = read_bytes(Path(args.passphrase_file), "a passphrase file").splitlines()
        if not lines or not lines[0]:
            raise CAError(f"{args.passphrase_file}: the passphrase file is empty")
        return lines[0]
    if getattr(args, "passphrase_env", None):
        value = os.environ.get(args.passphrase_env, "")
        if not value:
            raise CAError(f"--passphrase-env {args.passphrase_env}: that environment variable is unset or empty")
        return value.encode()
    return None


def _passphrase(args):
    """Bytes from a file/env, else a callable that prompts when the CA key is encrypted."""
    given = _passphrase_given(args)
    if given is not None:
        return given

    def ask() -> bytes:
        if not sys.stdin.isatty():
            raise CAError(f"{Path(args.ca) / authority.CA_KEY}: the CA key is encrypted and there is no "
                          "terminal to ask for the passphrase; use --passphrase-file or --passphrase-env")
        try:
            return getpass.getpass("CA key passphrase: ").encode()
        except EOFError:
            raise CAError(f"{Path(args.ca) / authority.CA_KEY}: no passphrase given") from None
    return ask


def _init_passphrase(args) -> bytes | None:
    if args.no_passphrase:
        return None
    given = _passphrase_given(args)
    if given is None:
        if not sys.stdin.isatty():
            raise CAError("ca init: no terminal to ask for the CA passphrase; use --passphrase-file, "
                          "--passphrase-env, or --no-passphrase")
        try:
            given = getpass.getpass("New CA key passphrase: ").encode()
            again = getpass.getpass("Again: ").encode()
        except EOFError:
            raise CAError("ca init: no passphrase given; nothing was written") from None
        if given != again:
            raise CAError("ca init: the two passphrases differ; nothing was written")
    if len(given) < 4:
        raise CAError("ca init: the passphrase is shorter than 4 characters")
    return given


def _add_passphrase(p: argparse.ArgumentParser, init: bool = False) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--passphrase-file", metavar="FILE", help="read the CA key passphrase from FILE's first line")
    g.add_argument("--passphrase-env", metavar="VAR", help="take the CA key passphrase from environment variable VAR")
    if init:
        g.add_argument("--no-passphrase", action="store_true",
                       help="leave the CA key unencrypted (only for throw-away or test CAs)")


def _add_usage(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--server", dest="usage", action="store_const", const="server",
                   help="a TLS server certificate (extendedKeyUsage serverAuth; the default)")
    g.add_argument("--client", dest="usage", action="store_const", const="client",
                   help="a TLS client certificate (clientAuth), e.g. for relaying by CERTSUBJECT")
    g.add_argument("--both", dest="usage", action="store_const", const="both",
                   help="server and client: an MTA that also delivers with the same certificate")
    p.set_defaults(usage="server")


def cmd_init(args) -> int:
    phrase = _init_passphrase(args)
    authority.init_ca(Path(args.dir), args.cn, args.subject, args.key_type, phrase, args.days,
                      crl_url=args.crl_url or "")
    ca = Path(args.dir)
    print(f"CA certificate: {ca / authority.CA_CERT}  (give this to peers; [tls] ca_file)")
    print(f"CA key:         {ca / authority.CA_KEY}  ({'encrypted' if phrase else 'NOT encrypted'}, mode 0600)")
    print(f"CRL:            {ca / authority.CRL}  ([tls] crl_file)")
    return 0


def cmd_request(args) -> int:
    authority.request(args.cn, args.san, Path(args.key_out), Path(args.csr_out), args.key_type,
                      args.subject, force=args.force)
    print(f"key:     {args.key_out}  (unencrypted, mode 0600)")
    print(f"request: {args.csr_out}  (sign it with: mailward ca sign {args.csr_out} --ca CA_DIR --out CERT)")
    return 0


def cmd_sign(args) -> int:
    cert = authority.sign(Path(args.ca), Path(args.csr), Path(args.out), args.usage, args.days,
                          _passphrase(args), args.san, force=args.force)
    print(f"certificate: {args.out}  (serial {cert.serial_number:X})")
    return 0


def cmd_issue(args) -> int:
    cert = authority.issue(Path(args.ca), args.cn, args.san, Path(args.cert_out), Path(args.key_out),
                           args.usage, args.days, _passphrase(args), args.subject,
                           key_type=args.key_type, force=args.force)
    print(f"certificate: {args.cert_out}  (serial {cert.serial_number:X})")
    print(f"key:         {args.key_out}  (unencrypted, mode 0600)")
    return 0


def cmd_self_signed(args) -> int:
    authority.self_signed(args.cn, Path(args.cert_out), Path(args.key_out), args.san, args.usage,
                          args.days, args.subject, key_type=args.key_type, force=args.force)
    print(f"certificate: {args.cert_out}  (self-signed: peers verifying it get verify=FAIL)")
    print(f"key:         {args.key_out}  (unencrypted, mode 0600)")
    return 0


def cmd_revoke(args) -> int:
    serial = None
    if args.serial:
        try:
            serial = int(args.serial.replace(":", ""), 16)
        except ValueError:
            raise CAError(f"--serial {args.serial!r}: expected a hex serial like 2DE8AAFD...") from None
    entry = revocation.revoke(Path(args.ca), Path(args.cert) if args.cert else None, serial, args.reason or "")
    print(f"revoked serial {entry.serial:X} ({entry.subject}); publish it with: mailward ca crl --ca {args.ca}")
    return 0


def cmd_crl(args) -> int:
    path = revocation.make_crl(Path(args.ca), _passphrase(args), args.days, Path(args.out) if args.out else None)
    print(f"CRL: {path}" + (f" and {args.out}" if args.out else ""))
    return 0


def cmd_show(args) -> int:
    from mailward.ca.show import format_info, format_json, show_all
    shown = [(name, i, len(infos), info) for name in args.cert
             for infos in [show_all(Path(name))] for i, info in enumerate(infos, 1)]
    for n, (name, i, count, info) in enumerate(shown):
        label = f"{name} (certificate {i} of {count})" if count > 1 else name
        if args.json:
            sys.stdout.write(format_json(info, label))
        else:
            sys.stdout.write(("\n" if n else "") + format_info(info, label if len(shown) > 1 else None))
    return 0


def cmd_check(args) -> int:
    from mailward.ca.check import check_tls_files
    hostname = None
    files = dict(cert=args.cert, key=args.key, ca_file=args.ca_file, ca_path=args.ca_path, crl=args.crl)
    if args.config is None and not any(files.values()):
        from mailward.config import default_path
        args.config = default_path()  # $MAILWARD_CONFIG, else /etc/mailward/mailward.toml
    if args.config:
        from mailward.config import load
        config = load(args.config)
        tls = config.tls
        defaults = dict(cert=tls.cert_file, key=tls.key_file, ca_file=tls.ca_file, ca_path=tls.ca_path,
                        crl=tls.crl_file)
        files = {k: v or defaults[k] for k, v in files.items()}
        hostname = config.server.hostname
        if not files["cert"] and not files["key"]:
            print(f"{args.config}: [tls] cert_file is empty: STARTTLS is not offered; nothing to check")
            return 0
    given = dict(cert=args.cert, key=args.key, ca_file=args.ca_file, ca_path=args.ca_path, crl=args.crl)
    options = dict(cert="--cert", key="--key", ca_file="--ca-file", ca_path="--ca-path", crl="--crl")
    names = {k: options[k] for k, v in given.items() if v}   # the rest: the config's tls.* settings
    problems = check_tls_files(files["cert"], files["key"], files["ca_file"], files["ca_path"], files["crl"],
                               hostname=args.hostname or hostname, names=names)
    for problem in problems:
        print(problem)
    errors = sum(p.severity == "error" for p in problems)
    if not problems:
        print("ok: " + ", ".join(str(v) for v in files.values() if v))
    return 1 if errors else 0


def cmd_rehash(args) -> int:
    from mailward.ca.rehash import rehash
    made, skipped = rehash(Path(args.dir))
    for link, target in made:
        print(f"{link} -> {target}")
    for name, why in skipped:
        print(f"skipped {name}: {why}", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    ca = subparsers.add_parser("ca", help="private CA: keys, requests, signing, revocation, checks",
                               description="A private certificate authority for mail servers: the "
                                           "CA.pl walk-through as one tool. See docs/certificates.md and mailward-ca(8).")
    sub = ca.add_subparsers(dest="ca_command", metavar="SUBCOMMAND")
    ca.set_defaults(func=lambda args: (ca.print_help(), 2)[1])

    def cmd(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    def names(p, cn_required=True):
        p.add_argument("--cn", required=cn_required, help="common name: the host name (or person) certified")
        p.add_argument("--san", action="append", metavar="NAME",
                       help="subjectAltName: a DNS name or IP address (repeatable); the CN is added when "
                            "it is a host name")
        p.add_argument("--subject", metavar="DN", help='other DN parts, e.g. "/C=US/ST=California/O=Example/OU=Mail"')
        p.add_argument("--key-type", choices=("ec", "rsa"), default="ec",
                       help="ec = ECDSA P-256 (default), rsa = RSA 3072")

    p = cmd("init", cmd_init, "make a CA folder: key (passphrase-protected) and self-signed CA certificate")
    p.add_argument("dir", metavar="DIR", help="the new CA folder (must not exist, or be empty)")
    p.add_argument("--cn", required=True, help='the CA\'s name, e.g. "Example Mail CA"')
    p.add_argument("--subject", metavar="DN", help='other DN parts, e.g. "/C=US/ST=California/O=Example/OU=Mail/L=Town"')
    p.add_argument("--key-type", choices=("ec", "rsa"), default="ec", help="ec = ECDSA P-256 (default), rsa = RSA 3072")
    p.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    p.add_argument("--crl-url", metavar="URL", help="CRL distribution point put into every certificate issued, "
                   "e.g. http://ca.example/mail.crl (publish CA_DIR/crl.pem there)")
    _add_passphrase(p, init=True)

    p = cmd("request", cmd_request, "make an unencrypted key (0600) and a certificate request (CSR)")
    names(p)
    p.add_argument("--key-out", required=True, metavar="FILE")
    p.add_argument("--csr-out", required=True, metavar="FILE")
    p.add_argument("--force", action="store_true", help="replace existing output files")

    p = cmd("sign", cmd_sign, "sign a certificate request with the CA")
    p.add_argument("csr", metavar="CSR")
    p.add_argument("--ca", required=True, metavar="DIR", help="the CA folder")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the certificate")
    p.add_argument("--san", action="append", metavar="NAME", help="add a subjectAltName (repeatable)")
    p.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    _add_usage(p)
    _add_passphrase(p)

    p = cmd("issue", cmd_issue, "make a key and a certificate signed by the CA in one step")
    p.add_argument("--ca", required=True, metavar="DIR", help="the CA folder")
    names(p)
    p.add_argument("--cert-out", required=True, metavar="FILE")
    p.add_argument("--key-out", required=True, metavar="FILE")
    p.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    _add_usage(p)
    _add_passphrase(p)

    p = cmd("self-signed", cmd_self_signed, "make a key and a self-signed certificate (no CA; peers get verify=FAIL)")
    names(p)
    p.add_argument("--cert-out", required=True, metavar="FILE")
    p.add_argument("--key-out", required=True, metavar="FILE")
    p.add_argument("--days", type=int, default=825)
    p.add_argument("--force", action="store_true", help="replace existing output files")
    _add_usage(p)

    p = cmd("revoke", cmd_revoke, "mark a certificate revoked (publish with 'mailward ca crl')")
    p.add_argument("cert", metavar="CERT", nargs="?", help="the certificate file to revoke")
    p.add_argument("--serial", metavar="HEX", help="revoke by serial instead of by file")
    p.add_argument("--ca", required=True, metavar="DIR", help="the CA folder")
    p.add_argument("--reason", choices=revocation.REASONS, help="RFC 5280 reason code")

    p = cmd("crl", cmd_crl, "sign a new certificate revocation list (CA_DIR/crl.pem)")
    p.add_argument("--ca", required=True, metavar="DIR", help="the CA folder")
    p.add_argument("--out", metavar="FILE", help="also write the CRL here (e.g. the server's crl_file)")
    p.add_argument("--days", type=int, default=30, help="days until nextUpdate (default 30)")
    _add_passphrase(p)

    p = cmd("show", cmd_show, "print a certificate's DNs in sendmail's form and +XX form, names, validity, fingerprints")
    p.add_argument("cert", metavar="CERT", nargs="+")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = cmd("check", cmd_check, "check the server's TLS files: load, key matches, chain, expiry, permissions")
    p.add_argument("-c", "--config", metavar="CONFIG",
                   help="read the files from the config's [tls] section (without -c and without --cert/--key: "
                        "$MAILWARD_CONFIG, else /etc/mailward/mailward.toml)")
    p.add_argument("--cert", metavar="FILE")
    p.add_argument("--key", metavar="FILE")
    p.add_argument("--ca-file", metavar="FILE")
    p.add_argument("--ca-path", metavar="DIR")
    p.add_argument("--crl", metavar="FILE")
    p.add_argument("--hostname", help="warn when this name is not among the certificate's names")

    p = cmd("rehash", cmd_rehash, "make OpenSSL hash-named links (HASH.0, HASH.r0) in a CA folder (CApath)")
    p.add_argument("dir", metavar="DIR")

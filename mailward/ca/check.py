"""Check the TLS files a server is configured with, before a peer finds the problem.

:func:`check_tls_files` looks at the files of ``[tls]`` (``cert_file``, ``key_file``,
``ca_file``, ``ca_path``, ``crl_file``) and returns a list of :class:`Problem`; an empty list
means all is well. It never raises for a bad file: each problem names the file, says what is
wrong and gives the command that fixes it. ``mailward ca check`` prints them; ``serve`` is meant
to run the same check at start (:func:`check_config`) and refuse to start on an ``error``.

Errors (the server cannot work, or works wrongly):
  a file that is missing, unreadable or not PEM; an encrypted key (the MTA starts unattended:
  "Securing Sendmail with TLS", "cannot load the (encrypted) key at startup"); a key that does not belong to the
  certificate; an expired or not-yet-valid certificate; a private key readable by group or
  others (sendmail refuses such a key too); a certificate whose chain fails against the
  configured CAs for a reason other than "issuer not configured" (revoked, bad signature,
  expired CA); a CA certificate that expired; a CRL past its nextUpdate (OpenSSL then fails
  *every* certificate of that issuer).
Warnings (works, but someone will be surprised):
  expiry within 30 days; a certificate folder readable by group or others ("Securing Sendmail with TLS":
  ``chmod -R go-rwx``); a certificate whose issuer is not among the configured CAs; no CA
  configured (client certificates then never verify); a certificate without serverAuth; the
  server's host name not among the certificate's names; a CApath without hash links; a CRL
  that expires within 7 days or whose issuer is unknown.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from OpenSSL import crypto

from mailward.ca.keys import public_key_der
from mailward.ca.rehash import subject_hash
from mailward.ca.show import describe
from mailward.ca.store import CAError, is_encrypted_key, load_certs, load_private_key, read_bytes
from mailward.tls.dn import name_components, oneline

WARN_DAYS = 30
CONFIG_NAMES = {"cert": "tls.cert_file", "key": "tls.key_file", "ca_file": "tls.ca_file", "ca_path": "tls.ca_path",
                "crl": "tls.crl_file"}
CRL_WARN_DAYS = 7


@dataclass(frozen=True)
class Problem:
    severity: str   # "error" or "warning"
    file: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.file}: {self.what}; fix: {self.fix}"


def _issue_cmd(cn: str, cert: Path, key: Path) -> str:
    return (f"mailward ca issue --ca CA_DIR --cn {cn or 'HOST'} --cert-out {cert} --key-out {key} --force")


def _load_crls(path: Path) -> list[x509.CertificateRevocationList]:
    data = read_bytes(path, "a PEM CRL")
    blocks = re.findall(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", data, re.S)
    try:
        if not blocks:
            return [x509.load_der_x509_crl(data)]
        return [x509.load_pem_x509_crl(b) for b in blocks]
    except ValueError:
        raise CAError(f"{path}: not a valid certificate revocation list (CRL)") from None


class _Checker:
    def __init__(self, when: dt.datetime) -> None:
        self.when = when
        self.problems: list[Problem] = []

    def error(self, file, what, fix) -> None:
        self.problems.append(Problem("error", str(file), what, fix))

    def warning(self, file, what, fix) -> None:
        self.problems.append(Problem("warning", str(file), what, fix))

    def validity(self, path, cert: x509.Certificate, what: str, fix: str) -> None:
        end, start = cert.not_valid_after_utc, cert.not_valid_before_utc
        if end <= self.when:
            self.error(path, f"{what} expired on {end:%Y-%m-%d %H:%M} UTC", fix)
        elif start > self.when:
            self.error(path, f"{what} is not valid before {start:%Y-%m-%d %H:%M} UTC (check the clock)", fix)
        elif end - self.when < dt.timedelta(days=WARN_DAYS):
            self.warning(path, f"{what} expires on {end:%Y-%m-%d %H:%M} UTC, in "
                               f"{(end - self.when).days} days", fix)

    def private_mode(self, path: Path, what: str) -> None:
        try:
            mode = path.stat().st_mode
        except OSError:
            return
        if mode & 0o077:
            self.error(path, f"{what} is readable by group or others (mode {stat.filemode(mode)})",
                       f"chmod 600 {path}")

    def folder_mode(self, folder: Path) -> None:
        try:
            mode = folder.stat().st_mode
        except OSError:
            return
        if mode & 0o077:
            self.warning(folder, f"the certificate folder is open to group or others "
                                 f"(mode {stat.filemode(mode)})", f"chmod -R go-rwx {folder}")


def _check_chain(c: _Checker, cert_file: Path, key_file: Path | None, chain: list[x509.Certificate],
                 ca_file: Path | None, ca_path: Path | None, crls: list[x509.CertificateRevocationList]) -> None:
    """Verify the leaf against the configured CAs the way the TLS stack will (OpenSSL)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        store = crypto.X509Store()
        try:
            store.load_locations(str(ca_file) if ca_file else None, str(ca_path) if ca_path else None)
        except crypto.Error:
            return  # the CA file's own problem is reported by its own check
        for crl in crls:
            store.add_crl(crl)
        if crls:
            store.set_flags(crypto.X509StoreFlags.CRL_CHECK)
        store.set_time(c.when.replace(tzinfo=None))
        leaf = crypto.X509.from_cryptography(chain[0])
        extra = [crypto.X509.from_cryptography(x) for x in chain[1:]]
        try:
            crypto.X509StoreContext(store, leaf, extra).verify_certificate()
            return
        except crypto.X509StoreContextError as err:
            code, message = err.errors[0], str(err.errors[2]) if len(err.errors) > 2 else str(err)
    # 2 unable to get issuer certificate, 20 unable to get local issuer, 18/19 self-signed.
    if code in (2, 18, 19, 20):
        c.warning(cert_file, f"does not verify against the configured CA ({message}); peers that trust "
                             "only that CA will see verify=FAIL",
                  "issue the certificate from the configured CA, or add its issuer to ca_file")
    elif code == 3:  # unable to get certificate CRL: no CRL for this issuer is not a failure
        pass
    elif code == 23:
        c.error(cert_file, "the certificate is revoked in the configured CRL",
                _issue_cmd(describe(chain[0], c.when).cn_subject, cert_file, key_file or Path("KEY")))
    elif code in (10, 12):  # expired certificate / expired CRL: reported by their own checks
        pass
    else:
        c.error(cert_file, f"the chain does not verify: {message}",
                "issue a new certificate from the configured CA")


def _check_ca_path(c: _Checker, ca_path: Path) -> None:
    if not ca_path.is_dir():
        c.error(ca_path, "ca_path is not a folder", "give the folder of CA certificates, or leave ca_path empty")
        return
    try:
        names = sorted(os.listdir(ca_path))
    except OSError as err:
        c.error(ca_path, f"cannot list the folder: {err.strerror}", f"chmod u+rx {ca_path}")
        return
    links = {n for n in names if re.match(r"^[0-9a-f]{8}\.[0-9]+$", n)}
    for name in names:
        path = ca_path / name
        if name in links or not name.endswith((".pem", ".crt", ".cer")) or not path.is_file():
            continue
        try:
            certs = load_certs(path)
        except CAError:
            continue
        if not any(f"{subject_hash(certs[0])}.{i}" in links for i in range(10)):
            c.warning(path, "has no hash-named link, so OpenSSL's CApath lookup never finds it",
                      f"mailward ca rehash {ca_path}")
        else:
            c.validity(path, certs[0], "the CA certificate", "replace it with the CA's new certificate")


def check_tls_files(cert_file: Path | str | None, key_file: Path | str | None,
                    ca_file: Path | str | None = None, ca_path: Path | str | None = None,
                    crl_file: Path | str | None = None, *, hostname: str | None = None,
                    when: dt.datetime | None = None, names: dict[str, str] | None = None) -> list[Problem]:
    """All problems with these files (empty paths are "not configured"); never raises.

    ``names`` says where each file was named (keys cert, key, ca_file, ca_path, crl), for the
    advice: by default the config settings (``tls.cert_file`` ...); ``mailward ca check``
    passes ``--cert`` etc. for files given on its command line.
    """
    names = {**CONFIG_NAMES, **(names or {})}
    p = lambda v: Path(v) if v else None  # noqa: E731 - "" means not configured
    cert_file, key_file, ca_file, ca_path, crl_file = map(p, (cert_file, key_file, ca_file, ca_path, crl_file))
    c = _Checker(when or dt.datetime.now(dt.timezone.utc))

    chain: list[x509.Certificate] = []
    cn = ""
    if cert_file is None and key_file is not None:
        c.error(key_file, "key_file is set but cert_file is not", "set [tls] cert_file to the key's certificate")
    if cert_file is not None:
        try:
            chain = load_certs(cert_file)
        except CAError as err:
            _cert_problem(c, cert_file, key_file, names["cert"], str(err).split(": ", 1)[-1])
        if chain:
            info = describe(chain[0], c.when)
            cn = info.cn_subject
            fix = _issue_cmd(cn, cert_file, key_file or Path("KEY"))
            c.validity(cert_file, chain[0], "the certificate", fix)
            if "server" not in info.usage:
                c.warning(cert_file, "the certificate is not for TLS servers (no serverAuth in "
                                     "extendedKeyUsage); clients will refuse it", fix.replace(" --force", " --both --force"))
            if hostname and not _names_match(hostname, info):
                c.warning(cert_file, f"the server's host name {hostname} is not among the certificate's names "
                                     f"({', '.join(info.sans) or 'no subjectAltName'})",
                          _issue_cmd(hostname, cert_file, key_file or Path("KEY")))
        c.folder_mode(cert_file.parent.resolve())
        if key_file is None:
            c.error(cert_file, "cert_file is set but key_file is not", "set [tls] key_file to the certificate's key")

    if key_file is not None:
        fix = _issue_cmd(cn, cert_file or Path("CERT"), key_file)
        try:
            data = read_bytes(key_file, "a PEM private key")
        except CAError as err:
            data = None
            if not key_file.exists() and not key_file.is_symlink():
                c.error(key_file, f"no such file (named by {names['key']})",
                        f"check the path in {names['key']}; only if the key is truly lost, make a new pair: {fix}")
            else:
                c.error(key_file, str(err).split(": ", 1)[-1], fix)
        if data is not None and _is_certificate_only(data):
            # A certificate is usually mode 0644: saying "readable by others" would send the
            # operator to chmod a file that is not a key at all.
            c.error(key_file, f"holds a certificate, not a private key ({names['key']} names a certificate)",
                    f"set {names['key']} to the private key made with the certificate (e.g. the -key.pem file "
                    f"written by mailward ca issue --key-out), not to {cert_file or 'the certificate'}")
        elif data is not None:
            c.private_mode(key_file, "the private key")
            if key_file.parent.resolve() != (cert_file.parent.resolve() if cert_file else None):
                c.folder_mode(key_file.parent.resolve())
            if is_encrypted_key(data):
                c.error(key_file, "the private key is encrypted; the server starts unattended and cannot "
                                  "type a passphrase", _decrypt_cmd(key_file))
            else:
                try:
                    key = load_private_key(key_file)
                except CAError as err:
                    c.error(key_file, str(err).split(": ", 1)[-1], fix)
                else:
                    if chain and public_key_der(key) != public_key_der(chain[0]):
                        c.error(key_file, f"the key does not belong to the certificate {cert_file}",
                                f"use the key made together with {cert_file}, or make a new pair: {fix}")

    ca_certs: list[x509.Certificate] = []
    if ca_file is not None:
        try:
            ca_certs = load_certs(ca_file)
        except CAError as err:
            c.error(ca_file, str(err).split(": ", 1)[-1], "point [tls] ca_file at the CA's ca.pem")
        for ca in ca_certs:
            info = describe(ca, c.when)
            c.validity(ca_file, ca, f"the CA certificate {info.subject}",
                       "make a new CA (mailward ca init NEW_DIR --cn NAME) and re-issue its certificates")
            if not info.is_ca and not info.self_signed:
                c.warning(ca_file, f"{info.subject} is not a CA certificate (no basicConstraints CA:TRUE)",
                          "put the CA's ca.pem in ca_file, not a server certificate")
    if ca_path is not None:
        _check_ca_path(c, ca_path)
    if ca_file is None and ca_path is None and cert_file is not None:
        c.warning(cert_file, "no ca_file or ca_path is configured, so no client certificate can verify "
                             "(every client gets verify=FAIL)", "set [tls] ca_file to your CA's ca.pem")

    crls: list[x509.CertificateRevocationList] = []
    if crl_file is not None:
        try:
            crls = _load_crls(crl_file)
        except CAError as err:
            c.error(crl_file, str(err).split(": ", 1)[-1], "mailward ca crl --ca CA_DIR --out " + str(crl_file))
        for crl in crls:
            _check_crl(c, crl_file, crl, ca_certs)

    if chain and (ca_file is not None or ca_path is not None):
        _check_chain(c, cert_file, key_file, chain, ca_file if ca_certs else None,
                     ca_path if ca_path and ca_path.is_dir() else None, crls)
    return c.problems


def _cert_problem(c: _Checker, cert_file: Path, key_file: Path | None, name: str, why: str) -> None:
    """cert_file cannot be loaded. A wrong path is the usual cause; re-issuing with --force
    would also overwrite the key (and a key that other servers pin), so it is never the first advice."""
    if not cert_file.exists() and not cert_file.is_symlink():
        key = f" {key_file}" if key_file else ""
        c.error(cert_file, f"no such file (named by {name})",
                f"check the path in {name} (a typo, or the file moved?); do not re-issue to fix a path: "
                f"mailward ca issue --force would overwrite the key{key} as well")
        return
    try:
        data = cert_file.read_bytes()
    except OSError:
        data = b""
    if b"PRIVATE KEY" in data and b"BEGIN CERTIFICATE" not in data:
        c.error(cert_file, f"holds a private key, not a certificate ({name} names a key)",
                f"set {name} to the certificate file and the key's path in the key setting")
        return
    c.error(cert_file, why, f"check that {name} names the server's certificate (PEM); if it is damaged, "
                            f"issue a new pair: {_issue_cmd('HOST', cert_file, key_file or Path('KEY'))}")


def _is_certificate_only(data: bytes) -> bool:
    """A PEM file with a certificate and no private key in it."""
    return b"-----BEGIN CERTIFICATE-----" in data and b"PRIVATE KEY-----" not in data


def _decrypt_cmd(key_file: Path) -> str:
    """How to write the key without its passphrase, keeping it private (mode 0600 throughout)."""
    return (f"write it decrypted: (umask 077; openssl pkey -in {key_file} -out {key_file}.new) "
            f"(asks for the passphrase), then mv {key_file}.new {key_file} and chmod 600 {key_file}")


def check_config(config) -> list[Problem]:
    """:func:`check_tls_files` for a loaded :class:`mailward.config.Config` ([tls] and server.hostname)."""
    tls = config.tls
    if not tls.cert_file and not tls.key_file:
        return []
    return check_tls_files(tls.cert_file, tls.key_file, tls.ca_file, tls.ca_path, tls.crl_file,
                           hostname=config.server.hostname)


def _check_crl(c: _Checker, path: Path, crl: x509.CertificateRevocationList, ca_certs) -> None:
    fix = f"mailward ca crl --ca CA_DIR --out {path}"
    issuer = describe_name(crl.issuer)
    nxt = crl.next_update_utc
    if nxt is not None and nxt <= c.when:
        c.error(path, f"the CRL of {issuer} expired on {nxt:%Y-%m-%d %H:%M} UTC; OpenSSL now fails every "
                      "certificate of that CA", fix)
    elif nxt is not None and nxt - c.when < dt.timedelta(days=CRL_WARN_DAYS):
        c.warning(path, f"the CRL of {issuer} expires on {nxt:%Y-%m-%d %H:%M} UTC", fix)
    signers = [ca for ca in ca_certs if ca.subject == crl.issuer]
    if ca_certs and not signers:
        c.warning(path, f"the CRL's issuer {issuer} is not in ca_file", "use the CRL of the CA in ca_file")
    elif signers and not any(_crl_signed_by(crl, ca) for ca in signers):
        c.error(path, f"the CRL's signature does not verify with the CA certificate of {issuer}", fix)


def _crl_signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(ca.public_key())
    except Exception:
        return False


def describe_name(name: x509.Name) -> str:
    return oneline(name_components(name))


def _names_match(hostname: str, info) -> bool:
    host = hostname.lower().rstrip(".")
    for san in info.sans:
        kind, _, value = san.partition(":")
        value = value.lower()
        if value == host:
            return True
        if kind == "DNS" and value.startswith("*.") and host.split(".", 1)[-1] == value[2:] and "." in host:
            return True
    return not info.sans and info.cn_subject.lower() == host

"""TLS contexts for the server and the delivery client, and the verify semantics of sendmail.

Why pyOpenSSL and not the stdlib ``ssl`` module: sendmail requests a client certificate,
and a certificate that fails verification does *not* abort the handshake — the session goes
on with verify=FAIL and policy decides later (sendmail cf/README, STARTTLS, ``${verify}``). The stdlib's
CERT_OPTIONAL aborts the handshake on an untrusted certificate and offers no verify
callback (measured). pyOpenSSL's ``set_verify`` callback lets us record the first error and
return True, so the handshake completes and we keep OpenSSL's own error text
(``verifymsg``); it also works with memory BIOs, which lets the asyncio layer own sockets.

Revocation: with a CRL file configured, OpenSSL checks the leaf (X509_V_FLAG_CRL_CHECK). A
certificate whose issuer has no CRL in the file must not fail for that alone, so
X509_V_ERR_UNABLE_TO_GET_CRL is ignored; a revoked certificate gives verify=FAIL.

Contract: :func:`server_context` / :func:`client_context` raise :class:`TLSConfigError` with
one line naming the file and the fix; they never return a half-configured context.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from OpenSSL import SSL, crypto

from mailward.tls import dn
from mailward.tls.facts import TLSFacts

X509_V_ERR_UNABLE_TO_GET_CRL = 3
_VERSIONS = {"TLSv1": SSL.TLS1_VERSION, "TLSv1.1": SSL.TLS1_1_VERSION,
             "TLSv1.2": SSL.TLS1_2_VERSION, "TLSv1.3": SSL.TLS1_3_VERSION}


class TLSConfigError(Exception):
    pass


@dataclass(frozen=True)
class TLSFiles:
    cert_file: str | Path = ""
    key_file: str | Path = ""
    ca_file: str | Path = ""
    ca_path: str | Path = ""
    crl_file: str | Path = ""
    min_version: str = "TLSv1.2"
    ciphers: str = ""


def verify_error_text(errnum: int) -> str:
    try:
        from OpenSSL._util import ffi, lib  # OpenSSL's own wording, as sendmail logs it
        return ffi.string(lib.X509_verify_cert_error_string(errnum)).decode("ascii", "replace")
    except Exception:  # pragma: no cover - pyOpenSSL internals moved
        return f"certificate verify error {errnum}"


def check_key_file(path: Path) -> None:
    """sendmail is 'picky' about key permissions ("Securing Sendmail with TLS"); so are we."""
    try:
        st = path.stat()
    except OSError as err:
        raise TLSConfigError(f"{path}: cannot read the key: {err.strerror}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise TLSConfigError(f"{path}: private key is readable by group or others "
                             f"(mode {stat.S_IMODE(st.st_mode):04o}); fix: chmod go-rwx {path}")
    text = path.read_bytes()
    if b"ENCRYPTED" in text:
        raise TLSConfigError(f"{path}: private key is encrypted and cannot be loaded at startup; "
                             f"fix: decrypt it ((umask 077; openssl pkey -in {path} -out {path}.new) && mv {path}.new {path})")


def _verify_callback(conn: SSL.Connection, cert, errnum: int, depth: int, ok: int) -> bool:
    """Record the first verification error on the connection and let the handshake go on."""
    if not ok and errnum != X509_V_ERR_UNABLE_TO_GET_CRL:
        state = conn.get_app_data()
        if isinstance(state, dict) and "verify_error" not in state:
            state["verify_error"] = errnum
            # for sendmail's "TLS cert verify: depth=0 /C=../CN=.., state=0, reason=..." line
            state["verify_error_depth"] = depth
            try:
                state["verify_error_dn"] = dn.oneline(_components(cert.get_subject()))
            except Exception:  # pragma: no cover - a certificate pyOpenSSL cannot read
                state["verify_error_dn"] = ""
    return True


def _base_context(files: TLSFiles, method: int) -> SSL.Context:
    ctx = SSL.Context(method)
    ctx.set_min_proto_version(_VERSIONS[files.min_version])
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    if files.ciphers:
        try:
            ctx.set_cipher_list(files.ciphers.encode("ascii"))
        except SSL.Error:
            raise TLSConfigError(f"tls.ciphers: OpenSSL accepts none of {files.ciphers!r}") from None
    if files.ca_file or files.ca_path:
        try:
            ctx.load_verify_locations(str(files.ca_file) if files.ca_file else None,
                                      str(files.ca_path) if files.ca_path else None)
        except SSL.Error as err:
            name = files.ca_file or files.ca_path
            raise TLSConfigError(f"{name}: cannot load CA certificates: {_ssl_reason(err)}") from None
    if files.crl_file:
        store = ctx.get_cert_store()
        try:
            data = Path(files.crl_file).read_bytes()
        except OSError as err:
            raise TLSConfigError(f"{files.crl_file}: cannot read the CRL: {err.strerror}") from None
        count = 0
        for block in data.split(b"-----END X509 CRL-----"):
            if b"-----BEGIN X509 CRL-----" in block:
                try:
                    store.add_crl(crypto.load_crl(crypto.FILETYPE_PEM, block + b"-----END X509 CRL-----\n"))
                except (crypto.Error, AttributeError):
                    from cryptography import x509
                    store.add_crl(x509.load_pem_x509_crl(block + b"-----END X509 CRL-----\n"))
                count += 1
        if not count:
            raise TLSConfigError(f"{files.crl_file}: no PEM CRL found; fix: mailward ca crl")
        store.set_flags(crypto.X509StoreFlags.CRL_CHECK)
    return ctx


def _ssl_reason(err: Exception) -> str:
    try:
        return "; ".join(e[2] for e in err.args[0]) or str(err)
    except Exception:
        return str(err)


def _load_identity(ctx: SSL.Context, cert_file, key_file, what: str) -> None:
    cert_path, key_path = Path(cert_file), Path(key_file)
    check_key_file(key_path)
    try:
        ctx.use_certificate_chain_file(str(cert_path))
    except SSL.Error as err:
        raise TLSConfigError(f"{cert_path}: cannot load the {what} certificate: {_ssl_reason(err)}") from None
    try:
        ctx.use_privatekey_file(str(key_path))
        ctx.check_privatekey()
    except SSL.Error as err:
        raise TLSConfigError(f"{key_path}: the key cannot be used with {cert_path}: {_ssl_reason(err)}; "
                             f"fix: mailward ca check") from None


def server_context(files: TLSFiles) -> SSL.Context:
    """Context for STARTTLS on the server; clients' certificates are requested per connection."""
    ctx = _base_context(files, SSL.TLS_SERVER_METHOD)
    _load_identity(ctx, files.cert_file, files.key_file, "server")
    ctx.set_session_id(b"mailward")
    if files.ca_file:
        # The CertificateRequest lists acceptable CAs, as sendmail does with confCACERT.
        try:
            ctx.load_client_ca(str(files.ca_file).encode())
        except SSL.Error:
            pass
    ctx.set_verify(SSL.VERIFY_PEER, _verify_callback)
    return ctx


def client_context(files: TLSFiles) -> SSL.Context:
    """Context for delivery: present the client certificate when configured, verify the server."""
    ctx = _base_context(files, SSL.TLS_CLIENT_METHOD)
    if files.cert_file and files.key_file:
        _load_identity(ctx, files.cert_file, files.key_file, "client")
    if not (files.ca_file or files.ca_path):
        ctx.set_default_verify_paths()
    ctx.set_verify(SSL.VERIFY_PEER, _verify_callback)
    return ctx


def new_connection(ctx: SSL.Context, *, server_side: bool, request_cert: bool = True,
                   server_hostname: str | None = None) -> SSL.Connection:
    conn = SSL.Connection(ctx, None)  # memory BIOs
    conn.set_app_data({"request_cert": request_cert or not server_side})
    if server_side:
        conn.set_verify(SSL.VERIFY_PEER if request_cert else SSL.VERIFY_NONE, _verify_callback)
        conn.set_accept_state()
    else:
        if server_hostname:
            try:
                conn.set_tlsext_host_name(server_hostname.encode("idna"))
            except Exception:
                pass
        conn.set_connect_state()
    return conn


def _alg_bits(conn: SSL.Connection, secret_bits: int) -> int:
    try:
        from OpenSSL._util import ffi, lib
        cipher = lib.SSL_get_current_cipher(conn._ssl)
        out = ffi.new("int *")
        lib.SSL_CIPHER_get_bits(cipher, out)
        return int(out[0])
    except Exception:  # pragma: no cover
        return secret_bits


def facts_after_handshake(conn: SSL.Connection) -> TLSFacts:
    """sendmail's macros for an established session ("sendmail cf/README, STARTTLS", macros)."""
    state = conn.get_app_data() or {}
    bits = conn.get_cipher_bits() or 0
    cert = conn.get_peer_certificate()
    subject = issuer = cn_subject = cn_issuer = fingerprint = failure = ""
    if cert is None:
        verify = "NO" if state.get("request_cert", True) else "NOT"
        verifymsg = "ok"
    else:
        subj, iss = cert.get_subject(), cert.get_issuer()
        subject = dn.xtext_encode(dn.oneline(_components(subj)))
        issuer = dn.xtext_encode(dn.oneline(_components(iss)))
        cn_subject = _last_cn(subj)
        cn_issuer = _last_cn(iss)
        fingerprint = cert.digest("sha256").decode().replace(":", "").lower()
        errnum = state.get("verify_error")
        verify = "OK" if errnum is None else "FAIL"
        verifymsg = "ok" if errnum is None else verify_error_text(errnum)
        if errnum is not None:
            failure = (f"depth={state.get('verify_error_depth', 0)} {state.get('verify_error_dn', '')}, "
                       f"state=0, reason={verifymsg}")
    return TLSFacts(
        verify=verify, tls_version=conn.get_protocol_version_name(), cipher=conn.get_cipher_name() or "",
        cipher_bits=bits, alg_bits=_alg_bits(conn, bits), cert_subject=subject, cert_issuer=issuer,
        cn_subject=cn_subject, cn_issuer=cn_issuer, verifymsg=verifymsg, cert_fingerprint=fingerprint,
        verify_failure=failure)


def _components(name: crypto.X509Name) -> list[tuple[str, str]]:
    return [(k.decode("ascii"), v.decode("utf-8", "replace")) for k, v in name.get_components()]


def _last_cn(name: crypto.X509Name) -> str:
    cns = [v for k, v in _components(name) if k == "CN"]
    return cns[-1] if cns else ""


def tls_files_from_config(tls_settings) -> TLSFiles:
    return TLSFiles(cert_file=tls_settings.cert_file, key_file=tls_settings.key_file,
                    ca_file=tls_settings.ca_file, ca_path=tls_settings.ca_path,
                    crl_file=tls_settings.crl_file, min_version=tls_settings.min_version,
                    ciphers=tls_settings.ciphers)


def readable_by_others(path: Path) -> bool:
    return bool(stat.S_IMODE(os.stat(path).st_mode) & 0o077)

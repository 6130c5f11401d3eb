"""A TLS session over memory BIOs: ciphertext in and out, plaintext in and out. No sockets.

The asyncio layer owns the transport; this object only transforms bytes, so the same code
serves the SMTP server (after STARTTLS) and the delivery client. Renegotiation is disabled
in the context (OP_NO_RENEGOTIATION); a peer that tries it gets a TLS alert, and the
session fails as a :class:`TLSFailure`.

Failure behaviour: whatever the peer sends, :meth:`TLSEngine.feed` returns or raises
:class:`TLSFailure` (the reason, and the alert to send in ``__cause__.output``) or
:class:`TLSClosed` (close_notify); nothing else.

SECURITY
    Faces the network: every record given to :meth:`TLSEngine.feed` is the peer's — its
    ClientHello or ServerHello, its certificate chain (verified by OpenSSL with the
    context's CA files and CRLs, :mod:`mailward.tls.context`), alerts, a close_notify at any
    moment, renegotiation attempts, records cut anywhere or garbage instead of a handshake.

    Bounded: each call reads and writes OpenSSL's buffers in pieces of one record plus its
    overhead (``_CHUNK``), and returns no more plaintext than the ciphertext it was given
    decrypts to; the oldest protocol version by ``tls.min_version`` and the TLS 1.2 suites by
    ``tls.ciphers``. How long a handshake may take is the caller's timer
    (``server.tls_handshake_timeout`` on the receiving side).

    Must never happen: plaintext returned before the handshake completed (what the peer sent
    in clear is never application data); a completed handshake whose facts (``facts``:
    verify, cipher, bits, the certificate's DNs) are lost because an error or a close_notify
    came in the same read (``facts`` is set before anything is raised); a failed
    verification silently ending the session — it is a fact (``verify=FAIL``) for policy
    to judge (sendmail cf/README, STARTTLS: ``${verify}``); renegotiation.
"""

from __future__ import annotations

from OpenSSL import SSL

try:   # pyOpenSSL's own cffi bindings: not a public API, so every use has a public fallback
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib
    from OpenSSL._util import no_zero_allocator as _alloc
    DIRECT = all(hasattr(_lib, name) for name in ("SSL_read", "SSL_write", "BIO_read", "SSL_get_error")) \
        and hasattr(SSL.Connection, "_raise_ssl_error")
except ImportError:   # a pyOpenSSL whose internals moved: its public methods, a little slower
    DIRECT = False

from mailward.tls.context import facts_after_handshake, new_connection
from mailward.tls.facts import TLSFacts


# One TLS record and its overhead: a larger buffer is allocated (and, at 64 KiB, mapped and
# unmapped) on every call for nothing (measured with strace in the benchmark).
_CHUNK = 16384 + 2048

# After the handshake, records are read and written by OpenSSL's SSL_read, SSL_write and
# BIO_read directly (the functions pyOpenSSL's recv, send and bio_read call): "nothing more
# for now" is then a return value, not a WantReadError raised and caught at the end of every
# read (two per received segment). Anything else is handed to pyOpenSSL's own error
# translation, so the exceptions raised are the ones its methods raise. The handshake stays
# with pyOpenSSL (its verify callback reports through the calls it wraps).
_WANT_READ = _lib.SSL_ERROR_WANT_READ if DIRECT else None


class TLSFailure(Exception):
    """The handshake or the session failed (verify=SOFTWARE); str() says why."""


class TLSClosed(Exception):
    """The peer closed the TLS session (close_notify)."""


class TLSEngine:
    def __init__(self, ctx: SSL.Context, *, server_side: bool, request_cert: bool = True,
                 server_hostname: str | None = None):
        self.conn = new_connection(ctx, server_side=server_side, request_cert=request_cert,
                                   server_hostname=server_hostname)
        self.handshake_done = False
        self.facts: TLSFacts | None = None

    def _drain(self) -> bytes:
        """Every octet OpenSSL has for the peer (an empty memory BIO reads <= 0)."""
        if not DIRECT:
            return self._drain_public()
        out = []
        bio, buf = self.conn._from_ssl, _alloc("char[]", _CHUNK)
        while True:
            n = _lib.BIO_read(bio, buf, _CHUNK)
            if n <= 0:
                break
            out.append(_ffi.buffer(buf, n)[:])
        return out[0] if len(out) == 1 else b"".join(out)

    def _drain_public(self) -> bytes:
        out = []
        while True:
            try:
                data = self.conn.bio_read(_CHUNK)
            except SSL.WantReadError:
                break
            if not data:
                break
            out.append(data)
        return b"".join(out)

    def start(self) -> bytes:
        """For the client side: the ClientHello to send."""
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            pass
        except SSL.Error as err:
            raise TLSFailure(_reason(err)) from None
        return self._drain()

    def feed(self, ciphertext: bytes) -> tuple[bytes, bytes]:
        """Take received ciphertext; return (plaintext received, ciphertext to send).

        Raises :class:`TLSClosed` on close_notify and :class:`TLSFailure` on any TLS error.
        Either may come in the same call that completed the handshake (a client may send
        its Finished and its close_notify in one segment): ``handshake_done`` and ``facts``
        are set before anything is raised, so the caller can still log the handshake.
        """
        if ciphertext:
            self.conn.bio_write(ciphertext)
        plain = []
        if not self.handshake_done:
            try:
                self.conn.do_handshake()
            except SSL.WantReadError:
                return b"", self._drain()
            except SSL.Error as err:
                out = self._drain()  # the alert, if any, still goes out
                raise TLSFailure(_reason(err)) from TLSFailureWithOutput(out)
            self.handshake_done = True
            self.facts = facts_after_handshake(self.conn)
        if not DIRECT:
            return self._read_public(plain)
        conn = self.conn
        ssl, buf = conn._ssl, _alloc("char[]", _CHUNK)
        while True:
            n = _lib.SSL_read(ssl, buf, _CHUNK)
            if n > 0:
                plain.append(_ffi.buffer(buf, n)[:])
                continue
            if _lib.SSL_get_error(ssl, n) == _WANT_READ:
                break
            try:
                conn._raise_ssl_error(ssl, n)   # pyOpenSSL's exception for this result
            except SSL.Error as err:
                self._read_ended(err, plain)
            break
        return b"".join(plain), self._drain()

    def _read_public(self, plain: list) -> tuple[bytes, bytes]:
        while True:
            try:
                plain.append(self.conn.recv(_CHUNK))
            except SSL.Error as err:
                self._read_ended(err, plain)
                break
        return b"".join(plain), self._drain()

    def _read_ended(self, err: SSL.Error, plain: list) -> None:
        """What ended a read: nothing more for now (return); close_notify (TLSClosed, unless
        data came first: it is delivered, and the next read ends the same way); anything
        else TLSFailure, with our alert still to go out."""
        if isinstance(err, SSL.WantReadError):
            return
        if isinstance(err, SSL.ZeroReturnError):
            if plain:
                return
            raise TLSClosed() from None
        out = self._drain()
        raise TLSFailure(_reason(err)) from TLSFailureWithOutput(out)

    def peer_chain_der(self) -> list[bytes]:
        """The certificates the peer presented, leaf first, in DER (for DANE, RFC 7672 §3, and
        the host-name check of MTA-STS and ``delivery.tls_floor = "verify"``); [] without any."""
        from OpenSSL import crypto
        try:
            chain = self.conn.get_peer_cert_chain() or []
            if not chain:
                leaf = self.conn.get_peer_certificate()
                chain = [leaf] if leaf is not None else []
            return [crypto.dump_certificate(crypto.FILETYPE_ASN1, c) for c in chain]
        except SSL.Error:
            return []

    def encrypt(self, plaintext: bytes) -> bytes:
        if not DIRECT:
            view = memoryview(plaintext)
            while view:
                try:
                    n = self.conn.send(view[:16384])
                except SSL.Error as err:
                    raise TLSFailure(_reason(err)) from None
                view = view[n:]
            return self._drain()
        conn = self.conn
        ssl, done, size = conn._ssl, 0, len(plaintext)
        with _ffi.from_buffer(plaintext) as data:
            while done < size:
                n = _lib.SSL_write(ssl, data + done, min(size - done, 16384))
                if n <= 0:
                    try:
                        conn._raise_ssl_error(ssl, n)   # pyOpenSSL's exception for this result
                    except SSL.Error as err:
                        raise TLSFailure(_reason(err)) from None
                    raise TLSFailure("SSL_write wrote nothing")
                done += n
        return self._drain()

    def close(self) -> bytes:
        """close_notify to send, best effort."""
        try:
            self.conn.shutdown()
        except SSL.Error:
            pass
        return self._drain()


class TLSFailureWithOutput(Exception):
    def __init__(self, output: bytes):
        self.output = output


def _reason(err: Exception) -> str:
    try:
        parts = [e[2] for e in err.args[0] if len(e) > 2]
        if parts:
            return "; ".join(parts)
    except Exception:
        pass
    return str(err) or err.__class__.__name__

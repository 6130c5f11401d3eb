"""Revoking certificates and publishing the CRL (RFC 5280 §5).

* :func:`revoke` marks a certificate revoked in the CA's index. It needs no passphrase; the
  revocation takes effect for peers when :func:`make_crl` publishes a new CRL.
* :func:`make_crl` signs a CRL of every revoked certificate with the CA key, numbered from
  ``crlnumber``, valid for ``days`` (a CRL past its nextUpdate makes OpenSSL fail every
  certificate of that CA, so renew it well before: ``mailward ca check`` warns), and writes
  it to ``CA_DIR/crl.pem`` (and ``out`` when given).

Failure behaviour as in :mod:`mailward.ca.authority`: checked first, one-line
:class:`~mailward.ca.store.CAError`, the CA folder unchanged.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from mailward.ca import index as index_mod
from mailward.ca import crl
from mailward.ca.authority import CA_CERT, CRL, CRL_NUMBER, INDEX, Passphrase, load_ca, now
from mailward.ca.store import CAError, atomic_write, ca_lock, load_cert, read_bytes

REASONS = crl.REASONS
build_crl = crl.build_crl   # kept here too: the CRL is what revocation publishes


def revoke(ca_dir: Path, cert_file: Path | None = None, serial: int | None = None,
           reason: str = "") -> index_mod.Entry:
    """Mark a certificate (by file, or by serial) revoked in the index; returns its entry."""
    ca_dir = Path(ca_dir)
    if reason and reason not in REASONS:
        raise CAError(f"--reason {reason!r}: expected one of {', '.join(REASONS)}")
    if (cert_file is None) == (serial is None):
        raise CAError("revoke: give either a certificate file or --serial, not both")
    ca_cert = load_cert(ca_dir / CA_CERT)
    where = str(cert_file) if cert_file is not None else f"serial {index_mod.serial_hex(serial)}"
    if cert_file is not None:
        cert = load_cert(cert_file)
        if cert.issuer != ca_cert.subject:
            raise CAError(f"{cert_file}: not issued by the CA in {ca_dir} (its issuer is a different name)")
        try:
            cert.verify_directly_issued_by(ca_cert)
        except Exception:  # InvalidSignature, or a key type that cannot sign certificates
            raise CAError(f"{cert_file}: not signed by the CA in {ca_dir}") from None
        serial = cert.serial_number
    with ca_lock(ca_dir):
        entries = index_mod.read_index(ca_dir / INDEX)
        for i, entry in enumerate(entries):
            if entry.serial == serial:
                if entry.status == "R":
                    raise CAError(f"{where}: already revoked on {entry.revoked_at:%Y-%m-%d %H:%M} UTC")
                entries[i] = entry.revoke(now().replace(microsecond=0), reason)
                index_mod.write_index(ca_dir / INDEX, entries)
                return entries[i]
    raise CAError(f"{where}: serial {index_mod.serial_hex(serial)} is not in {ca_dir / INDEX}")


def make_crl(ca_dir: Path, passphrase: Passphrase = None, days: int = 30,
             out: Path | None = None) -> Path:
    """Sign and write a new CRL; returns the path of ``CA_DIR/crl.pem``."""
    ca_dir = Path(ca_dir)
    if not isinstance(days, int) or days < 1:
        raise CAError(f"--days {days!r}: expected a whole number of days >= 1")
    ca_cert, ca_key = load_ca(ca_dir, passphrase)
    with ca_lock(ca_dir):
        entries = index_mod.read_index(ca_dir / INDEX)
        number_file = ca_dir / CRL_NUMBER
        text = read_bytes(number_file, "the CRL number").decode().strip() if number_file.exists() else "01"
        try:
            number = int(text, 16)
        except ValueError:
            raise CAError(f"{number_file}: not a hex number (expected e.g. 01)") from None
        crl = build_crl(ca_cert, ca_key, entries, number, days)
        pem = crl.public_bytes(serialization.Encoding.PEM)
        if out is not None:
            atomic_write(Path(out), pem, 0o644)
        # The number first: a crash in between skips a number (harmless), never reuses one.
        atomic_write(number_file, (index_mod.serial_hex(number + 1) + "\n").encode(), 0o600)
        atomic_write(ca_dir / CRL, pem, 0o644)
    return ca_dir / CRL


"""Files of the certificate tool: read PEM things with one-line errors, write atomically.

Contract:

* Every loader either returns the parsed object or raises :class:`CAError` whose message is
  one line naming the file and what is wrong with it ("not a PEM certificate", "wrong
  passphrase", ...). Nothing here prints or exits.
* :func:`atomic_write` writes a temporary file in the target's folder with the final mode
  already set (a key is never readable by others, not even for a moment), fsyncs it and
  renames it over the target, then fsyncs the folder. A crash leaves either the old file or
  the new one, never half of one.
* :func:`ca_lock` serialises changes to a CA folder (index, CRL number) between processes.

SECURITY: private keys are created with ``O_EXCL`` and mode 0600 from the start; the
passphrase is only ever held as bytes and never written anywhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailward.config import ConfigError
from mailward.fsutil import write_atomically


class CAError(ConfigError):
    """A problem with a file or a value the user gave: ``str(err)`` is the one line shown."""


def read_bytes(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CAError(f"{path}: no such file (expected {what})") from None
    except IsADirectoryError:
        raise CAError(f"{path}: is a folder, expected {what}") from None
    except OSError as err:
        raise CAError(f"{path}: cannot read {what}: {err.strerror}") from None


def load_certs(path: Path) -> list[x509.Certificate]:
    """All certificates in a PEM file (leaf first, as written), or one DER certificate."""
    data = read_bytes(path, "a PEM certificate")
    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise CAError(f"{path}: not a valid PEM certificate (damaged or not a certificate)") from None
    else:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError:
            raise CAError(f"{path}: not a certificate (neither PEM nor DER)") from None
    if not certs:
        raise CAError(f"{path}: holds no certificate")
    return certs


def load_cert(path: Path) -> x509.Certificate:
    """The first certificate of a file."""
    return load_certs(path)[0]


def load_csr(path: Path) -> x509.CertificateSigningRequest:
    data = read_bytes(path, "a PEM certificate request")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError:
        raise CAError(f"{path}: not a valid certificate request (CSR)") from None


def load_crl(path: Path) -> x509.CertificateRevocationList:
    data = read_bytes(path, "a PEM CRL")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError:
        raise CAError(f"{path}: not a valid certificate revocation list (CRL)") from None


def is_encrypted_key(data: bytes) -> bool:
    """True for PKCS#8 ``ENCRYPTED PRIVATE KEY`` and legacy ``Proc-Type: 4,ENCRYPTED`` PEM."""
    return b"ENCRYPTED PRIVATE KEY" in data or b"Proc-Type: 4,ENCRYPTED" in data


def load_private_key(path: Path, passphrase: bytes | None = None, what: str = "private key"):
    """The key, decrypted with ``passphrase`` when it is encrypted.

    A passphrase given for an unencrypted key is ignored. An encrypted key without a
    passphrase, a wrong passphrase and a damaged file are each a :class:`CAError`.
    """
    data = read_bytes(path, f"a PEM {what}")
    encrypted = is_encrypted_key(data)
    if encrypted and not passphrase:
        raise CAError(f"{path}: the {what} is encrypted and no passphrase was given "
                      "(type it at the prompt, or use --passphrase-file / --passphrase-env)")
    try:
        return serialization.load_pem_private_key(data, passphrase if encrypted else None)
    except ValueError as err:
        if encrypted and ("decrypt" in str(err).lower() or "password" in str(err).lower()):
            raise CAError(f"{path}: wrong passphrase for the {what}") from None
        raise CAError(f"{path}: not a valid PEM {what}") from None
    except TypeError:
        raise CAError(f"{path}: not a valid PEM {what}") from None
    except Exception:  # unsupported algorithm and the like: still the file's fault
        raise CAError(f"{path}: cannot load the {what} (unsupported or damaged)") from None


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via temp file + fsync + rename; the final mode is set first."""
    path = Path(path)
    try:
        write_atomically(path, data, mode)
    except FileNotFoundError:
        raise CAError(f"{path}: the folder {path.parent} does not exist") from None
    except OSError as err:
        raise CAError(f"{path}: cannot write: {err.strerror}") from None


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def make_private_dir(folder: Path) -> None:
    """Create ``folder`` (and parents) with mode 0700 for the last part."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    except OSError as err:
        raise CAError(f"{folder}: cannot create the folder: {err.strerror}") from None


@contextlib.contextmanager
def ca_lock(ca_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``ca_dir/.lock`` while the CA's records change."""
    try:
        fd = os.open(Path(ca_dir) / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise CAError(f"{ca_dir}: cannot lock the CA folder: {err.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

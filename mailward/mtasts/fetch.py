"""Fetching the policy file over HTTPS (RFC 8461 §3.3): the network edge of MTA-STS.

Contract: ``await fetch_policy(domain, record_id, resolver, options)`` returns the parsed
:class:`~mailward.mtasts.policy.StsPolicy` from
``https://mta-sts.<domain>/.well-known/mta-sts.txt`` or raises :class:`FetchError` whose
``failure`` is the RFC 8460 §4.3 result type and whose text says what happened:

* ``sts-webpki-invalid``: the server's certificate does not validate (untrusted issuer,
  expired, or not for the name ``mta-sts.<domain>``) against the trust store
  (``mta_sts.ca_file``, else the system's);
* ``sts-policy-fetch-error``: no address for ``mta-sts.<domain>``, no connection, another TLS
  failure, a status other than 200 (a redirect is a failure: RFC 8461 §3.3 forbids following
  it), a body larger than ``mta_sts.max_policy_size`` (the retrieval is abandoned), or no
  complete answer within ``mta_sts.fetch_timeout`` seconds (one deadline for the whole fetch);
* ``sts-policy-invalid``: an answer whose Content-Type is not ``text/plain`` (parameters
  such as ``charset`` allowed) or whose body is not a valid policy (the parser's
  ``line N: ...`` is in the text).

Nothing else escapes. The host name is resolved with mailward's resolver (the servers of
``delivery.resolver``, as the MX lookups are), each address tried in turn.

Why asyncio streams rather than http.client in a thread: the caller is the asyncio delivery
runner; an ``asyncio.timeout`` around the whole exchange is a hard deadline (a server that
dribbles one byte a second cannot hold it past ``fetch_timeout``, which per-socket-operation
timeouts of http.client would allow), cancelling a delivery cancels its fetch cleanly with
no thread left behind, and the request is simple enough to speak ourselves: one HTTP/1.0
GET with ``Connection: close`` (so the answer is never chunked and ends at EOF or
Content-Length), the status line and headers read by the standard library's
``http.client.parse_headers``.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from mailward import __version__
from mailward.dns import DNSError, Resolver
from mailward.mtasts.policy import PolicyError, StsPolicy, parse_policy

WELL_KNOWN = "/.well-known/mta-sts.txt"
MAX_HEADER_BYTES = 16384

FETCH_ERROR = "sts-policy-fetch-error"
POLICY_INVALID = "sts-policy-invalid"
WEBPKI_INVALID = "sts-webpki-invalid"


class FetchError(Exception):
    """The policy could not be had; ``failure`` is the RFC 8460 §4.3 result type."""

    def __init__(self, failure: str, text: str):
        super().__init__(text)
        self.failure = failure


@dataclass(frozen=True)
class FetchOptions:
    """How policies are fetched (the [mta_sts] settings)."""
    ca_file: Path | str = ""          # "" : the system's trust store
    timeout: float = 10.0
    max_size: int = 65536
    port: int = 443                   # tests and labs only: real policy hosts listen on 443


def tls_context(ca_file: Path | str = "") -> ssl.SSLContext:
    """WebPKI validation as RFC 8461 §3.3 asks: the chain to a trusted root and the name
    ``mta-sts.<domain>`` in the certificate (check_hostname); TLS 1.2 or later."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def policy_url(domain: str, port: int = 443) -> str:
    host = f"mta-sts.{domain}" + ("" if port == 443 else f":{port}")
    return f"https://{host}{WELL_KNOWN}"


async def fetch_policy(domain: str, record_id: str, resolver: Resolver, options: FetchOptions,
                       context: ssl.SSLContext | None = None) -> StsPolicy:
    """The policy of ``domain``, stamped with ``record_id`` and the time; FetchError otherwise."""
    url = policy_url(domain, options.port)
    try:
        async with asyncio.timeout(options.timeout):
            body = await _get(domain, resolver, options, context or tls_context(options.ca_file))
    except TimeoutError:
        raise FetchError(FETCH_ERROR, f"{url}: no answer within {options.timeout:g} seconds") from None
    except FetchError as err:
        raise FetchError(err.failure, f"{url}: {err}") from None
    try:
        return parse_policy(body, id=record_id, fetched_at=time.time())
    except PolicyError as err:
        raise FetchError(POLICY_INVALID, f"{url}: {err}") from None


async def _get(domain: str, resolver: Resolver, options: FetchOptions, context: ssl.SSLContext) -> bytes:
    host = f"mta-sts.{domain}"
    try:
        addresses = await resolver.addresses(host)
    except DNSError as err:
        raise FetchError(FETCH_ERROR, f"cannot resolve {host}: {err}") from None
    if not addresses:
        raise FetchError(FETCH_ERROR, f"{host} has no address")
    last: FetchError | None = None
    for address in addresses:
        try:
            reader, writer = await asyncio.open_connection(address, options.port, ssl=context,
                                                           server_hostname=host)
        except ssl.SSLCertVerificationError as err:
            raise FetchError(WEBPKI_INVALID, f"certificate of {host} [{address}] does not validate: "
                                             f"{err.verify_message or err.reason}") from None
        except ssl.SSLError as err:
            last = FetchError(FETCH_ERROR, f"TLS with {host} [{address}] failed: {err.reason or err}")
            continue
        except OSError as err:
            last = FetchError(FETCH_ERROR, f"cannot connect to {host} [{address}]:{options.port}: "
                                           f"{err.strerror or err}")
            continue
        try:
            return await _exchange(reader, writer, host, options)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass
    assert last is not None
    raise last


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str,
                    options: FetchOptions) -> bytes:
    host_header = host if options.port == 443 else f"{host}:{options.port}"
    writer.write(f"GET {WELL_KNOWN} HTTP/1.0\r\nHost: {host_header}\r\nUser-Agent: mailward/{__version__}\r\n"
                 f"Accept: text/plain\r\nConnection: close\r\n\r\n".encode("ascii"))
    try:
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise FetchError(FETCH_ERROR, "response headers too long") from None
    except asyncio.IncompleteReadError:
        raise FetchError(FETCH_ERROR, "connection closed before the response headers") from None
    except (OSError, ssl.SSLError) as err:
        raise FetchError(FETCH_ERROR, f"connection failed: {err}") from None
    if len(head) > MAX_HEADER_BYTES:
        raise FetchError(FETCH_ERROR, "response headers too long")
    status_line, _, rest = head.partition(b"\r\n")
    parts = status_line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise FetchError(FETCH_ERROR, f"not an HTTP response: {status_line[:80]!r}")
    status = int(parts[1])
    try:
        headers = http.client.parse_headers(io.BytesIO(rest))
    except http.client.HTTPException as err:
        raise FetchError(FETCH_ERROR, f"bad response headers: {err}") from None
    if status != 200:
        reason = parts[2] if len(parts) > 2 else ""
        where = f" to {headers.get('Location')}" if 300 <= status < 400 and headers.get("Location") else ""
        what = "redirect (not followed, RFC 8461 §3.3)" if 300 <= status < 400 else "not 200"
        raise FetchError(FETCH_ERROR, f"HTTP {status} {reason}{where}: {what}".replace("  ", " "))
    ctype = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if ctype != "text/plain":
        raise FetchError(POLICY_INVALID, f"Content-Type {headers.get('Content-Type')!r} is not text/plain "
                                         f"(RFC 8461 §3.2)")
    length = headers.get("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) > options.max_size:
        raise FetchError(FETCH_ERROR, f"policy of {length} bytes is larger than max_policy_size "
                                      f"({options.max_size})")
    try:
        body = await reader.read(options.max_size + 1)
        while len(body) <= options.max_size:
            more = await reader.read(options.max_size + 1 - len(body))
            if not more:
                break
            body += more
    except (OSError, ssl.SSLError) as err:
        raise FetchError(FETCH_ERROR, f"connection failed while reading the policy: {err}") from None
    if len(body) > options.max_size:
        raise FetchError(FETCH_ERROR, f"policy larger than max_policy_size ({options.max_size} bytes)")
    if length is not None and length.strip().isdigit() and len(body) < int(length):
        raise FetchError(FETCH_ERROR, f"policy cut short: {len(body)} of {length} bytes")
    return body

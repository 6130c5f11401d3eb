"""The load generator: C concurrent SMTP connections with STARTTLS, N messages of S bytes.

Every connection does what a sending MTA does: read the 220, EHLO, STARTTLS, a full TLS
handshake (no session resumption, stdlib ``ssl`` on this side), EHLO again, then 1 or M
transactions, then QUIT. Every reply code is checked; a message counts only after the 250 to
its final dot. With ``--pipelining`` (when the server offers PIPELINING, RFC 2920) MAIL, RCPT
and DATA leave in one write.

Latency of a message: from opening the connection (the first message of a connection: it
includes connect, greeting, STARTTLS and the handshake) or from sending MAIL (the following
ones) to the 250 after the final dot, i.e. what the sending side waits for.

The server's memory is read from ``/proc``: VmRSS of the server process and all its
descendants, summed, sampled every 50 ms while the load runs (``peak_rss_mb``), so it works for
one asyncio process (mailward, aiosmtpd) and for a tree of processes (Postfix's master, smtpd,
cleanup, qmgr...). The server's CPU time (user + system of the tree, from /proc/PID/stat) over
the run gives ``server_cpu_ms_per_msg``, a figure that depends less on what else the machine is
doing than msgs/s does.

``--idle K`` opens K sessions (STARTTLS + EHLO each) and keeps them open, then reports the
server's RSS at rest.

Usage::

    python -m bench.load --port 2525 -c 10 -n 2000 -s 4096 -m 20 --pipelining --pid PID
    python -m bench.load --port 2525 --idle 5000 --pid PID
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import sys
import time
from dataclasses import asdict, dataclass, field

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- the server's process tree in /proc ---------------------------------------------------
def process_tree(pid: int) -> list[int]:
    """pid and every descendant (from /proc/PID/task/TID/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kb(pid: int) -> int:
    return sum(_status_kb(p, "VmRSS:") for p in process_tree(pid))


def tree_pss_kb(pid: int) -> int:
    """Proportional set size of the tree: shared pages (Postfix's many smtpd processes share
    their code and libraries) are counted once, split between the processes that map them."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def tree_cpu_seconds(pid: int) -> float:
    """user+system time of the live tree plus what its reaped children used (cutime/cstime)."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        # fields[0] is the state (field 3); utime, stime, cutime, cstime are fields 14..17
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, from /proc/stat), for telling how
    much else was running during a measurement."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return 0.0
    values = [int(x) for x in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)   # idle + iowait
    busy = sum(values[:8]) - idle                                # user..steal, guests are in user
    return busy / CLK_TCK


class RSSSampler:
    """Peak RSS (sum over the tree) every ``interval``; peak PSS every fifth sample."""

    def __init__(self, pid: int | None, interval: float = 0.05):
        self.pid, self.interval, self.peak_kb, self.peak_pss_kb = pid, interval, 0, 0
        self._task: asyncio.Task | None = None
        self._n = 0

    def sample(self) -> int:
        kb = tree_rss_kb(self.pid) if self.pid else 0
        self.peak_kb = max(self.peak_kb, kb)
        if self.pid and self._n % 5 == 0:
            self.peak_pss_kb = max(self.peak_pss_kb, tree_pss_kb(self.pid))
        self._n += 1
        return kb

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self.pid:
            self.sample()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self.pid:
            self.sample()


# ---- the SMTP client ----------------------------------------------------------------------
class SMTPFailure(Exception):
    pass


def client_tls_context() -> ssl.SSLContext:
    # The benchmark measures the servers, not certificate checking on the client: no verify,
    # and no session cache is kept, so every handshake is a full one (like `s_time -new`).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def make_message(size: int, sender: str, rcpt: str) -> bytes:
    """A message of exactly ``size`` octets (CRLF lines, no line starting with '.'), without
    the terminating '.' line."""
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: mailward bench\r\n"
            f"Message-ID: <bench.{os.getpid()}@bench.invalid>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog; mailward bench load line 0123456789\r\n"
    body = bytearray(head)
    while len(body) + len(line) <= size:
        body += line
    rest = size - len(body)
    if rest >= 3:  # (with 1 or 2 octets left the message is that much short)
        body += b"x" * (rest - 2) + b"\r\n"
    return bytes(body)


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, list[bytes]]:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise SMTPFailure("connection closed by the server")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            try:
                return int(line[:3]), lines
            except ValueError:
                raise SMTPFailure(f"bad reply line {line[:60]!r}") from None


async def expect(reader, code: int, what: str) -> list[bytes]:
    got, lines = await read_reply(reader)
    if got != code:
        raise SMTPFailure(f"{what}: expected {code}, got {b''.join(lines)[:120].decode('latin-1').strip()}")
    return lines


@dataclass
class Spec:
    host: str = "127.0.0.1"
    port: int = 2525
    concurrency: int = 1
    messages: int = 100           # N: an upper bound on messages sent
    size: int = 4096              # S: octets per message
    per_connection: int = 1       # M: messages per connection
    pipelining: bool = False
    duration: float = 0.0         # stop starting connections after this many seconds (0: no limit)
    sender: str = "bench@client.invalid"
    rcpt: str = "sink@bench.invalid"
    helo: str = "client.invalid"
    timeout: float = 60.0
    pid: int | None = None        # the server's pid (for RSS and CPU)
    quickack: bool = True         # ACK the TLS 1.3 tickets at once (see open_session)


@dataclass
class Result:
    spec: dict
    msgs: int = 0
    failures: int = 0
    elapsed: float = 0.0
    msgs_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    handshakes: int = 0
    handshakes_per_s: float = 0.0
    peak_rss_mb: float = 0.0
    peak_pss_mb: float = 0.0
    server_cpu_s: float = 0.0
    server_cpu_ms_per_msg: float = 0.0
    client_cpu_s: float = 0.0
    other_cores: float = 0.0      # cores busy with anything but this server and this client
    pipelining_used: bool = False
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.msgs} msgs in {self.elapsed:.2f}s: {self.msgs_per_s:.1f} msgs/s, "
                f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, {self.handshakes_per_s:.1f} handshakes/s, "
                f"{self.failures} failures, server peak RSS {self.peak_rss_mb:.1f} MB (PSS {self.peak_pss_mb:.1f}), "
                f"server CPU {self.server_cpu_ms_per_msg:.2f} ms/msg, client CPU {self.client_cpu_s:.1f}s, "
                f"other work {self.other_cores:.2f} cores")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


class Load:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.ctx = client_tls_context()
        self.body = make_message(spec.size, spec.sender, spec.rcpt) + b".\r\n"
        self.mail = f"MAIL FROM:<{spec.sender}> SIZE={spec.size}\r\n".encode()
        self.rcpt = f"RCPT TO:<{spec.rcpt}>\r\n".encode()
        self.claimed = 0
        self.done = 0
        self.failures = 0
        self.handshakes = 0
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.pipelining_used = False
        self.deadline = float("inf")
        self.last_done = 0.0

    def _claim(self) -> int:
        if time.monotonic() >= self.deadline:
            return 0
        n = min(self.spec.per_connection, self.spec.messages - self.claimed)
        self.claimed += max(n, 0)
        return max(n, 0)

    def _fail(self, err: BaseException, lost: int) -> None:
        self.failures += lost
        if len(self.errors) < 20:
            self.errors.append(f"{type(err).__name__}: {err}")

    async def open_session(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        """Connect, EHLO, STARTTLS, handshake, EHLO; returns (reader, writer, pipelining offered)."""
        s = self.spec
        reader, writer = await asyncio.open_connection(s.host, s.port, limit=1 << 20)
        await expect(reader, 220, "greeting")
        writer.write(f"EHLO {s.helo}\r\n".encode())
        lines = await expect(reader, 250, "EHLO")
        if not any(l[4:].upper().startswith(b"STARTTLS") for l in lines):
            raise SMTPFailure("the server does not offer STARTTLS")
        writer.write(b"STARTTLS\r\n")
        await expect(reader, 220, "STARTTLS")
        await writer.start_tls(self.ctx)
        self.handshakes += 1
        writer.write(f"EHLO {s.helo}\r\n".encode())
        if s.quickack:
            # Acknowledge the server's TLS 1.3 session tickets at once. A server that leaves
            # Nagle on (Postfix's smtpd) otherwise holds its EHLO reply until our delayed ACK,
            # 40 ms later, in every session (README, "Performance").
            sock = writer.get_extra_info("socket")
            if sock is not None and hasattr(socket, "TCP_QUICKACK"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        lines = await expect(reader, 250, "EHLO after STARTTLS")
        pipelining = any(l[4:].upper().startswith(b"PIPELINING") for l in lines)
        return reader, writer, pipelining

    async def transaction(self, reader, writer, pipelining: bool) -> None:
        if pipelining:
            writer.write(self.mail + self.rcpt + b"DATA\r\n")
            await expect(reader, 250, "MAIL")
            await expect(reader, 250, "RCPT")
            await expect(reader, 354, "DATA")
        else:
            writer.write(self.mail)
            await expect(reader, 250, "MAIL")
            writer.write(self.rcpt)
            await expect(reader, 250, "RCPT")
            writer.write(b"DATA\r\n")
            await expect(reader, 354, "DATA")
        writer.write(self.body)
        await expect(reader, 250, "end of DATA")

    async def connection(self, n: int) -> None:
        writer = None
        sent = 0
        try:
            t0 = time.monotonic()
            reader, writer, offered = await self.open_session()
            pipelining = self.spec.pipelining and offered
            self.pipelining_used |= pipelining
            for _ in range(n):
                await self.transaction(reader, writer, pipelining)
                now = time.monotonic()
                self.latencies.append(now - t0)
                self.done += 1
                self.last_done = now
                sent += 1
                t0 = now
            writer.write(b"QUIT\r\n")
            await expect(reader, 221, "QUIT")
        except (OSError, SMTPFailure, ssl.SSLError, asyncio.IncompleteReadError) as err:
            self._fail(err, n - sent if n > sent else 1)
        finally:
            if writer is not None:
                writer.close()
                try:
                    await asyncio.wait_for(writer.wait_closed(), 2)
                except (OSError, ssl.SSLError, asyncio.TimeoutError):
                    pass

    async def worker(self) -> None:
        while n := self._claim():
            try:
                await asyncio.wait_for(self.connection(n), self.spec.timeout)
            except asyncio.TimeoutError as err:
                self._fail(err, n)

    async def run(self) -> Result:
        s = self.spec
        sampler = RSSSampler(s.pid)
        cpu0 = tree_cpu_seconds(s.pid) if s.pid else 0.0
        busy0 = machine_busy_seconds()
        r0 = os.times()
        sampler.start()
        start = time.monotonic()
        if s.duration:
            self.deadline = start + s.duration
        await asyncio.gather(*(self.worker() for _ in range(s.concurrency)))
        end = time.monotonic()
        await sampler.stop()
        cpu1 = tree_cpu_seconds(s.pid) if s.pid else 0.0
        busy1 = machine_busy_seconds()
        r1 = os.times()
        elapsed = max(end - start, 1e-9)
        client_cpu = (r1.user - r0.user) + (r1.system - r0.system)
        res = Result(spec=asdict(s), msgs=self.done, failures=self.failures, elapsed=elapsed,
                     msgs_per_s=self.done / elapsed, p50_ms=percentile(self.latencies, 50) * 1000,
                     p99_ms=percentile(self.latencies, 99) * 1000, handshakes=self.handshakes,
                     handshakes_per_s=self.handshakes / elapsed, peak_rss_mb=sampler.peak_kb / 1024,
                     peak_pss_mb=sampler.peak_pss_kb / 1024,
                     server_cpu_s=cpu1 - cpu0,
                     server_cpu_ms_per_msg=(cpu1 - cpu0) * 1000 / self.done if self.done else 0.0,
                     client_cpu_s=client_cpu,
                     other_cores=max(0.0, (busy1 - busy0) - (cpu1 - cpu0) - client_cpu) / elapsed,
                     pipelining_used=self.pipelining_used, errors=self.errors)
        return res


async def run_load(spec: Spec) -> Result:
    return await Load(spec).run()


# ---- idle sessions -------------------------------------------------------------------------
@dataclass
class IdleResult:
    sessions: int
    failures: int
    open_seconds: float
    rss_before_mb: float
    rss_at_rest_mb: float
    kb_per_session: float
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.sessions} idle TLS sessions open ({self.failures} failed) in {self.open_seconds:.1f}s; "
                f"server RSS {self.rss_before_mb:.1f} MB before, {self.rss_at_rest_mb:.1f} MB at rest, "
                f"{self.kb_per_session:.1f} KB per session")


async def run_idle(spec: Spec, count: int, parallel: int = 50, settle: float = 2.0) -> IdleResult:
    """Open ``count`` sessions (STARTTLS + EHLO), hold them all, read the server's RSS, QUIT."""
    load = Load(spec)
    before = tree_rss_kb(spec.pid) if spec.pid else 0
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    gate = asyncio.Semaphore(parallel)

    async def one() -> None:
        async with gate:
            try:
                reader, writer, _ = await asyncio.wait_for(load.open_session(), spec.timeout)
                held.append((reader, writer))
            except (OSError, SMTPFailure, ssl.SSLError, asyncio.TimeoutError, asyncio.IncompleteReadError) as err:
                load._fail(err, 1)

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    opened = time.monotonic() - t0
    await asyncio.sleep(settle)
    at_rest = tree_rss_kb(spec.pid) if spec.pid else 0

    async def close(reader, writer) -> None:
        try:
            writer.write(b"QUIT\r\n")
            await asyncio.wait_for(read_reply(reader), 10)
        except Exception:
            pass
        writer.close()

    for i in range(0, len(held), 500):
        await asyncio.gather(*(close(r, w) for r, w in held[i:i + 500]))
    n = len(held)
    return IdleResult(sessions=n, failures=load.failures, open_seconds=opened, rss_before_mb=before / 1024,
                      rss_at_rest_mb=at_rest / 1024,
                      kb_per_session=(at_rest - before) / n if n else 0.0, errors=load.errors)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2525)
    ap.add_argument("-c", "--concurrency", type=int, default=1, help="concurrent connections (C)")
    ap.add_argument("-n", "--messages", type=int, default=100, help="messages to send at most (N)")
    ap.add_argument("-s", "--size", type=int, default=4096, help="octets per message (S)")
    ap.add_argument("-m", "--per-connection", type=int, default=1, help="messages per connection (M)")
    ap.add_argument("--pipelining", action="store_true", help="MAIL+RCPT+DATA in one write when offered")
    ap.add_argument("--duration", type=float, default=0.0, help="stop opening connections after this (s)")
    ap.add_argument("--rcpt", default="sink@bench.invalid")
    ap.add_argument("--pid", type=int, help="server pid: peak RSS and CPU of its process tree")
    ap.add_argument("--idle", type=int, metavar="K", help="open K idle TLS sessions and report RSS at rest")
    ap.add_argument("--no-quickack", action="store_true", help="leave delayed ACKs on after the handshake")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    spec = Spec(host=args.host, port=args.port, concurrency=args.concurrency, messages=args.messages,
                size=args.size, per_connection=args.per_connection, pipelining=args.pipelining,
                duration=args.duration, rcpt=args.rcpt, pid=args.pid,
                quickack=not args.no_quickack)
    if args.idle:
        res = asyncio.run(run_idle(spec, args.idle))
    else:
        res = asyncio.run(run_load(spec))
    print(json.dumps(asdict(res)) if args.json else res.line())
    for err in res.errors[:5]:
        print(f"  error: {err}", file=sys.stderr)
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())

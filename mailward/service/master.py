"""Several receiving processes: the master binds, delivers, and keeps its workers running.

With ``server.workers = N`` (N > 1) the master process binds every listening socket and
takes the spool lock (both in :mod:`mailward.service.startup`, before it drops privileges),
recovers the spool, runs the queue runner, and starts N workers (``mailward worker``, fresh Python
processes, not forks of a process with threads) that inherit the sockets and accept from them
in turn; each worker receives, writes to the shared spool with the same durability contract,
and tells the master about each accepted message through a pipe (one queue id per line). A
worker that dies is started again; messages it had accepted are in the spool, and a lost
notice is made good by the master's periodic adoption of unknown queue files. A worker whose
SIGHUP handler is in place says ``ready PID`` on the same pipe; the service manager hears
READY=1 once every worker has. SIGHUP: the master reads the configuration again
(:mod:`mailward.service.reload`: its runner's tables), then sends SIGHUP on to every ready
worker (each rebuilds its receiving side; one still starting gets it once ready); SIGUSR1
flushes the master's queue; SIGTERM stops the workers (each gives its sessions
``shutdown_grace``), then delivery.

Workers inherit the master's spool lock (the same open file), so the spool stays locked until
the last process of this server has exited, even when the master is killed; a worker whose
master is gone stops by itself within a second or so, as on SIGTERM.

Why processes: one Python event loop uses one core (the benchmark's profile: the receiving
thread is CPU bound), while Postfix spreads the same work over smtpd/cleanup processes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

from mailward import log
from mailward.config import Config
from mailward.receive.server import SMTPServer
from mailward.deliver.runner import tls_rpt_store
from mailward.tlsrpt.wiring import TlsRpt
from mailward.service import build_delivery, build_receiving, notify
from mailward.service.reload import Reloader
from mailward.service.startup import Ready
from mailward.spool.store import Spool

ADOPT_EVERY = 30.0      # seconds between looks for queue files nobody announced
SWEEP_EVERY = 60.0      # seconds between removals of abandoned partial messages
MASTER_CHECK_EVERY = 1.0  # seconds between a worker's looks at whether its master still lives


class Master:
    def __init__(self, config: Config, ready: Ready):
        self.config = config
        self.socks = ready.socks
        self.lock = ready.lock
        self.spool = Spool.from_settings(config.spool)
        self.runner = build_delivery(config, self.spool)
        self.tlsrpt = TlsRpt.from_config(config, self.spool, store=tls_rpt_store(config))
        self.tlsrpt.on_queued = self.runner.submit
        self.notify_r, self.notify_w = os.pipe()
        os.set_inheritable(self.notify_w, True)
        os.set_blocking(self.notify_r, False)
        self.workers: list[subprocess.Popen | None] = [None] * config.server.workers
        self._started = [0.0] * config.server.workers    # when each worker was started
        self._backoff = [0.0] * config.server.workers    # delay before a quick failure restarts
        self._respawn_at = [0.0] * config.server.workers
        self._stopping = asyncio.Event()
        self._pending = b""
        self.reloader = Reloader(config, runner=self.runner, after=self._reloaded)
        # Workers that said "ready" (their SIGHUP handler is in place: a SIGHUP before it would
        # kill them), and those that were still starting when a reload came (they get it once
        # ready). The service manager hears READY=1 once every worker accepts.
        self._ready: set[int] = set()
        self._hup_when_ready: set[int] = set()
        self._announced = False

    def _spawn(self, index: int) -> None:
        fds = [s.fileno() for s in self.socks]
        cmd = [sys.executable, "-m", "mailward", "worker", "-c", str(self.config.path),
               "--fds", ",".join(map(str, fds)), "--notify-fd", str(self.notify_w)]
        # the lock's descriptor goes along, unused: it keeps the spool locked while a worker lives;
        # only the master talks to the service manager (systemd's NotifyAccess=main)
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        env["MAILWARD_MASTER_PID"] = str(os.getpid())   # not getppid() in the worker: see run_worker
        self.workers[index] = subprocess.Popen(cmd, pass_fds=fds + [self.notify_w, self.lock.fileno()], env=env)
        self._started[index] = asyncio.get_running_loop().time()

    def _read_notices(self) -> None:
        try:
            data = os.read(self.notify_r, 65536)
        except BlockingIOError:
            return
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            if line.startswith(b"ready "):
                self._worker_ready(int(line[6:] or 0))
            elif line:
                self.runner.submit(line.decode("ascii", "replace"))

    def _worker_ready(self, pid: int) -> None:
        self._ready.add(pid)
        if pid in self._hup_when_ready:
            self._hup_when_ready.discard(pid)
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                pass
        live = {p.pid for p in self.workers if p is not None and p.poll() is None}
        if not self._announced and live and live <= self._ready:
            self._announced = True
            notify.ready(f"accepting mail on {', '.join(self.config.server.listen)} "
                         f"with {len(self.workers)} workers")

    def _signal_workers(self, sig: int) -> None:
        for proc in self.workers:
            if proc is not None and proc.poll() is None:
                if sig == signal.SIGHUP and proc.pid not in self._ready:
                    self._hup_when_ready.add(proc.pid)
                else:
                    proc.send_signal(sig)

    def _reloaded(self, config: Config) -> None:
        """After SIGHUP, once the master has read the file again (its runner): the workers
        follow. A broken file never gets here, so it is reported once, and every process
        keeps what it has."""
        self.config = config
        self._signal_workers(signal.SIGHUP)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        last_adopt = last_sweep = loop.time()
        while not self._stopping.is_set():
            for i, proc in enumerate(self.workers):
                now = loop.time()
                if proc is not None and proc.poll() is not None:
                    # a worker that dies right after its start (a broken certificate, say) is
                    # started again after growing pauses (1, 2, 4 ... 30 s), not in a tight loop
                    quick = now - self._started[i] < 5
                    self._backoff[i] = min(30.0, max(1.0, self._backoff[i] * 2)) if quick else 0.0
                    self._respawn_at[i] = now + self._backoff[i]
                    log.event(40, None, worker=proc.pid, stat=f"exited with status {proc.returncode}; restarted"
                              + (f" in {self._backoff[i]:g} s" if self._backoff[i] else ""))
                    self.workers[i] = None
                if self.workers[i] is None and now >= self._respawn_at[i]:
                    self._spawn(i)
            now = loop.time()
            if now - last_adopt >= ADOPT_EVERY:
                last_adopt = now
                self.runner.adopt()
            if now - last_sweep >= SWEEP_EVERY:
                last_sweep = now
                older = self.config.server.data_timeout + self.config.server.idle_timeout + 60
                removed = self.spool.sweep_incoming(older)
                if removed:
                    log.info(None, spool="swept", abandoned_partial=removed)
            try:
                await asyncio.wait_for(self._stopping.wait(), 0.5)
            except asyncio.TimeoutError:
                pass

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        removed = self.spool.recover()
        if removed:
            log.info(None, spool="recovered", discarded_partial=removed)
        self.runner.start()
        self.tlsrpt.start()
        loop.add_reader(self.notify_r, self._read_notices)
        for i in range(len(self.workers)):
            self._spawn(i)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reloader)
        loop.add_signal_handler(signal.SIGUSR1, self.runner.flush)
        loop.add_signal_handler(signal.SIGUSR2, self.runner.adopt)   # new queue files (sendmail)
        log.info(None, daemon="started", listen=",".join(self.config.server.listen),
                 workers=len(self.workers), pid=os.getpid())
        await self._watch()
        notify.stopping()
        self._signal_workers(signal.SIGTERM)
        deadline = loop.time() + self.config.server.shutdown_grace + 10
        while any(p is not None and p.poll() is None for p in self.workers) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        self._signal_workers(signal.SIGKILL)
        self._read_notices()
        await self.runner.stop()
        await self.tlsrpt.stop()
        log.info(None, daemon="stopped", pid=os.getpid())


def serve_with_workers(config: Config, ready: Ready) -> int:
    asyncio.run(Master(config, ready).run())
    return 0


async def _serve_while_master_lives(server, master_pid: int) -> None:
    task = asyncio.ensure_future(server.run_forever())
    orphaned = False
    while True:
        done, _ = await asyncio.wait({task}, timeout=MASTER_CHECK_EVERY)
        if done:
            return task.result()
        if not orphaned and os.getppid() != master_pid:
            orphaned = True
            log.event(40, None, worker=os.getpid(), stat=f"master {master_pid} is gone; stopping")
            server.request_stop()


def run_worker(config: Config, fds: list[int], notify_fd: int) -> int:
    """A receiving worker: the listener and its gate, no queue runner (the master delivers)."""
    socks = [socket.socket(fileno=fd) for fd in fds]
    for sock in socks:
        sock.setblocking(False)
    server = SMTPServer(config, build_receiving(config), listen_socks=socks, notify_fd=notify_fd)
    server.on_reload = Reloader(config, server=server, announce=False)

    def ready() -> None:   # the master sends SIGHUP only after this (see Master._worker_ready)
        try:
            os.write(notify_fd, f"ready {os.getpid()}\n".encode())
        except OSError:
            pass
    server.on_ready = ready
    # The master's pid from the master itself: a worker still starting when its master is
    # killed is already a child of init, and getppid() would name init as its master forever
    # (it would then hold the spool lock, and every restart would exit 75).
    master = int(os.environ.get("MAILWARD_MASTER_PID") or os.getppid())
    asyncio.run(_serve_while_master_lives(server, master))
    return 0

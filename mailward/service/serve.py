"""``mailward serve``: check, lock, bind, drop privileges, then receive and deliver.

Contract: ``serve(config)`` starts only when the configuration and the TLS files are usable
(else one line and exit 2); then it locks the spool, binds and drops privileges
(:mod:`mailward.service.startup`: a second server on the same spool exits 75 having changed
nothing); then it recovers the spool (drops partial messages), re-queues what was accepted
before, and accepts connections — in this process (``server.workers = 1``) or in workers
started by a master that delivers (:mod:`mailward.service.master`).

Under systemd (``Type=notify``, contrib/mailward.service) the service manager is told READY=1
once the sockets accept, RELOADING=1 and READY=1 around each SIGHUP reload
(:mod:`mailward.service.reload`), STOPPING=1 when SIGTERM begins the stop
(:mod:`mailward.service.notify`).
"""

from __future__ import annotations

import asyncio

from mailward.config import Config
from mailward.receive.server import SMTPServer
from mailward.service import build_delivery, build_receiving, notify
from mailward.service.reload import Reloader
from mailward.service.startup import check_tls_files, prepare
from mailward.deliver.runner import tls_rpt_store
from mailward.tlsrpt.wiring import TlsRpt


def serve(config: Config) -> int:
    check_tls_files(config)
    ready = prepare(config)
    if config.server.workers > 1:
        from mailward.service.master import serve_with_workers
        return serve_with_workers(config, ready)
    receiving = build_receiving(config)
    runner = build_delivery(config, receiving.spool)
    tlsrpt = TlsRpt.from_config(config, receiving.spool, store=tls_rpt_store(config))
    tlsrpt.on_queued = runner.submit
    server = SMTPServer(config, receiving, listen_socks=ready.socks, lock=ready.lock, runner=runner)
    server.on_reload = Reloader(config, server=server, runner=runner)

    def on_ready() -> None:
        tlsrpt.start()       # in the running loop, after the runner has started
        notify.ready(f"accepting mail on {', '.join(config.server.listen)}")

    server.on_ready = on_ready
    server.on_stopping = notify.stopping

    async def run() -> None:
        try:
            await server.run_forever()
        finally:
            await tlsrpt.stop()     # after the runner's stop: the last sessions are counted

    asyncio.run(run())
    return 0

"""aiosmtpd as the benchmark's Python peer: a sink that discards, or one that fsyncs each message.

Both offer STARTTLS with the benchmark's certificate (the same one mailward, Postfix and
``openssl s_server`` use) and accept every recipient. ``--mode fsync`` writes each message to
its own file in ``--dir``, fsyncs it and the folder, and only then answers 250, in the event
loop, as a simple aiosmtpd handler would; ``--mode discard`` answers 250 at once.

    python -m bench.sinks --port 2601 --cert cert.pem --key key.pem --mode discard
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import signal
import ssl

from aiosmtpd.smtp import SMTP


class DiscardHandler:
    async def handle_DATA(self, server, session, envelope) -> str:
        return "250 2.0.0 Message accepted"


class FsyncHandler:
    def __init__(self, directory: str):
        self.directory = directory
        self.counter = itertools.count()
        self.dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)

    async def handle_DATA(self, server, session, envelope) -> str:
        path = os.path.join(self.directory, f"{os.getpid()}.{next(self.counter)}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, envelope.original_content)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.fsync(self.dir_fd)
        return "250 2.0.0 Message accepted"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sinks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--mode", choices=("discard", "fsync"), default="discard")
    ap.add_argument("--dir", default=".", help="where --mode fsync writes messages")
    args = ap.parse_args(argv)
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    handler = DiscardHandler() if args.mode == "discard" else FsyncHandler(args.dir)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="bench-aiosmtpd.invalid", tls_context=ctx, require_starttls=False,
                         ident="aiosmtpd bench sink"),
            args.host, args.port, backlog=1024, reuse_address=True)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

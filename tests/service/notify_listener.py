"""A stand-in for systemd's notification socket: a unix datagram socket the test binds,
reading each message with the sender's process id (SCM_CREDENTIALS), as systemd checks
NotifyAccess=main."""

from __future__ import annotations

import socket
import struct
import time


class NotifyListener:
    def __init__(self, address: str | bytes):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        if isinstance(address, bytes) and address.startswith(b"\0"):
            self.env = "@" + address[1:].decode()
        else:
            self.env = str(address)
        self.seen: list[tuple[int, dict[str, str]]] = []

    def receive(self, timeout: float) -> tuple[int, dict[str, str]] | None:
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except (socket.timeout, BlockingIOError):
            return None
        pid = 0
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
        self.seen.append((pid, fields))
        return pid, fields

    def expect(self, key: str, timeout: float = 20) -> tuple[int, dict[str, str]]:
        """The next message carrying ``key`` (e.g. READY=1); earlier ones are kept in seen."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.receive(max(0.05, deadline - time.time()))
            if got is not None and key in [f"{k}={v}" for k, v in got[1].items()]:
                return got
        raise AssertionError(f"no {key} from mailward; got {self.seen}")

    def close(self) -> None:
        self.sock.close()

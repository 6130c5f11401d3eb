"""Logging in sendmail's form, or as JSON lines.

Every line an administrator greps for is built here from named fields, so the sendmail-style
text and the structured record always carry the same facts:

    mailward[PID]: STARTTLS=server, relay=localhost [127.0.0.1], version=TLSv1.3, verify=OK, ...

Call :func:`event` with the fields in the order sendmail prints them; ``qid`` (a queue id)
becomes the ``QID: `` prefix as in sendmail's lines.

Where the lines go (:func:`setup`, :func:`setup_from_config`), one of:

* the system logger (``log.syslog = true``): one datagram per line to ``log.syslog_address``
  (default ``/dev/log``), facility ``log.facility`` (default ``mail``), in the form glibc's
  syslog(3) sends to the local socket: ``<PRI>Mmm dd hh:mm:ss mailward[PID]: text``. The local
  daemon adds the host name (rsyslog writes ``Dec  1 10:00:00 mx1 mailward[42]: ...`` into
  mail.log, which logwatch reads; journald files it under ``SYSLOG_IDENTIFIER=mailward``). A
  host name in a datagram to the local socket would be taken for the tag by journald; sent
  to a remote ``HOST:PORT`` (UDP) the line carries this host's name, as RFC 3164 §4.1.2 asks.
* a file (``log.file``): created mode 0640, reopened when logrotate has moved it (and on
  SIGHUP, when :func:`setup` runs again). A missing folder is a one-line ConfigError.
* standard error: under systemd (``$JOURNAL_STREAM`` names our stderr) without time, host and
  tag, which the journal records itself, and with the ``<N>`` priority prefix it reads
  (sd-daemon(3)); elsewhere in the file's form.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import socket
import sys
import time
from pathlib import Path

logger = logging.getLogger("mailward")
NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": NOTICE, "warning": logging.WARNING,
           "error": logging.ERROR}


def render(fields: dict) -> str:
    """'k=v, k=v' as sendmail prints it; None values are left out; a key ending in ':' is
    printed 'key: value' (sendmail's 'STARTTLS=server, error: accept failed=...')."""
    return ", ".join(f"{k} {v}" if k.endswith(":") else f"{k}={v}" for k, v in fields.items() if v is not None)


def event(level: int, qid: str | None = None, /, **fields) -> None:
    if not logger.isEnabledFor(level):
        return
    text = render(fields)
    if qid:
        text = f"{qid}: {text}"
    # logger.log() without its search of the call stack for the caller's file and line,
    # which no line we write shows (it was a tenth of the cost of a line)
    logger.handle(logger.makeRecord(logger.name, level, "(unknown file)", 0, text, (), None,
                                    extra={"fields": fields, "qid": qid}))


def info(qid: str | None = None, /, **fields) -> None:
    event(logging.INFO, qid, **fields)


def notice(qid: str | None = None, /, **fields) -> None:
    event(NOTICE, qid, **fields)


# syslog(3) severities (RFC 5424 §6.2.1) of our levels, and the facilities by name
_SEVERITY = {logging.DEBUG: 7, logging.INFO: 6, NOTICE: 5, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}
FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
              "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, **{f"local{i}": 16 + i for i in range(8)}}
TAG = "mailward"


def severity(levelno: int) -> int:
    for level in sorted(_SEVERITY, reverse=True):
        if levelno >= level:
            return _SEVERITY[level]
    return 7


class _SendmailFormatter(logging.Formatter):
    _stamp: tuple[int, str] = (-1, "")   # the last second formatted, and its text

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created // 1)
        if self._stamp[0] != second:
            self._stamp = (second, time.strftime("%b %d %H:%M:%S", time.localtime(second)))
        level = record.levelname.lower()
        return f"{self._stamp[1]} mail.{level} mailward[{os.getpid()}]: {record.getMessage()}"


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {"time": record.created, "level": record.levelname.lower(), "pid": os.getpid()}
        if getattr(record, "qid", None):
            data["qid"] = record.qid
        fields = getattr(record, "fields", None)
        if fields:
            data.update({k: v for k, v in fields.items() if v is not None})
        else:
            data["message"] = record.getMessage()
        return json.dumps(data, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    """The bare text: the journal and the syslog daemon add time, host and tag themselves."""

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


class _JournalFormatter(logging.Formatter):
    """``<N>text`` for standard error read by journald (sd-daemon(3), SD_INFO etc.)."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record).replace("\n", " ")
        return f"<{severity(record.levelno)}>{text}"


class SyslogHandler(logging.Handler):
    """One datagram per record to the syslog socket (a unix datagram socket such as /dev/log,
    or HOST:PORT over UDP), in syslog(3)'s form. A syslog daemon that is down (restarting)
    costs the line, never the mail: errors are swallowed, and the socket is opened again at
    the next record."""

    def __init__(self, address: str = "/dev/log", facility: str = "mail"):
        super().__init__()
        if facility not in FACILITIES:
            raise ValueError(f"unknown syslog facility {facility!r} (one of {', '.join(FACILITIES)})")
        self.facility = FACILITIES[facility]
        self.address = address
        self.remote = not address.startswith("/") and not address.startswith("@")
        self.hostname = socket.gethostname().split(".")[0]
        self._sock: socket.socket | None = None

    def _target(self):
        if not self.remote:
            return ("\0" + self.address[1:]).encode() if self.address.startswith("@") else self.address
        host, _, port = self.address.rpartition(":")
        return (host.strip("[]") or "127.0.0.1", int(port or 514))

    def _socket(self) -> socket.socket:
        if self._sock is None:
            family = socket.AF_INET6 if self.remote and ":" in self._target()[0] else \
                socket.AF_INET if self.remote else socket.AF_UNIX
            self._sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        return self._sock

    def line(self, record: logging.LogRecord) -> bytes:
        pri = self.facility * 8 + severity(record.levelno)
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime(record.created))
        stamp = stamp[:4] + stamp[4:6].replace("0", " ", 1) + stamp[6:] if stamp[4] == "0" else stamp
        host = f"{self.hostname} " if self.remote else ""
        text = self.format(record).replace("\n", " ")
        return f"<{pri}>{stamp} {host}{TAG}[{os.getpid()}]: {text}".encode("utf-8", "replace")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = self.line(record)
        except Exception:
            self.handleError(record)
            return
        for _ in range(2):   # a restarted syslog daemon has a new socket: connect again once
            try:
                self._socket().sendto(data, self._target())
                return
            except OSError:
                self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        super().close()


class LogFile(logging.handlers.WatchedFileHandler):
    """The log file: created 0640 (group adm reads it, as Debian's mail.log), reopened when
    logrotate moved it away."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        return os.fdopen(fd, "a", encoding=self.encoding or "utf-8", errors=self.errors)

    def handleError(self, record: logging.LogRecord) -> None:
        """A file that cannot be reopened (rotated into a folder we cannot write): one line on
        standard error, not logging's traceback; the mail goes on."""
        err = sys.exc_info()[1]
        try:
            sys.stderr.write(f"mailward: {self.baseFilename}: log.file: cannot write: {err}\n")
        except Exception:
            pass


def journal_stderr() -> bool:
    """True when standard error is the journal's stream ($JOURNAL_STREAM is 'DEVICE:INODE'
    of it; systemd.exec(5), "Environment variables in spawned processes")."""
    value = os.environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
        dev, ino = value.split(":")
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):
        return False


def _file_handler(file: str | os.PathLike) -> logging.Handler:
    from mailward.config import ConfigError

    path = Path(file)
    if not path.parent.is_dir():
        raise ConfigError(f"{path}: log.file: the folder {path.parent} does not exist; fix: "
                          f"mkdir -p {path.parent} (or set log.file to a file in an existing folder)")
    try:
        return LogFile(path, encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: log.file: cannot open it for writing: {err.strerror}; fix: "
                          f"chown the file (or its folder) to the account mailward runs as") from None


def setup(level: str = "info", file: str | os.PathLike = "", as_json: bool = False, *,
          syslog: bool = False, syslog_address: str = "/dev/log", facility: str = "mail") -> None:
    """Send the lines where the settings say (see the module's docstring); called again on
    SIGHUP, which reopens the file. Raises ConfigError (one line) when it cannot."""
    from mailward.config import ConfigError

    formatter: logging.Formatter = _JSONFormatter() if as_json else _SendmailFormatter()
    handler: logging.Handler
    if syslog:
        try:
            handler = SyslogHandler(syslog_address or "/dev/log", facility or "mail")
        except ValueError as err:
            raise ConfigError(f"log.facility: {err}") from None
        formatter = _JSONFormatter() if as_json else _TextFormatter()
    elif file:
        handler = _file_handler(file)
    else:
        handler = logging.StreamHandler(sys.stderr)
        if journal_stderr():
            formatter = _JournalFormatter(_JSONFormatter() if as_json else _TextFormatter())
    handler.setFormatter(formatter)
    old, logger.handlers[:] = list(logger.handlers), [handler]
    for h in old:
        h.close()
    logger.setLevel(_LEVELS.get(level, logging.INFO))
    logger.propagate = False


def setup_from_config(config) -> None:
    """:func:`setup` with the ``[log]`` settings. ``log.syslog``, ``log.syslog_address`` and
    ``log.facility`` are read with defaults until the configuration declares them."""
    settings = config.log
    setup(settings.level, settings.file, settings.json, syslog=bool(getattr(settings, "syslog", False)),
          syslog_address=str(getattr(settings, "syslog_address", "/dev/log") or "/dev/log"),
          facility=str(getattr(settings, "facility", "mail") or "mail"))

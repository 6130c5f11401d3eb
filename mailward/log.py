"""Logging in sendmail's form, or as JSON lines.

Every line an administrator greps for is built here from named fields, so the sendmail-style
text and the structured record always carry the same facts:

    mailward[PID]: STARTTLS=server, relay=localhost [127.0.0.1], version=TLSv1.3, verify=OK, ...

Call :func:`event` with the fields in the order sendmail prints them; ``qid`` (a queue id)
becomes the ``QID: `` prefix as in sendmail's lines.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

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
    logger.log(level, text, extra={"fields": fields, "qid": qid})


def info(qid: str | None = None, /, **fields) -> None:
    event(logging.INFO, qid, **fields)


def notice(qid: str | None = None, /, **fields) -> None:
    event(NOTICE, qid, **fields)


class _SendmailFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime(record.created))
        level = record.levelname.lower()
        return f"{stamp} mail.{level} mailward[{os.getpid()}]: {record.getMessage()}"


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


def setup(level: str = "info", file: str | os.PathLike = "", as_json: bool = False) -> None:
    handler: logging.Handler
    if file:
        handler = logging.FileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JSONFormatter() if as_json else _SendmailFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(_LEVELS.get(level, logging.INFO))
    logger.propagate = False

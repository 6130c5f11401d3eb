"""``mailward sendmail`` and the ``sendmail``, ``mailq`` and ``newaliases`` commands.

Cron, scripts, PHP's mail(), logwatch and mailx send mail by running ``/usr/sbin/sendmail``
with the message on standard input. This is that command, with the options of Postfix's
sendmail(1) (whose list of accepted-and-ignored options it follows).

INSTALLING. ``pip install mailward`` installs three console scripts beside ``mailward``:
``sendmail``, ``mailq`` and ``newaliases``. All three run :func:`main`, which looks at the
name it was started by (argv[0]): ``mailq`` is ``sendmail -bp``, ``newaliases`` is
``sendmail -bi``; any other name is sendmail. So a symbolic link of any of those names to
any of the three scripts works too. The one command an administrator runs to make the
system's programs use mailward (as root, with the environment that has mailward installed)::

    for c in sendmail mailq newaliases; do ln -sf "$(command -v $c)" /usr/sbin/$c; done

(Debian's ``/usr/lib/sendmail`` is a link to ``/usr/sbin/sendmail`` already when an MTA
package made it; otherwise link it the same way.)

CONFIGURATION. ``-C FILE`` (sendmail's option), else ``$MAILWARD_CONFIG``, else
``/etc/mailward/mailward.toml`` (:func:`mailward.config.default_path`, as every command).

WHERE THE MESSAGE GOES (:mod:`mailward.submit`): straight into the spool when the invoking
user may write it (root, or ``server.user``), fsynced before this command exits, then a
running server is asked to deliver it (SIGUSR2: take new queue files); with no server running it is delivered when
``mailward serve`` starts. Any other user submits over SMTP to the first ``server.listen``
address. With ``-v`` the command says which way the message went and its queue id. When the
message is not taken (the server down and the spool not writable, a full disk...), it is
appended to ``~/dead.letter`` (as sendmail does) and the command exits 75 with one line.

OPTIONS. ``-t`` recipients from To:, Cc: and Bcc: (added to those on the command line, as
Postfix does; Bcc: is removed from every message, with -t or without); ``-f SENDER`` / ``-r
SENDER`` the envelope sender (``<>``: the null sender; default: the invoking user at the local
domain); unqualified names get the local domain (``server.hostname`` when it is in
``local.domains``, else the first of ``local.domains``), so a bare ``root`` stays here; ``-F
NAME`` the full name for a From: header added when the message has none; ``-i`` / ``-oi`` a
line holding a single dot does not end the message; ``-v`` say where the message went; ``-bm``
(the default) read a message; ``-bp`` list the queue (= ``mailward queue list``); ``-q`` ask
the server to run the queue (= ``mailward queue flush``); ``-bv`` verify addresses (local or
remote, and whether a local user exists); ``-bs`` SMTP on standard input and output, relayed to
the local server; ``-bi`` / ``-I`` check the aliases file (mailward re-reads it when it
changes: there is no database to build). Accepted and ignored, as Postfix's sendmail does: ``-B
TYPE``, ``-h N``, ``-L``, ``-N DSN``, ``-O``, ``-R RET``, ``-V ENVID``, ``-X``, ``-e``, ``-p``,
``-A``, every other ``-oX`` option, ``-G``, ``-U``, ``-c``, ``-m``, ``-x``, ``-qINTERVAL``.
Refused with exit 64: ``-n`` (as Postfix), ``-bd`` (run ``mailward serve``), other ``-b``
modes, unknown options.

EXIT CODES (sysexits.h): 0 taken; 64 EX_USAGE (a bad option, no recipients); 65 EX_DATAERR
(the message can never be taken: too big, refused with 5xx); 67 EX_NOUSER (``-bv`` or the
server: no such local user); 70 EX_SOFTWARE (a bug: one line, no traceback); 75 EX_TEMPFAIL
(not taken now, try later: the message is in ``~/dead.letter``); 77 EX_NOPERM (the
configuration file cannot be read); 78 EX_CONFIG (the configuration file is wrong).
"""

from __future__ import annotations

import argparse
import os
import pwd
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78

PROG = "sendmail"

# Postfix sendmail(1): options that take a value (glued or as the next word) ...
_WITH_VALUE = set("ABCFLNORVXbefhoprq")
# ... and flags accepted and ignored
_IGNORED_FLAGS = set("GUcmx")


class Failure(Exception):
    """One line for the user and a sysexits code."""

    def __init__(self, text: str, code: int):
        super().__init__(text)
        self.code = code


@dataclass
class Options:
    mode: str = "m"                 # -b letter: m (message), p, s, v, i
    config: str = ""
    extract: bool = False           # -t
    sender: str | None = None       # -f / -r
    full_name: str = ""             # -F
    ignore_dots: bool = False       # -i / -oi
    verbose: bool = False           # -v
    flush: bool = False             # -q
    recipients: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def parse(argv: list[str], prog: str = PROG) -> Options:
    """sendmail's command line (getopt style: ``-tif x``, ``-oi``, ``-fsender``, ``--``)."""
    opts = Options()
    if prog == "mailq":
        opts.mode = "p"
    elif prog == "newaliases":
        opts.mode = "i"
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            opts.recipients.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            opts.recipients.append(arg)
            continue
        j = 1
        while j < len(arg):
            letter = arg[j]
            j += 1
            if letter == "q":               # -q, -qINTERVAL, -qR..., -qI...
                if j < len(arg):
                    opts.ignored.append(arg)
                else:
                    opts.flush = True
                break
            if letter in _WITH_VALUE:
                if j < len(arg):
                    value = arg[j:]
                elif i < len(argv):
                    value, i = argv[i], i + 1
                else:
                    raise Failure(f"option -{letter} requires a value (see sendmail(1))", EX_USAGE)
                _value_option(opts, letter, value)
                break
            if letter == "t":
                opts.extract = True
            elif letter == "i":
                opts.ignore_dots = True
            elif letter == "v":
                opts.verbose = True
            elif letter == "I":
                opts.mode = "i"
            elif letter == "n":                 # Postfix: "-n option not supported"
                raise Failure("-n: option not supported (aliases are always expanded)", EX_USAGE)
            elif letter in _IGNORED_FLAGS:
                opts.ignored.append("-" + letter)
            else:
                raise Failure(f"unknown option -{letter}; the options are those of sendmail(1) "
                              "(mailward sendmail --help)", EX_USAGE)
    return opts


def _value_option(opts: Options, letter: str, value: str) -> None:
    if letter == "b":
        if value in ("m", "p", "s", "v", "i"):
            opts.mode = value
        elif value == "d":
            raise Failure("-bd: mailward's daemon is started with: mailward serve -c FILE", EX_USAGE)
        else:
            raise Failure(f"-b{value}: mode not supported (supported: -bm, -bp, -bs, -bv, -bi)", EX_USAGE)
    elif letter == "C":
        opts.config = value
    elif letter in "fr":
        value = value.strip()
        opts.sender = "" if value in ("<>", "") else value.removeprefix("<").removesuffix(">")
    elif letter == "F":
        opts.full_name = value
    elif letter == "o" and value == "i":
        opts.ignore_dots = True
    else:
        opts.ignored.append(f"-{letter} {value}")


# ---- configuration and identity -----------------------------------------------------------

def config_path(opts: Options) -> str:
    from mailward.config import default_path

    return opts.config or str(default_path())


def load_config(opts: Options):
    from mailward import config as config_mod

    path = config_path(opts)
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise Failure(f"{path}: cannot read the mailward configuration (permission denied); fix: make it "
                      f"readable (chmod 644 {path}) or give another with -C FILE", EX_NOPERM) from None
    except OSError as err:
        raise Failure(f"{path}: cannot read the mailward configuration ({err.strerror}); fix: give it with "
                      f"-C FILE or MAILWARD_CONFIG", EX_CONFIG) from None
    try:
        return config_mod.load(path)
    except config_mod.ConfigError as err:
        raise Failure(str(err), EX_CONFIG) from None


def local_domain(cfg) -> str:
    """Where unqualified names belong: server.hostname when it is a local domain, otherwise
    the first of local.domains (so a bare ``root`` is always delivered on this machine)."""
    domains = [d.lower() for d in cfg.local.domains]
    host = cfg.server.hostname.lower()
    return host if host in domains or not domains else domains[0]


def qualify(address: str, domain: str) -> str:
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address if "@" in address or not address else f"{address}@{domain}"


def login_name() -> tuple[str, int]:
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name, uid
    except KeyError:
        return os.environ.get("USER", "") or f"uid{uid}", uid


# ---- reading the message ------------------------------------------------------------------

def read_message(stream, ignore_dots: bool, limit: int) -> bytes:
    """Standard input up to EOF, or (without -i) up to a line holding a single dot."""
    if ignore_dots:
        data = stream.read(limit + 1)
    else:
        parts, size = [], 0
        for line in iter(stream.readline, b""):
            if line.rstrip(b"\r\n") == b".":
                break
            parts.append(line)
            size += len(line)
            if size > limit:
                break
        data = b"".join(parts)
    if len(data) > limit:
        raise Failure(f"the message is larger than server.max_message_size ({limit} octets); not sent",
                      EX_DATAERR)
    return data


def crlf_text(data: bytes) -> bytes:
    from mailward.submit import crlf

    return crlf(data)


def save_dead_letter(content: bytes, sender: str) -> str:
    """Append the message to ~/dead.letter (mbox form); returns where, or why not."""
    home = os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    path = Path(home) / "dead.letter"
    body = content.replace(b"\r\n", b"\n")
    body = b"".join(b">" + line if line.startswith(b"From ") else line for line in body.splitlines(True))
    stamp = time.strftime("%a %b %d %H:%M:%S %Y")
    try:
        with open(path, "ab") as f:
            f.write(f"From {sender or 'MAILER-DAEMON'} {stamp}\n".encode() + body
                    + (b"" if body.endswith(b"\n") else b"\n") + b"\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        return f"and could not be saved in {path}: {err.strerror}"
    return f"it was saved in {path}"


# ---- the modes ------------------------------------------------------------------------------

def checked(address: str, what: str, kind: str) -> str:
    """The address as the SMTP server would accept it (RFC 5321 §4.1.2), or Failure 65: an
    address that reaches the spool must be one a next hop can be sent."""
    from mailward.smtp.parse import SyntaxProblem, parse_path

    try:
        return parse_path(f"<{address}>" + ("" if address.isascii() or kind == "RCPT" else " SMTPUTF8"),
                          kind=kind, smtputf8=True).address
    except SyntaxProblem as err:
        raise Failure(f"{what} {address!r} is not a valid address ({err.reply.text})", EX_DATAERR) from None


def send(opts: Options, cfg, stdin, out) -> int:
    from mailward import submit

    domain = local_domain(cfg)
    user, uid = login_name()
    sender = qualify(opts.sender, domain) if opts.sender else ("" if opts.sender == "" else f"{user}@{domain}")
    data = read_message(stdin, opts.ignore_dots, cfg.server.max_message_size)
    content = submit.drop_mbox_from(submit.crlf(data))
    try:
        if sender:
            sender = checked(sender, "the sender (-f)", "MAIL")
        recipients = [checked(qualify(r, domain), "the recipient", "RCPT")
                      for arg in opts.recipients for r in arg.split(",") if r.strip()]
        if opts.extract:
            head, _ = submit.split_head(content)
            recipients += [checked(qualify(r, domain), "the recipient in To:/Cc:/Bcc:", "RCPT")
                           for r in submit.recipients_from_headers(submit.header_fields(head))]
        recipients = list(dict.fromkeys(recipients))
        if not recipients:
            raise Failure("no recipients: give them as arguments, or use -t to take them from To:, Cc: and Bcc:",
                          EX_USAGE)
        content = submit.complete_headers(content, sender=sender, full_name=opts.full_name, domain=domain,
                                          drop_bcc=True)
        result = submit.submit(submit.Submission(sender, recipients, content, user=user, uid=uid), cfg)
    except (Failure, submit.SubmitError) as err:
        code = err.code if isinstance(err, Failure) else err.exit_code
        again = "send it again later" if code == EX_TEMPFAIL else "correct it and send it again"
        raise Failure(f"the message was not taken: {err}; {save_dead_letter(content, sender)}; fix: {again}",
                      code) from None
    except Exception as err:  # noqa: BLE001 -- a bug: keep the message, say so in one line
        raise Failure(f"internal error ({type(err).__name__}: {err}); the message was not taken; "
                      f"{save_dead_letter(content, sender)}; please report it", EX_SOFTWARE) from None
    if opts.verbose:
        print(f"{result.queue_id}: <{sender}> -> {', '.join(f'<{r}>' for r in recipients)}: {result.detail}",
              file=out)
    return EX_OK


def verify(opts: Options, cfg, out) -> int:
    """-bv: what would become of each address (sendmail's "deliverable"/"User unknown")."""
    from mailward.deliver.maildir import Mailboxes
    from mailward.deliver.routes import RouteError, RouteTable

    if not opts.recipients:
        raise Failure("-bv: give the addresses to verify", EX_USAGE)
    try:
        routes = RouteTable(cfg.delivery.route_file or None)
        mailboxes = Mailboxes.from_config(cfg)
    except (RouteError, OSError) as err:
        raise Failure(str(err), EX_CONFIG) from None
    domains = {d.lower() for d in cfg.local.domains}
    worst = EX_OK
    for arg in opts.recipients:
        address = qualify(arg, local_domain(cfg))
        dom = address.rpartition("@")[2].lower()
        route = routes.route(dom)
        if dom in domains or (route is not None and route.kind == "local"):
            found = mailboxes.find(address)
            if found.alias:
                targets = mailboxes.aliases.expand(address.rpartition("@")[0]) or []
                print(f"{address}... deliverable: alias of {', '.join(targets)}", file=out)
            elif found.exists:
                print(f"{address}... deliverable: mailer local, user {found.mailbox}", file=out)
            else:
                print(f"{address}... User unknown (local)", file=out)
                worst = EX_NOUSER
        elif route is not None and route.kind in ("error", "discard"):
            print(f"{address}... route {route.key}: {route.text}", file=out)
        else:
            how = f"route {route.key} -> {route.text}" if route else f"host {dom} (MX)"
            print(f"{address}... deliverable: mailer esmtp (remote), {how}", file=out)
    return worst


def newaliases(cfg, out) -> int:
    from mailward.deliver.aliases import AliasError, load_aliases

    path = cfg.local.aliases
    if not path:
        print("no aliases file (local.aliases is empty): nothing to do", file=out)
        return EX_OK
    try:
        table = load_aliases(Path(path))
    except AliasError as err:
        raise Failure(str(err), EX_CONFIG) from None
    print(f"{path}: {len(table)} aliases, syntax OK (mailward reads the file when it changes; "
          "no database to build)", file=out)
    return EX_OK


def need_spool(cfg, what: str) -> bool:
    """-bp and -q read the spool folder itself: only root and server.user may (77 otherwise).
    False: there is no spool yet (no server has ever run)."""
    directory = Path(cfg.spool.directory)
    try:
        os.stat(directory)
        readable = os.access(directory, os.R_OK | os.X_OK) and (
            not os.path.isdir(directory / "queue") or os.access(directory / "queue", os.R_OK | os.X_OK))
    except FileNotFoundError:
        return False
    except OSError:
        readable = False
    if not readable:
        raise Failure(f"{directory}: {what} needs to read the spool (spool.directory), which this user may not; "
                      "fix: run it as root or as server.user", EX_NOPERM)
    return True


def flush(cfg, out) -> int:
    from mailward.spool.store import PID_FILE, running_server
    from mailward.submit import wake_server

    directory = Path(cfg.spool.directory)
    need_spool(cfg, "-q (run the queue)")
    if running_server(directory) is None:
        raise Failure(f"{directory / PID_FILE}: no running mailward server to run the queue; fix: start it: "
                      f"mailward serve -c {cfg.path}", EX_TEMPFAIL)
    print(wake_server(directory).replace("was asked to deliver it", "was asked to run the queue"), file=out)
    return EX_OK


def list_queue(cfg) -> int:
    from mailward.cli import main as mailward_main

    if not need_spool(cfg, "mailq (-bp)"):
        print(f"mail queue is empty ({cfg.spool.directory} does not exist yet)")
        return EX_OK
    sys.stdout.flush()
    return EX_OK if mailward_main(["queue", "-c", str(cfg.path), "list"]) == 0 else EX_TEMPFAIL


def smtp_on_stdio(cfg, stdin, out) -> int:
    """-bs: the SMTP dialogue of standard input and output, relayed to the local server.

    Relayed in lock step, one command and then its reply, as sendmail -bs reads one command
    at a time: a program that writes its whole dialogue at once is not taken for a client
    that pipelines without PIPELINING (RFC 2920 §3.1). Line ends from the program become
    CRLF, as the server requires."""
    from mailward.submit import listen_address

    host, port = listen_address(cfg.server.listen)
    try:
        conn = socket.create_connection((host, port), timeout=cfg.server.data_timeout)
    except OSError as err:
        out.write(f"421 4.3.0 {cfg.server.hostname} mailward is not running ({host}:{port}: "
                  f"{err.strerror}); try again later\r\n".encode())
        out.flush()
        return EX_TEMPFAIL
    replies = conn.makefile("rb")

    def relay_reply() -> int:
        """Copy one (multi-line) reply; its code, 0 when the server closed."""
        while True:
            line = replies.readline()
            if not line:
                return 0
            out.write(line)
            if len(line) < 4 or line[3:4] != b"-":
                out.flush()
                return int(line[:3]) if line[:3].isdigit() else 0

    try:
        code = relay_reply()
        in_data = False
        while code and code != 221:
            line = stdin.readline()
            if not line:
                break
            text = line.rstrip(b"\r\n")
            conn.sendall(text + b"\r\n")
            if in_data:
                if text != b".":
                    continue
                in_data = False
            code = relay_reply()
            in_data = code == 354
    except OSError as err:
        print(f"{PROG} -bs: connection to the mailward server at {host}:{port} lost: {err.strerror}",
              file=sys.stderr)
        return EX_TEMPFAIL
    finally:
        conn.close()
    return EX_OK


# ---- entry points ---------------------------------------------------------------------------

def run(argv: list[str], prog: str = PROG, stdin=None, stdout=None) -> int:
    stdin = stdin if stdin is not None else sys.stdin.buffer
    out_text = sys.stdout
    if argv[:1] == ["--help"]:
        try:
            print(__doc__, file=out_text)
        except BrokenPipeError:
            pass
        return EX_OK
    try:
        opts = parse(argv, prog)
        try:
            cfg = load_config(opts)
        except Failure as err:
            if opts.mode == "m" and not opts.flush:    # a message is waiting on stdin: keep it
                data = read_message(stdin, opts.ignore_dots, 1 << 30) if not stdin.isatty() else b""
                if data:
                    err = Failure(f"{err}; the message was not taken; {save_dead_letter(crlf_text(data), '')}",
                                  err.code)
            raise err from None
        if opts.flush and opts.mode == "m" and not opts.recipients:
            return flush(cfg, out_text)
        if opts.mode == "p":
            return list_queue(cfg)
        if opts.mode == "i":
            return newaliases(cfg, out_text)
        if opts.mode == "v":
            return verify(opts, cfg, out_text)
        if opts.mode == "s":
            return smtp_on_stdio(cfg, stdin, stdout if stdout is not None else sys.stdout.buffer)
        return send(opts, cfg, stdin, out_text)
    except Failure as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the message was not sent", file=sys.stderr)
        return EX_TEMPFAIL
    except Exception as err:  # noqa: BLE001 -- a bug: one line, never a traceback
        print(f"{prog}: internal error ({type(err).__name__}: {err}); the message was not taken; "
              "please report it", file=sys.stderr)
        return EX_SOFTWARE


def main(argv: list[str] | None = None) -> int:
    """Console scripts ``sendmail``, ``mailq``, ``newaliases``: dispatch on argv[0]."""
    prog = os.path.basename(sys.argv[0]) if sys.argv else PROG
    prog = prog if prog in ("mailq", "newaliases") else PROG
    return run(sys.argv[1:] if argv is None else argv, prog)


def _command(args) -> int:
    return run(args.args)


def register(subparsers) -> None:
    # sendmail's options are getopt-style (-oi, -fsender, -tif ADDR): parsed here, not by argparse
    p = subparsers.add_parser("sendmail", prefix_chars="\x00", add_help=False,
                              help="sendmail-compatible local submission (cron, scripts, mailx)",
                              description="Read a message on standard input and queue it, as sendmail(1).")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_command)


if __name__ == "__main__":
    raise SystemExit(main())

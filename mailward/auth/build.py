"""The AUTH backend named by the configuration's [auth] section.

:func:`backend_from_config` returns None for ``auth.backend = "none"``, else a backend ready
for :meth:`~mailward.auth.AuthBackend.start`. It raises :class:`~mailward.config.ConfigError`
with one line naming the setting and the fix: a users file that is missing, unreadable, too
open (mode) or has a bad line (``FILE:LINE: why``); a backend without its file or socket; a
mechanism the users file does not implement. Dovecot being down is not an error here: the
backend connects when started and again when used.
"""

from __future__ import annotations

from mailward.auth import AuthBackend
from mailward.config import ConfigError


def backend_from_config(config) -> AuthBackend | None:
    auth = config.auth
    where = str(config.path) if config.path else "<config>"
    if auth.backend == "none":
        return None
    if auth.backend == "file":
        from mailward.auth.users import UsersFileBackend, UsersFileError

        if not auth.users_file:
            raise ConfigError(f"{where}: auth.backend is \"file\" but auth.users_file is empty; fix: name the "
                              f"users file (create it with mailward user add NAME)")
        try:
            return UsersFileBackend(auth.users_file, mechanisms=auth.mechanisms,
                                    password_checks=auth.password_checks)
        except UsersFileError as err:
            raise ConfigError(f"{where}: auth.users_file: {err}") from None
        except ValueError as err:
            raise ConfigError(f"{where}: auth.mechanisms: {err}") from None
    if auth.backend == "dovecot":
        from mailward.auth.dovecot import DovecotBackend

        if not auth.dovecot_socket:
            raise ConfigError(f"{where}: auth.backend is \"dovecot\" but auth.dovecot_socket is empty; fix: "
                              f"name the unix_listener socket of Dovecot's auth service")
        return DovecotBackend(auth.dovecot_socket, mechanisms=auth.mechanisms, timeout=auth.timeout,
                              service=auth.dovecot_service)
    raise ConfigError(f"{where}: auth.backend: unknown backend {auth.backend!r}")

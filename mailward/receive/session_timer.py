"""The command and data timers of one SMTP session, re-armed cheaply.

:class:`SessionTimer` is mixed into :class:`mailward.receive.session.SMTPSession`. A session
re-arms its timer for every whole command or group of DATA lines (``server.idle_timeout``,
``server.data_timeout``, ``server.tls_handshake_timeout``): moving the deadline later only
stores it, and the one event-loop timer the session holds, when it comes due early, sets
itself again for the stored deadline. A new deadline earlier than the timer's replaces it.
The session ends at its deadline exactly as with a timer set anew for every command (a
cancelled asyncio timer stays in the loop's heap until it is cleaned out: re-arming per
command cost a heap push, a cancel and that clean-up, per command).

Contract: :meth:`SessionTimer._arm` sets the deadline ``seconds`` from now, replacing the
previous one; when it passes, :meth:`_timed_out` (the session's) is called once. Nothing is
armed once the session is closed (the transport's abort timer, ``_timer``, is the session's
own then). Fails in no way of its own.
"""

from __future__ import annotations

import asyncio

# A timer that comes due this close to its deadline counts as due: asyncio runs timers up
# to its clock's resolution early, and re-arming for the rest would spin.
_SLACK = 0.001


class SessionTimer:
    _timer: asyncio.TimerHandle | None = None
    _deadline = 0.0

    def _arm(self, seconds: float) -> None:
        if self._closed:
            return  # the timer that aborts a transport that does not drain stays
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        self._deadline = deadline
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline and not timer.cancelled():
                return   # it comes due first and sets itself again for the new deadline
            timer.cancel()
        self._timer = loop.call_at(deadline, self._timer_due)

    def _timer_due(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        if self._deadline - loop.time() > _SLACK:   # moved later since: wait for the rest
            self._timer = loop.call_at(self._deadline, self._timer_due)
            return
        self._timed_out()

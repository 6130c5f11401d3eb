"""Truth table of :mod:`mailward.deliver.results`: a reply and the message's age → what the
spool records, the enhanced status logged and reported, and whether the expiry is said."""

from __future__ import annotations

import pytest

from mailward.deliver.results import Delivered, Permanent, Transient, classify, duration, settle
from mailward.smtp.replies import Reply

DAY = 86400.0
GIVE_UP = 5 * DAY

# reply (code, status), age → (class, state, status, expiry note?)
TABLE = [
    ((250, "2.0.0"), 0, Delivered, "delivered", "2.0.0", False),
    ((251, ""), 0, Delivered, "delivered", "2.0.0", False),
    ((250, "2.0.0"), 9 * DAY, Delivered, "delivered", "2.0.0", False),   # late success is success
    ((421, "4.4.2"), 0, Transient, "deferred", "4.4.2", False),
    ((450, ""), 0, Transient, "deferred", "4.0.0", False),
    ((454, "4.7.0"), 0, Transient, "deferred", "4.7.0", False),          # a TLS_Srv refusal
    ((403, "4.7.0"), 0, Transient, "deferred", "4.7.0", False),          # TEMP+
    ((454, "4.7.0"), GIVE_UP, Transient, "bounced", "4.4.7", True),      # expired: 4.4.7, reply kept
    ((451, "4.4.1"), GIVE_UP - 1, Transient, "deferred", "4.4.1", False),
    ((550, "5.1.1"), 0, Permanent, "bounced", "5.1.1", False),
    ((503, "5.7.0"), 0, Permanent, "bounced", "5.7.0", False),           # PERM+
    ((554, ""), GIVE_UP, Permanent, "bounced", "5.0.0", False),          # permanent wins over expiry
    ((199, ""), 0, Transient, "deferred", "1.0.0", False),               # nonsense never bounces
]


@pytest.mark.parametrize("reply, age, kind, state, status, expired", TABLE)
def test_truth_table(reply, age, kind, state, status, expired):
    result = classify(Reply(reply[0], reply[1], "text"), "mx [192.0.2.1]")
    assert type(result) is kind and result.relay == "mx [192.0.2.1]"
    settled = settle(result, age=age, give_up_after=GIVE_UP)
    assert (settled.state, settled.status) == (state, status)
    assert settled.note.startswith("Message could not be delivered for ") == expired
    assert result.reply.code == reply[0]   # the reply itself is never rewritten


def test_duration_is_sendmails_form():
    assert duration(0) == "00:00:00" and duration(3725) == "01:02:05" and duration(5 * DAY + 61) == "5+00:01:01"

"""The receive policy has one home: :class:`mailward.policy.receive.ReceivePolicy` (with its
:class:`~mailward.policy.receive.Verdict`). This module only keeps the old names for
:mod:`mailward.receive.session` until it imports them from there."""

from mailward.policy.receive import ACCEPT, ReceivePolicy as Gate, Verdict  # noqa: F401

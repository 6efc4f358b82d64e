"""The registry's pure core: the view, commands, plan and apply, the event log and the
liveness buffer. No I/O; ``changes.Changes`` drives it against a store.

    view.py       View: instances by type and (type, id), change indexes (reads)
    commands.py   Register, Heartbeat, SetStatus, Observe, Expire, Remove, Deregister
    plan.py       plan(view, command, now) -> Batch | Touch | None   (validates, 4xx)
    apply.py      apply(view, index, batch) -> events; touch(view, touch)
    events.py     EventLog: the bounded log of transitions
    liveness.py   LivenessBuffer: beats waiting for the batched flush
"""

from jarvis_dns.registry.apply import apply, stamp, touch
from jarvis_dns.registry.commands import (
    Command,
    Deregister,
    Expire,
    Heartbeat,
    Observe,
    Register,
    Remove,
    SetStatus,
)
from jarvis_dns.registry.events import DEFAULT_EVENT_LOG_SIZE, EventLog
from jarvis_dns.registry.liveness import LivenessBuffer
from jarvis_dns.registry.plan import Plan, Touch, plan
from jarvis_dns.registry.view import View

__all__ = [
    "DEFAULT_EVENT_LOG_SIZE",
    "Command",
    "Deregister",
    "EventLog",
    "Expire",
    "Heartbeat",
    "LivenessBuffer",
    "Observe",
    "Plan",
    "Register",
    "Remove",
    "SetStatus",
    "Touch",
    "View",
    "apply",
    "plan",
    "stamp",
    "touch",
]

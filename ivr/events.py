"""What happened in a call, on its way out of the web process."""

from __future__ import annotations

import logging

from ivr.flow import FlowEvent

log = logging.getLogger(__name__)


def emit(call_sid: str, happened: tuple[FlowEvent, ...]) -> None:
    """Hand the call's events on (logged for now; written to Redis by the workers next)."""
    for event in happened:
        log.debug("call %s: %s %s", call_sid, event.kind.value, event.detail)

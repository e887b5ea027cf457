"""MQTT triggers are always answered: by their verdict, or by an ERROR on the verdict topic that says why not.

With MQTT 5 the answer also goes to the trigger's Response Topic, with its Correlation Data.
"""

from __future__ import annotations

from edge_ad.publish.client import MqttPublisher
from edge_ad.publish.session import ReplyRoute
from edge_ad.service.modes import TriggerRejected
from edge_ad.types import Verdict

__all__ = ["MqttAnswer"]


class MqttAnswer:
    """The :class:`~edge_ad.service.modes.TriggerReply` of one MQTT trigger (never withdrawn: MQTT does not wait).

    Args:
        part: The trigger's id, with its JSON type.
        publisher: Publishes the ERROR (spooled, in order with verdicts) and the Response Topic copies.
        route: MQTT 5: the trigger's Response Topic and Correlation Data.
    """

    withdrawn = False

    def __init__(self, part: str | int, publisher: MqttPublisher, route: ReplyRoute | None = None) -> None:
        self.part = part
        self.publisher = publisher
        self.route = route

    def answered(self, verdict: Verdict) -> None:
        """The verdict goes to the verdict topic anyway; with a Response Topic, a copy goes there."""
        if self.route is not None:
            self.publisher.respond_verdict(self.route, verdict)

    def lost(self, rejected: TriggerRejected) -> None:
        """No verdict will come: answer ERROR with the reason."""
        self.publisher.publish_trigger_error(self.part, rejected.kind, rejected.reason, self.route)

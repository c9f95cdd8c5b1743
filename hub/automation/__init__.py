"""Home-Assistant-style YAML automations: triggers, conditions and actions over the hub's bus,
states and services; docs/automations.md is the user's guide.

`get_traces(hub, automation)` gives the last runs of an automation as JSON-able dicts.
"""

from hub.automation.trace import get_trace_for_context, get_traces

__all__ = ["get_trace_for_context", "get_traces"]

"""The MeterValues fast path never accepts a payload the full OCPP schema refuses."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugins.ocpp.rpc import OcppCallError, Version, _fast_paths, validator

FAST = _fast_paths()[(Version.V16, "MeterValues", False)]
FULL = validator(Version.V16, "MeterValues", False)
GOOD: dict[str, Any] = {
    "connectorId": 1,
    "transactionId": 7,
    "meterValue": [
        {
            "timestamp": "2026-03-02T06:00:00Z",
            "sampledValue": [
                {"value": "12.5", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
                {"value": "16", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
            ],
        }
    ],
}
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(["Wh", "L4", "Outlet", "Sample.Periodic", "2026-03-02T06:00:00+01:00", "now"]),
)
PATHS = [
    (),
    ("connectorId",),
    ("transactionId",),
    ("meterValue",),
    ("meterValue", 0),
    ("meterValue", 0, "timestamp"),
    ("meterValue", 0, "sampledValue"),
    ("meterValue", 0, "sampledValue", 0),
    ("meterValue", 0, "sampledValue", 0, "value"),
    ("meterValue", 0, "sampledValue", 1, "phase"),
    ("meterValue", 0, "sampledValue", 1, "unit"),
    ("meterValue", 0, "sampledValue", 0, "measurand"),
    ("meterValue", 0, "sampledValue", 0, "extra"),
    ("meterValue", 0, "extra"),
    ("extra",),
]


def _full_accepts(payload: Any) -> bool:
    try:
        FULL(payload)
    except Exception:
        return False
    return True


def test_the_fast_path_accepts_a_good_message() -> None:
    assert FAST(GOOD) and _full_accepts(GOOD)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(path=st.sampled_from(PATHS), junk=JUNK, delete=st.booleans())
def test_fast_acceptance_implies_schema_acceptance(path: tuple, junk: Any, delete: bool) -> None:
    payload = copy.deepcopy(GOOD)
    if not path:
        payload = junk
    else:
        parent = payload
        for key in path[:-1]:
            parent = parent[key]
        if delete and path[-1] in (parent if isinstance(parent, dict) else range(len(parent))):
            del parent[path[-1]]
        else:
            parent[path[-1]] = junk
    if FAST(payload):
        assert _full_accepts(payload), payload


@pytest.mark.parametrize("payload", [{**GOOD, "connectorId": True}, {**GOOD, "meterValue": []}])
def test_a_refused_payload_still_gets_the_full_error(payload: dict[str, Any]) -> None:
    from plugins.ocpp.rpc import validate

    with pytest.raises(OcppCallError):
        validate(Version.V16, "MeterValues", payload)

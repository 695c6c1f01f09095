"""Flow control for one InferencePool: is the pool saturated, and if so, who waits and who goes.

Sans-IO and clock-free (``now`` is passed in). Sits between routing and scheduling on the request
path: the data plane asks ``SaturationDetector.assess`` whether any endpoint has capacity; if none
has, the request waits in the ``FlowController`` (priority bands -> fairness between flows ->
ordering inside a flow) until ``pop_next`` releases it, ``expire`` times it out or ``remove``
forgets it. The data plane owns the futures, timers and HTTP replies. See README.md.
"""

from inferlane.flowcontrol.config import BandConfig, Fairness, FlowControlConfig, Ordering
from inferlane.flowcontrol.queue import (
    Admission,
    BandStats,
    ExpiryReason,
    FlowController,
    Outcome,
    QueuedRequest,
    RejectReason,
)
from inferlane.flowcontrol.saturation import (
    PoolSaturation,
    SaturationConfig,
    SaturationDetector,
    endpoint_saturation,
    free_batch_slots,
)

__all__ = [
    "Admission",
    "BandConfig",
    "BandStats",
    "ExpiryReason",
    "Fairness",
    "FlowControlConfig",
    "FlowController",
    "Ordering",
    "Outcome",
    "PoolSaturation",
    "QueuedRequest",
    "RejectReason",
    "SaturationConfig",
    "SaturationDetector",
    "endpoint_saturation",
    "free_batch_slots",
]

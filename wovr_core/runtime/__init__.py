"""ROS-free runtime: fixed-rate control loop, timestamp alignment, action-chunk scheduling, telemetry."""

from wovr_core.runtime.alignment import (
    AlignmentConfig,
    AlignmentError,
    Observation,
    ObservationAssembler,
    ObservationNotReady,
    ObservationRejected,
)
from wovr_core.runtime.chunking import ChunkScheduler, ScheduledAction
from wovr_core.runtime.loop import (
    ControlLoop,
    ControlLoopConfig,
    EpisodeInfo,
    EpisodeOutcome,
    EpisodeSink,
    LoopStep,
    MemorySink,
    PolicySource,
)
from wovr_core.runtime.rate import RateLoop, RateStats, Tick
from wovr_core.runtime.telemetry import CycleTelemetry, TelemetryLog

__all__ = [
    "AlignmentConfig", "AlignmentError", "ChunkScheduler", "ControlLoop", "ControlLoopConfig",
    "CycleTelemetry", "EpisodeInfo", "EpisodeOutcome", "EpisodeSink", "LoopStep", "MemorySink",
    "Observation", "ObservationAssembler", "ObservationNotReady", "ObservationRejected", "PolicySource",
    "RateLoop", "RateStats", "ScheduledAction", "TelemetryLog", "Tick",
]

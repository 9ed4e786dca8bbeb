"""Profiling: per-block latency lookup tables (LUTs) of a target, the latency predictor, validation."""

from .lut import LUT, LUTError
from .predictor import ExpectedLatency, SlotCostModel, expected_ms, min_max_ms, predict_ms

__all__ = ["LUT", "LUTError", "ExpectedLatency", "SlotCostModel", "expected_ms", "min_max_ms", "predict_ms"]

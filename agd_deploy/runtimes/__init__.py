"""Runtimes: one protocol (`base`), one timing loop (`timing`), deployment targets and their lowering
(`targets`), and one adapter module per runtime, each importing its runtime package lazily."""

from .base import Runtime, Session, device_fingerprint
from .targets import TARGETS, Target, available, get_target, load_session, lower, runtime_for
from .timing import Stats, measure, noise, pin_threads, pinned, unpin

__all__ = ["Runtime", "Session", "Stats", "TARGETS", "Target", "available", "device_fingerprint", "get_target",
           "load_session", "lower", "measure", "noise", "pin_threads", "pinned", "runtime_for", "unpin"]

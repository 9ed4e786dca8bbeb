"""An artifact's verification status: a kind and a reason, written to the manifest as one string
(`ok`, `untrained`, `failed: <why>`, `not verified: <why>`: the Contracts' values) and read back from it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    OK = "ok"                      # ran on its runtime, PSNR vs fp32 over its threshold
    UNTRAINED = "untrained"        # seeded random weights: conversion and timing verified, PSNR not gated
    FAILED = "failed"              # conversion error, runtime error, PSNR under its threshold, file changed
    NOT_VERIFIED = "not verified"  # its runtime cannot run here (e.g. CoreML off macOS)


@dataclass(frozen=True)
class Status:
    kind: Kind
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.reason}" if self.reason else self.kind.value

    @property
    def failed(self) -> bool:
        return self.kind is Kind.FAILED

    @property
    def ran(self) -> bool:
        """It ran here and passed (ok or untrained)."""
        return self.kind in (Kind.OK, Kind.UNTRAINED)

    @classmethod
    def parse(cls, text: str | None) -> "Status":
        """The manifest string back to a Status (an unknown string reads as failed, with itself as reason)."""
        text = str(text or "")
        for kind in Kind:
            if text == kind.value:
                return cls(kind)
            if text.startswith(kind.value + ": "):
                return cls(kind, text[len(kind.value) + 2:])
        return cls(Kind.FAILED, text or "no status")


def ok() -> Status:
    return Status(Kind.OK)


def failed(why: str) -> Status:
    return Status(Kind.FAILED, why)


def not_verified(why: str) -> Status:
    return Status(Kind.NOT_VERIFIED, why)

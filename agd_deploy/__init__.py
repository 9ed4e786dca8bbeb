"""agd-deploy: AutoGAN-Distiller search under measured latency budgets, and verified int8 deployment.

The public Python API is `agd_deploy.api` (`import agd_deploy.api as agd`): profile, check, transfer, find_table,
search, train, export, bench and their dataclass configs (docs/ARCHITECTURE.md, "Layers")."""

import os as _os

__version__ = "0.1.0"

# ONNX Runtime >= 1.32 Linux wheels carry 1DS telemetry: each session writes events into an SQLite file under
# ~/.cache/Microsoft/DeveloperTools and the library holds an upload endpoint. agd-deploy promises no network at
# run time. Set before any onnxruntime import and inherited by worker processes; a user who exports
# ORT_DISABLE_TELEMETRY=0 keeps it on.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

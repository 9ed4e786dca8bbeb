"""agd-deploy: AutoGAN-Distiller search under measured latency budgets, and verified int8 deployment.

The public Python API is `agd_deploy.api` (`import agd_deploy.api as agd`): profile, check, transfer, find_table,
search, train, export, bench and their dataclass configs (docs/ARCHITECTURE.md, "Layers")."""

__version__ = "0.1.0"

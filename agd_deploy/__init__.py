"""agd-deploy: AutoGAN-Distiller search under measured latency budgets, and verified int8 deployment."""

__version__ = "0.1.0"

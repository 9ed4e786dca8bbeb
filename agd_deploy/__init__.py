"""agd-deploy: AutoGAN-Distiller search under measured latency budgets, and verified int8 deployment.

The public Python API (`agd_deploy.api`) is importable from here: `agd_deploy.profile`, `check`, `transfer`,
`find_table`, `search`, `train`, `export`, `bench` and their configs; it loads on first use, so
`import agd_deploy` (and `agd --help`) stays fast."""

__version__ = "0.1.0"

_API = ("profile", "check", "transfer", "find_table", "search", "train", "export", "bench", "ProfileConfig",
        "SearchConfig", "TrainConfig", "ProfileResult", "CheckResult", "TransferResult", "SearchResult",
        "ExportResult")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'agd_deploy' has no attribute {name!r}")

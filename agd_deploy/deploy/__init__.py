"""Deploy: export -> verify -> manifest, the pipeline above `export` (converts) and `verify` (checks)."""

from .pipeline import run_bench, run_export

__all__ = ["run_bench", "run_export"]

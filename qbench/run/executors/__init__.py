"""How workers run: the async executor (coroutines over an aiosqlite pool)."""

from qbench.run.executors.async_executor import DrainResult, DrainSpec, run_drain

__all__ = ["DrainResult", "DrainSpec", "run_drain"]

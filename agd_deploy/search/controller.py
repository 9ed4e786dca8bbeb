"""The lambda controller: keeps the expected cost in a band just under the budget.

A fixed lambda either ignores the budget or crushes the net; AGD-style adaptation doubles lambda while the
expected cost is over the budget and halves it when it sits well under (wasted budget), clamped."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class LambdaController:
    lam: float = 1.0
    low: float = 0.85      # expected/budget below this: halve lambda (budget left on the table)
    high: float = 1.0      # expected/budget above this: double lambda
    lam_min: float = 1e-3
    lam_max: float = 1e3
    every: int = 5         # adapt at most once per `every` arch steps (let the alphas react first)
    _count: int = 0

    def update(self, expected: float, budget: float) -> float:
        """Feed one arch step's expected cost; returns the lambda for the next step."""
        self._count += 1
        if self._count % self.every:
            return self.lam
        r = expected / budget
        if r > self.high:
            self.lam = min(self.lam * 2.0, self.lam_max)
        elif r < self.low:
            self.lam = max(self.lam / 2.0, self.lam_min)
        return self.lam

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, d: dict) -> None:
        for k, v in d.items():
            setattr(self, k, type(getattr(self, k))(v))

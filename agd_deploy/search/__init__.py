"""AGD search under a latency budget: supernet, cost models (LUT latency | MACs), lambda controller, derive.

The search sees the hardware only through a cost model (`LatencyCost(lut)` or `FlopsCost()`); it never
imports runtimes or exporters."""

from .config import RecipeError, SearchConfig
from .controller import LambdaController
from .cost import CostModel, FlopsCost, LatencyCost, linear_fit
from .derive import BudgetError, check_budget, project
from .supernet import SuperNet

__all__ = ["BudgetError", "CostModel", "FlopsCost", "LambdaController", "LatencyCost", "RecipeError",
           "SearchConfig", "SuperNet", "check_budget", "linear_fit", "project"]

"""Attack a model (or replay a published set) and measure ASR before and after (orchestration.attack_runs);
list the attacks with their tiers and paper budgets."""

from __future__ import annotations

from typing import Any

from .. import registry
from ..attacks.base import BelowPaperBudgetWarning, check_tier
from ..errors import TrceAuditError
from ..orchestration.attack_inputs import attack_config
from ..orchestration.attack_runs import attack

__all__ = ["BelowPaperBudgetWarning", "attack", "attack_config", "list_attacks"]


def list_attacks() -> list[dict[str, Any]]:
    """Registered attacks with their tiers and paper budgets (imports each attack's module, not torch)."""
    rows = []
    for attack_name in registry.names("attack"):
        try:
            cls = registry.load("attack", attack_name)
        except TrceAuditError as exc:
            rows.append({"name": attack_name, "error": str(exc)})
            continue
        rows.append(
            {
                "name": attack_name,
                "version": cls.version,
                "tier": check_tier(cls),
                "paper_budget": dict(cls.paper_budget),
                "needs_original": cls.needs_original,
                "replay": cls.is_replay,
                "defaults": cls.Config().as_dict(),
            }
        )
    return rows

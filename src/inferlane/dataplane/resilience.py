"""Retry budgets, cooldowns and header sessions of each route rule, kept across requests and
config reloads.

A rule's state is rebuilt only when its failure policy changes; a reload that leaves the policy
alone keeps what the breakers have learned.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferlane.routing.affinity import AffinityTable
from inferlane.routing.cooldown import Cooldowns
from inferlane.routing.resilience import FailurePolicy
from inferlane.routing.retry_budget import RetryBudget
from inferlane.routing.rules import CompiledRule


@dataclass(slots=True)
class RuleResilience:
    policy: FailurePolicy
    budget: RetryBudget
    cooldowns: Cooldowns | None
    sessions: AffinityTable | None = None  # sessionPersistence type Header


class ResilienceState:
    __slots__ = ("_rules",)

    def __init__(self) -> None:
        self._rules: dict[tuple[str, int], RuleResilience] = {}

    def for_rule(self, rule: CompiledRule) -> RuleResilience:
        key = (rule.route, rule.rule_index)
        found = self._rules.get(key)
        if found is not None and (found.policy is rule.failure or found.policy == rule.failure):
            if (found.sessions is not None) != (rule.sticky_header is not None):
                found.sessions = AffinityTable() if rule.sticky_header is not None else None
            return found
        policy = rule.failure
        retry = policy.retry
        found = RuleResilience(
            policy=policy,
            budget=RetryBudget(percent=retry.budget_percent, min_retries=retry.budget_min),
            cooldowns=Cooldowns(policy.cooldown) if policy.cooldown is not None else None,
            sessions=AffinityTable() if rule.sticky_header is not None else None,
        )
        self._rules[key] = found
        return found

    def retain(self, rules: set[tuple[str, int]]) -> None:
        """Forget rules a reload removed."""
        for key in [k for k in self._rules if k not in rules]:
            del self._rules[key]

    def snapshot(self, now: float) -> dict[str, dict[str, dict[str, object]]]:
        """Breakers that are not plainly closed, by rule (for ``/admin/backends``)."""
        view: dict[str, dict[str, dict[str, object]]] = {}
        for (route, index), rule in self._rules.items():
            if rule.cooldowns is not None:
                breakers = rule.cooldowns.snapshot(now)
                if breakers:
                    view[f"{route}#{index}"] = breakers
        return view

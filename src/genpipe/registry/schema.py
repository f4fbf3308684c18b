"""The registry's files between stages, as the pydantic models their writer and every reader
share: data/registry/champions.json (`Champions`, the champions stage's snapshot of the MLflow
registry) and data/register/decision.json (`Decision`, the decide stage). docs/ARCHITECTURE.md
shows both."""

from __future__ import annotations

from typing import Any, Literal

from genpipe.evaluation.schema import Incumbent, Record, Task


class ChampionVersion(Record):
    """The registered version holding `champion`, as its tags describe it."""

    version: str
    candidate_id: str | None
    family: str | None
    method: str | None
    weights_hash: str | None
    registered_by: str | None
    source: str  # where its files are (the version's source URI)


class ModelSnapshot(Record):
    model_name: str
    champion: ChampionVersion | None
    rolled_back: list[str]  # candidate ids `genpipe registry rollback` moved away from


class Champions(Record):
    """data/registry/champions.json: what the registry holds, as evaluate and decide need it."""

    store: str | None  # the store's identity (when its Default experiment was created): a
    # wiped or new store is a change even when it holds nothing
    tasks: dict[Task, ModelSnapshot]


class Candidate(Record):
    family: str  # vae | gan
    value: float
    ci: tuple[float, float] | None
    method: str | None = None  # restoration: the candidate's best method


class Verdict(Record):
    """VAE against GAN on one task."""

    task: Task
    metric: str
    higher_is_better: bool
    winner: Candidate
    runner_up: Candidate
    margin: float  # how much better the winner is, in metric units (>= 0)
    relative_margin: float  # margin / |runner-up value|
    tie: bool  # the two CIs overlap: the point estimate decided
    reason: str


class Challenger(Candidate):
    candidate_id: str  # task + weights + serving settings
    weights_hash: str
    checkpoint: str
    settings: dict[str, Any]  # what serving needs besides the weights
    train_run_id: str | None


class TaskDecision(Record):
    model_name: str
    metric: str
    verdict: Verdict
    challenger: Challenger
    incumbent: Incumbent | None  # the champion this decision was made against
    champion: Literal["challenger", "incumbent"]  # who should hold `champion`
    reason: str
    tie_rule: str  # the rule that applied to this task
    seed_spread: float | None

    @property
    def champion_candidate(self) -> str:
        """The candidate id that should hold `champion`."""
        if self.champion == "incumbent":
            assert self.incumbent is not None
            return self.incumbent.candidate_id
        return self.challenger.candidate_id


class Decision(Record):
    """data/register/decision.json: per task the verdict and who should hold `champion`."""

    decision_id: str
    dataset: str
    protocol_hash: str
    data_hash: str
    tie_rule: str  # as configured; each task says which rule applied
    seed_spread: dict[str, Any]
    tasks: dict[Task, TaskDecision]

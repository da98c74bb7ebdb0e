"""What a training run records: one ``EpochResult`` per epoch, one ``History`` per backend.

Times are split into the phases of a step (``PHASES``) and into the time inside the backend's
matrix products ("matmul", from ``krypton.backends.matmul_clock``) and the rest.
``format_epoch`` is how one epoch reads in the log; the summary table is ``krypton.train.report``.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

PHASES = ("data", "forward", "backward", "step")
"""The parts of a training step that are timed: fetching the batch, forward pass and loss,
zeroing the gradients and backward pass, optimizer step."""


@dataclass
class EpochResult:
    """One epoch of one backend: its time, where the time went, its loss and accuracy.

    Times are for the whole epoch: when only ``batches`` of its ``batches_per_epoch`` batches
    ran (``extrapolated``), they are the measured times scaled by ``batches_per_epoch /
    batches``; ``measured_seconds`` keeps what the clock said.
    """

    epoch: int
    seconds: float
    matmul_seconds: float | None
    phase_seconds: dict[str, float]
    train_loss: float
    test_accuracy: float | None
    batches: int
    batches_per_epoch: int
    measured_seconds: float

    @property
    def extrapolated(self) -> bool:
        return self.batches < self.batches_per_epoch

    @property
    def other_seconds(self) -> float | None:
        return None if self.matmul_seconds is None else self.seconds - self.matmul_seconds

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "extrapolated": self.extrapolated,
                "other_seconds": self.other_seconds}


@dataclass
class History:
    """Everything one backend's training run measured, epoch by epoch."""

    backend: str
    threads: int
    dataset: str
    settings: dict[str, Any]
    epochs: list[EpochResult] = field(default_factory=list)
    batch_losses: list[float] = field(default_factory=list)
    interrupted: bool = False

    @property
    def epoch_seconds(self) -> float:
        """The median epoch time (the first epoch pays for warm-up effects the others do not)."""
        return _median([e.seconds for e in self.epochs])

    @property
    def epoch_range(self) -> tuple[float, float]:
        """The shortest and the longest epoch time: how far apart the epochs' times were."""
        times = [e.seconds for e in self.epochs]
        return (min(times), max(times)) if times else (float("nan"), float("nan"))

    @property
    def matmul_seconds(self) -> float | None:
        values = [e.matmul_seconds for e in self.epochs]
        return None if not values or None in values else _median(values)

    @property
    def matmul_share(self) -> float | None:
        if not self.epochs or self.epochs[0].matmul_seconds is None:
            return None
        return (sum(e.matmul_seconds for e in self.epochs)
                / max(sum(e.seconds for e in self.epochs), 1e-12))

    @property
    def extrapolated(self) -> bool:
        return any(e.extrapolated for e in self.epochs)

    @property
    def test_accuracy(self) -> float | None:
        measured = [e.test_accuracy for e in self.epochs if e.test_accuracy is not None]
        return measured[-1] if measured else None

    @property
    def train_loss(self) -> float:
        return self.epochs[-1].train_loss if self.epochs else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "threads": self.threads, "dataset": self.dataset,
            "settings": self.settings, "interrupted": self.interrupted,
            "epoch_seconds": self.epoch_seconds, "matmul_seconds": self.matmul_seconds,
            "matmul_share": self.matmul_share, "extrapolated": self.extrapolated,
            "test_accuracy": self.test_accuracy, "train_loss": self.train_loss,
            "epochs": [e.to_dict() for e in self.epochs], "batch_losses": self.batch_losses,
        }


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def format_epoch(history: History, result: EpochResult) -> str:
    """One line for one epoch: time, matmul share, loss, accuracy."""
    epochs = history.settings.get("epochs", "?")
    mark = "*" if result.extrapolated else " "
    split = ""
    if result.matmul_seconds is not None:
        split = f" (matmul {result.matmul_seconds:.2f} s, other {result.other_seconds:.2f} s)"
    accuracy = ("test accuracy not measured" if result.test_accuracy is None
                else f"test accuracy {100 * result.test_accuracy:.2f}%")
    note = (f"  [*{result.batches} of {result.batches_per_epoch} batches, time extrapolated]"
            if result.extrapolated else "")
    return (f"{history.backend:>9} epoch {result.epoch}/{epochs}: {result.seconds:7.2f} s{mark}"
            f"{split}  train loss {result.train_loss:.4f}  {accuracy}{note}")

"""A coordinator session's state, its stages, and the base of every protocol.

Every protocol (:mod:`.statistic`, :mod:`.prediction`) is a :class:`Protocol`: a class with
one method per stage, run by :meth:`parties.coordinator.core.Coordinator.execute` in the order
the class declares (``stages``).  All a run knows lives in one :class:`SessionState`, which
records every stage it enters and refuses a transition the table :data:`TRANSITIONS` does not
allow -- a protocol cannot release before it awaited, nor run what it did not prepare::

    PREPARE -> RUN -> AWAIT -> RELEASE -> DONE
                         \\------------->  DONE
    any stage -> FAILED   (Abort on every node that may hold the session)

The model is Flower's SecAgg+ workflow: state in one dataclass, stages as named methods.
"""

from __future__ import annotations

import enum
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from parties.errors import NodeBlamed
from parties.transport.control import SessionRole
from parties.transport.sessions import Session

__all__ = ["TRANSITIONS", "Protocol", "SessionState", "Stage", "StageError"]

log = logging.getLogger("smpc.coordinator")


class Stage(enum.Enum):
    """The stages of a coordinator session."""

    NEW = "new"
    PREPARE = "prepare"
    RUN = "run"
    AWAIT = "await"
    RELEASE = "release"
    DONE = "done"
    FAILED = "failed"


#: The allowed transitions; anything else is a :class:`StageError`.
TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.NEW: frozenset({Stage.PREPARE, Stage.FAILED}),
    Stage.PREPARE: frozenset({Stage.RUN, Stage.FAILED}),
    Stage.RUN: frozenset({Stage.AWAIT, Stage.FAILED}),
    Stage.AWAIT: frozenset({Stage.RELEASE, Stage.DONE, Stage.FAILED}),
    Stage.RELEASE: frozenset({Stage.DONE, Stage.FAILED}),
    Stage.DONE: frozenset(),
    Stage.FAILED: frozenset(),
}


class StageError(RuntimeError):
    """A protocol asked for a transition the stage table does not allow (a bug, never data)."""


@dataclass
class SessionState:
    """Everything the coordinator knows about one run of a protocol.

    ``members``: the nodes of the parties' sessions and their session roles; ``controlled``:
    the party nodes driven with Prepare / Run / Await / Abort; ``dealer_node``: a separate
    dealer node, if any; ``local``: the coordinator's own session (when it has a role).
    """

    id: str
    protocol: str                      # stat-ss | stat-ckks | predict-ss | predict-ckks
    analyst: str
    deadline: float                    # time.monotonic()
    members: dict[str, SessionRole]
    controlled: list[str]
    stage: Stage = Stage.NEW
    prepared: list[str] = field(default_factory=list)
    dealer_node: str | None = None
    local: Session | None = None
    failure: NodeBlamed | None = None
    result: Any = None
    history: list[tuple[str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)

    def enter(self, stage: Stage) -> None:
        """Move to ``stage``; a transition the table does not allow is a :class:`StageError`."""
        if stage not in TRANSITIONS[self.stage]:
            raise StageError(f"session {self.id} ({self.protocol}): {self.stage.value} -> "
                             f"{stage.value} is not an allowed transition")
        self.stage = stage
        self.history.append((stage.value, time.monotonic() - self.started))
        log.info("session %s (%s): %s", self.id, self.protocol, stage.value)

    @property
    def finished(self) -> bool:
        return self.stage in (Stage.DONE, Stage.FAILED)


#: The method of a :class:`Protocol` that runs each stage.
STAGE_METHODS: dict[Stage, str] = {
    Stage.PREPARE: "prepare", Stage.RUN: "run", Stage.AWAIT: "await_", Stage.RELEASE: "release",
}


class Protocol(ABC):
    """One coordinator protocol: its stages, in order, as methods over one :class:`SessionState`.

    Subclasses declare ``stages`` (a path through :data:`TRANSITIONS` ending before ``DONE``)
    and implement the method :data:`STAGE_METHODS` names for each; :meth:`result` is what the
    analyst receives once every stage succeeded.
    """

    name: ClassVar[str]
    stages: ClassVar[tuple[Stage, ...]]

    def __init__(self, state: SessionState) -> None:
        self.state = state

    def prepare(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        raise NotImplementedError

    def await_(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    @abstractmethod
    def result(self) -> Any:
        """The protocol's answer to the analyst (after the last stage)."""

"""docs/concepts.md draws the run state machine the code enforces, and names every state.

A newcomer reads the diagram, not model/states.py: if a transition is added to
RUN_TRANSITIONS (or a state to any of the enums) without the docs, this fails.
"""

from __future__ import annotations

import re
from pathlib import Path

from failback.model.states import INTERRUPTED, RUN_TRANSITIONS, RunStatus, StepStatus, UndoStatus

DOC = Path(__file__).resolve().parents[2] / "docs" / "concepts.md"


def _mermaid_edges(text: str) -> set[tuple[str, str]]:
    block = re.search(r"```mermaid\n(stateDiagram-v2\n.*?)```", text, re.S)
    assert block, "docs/concepts.md has no mermaid state diagram"
    edges = set()
    for line in block.group(1).splitlines():
        match = re.match(r"\s*(\S+)\s*-->\s*([^:\s]+)", line)
        if match and "[*]" not in match.groups():
            edges.add((match[1].replace("_", "-"), match[2].replace("_", "-")))
    return edges


def test_the_diagram_is_exactly_the_transition_table() -> None:
    drawn = _mermaid_edges(DOC.read_text())
    enforced = {(str(a), str(b)) for a, targets in RUN_TRANSITIONS.items() for b in targets}
    assert drawn - enforced == set(), "drawn but not allowed by RUN_TRANSITIONS"
    assert enforced - drawn == set(), "allowed by RUN_TRANSITIONS but not drawn"


def test_every_state_of_the_code_is_named_in_the_docs() -> None:
    text = DOC.read_text()
    states = [*RunStatus, *StepStatus, *UndoStatus, INTERRUPTED]
    missing = [str(s) for s in states if f"`{s}`" not in text]
    assert missing == []

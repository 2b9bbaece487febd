"""Which waiting sequence takes the next free batch slot: the waiting requests take turns.

Sequences arrive in groups: one group per client request (its prompts times ``n`` choices). First
come, first served would let a request of thousands of sequences hold every slot until its last
sequence had started, however small the requests behind it. Here each admission takes the next
sequence of the group at the head of the line, and that group then goes to the back of the line:
a request that arrives behind a large one waits for at most one sequence of each group ahead of it,
so it starts within a few decode steps. Within a group, sequences keep the order they were added.

Sequences without a group (``None``: batch generation, ``lima chat``) share one group, so they
are admitted in the order they were added, as before.

>>> q = FairQueue()
>>> for name in ("a1", "a2", "a3"):
...     q.push(name, "A")
>>> q.push("b1", "B")
>>> [q.pop() for _ in range(4)]
['a1', 'b1', 'a2', 'a3']
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Round robin over groups of items, first in first out inside a group. Not thread-safe: the
    engine holds its lock around every call."""

    def __init__(self) -> None:
        # Insertion-ordered: the first key is the group whose turn it is.
        self.line: dict[object, deque[T]] = {}
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def push(self, item: T, group: object = None) -> None:
        """Add ``item`` at the end of its group (a new group joins the end of the line)."""
        self.line.setdefault(group, deque()).append(item)
        self.size += 1

    def pop(self) -> T | None:
        """The next item of the group at the head of the line (that group then goes to the
        back); None when nothing waits."""
        if not self.line:
            return None
        group = next(iter(self.line))
        items = self.line.pop(group)
        item = items.popleft()
        if items:
            self.line[group] = items
        self.size -= 1
        return item

    def push_back(self, items: list[tuple[T, object]]) -> None:
        """Return taken ``(item, group)`` pairs to the head of the line, in the order given, as if
        they had never been taken."""
        front: dict[object, deque[T]] = {}
        for item, group in items:
            front.setdefault(group, deque()).append(item)
        for group, taken in front.items():
            taken.extend(self.line.pop(group, ()))
        self.line = {**front, **self.line}
        self.size += len(items)

    def drain(self) -> list[T]:
        """Every waiting item, in the order they would be admitted; the queue is then empty."""
        out = []
        while self.line:
            out.append(self.pop())
        return out

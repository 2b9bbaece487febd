"""Named crash points, so that resume-after-a-kill is tested at a known place, not by a race.

Long stages call :func:`crash_point` with a name right after they made some work durable (a
checkpoint renamed into place, a line of answers flushed). When the environment variable
``LIMAKIT_CRASH_AT`` names that point, the process kills itself with SIGKILL there, exactly as an
out-of-memory kill or a pre-empted node would. Unset (always, outside tests) it costs one lookup.

>>> crash_point("train:checkpoint:4")  # no-op unless LIMAKIT_CRASH_AT=train:checkpoint:4
"""

from __future__ import annotations

import os
import signal

ENV = "LIMAKIT_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)

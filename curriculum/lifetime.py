"""A child process that must not outlive its parent: a watcher thread that exits once the parent is gone.

Why: a parent killed with SIGKILL cannot stop its children, and an orphan keeps working (a verification
worker stuck in sympy, a study worker still training beside the rerun's). The kernel re-parents an orphan,
so the child sees `os.getppid()` change and exits.
"""

from __future__ import annotations

import os
import threading
import time


def exit_when_parent_changes(parent_pid: int, *, poll_s: float, code: int) -> None:
    """Start a daemon thread that ends this process with `os._exit(code)` once its parent is no longer
    `parent_pid` (checked every `poll_s` seconds)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(code)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()

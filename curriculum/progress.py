"""A progress bar fed with a running count: the shape of every `on_progress(done)` callback in the library.

The library reports progress as counts (problems evaluated so far) and never draws; whoever runs it (the CLI,
a study's worker process) chooses the bar. A count that goes backwards starts a new bar (the next benchmark).
"""

from __future__ import annotations


class CountingBar:
    """`bar(done)` moves a tqdm bar to `done`; `bar.close()` ends it (call before printing other lines)."""

    def __init__(self, desc: str = "eval", *, mininterval: float = 0.1) -> None:
        self.desc, self.mininterval, self.bar = desc, mininterval, None

    def __call__(self, done: int) -> None:
        from tqdm.auto import tqdm

        if self.bar is None or done < self.bar.n:
            self.close()
            self.bar = tqdm(desc=self.desc, unit="problem", dynamic_ncols=True, leave=False,
                            mininterval=self.mininterval)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

"""A progress bar fed with a running count: the shape of every `on_progress(done)` callback in the library.

The library reports progress as counts (problems evaluated so far) and never draws; whoever runs it (the CLI,
a study's worker process) chooses the bar. `begin(name, total)`, given as an evaluation's `on_benchmark`,
starts a bar with a total (so it shows an ETA); a count that goes backwards also starts a new bar.
"""

from __future__ import annotations


class CountingBar:
    """`bar(done)` moves a tqdm bar to `done`; `bar.close()` ends it (call before printing other lines)."""

    def __init__(self, desc: str = "eval", *, mininterval: float = 0.1) -> None:
        self.desc, self.mininterval, self.bar = desc, mininterval, None
        self.label, self.total = desc, None

    def begin(self, name: str, total: int) -> None:
        """The next counts belong to `name`, which has `total` items."""
        self.close()
        self.label, self.total = f"{self.desc} {name}", total

    def __call__(self, done: int) -> None:
        from tqdm.auto import tqdm

        if self.bar is None or done < self.bar.n:
            self.close()
            self.bar = tqdm(desc=self.label, total=self.total, unit="problem", dynamic_ncols=True, leave=False,
                            mininterval=self.mininterval)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            self.label, self.total = self.desc, None

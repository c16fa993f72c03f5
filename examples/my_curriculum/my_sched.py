"""`FirstTwo`: levels 1 and 2 only, then level 3 once the model agrees with itself on level 2.

The idea under test: votes on level 3 teach little while the model is not yet consistent on level 2, so hold
it on the two easiest levels until its own agreement there is high. No label is read: a schedule hears only
each group's label-free statistics (`curricula.stats.EpisodeStats`). Use it as
`curriculum.schedule=my_sched:FirstTwo` with this folder on PYTHONPATH (README.md here).
"""

from curricula import Schedule


class FirstTwo(Schedule):
    """Levels 1-2 evenly; level 3 alone once the mean agreement of the last `window` level-2 groups reaches
    `threshold` (the default 0.75 is 6 of 8 agreeing, where tiny-world majorities were mostly right)."""

    name = "first_two"

    def __init__(self, levels=None, window=16, threshold=0.75):
        super().__init__(levels)
        self.window, self.threshold = int(window), float(threshold)
        if self.window < 1 or not 0.0 <= self.threshold <= 1.0:  # `cuma train` reports this as one line
            raise ValueError(f"FirstTwo: window must be >= 1 and threshold in [0, 1], got {window!r} and {threshold!r}")
        self.recent, self.moved = [], False  # agreement of the last `window` level-2 groups; on level 3 yet?

    def level_weights(self):
        first, second, third = self.levels[:3]
        chosen = (third,) if self.moved else (first, second)
        return {lv: 1.0 / len(chosen) if lv in chosen else 0.0 for lv in self.levels}

    def _update(self, stats):
        if self.moved or stats.level != self.levels[1]:
            return
        self.recent = [*self.recent, stats.agreement][-self.window:]
        self.moved = len(self.recent) == self.window and sum(self.recent) / self.window >= self.threshold

    def _summary(self):  # shown in the run's logs next to the level
        return {"moved": self.moved, "level2_agreement": round(sum(self.recent) / max(1, len(self.recent)), 4)}

    def config(self):  # the kwargs that rebuild it (a resumed run does)
        return {"window": self.window, "threshold": self.threshold, **self._levels_config()}

    def _state(self):  # plain JSON, saved in every checkpoint by state_dict()
        return {"recent": self.recent, "moved": self.moved}

    def _load(self, state):  # load_state_dict() calls it with what _state() returned
        self.recent, self.moved = [float(a) for a in state["recent"]], bool(state["moved"])

"""Training throughput in tokens per second, logged beside the loss by ``prefalign train``."""

from __future__ import annotations

import time

from transformers import TrainerCallback


class Throughput(TrainerCallback):
    """Adds ``tokens_per_second`` to every training log and keeps a whole-run figure.

    Tokens are the non-padding input tokens the Trainer counts (``num_input_tokens_seen``, summed
    over processes); time is the wall time of the optimizer steps themselves (forward, backward,
    optimizer, from ``on_step_begin`` to ``on_step_end``), so evaluation, checkpoint saving and
    batch loading between steps do not count. Each log reports the steps since the previous log.
    The Trainer's own ``train_tokens_per_second`` divides by the time since training began,
    evaluation included.
    """

    def __init__(self) -> None:
        self.seconds = 0.0  # step time, whole run
        self.tokens = 0  # tokens, whole run
        self._t0: float | None = None
        self._tokens_at_start: int | None = None
        self._since_log = 0.0
        self._tokens_at_log = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._tokens_at_start = self._tokens_at_log = state.num_input_tokens_seen  # resumed runs start above 0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._t0 is not None:
            elapsed = time.perf_counter() - self._t0
            self.seconds += elapsed
            self._since_log += elapsed
            self._t0 = None
        self.tokens = state.num_input_tokens_seen - (self._tokens_at_start or 0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs or self._since_log <= 0:
            return
        rate = round((state.num_input_tokens_seen - self._tokens_at_log) / self._since_log, 1)
        logs["tokens_per_second"] = rate  # seen by callbacks after this one (the progress bar)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1]["tokens_per_second"] = rate  # the Trainer appended this log just before
        self._since_log, self._tokens_at_log = 0.0, state.num_input_tokens_seen

    def overall(self) -> float | None:
        """Tokens per second of step time over the whole run (None before any step)."""
        return round(self.tokens / self.seconds, 1) if self.seconds > 0 and self.tokens > 0 else None

"""What a training run writes to TensorBoard besides SB3's own ``rollout/*`` and ``train/*``.

- ``eval/*`` scalars at every validation, each with a description (TensorBoard shows it beside
  the chart). Tags that would be constant lines are not written: the threshold rule's own
  tokens/s (the validation episodes never change; it is in the run config text), ``mean_tlp``
  where TLP is given rather than chosen, ``missed_target_share`` outside latency-target runs.
- ``run/config``: the resolved run config (JSON) as text, at step 0.
- HParams: the algorithm, env, objective, seed and hyperparameters, with the final and best
  validation ``score_vs_threshold`` and the final ``gap_to_oracle`` as metrics (HPARAMS tab).

Smoothing should be off for ``eval/*``: there are only a handful of points per run.
"""

from __future__ import annotations

import json
from typing import Any

DESCRIPTIONS = {
    "score_vs_threshold": "Agent's episode score / PAPI threshold rule's score, paired per validation episode, "
                          "mean over episodes. The score is the objective per token, higher is better (tokens/s, "
                          "tokens/J, tokens^2/(s J) or penalised tokens/s). Above 1: the agent beats PAPI's rule.",
    "speedup_vs_threshold": "Latency runs only: agent's tokens/s / the threshold rule's tokens/s (paired, mean).",
    "gap_to_oracle": "1 - agent's score / the greedy oracle's score (hidden state, cost model), mean over the "
                     "validation episodes. 0: as good as the oracle.",
    "tokens_per_s": "Agent's decoding throughput, tokens/s, mean over the validation episodes.",
    "joules_per_token": "Agent's decoding energy, J per token, mean over the validation episodes.",
    "gpu_share": "Share of FC work the agent put on the GPUs (0: all on FC-PIM), mean over iterations and episodes.",
    "mean_tlp": "Mean speculation length the agent chose (spec variant).",
    "missed_target_share": "Share of iterations whose per-token latency missed the target (latency-target runs).",
}


def _writer(logger: Any) -> Any | None:
    from stable_baselines3.common.logger import TensorBoardOutputFormat

    for fmt in getattr(logger, "output_formats", []):
        if isinstance(fmt, TensorBoardOutputFormat):
            return fmt.writer
    return None


def tags_for(objective: str, varies_tlp: bool) -> list[str]:
    tags = ["score_vs_threshold", "gap_to_oracle", "tokens_per_s", "joules_per_token", "gpu_share"]
    if objective == "latency":
        tags.insert(1, "speedup_vs_threshold")
    if varies_tlp:
        tags.append("mean_tlp")
    if objective == "latency_target":
        tags.append("missed_target_share")
    return tags


class RunBoard:
    """Writes the eval scalars (with descriptions), the config text and the hparams of a run."""

    def __init__(self, logger: Any) -> None:
        self.writer = _writer(logger)
        self.described: set[str] = set()

    def _file_writer(self) -> Any:
        """The SummaryWriter's event-file writer (torch's public ``file_writer`` attribute, set when
        the writer opens), for summaries that SummaryWriter's add_* methods cannot write: scalars
        with descriptions, and hparams in the run's own directory (``add_hparams`` makes another)."""
        fw = self.writer.file_writer
        if fw is None:
            raise RuntimeError("the run's TensorBoard writer is closed; write eval summaries before the logger closes")
        return fw

    def scalars(self, entry: dict[str, float], step: int, objective: str, varies_tlp: bool) -> None:
        if self.writer is None:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
        from tensorboard.compat.proto.types_pb2 import DT_FLOAT
        from tensorboard.plugins.scalar.metadata import create_summary_metadata

        values = []
        for key in tags_for(objective, varies_tlp):
            tag = f"eval/{key}"
            # a scalar tensor with the scalars plugin's metadata (what tf.summary.scalar writes): the
            # default (fast) loader keeps its description, where a simple_value's is dropped
            tensor = TensorProto(dtype=DT_FLOAT, tensor_shape=TensorShapeProto(), float_val=[float(entry[key])])
            value = Summary.Value(tag=tag, tensor=tensor)
            if tag not in self.described:  # TensorBoard reads the metadata from a tag's first event
                value.metadata.CopyFrom(create_summary_metadata(display_name=key, description=DESCRIPTIONS[key]))
                self.described.add(tag)
            values.append(value)
        self._file_writer().add_summary(Summary(value=values), step)
        self.writer.flush()

    def config(self, record: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.add_text("run/config", "```json\n" + json.dumps(record, indent=2, default=str) + "\n```", 0)
            self.writer.flush()

    def hparams(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams

        clean = {k: (v if isinstance(v, (int, float, str, bool)) else json.dumps(v, default=str))
                 for k, v in params.items()}
        exp, ssi, sei = hparams(clean, metrics)
        fw = self._file_writer()
        for summary in (exp, ssi, sei):
            fw.add_summary(summary)
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, 0)
        self.writer.flush()

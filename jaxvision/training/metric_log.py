"""``metrics.jsonl`` and TensorBoard events of a run, each (step, metric) recorded once.

A resumed run repeats the steps after its checkpoint, and a finished run asked again re-reports
its final metrics; a plot of either log must still show one value per step. So when a run resumes
from step ``k``:

- rows of ``metrics.jsonl`` after step ``k`` (work that is being redone) are dropped, and a value
  already recorded for a (step, metric) is not written again;
- TensorBoard events, which cannot be edited, are rewritten from the kept ``metrics.jsonl`` rows
  (the JSONL file is the record; the events are its view).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time

import numpy as np

log = logging.getLogger("jaxvision.train")


def read_rows(path: str) -> list[dict]:
    """The JSON rows of a metrics.jsonl file (a torn last line, from a killed run, is dropped)."""
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


class MetricWriter:
    """metrics.jsonl + TensorBoard on process 0; a no-op elsewhere.

    ``resume_step``: the step the run restarts from (0 for a new run); later rows are dropped.
    """

    def __init__(self, workdir: str, enabled: bool, *, resume_step: int = 0):
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        path = os.path.join(workdir, "metrics.jsonl")
        kept = [r for r in read_rows(path) if int(r.get("step", 0)) <= resume_step]
        self._seen = {(int(r["step"]), k) for r in kept for k in r if k != "step"}
        with open(path + ".tmp", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        os.replace(path + ".tmp", path)
        self._jsonl = open(path, "a")  # noqa: SIM115 - closed in close()
        self._open_tensorboard(os.path.join(workdir, "tensorboard"), kept)

    def _open_tensorboard(self, tb_dir: str, kept: list[dict]) -> None:
        try:
            self._tb = _EventFile(tb_dir)
        except Exception as e:  # noqa: BLE001 - TensorBoard is optional, the JSONL log is not
            log.warning("TensorBoard events disabled: %s", e)
            return
        for row in kept:
            self._tb.write(int(row["step"]), {k: v for k, v in row.items() if k != "step"})

    def write(self, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        step = int(step)
        scalars = {k: float(v) for k, v in scalars.items() if (step, k) not in self._seen}
        if not scalars:
            return
        self._seen.update((step, k) for k in scalars)
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            self._tb.write(step, scalars)

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            if self._tb is not None:
                self._tb.close()


class _EventFile:
    """TensorBoard scalars (the 'scalars' plugin's float32 tensors, as ``tf.summary.scalar``
    writes them) in a fresh event file of the run's (local) folder, written with TensorBoard's
    own protos and record writer: no TensorFlow (3-5 CPU seconds that a run on a bundled dataset
    need not pay)."""

    def __init__(self, tb_dir: str):
        import socket

        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.scalar import metadata
        from tensorboard.summary.writer.record_writer import RecordWriter
        from tensorboard.util import tensor_util

        self._event, self._summary = event_pb2.Event, summary_pb2.Summary
        self._metadata, self._tensor = metadata.create_summary_metadata, tensor_util.make_tensor_proto
        shutil.rmtree(tb_dir, ignore_errors=True)
        os.makedirs(tb_dir, exist_ok=True)
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}.v2"
        self._file = open(os.path.join(tb_dir, name), "wb")  # noqa: SIM115 - closed in close()
        self._records = RecordWriter(self._file)
        self._put(self._event(wall_time=time.time(), file_version="brain.Event:2"))

    def _put(self, event) -> None:
        self._records.write(event.SerializeToString())

    def write(self, step: int, scalars: dict) -> None:
        values = [self._summary.Value(tag=k, tensor=self._tensor(np.float32(v)),
                                      metadata=self._metadata(display_name=k, description=""))
                  for k, v in scalars.items()]
        self._put(self._event(wall_time=time.time(), step=step,
                              summary=self._summary(value=values)))
        self._records.flush()

    def close(self) -> None:
        self._records.close()

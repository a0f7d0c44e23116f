"""config.pruning prunes gradually inside the training loop, to exactly the target sparsity."""

import numpy as np
import pytest
from flax import traverse_util

from jaxvision.config import base_config, lock
from jaxvision.training import checkpoints, loop


@pytest.mark.slow
def test_training_with_pruning_reaches_target_sparsity(tmp_path):
    c = base_config()
    c.model.name = "lenet5"
    c.data.name = "digits"
    c.data.data_dir = str(tmp_path / "tfds")
    c.data.image_size = 32
    c.data.channels = 1
    c.data.flip = False
    c.batch_size = 32
    c.total_steps = 24
    c.eval_every_steps = 0
    c.checkpoint_every_steps = 0
    c.progress_bar = False
    c.optimizer.name = "adamw"
    c.schedule.base_lr = 3e-3
    c.pruning.target_sparsity = 0.75
    c.pruning.end_step = 12
    c.pruning.update_every = 4
    result = loop.train_and_evaluate(lock(c), str(tmp_path / "run"))
    assert np.isfinite(result["train/loss"])
    run = checkpoints.load_run(str(tmp_path / "run"))
    flat = traverse_util.flatten_dict(run.variables["params"], sep="/")
    kernels = [np.asarray(v) for k, v in flat.items() if k.endswith("kernel")]
    n = sum(k.size for k in kernels)
    zeros = sum(int((k == 0).sum()) for k in kernels)
    # one global mask over all conv/dense kernels: exactly round(0.75 * n) weights are zero
    assert zeros == round(0.75 * n)
    biases = [np.asarray(v) for k, v in flat.items() if k.endswith("bias")]
    assert all((b != 0).any() for b in biases)  # biases are never pruned

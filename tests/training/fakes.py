"""Test-only helpers: a synthetic dataset honouring the data contract, and tiny models.

The synthetic data follows TEAM.md's ``data.build`` contract (per-process rows of each global batch,
pure function of (seed, step), finite padded eval passes) so training tests do not depend on disk.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision import models

NUM_CLASSES = 4
SHAPE = (32, 32, 1)


@dataclasses.dataclass
class Info:
    num_classes: int
    class_names: list
    num_examples: int
    image_shape: tuple


def _examples(rng: np.random.Generator, n: int, num_classes: int, shape):
    """Class k = a bright k-th horizontal band plus noise: learnable by a tiny CNN."""
    labels = rng.integers(0, num_classes, n).astype(np.int32)
    images = rng.normal(0.0, 0.5, (n, *shape)).astype(np.float32)
    band = shape[0] // num_classes
    for i, y in enumerate(labels):
        images[i, y * band:(y + 1) * band] += 1.5
    return images, labels


class Pipeline:
    def __init__(self, split, global_batch_size, train, seed, start_step, process_index,
                 process_count, num_classes, shape, num_examples):
        if global_batch_size % process_count:
            raise ValueError("global batch not divisible by process count")
        self.split, self.b, self.train = split, global_batch_size, train
        self.seed, self.start, self.p, self.P = seed, start_step, process_index, process_count
        self.k, self.shape = num_classes, shape
        self.info = Info(num_classes, [f"c{i}" for i in range(num_classes)], num_examples, shape)

    def _rows(self, arr):
        n = arr.shape[0] // self.P
        return arr[self.p * n:(self.p + 1) * n]

    def __len__(self):
        return -(-self.info.num_examples // self.b)

    def __iter__(self):
        if self.train:
            step = self.start
            while True:
                rng = np.random.default_rng([self.seed, step])
                x, y = _examples(rng, self.b, self.k, self.shape)
                yield {"image": self._rows(x), "label": self._rows(y),
                       "mask": self._rows(np.ones(self.b, bool))}
                step += 1
        else:
            x, y = _examples(np.random.default_rng([12345]), self.info.num_examples, self.k,
                             self.shape)
            for i in range(len(self)):
                xb, yb = x[i * self.b:(i + 1) * self.b], y[i * self.b:(i + 1) * self.b]
                pad = self.b - len(yb)
                mask = np.r_[np.ones(len(yb), bool), np.zeros(pad, bool)]
                xb = np.concatenate([xb, np.zeros((pad, *self.shape), np.float32)])
                yb = np.concatenate([yb, np.zeros(pad, np.int32)])
                yield {"image": self._rows(xb), "label": self._rows(yb), "mask": self._rows(mask)}


def make_build(num_classes=NUM_CLASSES, shape=SHAPE, num_train=512, num_eval=96):
    def build(config_data, split, *, global_batch_size, train, seed=0, start_step=0,
              process_index=None, process_count=None):
        pi = jax.process_index() if process_index is None else process_index
        pc = jax.process_count() if process_count is None else process_count
        return Pipeline(split, global_batch_size, train, seed, start_step, pi, pc, num_classes,
                        shape, num_train if train else num_eval)

    return build


class TinyBNNet(nn.Module):
    """conv(8) -> BatchNorm -> relu -> 4x4 avg pool -> dropout -> head: exercises batch_stats."""

    num_classes: int = 10
    dtype: object = jnp.float32
    param_dtype: object = jnp.float32
    bn_axis_name: str | None = None
    drop_rate: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(8, (3, 3), strides=2, use_bias=False,  # no bias before BN (as ResNets)
                    dtype=self.dtype, param_dtype=self.param_dtype)(x)
        x = nn.BatchNorm(use_running_average=not train, axis_name=self.bn_axis_name,
                         momentum=0.9, dtype=self.dtype, param_dtype=self.param_dtype)(x)
        x = nn.avg_pool(nn.relu(x), (4, 4), strides=(4, 4))
        x = x.reshape(x.shape[0], -1)
        x = nn.Dropout(self.drop_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name="head", dtype=self.dtype,
                        param_dtype=self.param_dtype)(x)


def register_tiny():
    if "test_tiny_bn" not in models.list_models():
        @models.register("test_tiny_bn", family="test", default_resolution=32, in_channels=1,
                         num_classes=NUM_CLASSES)
        def _tiny(num_classes, dtype, param_dtype, *, bn_axis_name=None, drop_rate=0.0):
            return TinyBNNet(num_classes=num_classes, dtype=dtype, param_dtype=param_dtype,
                             bn_axis_name=bn_axis_name, drop_rate=drop_rate)


# A tiny ViT for tests (vit_ti16 with tiny-width overrides; 32x32x1 inputs, 16 patches): its
# kernels are large enough (>= 4096 elements) for the default FSDP rule to shard them.
TINY_VIT = {"model.name": "vit_ti16", "model.hidden_size": 64, "model.num_layers": 1,
            "model.num_heads": 4, "model.mlp_dim": 128, "model.patch_size": 8,
            "model.image_size": 32}


def tiny_config(**overrides):
    from jaxvision.config import base_config

    c = base_config()
    c.model.name = "test_tiny_bn"
    c.batch_size = 32
    c.total_steps = 20
    c.optimizer.name = "sgd"
    c.schedule.name = "constant"
    c.schedule.base_lr = 0.1
    c.log_every_steps = 5
    c.eval_every_steps = 10
    c.checkpoint_every_steps = 10
    c.progress_bar = False
    with c.ignore_type():
        for k, v in overrides.items():
            node = c
            *path, last = k.split(".")
            for p in path:
                node = node[p]
            node[last] = v
    c.lock()
    return c


def jnp_tree_allclose(a, b, **kw):
    return all(np.allclose(np.asarray(x), np.asarray(y), **kw)
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

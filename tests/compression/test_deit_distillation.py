"""DeiT's hard distillation (compression.distillation): the loss against numpy, each head fed
its own targets, and configs/imagenet_deit_s_distilled.py trained with a teacher run on mocked
ImageNet (tiny overrides: 32 px, 2 steps, a 2-layer ViT teacher made in the test)."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax

from jaxvision import models
from jaxvision.compression import distillation
from jaxvision.training import checkpoints, loop
from tests.training import mock_train
from tests.training.test_recipes import load_recipe

TINY_VIT = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "mlp_dim": 64, "patch_size": 8,
            "image_size": 32}
CPU = ["--config.total_steps=2", "--config.batch_size=8", "--config.data.image_size=32",
       "--config.progress_bar=False", "--config.log_every_steps=1", "--config.dtype=float32"]


def _ce(logits, targets):  # targets (N, K) probabilities
    return -(targets * log_softmax(logits, axis=-1)).sum(-1)


def test_hard_distillation_loss_matches_numpy():
    rng = np.random.default_rng(0)
    cls, dist, teacher = (rng.normal(size=(6, 5)) * 3 for _ in range(3))
    y, eps = rng.integers(0, 5, 6), 0.1
    smoothed = np.eye(5)[y] * (1 - eps) + eps / 5
    want = 0.5 * _ce(cls, smoothed) + 0.5 * _ce(dist, np.eye(5)[teacher.argmax(-1)])
    got = distillation.hard_distillation_loss(jnp.asarray(cls), jnp.asarray(dist), jnp.asarray(y),
                                              jnp.asarray(teacher), label_smoothing=eps)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    mixed = rng.dirichlet(np.ones(5), 6)  # mixup/cutmix soft targets
    got = distillation.hard_distillation_loss(jnp.asarray(cls), jnp.asarray(dist), jnp.asarray(mixed),
                                              jnp.asarray(teacher), alpha=0.25)
    want = 0.75 * _ce(cls, mixed) + 0.25 * _ce(dist, np.eye(5)[teacher.argmax(-1)])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    with pytest.raises(ValueError, match="teacher has 4 classes, the student 5"):
        distillation.hard_distillation_loss(jnp.asarray(cls), jnp.asarray(dist), jnp.asarray(y),
                                            jnp.zeros((6, 4)))


def test_each_head_learns_its_own_targets():
    # The class head's gradient depends on the labels only, the distillation head's on the
    # teacher only (DeiT eq. 2), through the objective the training loop calls.
    model = models.create("deit_s_distilled", num_classes=5, **TINY_VIT)
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
    params = jax.jit(model.init)(jax.random.key(1), x)["params"]
    t1, t2 = jax.random.normal(jax.random.key(2), (2, 4, 5))
    y1, y2 = jnp.array([0, 1, 2, 3]), jnp.array([4, 4, 0, 0])

    @jax.jit  # one program for the three (teacher, labels) pairs
    def grads(teacher, labels):
        objective = distillation.hard_distillation_objective(lambda im: teacher)

        def loss(p):
            apply = functools.partial(model.apply, {"params": p}, train=True, mutable=["batch_stats"])
            return objective(apply, x, labels)[0].mean()

        return jax.grad(loss)(params)

    base, other_teacher, other_labels = grads(t1, y1), grads(t2, y1), grads(t1, y2)
    np.testing.assert_array_equal(base["head"]["kernel"], other_teacher["head"]["kernel"])
    np.testing.assert_array_equal(base["head_dist"]["kernel"], other_labels["head_dist"]["kernel"])
    assert not np.allclose(base["head_dist"]["kernel"], other_teacher["head_dist"]["kernel"])
    assert not np.allclose(base["head"]["kernel"], other_labels["head"]["kernel"])


def _tiny(config):
    with config.unlocked():
        config.model.update(TINY_VIT)
        config.model.scan_layers = False
    return config


@pytest.mark.slow
def test_recipe_trains_with_a_teacher_on_mock_data(tmp_path):
    teacher_wd, student_wd = str(tmp_path / "teacher"), str(tmp_path / "student")
    with mock_train.mocked_tfds():
        with pytest.raises(ValueError, match="teacher_workdir is required"):
            distillation.train_with_teacher(load_recipe("imagenet_deit_s_distilled", *CPU), student_wd)
        with pytest.raises(ValueError, match="config.distill asks for a teacher"):
            loop.train_and_evaluate(load_recipe("imagenet_deit_s_distilled", *CPU), student_wd)
        loop.train_and_evaluate(_tiny(load_recipe("imagenet_vit_s16", *CPU)), teacher_wd)
        c = _tiny(load_recipe("imagenet_deit_s_distilled", *CPU,
                              f"--config.distill.teacher_workdir={teacher_wd}"))
        res = distillation.train_with_teacher(c, student_wd)
    assert res["step"] == 2 and np.isfinite(res["train/loss"])
    run = checkpoints.load_run(student_wd)
    assert {"head", "head_dist"} <= set(run.variables["params"])
    saved = json.load(open(os.path.join(student_wd, "config.json")))
    assert saved["distill"]["teacher_workdir"] == teacher_wd and saved["distill"]["alpha"] == 0.5


def test_recipe_settings_are_deits():
    # DeiT Table 9 (DeiT-S) and sec. 5.2 (hard distillation, alpha 0.5); 81.2%: DeiT Table 5.
    c = load_recipe("imagenet_deit_s_distilled")
    assert (c.model.name, c.batch_size, c.epochs, c.model.drop_path_rate) == (
        "deit_s_distilled", 1024, 300, 0.1)
    assert (c.optimizer.name, c.optimizer.weight_decay, c.schedule.name) == ("adamw", 0.05, "cosine")
    assert (c.schedule.base_lr, c.schedule.lr_batch_reference, c.schedule.warmup_epochs) == (
        5e-4, 512, 5.0)
    assert (c.label_smoothing, c.data.randaugment_n, c.data.randaugment_m) == (0.1, 2, 9)
    assert (c.data.mixup_alpha, c.data.cutmix_alpha, c.data.image_size) == (0.8, 1.0, 224)
    assert (c.distill.type, c.distill.alpha, c.distill.teacher_workdir) == ("hard", 0.5, None)
    assert "dist/" in c.optimizer.no_decay_regex
    path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "imagenet_deit_s_distilled.py")
    assert "Published: 81.2% top-1" in " ".join(open(path).read().split())


def test_distill_hard_learns_the_teachers_decisions_not_the_labels():
    # compression.distill(kind='hard', alpha=1): a one-head student trained on batches whose
    # labels are scrambled can only reach the teacher's accuracy by learning its argmax.
    from jaxvision.compression import distill
    from tests.robustness import toy

    teacher = toy.trained_run()
    student_model = toy.TinyCNN()
    student_vars = student_model.init(jax.random.key(42), jnp.zeros((1, 16, 16, 1)))
    rng = np.random.default_rng(0)
    scrambled = [dict(b, label=rng.permutation(b["label"])) for b in toy.batches(512, seed=21)]
    _, report = distill(teacher.model, teacher.variables, student_model, student_vars, scrambled,
                        steps=60, learning_rate=1e-2, alpha=1.0, kind="hard",
                        eval_batches=toy.batches(256, seed=22))
    assert report["kind"] == "hard" and report["teacher_top1"] >= 0.95
    assert report["student_top1_after"] >= 0.9 > report["student_top1_before"]
    with pytest.raises(ValueError, match="kind must be"):
        distill(teacher.model, teacher.variables, student_model, student_vars, scrambled, steps=1,
                kind="medium")

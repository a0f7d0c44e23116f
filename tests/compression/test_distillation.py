import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax, softmax

from jaxvision.compression.distillation import distill, distillation_loss
from tests.robustness import toy


def test_distillation_loss_matches_numpy():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(6, 5)) * 3, rng.normal(size=(6, 5)) * 3
    y = rng.integers(0, 5, 6)
    T, a = 3.0, 0.7
    p_t = softmax(t / T, axis=-1)
    kl = (p_t * (np.log(p_t) - log_softmax(s / T, axis=-1))).sum(-1) * T**2
    ce = -log_softmax(s, axis=-1)[np.arange(6), y]
    want = (a * kl + (1 - a) * ce).mean()
    got = distillation_loss(jnp.asarray(s), jnp.asarray(t), jnp.asarray(y), temperature=T, alpha=a)
    assert float(got) == pytest.approx(want, rel=1e-5)
    assert float(
        distillation_loss(jnp.asarray(t), jnp.asarray(t), None, alpha=1.0)
    ) == pytest.approx(0, abs=1e-6)
    mask = np.array([1, 1, 0, 0, 1, 0], bool)
    got_m = distillation_loss(
        jnp.asarray(s),
        jnp.asarray(t),
        jnp.asarray(y),
        temperature=T,
        alpha=a,
        mask=jnp.asarray(mask),
    )
    assert float(got_m) == pytest.approx((a * kl + (1 - a) * ce)[mask].mean(), rel=1e-5)
    with pytest.raises(ValueError, match="labels"):
        distillation_loss(jnp.asarray(s), jnp.asarray(t), None, alpha=0.5)


def test_student_learns_from_teacher():
    teacher = toy.trained_run()
    student_model = toy.TinyCNN()
    student_vars = student_model.init(jax.random.key(42), jnp.zeros((1, 16, 16, 1)))
    train = toy.batches(512, seed=21)
    student, report = distill(
        teacher.model,
        teacher.variables,
        student_model,
        student_vars,
        train,
        steps=60,
        learning_rate=1e-2,
        temperature=2.0,
        alpha=0.9,
        eval_batches=toy.batches(256, seed=22),
    )
    assert report["teacher_top1"] >= 0.95
    assert report["losses"][1] < report["losses"][0]
    assert report["student_top1_after"] >= 0.9 > report["student_top1_before"]

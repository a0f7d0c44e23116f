"""A small CNN/Transformer hybrid on the bundled MNIST subset (mnist5k), trained on a CPU in minutes.

  python -m jaxvision.train --config configs/mnist5k_hybrid.py --workdir /tmp/jv_hybrid
  python -m jaxvision.evaluate --workdir /tmp/jv_hybrid --split test

Model ``hybrid_tiny_mnist`` (165k parameters): a weight-standardized 3x3/2 conv stem and one
ResNet basic block with GroupNorm (the zoo's ResNetStages) turn the 28x28 digit into a 14x14x32
map; 2x2 patches of it are 49 tokens (+ class token) for a 4-layer ViT of width 64. AdamW
(wd 0.05, none on biases, norms, position embeddings and the class token), 2-epoch warm-up then
cosine, label smoothing 0.1, drop path 0.1, random-pad crops (no flips: digits are not symmetric).

Expected: test top-1 95.6% +- 1.5 (points; checked by tests/cli/test_recipe_claims.py, which
runs the first command). Measured in issue 14 (2026-11-30) on the shared 2-core CPU at load
average ~25: 465 steps (15 epochs), 171 s user + 68 s system CPU (36 min wall, shared); test
top-1 95.6%, top-5 100%, NLL 0.242, ECE 0.101 (label smoothing leaves it under-confident);
validation top-1 94.4%. An earlier measurement (issue 16, other library versions) gave 94.8%:
the tolerance covers that spread. Next to it, the default job configs/mnist5k_lenet.py: test
top-1 97.6% (ECE 1.0%) in 496 steps.
A ViT-style model needs more data and epochs than LeNet on 4,000 digits; the hybrid's conv stem
is what lets it get this far this fast.
"""

from jaxvision.config import base_config, lock


def get_config(arg=None):
    del arg
    c = base_config()
    c.model.name = "hybrid_tiny_mnist"
    c.model.drop_path_rate = 0.1
    c.data.name = "mnist5k"
    c.data.image_size = 28
    c.data.channels = 1
    c.data.flip = False
    c.data.train_crop = "random_pad"
    c.batch_size = 128
    c.epochs = 15.0
    c.optimizer.name = "adamw"
    c.optimizer.weight_decay = 0.05
    # Biases (the attention's are (heads, head_dim)), norm scales, positions and the class token
    # are not decayed (DeiT / timm's no_weight_decay).
    c.optimizer.no_decay_regex = r"(bias|scale)$|pos_embed|cls/"
    c.schedule.name = "cosine"
    c.schedule.base_lr = 2e-3
    c.schedule.warmup_epochs = 2.0
    c.label_smoothing = 0.1
    c.log_every_steps = 50
    c.eval_every_steps = 155
    c.checkpoint_every_steps = 155
    return lock(c)

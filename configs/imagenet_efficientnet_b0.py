"""EfficientNet-B0 on ImageNet-1k with the official TPU recipe (tensorflow/tpu models/official/efficientnet).

  python -m jaxvision.train --config configs/imagenet_efficientnet_b0.py --workdir /tmp/jv_effb0

RMSProp (decay 0.9, momentum 0.9, epsilon 1e-3 inside the square root, mean square initialised to 1
as TF1), lr 0.016 x batch/256 with 5 warm-up epochs then x0.97 every 2.4 epochs (staircase), weight
decay 1e-5 (coupled L2 on every variable but BatchNorm's, biases included, as the official
``'batch_normalization' not in v.name`` filter), label smoothing 0.1, EMA of the
weights 0.9999 (evaluated and exported by load_run), dropout 0.2, drop-connect 0.2, BatchNorm
momentum 0.99 / epsilon 1e-3, batch 2048, 350 epochs, 224 px inception crop + flip, eval center crop
224/256, bfloat16 compute.

Result: not measured here (ImageNet cannot be downloaded in this environment). Published: 77.1%
top-1 with AutoAugment, 76.7% without (Tan & Le 2019 and the official README). jaxvision's data
pipeline has RandAugment but not AutoAugment, so this recipe reproduces the 76.7% setting
(set data.randaugment_n=2, data.randaugment_m=9 for the RandAugment variant).
"""

from jaxvision.config import base_config, lock


def get_config(arg=None):
    del arg
    c = base_config()
    c.model.name = "efficientnet_b0"
    c.model.drop_rate = 0.2
    c.model.drop_path_rate = 0.2
    c.model.bn_momentum = 0.99
    c.model.bn_epsilon = 1e-3
    c.data.name = "imagenet2012"
    c.data.download = False
    c.data.image_size = 224
    c.data.train_crop = "inception"
    c.data.flip = True
    c.data.eval_crop_fraction = 0.875
    c.data.eval_split = "validation"
    c.batch_size = 2048
    c.epochs = 350.0
    c.dtype = "bfloat16"
    c.optimizer.name = "rmsprop"
    c.optimizer.decay = 0.9
    c.optimizer.momentum = 0.9
    c.optimizer.eps = 1e-3
    c.optimizer.weight_decay = 1e-5
    # Official: L2 on all trainable variables except BatchNorm's (the SE and head biases are
    # decayed). jaxvision's EfficientNet names every BatchNorm '<block>/<conv>/norm'.
    c.optimizer.decay_norms_and_biases = True
    c.optimizer.no_decay_regex = r"(^|/)norm/"
    c.schedule.name = "exponential"
    c.schedule.base_lr = 0.016
    c.schedule.lr_batch_reference = 256
    c.schedule.warmup_epochs = 5.0
    c.schedule.decay_rate = 0.97
    c.schedule.decay_epochs = 2.4
    c.schedule.staircase = True
    c.ema_decay = 0.9999
    c.label_smoothing = 0.1
    c.log_every_steps = 100
    c.eval_every_steps = 626  # ~one epoch at batch 2048
    c.checkpoint_every_steps = 626
    return lock(c)

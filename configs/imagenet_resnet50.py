"""ResNet-50 on ImageNet-1k (TFDS 'imagenet2012'; the archive must be placed in data.data_dir by hand).

  python -m jaxvision.train --config configs/imagenet_resnet50.py --workdir /tmp/jv_imagenet_r50
  # 4 hosts: add --coordinator_address=host0:1234 --num_processes=4 --process_id=$I on each

The Goyal et al. (2017) / Flax ImageNet example recipe with the "bag of tricks" cosine decay and
label smoothing: SGD momentum 0.9, lr 0.1 x batch/256 (0.4 at batch 1024), 5 warm-up epochs (linear
from 0) then cosine to 0, weight decay 1e-4 (coupled L2, none on BatchNorm parameters and biases),
label smoothing 0.1, the last BatchNorm scale of every residual block initialised to 0 (Goyal et
al. section 5.1, the Flax example, "bag of tricks"), 90 epochs, inception crop 224 + flip, eval
resize 256 / center crop 224, bfloat16 compute with float32 parameters.

Result: not measured here (ImageNet cannot be downloaded in this environment). Published: 76.3%
top-1 (Goyal et al. 2017, step schedule), 77.0-77.2% with cosine + label smoothing (He et al. 2019,
"Bag of Tricks", Table 6), 76.1-76.5% for the Flax ImageNet example; expect ~76-77%.
"""

from jaxvision.config import base_config, lock


def get_config(arg=None):
    del arg
    c = base_config()
    c.model.name = "resnet50"
    c.model.zero_init_residual = True  # gamma = 0 in the last BN of each block (Goyal et al.)
    c.data.name = "imagenet2012"
    c.data.download = False
    c.data.image_size = 224
    c.data.train_crop = "inception"
    c.data.flip = True
    c.data.eval_crop_fraction = 0.875
    c.data.eval_split = "validation"
    c.batch_size = 1024
    c.epochs = 90.0
    c.dtype = "bfloat16"
    c.optimizer.name = "sgd"
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = False
    c.optimizer.weight_decay = 1e-4
    c.optimizer.decay_norms_and_biases = False
    c.schedule.name = "cosine"
    c.schedule.base_lr = 0.1
    c.schedule.lr_batch_reference = 256
    c.schedule.warmup_epochs = 5.0
    c.label_smoothing = 0.1
    c.log_every_steps = 100
    c.eval_every_steps = 1251  # ~one epoch at batch 1024
    c.checkpoint_every_steps = 1251
    return lock(c)

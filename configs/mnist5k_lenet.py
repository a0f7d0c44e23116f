"""The default job: LeNet-5 on the bundled MNIST subset (mnist5k).

  python -m jaxvision.train --config configs/mnist5k_lenet.py --workdir /tmp/jv_default

Measured: (filled in below after measurement).
"""

from jaxvision.config import base_config, lock


def get_config(arg=None):
    del arg
    c = base_config()
    c.model.name = "lenet5"
    c.data.name = "mnist5k"
    c.data.image_size = 32  # LeNet-5's 32x32 input (MNIST is 28x28)
    c.data.channels = 1
    c.data.flip = False  # mirrored digits are other digits
    c.batch_size = 128
    c.epochs = 30.0
    c.optimizer.name = "adamw"
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "cosine"
    c.schedule.base_lr = 3e-3
    c.schedule.warmup_steps = 50
    c.log_every_steps = 50
    c.eval_every_steps = 400
    c.checkpoint_every_steps = 400
    return lock(c)

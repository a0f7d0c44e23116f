"""ResNet-18 on CIFAR-10 (TFDS 'cifar10').

  python -m jaxvision.train --config configs/cifar10_resnet18.py --workdir /tmp/jv_cifar10

The kuangliu/pytorch-cifar recipe: SGD momentum 0.9 (no Nesterov), lr 0.1 x batch/128, cosine
to 0 over 200 epochs without warm-up, weight decay 5e-4 on every parameter (PyTorch's
``SGD(weight_decay=5e-4)`` decays BatchNorm parameters and biases too), batch 128, random 4-pixel
pad-and-crop + horizontal flip, bfloat16 compute.

Result: not measured here (CIFAR-10 cannot be downloaded in this environment; TFDS needs the
internet once); the recipe runs a few steps under tfds.testing.mock_data in
tests/training/test_recipes.py. Reference: with this recipe kuangliu/pytorch-cifar's ResNet-18
(3x3/1 stem, no max pool: ``model.stem='cifar'`` here) reaches ~95% test top-1.
"""

from jaxvision.config import base_config, lock


def get_config(arg=None):
    del arg
    c = base_config()
    c.model.name = "resnet18"
    c.model.drop_rate = 0.0
    c.model.stem = "cifar"  # 3x3/1 conv, no max pool: 32 px images keep their resolution
    c.data.name = "cifar10"
    c.data.image_size = 32
    c.data.train_crop = "random_pad"
    c.data.pad_pixels = 4
    c.data.flip = True
    c.batch_size = 128
    c.epochs = 200.0
    c.dtype = "bfloat16"
    c.optimizer.name = "sgd"
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = False
    c.optimizer.weight_decay = 5e-4
    c.optimizer.decay_norms_and_biases = True
    c.schedule.name = "cosine"
    c.schedule.base_lr = 0.1
    c.schedule.lr_batch_reference = 128
    c.schedule.warmup_epochs = 0.0
    c.eval_every_steps = 2000
    c.checkpoint_every_steps = 2000
    return lock(c)

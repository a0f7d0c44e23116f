"""The default job: LeNet-5 on the bundled MNIST subset (mnist5k).

  python -m jaxvision.train --config configs/mnist5k_lenet.py --workdir /tmp/jv_default

LeNet-5 (61,706 parameters) at 32x32 (the 28x28 digits resized), random 2-pixel pad-and-crop, no
flip; AdamW lr 3e-3 (50 warm-up steps, cosine to 0), weight decay 1e-4 (none on biases), batch 64,
8 epochs of the 4,000 training digits = 496 steps; validation (500 digits) at the end only. The
training split is held on the device and shuffled/augmented there (config.device_data='auto',
jaxvision.training.device_data); the test split is read once, after training.

Expected: test top-1 97.6% +- 1.0 (points; checked by tests/cli/test_recipe_claims.py, which
runs this command). Measured 2026-12-01 on the idle 2-core development machine with oneDNN's
convolutions (the CPU default since the seventh session; 6.4 s wall from launch to exit, warm
compilation cache): test top-1 97.6% (488/500), top-5 100%, NLL 0.072, ECE 1.0%; validation
top-1 97.6%; seed 0. The last line it prints is ``done: {... 'test/top1': 0.976 ...}``. With the
pure-JAX CPU lowering (JAXVISION_CONV_IMPL=cpu, other float rounding) the same seed gives 97.8%.

How the schedule was chosen (issue 15: the same accuracy in less time). The criterion reads only
the validation split: the shortest schedule whose validation top-1 is >= 97% for each of seeds
0-4, and among those the smaller spread over seeds. Validation top-1 over seeds 0-4:
12 epochs at lr 2e-3 (the previous recipe) 97.6-98.0%; 10 epochs at 3e-3 97.2-98.4%;
8 epochs at 4e-3 97.0-98.4%; 8 epochs at 3e-3 (this recipe) 97.0-97.8%. Their test top-1, read
after the choice: 98.0-98.6%, 97.8-99.0%, 97.2-98.6%, 97.8-98.4% (mean 98.1%).
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
    c.data.pad_pixels = 2  # 4 (the CIFAR default of size // 8) slows a 12-epoch schedule
    c.batch_size = 64
    c.epochs = 8.0
    c.optimizer.name = "adamw"
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "cosine"
    c.schedule.base_lr = 3e-3
    c.schedule.warmup_steps = 50
    c.log_every_steps = 50
    c.eval_every_steps = 0  # validation once, at the end
    c.checkpoint_every_steps = 400
    return lock(c)

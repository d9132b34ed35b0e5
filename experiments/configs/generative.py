"""Autoencoder, VAE and DCGAN on scikit-learn's digits, upsampled to 16x16.

  python experiments/generative.py --workdir runs/generative_vae --config.model=vae
  python experiments/generative.py --workdir runs/generative_ae --config.model=autoencoder
  python experiments/generative.py --workdir runs/generative_dcgan --config.model=dcgan

Measured once each on a 2-core AMD EPYC shared with other jobs (load average ~10; the
times are what these runs got there, not idle-machine times):
VAE (latent_dim 2, 30 epochs, 570 steps, 100 s training): test -ELBO 108.5 nats per
16x16 image (KL 3.09), per-pixel MSE of the posterior-mean reconstruction 0.0251, samples'
classifier score 5.42 (real test images 8.97), mean max-prob 0.85. Autoencoder (latent 2,
210 s): MSE 0.0298. DCGAN (100 epochs, 1,900 steps, 1,055 s): score 6.30, mean max-prob
0.84, class entropy 2.25 nats (real 2.29). The VAE also draws the decoded 2-D latent
map. Sample quality is scored by a small CNN trained on the same digits (val accuracy
0.959; `fdl.tasks.generative.classifier_score`).
CIFAR-10 (grey, 32x32): ``--config.dataset=npz
--config.train_file=/work/shared/data/cifar10/cifar10_train.npz
--config.test_file=/work/shared/data/cifar10/cifar10_test.npz --config.image_size=32
--config.gan.num_layers=3`` (much slower on a CPU). `--config ...:smoke` shrinks it.
"""

import ml_collections

from fdl import config_files


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.model = "vae"  # 'autoencoder', 'vae' or 'dcgan'
  # Data: any fdl.data source; digits (8x8, embedded) are resized to image_size.
  config.dataset = "digits"
  config.data_dir = ""
  config.train_file = ""
  config.test_file = ""
  config.image_size = 16  # side after bilinear resizing; 0 keeps the source's size
  config.grey = True  # RGB -> one channel (BT.601 luma)
  config.val_size = 5000  # used when it is at most half the pool, else val_fraction
  config.val_fraction = 0.15
  config.test_fraction = 0.15  # carved from sets without a test split (digits)
  config.max_train_examples = 0  # 0: all
  config.seed = 0

  # Autoencoder / VAE.
  config.latent_dim = 2
  config.features = (16, 32)  # encoder channels per stride-2 block
  config.likelihood = "bernoulli"  # 'bernoulli' (BCE on logits) or 'gaussian' (sigma 1)
  config.beta = 1.0  # weight of the KL term (1: the ELBO)
  config.learning_rate = 2e-3
  config.schedule = "cosine"

  # DCGAN (Radford et al. 2016: Adam 2e-4, beta1 0.5).
  config.gan = ml_collections.ConfigDict()
  config.gan.latent_dim = 32
  config.gan.features = 32  # G's last hidden / D's first channels
  config.gan.num_layers = 2  # 16x16 images: 4x4 -> 8x8 -> 16x16
  config.gan.g_learning_rate = 2e-4
  config.gan.d_learning_rate = 2e-4
  config.gan.b1 = 0.5
  config.gan.num_epochs = 100  # the DCGAN's (config.num_epochs: the autoencoders')

  config.batch_size = 64
  config.eval_batch_size = 500
  config.num_epochs = 30  # autoencoder and VAE

  # The sample-quality classifier (a small CNN on the same training images).
  config.scorer = ml_collections.ConfigDict()
  config.scorer.features = (16, 32)
  config.scorer.dense = (64,)
  config.scorer.num_epochs = 15
  config.scorer.learning_rate = 3e-3
  config.num_score_samples = 1000

  config.log_every = 20
  config.progress = True

  config.smoke = arg == "smoke"
  if config.smoke:
    config_files.apply_smoke(config, "generative")
  return config

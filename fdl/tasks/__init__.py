"""One ``train_and_evaluate`` per kind of problem, on the training core of `fdl.train`.

- `fdl.tasks.classification`: image classification (CIFAR-10, digits, synthetic).
- `fdl.tasks.reconstruction`: learned MRI reconstruction from under-sampled multi-coil
  k-space, with the supervision as a pluggable objective (`fdl.tasks.supervision`:
  supervised, SSDU, K-band).
- `fdl.tasks.segmentation`: brain tissue or lesion segmentation of synthesized slices,
  from images or (with `fdl.models.ReconSegmenter`) from under-sampled k-space.
- `fdl.tasks.sequence`: digits read as sequences by RNN / LSTM / GRU classifiers.
- `fdl.tasks.generative`: autoencoder, VAE and DCGAN training and sample scores.

Each reads an ``ml_collections.ConfigDict`` (``experiments/configs/*.py``), writes its
work directory and returns a summary dict.
"""

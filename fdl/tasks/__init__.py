"""One ``train_and_evaluate`` per kind of problem, on the training core of `fdl.train`.

- `fdl.tasks.classification`: image classification (CIFAR-10, digits, synthetic).
- `fdl.tasks.reconstruction`: learned MRI reconstruction from under-sampled multi-coil
  k-space, with the supervision as a pluggable objective (`fdl.tasks.supervision`:
  supervised, SSDU, K-band).

Each reads an ``ml_collections.ConfigDict`` (``experiments/configs/*.py``), writes its
work directory and returns a summary dict.
"""

"""Helpers for experiment configs and scripts: loading a config file, the XLA cache.

Experiments built from several training runs (data crimes, scarce data,
uncertainty) start from another experiment's ``get_config()`` file and compile
the same programs many times; both needs are met here once.
"""

from __future__ import annotations

import importlib.util
import os

import jax
import ml_collections


def load_config(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of the config file at `path` (``experiments/configs/*.py``).

  Raises:
    FileNotFoundError: `path` does not exist.
    AttributeError: the file defines no ``get_config``.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path} not found")
  name = "fdl_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise AttributeError(f"config file {path} defines no get_config()")
  return module.get_config(arg)


def use_compilation_cache(workdir: str, min_compile_seconds: float = 0.5) -> str:
  """Turns on XLA's persistent compilation cache in ``<workdir>/jax_cache``.

  Each training run builds new jitted closures of the same computations; the
  cache keys on the compiled program, so runs of one experiment (and its
  reruns) compile each program once. Process-wide, and it takes effect for
  compilations after this call.

  Returns:
    The cache directory.
  """
  directory = os.path.abspath(os.path.join(workdir, "jax_cache"))
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
  return directory

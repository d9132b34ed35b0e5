"""The README's Python example runs as written; its commands name what exists."""

import os
import re
import shlex

import pytest

from conftest import REPO_DIR
from fdl import config_files


def test_readme_example_runs(capsys):
  text = open(os.path.join(REPO_DIR, "README.md"), encoding="utf-8").read()
  blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
  assert blocks, "README has no python example"
  exec(compile(blocks[0], "README.md", "exec"), {})  # pylint: disable=exec-used
  printed = capsys.readouterr().out
  for key in ("loss", "accuracy", "learning_rate", "grad_norm", "param_norm"):
    assert f"'{key}'" in printed


def _commands(text: str) -> list[list[str]]:
  """The README's shell commands that run an experiment, as argument lists."""
  joined = re.sub(r"\\\n\s*", " ", text)  # continuation lines
  commands = []
  for line in joined.splitlines():
    line = line.split(" #")[0].strip().strip("`")
    match = re.search(r"(?:\.venv/bin/)?python (experiments/\w+\.py.*)", line)
    if match:
      commands.append(shlex.split(match.group(1).split(";")[0]))
  return commands


def _check_commands(text: str) -> int:
  """Checks every experiment command of `text`; returns how many there were."""
  commands = _commands(text)
  for args in commands:
    script = os.path.join(REPO_DIR, args[0])
    assert os.path.isfile(script), args
    flags = dict(a.lstrip("-").split("=", 1) for a in args[1:]
                 if a.startswith("--") and "=" in a)
    flags.update({a.lstrip("-"): b for a, b in zip(args[1:], args[2:])
                  if a.startswith("--") and "=" not in a and not b.startswith("--")})
    if "workdirs" in flags:  # experiments/mri_recon_real.py: trained runs, no config
      continue
    name = os.path.splitext(os.path.basename(args[0]))[0]
    path, _, arg = flags.get("config", f"experiments/configs/{name}.py").partition(":")
    config = config_files.load_config(os.path.join(REPO_DIR, path), arg or None)
    for key, value in flags.items():
      if not key.startswith("config."):
        continue
      node = config
      for part in key[len("config."):].split("."):
        assert part in node, f"{' '.join(args)}: config has no key {key!r}"
        node = node[part]
  return len(commands)


def test_readme_commands_name_existing_scripts_configs_and_keys():
  text = open(os.path.join(REPO_DIR, "README.md"), encoding="utf-8").read()
  assert _check_commands(text) >= 10


def test_a_misspelt_key_in_a_command_is_caught():
  bad = ("```bash\npython experiments/nonlinearity.py --workdir w "
         "--config.mlp.activaton=tanh\n```")
  with pytest.raises(AssertionError, match="no key 'config.mlp.activaton'"):
    _check_commands(bad)

"""The README's Python example runs as written."""

import os
import re

from conftest import REPO_DIR


def test_readme_example_runs(capsys):
  text = open(os.path.join(REPO_DIR, "README.md"), encoding="utf-8").read()
  blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
  assert blocks, "README has no python example"
  exec(compile(blocks[0], "README.md", "exec"), {})  # pylint: disable=exec-used
  printed = capsys.readouterr().out
  for key in ("loss", "accuracy", "learning_rate", "grad_norm", "param_norm"):
    assert f"'{key}'" in printed

"""The package layout's rules, read from the source: dependencies point one way.

``fdl/train`` is the training core, ``fdl/tasks`` builds on it, ``fdl/evaluate`` scores
sealed test splits, ``fdl/studies`` is the library side of the experiments and sits on
top; nothing inside ``fdl/`` imports a peer framework, and no module imports itself
through a cycle. The checks parse every module's imports (``ast``), so they cost no
JAX import and fail on the line that breaks a rule.
"""

import ast
import os

import pytest

from conftest import REPO_DIR

FDL_DIR = os.path.join(REPO_DIR, "fdl")
CONFIGS_DIR = os.path.join(REPO_DIR, "experiments", "configs")

# Layers, lowest first: a module may import its own layer and those below it.
LAYERS = (
    ("fdl.mri", "fdl.models", "fdl.losses"),
    ("fdl.data",),
    ("fdl.train",),
    ("fdl.evaluate", "fdl.bench"),
    ("fdl.generative",),  # diffusion priors: on models, mri, train; below studies
    ("fdl.tasks",),
    ("fdl.studies",),
)


def _module_name(path: str) -> str:
  rel = os.path.relpath(path, REPO_DIR)[:-len(".py")].replace(os.sep, ".")
  return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def _imports(path: str) -> list[tuple[str, int]]:
  """Absolute module names imported by the file at `path` (any depth), with lines."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), filename=path)
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(alias.name, node.lineno) for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      # `from fdl.train import mesh` may import the module fdl.train.mesh.
      out.append((node.module, node.lineno))
      out += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
  return out


def _fdl_modules() -> dict[str, str]:
  modules = {}
  for root, _, files in os.walk(FDL_DIR):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(root, name)
        modules[_module_name(path)] = path
  return modules


MODULES = _fdl_modules()


def _layer(module: str) -> int | None:
  for level, prefixes in enumerate(LAYERS):
    if any(module == p or module.startswith(p + ".") for p in prefixes):
      return level
  return None


def _graph() -> dict[str, set[str]]:
  """Module -> the fdl modules it imports (names that are modules, not attributes)."""
  return {name: {m for m, _ in _imports(path) if m in MODULES and m != name}
          for name, path in MODULES.items()}


def test_no_peer_framework_is_imported_inside_fdl():
  found = [f"{os.path.relpath(path, REPO_DIR)}:{line} imports {name}"
           for path in MODULES.values() for name, line in _imports(path)
           if name.split(".")[0] in ("torch", "fastmri", "tensorflow")]
  assert not found, found


def test_dependencies_point_down_the_layers():
  wrong = []
  for name, path in MODULES.items():
    level = _layer(name)
    if level is None:
      continue
    for imported, line in _imports(path):
      other = _layer(imported)
      if other is not None and other > level:
        wrong.append(f"{os.path.relpath(path, REPO_DIR)}:{line} ({LAYERS[level][0]}) "
                     f"imports {imported} ({LAYERS[other][0]})")
  assert not wrong, "\n".join(wrong)


def test_there_is_no_import_cycle():
  graph = _graph()
  state: dict[str, int] = {}  # 1: on the current path, 2: done
  cycles = []

  def visit(node, path):
    state[node] = 1
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 1:
        cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
      elif nxt not in state:
        visit(nxt, path + [nxt])
    state[node] = 2

  for node in sorted(graph):
    # A package's __init__ importing its own submodules is not a cycle.
    if node not in state:
      visit(node, [node])
  cycles = [c for c in cycles if not _package_reexport(c)]
  assert not cycles, cycles


def _package_reexport(cycle: str) -> bool:
  parts = cycle.split(" -> ")
  return any(b.startswith(a + ".") or a.startswith(b + ".")
             for a, b in zip(parts, parts[1:]))


def test_the_training_core_has_no_task_or_experiment_module():
  train = sorted(os.path.basename(p)[:-3] for n, p in MODULES.items()
                 if n.startswith("fdl.train."))
  assert train == ["checkpoint", "distributed", "early_stopping", "loop", "mesh",
                   "metric_writer", "optim", "state", "step", "transfer", "workdir"]


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(CONFIGS_DIR)
                                        if f.endswith(".py")))
def test_config_files_import_no_trainer(name):
  path = os.path.join(CONFIGS_DIR, name)
  heavy = [f"{name}:{line} imports {module}" for module, line in _imports(path)
           if module.split(".")[:2] in (["fdl", "train"], ["fdl", "tasks"])
           or module in ("fdl.studies.data_crimes", "fdl.studies.scarce_data",
                         "fdl.studies.uncertainty", "fdl.studies.self_supervised")]
  assert not heavy, heavy

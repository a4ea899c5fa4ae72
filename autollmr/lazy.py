"""lazy("pkg.mod"): a module executed on its first attribute access, for heavy libraries that a
command may never use (scikit-learn ~2 s, flax.nnx ~0.3 s, orbax ~0.3 s of a command's start). The
dependency is still declared at the top of the module that uses it, where a reader looks."""
from __future__ import annotations

import importlib.util
import sys


def lazy(name: str):
  """Module `name`, executed on its first attribute access (importlib's LazyLoader), bound in
  sys.modules and on its package as a plain import binds it (the package itself is imported)."""
  if name in sys.modules:
    return sys.modules[name]
  spec = importlib.util.find_spec(name)
  spec.loader = importlib.util.LazyLoader(spec.loader)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  package, _, child = name.rpartition(".")
  if package:
    setattr(sys.modules[package], child, module)
  return module

"""Rafiki and SINGA-Auto import names for Duma's SDK.

Templates written for Rafiki (``from rafiki.model import BaseModel, IntegerKnob, utils``) or
SINGA-Auto (``from singa_auto.model import ...``) run unchanged once :func:`install` has run; the
runner and ``test_model_class`` call it before importing a template.

This is an import hook (a ``sys.meta_path`` finder), not a ``rafiki`` package on disk: installing
``duma`` never shadows a real Rafiki, and the aliases exist only in processes that ask for them.
Each alias *is* the Duma module (``rafiki.model.BaseModel is duma.model.BaseModel``), so
isinstance checks and the logger sink work across names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from typing import Dict, Iterable

ALIAS_ROOTS = ("rafiki", "singa_auto")

# Module path under an alias root -> Duma module.
_TARGETS: Dict[str, str] = {
    "": "duma",
    ".model": "duma.model",
    ".model.model": "duma.model.model",
    ".model.base_model": "duma.model.model",
    ".model.knob": "duma.model.knob",
    ".model.log": "duma.model.log",
    ".model.dataset": "duma.model.dataset",
    ".model.utils": "duma.model.utils",
    ".model.dev": "duma.model.dev",
    ".constants": "duma.constants",
    ".client": "duma.client",
    ".params": "duma.params",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        # The alias is the Duma module itself; the import system keeps its existing attributes
        # except `__spec__`, which exec_module puts back.
        module = importlib.import_module(self.target)
        self._original_spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self._original_spec


class AliasFinder(importlib.abc.MetaPathFinder):
    """Resolves ``<root>.<path>`` to the Duma module listed for ``<path>``."""

    def __init__(self, roots: Iterable[str] = ALIAS_ROOTS):
        self.roots = tuple(roots)

    def target_of(self, fullname: str):
        for root in self.roots:
            if fullname == root or fullname.startswith(root + "."):
                return _TARGETS.get(fullname[len(root):])
        return None

    def find_spec(self, fullname, path=None, target=None):
        root = fullname.split(".", 1)[0]
        if root not in self.roots:
            return None
        duma_name = self.target_of(fullname)
        if duma_name is None:
            # Without this, the path finder would load a second copy of a Duma file under the
            # alias name, or fail with a message about Duma's directories.
            provided = ", ".join(sorted(root + k for k in _TARGETS if k))
            raise ModuleNotFoundError(
                f"No module named '{fullname}': Duma provides {root} and {provided}", name=fullname
            )
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(duma_name))


_finder = None


def install(roots: Iterable[str] = ALIAS_ROOTS) -> None:
    """Makes ``rafiki.*`` and ``singa_auto.*`` import Duma's SDK in this process. Idempotent.

    The hook goes first on ``sys.meta_path``, so it wins over a real Rafiki installed alongside:
    templates run by Duma must get Duma's ``BaseModel`` and logger.
    """
    global _finder
    if _finder is None:
        _finder = AliasFinder(roots)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    for root in _finder.roots:
        existing = sys.modules.get(root)
        if existing is not None and not getattr(existing, "__name__", "").startswith("duma"):
            warnings.warn(
                f"a real `{root}` package was imported before duma.compat.install(); "
                f"templates importing `{root}` in this process get it, not Duma's SDK",
                stacklevel=2,
            )


def uninstall() -> None:
    """Removes the hook and the aliases it registered (mainly for tests)."""
    global _finder
    if _finder is None:
        return
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    for name in list(sys.modules):
        if _finder.target_of(name) is not None and getattr(sys.modules[name], "__name__", "").startswith("duma"):
            del sys.modules[name]


def is_installed() -> bool:
    return _finder is not None and _finder in sys.meta_path

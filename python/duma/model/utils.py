"""The shared helper instances templates use, and template loading.

``logger`` and ``dataset`` are what Rafiki templates reach as ``utils.logger`` and
``utils.dataset`` (``from rafiki.model import utils``) or import directly
(``from rafiki.model.utils import dataset``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import uuid
from typing import Type, Union

from .dataset import DatasetUtils
from .log import LoggerUtils
from .model import BaseModel, InvalidModelClassError, check_model_class

logger = LoggerUtils()
dataset = DatasetUtils()
# Rafiki 0.2 name.
dataset_utils = dataset


def load_model_class(model_file: Union[str, bytes, os.PathLike], model_class: str, temp_mod_name: str = None) -> Type[BaseModel]:
    """Imports a template file and returns its class ``model_class``, checked to be a usable
    template (extends BaseModel, implements the required methods).

    ``model_file`` is a path, or the source as bytes (Rafiki's signature). Rafiki and SINGA-Auto
    import names are installed first, so ``from rafiki.model import BaseModel`` works. The module
    is not run as ``__main__``: a template's ``if __name__ == '__main__':`` block does not run.
    """
    from .. import compat

    compat.install()
    if isinstance(model_file, (bytes, bytearray)):
        source = bytes(model_file)
        origin = f"<{model_class} template>"
    else:
        origin = os.fspath(model_file)
        try:
            with open(origin, "rb") as f:
                source = f.read()
        except OSError as e:
            raise InvalidModelClassError(f"cannot read the template file `{origin}`: {e}") from None
    stem = re.sub(r"\W", "_", temp_mod_name or os.path.splitext(os.path.basename(origin))[0] or model_class)
    module_name = f"duma_template_{stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_loader(module_name, loader=None, origin=origin)
    module = importlib.util.module_from_spec(spec)
    module.__file__ = origin
    sys.modules[module_name] = module
    try:
        code = compile(source, origin, "exec")
        exec(code, module.__dict__)
    except SyntaxError as e:
        sys.modules.pop(module_name, None)
        raise InvalidModelClassError(f"the template file has a syntax error: {e}") from e
    except ImportError as e:
        sys.modules.pop(module_name, None)
        raise InvalidModelClassError(
            f"importing the template failed: {e} (are the model's dependencies installed?)"
        ) from e
    except Exception as e:
        sys.modules.pop(module_name, None)
        raise InvalidModelClassError(f"importing the template failed: {type(e).__name__}: {e}") from e
    try:
        cls = getattr(module, model_class)
    except AttributeError:
        found = sorted(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, BaseModel) and v is not BaseModel)
        hint = f"; it defines {', '.join(found)}" if found else ""
        raise InvalidModelClassError(f"the template file has no class `{model_class}`{hint}") from None
    return check_model_class(cls)

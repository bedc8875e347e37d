import importlib
import os
import subprocess
import sys

import pytest

import duma.model
from duma import compat
from conftest import PYTHON_DIR


@pytest.fixture
def aliases():
    compat.install()
    yield
    compat.uninstall()


def test_rafiki_and_singa_auto_names_are_duma_modules(aliases):
    import rafiki.model
    import singa_auto.model
    from rafiki.constants import ModelDependency, TaskType
    from rafiki.model import BaseModel, CategoricalKnob, FixedKnob, FloatKnob, IntegerKnob, PolicyKnob, ArchKnob, utils
    from rafiki.model.dev import test_model_class
    from rafiki.model.knob import BaseKnob, KnobValue
    from singa_auto.model import logger
    from singa_auto.model.utils import dataset
    from rafiki.client import Client
    import duma.client

    assert rafiki.model is duma.model and singa_auto.model is duma.model
    assert BaseModel is duma.model.BaseModel and FixedKnob is duma.model.FixedKnob
    assert utils.logger is duma.model.logger is logger
    assert dataset is duma.model.dataset
    assert Client is duma.client.Client
    assert callable(test_model_class) and BaseKnob and KnobValue and ModelDependency.NUMPY == "numpy"
    assert TaskType.IMAGE_CLASSIFICATION == "IMAGE_CLASSIFICATION"
    # The aliases do not rename the Duma modules.
    assert duma.model.__spec__.name == "duma.model" and duma.model.__name__ == "duma.model"


def test_unknown_alias_names_fail_with_a_clear_message(aliases):
    with pytest.raises(ModuleNotFoundError, match=r"rafiki\.advisor.*Duma provides"):
        importlib.import_module("rafiki.advisor")
    with pytest.raises(ModuleNotFoundError, match="singa_auto.model.contract"):
        # An existing Duma file must not be loaded a second time under the alias name.
        importlib.import_module("singa_auto.model.contract")


def test_install_is_idempotent_and_uninstall_removes_the_aliases():
    compat.install()
    compat.install()
    assert compat.is_installed()
    importlib.import_module("rafiki.model")
    compat.uninstall()
    assert not compat.is_installed()
    assert "rafiki.model" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("rafiki.model")


def test_a_fresh_interpreter_has_no_rafiki_until_install():
    code = (
        "import importlib.util, duma, duma.model\n"
        "assert importlib.util.find_spec('rafiki') is None, 'duma must not ship a rafiki package'\n"
        "import duma.compat; duma.compat.install()\n"
        "from rafiki.model import BaseModel\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": PYTHON_DIR}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_package_contains_no_top_level_rafiki_or_singa_auto():
    assert not any(name in os.listdir(PYTHON_DIR) for name in ("rafiki", "singa_auto"))

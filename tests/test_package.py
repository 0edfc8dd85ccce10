import subprocess
import sys

import pytest

import skftr


@pytest.mark.parametrize("name", [n for n in skftr.__all__ if n != "__version__"])
def test_every_public_name_resolves(name):
    assert getattr(skftr, name).__name__ == name


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        skftr.no_such_thing


def test_importing_the_package_loads_no_torch():
    code = "import skftr, skftr.rectify, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)

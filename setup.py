"""Build hook (configuration is in pyproject.toml): the protobuf code is generated into gen/
before setuptools looks for packages, so `pip install .`, an editable install and the wheel
all carry the ``sscard`` package."""

import runpy
from pathlib import Path

from setuptools import setup

runpy.run_path(str(Path(__file__).resolve().parent / "protos" / "generate.py"), run_name="__main__")
setup()

"""Package data (schema/, templates/, sidecars/) through importlib.resources.

An installed wheel carries the folders under kubejobs/_data (hatch force-include);
a source checkout has them at the repository root, next to the package.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml


@cache
def data_dir(name: str) -> Traversable:
    """The folder `name` (schema, templates or sidecars) as packaged or as checked out."""
    packaged = files("kubejobs").joinpath("_data", name)
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"kubejobs package data {name!r} is missing from the installation")


@cache
def load_json(folder: str, filename: str) -> Any:
    return json.loads(data_dir(folder).joinpath(filename).read_text(encoding="utf-8"))


@cache
def load_yaml(folder: str, filename: str) -> Any:
    return yaml.safe_load(data_dir(folder).joinpath(filename).read_text(encoding="utf-8"))


@cache
def _yaml_as_json(folder: str, filename: str) -> str:
    return json.dumps(load_yaml(folder, filename))


def fresh_yaml(folder: str, filename: str) -> Any:
    """A new, independent copy of a YAML data file (to be changed by the caller)."""
    return json.loads(_yaml_as_json(folder, filename))

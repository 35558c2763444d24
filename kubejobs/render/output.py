"""Manifests as text for people and kubectl: YAML documents or a JSON List."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

# PyYAML writes NEL, LS and PS raw when allowed unicode, and reads them back as line
# breaks; output that contains them is written with escapes instead.
_YAML_BREAKS = re.compile("[\x85\u2028\u2029]")
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def to_yaml(manifests: list[dict[str, Any]]) -> str:
    text: str = yaml.dump_all(manifests, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    if _YAML_BREAKS.search(text):
        text = yaml.dump_all(manifests, Dumper=_Dumper, sort_keys=False, allow_unicode=False)
    return text


def to_json(manifests: list[dict[str, Any]]) -> str:
    return json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": manifests}, indent=2, ensure_ascii=False
    )

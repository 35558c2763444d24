"""Property: any string in any free-text field gives a validation error or a manifest of the
same structure whose values equal the input. Never a crash.

Strings come from tests/legal_text.py, the generator the properties against the API server
and `kubejobs check` use too: what breaks text-built YAML, Jinja and shells (quotes,
newlines, ': ', '{{ }}', 'NO', '0755', YAML line breaks, control characters) and every
Unicode plane.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubejobs.errors import InvalidInput
from kubejobs.render import Renderer, RenderSettings
from kubejobs.render.output import to_yaml
from kubejobs.spec import validate_spec
from tests.legal_text import as_seen, text
from tests.unit.helpers import PID, env_of

label = text.map(lambda s: "/" + s)
RENDERER = Renderer(RenderSettings())


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def expected(value: str) -> str:
    return value.replace("{processid}", PID)


def build(
    words: list[str],
    args: list[str],
    init: str | None,
    env: dict[str, str],
    colony: str,
    mount: str,
    dirs: list[tuple[str, str]],
    nodes: int,
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"docker-image": "busybox", "cmd": words, "args": args}
    if init is not None:
        kwargs["init-cmd"] = init
    spec: dict[str, Any] = {
        "funcname": "execute",
        "kwargs": kwargs,
        "env": env,
        "label": colony,
        "nodename": colony,
        "conditions": {"colonyname": colony, "nodes": nodes},
    }
    if dirs:
        spec["fs"] = {"mount": mount, "dirs": [{"label": lab, "dir": d} for lab, d in dirs]}
    return spec


def plain(spec: dict[str, Any]) -> dict[str, Any]:
    """The same spec with every free-text value made boring (same emptiness)."""

    def boring(value: Any) -> Any:
        if isinstance(value, str):
            return value[:1] and "x"
        if isinstance(value, list):
            return [boring(v) for v in value]
        if isinstance(value, dict):
            return {
                k: (v if k in ("funcname", "docker-image", "nodes") else boring(v))
                for k, v in value.items()
            }
        return value

    out = boring(spec)
    out["env"] = {k: boring(v) for k, v in spec["env"].items()}
    if "fs" in out:
        out["fs"]["mount"] = "/x"
        for d in out["fs"]["dirs"]:
            d["label"] = "/x"
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    words=st.lists(text, min_size=1, max_size=3),
    args=st.lists(text, max_size=3),
    init=st.none() | text,
    env=st.dictionaries(
        st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True).filter(
            lambda n: not n.startswith(("COLONIES_", "KUBEJOBS_"))
        ),
        text,
        max_size=3,
    ),
    colony=text,
    mount=label,
    dirs=st.lists(st.tuples(label, text), max_size=2),
    nodes=st.integers(1, 3),
)
def test_strings_pass_through_unchanged(
    words: list[str],
    args: list[str],
    init: str | None,
    env: dict[str, str],
    colony: str,
    mount: str,
    dirs: list[tuple[str, str]],
    nodes: int,
) -> None:
    spec = build(words, args, init, env, colony, mount, dirs, nodes)
    try:
        typed = validate_spec(spec)
    except InvalidInput:
        return
    manifests = RENDERER.render(typed, PID)
    reference = RENDERER.render(validate_spec(plain(spec)), PID)
    assert shape(manifests) == shape(reference)

    main = manifests[0]["spec"]["template"]["spec"]["containers"][0]
    command = [as_seen(w) for w in main["command"] + main.get("args", [])]
    if not init:  # an empty init-cmd is no init-cmd
        assert command == [expected(w) for w in words + args]
    else:
        assert command[4:] == [expected(w) for w in words + args]
        assert command[:4] == [
            "/bin/sh",
            "-c",
            "{\n" + expected(init) + '\n} && exec "$@"',
            "kubejobs-init",
        ]
    main_env = env_of(main)
    for name, value in env.items():
        assert as_seen(main_env[name]) == expected(value)
    assert as_seen(main_env["COLONIES_COLONY_NAME"]) == colony
    # What a user would apply: the YAML text parses back to the same data.
    assert list(yaml.safe_load_all(to_yaml(manifests))) == manifests


@settings(max_examples=200, deadline=None)
@given(cmd=text)
def test_string_cmd_is_split_like_a_posix_shell_or_refused(cmd: str) -> None:
    import shlex

    spec = {"funcname": "execute", "kwargs": {"docker-image": "busybox", "cmd": cmd}}
    try:
        typed = validate_spec(spec)
    except InvalidInput as err:
        assert all(p.path.startswith("$.kwargs.cmd") for p in err.problems), err
        return
    main = RENDERER.render(typed, PID)[0]["spec"]["template"]["spec"]["containers"][0]
    assert [as_seen(w) for w in main["command"]] == [expected(w) for w in shlex.split(cmd)]


@settings(max_examples=200, deadline=None)
@given(
    data=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_arbitrary_documents_never_crash_validation(data: Any) -> None:
    try:
        validate_spec(data)
    except InvalidInput as err:
        assert err.problems

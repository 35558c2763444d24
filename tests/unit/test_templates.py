"""Template customisation: layering, tojson enforcement, sandbox, errors naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubejobs.errors import TemplateError
from kubejobs.render.templating import to_json
from kubejobs.resources import data_dir
from tests.unit.helpers import job_of, mains, render, spec_with


def custom(tmp_path: Path, text: str, name: str = "job.yaml.j2") -> str:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return str(tmp_path)


def test_custom_template_extends_the_builtin(tmp_path: Path) -> None:
    builtin = data_dir("templates").joinpath("job.yaml.j2").read_text(encoding="utf-8")
    text = builtin.replace(
        "      restartPolicy: Never\n",
        "      restartPolicy: Never\n      hostNetwork: {{ (nodes > 1) | tojson }}\n",
    )
    folder = custom(tmp_path, text)
    job = job_of(render(spec_with(), templates_dir=folder))
    assert job["spec"]["template"]["spec"]["hostNetwork"] is False
    # The injected components are still there.
    assert job["spec"]["template"]["spec"]["initContainers"][0]["name"] == "kubejobs-log-shipper"


def test_builtin_templates_stay_reachable_for_include(tmp_path: Path) -> None:
    folder = custom(tmp_path, '{% include "builtin/job.yaml.j2" %}')
    assert job_of(render(spec_with(), templates_dir=folder))["kind"] == "Job"


def test_value_without_tojson_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    folder = custom(
        tmp_path, "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ job_name }}\n"
    )
    with pytest.raises(TemplateError) as err:
        render(spec_with(), templates_dir=folder)
    assert str(err.value).startswith(f"{tmp_path}/job.yaml.j2:4: value 'kj-")
    assert "without '| tojson'" in str(err.value)


def test_undefined_name_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    folder = custom(
        tmp_path, "apiVersion: batch/v1\nkind: Job\n\nmetadata: {{ no_such_thing | tojson }}\n"
    )
    with pytest.raises(TemplateError, match=r"job\.yaml\.j2:4: 'no_such_thing' is undefined"):
        render(spec_with(), templates_dir=folder)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    folder = custom(tmp_path, "a: 1\n{% if %}\n")
    with pytest.raises(TemplateError, match=r"job\.yaml\.j2:2: "):
        render(spec_with(), templates_dir=folder)


def test_sandbox_blocks_unsafe_attribute_access(tmp_path: Path) -> None:
    folder = custom(tmp_path, "x: {{ job_name.__class__.__mro__ | tojson }}\n")
    with pytest.raises(TemplateError, match=r"job\.yaml\.j2:1: .*unsafe"):
        render(spec_with(), templates_dir=folder)


def test_sandbox_is_immutable(tmp_path: Path) -> None:
    folder = custom(tmp_path, "{% set _ = labels.update({'x': 'y'}) %}x: 1\n")
    with pytest.raises(TemplateError, match=r"job\.yaml\.j2:1: .*unsafe"):
        render(spec_with(), templates_dir=folder)


def test_output_that_is_not_yaml_names_the_rendered_line(tmp_path: Path) -> None:
    folder = custom(
        tmp_path, "apiVersion: batch/v1\nkind: Job\nmetadata: {{ labels | tojson }}: x\n"
    )
    with pytest.raises(
        TemplateError, match=r"job\.yaml\.j2: rendered text is not YAML at rendered line 3"
    ):
        render(spec_with(), templates_dir=folder)


def test_template_must_produce_a_job(tmp_path: Path) -> None:
    folder = custom(tmp_path, "apiVersion: v1\nkind: ConfigMap\n")
    with pytest.raises(TemplateError, match="must produce a batch/v1 Job"):
        render(spec_with(), templates_dir=folder)


def test_missing_templates_folder() -> None:
    with pytest.raises(TemplateError, match="templates folder does not exist"):
        render(spec_with(), templates_dir="/no/such/folder")


def test_reserved_container_name_from_a_template_is_refused(tmp_path: Path) -> None:
    builtin = data_dir("templates").joinpath("job.yaml.j2").read_text(encoding="utf-8")
    folder = custom(
        tmp_path, builtin.replace("- name: {{ c.name | tojson }}", '- name: "kubejobs-log-shipper"')
    )
    with pytest.raises(TemplateError, match="containers name 'kubejobs-log-shipper' is reserved"):
        render(spec_with(), templates_dir=folder)


@pytest.mark.parametrize(
    "value",
    [
        "NO",
        "0755",
        "a: b",
        "x\ny: 1",
        "{{ job_name }}",
        "\u2028",
        "\x85",
        "\x7f",
        "\U0001f600",
        "'\"",
        "- item",
        "#c",
        "1.10",
        "on",
        "~",
        "null",
    ],
)
def test_tricky_strings_come_back_unchanged(value: str) -> None:
    (main,) = mains(render(spec_with(kwargs={"cmd": ["prog", value]})))
    assert main["command"] == ["prog", value]


def test_values_are_never_parsed_as_yaml(tmp_path: Path) -> None:
    # A value is JSON data put in place by the loader: a YAML-looking string stays a string,
    # and a mapping value stays a mapping even where YAML text would have been a scalar.
    folder = custom(
        tmp_path,
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: {{ 'a: b' | tojson }}}\n"
        "spec: {template: {spec: {containers: [{name: x, args: {{ ['NO', '0755', 1.5] | tojson }}}]}}}\n",
    )
    job = job_of(render(spec_with(), templates_dir=folder))
    assert job["metadata"]["name"] == "a: b"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["NO", "0755", 1.5]


def test_a_forged_value_tag_is_refused(tmp_path: Path) -> None:
    folder = custom(tmp_path, "apiVersion: batch/v1\nkind: Job\nmetadata: !kubejobs/value 99\n")
    with pytest.raises(TemplateError, match="'99' was not written by tojson"):
        render(spec_with(), templates_dir=folder)


def test_tojson_outside_a_render_is_an_error() -> None:
    with pytest.raises(TemplateError, match="only available while kubejobs renders"):
        to_json("x")


def test_tojson_of_a_constant_is_right_in_every_render(tmp_path: Path) -> None:
    """Jinja folds filters of constants while compiling; tojson must not be folded, or the
    first render's value reference would be baked into the template for all later ones."""
    from kubejobs.render import Renderer, RenderSettings
    from kubejobs.spec import validate_spec

    builtin = data_dir("templates").joinpath("job.yaml.j2").read_text(encoding="utf-8")
    text = builtin.replace(
        "      restartPolicy: Never\n",
        '      restartPolicy: Never\n      dnsPolicy: {{ "ClusterFirstWithHostNet" | tojson }}\n',
    )
    renderer = Renderer(RenderSettings(templates_dir=custom(tmp_path, text)))
    spec = validate_spec(spec_with())
    for pid in ("a" * 64, "b" * 64, "c" * 64):
        job = job_of(renderer.render(spec, pid))
        assert job["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirstWithHostNet"
        assert job["metadata"]["name"] == "kj-" + pid[:40]

"""The command line: click parses options and calls the library; errors become exit codes here.

Exit codes: 0 success, 1 invalid input (specs, templates, manifests), 2 usage or
settings errors.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import click

from kubejobs import __version__
from kubejobs.check import check_groups
from kubejobs.errors import InvalidInput, KubejobsError, Problem, SettingsError, TemplateError
from kubejobs.render import Renderer, RenderSettings, default_process_id
from kubejobs.render.output import to_json, to_yaml
from kubejobs.resources import data_dir, load_json
from kubejobs.settings import load_settings
from kubejobs.spec import (
    load_documents,
    parse_document,
    validate_document,
    validate_spec,
)

F = TypeVar("F", bound=Callable[..., Any])
EXIT_INVALID = 1
EXIT_USAGE = 2


def render_options(func: F) -> F:
    """Options shared by render and check; each also reads KUBEJOBS_<NAME>."""
    options = [
        click.option(
            "--config",
            "config_file",
            envvar="KUBEJOBS_CONFIG",
            type=click.Path(dir_okay=False),
            help="Settings file (YAML); see README for every setting.",
        ),
        click.option(
            "--kube-version", help="Target Kubernetes version, e.g. 1.29 [default: 1.34]."
        ),
        click.option(
            "--templates",
            "templates_dir",
            type=click.Path(file_okay=False),
            help="Folder of custom templates layered over the built-ins.",
        ),
        click.option("--namespace", help="Namespace written into the manifests."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(config_file: str | None, **overrides: Any) -> RenderSettings:
    return load_settings(RenderSettings, config_file, os.environ, overrides)


class LazyGroup(click.Group):
    """Loads the executor and in-pod commands only when they are run: they need the
    `executor` extra (kubernetes, pycolonies...), which `validate`, `render` and the
    pre-commit hooks do without."""

    lazy: ClassVar[dict[str, str]] = {
        "executor": "kubejobs.executor.command:executor_command",
        "stage-in": "kubejobs.inpod.command:stage_in_command",
        "ship-logs": "kubejobs.inpod.command:ship_logs_command",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, name = self.lazy[cmd_name].split(":")
            command: click.Command = getattr(importlib.import_module(module), name)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kubejobs")
def cli() -> None:
    """Run ColonyOS function specs as Kubernetes batch Jobs."""


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Validate function spec and workflow files (JSON or YAML)."""
    documents, problems = load_documents(files)
    for doc in documents:
        problems += validate_document(doc)
    _report(problems)
    click.echo(f"{len(files)} file(s) valid", err=True)


@cli.command()
@click.argument("spec_file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--process-id", help="Process id (64 hex); default: derived from the spec's content.")
@click.option(
    "-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True
)
@render_options
def render(
    spec_file: str, process_id: str | None, output: str, config_file: str | None, **overrides: Any
) -> None:
    """Render a function spec (or every spec of a workflow) into Kubernetes manifests."""
    renderer = Renderer(_settings(config_file, **overrides))
    manifests = [
        m for spec in _read_specs(spec_file) for m in _render_one(renderer, spec, process_id)
    ]
    text = to_json(manifests) + "\n" if output == "json" else to_yaml(manifests)
    click.echo(text, nl=False)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--kubeconform/--no-kubeconform",
    "use_kubeconform",
    default=None,
    help="Check with kubeconform [default: when it is on PATH].",
)
@render_options
def check(
    files: tuple[str, ...], use_kubeconform: bool | None, config_file: str | None, **overrides: Any
) -> None:
    """Render specs and check the manifests against the target version's Kubernetes schemas."""
    settings = _settings(config_file, **overrides)
    renderer = Renderer(settings)
    documents, problems = load_documents(files)
    rendered: list[tuple[str, str, list[dict[str, Any]]]] = []
    for doc in documents:
        invalid = validate_document(doc)
        if invalid:
            problems += invalid
            continue
        for path, data in doc.specs():
            try:
                manifests = _render_one(renderer, (doc.source, path, data), None)
            except InvalidInput as err:
                problems += err.problems
                continue
            except TemplateError as err:
                problems.append(Problem(doc.source, path, f"template: {err}"))
                continue
            rendered.append((doc.source, path, manifests))
    groups = [manifests for _, _, manifests in rendered]
    for (source, path, _), found in zip(
        rendered, check_groups(groups, settings.kube_version, use_kubeconform), strict=True
    ):
        problems += [
            Problem(source, path, f"Kubernetes {settings.kube_version}: {one}") for one in found
        ]
    _report(problems)
    click.echo(
        f"{len(files)} file(s) render to valid Kubernetes {settings.kube_version} manifests",
        err=True,
    )


@cli.command()
@click.option(
    "--workflow", is_flag=True, help="The workflow schema instead of the function spec schema."
)
def schema(workflow: bool) -> None:
    """Print the function spec JSON Schema (draft 2020-12)."""
    name = "workflow.schema.json" if workflow else "functionspec.schema.json"
    click.echo(json.dumps(load_json("schema", name), indent=2))


@cli.group()
def templates() -> None:
    """Work with the Jinja templates."""


@templates.command("dump")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def templates_dump(directory: str, force: bool) -> None:
    """Write the built-in templates to DIRECTORY as a starting point for customising."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(data_dir("templates").iterdir(), key=lambda e: e.name):
        destination = target / entry.name
        if destination.exists() and not force:
            raise click.UsageError(f"{destination} exists (use --force to overwrite)")
        destination.write_text(entry.read_text(encoding="utf-8"), encoding="utf-8")
        click.echo(str(destination))


SpecRef = tuple[str, str, Any]  # source file, JSON path of the spec in it, the spec data


def _read_specs(path: str) -> list[SpecRef]:
    if path == "-":
        doc = parse_document(sys.stdin.read(), "<stdin>")
    else:
        documents, problems = load_documents([path])
        if problems:
            raise InvalidInput(problems)
        doc = documents[0]
    problems = validate_document(doc)
    if problems:
        raise InvalidInput(problems)
    return [(doc.source, p, data) for p, data in doc.specs()]


def _render_one(renderer: Renderer, ref: SpecRef, process_id: str | None) -> list[dict[str, Any]]:
    source, path, data = ref
    try:
        spec = validate_spec(data, source)
    except InvalidInput as err:
        # validate_spec paths are relative to the spec; re-anchor them inside a workflow.
        raise InvalidInput(
            [Problem(p.source, path + p.path[1:], p.message) for p in err.problems]
        ) from None
    return renderer.render(spec, process_id or default_process_id(data))


def _report(problems: list[Problem]) -> None:
    if problems:
        raise InvalidInput(problems)


def main() -> None:
    try:
        # Without standalone mode click returns (not raises) the code of an Exit.
        code = cli.main(standalone_mode=False, prog_name="kubejobs")
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as err:
        err.show()
        sys.exit(EXIT_USAGE)
    except InvalidInput as err:
        for problem in err.problems:
            click.echo(str(problem), err=True)
        sys.exit(EXIT_INVALID)
    except TemplateError as err:
        click.echo(f"template error: {err}", err=True)
        sys.exit(EXIT_INVALID)
    except SettingsError as err:
        click.echo(f"settings error: {err}", err=True)
        sys.exit(EXIT_USAGE)
    except KubejobsError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_INVALID)
    except BrokenPipeError:
        sys.exit(0)

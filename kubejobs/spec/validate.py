"""Validation of function specs and workflows: the schema, then the checks it cannot express.

Every problem is collected and returned at once; nothing here raises for bad input.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from kubejobs.errors import InvalidInput, Problem
from kubejobs.spec.colonies_units import cpu_problem, memory_problem
from kubejobs.spec.load import SpecDocument
from kubejobs.spec.model import FunctionSpec, split_words
from kubejobs.spec.names import ENV_NAME, LABEL_VALUE, RANK_ENV, RESERVED_ENV, image_problem
from kubejobs.spec.schema_errors import SPEC_SCHEMA, WORKFLOW_SCHEMA, json_path, schema_problems
from kubejobs.spec.text import text_problems
from kubejobs.spec.workflow import graph_problems

# Words that mean something only to a shell; cmd runs without one.
_OPERATOR_CHARS = frozenset("|&;<>()")
_SHELL_OPERATORS = frozenset({"|", "||", "&", "&&", ";", ";;", "<", ">", ">>", "<<", "(", ")"})


def validate_document(doc: SpecDocument) -> list[Problem]:
    """Every problem in a spec or workflow document (empty when it is valid)."""
    if doc.kind == "workflow":
        return sorted(_validate_workflow(doc))
    return sorted(_spec_problems(doc.data, doc.source, []))


def validate_spec(data: Any, source: str = "<spec>") -> FunctionSpec:
    """A typed spec from a function spec document, or InvalidInput with every problem."""
    problems = _spec_problems(data, source, [])
    if problems:
        raise InvalidInput(problems)
    if data.get("funcname") != "execute":
        raise InvalidInput([Problem(source, "$.funcname", _unknown_funcname(data.get("funcname")))])
    return FunctionSpec.from_valid(data)


def _unknown_funcname(name: Any) -> str:
    return f"the Kubernetes executor runs funcname 'execute', not {name!r}"


def _validate_workflow(doc: SpecDocument) -> list[Problem]:
    problems = schema_problems(doc.data, WORKFLOW_SCHEMA, doc.source)
    prefix, specs = doc.spec_list()
    for index, spec in enumerate(specs):
        problems += _semantic_problems(spec, doc.source, [*prefix, index])
    return problems + graph_problems(specs, prefix, doc.source)


def _spec_problems(data: Any, source: str, prefix: list[str | int]) -> list[Problem]:
    problems = schema_problems(data, SPEC_SCHEMA, source)
    # The semantic checks skip values of the wrong type (the schema reports those),
    # so every problem of a document is reported in one run.
    return problems + _semantic_problems(data, source, prefix)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _semantic_problems(data: Any, source: str, prefix: list[str | int]) -> list[Problem]:
    problems: list[Problem] = []
    spec = _obj(data)

    def add(path: list[str | int], message: str) -> None:
        problems.append(Problem(source, json_path([*prefix, *path]), message))

    conditions = _obj(spec.get("conditions"))
    gpu = _obj(conditions.get("gpu"))
    _check_amount(conditions.get("cpu"), ["conditions", "cpu"], cpu_problem, add)
    for key in ("mem", "storage"):
        _check_amount(conditions.get(key), ["conditions", key], memory_problem, add)
    _check_amount(gpu.get("mem"), ["conditions", "gpu", "mem"], memory_problem, add)
    gpu_name = gpu.get("name")
    if isinstance(gpu_name, str) and gpu_name and not LABEL_VALUE.match(gpu_name):
        add(
            ["conditions", "gpu", "name"],
            f"{gpu_name!r} cannot be a node label value (at most 63 letters, digits, '-', '_', '.')",
        )

    nodes = _int(conditions.get("nodes"), 1)
    per_node = _int(conditions.get("processespernode"), 1)
    processes = _int(conditions.get("processes"), nodes * per_node)
    if processes != nodes * per_node:
        add(
            ["conditions", "processes"],
            f"{processes} processes do not fit nodes x processespernode = {nodes} x {per_node}",
        )

    # The server's timeout loop: maxexectime -1 is off, any other value not above 0
    # expires the process at once; a maxwaittime below -1 fails it at once (0 is off).
    # maxretries 0 is meaningful: no retry after maxexectime.
    maxexec = _int(spec.get("maxexectime"), -1)
    if maxexec <= 0 and maxexec != -1:
        add(
            ["maxexectime"],
            f"{maxexec} makes the Colonies server expire the process at once; use -1 for no limit",
        )
    maxwait = _int(spec.get("maxwaittime"), -1)
    if maxwait < -1:
        add(
            ["maxwaittime"],
            f"{maxwait} makes the Colonies server fail the process at once; use -1 for no limit",
        )
    walltime = _int(conditions.get("walltime"), 0)
    maxexectime = _int(spec.get("maxexectime"), -1)
    if walltime > 0 and maxexectime > 0 and walltime <= maxexectime:
        add(
            ["conditions", "walltime"],
            f"walltime {walltime}s must be greater than maxexectime {maxexectime}s, "
            "or the Job is killed before the server can retry the process",
        )

    for name in _obj(spec.get("env")):
        if not ENV_NAME.match(name):
            add(
                ["env", name],
                f"{name!r} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
            )
        elif name in RESERVED_ENV:
            add(["env", name], f"{name!r} is set by kubejobs; choose another name")
        elif name in RANK_ENV and nodes * per_node > 1:
            hint = (
                " (the port is the executor's master_port setting)" if name == "MASTER_PORT" else ""
            )
            add(
                ["env", name],
                f"{name!r} is set by kubejobs for a spec with more than one rank "
                f"(nodes x processespernode = {nodes} x {per_node}); choose another name{hint}",
            )

    if spec.get("funcname") == "execute":
        _check_execute(_obj(spec.get("kwargs")), add)
    text_problems(spec, add)
    return problems


def _check_amount(
    value: Any, path: list[str | int], problem: Callable[[str], str | None], add: Any
) -> None:
    if not isinstance(value, str) or value == "":
        return
    found = problem(value)
    if found:
        add(path, found)


def _check_execute(kwargs: dict[str, Any], add: Any) -> None:
    image = kwargs.get("docker-image")
    problem = image_problem(image) if isinstance(image, str) and image else None
    if problem:
        add(["kwargs", "docker-image"], problem)
    cmd = kwargs.get("cmd")
    if isinstance(cmd, str) and cmd:
        try:
            words = split_words(cmd)
        except ValueError as err:
            add(["kwargs", "cmd"], f"cannot split into words: {err} (check the quotes)")
            return
        if not words:
            add(["kwargs", "cmd"], "must name a program")
        if not _OPERATOR_CHARS.intersection(cmd):
            return
        # Non-POSIX mode keeps quotes on words, so a quoted ';' is not taken for an operator.
        lexer = shlex.shlex(cmd, posix=False, punctuation_chars=True)
        lexer.whitespace_split = True
        operators = [w for w in lexer if w in _SHELL_OPERATORS]
        if operators:
            add(
                ["kwargs", "cmd"],
                f"{operators[0]!r} is a shell operator, but cmd runs without a shell; "
                'put shell code in init-cmd, or use cmd: ["sh", "-c", "..."]',
            )

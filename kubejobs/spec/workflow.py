"""The checks of a workflow's graph: dependencies name nodes, nodenames are unique, no cycle.

Each problem is located at the entry that causes it (a dependency, a nodename), in
whichever form the workflow came: `$[1]...` for the CLI's array, `$.functionspecs[1]...`
for the API's object.
"""

from __future__ import annotations

from typing import Any

from kubejobs.errors import Problem
from kubejobs.spec.schema_errors import json_path

Path = list[str | int]


def graph_problems(specs: list[Any], prefix: Path, source: str) -> list[Problem]:
    """Every dangling dependency, duplicate nodename and dependency cycle among `specs`."""
    names = [_name(spec) for spec in specs]
    first: dict[str, int] = {}
    problems: list[Problem] = []
    for index, name in enumerate(names):
        if not name:
            continue
        if name in first:
            where = json_path([*prefix, first[name], "nodename"])
            problems.append(
                Problem(
                    source,
                    json_path([*prefix, index, "nodename"]),
                    f"nodename {name!r} is used twice (first at {where})",
                )
            )
        else:
            first[name] = index
    known = ", ".join(repr(name) for name in first) or "none"
    for index, spec in enumerate(specs):
        for dep_index, dep in enumerate(_dependencies(spec)):
            if isinstance(dep, str) and dep not in first:
                problems.append(
                    Problem(
                        source,
                        json_path([*prefix, *_dep_path(index, dep_index)]),
                        f"no function spec in this workflow has nodename {dep!r} "
                        f"(nodenames: {known})",
                    )
                )
    problems += _cycle_problems(specs, first, prefix, source)
    return problems


def _name(spec: Any) -> str:
    name = spec.get("nodename") if isinstance(spec, dict) else None
    return name if isinstance(name, str) else ""


def _dependencies(spec: Any) -> list[Any]:
    conditions = spec.get("conditions") if isinstance(spec, dict) else None
    deps = conditions.get("dependencies") if isinstance(conditions, dict) else None
    return deps if isinstance(deps, list) else []


def _dep_path(index: int, dep_index: int) -> Path:
    return [index, "conditions", "dependencies", dep_index]


def _cycle_problems(
    specs: list[Any], first: dict[str, int], prefix: Path, source: str
) -> list[Problem]:
    """One problem per dependency that closes a cycle, found by a depth-first walk along
    dependencies (specs in file order, dependencies in listed order)."""
    # Edges from a spec to the specs it waits for: (index of the dependency entry, spec index).
    edges = [
        [(d, first[dep]) for d, dep in enumerate(_dependencies(spec)) if dep in first]
        for spec in specs
    ]
    state = [0] * len(specs)  # 0 not seen, 1 on the current path, 2 done
    problems: list[Problem] = []
    for root in range(len(specs)):
        if state[root]:
            continue
        path = [root]
        todo = [iter(edges[root])]
        state[root] = 1
        while todo:
            step = next(todo[-1], None)
            if step is None:
                state[path.pop()] = 2
                todo.pop()
                continue
            dep_index, target = step
            if state[target] == 1:
                loop = path[path.index(target) :]
                chain = " -> ".join(_name(specs[i]) for i in [loop[-1], *loop])
                problems.append(
                    Problem(
                        source,
                        json_path([*prefix, *_dep_path(path[-1], dep_index)]),
                        f"dependency cycle {chain} (each waits for the next): "
                        "none of them can ever start",
                    )
                )
            elif state[target] == 0:
                state[target] = 1
                path.append(target)
                todo.append(iter(edges[target]))
    return problems

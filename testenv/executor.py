"""A `kubejobs executor` process against the test environment's servers.

``executor_env(...)`` is its configuration as ``KUBEJOBS_*`` variables: which
Colonies server, colony and identity it serves, which cluster and namespace its
Jobs go to, its health endpoint on loopback, plus any further settings
(``RealNode.executor_settings()`` puts its Jobs on the real node). The tests'
executor fixture (tests/integration/test_executor_e2e.py) and ``make demo``
(testenv/demo.py) start it from this; the caller picks the rest of the
environment (the fixture drops the inherited ``KUBEJOBS_*`` variables).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from testenv.colonies import ColoniesServer
    from testenv.kube import KubeCluster


def executor_env(
    colonies: ColoniesServer,
    kube: KubeCluster,
    namespace: str,
    name: str,
    executor_type: str,
    prvkey: str,
    **settings: object,
) -> dict[str, str]:
    """``KUBEJOBS_*`` variables of an executor named ``name`` (type ``executor_type``, key
    ``prvkey``) whose Jobs go to ``namespace``; ``settings`` (``health_port=8081``) add to
    them or override them."""
    env = {
        "KUBEJOBS_COLONIES_HOST": colonies.host,
        "KUBEJOBS_COLONIES_PORT": str(colonies.port),
        "KUBEJOBS_COLONY_NAME": colonies.colony_name,
        "KUBEJOBS_EXECUTOR_NAME": name,
        "KUBEJOBS_EXECUTOR_TYPE": executor_type,
        "KUBEJOBS_EXECUTOR_PRVKEY": prvkey,
        "KUBEJOBS_NAMESPACE": namespace,
        "KUBEJOBS_KUBECONFIG": str(kube.kubeconfig),
        "KUBEJOBS_HEALTH_HOST": "127.0.0.1",
    }
    env.update({f"KUBEJOBS_{key.upper()}": str(value) for key, value in settings.items()})
    return env

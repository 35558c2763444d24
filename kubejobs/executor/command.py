"""`kubejobs executor`: click parses the options, builds the settings, runs the executor.

Every option also reads KUBEJOBS_<NAME> (through the settings loader), and the
config file (--config / KUBEJOBS_CONFIG) may set any ExecutorSettings field.
SIGTERM and SIGINT stop taking work; running Jobs are left for the next start.
"""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType
from typing import Any

import click

from kubejobs.executor.identity import for_replica
from kubejobs.executor.loop import Executor
from kubejobs.executor.settings import ExecutorSettings
from kubejobs.settings import load_settings


@click.command("executor")
@click.option(
    "--config",
    "config_file",
    envvar="KUBEJOBS_CONFIG",
    type=click.Path(dir_okay=False),
    help="Settings file (YAML), any setting by name.",
)
@click.option("--colonies-host", help="Colonies server host.")
@click.option("--colonies-port", type=int, help="Colonies server port.")
@click.option("--colonies-tls/--no-colonies-tls", default=None, help="TLS to the Colonies server.")
@click.option("--colony", "--colony-name", "colony_name", help="Colony name.")
@click.option("--executor-name", help="This executor's name (also marks its Jobs).")
@click.option("--executor-type", help="Executor type specs target [default: kubejobs].")
@click.option(
    "--executor-prvkey-file",
    type=click.Path(dir_okay=False),
    help="File with the executor private key (or KUBEJOBS_EXECUTOR_PRVKEY).",
)
@click.option(
    "--colony-prvkey-file",
    type=click.Path(dir_okay=False),
    help="File with the colony private key, to register itself (or KUBEJOBS_COLONY_PRVKEY).",
)
@click.option("--namespace", help="Namespace of the Jobs [default: the pod's, else default].")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    help="kubeconfig file [default: in-cluster, else ~/.kube/config].",
)
@click.option("--max-jobs", type=int, help="Most Jobs in flight [default: 100].")
@click.option("--capacity-cpu", help="Total CPU the Jobs may request, e.g. 64.")
@click.option("--capacity-mem", help="Total memory the Jobs may request, e.g. 256Gi.")
@click.option("--gpu-resource", help="GPU resource name [default: nvidia.com/gpu].")
@click.option(
    "--pvc",
    help="PersistentVolumeClaim shared by every Job as the data volume (docs/shared-volume.md).",
)
@click.option(
    "--templates",
    "templates_dir",
    type=click.Path(file_okay=False),
    help="Folder of custom templates.",
)
@click.option("--concurrency", type=int, help="Parallel assign-and-apply workers [default: 4].")
@click.option("--keep-failed-seconds", type=int, help="Keep failed Jobs this long [default: 0].")
@click.option("--health-port", type=int, help="Port of /healthz, /readyz, /metrics; 0: off.")
@click.option(
    "--replica",
    "replica_pod",
    metavar="POD",
    help="Run as the replica in StatefulSet pod POD (<set>-<ordinal>): executor name and "
    "key Secret get -<ordinal>; the key is generated.",
)
@click.option(
    "--log-level",
    default="INFO",
    envvar="KUBEJOBS_LOG_LEVEL",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def executor_command(
    config_file: str | None, log_level: str, replica_pod: str | None, **overrides: Any
) -> None:
    """Run processes of a colony as Kubernetes Jobs until SIGTERM."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    settings = load_settings(ExecutorSettings, config_file, os.environ, overrides)
    if replica_pod:
        settings = for_replica(settings, replica_pod)
    executor = Executor(settings)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("signal %d: stopping", signum)
        executor.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    executor.run()

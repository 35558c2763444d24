"""Executor settings: the render settings plus what the controller needs to run."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from kubejobs.errors import SettingsError
from kubejobs.render.settings import RenderSettings
from kubejobs.spec.quantity import parse_quantity


@dataclass(frozen=True)
class ExecutorSettings(RenderSettings):
    """Every executor setting. Env var: KUBEJOBS_<FIELD>; config file keys are the field names."""

    executor_type: str = "kubejobs"
    """Executor type that specs target with conditions.executortype."""
    executor_prvkey: str = field(default="", repr=False)
    """The executor's private key (prefer executor_prvkey_file or the env var)."""
    executor_prvkey_file: str = ""
    """File holding the executor's private key."""
    colony_prvkey: str = field(default="", repr=False)
    """Colony private key, for self-registration (add, approve, register 'execute')."""
    colony_prvkey_file: str = ""
    """File holding the colony private key."""
    kubeconfig: str = ""
    """kubeconfig file; empty: in-cluster config, else the default kubeconfig."""
    max_jobs: int = 100
    """Most Jobs in flight at once."""
    capacity_cpu: str = ""
    """CPU the executor may request in total (a quantity); empty: unlimited."""
    capacity_mem: str = ""
    """Memory the executor may request in total (a quantity); empty: unlimited."""
    concurrency: int = 4
    """Parallel assign-and-apply workers."""
    assign_timeout: int = 10
    """Seconds one assign request long-polls the Colonies server."""
    keepalive_seconds: int = 60
    """While full, how often the executor still tells the server it is alive.

    The Colonies server counts only assign requests as signs of life and
    unregisters an executor silent for 600 s, giving its RUNNING processes to
    others; a full executor therefore sends an assign that matches no process.
    """
    unschedulable_timeout: int = 300
    """Seconds a pod may stay unschedulable before its process fails."""
    start_timeout: int = 300
    """Seconds a Job may exist without any pod, or a scheduled pod may wait on its node without
    starting (a volume that cannot be mounted, a slow image pull), before its process fails.
    The data stager's running time does not count. 0: no limit."""
    keep_failed_seconds: int = 0
    """Keep a failed process's Job this long for inspection before deleting it."""
    takeback_check_seconds: int = 5
    """How often in-flight processes are checked for being taken back by the server."""
    colonies_timeout: int = 30
    """Seconds before a Colonies request (other than assign's long poll) times out."""
    watch_timeout: int = 300
    """Seconds one watch request lasts before it is renewed."""
    health_port: int = 8080
    """Port of /healthz, /readyz and /metrics; 0 turns the endpoint off."""
    health_host: str = "0.0.0.0"
    """Address the health and metrics endpoint binds."""
    max_queued: int = 2
    """With queue_name: most processes taken whose Jobs Kueue has not admitted yet. The
    executor takes no more while this many wait, so other executors can take them."""
    colonies_ca_file: str = ""
    """CA bundle (PEM) the executor verifies the Colonies server's certificate with.
    Empty: the system's public CAs."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in (
            "max_jobs",
            "concurrency",
            "assign_timeout",
            "keepalive_seconds",
            "takeback_check_seconds",
            "colonies_timeout",
            "watch_timeout",
            "max_queued",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1")
        for name in (
            "unschedulable_timeout",
            "start_timeout",
            "keep_failed_seconds",
            "health_port",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be >= 0")
        for name in ("capacity_cpu", "capacity_mem"):
            if getattr(self, name):
                try:
                    parse_quantity(getattr(self, name))
                except ValueError as err:
                    raise SettingsError(f"{name}: {err}") from None

    @property
    def cpu_limit(self) -> Decimal | None:
        return parse_quantity(self.capacity_cpu) if self.capacity_cpu else None

    @property
    def mem_limit(self) -> Decimal | None:
        return parse_quantity(self.capacity_mem) if self.capacity_mem else None

    def required(self) -> None:
        """Raise SettingsError unless the settings are enough to run an executor."""
        missing = [name for name in ("colony_name", "executor_name") if not getattr(self, name)]
        if missing:
            raise SettingsError(
                "the executor needs "
                + " and ".join(f"--{m.replace('_', '-')} (KUBEJOBS_{m.upper()})" for m in missing)
            )
        if not (self.executor_key() or self.colony_key()):
            raise SettingsError(
                "the executor needs a key: KUBEJOBS_EXECUTOR_PRVKEY or "
                "--executor-prvkey-file, or a colony key for self-registration"
            )

    def executor_key(self) -> str:
        return self.executor_prvkey or _read_key(self.executor_prvkey_file, "executor_prvkey_file")

    def colony_key(self) -> str:
        return self.colony_prvkey or _read_key(self.colony_prvkey_file, "colony_prvkey_file")


def _read_key(path: str, name: str) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise SettingsError(f"{name}: cannot read {path}: {err.strerror}") from None

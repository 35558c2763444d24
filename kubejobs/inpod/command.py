"""`kubejobs stage-in` and `kubejobs ship-logs`: click commands over the in-pod library.

Both read the environment kubejobs injects (see config.py). Options also read
KUBEJOBS_* variables. The stager prints its progress on stdout (the shipper
ships it to the process log); the shipper logs to stderr, its own log.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from kubejobs.adapters.cfs import CfsClient, S3Store
from kubejobs.adapters.colonies import ColoniesClient, ColoniesError, ColoniesUnavailable
from kubejobs.adapters.podlogs import PodLogs
from kubejobs.errors import KubejobsError
from kubejobs.inpod import sigterm
from kubejobs.inpod.attempt import AttemptGuard
from kubejobs.inpod.closing import forget, last_to_close
from kubejobs.inpod.config import STAGER_CONTAINER, PodEnv, local_dir
from kubejobs.inpod.output import collect as collect_output
from kubejobs.inpod.output import say_output_set
from kubejobs.inpod.retry import Retrier
from kubejobs.inpod.shipper import Shipper, ShipperOptions
from kubejobs.inpod.stager import stage_in
from kubejobs.inpod.sync import Transfer, clear_dir
from kubejobs.process_io import OUTPUT_LOST, OUTPUT_SET
from kubejobs.spec.model import FileSystem

log = logging.getLogger("kubejobs.inpod")


class ShippingIncomplete(KubejobsError):
    """The shipper stopped before every line was delivered and synced."""


def _stop_stage_in() -> None:
    """SIGTERM during stage-in: the pod is being deleted and the program will never run.

    Exit at once. An exception would not do: it surfaces wherever the main thread is, and
    inside a download that is botocore, whose retry loop catches every Exception.
    """
    print("stage-in: stopped by SIGTERM (the pod is being deleted)", file=sys.stderr, flush=True)
    os._exit(143)


def _logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _client(env: PodEnv) -> ColoniesClient:
    return ColoniesClient(
        env.colonies_host,
        env.colonies_port,
        env.prvkey,
        tls=env.colonies_tls,
        timeout=30.0,
        ca_file=env.colonies_ca_file,
    )


@click.command("stage-in")
@click.option(
    "--retry-seconds",
    type=float,
    default=300.0,
    show_default=True,
    envvar="KUBEJOBS_RETRY_SECONDS",
    help="How long to keep retrying an unreachable Colonies server or S3 endpoint.",
)
def stage_in_command(retry_seconds: float) -> None:
    """Download the spec's fs.snapshots and fs.dirs into the shared volume (init container)."""
    sigterm.install()  # again: `kubejobs stage-in` does not come through entry.py
    # Nothing to finish for the pod that is being deleted: stop at once, not after the grace period.
    sigterm.on_sigterm(_stop_stage_in)
    _logging()
    env = PodEnv.from_environ(os.environ, need_pod=False)
    if env.fs is None:
        click.echo("stage-in: the spec has no fs; nothing to stage")
        return
    transfer = Transfer(
        CfsClient(_client(env), env.colony),
        S3Store.from_env(os.environ),
        Retrier(budget=retry_seconds),
        progress=lambda line: click.echo(f"stage-in: {line}"),
    )
    report = stage_in(env.fs, transfer)
    click.echo(
        f"stage-in: done: {len(report.downloaded)} downloaded ({report.bytes} bytes), "
        f"{len(report.unchanged)} unchanged, {len(report.kept_local)} kept local"
    )


@click.command("ship-logs")
@click.option(
    "--kubeconfig",
    envvar="KUBECONFIG",
    default=None,
    help="Kubeconfig to read pod logs with [default: the pod's service account].",
)
@click.option(
    "--max-batch-bytes",
    type=int,
    default=512 * 1024,
    show_default=True,
    envvar="KUBEJOBS_MAX_BATCH_BYTES",
    help="Upper bound of one log request.",
)
@click.option(
    "--linger",
    type=float,
    default=0.5,
    show_default=True,
    envvar="KUBEJOBS_LINGER",
    help="Longest a line waits for its batch to fill, in seconds.",
)
@click.option(
    "--grace-seconds",
    type=float,
    default=None,
    envvar="KUBEJOBS_GRACE_SECONDS",
    help="The pod's termination grace period: after SIGTERM, give up before it ends "
    "[default: the pod's terminationGracePeriodSeconds, else 30].",
)
@click.option(
    "--retry-seconds",
    type=float,
    default=20.0,
    show_default=True,
    envvar="KUBEJOBS_RETRY_SECONDS",
    help="How long the onclose sync retries an unreachable server.",
)
def ship_logs_command(
    kubeconfig: str | None,
    max_batch_bytes: int,
    linger: float,
    grace_seconds: float | None,
    retry_seconds: float,
) -> None:
    """Ship the pod's container output to the Colonies process log, then sync fs.dirs back."""
    sigterm.install()  # again: `kubejobs ship-logs` does not come through entry.py
    _logging()
    env = PodEnv.from_environ(os.environ)
    client = _client(env)
    kube = PodLogs(env.namespace, env.pod_name, kubeconfig)
    if grace_seconds is None:
        grace_seconds = _pod_grace_seconds(kube)
    output_set: list[int] = []  # files set as the process output by the onclose hook

    def tagged() -> bool:
        if len(env.main_containers) > 1:
            return True
        try:
            process = client.get_process(env.process_id)
        except ColoniesUnavailable:
            raise
        except ColoniesError as err:
            log.warning("could not read the process (%s); assuming one node", err)
            return False
        conditions = (process.get("spec") or {}).get("conditions") or {}
        return int(conditions.get("nodes") or 1) > 1

    shipper = Shipper(
        kube,
        client,
        env.state_dir,
        env.process_id,
        env.colony,
        first=[STAGER_CONTAINER] if env.fs is not None else [],
        containers=env.main_containers,
        rank=env.node_rank,
        tagged=tagged,
        on_close=lambda: close_process(env, client, retry_seconds, output_set),
        options=ShipperOptions(
            max_batch_bytes=max_batch_bytes,
            linger=linger,
            grace_seconds=grace_seconds,
            wait_for_sigterm_on_fatal=env.sidecar_mode == "native",
        ),
        guard=AttemptGuard(lambda: client.get_process(env.process_id), env.attempt),
    )
    sigterm.on_sigterm(shipper.terminate)
    result = shipper.run()
    log.info(
        "shipped %d lines in %d requests (%.1f s)%s%s",
        result.delivered_lines,
        result.requests,
        result.seconds,
        f"; {result.dropped_lines} lines refused by the server" if result.dropped_lines else "",
        "" if result.complete else "; INCOMPLETE",
    )
    # Done means every main container was seen terminated, so exit now in both modes. A
    # native sidecar is not restarted once all main containers have ended (the kubelet
    # kills the pod instead), and waiting for SIGTERM would cost the grace period whenever
    # the signal came before the handler or was lost.
    if result.superseded:
        return  # nothing wrong here: the server moved on; the pod is being deleted
    if not result.complete:
        # An exception, not click's Exit: with standalone_mode=False click returns Exit's code instead.
        # the reason reaches the executor's note through the termination message; the
        # messages above go with the pod
        written = env.node_rank == "0" and collect_output(env.main_containers)[1] > 0
        raise ShippingIncomplete(incomplete(result.reason, sum(output_set), written))


def incomplete(reason: str, output_set: int, output_written: bool) -> str:
    """What a shipper that gave up says (its termination message, which the executor reads):
    whether the process output is set, or was written and not set, comes first."""
    if output_set:  # the executor must not close with termination messages instead
        return f"{OUTPUT_SET}{output_set} file(s); then {reason}"
    if output_written:  # the executor fails the process: its output is not the program's
        return (
            f"{OUTPUT_LOST}the program wrote its output file(s) but the log shipper gave up "
            f"before it could set them as the process output: {reason}"
        )
    return f"not every log line was delivered: {reason}"


def _pod_grace_seconds(kube: PodLogs) -> float:
    """The pod's terminationGracePeriodSeconds (best effort: 30 when it cannot be read now)."""
    try:
        value = kube.pod().get("spec", {}).get("terminationGracePeriodSeconds")
    except KubejobsError as err:
        log.warning("could not read the pod's grace period (%s); assuming 30 s", err)
        return 30.0
    return float(value) if isinstance(value, int | float) else 30.0


def close_process(
    env: PodEnv, client: ColoniesClient, retry_seconds: float, output_set: list[int]
) -> None:
    """After the last line is shipped: the output files, then the fs.dirs sync."""
    output_set.append(deliver_output(env, client, retry_seconds))
    close_fs(env, client, retry_seconds)


def deliver_output(env: PodEnv, client: ColoniesClient, retry_seconds: float) -> int:
    """The main containers' output files as the process output (node rank 0's pod only: one
    process has one output, and several pods setting it would overwrite each other); how
    many files were set."""
    if env.node_rank != "0":
        return 0
    output, used, problems = collect_output(env.main_containers)
    retry = Retrier(budget=retry_seconds)
    for problem in problems:
        log.error("%s", problem)
        retry(lambda p=problem: client.add_log(env.process_id, f"kubejobs: {p}\n"), "log it")  # type: ignore[misc]
    if output is not None:
        retry(lambda: client.set_output(env.process_id, output), "set the process output")
        say_output_set(used)
        log.info("process output set from %d file(s)", used)
        return used
    return 0


def close_fs(env: PodEnv, client: ColoniesClient, retry_seconds: float) -> None:
    """fs.dirs back to their labels (onclose keeplocal), then keepfiles/keepsnapshot clean-up.

    On a volume several ranks share, only the last rank to end does it, for all (closing.py).
    """
    fs = env.fs
    if fs is None:
        return
    mount = Path(fs.mount)
    shared = env.shared_volume_pods > 1
    if shared and not last_to_close(
        mount, env.process_id, env.attempt, env.node_rank, env.shared_volume_pods
    ):
        log.info(
            "onclose: rank %s has ended; the last of the %d ranks sharing the volume syncs",
            env.node_rank,
            env.shared_volume_pods,
        )
        return
    _close_fs(env, fs, client, retry_seconds, remove_snapshots=shared or env.node_rank == "0")
    if shared:
        forget(mount, env.process_id, env.attempt)


def _close_fs(
    env: PodEnv,
    fs: FileSystem,
    client: ColoniesClient,
    retry_seconds: float,
    remove_snapshots: bool,
) -> None:
    cfs = CfsClient(client, env.colony)
    retry = Retrier(budget=retry_seconds)
    if fs.dirs:
        transfer = Transfer(
            cfs, S3Store.from_env(os.environ), retry, progress=lambda line: log.info("%s", line)
        )
        for entry in fs.dirs:
            folder = local_dir(fs, entry.dir)
            report = transfer.upload_dir(folder, entry.label, entry.onclose_keeplocal)
            log.info(
                "onclose %s -> %s: %d uploaded, %d unchanged, %d kept remote",
                folder,
                entry.label,
                len(report.uploaded),
                len(report.unchanged),
                len(report.kept_remote),
            )
            if not entry.keepfiles:
                clear_dir(folder)
    for snapshot in fs.snapshots:
        if not snapshot.keepfiles:
            clear_dir(local_dir(fs, snapshot.dir))
        if not snapshot.keepsnapshot and snapshot.snapshotid and remove_snapshots:
            try:
                retry(
                    lambda s=snapshot: cfs.remove_snapshot(s.snapshotid),  # type: ignore[misc]
                    f"remove snapshot {snapshot.snapshotid}",
                )
            except ColoniesError as err:
                log.warning("could not remove snapshot %s: %s", snapshot.snapshotid, err)


@click.group()
def inpod() -> None:
    """The in-pod programs (also registered on the kubejobs command)."""


inpod.add_command(stage_in_command)
inpod.add_command(ship_logs_command)

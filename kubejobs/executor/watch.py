"""List-then-watch of the managed Jobs, their pods, or the Job controller's FailedCreate events.

One watch per kind: a full list first (delivered as one SYNC, which replaces the
reconciler's cache, so objects deleted while nobody watched are noticed), then a
watch from the list's resourceVersion, renewed from the last seen version when the
server ends it, and re-listed on 410 Gone. Errors back off; nothing is polled.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kubejobs.adapters.kube import KubeClient, KubeError, WatchExpired
from kubejobs.executor.backoff import Backoff

log = logging.getLogger(__name__)

Sink = Callable[[str, str, Any], None]  # (kind, event type or "SYNC", object or item list)


class Watcher(threading.Thread):
    def __init__(
        self,
        kube: KubeClient,
        kind: str,
        namespace: str,
        selector: str,
        sink: Sink,
        stop: threading.Event,
        timeout_seconds: int = 300,
        on_error: Callable[[str], None] | None = None,
        field_selector: str = "",
    ) -> None:
        super().__init__(name=f"watch-{kind.lower()}", daemon=True)
        self.kube = kube
        self.kind = kind
        self.namespace = namespace
        self.selector = selector
        self.field_selector = field_selector
        self.sink = sink
        self.stop = stop
        self.timeout_seconds = timeout_seconds
        self.on_error = on_error or (lambda _api: None)

    def run(self) -> None:
        backoff = Backoff()
        while not self.stop.is_set():
            try:
                items, version = self.kube.list(
                    self.kind, self.namespace, self.selector, self.field_selector
                )
                self.sink(self.kind, "SYNC", items)
                backoff.reset()
                while not self.stop.is_set():
                    version = self._watch(version)
            except WatchExpired:
                log.info("watch of %s expired; listing again", self.kind)
            except KubeError as err:
                self.on_error("kube")
                log.warning("watch of %s failed: %s", self.kind, err)
                if backoff.wait(self.stop):
                    return

    def _watch(self, version: str) -> str:
        for event in self.kube.watch(
            self.kind,
            self.namespace,
            self.selector,
            version,
            self.timeout_seconds,
            self.field_selector,
        ):
            obj = event.get("object") or {}
            version = (obj.get("metadata") or {}).get("resourceVersion") or version
            if event.get("type") != "BOOKMARK":
                self.sink(self.kind, str(event.get("type")), obj)
            if self.stop.is_set():
                break
        return version

"""The executor's start-up check of what its Jobs need in the namespace (no servers)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kubejobs.adapters.kube import KubeError
from kubejobs.executor.preflight import problems
from kubejobs.render import Renderer, RenderSettings

KEY = base64.b64encode(b"a" * 64).decode()


class Objects:
    """A namespace's objects by (kind, name); `forbidden` kinds answer 403 like RBAC does."""

    def __init__(self, objects: dict[tuple[str, str], Any], forbidden: tuple[str, ...] = ()):
        self.objects = objects
        self.forbidden = forbidden

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if kind in self.forbidden:
            raise KubeError(f"{kind} {name} is forbidden", 403, "Forbidden")
        found: dict[str, Any] | None = self.objects.get((kind, name))
        return found


ALL = {
    ("ServiceAccount", "kubejobs-log-shipper"): {},
    ("Secret", "kubejobs-executor-key"): {"data": {"prvkey": KEY}},
}


def check(objects: Objects, **settings: Any) -> list[str]:
    return problems(objects, "jobs", Renderer(RenderSettings(**settings)))  # type: ignore[arg-type]


def test_everything_in_place_is_ready() -> None:
    assert check(Objects(dict(ALL))) == []


def test_missing_service_account_says_how_to_create_it() -> None:
    objects = dict(ALL)
    del objects[("ServiceAccount", "kubejobs-log-shipper")]
    (problem,) = check(Objects(objects))
    assert 'service account "kubejobs-log-shipper"' in problem and '"jobs"' in problem
    assert "kubectl -n jobs create serviceaccount kubejobs-log-shipper" in problem


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        (None, "is missing"),
        ({"data": {"other": KEY}}, 'has no key "prvkey"'),
        ({"data": {"prvkey": ""}}, 'has no key "prvkey"'),
    ],
)
def test_key_secret_missing_or_without_the_key(secret: dict[str, Any] | None, says: str) -> None:
    objects: dict[tuple[str, str], Any] = dict(ALL)
    objects[("Secret", "my-key")] = secret
    (problem,) = check(Objects(objects), executor_key_secret="my-key")
    assert 'Secret "my-key"' in problem and says in problem
    assert "kubectl -n jobs create secret generic my-key --from-file=prvkey=" in problem


def test_what_it_may_not_read_is_not_reported() -> None:
    assert check(Objects({}, forbidden=("ServiceAccount", "Secret"))) == []


def test_other_api_errors_are_raised() -> None:
    class Down(Objects):
        def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
            raise KubeError("etcd unavailable", 500)

    with pytest.raises(KubeError):
        check(Down({}))


def test_templates_that_cannot_render_are_reported(tmp_path: Any) -> None:
    (tmp_path / "job.yaml.j2").write_text("kind: {{ nope | tojson }}\n")
    (problem,) = check(Objects(dict(ALL)), templates_dir=str(tmp_path))
    assert problem.startswith(f"the templates ({tmp_path}) cannot render the simplest spec:")
    assert "nope" in problem


class WithApis(Objects):
    """Objects plus raw GETs of API groups: `apis` lists the group paths the server serves."""

    def __init__(self, objects: dict[tuple[str, str], Any], apis: tuple[str, ...]):
        super().__init__(objects)
        self.apis = apis

    def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        if path not in self.apis:
            raise KubeError(f"GET {path}: 404 page not found", 404, "NotFound")
        return {}


def test_a_queue_needs_kueue_installed() -> None:
    (problem,) = check(WithApis(dict(ALL), apis=()), queue_name="team-a")
    assert problem.startswith("Kueue is not installed (no kueue.x-k8s.io/v1beta2 API)")
    assert '"team-a"' in problem and "empty queue_name" in problem


def test_a_queue_needs_its_local_queue() -> None:
    objects = WithApis(dict(ALL), apis=("/apis/kueue.x-k8s.io/v1beta2",))
    (problem,) = check(objects, queue_name="team-a")
    assert problem.startswith(
        'LocalQueue "team-a" (setting queue_name) is missing in namespace "jobs"'
    )
    objects.objects[("LocalQueue", "team-a")] = {"spec": {"clusterQueue": "cq"}}
    assert check(objects, queue_name="team-a") == []


@pytest.mark.parametrize(
    ("kind", "setting"), [("ConfigMap", "colonies_ca_configmap"), ("Secret", "colonies_ca_secret")]
)
def test_the_colonies_ca_bundle_must_exist_with_its_key(kind: str, setting: str) -> None:
    objects = Objects(dict(ALL))
    (problem,) = check(objects, **{setting: "colonies-ca"})
    assert problem.startswith(
        f'{kind} "colonies-ca" (the Colonies CA bundle, setting {setting}) is missing'
    )
    assert "--from-file=ca.crt=CA_BUNDLE.pem" in problem
    objects.objects[(kind, "colonies-ca")] = {"data": {"other": "x"}}
    (problem,) = check(objects, **{setting: "colonies-ca"})
    assert 'has no key "ca.crt"' in problem
    objects.objects[(kind, "colonies-ca")] = {"data": {"ca.crt": "PEM"}}
    assert check(objects, **{setting: "colonies-ca"}) == []

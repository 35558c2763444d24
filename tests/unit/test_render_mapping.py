"""One test per row of the spec-to-manifest mapping (DESIGN.md, README)."""

from __future__ import annotations

import shlex

from kubejobs.render import job_name
from tests.unit.helpers import PID, env_of, job_of, mains, pod_of, render, spec_with


def test_single_node_job() -> None:
    manifests = render(spec_with())
    assert [m["kind"] for m in manifests] == ["Job"]
    job = job_of(manifests)["spec"]
    assert (job["completions"], job["parallelism"]) == (1, 1)
    assert "completionMode" not in job
    assert "subdomain" not in job["template"]["spec"]


def test_nodes_make_an_indexed_job_with_a_headless_service() -> None:
    manifests = render(spec_with(conditions={"nodes": 3}))
    job, service = manifests
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 3
    assert job["spec"]["completionMode"] == "Indexed"
    name = job["metadata"]["name"]
    assert service["kind"] == "Service" and service["metadata"]["name"] == name
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    pod = job["spec"]["template"]
    assert pod["spec"]["subdomain"] == name
    assert all(pod["metadata"]["labels"][k] == v for k, v in service["spec"]["selector"].items())
    env = env_of(mains(manifests)[0])
    assert env["KUBEJOBS_HOSTS"] == ",".join(f"{name}-{i}.{name}" for i in range(3))
    assert env["KUBEJOBS_NNODES"] == "3"
    assert env["KUBEJOBS_NODE_RANK"] == {
        "fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        }
    }


def test_processes_per_node_make_main_containers_with_local_rank() -> None:
    containers = mains(render(spec_with(conditions={"nodes": 2, "processespernode": 3})))
    assert [c["name"] for c in containers] == ["main-0", "main-1", "main-2"]
    for rank, container in enumerate(containers):
        env = env_of(container)
        assert env["KUBEJOBS_LOCAL_RANK"] == str(rank)
        assert env["KUBEJOBS_LOCAL_WORLD_SIZE"] == "3"
        assert env["KUBEJOBS_WORLD_SIZE"] == "6"


def test_cpu_and_mem_are_requests_and_limits_of_each_main_container() -> None:
    containers = mains(
        render(spec_with(conditions={"cpu": "1500m", "mem": "953Mi", "processespernode": 2}))
    )
    for c in containers:
        assert c["resources"] == {
            "requests": {"cpu": "1500m", "memory": "953Mi"},
            "limits": {"cpu": "1500m", "memory": "953Mi"},
        }


def test_no_resources_when_the_spec_names_none() -> None:
    data = spec_with()
    data["conditions"] = {}
    assert "resources" not in mains(render(data))[0]


def test_gpu_count_and_name_use_the_configured_resource_and_label() -> None:
    data = spec_with(conditions={"gpu": {"count": 2, "name": "MI300X"}})
    manifests = render(
        data,
        gpu_resource="amd.com/gpu",
        gpu_node_label="amd.com/gpu.product-name",
        node_selector={"pool": "gpu"},
    )
    assert mains(manifests)[0]["resources"]["limits"]["amd.com/gpu"] == 2
    assert pod_of(manifests)["nodeSelector"] == {
        "pool": "gpu",
        "amd.com/gpu.product-name": "MI300X",
    }


def test_gpu_count_zero_adds_no_resource() -> None:
    limits = mains(render(spec_with(conditions={"gpu": {"count": 0}})))[0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in limits


def test_walltime_is_active_deadline_seconds() -> None:
    assert (
        job_of(render(spec_with(conditions={"walltime": 300})))["spec"]["activeDeadlineSeconds"]
        == 300
    )
    assert (
        "activeDeadlineSeconds"
        not in job_of(render(spec_with(conditions={"walltime": -1})))["spec"]
    )


def test_cmd_string_is_split_into_exec_form_without_a_shell() -> None:
    (main,) = mains(
        render(spec_with(kwargs={"cmd": "python3 -c 'print(\"a b\")'", "args": ["x y", 3, True]}))
    )
    assert main["command"] == ["python3", "-c", 'print("a b")']
    assert main["args"] == ["x y", "3", "true"]


def test_cmd_list_is_taken_as_given() -> None:
    (main,) = mains(render(spec_with(kwargs={"cmd": ["sh", "-c", "echo a | wc"]})))
    assert main["command"] == ["sh", "-c", "echo a | wc"]
    assert "args" not in main


def test_processid_is_substituted_everywhere_it_is_documented() -> None:
    data = spec_with(
        kwargs={
            "cmd": "run {processid}",
            "args": ["--id={processid}"],
            "init-cmd": "echo {processid}",
        },
        env={"RUN": "r-{processid}"},
        fs={"mount": "/cfs", "dirs": [{"label": "/out/{processid}", "dir": "/o/{processid}"}]},
    )
    manifests = render(data)
    (main,) = mains(manifests)
    assert main["args"] == [
        f'{{\necho {PID}\n}} && exec "$$@"',
        "kubejobs-init",
        "run",
        PID,
        f"--id={PID}",
    ]
    assert env_of(main)["RUN"] == f"r-{PID}"
    stager = pod_of(manifests)["initContainers"][1]
    assert f'"label":"/out/{PID}"' in env_of(stager)["KUBEJOBS_FS"]
    assert "{processid}" not in str(manifests)


def test_init_cmd_runs_in_a_shell_and_execs_the_command_unparsed() -> None:
    data = spec_with(
        kwargs={
            "cmd": ["echo", "it's $HOME; rm -rf /"],
            "args": ["a b"],
            "init-cmd": "export X=1\ncd /tmp",
        }
    )
    (main,) = mains(render(data))
    assert main["command"] == ["/bin/sh", "-c"]
    script, name, *rest = main["args"]
    assert script == '{\nexport X=1\ncd /tmp\n} && exec "$$@"'
    assert name == "kubejobs-init"
    # $ is doubled for Kubernetes' $(VAR) expansion; the shell receives the words as positional parameters.
    assert rest == ["echo", "it's $$HOME; rm -rf /", "a b"]
    assert shlex.split(script.replace("$$", "$"))[-2:] == ["exec", "$@"]


def test_env_plus_process_id_and_colony() -> None:
    data = spec_with(env={"B": "2", "A": "1"}, conditions={"colonyname": "research"})
    env = env_of(mains(render(data, colony_name="fallback"))[0])
    assert env["A"] == "1" and env["B"] == "2"
    assert env["COLONIES_PROCESS_ID"] == PID
    assert env["COLONIES_COLONY_NAME"] == "research"
    assert (
        env_of(mains(render(spec_with(), colony_name="fallback"))[0])["COLONIES_COLONY_NAME"]
        == "fallback"
    )


def test_kubernetes_variable_expansion_is_escaped() -> None:
    (main,) = mains(
        render(spec_with(kwargs={"cmd": ["echo", "$(HOME)", "$$x"]}, env={"V": "$(HOME)"}))
    )
    assert main["command"] == ["echo", "$$(HOME)", "$$$$x"]
    assert env_of(main)["V"] == "$$(HOME)"


def test_job_name_fits_63_and_the_full_id_is_an_annotation() -> None:
    job = job_of(render(spec_with()))
    assert job["metadata"]["name"] == job_name(PID) == "kj-" + PID[:40]
    assert len(job["metadata"]["name"]) <= 63
    assert job["metadata"]["annotations"]["kubejobs.io/process-id"] == PID
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "kubejobs"
        assert meta["labels"]["kubejobs.io/process"] == PID[:40]
        assert all(len(v) <= 63 for v in meta["labels"].values())


def test_job_policy_choices() -> None:
    job = job_of(render(spec_with(), ttl_seconds_after_finished=600, termination_grace_seconds=45))[
        "spec"
    ]
    assert job["backoffLimit"] == 0
    assert job["ttlSecondsAfterFinished"] == 600
    assert job["podFailurePolicy"]["rules"][0]["action"] == "Ignore"
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    assert job["template"]["spec"]["terminationGracePeriodSeconds"] == 45


def test_executor_settings_reach_the_pod() -> None:
    manifests = render(
        spec_with(),
        namespace="batch",
        executor_name="kj-1",
        image_pull_secrets=("regcred",),
        service_account="shipper",
        tolerations=({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},),
        priority_class="high",
        extra_labels={"team": "ml"},
        extra_annotations={"cost-center": "42"},
    )
    job = job_of(manifests)
    pod = pod_of(manifests)
    assert job["metadata"]["namespace"] == "batch"
    assert job["metadata"]["annotations"]["kubejobs.io/executor"] == "kj-1"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["serviceAccountName"] == "shipper"
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "high"
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        assert meta["labels"]["team"] == "ml"
        assert meta["annotations"]["cost-center"] == "42"


def test_extra_labels_cannot_override_identity() -> None:
    job = job_of(render(spec_with(), extra_labels={"app.kubernetes.io/managed-by": "helm"}))
    assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubejobs"


def test_host_network_setting_puts_the_pods_on_the_node_network() -> None:
    plain = pod_of(render(spec_with()))
    assert "hostNetwork" not in plain and "dnsPolicy" not in plain
    pod = pod_of(render(spec_with(conditions={"nodes": 2}), host_network=True))
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"

"""Smoke tests: the Colonies server and the S3 endpoint are real servers on loopback."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from testenv.colonies import FAILED, RUNNING, SUCCESS, WAITING, ColoniesRPCError

pytestmark = pytest.mark.integration


def spec(**extra):
    body = {
        "funcname": "echo",
        "kwargs": {"docker-image": "busybox:1.36", "cmd": "echo"},
        "args": ["hello"],
        "label": "smoke",
    }
    body.update(extra)
    return body


def test_health(colonies):
    assert colonies.healthy()


def test_submit_assign_log_close_and_read_logs(colonies):
    proc = colonies.submit(spec())
    assert proc["state"] == WAITING
    assigned = colonies.assign(timeout=5)
    assert assigned["processid"] == proc["processid"]
    assert assigned["state"] == RUNNING
    colonies.add_log(proc["processid"], "line 1\nline 2\n")
    colonies.add_log(proc["processid"], "line 3\n")
    colonies.close(proc["processid"], out=["done"])
    final = colonies.get_process(proc["processid"])
    assert final["state"] == SUCCESS
    assert final["out"] == ["done"]
    assert colonies.log_text(proc["processid"]) == "line 1\nline 2\nline 3\n"
    logs = colonies.get_logs(proc["processid"])
    assert len(logs) == 2 and logs[0]["timestamp"] < logs[1]["timestamp"]
    assert (
        colonies.get_logs(proc["processid"], since=logs[0]["timestamp"])[0]["message"] == "line 3\n"
    )


def test_fail_and_no_work_is_an_error(colonies):
    proc = colonies.submit(spec())
    colonies.assign(timeout=5)
    colonies.fail(proc["processid"], ["exit code 3"])
    assert colonies.get_process(proc["processid"])["errors"] == ["exit code 3"]
    assert colonies.get_process(proc["processid"])["state"] == FAILED
    with pytest.raises(ColoniesRPCError, match="No process available"):
        colonies.assign(timeout=1)


def test_only_the_assigned_executor_may_close(colonies):
    other, other_key = colonies.add_executor(f"other-{uuid.uuid4().hex[:6]}")
    proc = colonies.submit(spec(conditions={"executornames": [colonies.executor_name]}))
    colonies.assign(timeout=5)
    with pytest.raises(ColoniesRPCError):
        colonies.close(proc["processid"], prvkey=other_key)
    colonies.close(proc["processid"])
    colonies.remove_executor(other)


def test_maxexectime_puts_process_back(colonies):
    proc = colonies.submit(spec(maxexectime=1, maxretries=3))
    colonies.assign(timeout=5)
    back = colonies.wait_state(proc["processid"], (WAITING,), timeout=15)
    assert back["retries"] == 1
    colonies.assign(timeout=5)
    colonies.close(proc["processid"])


def test_state_survives_restart(colonies):
    proc = colonies.submit(spec())
    colonies.restart()
    assert colonies.get_process(proc["processid"])["state"] == WAITING
    colonies.assign(timeout=5)
    colonies.close(proc["processid"])


def test_pycolonies_client_interoperates(colonies):
    from pycolonies import Colonies

    client = Colonies(colonies.host, colonies.port)
    proc = colonies.submit(spec())
    got = client.get_process(proc["processid"], colonies.executor_prvkey)
    assert got.processid == proc["processid"]
    assigned = client.assign(colonies.colony_name, 5, colonies.executor_prvkey)
    client.add_log(assigned.processid, "from pycolonies\n", colonies.executor_prvkey)
    client.close(assigned.processid, [], colonies.executor_prvkey)
    logs = client.get_process_log(
        colonies.colony_name, assigned.processid, 100, 0, colonies.executor_prvkey
    )
    assert [entry["message"] for entry in logs] == ["from pycolonies\n"]


def test_cfs_file_round_trip_through_s3(colonies, s3, tmp_path):
    data = b"kubejobs cfs round trip\n" * 100
    checksum = hashlib.sha256(data).hexdigest()
    obj = uuid.uuid4().hex
    s3.client().put_object(Bucket=s3.config.bucket, Key=obj, Body=data)
    added = colonies.add_file("/smoke/input", "data.txt", len(data), checksum, obj, s3.config)
    (meta,) = colonies.get_file("/smoke/input", "data.txt")
    assert meta["fileid"] == added["fileid"]
    ref = meta["ref"]["s3object"]
    assert f"{ref['server']}:{ref['port']}" == s3.config.endpoint
    body = s3.client().get_object(Bucket=ref["bucket"], Key=ref["object"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == meta["checksum"] == checksum


def test_pycolonies_cfs_upload_and_download(colonies, s3, tmp_path, monkeypatch):
    for key, value in s3.config.env.items():
        monkeypatch.setenv(key, value)
    from pycolonies import Colonies

    client = Colonies(colonies.host, colonies.port)
    src = tmp_path / "hello.txt"
    src.write_text("hello cfs\n")
    client.upload_file(
        colonies.colony_name, colonies.executor_prvkey, filepath=str(src), label="/smoke/py"
    )
    (meta,) = colonies.get_file("/smoke/py", "hello.txt")
    dest = tmp_path / "out"
    dest.mkdir()
    client.download_file(
        colonies.colony_name,
        colonies.executor_prvkey,
        dst=str(dest),
        label="/smoke/py",
        filename="hello.txt",
    )
    assert (dest / "hello.txt").read_text() == "hello cfs\n"
    assert meta["size"] == len("hello cfs\n")

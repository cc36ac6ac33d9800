"""A real JupyterLab (PyPI `jupyterlab`) through the launcher: its API and a kernel's
WebSocket through the proxy, and nothing of it left once stopped."""

import json
import uuid

import pytest
import requests
import websocket

from conftest import pids_with, wait_gone


def kernel_message(msg_type, content, session):
    return {"header": {"msg_id": uuid.uuid4().hex, "username": "alice", "session": session,
                       "msg_type": msg_type, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}


def test_jupyterlab_through_the_proxy(lab):
    inst = lab.running("alice", "jupyterlab")
    url = lab.base + inst["url"]
    status = requests.get(url + "api/status", headers=lab.auth("alice"), timeout=30)
    assert status.status_code == 200, status.text
    assert "started" in status.json()
    # Without the launcher's credentials nobody gets in: not bob, not an anonymous caller.
    assert requests.get(url + "api/status", headers=lab.auth("bob"), timeout=30).status_code == 404
    assert requests.get(url + "api/status", timeout=30).status_code == 401
    # Another process on this machine reaching the port directly gets nowhere: the instance's
    # secret is in its environment, not on its command line (which every process can read).
    record = next(r for r in json.loads((lab.root / "state" / "launcher" / "instances.json").read_text())
                  if r["id"] == inst["id"])
    assert pids_with(inst["id"]) and not pids_with(record["token"])
    direct = requests.get(f"http://127.0.0.1:{record['port']}{inst['url']}api/status", timeout=30)
    assert direct.status_code == 403, direct.text
    # JupyterLab itself answers its page through the proxy (its base URL is the instance's).
    page = requests.get(url + "lab", headers=lab.auth("alice"), timeout=60)
    assert page.status_code == 200 and "JupyterLab" in page.text

    kernel = requests.post(url + "api/kernels", headers=lab.auth("alice"), json={"name": "python3"}, timeout=60)
    assert kernel.status_code == 201, kernel.text
    kernel_id = kernel.json()["id"]
    ws_url = url.replace("http://", "ws://") + f"api/kernels/{kernel_id}/channels"
    ws = websocket.create_connection(ws_url, header=[f"Authorization: Bearer {lab.tokens['alice']}"], timeout=60)
    try:
        session = uuid.uuid4().hex
        request = kernel_message("execute_request", {
            "code": "import os; print(6 * 7, os.getcwd())", "silent": False, "store_history": False,
            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}, session)
        ws.send(json.dumps(request))
        printed = None
        for _ in range(200):
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != request["header"]["msg_id"]:
                continue
            if msg["msg_type"] == "stream":
                printed = msg["content"]["text"]
            if msg["msg_type"] == "execute_reply":
                assert msg["content"]["status"] == "ok", msg["content"]
                break
        assert printed == f"42 {lab.workspaces / 'users' / 'alice'}\n", printed
        # An open WebSocket keeps the instance from being idle.
        assert lab.get("alice", f"/instances/{inst['id']}").json()["state"] == "running"
    finally:
        ws.close()

    server_pids = pids_with(inst["id"])
    assert server_pids, "the JupyterLab process carries its base URL"
    kernel_pids = pids_with(kernel_id)
    assert kernel_pids, "the kernel carries its id in its connection file"
    assert lab.stop("alice", inst["id"]).status_code == 204
    assert wait_gone(server_pids + kernel_pids, timeout=5) == []
    assert requests.get(url + "api/status", headers=lab.auth("alice"), timeout=30).status_code == 404

"""The status write against a real API server: it lands only on the object of the uid it was
meant for, never on a re-created one of the same name (the status subresource ignores metadata
in a merge patch, so the uid is a JSON Patch test)."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

from aiops_operator.kube import KubeApiError, KubeClient
from aiops_operator.spec import GROUP, KIND, VERSION
from tests.operator.operator_helpers import Kube, example

pytestmark = pytest.mark.integration

API_VERSION = f"{GROUP}/{VERSION}"


def test_a_status_write_for_a_deleted_object_is_refused_by_its_re_created_namesake(
    kube: Kube, cluster_wide_paused: None
) -> None:
    kube.apply(example("namesake"))
    old = (kube.get("modelservice", "namesake") or {})["metadata"]["uid"]
    kube.kubectl("delete", "modelservice", "namesake")
    kube.apply(example("namesake"))
    new = (kube.get("modelservice", "namesake") or {})["metadata"]["uid"]
    path = str(kube.cluster.kubeconfig)

    async def write(uid: str) -> tuple[Any, str | None]:
        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
        client = KubeClient(info)
        try:
            try:
                await client.write_status(
                    API_VERSION, KIND, kube.namespace, "namesake", uid, {"observedGeneration": 9}
                )
            except KubeApiError as err:
                return err.status, await client.uid_of(
                    API_VERSION, KIND, kube.namespace, "namesake"
                )
            return 200, None
        finally:
            await client.close()

    with pytest.MonkeyPatch.context() as env:
        env.setenv("KUBECONFIG", path)
        assert asyncio.run(write(old)) == (422, new)
        assert (kube.get("modelservice", "namesake") or {}).get("status") is None
        assert asyncio.run(write(new)) == (200, None)
    assert (kube.get("modelservice", "namesake") or {})["status"] == {"observedGeneration": 9}

"""The OpenAPI description: well formed, and every operation's example works on a fresh node."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from node.actions import ACTIONS


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]


async def test_description_is_openapi_31_and_complete(client: TestClient[Any, Any]) -> None:
    spec = await (await client.get("/api/v1/openapi.json")).json()
    assert (
        spec["openapi"] == "3.1.0" and spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    )
    ids = [op["operationId"] for _, _, op in _operations(spec)]
    assert len(ids) == len(set(ids))
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in client.app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith("/api/") and r.method != "HEAD"
    }
    described = {(method, path) for path, method, _ in _operations(spec)}
    assert routes == described
    assert set(spec["components"]["schemas"]["Event"]["properties"]["action"]["enum"]) == set(ACTIONS)


async def test_every_example_works_against_a_fresh_node(client: TestClient[Any, Any], token: str) -> None:
    spec = await (await client.get("/api/v1/openapi.json")).json()
    headers = {"Authorization": f"Bearer {token}"}
    linked: dict[str, dict[str, Any]] = {}  # operationId -> path parameters supplied by earlier responses
    executed = 0
    for path, method, op in _operations(spec):
        params = {p["name"]: p for p in op.get("parameters", [])}
        url = path
        for name in re.findall(r"{(\w+)}", path):
            assert name in linked.get(op["operationId"], {}), f"{op['operationId']}: no link supplies {name}"
            url = url.replace("{" + name + "}", linked[op["operationId"]][name])
        query = {n: p["example"] for n, p in params.items() if p["in"] == "query" and "example" in p}
        examples = (
            list(op["requestBody"]["content"]["application/json"]["examples"].values())
            if "requestBody" in op
            else [None]
        )
        assert examples, op["operationId"]
        for example in examples:
            body = example["value"] if example else None
            response = await client.request(method.upper(), url, json=body, params=query, headers=headers)
            documented = {int(code) for code in op["responses"] if code.isdigit()}
            assert response.status < 300, (op["operationId"], example, await response.text())
            assert response.status in documented, (op["operationId"], response.status)
            result = await response.json()
            executed += 1
            for link in op["responses"].get(str(response.status), {}).get("links", {}).values():
                supplied = {}
                for name, expression in link["parameters"].items():
                    pointer = expression.removeprefix("$response.body#/")
                    supplied[name] = result[pointer]
                linked[link["operationId"]] = supplied
    # six event examples for one operation, two receptions (a fee collected; the last one's code is linked)
    assert executed == len(_operations(spec)) + 6

"""The server's generated /openapi.json validates as an OpenAPI 3.1 document, and
a Python client generated from it (openapi-python-client) calls the server."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

# The CodePipeline protocol on `POST /` is AWS JSON 1.1 (`application/x-amz-json-1.1`),
# a content type openapi-python-client does not generate; every /v1 route is generated.
NOT_GENERATED = "POST /"


def test_openapi_document_validates_as_3_1(endpoint):
    doc = requests.get(f"{endpoint}/openapi.json", timeout=10).json()
    assert doc["openapi"] == "3.1.0"
    validate(doc, cls=OpenAPIV31SpecValidator)
    assert "/v1/pipelines" in doc["paths"]


@pytest.fixture(scope="module")
def generated(endpoint, tmp_path_factory):
    """The package openapi-python-client generates from the served document."""
    out = tmp_path_factory.mktemp("generated")
    doc = out / "openapi.json"
    doc.write_text(json.dumps(requests.get(f"{endpoint}/openapi.json", timeout=10).json()))
    package = out / "redrive_client"
    generator = Path(sys.executable).parent / "openapi-python-client"
    r = subprocess.run(
        [str(generator), "generate", "--path", str(doc), "--output-path", str(package), "--meta", "none"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    warnings = [line for line in r.stdout.splitlines() if line.startswith("WARNING")]
    assert all(NOT_GENERATED in w for w in warnings), r.stdout
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("redrive_client")
    finally:
        sys.path.remove(str(out))


def test_a_generated_client_lists_pipelines_and_reads_an_execution(endpoint, generated):
    name = f"gen-{uuid.uuid4().hex[:8]}"
    definition = {"name": name, "stages": [{"name": "S", "actions": [{"name": "A", "noop": {}}]}]}
    requests.post(f"{endpoint}/v1/pipelines", json=definition, timeout=10).raise_for_status()

    from redrive_client import Client
    # Operations are grouped by their tags: one module per tag.
    from redrive_client.api.executions import list_executions, start_execution
    from redrive_client.api.pipelines import list_pipelines
    from redrive_client.models import ExecutionList, ExecutionStatus, PipelineList, StartExecutionRequest

    client = Client(base_url=endpoint, raise_on_unexpected_status=True)
    page = list_pipelines.sync(client=client, limit=1000)
    assert isinstance(page, PipelineList), page
    assert name in [p.name for p in page.pipelines]

    started = start_execution.sync(name=name, client=client, body=StartExecutionRequest(client_request_token="gen-1"))
    executions = list_executions.sync(name=name, client=client)
    assert isinstance(executions, ExecutionList), executions
    assert [e.pipeline_execution_id for e in executions.executions] == [started.pipeline_execution_id]
    # Statuses parse into the generated enum, whose values are the wire strings.
    assert isinstance(executions.executions[0].status, ExecutionStatus)
    assert executions.executions[0].status.value in {"InProgress", "Succeeded"}

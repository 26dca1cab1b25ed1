"""The server's generated /openapi.json validates as an OpenAPI 3.1 document."""

import requests
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator


def test_openapi_document_validates_as_3_1(endpoint):
    doc = requests.get(f"{endpoint}/openapi.json", timeout=10).json()
    assert doc["openapi"] == "3.1.0"
    validate(doc, cls=OpenAPIV31SpecValidator)
    assert "/v1/pipelines" in doc["paths"]

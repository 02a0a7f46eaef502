"""The OpenAPI document the server publishes at /openapi.json, /mutate and /validate included.

/mutate is a plain ASGI endpoint (see fastpath.py), invisible to FastAPI's schema generation,
so its operation is written here from the contract in README.md; schemathesis tests the server
against this document (`make soak`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_STATUS = {"$ref": "#/components/schemas/Status"}


def _status_answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _STATUS}}}


MUTATE = {
    "summary": "Answer an AdmissionReview (admission.k8s.io/v1) for a pod creation",
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["apiVersion", "kind", "request"],
                    "properties": {
                        "apiVersion": {"type": "string", "enum": ["admission.k8s.io/v1"]},
                        "kind": {"type": "string", "enum": ["AdmissionReview"]},
                        "request": {
                            "type": "object",
                            "required": ["uid"],
                            "properties": {
                                "uid": {"type": "string", "minLength": 1, "maxLength": 128},
                                "kind": {
                                    "type": "object",
                                    "properties": {"group": {"type": "string"}, "version": {"type": "string"}, "kind": {"type": "string"}},
                                },
                                "operation": {"type": "string", "enum": ["CREATE", "UPDATE", "DELETE", "CONNECT"]},
                                "namespace": {"type": "string"},
                                "object": {"type": "object"},
                            },
                        },
                    },
                }
            }
        },
    },
    "responses": {
        "200": {
            "description": "The answer: allowed with or without a JSONPatch, or denied with a message",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["apiVersion", "kind", "response"],
                        "properties": {
                            "response": {
                                "type": "object",
                                "required": ["uid", "allowed"],
                                "properties": {
                                    "uid": {"type": "string"},
                                    "allowed": {"type": "boolean"},
                                    "patchType": {"type": "string", "enum": ["JSONPatch"]},
                                    "patch": {"type": "string", "format": "byte"},
                                    "warnings": {"type": "array", "items": {"type": "string", "maxLength": 120}},
                                },
                            }
                        },
                    }
                }
            },
        },
        "400": _status_answer("Not a usable AdmissionReview"),
        "405": _status_answer("Not POST"),
        "408": _status_answer("The body did not arrive in time"),
        "413": _status_answer("Larger than the apiserver's request limit"),
        "415": _status_answer("Not application/json"),
        "503": _status_answer("No valid configuration yet (the process is unready): the API server applies the failurePolicy"),
    },
}

VALIDATE = {
    **MUTATE,
    "summary": "Answer an AdmissionReview (admission.k8s.io/v1) for a workload or Namespace CREATE/UPDATE, or a pod UPDATE: allowed, with warnings, or denied with every problem located",
}

STATUS_SCHEMA = {
    "type": "object",
    "required": ["kind", "apiVersion", "status", "code", "reason", "message"],
    "properties": {
        "kind": {"type": "string", "enum": ["Status"]},
        "apiVersion": {"type": "string"},
        "status": {"type": "string"},
        "code": {"type": "integer"},
        "reason": {"type": "string"},
        "message": {"type": "string"},
    },
}


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` return FastAPI's document for its routes plus /mutate."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema["paths"]["/mutate"] = {"post": MUTATE}
            schema["paths"]["/validate"] = {"post": VALIDATE}
            schema.setdefault("components", {}).setdefault("schemas", {})["Status"] = STATUS_SCHEMA
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]

"""The OpenAPI 3.1 description of the node's JSON API, written by hand as data.

Every operation carries a request example that works against a freshly initialised node, in the order
the paths are listed: examples that need a dossier take its code from ``createDossier`` through the
response ``links`` (``$response.body#/code``). ``tests/node/test_api_openapi.py`` executes them all.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from node.actions import ACTIONS

__all__ = ["openapi"]

_APPLICANT_EXAMPLE = {
    "name": "Nguyễn Văn An",
    "id_type": "cccd",
    "id_number": "001090012345",
    "phone": "0912345678",
    "address": "12 Nghi Tàm, phường Tây Hồ, Hà Nội",
}
_CODE_LINK = {"code": "$response.body#/code"}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_ERRORS = {
    "401": _error("Thiếu hoặc sai token API."),
    "422": _error("Dữ liệu không hợp lệ; `fields` nêu từng trường. Không có gì được ghi."),
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any], examples: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": schema,
                "examples": {name: {"summary": name, "value": value} for name, value in examples.items()},
            }
        },
    }


_CODE_PARAM = {
    "name": "code",
    "in": "path",
    "required": True,
    "description": "Mã hồ sơ `<mã đơn vị>-<YYMMDD>-<NNNN>`; "
    "in the examples, the code returned by createDossier.",
    "schema": {"type": "string", "maxLength": 30},
    "example": "000.00.01.H26-261122-0001",
}
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "8–128 ASCII characters. "
    "Repeating a request with the same key returns the first result (200).",
    "schema": {"type": "string", "minLength": 8, "maxLength": 128},
}


def _schemas() -> dict[str, Any]:
    id_types = ["cccd", "cmnd", "passport", "tax_code"]
    return {
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "description": "stable machine-readable code"},
                "message": {"type": "string", "description": "Vietnamese message for people"},
                "fields": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "Applicant": {
            "type": "object",
            "required": ["name", "id_number"],
            "properties": {
                "name": {"type": "string", "maxLength": 200},
                "id_type": {"enum": id_types, "default": "cccd"},
                "id_number": {
                    "type": "string",
                    "description": "CCCD 12 digits, CMND 9 digits, passport, tax code",
                },
                "phone": {"type": "string", "description": "0xxxxxxxxx or +84xxxxxxxxx"},
                "email": {"type": "string"},
                "address": {"type": "string", "maxLength": 300},
            },
        },
        "Document": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "form": {"enum": ["original", "copy"], "default": "original"},
                "count": {"type": "integer", "minimum": 1, "maximum": 99, "default": 1},
            },
        },
        "Reception": {
            "type": "object",
            "required": ["procedure", "applicant"],
            "properties": {
                "procedure": {"type": "string", "description": "procedure code from /api/v1/procedures"},
                "applicant": {"$ref": "#/components/schemas/Applicant"},
                "documents": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Document"},
                    "description": "documents received; every required one of the procedure must be listed. "
                    "Omitted: the procedure's required documents.",
                },
                "channel": {"enum": [1, 2, 3], "default": 1},
                "pages": {"type": "integer", "description": "pages of the original (per-page fees)"},
                "copies": {"type": "integer", "default": 1},
                "fee_paid": {
                    "type": "boolean",
                    "default": False,
                    "description": "whether the fee (phí, lệ phí) was collected at reception: recorded in "
                    "dossier.received and printed on the receipt as 'đã nộp' / 'chưa nộp'; ignored when "
                    "the procedure has no fee",
                },
                "note": {"type": "string"},
                "pickup": {
                    "type": "string",
                    "description": "node id of the branch that hands the result back (default: this node)",
                },
            },
        },
        "Recorded": {
            "type": "object",
            "required": ["code", "kind", "status", "state", "entry"],
            "properties": {
                "code": {"type": "string"},
                "kind": {"type": "string"},
                "status": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 10,
                    "description": "national status code",
                },
                "state": {"type": "string"},
                "due_at": {"type": ["integer", "null"], "description": "epoch ms UTC, fixed at reception"},
                "lookup_code": {"type": "string", "description": "printed on the receipt (reception only)"},
                "entry": {
                    "type": "object",
                    "properties": {
                        "log": {"type": "string"},
                        "epoch": {"type": "integer"},
                        "seq": {"type": "integer"},
                        "hash": {"type": "string"},
                    },
                },
            },
        },
        "Event": {
            "type": "object",
            "required": ["action"],
            "properties": {"action": {"enum": list(ACTIONS)}},
            "additionalProperties": True,
            "description": "Fields per action: transfer {agency, note}; "
            "supplement_request {items:[{name, reason}], "
            "contact, note}; supplement_provided {note}; result_ready {outcome: approved|refused, reason, "
            "document_number, note}; return {recipient:{name, id_type, id_number}, proxy, authorisation, "
            "channel, fee_collected, note}; rating {scale: three_level|five_star, value, channel, comment}; "
            "withdrawal_request {reason}; withdraw {settlement, note} (supervisor).",
        },
    }


@cache
def openapi() -> dict[str, Any]:
    """The description (built once)."""
    recorded = {"$ref": "#/components/schemas/Recorded"}
    created = {
        "201": {
            **_json(recorded, "Ghi nhận xong (sau khi ghi bền vững)."),
            "links": {
                "getDossier": {"operationId": "getDossier", "parameters": _CODE_LINK},
                "recordEvent": {"operationId": "recordEvent", "parameters": _CODE_LINK},
            },
        },
        "200": _json(recorded, "Yêu cầu lặp lại với cùng Idempotency-Key: kết quả lần đầu."),
        **_ERRORS,
    }
    paths: dict[str, Any] = {
        "/api/v1/procedures": {
            "get": {
                "operationId": "listProcedures",
                "summary": "Danh mục thủ tục và thành phần hồ sơ",
                "responses": {"200": _json({"type": "object"}, "Danh mục"), "401": _ERRORS["401"]},
            }
        },
        "/api/v1/due-date": {
            "post": {
                "operationId": "previewDueDate",
                "summary": "Hạn trả kết quả nếu tiếp nhận bây giờ",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["procedure"],
                        "properties": {"procedure": {"type": "string"}},
                    },
                    {"khai-sinh": {"procedure": "1.001193"}},
                ),
                "responses": {"200": _json({"type": "object"}, "Hạn trả (epoch ms)"), **_ERRORS},
            }
        },
        "/api/v1/dossiers": {
            "post": {
                "operationId": "createDossier",
                "summary": "Tiếp nhận hồ sơ (cấp mã, tính hạn trả, ghi nhật ký ký số)",
                "parameters": [_IDEMPOTENCY],
                "requestBody": _body(
                    {"$ref": "#/components/schemas/Reception"},
                    {
                        "chung-thuc-chu-ky-da-nop-phi": {
                            "procedure": "2.000884",
                            "applicant": _APPLICANT_EXAMPLE,
                            "fee_paid": True,
                        },
                        "khai-sinh": {
                            "procedure": "1.001193",
                            "applicant": _APPLICANT_EXAMPLE,
                            "documents": [
                                {
                                    "name": "Tờ khai đăng ký khai sinh (theo mẫu)",
                                    "form": "original",
                                    "count": 1,
                                },
                                {
                                    "name": "Giấy chứng sinh hoặc giấy tờ thay thế Giấy chứng sinh",
                                    "form": "original",
                                    "count": 1,
                                },
                                {
                                    "name": "Giấy tờ tùy thân của người đi đăng ký (thẻ căn cước, hộ chiếu)",
                                    "form": "original",
                                    "count": 1,
                                },
                            ],
                        }
                    },
                ),
                "responses": created,
            },
            "get": {
                "operationId": "listDossiers",
                "summary": "Tra cứu: mã hồ sơ, họ tên (có/không dấu), số giấy tờ; "
                "mặc định hồ sơ nhận hôm nay",
                "parameters": [
                    {
                        "name": "q",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "example": "nguyen van an",
                    }
                ],
                "responses": {
                    "200": _json({"type": "object"}, "Danh sách (số giấy tờ đã che)"),
                    "401": _ERRORS["401"],
                },
            },
        },
        "/api/v1/dossiers/{code}": {
            "get": {
                "operationId": "getDossier",
                "summary": "Chi tiết hồ sơ, quá trình xử lý, thao tác hợp lệ",
                "parameters": [_CODE_PARAM],
                "responses": {
                    "200": _json({"type": "object"}, "Hồ sơ"),
                    "404": _error("Không có hồ sơ này."),
                    "401": _ERRORS["401"],
                },
            }
        },
        "/api/v1/dossiers/{code}/events": {
            "post": {
                "operationId": "recordEvent",
                "summary": "Ghi một thao tác trên hồ sơ (chuyển, bổ sung, kết quả, trả, đánh giá, rút)",
                "description": "The examples run in order on the dossier of createDossier.",
                "parameters": [_CODE_PARAM, _IDEMPOTENCY],
                "requestBody": _body(
                    {"$ref": "#/components/schemas/Event"},
                    {
                        "transfer": {"action": "transfer", "agency": "UBND phường Tây Hồ"},
                        "supplement_request": {
                            "action": "supplement_request",
                            "items": [{"name": "Bản sao giấy đăng ký kết hôn của cha mẹ"}],
                        },
                        "supplement_provided": {"action": "supplement_provided", "note": "Đã nhận đủ"},
                        "result_ready": {
                            "action": "result_ready",
                            "outcome": "approved",
                            "document_number": "123/TLKS",
                        },
                        "return": {
                            "action": "return",
                            "recipient": {"name": "Nguyễn Văn An"},
                            "proxy": False,
                        },
                        "rating": {
                            "action": "rating",
                            "scale": "three_level",
                            "value": 3,
                            "channel": "counter",
                        },
                    },
                ),
                "responses": {
                    "201": _json(recorded, "Đã ghi"),
                    "404": _error("Không có hồ sơ hoặc thao tác này."),
                    "409": _error("Trạng thái hiện tại không cho phép thao tác này."),
                    **_ERRORS,
                },
            }
        },
        "/api/v1/refusals": {
            "post": {
                "operationId": "refuseDossier",
                "summary": "Từ chối tiếp nhận (cấp mã cho phiếu từ chối)",
                "parameters": [_IDEMPOTENCY],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["procedure", "applicant", "reason"],
                        "properties": {
                            "procedure": {"type": "string"},
                            "applicant": {"$ref": "#/components/schemas/Applicant"},
                            "reason": {"type": "string"},
                        },
                    },
                    {
                        "ngoai-pham-vi": {
                            "procedure": "1.013225",
                            "applicant": _APPLICANT_EXAMPLE,
                            "reason": "Thửa đất không thuộc địa bàn; hướng dẫn nộp tại UBND xã nơi có đất.",
                        }
                    },
                ),
                "responses": {"201": _json(recorded, "Đã ghi"), "200": created["200"], **_ERRORS},
            }
        },
        "/api/v1/status": {
            "get": {
                "operationId": "getStatus",
                "summary": "Đầu nhật ký và số bản ghi chưa gửi lên trung tâm",
                "responses": {"200": _json({"type": "object"}, "Trạng thái"), "401": _ERRORS["401"]},
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "getOpenAPI",
                "summary": "Mô tả API này",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "motcua node API",
            "version": "1",
            "description": "API cục bộ của máy trạm một cửa: "
            "tiếp nhận hồ sơ ngoại tuyến, tra cứu, ghi thao tác. "
            "Mọi phản hồi ghi dữ liệu chỉ được gửi sau khi đã ghi bền vững vào nhật ký ký số.",
        },
        "servers": [{"url": "http://127.0.0.1:8471"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "motcua-node token create"}
            },
            "schemas": _schemas(),
        },
    }

"""The answers given before any handler runs, in the shape of the API at the path: an injected fault, a body too
large, an unexpected error."""

from __future__ import annotations

import json

from werkzeug import Request, Response

from runbook.localorg.api import rest
from runbook.localorg.api.soapxml import api_fault, fault_body

SOAP_PREFIX = "/services/Soap/"
UNEXPECTED = {"errorCode": "UNKNOWN_EXCEPTION", "message": "An unexpected error occurred in the local org."}


def unexpected() -> Response:
    """500 for a bug in a handler: REST's error list, never werkzeug's HTML page."""
    return rest.json_response([UNEXPECTED], 500)


def too_large(request: Request, max_bytes: int) -> Response:
    """413 for a body over ``max_bytes``, in the shape the API at that path answers."""
    limit = f"{max_bytes // (1024 * 1024)} MB"
    if request.path.startswith(SOAP_PREFIX):  # [D] the ExceptionCode; [U] this org's limit and the status
        fault = api_fault("EXCEEDED_MAX_SIZE_REQUEST", f"The size of the request exceeded {limit}.")
        return Response(fault_body(fault), status=413, content_type="text/xml; charset=utf-8")
    if request.path.startswith("/services/oauth2/"):  # [U]
        return Response(json.dumps({"error": "invalid_request", "error_description": f"request over {limit}"}),
                        status=413, content_type="application/json;charset=UTF-8")
    return rest.json_response([{"errorCode": "EXCEEDED_MAX_SIZE_REQUEST",  # [U] for REST
                                "message": f"The size of the request exceeded {limit}."}], 413)


def fault_response(kind: str, request: Request) -> Response:
    """The answer an injected fault of ``kind`` gives (``faults``).

    On SOAP paths the rate limit and an expired session are SOAP faults, as Salesforce answers them [D
    ExceptionCode REQUEST_LIMIT_EXCEEDED; O the texts]; an outage is an HTML page on every path.
    """
    if kind == "server_error":
        return Response("<html><body>Service Unavailable</body></html>", status=503, content_type="text/html")
    soap_path = request.path.startswith(SOAP_PREFIX)
    if kind == "rate_limit":
        if soap_path:
            return Response(fault_body(api_fault("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")),
                            status=500, content_type="text/xml; charset=utf-8")
        return rest.json_response([{"errorCode": "REQUEST_LIMIT_EXCEEDED",
                                    "message": "TotalRequests Limit exceeded."}], 403)
    if soap_path:
        return Response(fault_body(api_fault("INVALID_SESSION_ID", "Invalid Session ID found in SessionHeader: "
                                             "Illegal Session")), status=500, content_type="text/xml; charset=utf-8")
    return rest.json_response([{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}], 401)

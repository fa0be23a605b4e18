"""The front door of `cdp serve`: a gRPC proxy that checks a token and the plans it passes.

Sail's Spark Connect server (pysail 0.7.2) has no authentication, so `cdp serve` starts
it on a random loopback port and puts this gate in front, on the port analysts use:

* **Token**: every call must carry ``authorization: Bearer <token>``, which PySpark sends
  for ``sc://localhost:PORT/;token=...``; with a token and no ``use_ssl`` PySpark opens a
  *local* channel, so the gate listens with gRPC local credentials, on loopback only.
* **Read-only plans**: a request is decoded (Spark Connect protobuf) and walked: commands
  other than SQL and temporary views, writes, catalog changes, user-defined functions
  (arbitrary code in the server) and artifact uploads are refused; every SQL text,
  expression string, table name and data-source path goes through
  :mod:`jobs.analyst_guard`. SQL texts are replaced by their checked re-print.

What is *not* enforced: the backend's own port is loopback-only but unauthenticated; a
process on the same machine that finds it can bypass the gate (run `cdp serve` on a host
whose local users are trusted, or behind a firewall that keeps ports private per user).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
from google.protobuf.message import Message
from pyspark.sql.connect.proto import base_pb2

from jobs.analyst_guard import (
    Access,
    AccessDenied,
    check_expression,
    check_path,
    check_table_name,
    checked_sql,
)

SERVICE = "/spark.connect.SparkConnectService/"
_METHODS = {
    m.name: (m.client_streaming, m.server_streaming, m.input_type.name)
    for m in base_pb2.DESCRIPTOR.services_by_name["SparkConnectService"].methods
}
_REFUSED_METHODS = {"AddArtifacts"}  # files on the server: only user-defined code needs them
_ALLOWED_COMMANDS = {"sql_command", "create_dataframe_view"}
# Message types refused wherever they appear in a plan.
_REFUSED_MESSAGES = {
    "CommonInlineUserDefinedFunction",
    "CommonInlineUserDefinedTableFunction",
    "CommonInlineUserDefinedDataSource",
    "PythonUDF",
    "PythonUDTF",
    "ScalarScalaUDF",
    "JavaUDF",
    "PythonDataSource",
    "CreateExternalTable",
    "CreateTable",
    "DropTempView",
    "DropGlobalTempView",
    "RecoverPartitions",
    "CacheTable",
    "UncacheTable",
    "ClearCache",
    "RefreshTable",
    "RefreshByPath",
    "SetCurrentCatalog",
    "SetCurrentDatabase",
}
_HOP_BY_HOP = ("authorization", "user-agent", "te", "content-type", "grpc-")


class Gate(grpc.GenericRpcHandler):
    """Forwards authorised Spark Connect calls to ``backend`` (``host:port``)."""

    def __init__(self, backend: str, token: str, access: Access):
        self._channel = grpc.insecure_channel(
            backend,
            options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
        )
        self._token = token.encode()
        self._access = access

    def service(self, details: grpc.HandlerCallDetails):
        name = details.method.removeprefix(SERVICE)
        if not details.method.startswith(SERVICE) or name not in _METHODS:
            return None  # UNIMPLEMENTED
        client_streaming, server_streaming, input_type = _METHODS[name]
        if not self._authorised(details.invocation_metadata):
            return _refusal(
                grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token", _METHODS[name]
            )
        if name in _REFUSED_METHODS:
            return _refusal(grpc.StatusCode.PERMISSION_DENIED, f"{name} is refused", _METHODS[name])
        if server_streaming:
            return grpc.unary_stream_rpc_method_handler(self._stream(details.method, input_type))
        return grpc.unary_unary_rpc_method_handler(self._unary(details.method, input_type))

    def close(self) -> None:
        self._channel.close()

    def _authorised(self, metadata) -> bool:
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, given = value.partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(
                    given.encode(), self._token
                )
        return False

    def _unary(self, method: str, input_type: str) -> Callable:
        upstream = self._channel.unary_unary(method)

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            request = self._checked(request, input_type, context)
            try:
                return upstream(request, metadata=_forwarded(context))
            except grpc.RpcError as exc:
                _pass_error(exc, context)

        return handle

    def _stream(self, method: str, input_type: str) -> Callable:
        upstream = self._channel.unary_stream(method)

        def handle(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
            request = self._checked(request, input_type, context)
            call = upstream(request, metadata=_forwarded(context))
            context.add_callback(call.cancel)
            try:
                yield from call
            except grpc.RpcError as exc:
                _pass_error(exc, context)

        return handle

    def _checked(self, request: bytes, input_type: str, context: grpc.ServicerContext) -> bytes:
        message = getattr(base_pb2, input_type).FromString(request)
        try:
            changed = check_plan(message, self._access)
        except AccessDenied as exc:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"cdp serve: {exc}")
        return message.SerializeToString() if changed else request


def check_plan(message: Message, access: Access) -> bool:
    """Refuse (AccessDenied) anything that writes or reaches out of bounds in ``message``.

    SQL texts are replaced in place by their checked re-print; True when any was.
    """
    changed = False
    kind = message.DESCRIPTOR.name
    if kind in _REFUSED_MESSAGES:
        raise AccessDenied(f"read-only access: {kind} is refused")
    if kind == "Command":
        which = message.WhichOneof("command_type")
        if which not in _ALLOWED_COMMANDS:
            raise AccessDenied(f"read-only access: command {which} is refused")
    elif kind in ("SQL", "SqlCommand"):
        field = "query" if kind == "SQL" else "sql"
        text = getattr(message, field)
        if text:
            setattr(message, field, checked_sql(text, access))
            changed = True
    elif kind == "ExpressionString":
        check_expression(message.expression, access)
    elif kind == "NamedTable":
        check_table_name(message.unparsed_identifier, access)
    elif kind == "DataSource":
        for path in [
            *message.paths,
            *(v for k, v in message.options.items() if k.lower() == "path"),
        ]:
            check_path(path, access)
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            items = [v for v in value.values() if isinstance(v, Message)]
        else:
            items = list(value) if field.is_repeated else [value]
        for item in items:
            changed = check_plan(item, access) or changed
    return changed


def start_gate(backend: str, token: str, access: Access, host: str, port: int):
    """Serve the gate on ``host:port`` (loopback, gRPC local credentials); (server, port)."""
    gate = Gate(backend, token, access)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        handlers=[gate],
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
    )
    creds = grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    bound = server.add_secure_port(f"{host}:{port}", creds)
    if not bound:
        raise OSError(f"cdp serve: cannot listen on {host}:{port}")
    server.start()
    return server, bound


def _forwarded(context: grpc.ServicerContext) -> list[tuple[str, str | bytes]]:
    return [
        (k, v)
        for k, v in context.invocation_metadata() or ()
        if not k.startswith(":") and not k.startswith(_HOP_BY_HOP)
    ]


def _pass_error(exc: grpc.RpcError, context: grpc.ServicerContext) -> None:
    """Hand the backend's error (and its error details) on to the client."""
    trailing = [(k, v) for k, v in exc.trailing_metadata() or () if not k.startswith("grpc-status")]
    details = [(k, v) for k, v in exc.trailing_metadata() or () if k == "grpc-status-details-bin"]
    context.set_trailing_metadata(trailing + details)
    context.abort(exc.code(), exc.details() or "")


def _refusal(code: grpc.StatusCode, reason: str, kind: tuple[bool, bool, str]):
    client_streaming, server_streaming, _ = kind

    def refuse(_request, context: grpc.ServicerContext):
        context.abort(code, f"cdp serve: {reason}")

    if client_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if server_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)

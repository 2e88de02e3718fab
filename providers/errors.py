"""One error tree for every provider (Talos, Omni, Image Factory).

    ProviderError                  base; carries target (node/URL) and method
    ├── Unreachable                connection refused, DNS, network down
    ├── TLSFailure                 handshake or certificate verification failed
    ├── Timeout                    a call or a wait exceeded its Timeouts value
    ├── PermissionDenied           authenticated but not allowed (gRPC 7, HTTP 403)
    ├── Unauthenticated            bad or missing credentials/signature (gRPC 16, HTTP 401)
    ├── NotFound                   the resource or node does not exist (gRPC 5, HTTP 404)
    ├── Conflict                   already exists / version conflict / failed precondition
    ├── InvalidRequest             the server rejected our input (gRPC 3, HTTP 400)
    ├── Unsupported                the server does not implement the call (gRPC 12)
    └── ProtocolError              anything else the peer answered that we cannot use

grpclib, ``ssl`` and ``OSError`` failures are mapped in one place, :func:`from_exception`, so that
callers catch these classes only, and every message names the target it was talking to.
"""

from __future__ import annotations

import asyncio
import ssl


class ProviderError(Exception):
    """A failure talking to a real system; ``target`` names the node or URL, ``method`` the call."""

    def __init__(
        self,
        message: str,
        *,
        target: str | None = None,
        method: str | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.target = target
        self.method = method
        self.code = code

    def __str__(self) -> str:
        where = f"{self.target}: " if self.target else ""
        call = f" ({self.method})" if self.method else ""
        return f"{where}{self.message}{call}"


class Unreachable(ProviderError):
    pass


class TLSFailure(ProviderError):
    pass


class Timeout(ProviderError):
    pass


class PermissionDenied(ProviderError):
    pass


class Unauthenticated(ProviderError):
    pass


class NotFound(ProviderError):
    pass


class Conflict(ProviderError):
    pass


class InvalidRequest(ProviderError):
    pass


class Unsupported(ProviderError):
    pass


class ProtocolError(ProviderError):
    pass


class ConfigurationError(ProviderError):
    """A local setting is missing or wrong: the message names the file or variable and the fix.

    Raised before any connection is made; ``target`` is the file or variable at fault."""

    def __str__(self) -> str:
        return self.message


YAML_VALUE_ERRORS = (
    ValueError,
    OverflowError,
    RecursionError,
    KeyError,
    AttributeError,
    IndexError,
    TypeError,
)
"""What PyYAML's scanner and constructors raise besides YAMLError on a malformed value (a
5000-digit integer, `!!timestamp x`, a \\U escape past U+10FFFF, nesting past the stack)."""


# gRPC status code number -> class. Numbers are the gRPC wire values.
_GRPC_CODES: dict[int, type[ProviderError]] = {
    3: InvalidRequest,  # INVALID_ARGUMENT
    4: Timeout,  # DEADLINE_EXCEEDED
    5: NotFound,  # NOT_FOUND
    6: Conflict,  # ALREADY_EXISTS
    7: PermissionDenied,  # PERMISSION_DENIED
    9: Conflict,  # FAILED_PRECONDITION
    10: Conflict,  # ABORTED
    12: Unsupported,  # UNIMPLEMENTED
    14: Unreachable,  # UNAVAILABLE
    16: Unauthenticated,  # UNAUTHENTICATED
}


def from_grpc_status(
    code: int, message: str, *, target: str | None = None, method: str | None = None
) -> ProviderError:
    """The error for a gRPC status (code number and message) returned by ``target``."""
    cls = _GRPC_CODES.get(code, ProtocolError)
    return cls(message or f"gRPC status {code}", target=target, method=method, code=code)


def from_exception(
    exc: BaseException, *, target: str | None = None, method: str | None = None
) -> ProviderError:
    """Map a transport-level exception (grpclib, ssl, OSError, asyncio) to the tree."""
    if isinstance(exc, ProviderError):
        return exc
    # imported here: the CLI imports this module at start, and grpclib only once it connects
    from grpclib.exceptions import GRPCError, StreamTerminatedError

    if isinstance(exc, GRPCError):
        return from_grpc_status(
            int(exc.status.value), exc.message or "", target=target, method=method
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TLSFailure(
            f"TLS certificate verification failed: {exc.verify_message or exc}",
            target=target,
            method=method,
        )
    if isinstance(exc, ssl.SSLError):
        return TLSFailure(
            f"TLS handshake failed: {exc.reason or exc}", target=target, method=method
        )
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return Timeout("timed out", target=target, method=method)
    if isinstance(exc, StreamTerminatedError):
        return Unreachable(f"connection closed: {exc}", target=target, method=method)
    if isinstance(exc, ConnectionRefusedError):
        return Unreachable("connection refused", target=target, method=method)
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return Unreachable(f"cannot connect: {reason}", target=target, method=method)
    return ProtocolError(f"{type(exc).__name__}: {exc}", target=target, method=method)


class CredentialsError(ProviderError):
    """A client configuration (talosconfig, omniconfig) is missing, unreadable or invalid.

    ``target`` is the file; ``fix`` says what the user should do. Never carries key material.
    """

    def __init__(self, message: str, *, target: str | None = None, fix: str | None = None) -> None:
        super().__init__(message, target=target)
        self.fix = fix

    def __str__(self) -> str:
        where = f"{self.target}: " if self.target else ""
        return f"{where}{self.message}" + (f"; {self.fix}" if self.fix else "")

"""Omni's authorization of COSI calls: roles by type, then verbs by type (omni-wire.md §3.5).

Authorization failures are status errors that Omni's validated state collects with its other
validation errors, so they are returned here as ``StateError`` values for the caller to wrap.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from grpclib.const import Status

from omniport.lab.omni_store import StateError, q
from omniport.lab.omni_types import TYPES, Access


class Role(IntEnum):
    """Omni's role order: None < InfraProvider < Reader < Auditor < Operator < Admin."""

    NONE = 0
    INFRA_PROVIDER = 1
    READER = 2
    AUDITOR = 3
    OPERATOR = 4
    ADMIN = 5

    @property
    def label(self) -> str:
        return _ROLE_NAMES[self]

    @classmethod
    def parse(cls, text: str) -> Role:
        for role, name in _ROLE_NAMES.items():
            if name.lower() == text.strip().lower():
                return role
        names = ", ".join(_ROLE_NAMES[r] for r in cls if r is not cls.NONE)
        raise ValueError(f"unknown Omni role {q(text)}; use one of {names}")


_ROLE_NAMES = {
    Role.NONE: "None",
    Role.INFRA_PROVIDER: "InfraProvider",
    Role.READER: "Reader",
    Role.AUDITOR: "Auditor",
    Role.OPERATOR: "Operator",
    Role.ADMIN: "Admin",
}

READ_VERBS = frozenset({"get", "list", "watch"})
VERBS = READ_VERBS | {"create", "update", "destroy"}


@dataclass(frozen=True)
class Caller:
    """Who made a call: ``authenticated`` is False when no signature was sent at all."""

    identity: str
    role: Role
    authenticated: bool = True


ANONYMOUS = Caller(identity="", role=Role.NONE, authenticated=False)


def _status_text(status: Status, message: str) -> str:
    """How Go prints a gRPC status error inside a multierror."""
    name = "".join(part.capitalize() for part in status.name.split("_"))
    return f"rpc error: code = {name} desc = {message}"


def _denied(message: str) -> StateError:
    return StateError(Status.PERMISSION_DENIED, _status_text(Status.PERMISSION_DENIED, message))


def _need(caller: Caller, role: Role) -> StateError | None:
    if not caller.authenticated:
        return StateError(
            Status.UNAUTHENTICATED,
            _status_text(Status.UNAUTHENTICATED, "unauthenticated: missing valid signature"),
        )
    if caller.role < role:
        return _denied(f"unauthorized: access denied: insufficient role: {q(caller.role.label)}")
    return None


def authorize(caller: Caller, type_: str, verb: str) -> StateError | None:
    """None when ``caller`` may ``verb`` (get/list/watch/create/update/destroy) ``type_``."""
    info = TYPES.get(type_)
    if info is None or info.access is Access.NONE:
        return _denied("no access is permitted")
    read = verb in READ_VERBS
    access = info.access
    # first the role the type needs
    if access is Access.SIGNATURE_READ:
        err = _need(caller, Role.NONE)
    elif access is Access.INFRA_READ:
        err = _need(caller, Role.INFRA_PROVIDER)
    elif access is Access.CREATE_DESTROY:
        err = _need(caller, Role.OPERATOR)
    else:
        err = _need(caller, Role.READER if read else Role.OPERATOR)
    if err is not None:
        return err
    # then what the type allows at all
    if access is Access.USER_MANAGED:
        return None
    if access is Access.CREATE_DESTROY:
        if verb in ("create", "destroy"):
            return None
        return _denied("only create and destroy access is permitted for imported cluster secrets")
    if access is Access.READ_DESTROY:
        if read or verb == "destroy":
            return None
        return _denied("only read and destroy access is permitted")
    if read:
        return None
    return _denied("only read access is permitted")

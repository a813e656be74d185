"""Who did something, and from where: the signed-in user and the client's address, or a command line.

The request being served is remembered (`ActorMiddleware`) so that a record made below the view, where no
request is at hand (a model signal on a user saved in the admin, a service the view calls), still names the
person who asked for it. Outside a request (a management command) the actor is the command line and its OS user.
"""

import getpass
from contextvars import ContextVar
from dataclasses import dataclass
from ipaddress import ip_address

from django.conf import settings

current_request = ContextVar("current_request", default=None)


@dataclass(frozen=True)
class Actor:
    user: object | None  # a User, or None for a command line
    name: str
    address: str | None = None

    @classmethod
    def of_user(cls, user, address: str | None = None) -> "Actor":
        if user is None or not user.is_authenticated:
            return cls(None, "anonymous", address)
        return cls(user, user.get_username(), address)

    @classmethod
    def of_request(cls, request) -> "Actor":
        return cls.of_user(getattr(request, "user", None), client_address(request))

    @classmethod
    def command_line(cls) -> "Actor":
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # a container's uid with no passwd entry
            name = "unknown OS user"
        return cls(None, f"command line ({name})")


def client_address(request) -> str | None:
    """The client's address, the one home of the rule for the audit trail and the login lockout alike.

    Behind a proxy that names the client in a header it always overwrites (CLIENT_ADDRESS_HEADER, e.g.
    X-Real-IP: compose's nginx), that header, when it is one IP address (anything else is not the proxy's, and
    the connection's address is used). Else the connection's address, or, behind FORWARDED_FOR_PROXIES proxies,
    the one the outermost of them saw: each proxy appends the address it received the request from to
    X-Forwarded-For, so with N trusted proxies the client is the N-th entry from the right; anything left of it
    was written by the client and is ignored. Without configured proxies both headers are ignored: anyone can
    send them.
    """
    if header := settings.CLIENT_ADDRESS_HEADER:
        named = request.META.get("HTTP_" + header.upper().replace("-", "_"), "").strip()
        try:
            return str(ip_address(named))
        except ValueError:
            pass
    address = request.META.get("REMOTE_ADDR")
    proxies = settings.FORWARDED_FOR_PROXIES
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies > 0 and forwarded:
        address = forwarded[max(len(forwarded) - proxies, 0)]
    try:
        return str(ip_address(address))
    except ValueError:
        return None


def current_actor() -> Actor:
    """The user of the request being served, else the command line."""
    request = current_request.get()
    return Actor.of_request(request) if request is not None else Actor.command_line()


def actor_for(user) -> Actor:
    """`user` acting through the request being served (its address), or with no address outside one."""
    request = current_request.get()
    return Actor.of_user(user, client_address(request) if request is not None else None)


class ActorMiddleware:
    """Remembers the request for `current_actor` while it is served (after AuthenticationMiddleware)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            current_request.reset(token)

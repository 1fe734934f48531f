"""One error vocabulary for the runtime; transports map `code` to gRPC status / ZMQ replies."""

from __future__ import annotations


class AvatarError(Exception):
    """Base of every error the runtime reports to a caller."""

    code = "INTERNAL"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(AvatarError):
    code = "INVALID_ARGUMENT"


class InvalidImage(InvalidArgument):
    """Bytes that are not a decodable image (or a truncated one)."""


class InvalidMotion(InvalidArgument):
    """A motion frame with wrong vector lengths or non-finite values."""


class NotFound(AvatarError):
    code = "NOT_FOUND"


class AvatarNotFound(NotFound):
    pass


class NoFaceFound(AvatarError):
    code = "FAILED_PRECONDITION"


class FailedPrecondition(AvatarError):
    code = "FAILED_PRECONDITION"


class LimitExceeded(AvatarError):
    """A configured limit was hit; the message names the limit and its value."""

    code = "RESOURCE_EXHAUSTED"


class Unimplemented(AvatarError):
    code = "UNIMPLEMENTED"


class Unavailable(AvatarError):
    """The runtime cannot serve the call now (shutting down, a worker lost); retry later."""

    code = "UNAVAILABLE"


class Unauthenticated(AvatarError):
    code = "UNAUTHENTICATED"


class InternalError(AvatarError):
    code = "INTERNAL"

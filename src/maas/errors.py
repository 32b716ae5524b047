"""The errors maas raises on bad input; each names what is wrong and how to fix it."""


class MaasError(Exception):
    """Base class: the CLI prints these without a traceback."""


class ConfigError(MaasError):
    """A config value is missing or not one of the allowed values."""


class DataValidationError(MaasError):
    """The raw data failed its Great Expectations suite."""


class GateFailed(MaasError):
    """A metric fell short of the gate declared in `conf/gates/`."""


class ArtifactError(MaasError):
    """An input file a stage needs is missing or malformed."""


class TrainingFailed(MaasError):
    """Training ran but produced no usable model (e.g. the loss diverged)."""


# errno values of I/O failures that a later attempt can outlive (a remote or network mount
# hiccups); a missing file or a permission error is the same on every attempt.
_TRANSIENT_ERRNOS = {"EAGAIN", "EBUSY", "EINTR", "EIO", "ESTALE", "ETIMEDOUT", "ENETDOWN", "ENETUNREACH",
                     "EHOSTUNREACH", "ECONNRESET", "ECONNREFUSED", "ECONNABORTED"}


def is_transient(exc: BaseException | None) -> bool:
    """Whether retrying what raised `exc` can help. A MaasError never: bad data, a failed gate or
    a bad setting fail the same way on every attempt."""
    import errno

    if exc is None or isinstance(exc, MaasError):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, OSError) and errno.errorcode.get(exc.errno or 0) in _TRANSIENT_ERRNOS

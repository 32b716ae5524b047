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

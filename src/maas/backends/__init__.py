"""Framework backends. Only `torch` exists so far; `trainer.backend` names one."""

BACKENDS = ("torch",)

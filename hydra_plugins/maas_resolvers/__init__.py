"""maas's config resolvers for DVC's Hydra composition (`dvc exp run -S ...`).

DVC composes conf/ itself and, before it does, imports every `hydra_plugins` package on its
plugins path (`hydra.plugins_path`, by default the project root): importing this registers
them, so `${maas.prod:...}` resolves there as it does in `maas compose`.
"""

from maas.resolvers import register

register()

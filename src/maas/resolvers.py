"""Config values derived from others, registered as OmegaConf resolvers.

A model's input size follows the data config: `${maas.prod:${data.input_shape}}` (an MLP's
inputs), `${maas.table_width:${data.features}}`; an image folder's classes follow the folder:
`${maas.class_folders:${data.path}}` (its class sub-folders, sorted), `${maas.len:${data.class_names}}`,
`${maas.range:${data.num_classes}}` (0..n-1); a conv model's normalization follows differential
privacy: `${maas.privacy_norm:${trainer.privacy.enabled}}` (group when it is on, batch when off).

`maas compose` registers them (maas.config imports this), and so does DVC when it composes
conf/ itself for `dvc exp run`: it loads Hydra plugins from the project root, where
hydra_plugins/maas_resolvers calls register().
"""

from __future__ import annotations

from omegaconf import ListConfig, OmegaConf


def _table_width(features) -> int:
    from maas.data.table_preprocessor import encoded_width

    return encoded_width(OmegaConf.to_container(features, resolve=True) if features is not None else None)


def _product(shape) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out


# A resolver's list must be a ListConfig: OmegaConf.resolve can't put a plain list in a node.
def _class_folders(path) -> ListConfig:
    from maas.data.image_folder import class_folders

    return ListConfig(class_folders(path))


def _privacy_norm(enabled) -> str:
    if not isinstance(enabled, bool):  # a typo such as "ture" must not quietly mean "off"
        raise ValueError(f"trainer.privacy.enabled={enabled!r} must be true or false")
    return "group" if enabled else "batch"  # DP-SGD can't train BatchNorm (maas.models.norm)


def register() -> None:
    OmegaConf.register_new_resolver("maas.prod", _product, replace=True)
    OmegaConf.register_new_resolver("maas.table_width", _table_width, replace=True)
    OmegaConf.register_new_resolver("maas.class_folders", _class_folders, replace=True)
    OmegaConf.register_new_resolver("maas.len", lambda items: len(items), replace=True)
    OmegaConf.register_new_resolver("maas.privacy_norm", _privacy_norm, replace=True)
    OmegaConf.register_new_resolver("maas.range", lambda n: ListConfig(list(range(int(n)))), replace=True)

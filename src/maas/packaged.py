"""The Bento the package stage built: its record (bento.json), imported into the BentoML store if missing.

`maas serve` and `maas lineage` start here; on a fresh clone the store is empty and the archive
comes from `dvc pull`.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from maas import io
from maas.errors import MaasError
from maas.verify import require_intact


def packaged_bento(cfg: DictConfig) -> dict:
    """bento.json of paths.bento, after making sure its Bento is in the store (imported from the archive)."""
    import bentoml
    from bentoml.exceptions import NotFound

    # Relative paths in params.yaml are relative to the project root (the working directory
    # here); BentoML's importer resolves a relative archive path from / instead.
    bento_dir = Path(cfg.paths.bento).resolve()
    record = io.require(bento_dir / "bento.json", "bento.json (run `make run` first)")
    # A tampered cache or remote reaches the workspace unnoticed by DVC (see maas.verify).
    require_intact(Path.cwd(), bento_dir, "use it")
    try:
        info = io.read_json(record)
    except (OSError, ValueError) as e:
        raise MaasError(f"{record} is unreadable ({e}): re-run the package stage") from None
    if not isinstance(info, dict) or not {"bento_tag", "archive"} <= info.keys():
        raise MaasError(f"{record} lacks bento_tag/archive: re-run the package stage")
    try:
        bentoml.bentos.get(info["bento_tag"])
    except ValueError as e:
        raise MaasError(f"{record}: {e}; re-run the package stage") from None
    except NotFound:
        archive = io.require(bento_dir / info["archive"], "Bento archive (run `dvc pull` or `make run`)")
        print(f"importing {info['bento_tag']} from {archive}", flush=True)
        try:
            bentoml.bentos.import_bento(str(archive))
        except Exception as e:  # a truncated or foreign file fails in tar, lzma, yaml or BentoML
            raise MaasError(f"cannot import {archive} ({type(e).__name__}: {e}): "
                            "re-run the package stage or `dvc pull`") from None
    return info

"""`maas lineage [BENTO]`: print where a Bento came from and check it against the workspace.

Same, or for each part that differs, what: the commit (and the input files changed since),
each stage's dvc.lock entry (which params, deps or outs differ), the raw data's md5, the config keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from maas import lineage
from maas.errors import ArtifactError, ConfigError, MaasError
from maas.serving import BENTO_MODEL_SUBDIR, encryption


def stored_record(bento_tag: str) -> tuple[dict[str, str], dict[str, Any]]:
    """(the Bento's labels, the lineage.json of its model)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bento = bentoml.bentos.get(bento_tag)
    except NotFound:
        raise MaasError(f"no Bento {bento_tag} in the BentoML store (`bentoml list`; `maas lineage` with no "
                        "argument imports the packaged one from models/bento)") from None
    models = bento.info.all_models
    if not models:
        raise ArtifactError(f"Bento {bento_tag} holds no model")
    try:
        path = Path(bentoml.models.get(models[0].tag).path_of(BENTO_MODEL_SUBDIR)) / lineage.LINEAGE_FILE
    except NotFound:
        raise MaasError(f"Bento {bento_tag}'s model {models[0].tag} is not in the BentoML store: "
                        "`bentoml models list`, or re-import the Bento") from None
    if not path.exists():
        raise ArtifactError(f"Bento {bento_tag} records no lineage (packaged by a maas before lineage): "
                            "run the package stage again")
    blob = path.read_bytes()
    if blob.startswith(encryption.MAGIC):  # packaged with serve.encrypt: the labels alone are in the clear
        key = encryption.ModelKey.from_env()
        if key is None:
            raise ConfigError(f"Bento {bento_tag}'s model is encrypted: {encryption.HOW}")
        blob = key.decrypt(blob, lineage.LINEAGE_FILE)
    return dict(bento.info.labels), json.loads(blob)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def changed(old: dict[str, Any], new: dict[str, Any], limit: int = 8) -> list[str]:
    """`key: old -> new` for each key that differs, the first `limit` of them."""
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    lines = [f"{k}: {old.get(k, '(absent)')!r} -> {new.get(k, '(absent)')!r}" for k in keys[:limit]]
    return lines + ([f"... and {len(keys) - limit} more"] if len(keys) > limit else [])


def stage_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Why one stage's dvc.lock entry differs: its params, deps or outs."""
    out = []
    params = lambda e: flatten((e.get("params") or {}).get("params.yaml", {}))  # noqa: E731
    out += [f"param {line}" for line in changed(params(recorded), params(current))]
    for kind in ("deps", "outs"):
        files = lambda e: {d["path"]: d.get("md5") for d in e.get(kind) or []}  # noqa: E731
        old, new = files(recorded), files(current)
        out += [f"{kind[:-1]} {p} {'changed' if p in old and p in new else 'added' if p in new else 'removed'}"
                for p in sorted(old.keys() | new.keys()) if old.get(p) != new.get(p)]
    return out


def check(bento: str | None, cfg: DictConfig, root: Path) -> bool:
    """Print the lineage of `bento` (default: the packaged one) and whether the workspace still matches it."""
    from maas.data.sources import raw_md5
    from maas.packaged import packaged_bento
    from maas.stages import tracked_config
    from maas.stages.package import PIPELINE_KEYS

    tag = bento or packaged_bento(cfg)["bento_tag"]
    labels, record = stored_record(tag)
    print(f"Bento {tag}")
    for k, v in sorted(labels.items()):
        print(f"  label {k}: {v}")
    same = True

    def report(part: str, differences: list[str], detail: str) -> None:
        nonlocal same
        same &= not differences
        print(f"{part}: {'same' if not differences else 'DIFFERS'} ({detail})")
        for line in differences:
            print(f"  {line}")

    git, now = record["git"], lineage.git_record(root)
    built = (git["commit"] or "no git") + (f", uncommitted changes to {', '.join(git['dirty'])}" if git["dirty"] else "")
    report("code", ([f"last commit of the inputs is now {now['commit']}"] if now["commit"] != git["commit"] else [])
           + ([f"uncommitted changes now: {', '.join(now['dirty'])}"] if now["dirty"] != git["dirty"] else []),
           f"built from {built}")

    lock, lock_now = record["dvc_lock"] or {}, lineage.lock_record(root) or {}
    stages = lock.get("stages", {})
    diffs = []
    for name in lineage.UPSTREAM:
        old, new = stages.get(name), lock_now.get("stages", {}).get(name)
        if old != new:
            why = stage_differences(old or {}, new or {}) if old and new else ["no entry " + ("now" if old else "then")]
            diffs += [f"stage {name}: {line}" for line in why or ["entry differs"]]
    # ... and whether the workspace still matches dvc.lock (edited code or data not re-run yet)
    from maas.repro import Lock

    status = Lock.open(root)
    diffs += [f"stage {name}: not run since: {why}" for name in lineage.UPSTREAM
              for why in (status.changes(name) if status else [])]
    report("dvc.lock", diffs, f"sha256 {lock.get('sha256', 'none')[:16]} of "
           f"{', '.join(n for n in lineage.UPSTREAM if n in stages) or 'no stages'}")

    data_now = raw_md5(cfg)
    report("data", [f"{cfg.data.path} now has md5 {data_now}"] if data_now != record["data"]["md5"] else [],
           f"{record['data']['path']} md5 {record['data']['md5']}")

    config_now = tracked_config(cfg, PIPELINE_KEYS)
    report("config", changed(flatten(record["config"]["values"]), flatten(config_now)),
           f"sha256 {record['config']['sha256'][:16]}")
    print("the workspace matches this Bento" if same else
          "the workspace differs from this Bento: `dvc repro` would build another (see above)")
    return same

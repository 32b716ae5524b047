"""`maas`: run stages, the pipeline, sweeps; compose params; serve.

    maas compose [overrides]          write params.yaml from conf/ (what `dvc repro` reads), and dvc.yaml
    maas stage NAME                   run one stage on params.yaml unless dvc.lock says it is up to date,
                                      then record it in dvc.lock (as dvc repro does; --force runs it anyway)
    maas stage NAME [overrides]       a one-off run on conf/ + overrides: outputs under runs/<id>/
                                      (--replace: over the DVC-tracked outputs instead)
    maas stage NAME --params FILE     run one stage on FILE, nothing skipped or recorded (dvc.yaml does this)
    maas stage train -m model.channels=16,32   sweep through Hydra's multirun (one trial per setting)
    maas stage train -m hparams_search=optuna hydra.sweeper.n_trials=20   Optuna search
    maas stage train -m model.channels=16,32 hydra/launcher=joblib       trials in parallel
    maas sweep promote [SWEEP_DIR]    write the best trial (default: newest sweep) into conf/promoted/
    maas pipeline [overrides]         every stage as a Prefect flow, the same way (--replace, --force)
    maas data export                  write data/raw from the configured source
    maas expectations suggest [overrides]  print a starting suite profiled from the raw data
                                      (--out FILE, or --save: conf/expectations/<data file>_suggested.yaml)
    maas dvc-yaml                     regenerate dvc.yaml from the stage registry and params.yaml
    maas prefect-yaml                 regenerate prefect.yaml (deployments) from conf/orchestration
    maas deploy                       register prefect.yaml's deployments on the server in PREFECT_API_URL
    maas serve                        serve the Bento the package stage built (refused unless it is
                                      byte for byte what dvc.lock records)
                                      (--ssl-certfile C --ssl-keyfile K: over HTTPS)
    maas lineage [BENTO]              the commit, dvc.lock, data and config a Bento came from, and what
                                      differs in the workspace now (exit 1 if anything does)
    maas monitor [LOG_DIR] [overrides]  compare a server's prediction log with the packaged model's training
                                      data: report.html + summary.json; exits 1 when a threshold is crossed
    maas verify [TARGETS] [-c | -r R] re-hash DVC-tracked outputs (workspace and cache; -c: the default
                                      remote, -r R: remote R) against dvc.lock and the .dvc files
    maas api-key new --file F [--name N] [--role predict|admin]   print a new API key once, append its hash to F
    maas api-key revoke --file F NAME|HASH remove a key from F (a running server refuses it at once)
    maas api-key hash                 print the hash of the key read from stdin (a line for F)
    maas model-key new [--file F]     make a key for serve.encrypt (printed, or written to a new file F)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from maas.errors import MaasError


def _cfg(args):
    if getattr(args, "params", None):
        from maas.params_file import load_params

        if args.overrides:
            raise MaasError("--params reads a composed file; pass overrides to `maas compose` instead")
        return load_params(args.params)
    from maas.config import compose

    return compose(args.overrides)


def cmd_compose(args) -> None:
    from maas.config import compose
    from maas.params_file import PARAMS_FILE, write_params

    out = args.out or PARAMS_FILE
    cfg = compose(args.overrides)
    changed = write_params(cfg, out)
    print(f"{out} {'updated' if changed else 'unchanged'}")
    if not args.out:
        # dvc.yaml's dependencies follow the config (data.path: the raw table or image folder),
        # so the two are written together.
        _write_dvc_yaml(cfg, "dvc.yaml")


def cmd_stage(args) -> None:
    from maas import registry

    stage = registry.get(args.name)
    if args.multirun and args.params:
        raise MaasError("-m composes conf/ per trial; it can't read --params")
    if args.multirun:
        from maas.sweep import multirun

        results = multirun(stage, args.overrides)
        print(json.dumps({k: results[k] for k in ("sweep_dir", "objective", "best", "failed")}, indent=2, default=str))
        print(f"results: {results['sweep_dir']}/results.md")
        return
    if args.params:  # dvc repro calls this way, and records the outputs itself
        print(json.dumps(_run_for_dvc(stage, args), indent=2, default=str))
        return
    from maas import repro, run_config
    from maas.params_file import project_root

    chosen = run_config.choose([stage], args.overrides, replace=args.replace)
    lock = repro.Lock.open(project_root()) if chosen.tracked else None
    outcome = repro.run_stage(stage, chosen.cfg, lock, force=args.force)
    print(json.dumps(outcome.summary, indent=2, default=str))


def _run_for_dvc(stage, args) -> dict:
    """Run `stage` on a params file. As dvc.yaml's command (on the project's params.yaml): checked against
    dvc.yaml's entry first, and if anything fails (the config, the check, the stage), the outputs DVC
    deleted before it ran are put back from DVC's cache: nothing already written is lost."""
    from maas.params_file import PARAMS_FILE, project_root

    root = project_root()
    if Path(args.params).resolve() != root / PARAMS_FILE:  # e.g. a torchrun worker's copy: its launcher restores
        return stage.run(_cfg(args))
    from maas.code_deps import record_imports_at_exit
    from maas.dvcfile import check_entry
    from maas.restore import missing_outputs, restore_outputs

    record_imports_at_exit(stage.name)
    deleted = missing_outputs(stage.name, root)
    try:
        cfg = _cfg(args)
        check_entry(stage, cfg, root)
        return stage.run(cfg)
    except BaseException:
        restored, problems = restore_outputs(stage.name, root, deleted)
        if restored:
            print(f"[maas] stage {stage.name}: put its last good outputs back from DVC's cache: "
                  f"{', '.join(restored)}", flush=True)
        for problem in problems:  # the stage's own error, re-raised below, stays the reason it failed
            print(f"[maas] stage {stage.name}: could not put back {problem}", flush=True)
        raise


def cmd_sweep(args) -> None:
    from maas.promote import promote

    path, overrides = promote(args.sweep_dir)
    print(f"wrote {path}: {' '.join(overrides) or '(no overrides: conf/ defaults)'}")
    print("`maas compose` now includes them, and `make run` will write params.yaml and retrain with them; "
          f"commit {path.name} to keep them (delete it to go back to conf/'s defaults)")


def cmd_pipeline(args) -> None:
    import runpy

    from maas.config import compose
    from maas.params_file import conf_dir, load_params

    # A bad override or a missing params.yaml fails here, before Prefect starts a server.
    compose(args.overrides) if args.overrides else load_params()
    flow_file = conf_dir().parent / "flows" / "pipeline.py"
    if not flow_file.exists():
        raise MaasError(f"{flow_file} not found: run maas from the project root")
    pipeline = runpy.run_path(str(flow_file))["pipeline"]
    state = pipeline(overrides=list(args.overrides), replace=args.replace, force=args.force, return_state=True)
    if not state.is_completed():
        raise MaasError(f"the pipeline flow run ended {state.name}: {state.message}")
    print(json.dumps(state.result(), indent=2, default=str))


def cmd_data(args) -> None:
    from maas.data.sources import export

    path = export(_cfg(args))
    print(f"wrote {path}")


def cmd_expectations(args) -> None:
    from maas import io
    from maas.config import compose
    from maas.params_file import conf_dir
    from maas.suggest_suite import default_name, suggest

    # The suite chosen now may not fit the data being profiled (a new table's data config still
    # names another suite): its `expect:` entries, which compose checks against the columns, go.
    cfg = compose([*args.overrides, "++expectations.expect=[]"])
    if args.save and args.out:
        raise MaasError("--save writes conf/expectations/<data file>_suggested.yaml; --out names another file: "
                        "give one of them")
    out = None
    if args.out:
        out = Path(args.out)
    elif args.save:
        out = conf_dir() / "expectations" / f"{default_name(cfg)}.yaml"
    if out is not None and out.exists() and not args.force:
        raise MaasError(f"{out} exists: it may hold your edits; --force overwrites it")
    # A file's stem is the name that chooses it (expectations=<stem>) and names its suite.
    text = suggest(cfg, out.stem if out is not None else default_name(cfg),
                   warn=lambda msg: print(f"maas: warning: {msg}", file=sys.stderr))
    if out is None:
        sys.stdout.write(text)
        return
    io.write_text(out, text)
    choose = f"; choose it with expectations={out.stem}" if out.parent == conf_dir() / "expectations" else ""
    print(f"wrote {out}{choose}", file=sys.stderr)


def _write_dvc_yaml(cfg, out: str) -> None:
    from maas import io
    from maas.dvcfile import render

    changed = io.update_text(out, render(cfg))
    print(f"{out} {'updated' if changed else 'unchanged'}")


def cmd_dvc_yaml(args) -> None:
    from maas.config import compose
    from maas.params_file import PARAMS_FILE, load_params

    # From params.yaml when there is one: dvc.yaml must describe the pipeline `dvc repro` runs.
    _write_dvc_yaml(load_params(PARAMS_FILE) if Path(PARAMS_FILE).exists() else compose(), args.out or "dvc.yaml")


def write_prefect_yaml(out: str, cfg) -> None:
    from maas import io
    from maas.prefectfile import render

    print(f"{out} {'updated' if io.update_text(out, render(cfg)) else 'unchanged'}")


def cmd_prefect_yaml(args) -> None:
    from maas.config import compose

    write_prefect_yaml(args.out or "prefect.yaml", compose())


def cmd_deploy(args) -> None:
    from omegaconf import OmegaConf

    from maas.config import compose
    from maas.deploy import check_server, deploy

    check_server()  # no server to deploy to: say so before touching prefect.yaml
    cfg = compose()
    write_prefect_yaml("prefect.yaml", cfg)  # what Prefect registers is what conf/ says now
    deploy(cfg.orchestration.work_pool, Path.cwd(), OmegaConf.select(cfg, "orchestration.automations"))


def cmd_serve(args) -> None:
    from maas.packaged import packaged_bento
    from maas.params_file import PARAMS_FILE, load_params

    from maas.serving.tls import serve_flags

    tls = serve_flags(args.ssl_certfile, args.ssl_keyfile)  # checked before anything is imported or started
    cfg = load_params(args.params or PARAMS_FILE)
    info = packaged_bento(cfg)
    _absolute_prediction_log(cfg)
    # The same interpreter as this command: `bentoml` on PATH may be another install, or none.
    argv = [sys.executable, "-m", "bentoml", "serve", info["bento_tag"], "--port", str(args.port), *tls]
    print(" ".join(argv), flush=True)
    os.execv(argv[0], argv)


def cmd_lineage(args) -> None:
    from maas.lineage_check import check
    from maas.params_file import PARAMS_FILE, load_params, project_root

    if not check(args.bento, load_params(args.params or PARAMS_FILE), project_root()):
        raise SystemExit(1)


def _absolute_prediction_log(cfg) -> None:
    """The server runs in the Bento's folder: hand it the prediction log's folder as an absolute path, a
    relative `serve.prediction_log.dir` taken from the project root (a relative MAAS_PREDICTION_LOG_DIR
    was taken from where `maas serve` was typed)."""
    from omegaconf import OmegaConf

    from maas.serving.prediction_log import ENV_DIR, LogSettings

    log = LogSettings.from_mapping(OmegaConf.to_container(cfg.serve, resolve=True).get("prediction_log"))
    if log.on and not Path(log.dir).is_absolute():
        os.environ[ENV_DIR] = str(Path(log.dir).resolve())


def cmd_monitor(args) -> int:
    from maas.monitoring import compare, report

    cfg = compare.project_config(args.overrides)
    summary = compare.compare(cfg, args.log_dir or cfg.monitor.log_dir, since_hours=args.since_hours)
    page = report.write(summary, args.out or cfg.monitor.out).resolve()
    print(compare.headline(summary))
    print(f"report: {page}\nsummary: {page.with_name(report.SUMMARY_FILE)}")
    return 1 if summary["crossed"] else 0


def cmd_verify(args) -> None:
    from maas.verify import WORKSPACE_FIX, verify

    remote = args.remote if args.remote else (None if args.cloud else False)
    report = verify(Path.cwd(), args.targets, remote=remote)
    where = "workspace and cache" + ("" if remote is False else f" and remote {remote or '(default)'}")
    for name in report.unrecorded:
        print(f"{name}: not in dvc.lock yet (its stage never ran): not checked")
    if not report.ok:
        mismatch = any(p.what.startswith("hash mismatch") for p in report.problems)
        raise MaasError(f"{len(report.problems)} problem(s) in the {where}:\n  "
                        + "\n  ".join(map(str, report.problems))
                        + (f"\nnothing was repaired or used; {WORKSPACE_FIX}" if mismatch else ""))
    print(f"verified {len(report.outputs)} output(s) ({report.files} files hashed) in the {where}: "
          "every hash matches what DVC recorded")


def cmd_api_key(args) -> None:
    from maas.serving import keys

    if args.action == "hash":
        if not (key := sys.stdin.readline().strip()):
            raise MaasError("maas api-key hash reads the key from stdin: echo \"$KEY\" | maas api-key hash")
        print(keys.hash_key(key))
    elif args.action == "new":
        key, digest = keys.new_key(Path(args.file), args.name, args.role)
        print(key)  # alone on stdout, so `KEY=$(maas api-key new ...)` captures it
        print(f"appended its sha256 {digest} to {args.file}; the key itself is stored nowhere: keep it now",
              file=sys.stderr)
    else:
        for entry in keys.revoke(Path(args.file), args.which):
            print(f"revoked {entry.name or entry.digest} (line {entry.line} of {args.file})")


def cmd_model_key(args) -> None:
    from maas.serving import encryption

    if args.file is None:
        key = encryption.new_key()
        print(key)  # alone on stdout: `MAAS_MODEL_KEY=$(maas model-key new)` (or a secret store) takes it
        print(f"key fingerprint {encryption.ModelKey.parse(key, 'the new key').key_id}; the key is stored nowhere: "
              "keep it now, a model encrypted with it can't be served without it", file=sys.stderr)
        return
    key = encryption.write_new_key(Path(args.file))
    print(f"wrote a new key to {args.file} (readable by you only), fingerprint {key.key_id}: "
          f"export {encryption.KEY_FILE_ENV}={Path(args.file).resolve()}")


def at_project_root(args) -> None:
    """Work from the project root, as dvc does from a subfolder; files named on the
    command line stay relative to where the user typed them."""
    from maas.params_file import project_root

    for name in ("params", "out", "sweep_dir", "ssl_certfile", "ssl_keyfile", "log_dir"):
        if getattr(args, name, None):
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    if getattr(args, "targets", None):  # paths to verify; a stage name stays a name
        args.targets = [str(Path(t).resolve()) if Path(t).exists() else t for t in args.targets]
    # So do the files named in the environment that `maas serve` and the package stage pass on.
    for variable in ("MAAS_API_KEYS_FILE", "MAAS_MODEL_KEY_FILE", "MAAS_SSL_CERTFILE", "MAAS_SSL_KEYFILE",
                     "MAAS_PREDICTION_LOG_DIR"):
        if value := os.environ.get(variable):
            os.environ[variable] = str(Path(value).resolve())
    os.chdir(project_root())


def _tracking_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replace", action="store_true",
                   help="overrides that differ from params.yaml write over the DVC-tracked outputs, not under runs/")
    p.add_argument("--force", action="store_true", help="run stages that dvc.lock says are up to date")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maas", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compose", help="write params.yaml from conf/ and overrides")
    c.add_argument("overrides", nargs="*")
    c.add_argument("--out", help="default: params.yaml at the project root")
    c.set_defaults(fn=cmd_compose)

    s = sub.add_parser("stage", help="run one stage")
    s.add_argument("name")
    s.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer.epochs=5")
    s.add_argument("--params", help="read this composed file instead of composing conf/")
    s.add_argument("-m", "--multirun", action="store_true",
                   help="sweep through Hydra's multirun: a=1,2 overrides, hparams_search=..., hydra/launcher=...")
    _tracking_flags(s)
    s.set_defaults(fn=cmd_stage)

    w = sub.add_parser("sweep", help="sweep results: promote the best trial into conf/")
    w.add_argument("action", choices=["promote"])
    w.add_argument("sweep_dir", nargs="?", help="a sweep run's folder; default: the newest under sweeps/")
    w.set_defaults(fn=cmd_sweep)

    f = sub.add_parser("pipeline", help="run every stage as a Prefect flow")
    f.add_argument("overrides", nargs="*")
    _tracking_flags(f)
    f.set_defaults(fn=cmd_pipeline)

    d = sub.add_parser("data", help="data helpers")
    d.add_argument("action", choices=["export"])
    d.add_argument("overrides", nargs="*")
    d.set_defaults(fn=cmd_data)

    e = sub.add_parser("expectations", help="start a Great Expectations suite from the raw data")
    e.add_argument("action", choices=["suggest"])
    e.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=wine")
    e.add_argument("--out", help="write the suite to this file instead of printing it")
    e.add_argument("--save", action="store_true", help="write conf/expectations/<data file>_suggested.yaml")
    e.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    e.set_defaults(fn=cmd_expectations)

    y = sub.add_parser("dvc-yaml", help="regenerate dvc.yaml from the stage registry")
    y.add_argument("--out", help="default: dvc.yaml at the project root")
    y.set_defaults(fn=cmd_dvc_yaml)

    py = sub.add_parser("prefect-yaml", help="regenerate prefect.yaml from conf/orchestration")
    py.add_argument("--out", help="default: prefect.yaml at the project root")
    py.set_defaults(fn=cmd_prefect_yaml)

    dp = sub.add_parser("deploy", help="register prefect.yaml's deployments on the server in PREFECT_API_URL")
    dp.set_defaults(fn=cmd_deploy)

    v = sub.add_parser("serve", help="serve the packaged Bento with `bentoml serve`")
    v.add_argument("--params", help="default: params.yaml at the project root")
    v.add_argument("--port", type=int, default=3000)
    v.add_argument("--ssl-certfile", help="serve HTTPS with this PEM certificate (default: $MAAS_SSL_CERTFILE)")
    v.add_argument("--ssl-keyfile", help="the certificate's PEM private key (default: $MAAS_SSL_KEYFILE)")
    v.set_defaults(fn=cmd_serve)

    ln = sub.add_parser("lineage", help="where a Bento came from (commit, dvc.lock, data, config), checked "
                                       "against the workspace; exit 1 when something differs")
    ln.add_argument("bento", nargs="?", help="a Bento tag (default: the packaged one, models/bento/bento.json)")
    ln.add_argument("--params", default=None, help="the composed config (default: params.yaml)")
    ln.set_defaults(fn=cmd_lineage)

    mo = sub.add_parser("monitor", help="compare a server's prediction log with the packaged model's training data")
    mo.add_argument("log_dir", nargs="?", help="the prediction log's folder (default: monitor.log_dir)")
    mo.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. monitor.class_shift=0.5")
    mo.add_argument("--out", help="the report's folder (default: monitor.out)")
    mo.add_argument("--since-hours", type=float, help="only requests logged this recently (default: monitor.since_hours)")
    mo.set_defaults(fn=cmd_monitor)
    vf = sub.add_parser("verify", help="re-hash DVC-tracked outputs against dvc.lock and the .dvc files")
    vf.add_argument("targets", nargs="*", help="outputs, stages or .dvc files (default: all)")
    vf.add_argument("-c", "--cloud", action="store_true", help="also every object on the default remote")
    vf.add_argument("-r", "--remote", help="also every object on this remote")
    vf.set_defaults(fn=cmd_verify)

    k = sub.add_parser("api-key", help="make and revoke the API keys `maas serve` requires (MAAS_API_KEYS_FILE)")
    k.set_defaults(fn=cmd_api_key, anywhere=True)
    ka = k.add_subparsers(dest="action", required=True)
    kn = ka.add_parser("new", help="print a new key once and append its hash to the keys file")
    kn.add_argument("--file", required=True, help="the keys file (created if missing)")
    kn.add_argument("--name", help="a name for the key, written beside its hash")
    kn.add_argument("--role", default="predict", choices=["predict", "admin"],
                    help="predict: prediction routes; admin: also /metadata and every other keyed route")
    kr = ka.add_parser("revoke", help="remove a key from the keys file")
    kr.add_argument("which", help="the key's name or hash")
    kr.add_argument("--file", required=True)
    ka.add_parser("hash", help="print the sha256 of the key read from stdin")

    mk = sub.add_parser("model-key", help="make the key serve.encrypt encrypts the packaged model with")
    mk.set_defaults(fn=cmd_model_key, anywhere=True)
    mka = mk.add_subparsers(dest="action", required=True)
    mkn = mka.add_parser("new", help="print a new 256-bit key, or write it to a new file (--file)")
    mkn.add_argument("--file", help="write the key here (must not exist; made readable by you only)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    # Overrides may follow flags (`maas stage train -m a=1,2 b=3`); argparse stops filling a
    # positional list at the first flag, so collect the rest here.
    args, rest = p.parse_known_args(argv)
    if rest:
        if not hasattr(args, "overrides") or any(r.startswith("-") for r in rest):
            p.error(f"unrecognized arguments: {' '.join(rest)}")
        args.overrides = [*args.overrides, *rest]
    if getattr(args, "log_dir", None) and "=" in args.log_dir and not Path(args.log_dir).exists():
        args.overrides, args.log_dir = [args.log_dir, *args.overrides], None  # `maas monitor key=value`: no LOG_DIR
    try:
        if not getattr(args, "anywhere", False):  # a serving host holds a keys file, not a project
            at_project_root(args)
        code = args.fn(args)
    except MaasError as e:
        print(f"maas: error: {e}", file=sys.stderr)
        return 2
    return code or 0  # a command's own non-zero answer: `maas monitor` says 1 when a threshold is crossed


if __name__ == "__main__":
    sys.exit(main())

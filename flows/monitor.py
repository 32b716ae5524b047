"""`maas monitor` as a Prefect flow (deployment `maas-monitor`, on a schedule): a crossed threshold fails the run.

    python flows/monitor.py                    # monitor.log_dir of params.yaml
    python flows/monitor.py logs/predictions monitor.class_shift=0.5

The same function as the command (maas.monitoring): the report and summary go to monitor.out, and the
run stores its checks as a Markdown artifact, key `maas-monitor`. A threshold crossed ends the run
Failed with the one-line verdict as its message, which the automation monitoring/prefect/automations.yaml
(registered by `maas deploy`) sends as a notification; so does a monitor that could not run (no
packaged model, no log folder).
"""

from __future__ import annotations

import os
import sys

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed

from maas.params_file import project_root
from maas.errors import MaasError
from maas.monitoring import compare, report


@flow(name="maas-monitor", log_prints=True)
def monitor(log_dir: str | None = None, overrides: list[str] | None = None, since_hours: float | None = None):
    """Compare the prediction log in `log_dir` (default: monitor.log_dir) with the packaged model's training data."""
    try:
        os.chdir(project_root())  # paths in params.yaml are the project root's
        cfg = compare.project_config(overrides or [])
        summary = compare.compare(cfg, log_dir or cfg.monitor.log_dir, since_hours=since_hours)
        page = report.write(summary, cfg.monitor.out).resolve()
    except MaasError as e:
        return Failed(message=f"monitor: {e}")
    verdict = compare.headline(summary)
    print(f"{verdict}\nreport: {page}")
    create_markdown_artifact(key="maas-monitor", markdown=report.checks_markdown(summary),
                             description=f"maas monitor of {summary['log_dir']}")
    if summary["crossed"]:
        return Failed(message=verdict)
    return {"status": summary["status"], "report": str(page)}


if __name__ == "__main__":
    args = sys.argv[1:]
    folder = args.pop(0) if args and "=" not in args[0] else None
    state = monitor(log_dir=folder, overrides=args, return_state=True)
    if not state.is_completed():
        sys.exit(state.message)

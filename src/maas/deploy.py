"""`maas deploy` (what `make deploy` runs): register prefect.yaml's deployments on the Prefect
server in PREFECT_API_URL, creating their process work pool first if it is missing, then the
automations orchestration.automations declares (maas.monitoring.automations).

    prefect server start                                  # another terminal
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    maas deploy                                           # then: prefect worker start --pool maas-pool
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from maas.errors import MaasError

START_A_SERVER = ("start one with `prefect server start` (in another terminal) and "
                  "`export PREFECT_API_URL=http://127.0.0.1:4200/api`")


def check_server() -> str:
    """The API URL Prefect's settings give (environment, profile or prefect.toml), once a server
    answers there. Checked first: without a URL, a Prefect client would start a throwaway server
    and register nothing lasting."""
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise MaasError(f"PREFECT_API_URL is not set, so there is no Prefect server to deploy to: {START_A_SERVER}")
    with get_client(sync_client=True) as client:
        if (error := client.api_healthcheck()) is not None:
            raise MaasError(f"no Prefect server answers at PREFECT_API_URL={url} ({error}); {START_A_SERVER}")
    return url


def ensure_process_pool(client, name: str) -> bool:
    """Create the process work pool `name` unless it exists; return whether it was created."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(name=name, type=ProcessWorker.type,
                                               base_job_template=ProcessWorker.get_default_base_job_template()))
        return True
    if pool.type != ProcessWorker.type:
        raise MaasError(f"work pool {name!r} exists with type {pool.type!r}, and a {pool.type} worker would not run "
                        f"the flows from this folder; delete it (`prefect work-pool delete {name}`) or set "
                        f"orchestration.work_pool in conf/ to another name")
    return False


def deploy(pool: str, root: Path, automations: str | None = None) -> None:
    """Register every deployment in `root`/prefect.yaml, on the process work pool `pool`, then the
    automations in `root`/`automations` (call check_server first)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        created = ensure_process_pool(client, pool)
        print(f"work pool {pool!r} (process) {'created' if created else 'exists'} on {client.api_url}", flush=True)
    # Prefect's own command (with one client fix, see maas.prefect_cli): prefect.yaml means what
    # `prefect deploy` makes of it. --no-prompt: never ask (about remote code storage, saving the
    # config) when run from a terminal.
    argv = [sys.executable, "-m", "maas.prefect_cli", "--no-prompt", "deploy", "--all"]
    if subprocess.run(argv, cwd=root).returncode != 0:
        raise MaasError(f"`prefect deploy --all` failed in {root} (its output is above)")
    if automations:
        from maas.monitoring.automations import apply

        with get_client(sync_client=True) as client:
            for line in apply(client, root / automations):
                print(line, flush=True)

"""Prefect's own CLI with one fix for the pinned versions: `python -m maas.prefect_cli deploy ...`.

`prefect deploy` registers each deployment, then asks which workers are online to print a hint.
Prefect 3.8.8's client sends that query with `"offset": null, "limit": null`, and FastAPI 0.151+
answers 422, so `prefect deploy --all` stops after the first deployment. Here the query leaves
out what it doesn't set (the server then uses its defaults); nothing else changes.
tests/e2e/test_deploy.py checks the plain CLI still fails: when it passes, delete this module.
"""

from __future__ import annotations


async def read_workers_without_nulls(self, work_pool_name: str, worker_filter=None, offset=None, limit=None):
    """PrefectClient.read_workers_for_work_pool, minus the null paging fields."""
    from prefect.client.schemas.objects import Worker

    body = {"workers": worker_filter.model_dump(mode="json", exclude_unset=True) if worker_filter else None,
            "offset": offset, "limit": limit}
    response = await self.request("POST", "/work_pools/{work_pool_name}/workers/filter",
                                  path_params={"work_pool_name": work_pool_name},
                                  json={k: v for k, v in body.items() if v is not None})
    return Worker.model_validate_list(response.json())


def main() -> None:
    from prefect.cli import app
    from prefect.client.orchestration._work_pools.client import WorkPoolAsyncClient

    WorkPoolAsyncClient.read_workers_for_work_pool = read_workers_without_nulls
    app()


if __name__ == "__main__":
    main()

"""Register the repo's Prefect automations (orchestration.automations, Prefect's own file format) on a server.

`maas deploy` calls `apply` after registering the deployments. Each automation is created, or updated
in place when the server has one of that name, so deploying twice leaves one. An action's
`block_document_id` may name a block document ("<block type slug>/<name>") instead of giving its
id: it is looked up here. `custom-webhook/maas-alerts` is made (or updated) from MAAS_ALERT_WEBHOOK_URL
when that is set; a named block the server lacks leaves its action out, saying so, rather than failing
the deploy. Prefect's Python client, not `prefect automation create`: the pinned CLI's requests that
send null filters fail with 422 against the pinned FastAPI (see maas.prefect_cli).
"""

from __future__ import annotations

import os
from pathlib import Path
from uuid import UUID

import yaml

from maas.errors import ConfigError

WEBHOOK_ENV = "MAAS_ALERT_WEBHOOK_URL"
WEBHOOK_BLOCK = "custom-webhook/maas-alerts"
# Slack-style incoming webhooks take {"text": ...}; {{subject}} and {{body}} are the block's own placeholders.
WEBHOOK_JSON = {"text": "{{subject}}\n{{body}}"}


def load(path: str | Path) -> list[dict]:
    """The automations in `path` (a list under `automations:`, as Prefect's CLI reads them)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"orchestration.automations: cannot read {path} ({e})") from None
    automations = data.get("automations") if isinstance(data, dict) else None
    if not isinstance(automations, list) or not all(isinstance(a, dict) and a.get("name") for a in automations):
        raise ConfigError(f"{path} must hold `automations:`, a list of Prefect automations, each with a name")
    return automations


def webhook_block(url: str) -> UUID:
    """Save custom-webhook/maas-alerts pointing at `url`; its id."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(name="maas-alerts", url=url, json_data=WEBHOOK_JSON)
    return block.save(WEBHOOK_BLOCK.split("/")[1], overwrite=True)


def apply(client, path: str | Path, environ=os.environ) -> list[str]:
    """Create or update every automation in `path` on the server `client` talks to; what was done, one line each."""
    from prefect.events.schemas.automations import AutomationCore
    from prefect.exceptions import ObjectNotFound
    from pydantic import ValidationError

    said = []
    if url := environ.get(WEBHOOK_ENV):
        webhook_block(url)
        said.append(f"block {WEBHOOK_BLOCK}: posts to the URL in {WEBHOOK_ENV}")
    for spec in load(path):
        actions = []
        for action in spec.get("actions", []):
            ref = action.get("block_document_id")
            if isinstance(ref, str) and not _is_uuid(ref):
                slug, _, name = ref.partition("/")
                try:
                    action = {**action, "block_document_id": str(client.read_block_document_by_name(name, slug).id)}
                except ObjectNotFound:
                    said.append(f"automation {spec['name']!r}: no block {ref} on the server, so its "
                                f"{action.get('type')} action is left out (set {WEBHOOK_ENV} and deploy again)")
                    continue
            actions.append(action)
        if spec.get("actions") and not actions:
            said.append(f"automation {spec['name']!r} not registered: none of its actions can run")
            continue
        try:
            automation = AutomationCore.model_validate({**spec, "actions": actions})
        except ValidationError as e:
            raise ConfigError(f"{path}: automation {spec['name']!r} is not a Prefect automation: {e}") from None
        existing = client.read_automations_by_name(automation.name)
        if existing:
            client.update_automation(existing[0].id, automation)
            for extra in existing[1:]:  # made by hand or by an older deploy: one of a name is what we declare
                client.delete_automation(extra.id)
        else:
            client.create_automation(automation)
        said.append(f"automation {automation.name!r} {'updated' if existing else 'created'} "
                    f"({len(automation.actions)} action(s))")
    return said


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True

"""`sluice init DIR`: a small project that works out of the box."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import DefinitionError

FILES: dict[str, str] = {
    "sluice.toml": """\
# Sluice project settings. Everything below is the default; relative paths are relative
# to this file's folder.
[catalog]
name = "sluice"
type = "sql"
uri = "sqlite:///catalog/catalog.db"
warehouse = "file://catalog/warehouse"

[state]
url = "sqlite:///catalog/sluice.db"

[executor]
kind = "threads"  # or "processes": each step in a worker process forked from sluice
max_workers = 4
""",
    ".gitignore": "catalog/\n__pycache__/\n",
    "assets/__init__.py": '"""Assets of this project: Sluice imports every module here."""\n',
    "assets/bronze/__init__.py": "",
    "assets/bronze/raw_events.py": '''\
"""Bronze: raw events as a source would deliver them."""

import pyarrow as pa

from orchestrator import asset, checks


@asset(layer="bronze", checks=[checks.not_null("event_id"), checks.row_count(min=1)])
def raw_events(ctx):
    """Ten raw events; replace with a call to your source."""
    ctx.log.info("generating raw events")
    return pa.table(
        {
            "event_id": list(range(1, 11)),
            "kind": ["click", "view"] * 5,
            "amount": [float(i) for i in range(10)],
        }
    )
''',
    "assets/silver/__init__.py": "",
    "assets/silver/clicks.sql": """\
-- description: Click events only.
-- checks: unique(event_id); accepted_values(kind, ['click']); expression(amount >= 0)
SELECT event_id, kind, amount
FROM bronze.raw_events
WHERE kind = 'click'
""",
}


def init_project(target: Path) -> list[Path]:
    """Write the starter project into `target`; refuses to overwrite any existing file."""
    existing = [target / rel for rel in FILES if (target / rel).exists()]
    if existing:
        raise DefinitionError(f"{existing[0]} already exists; choose an empty folder")
    written = []
    for rel, text in FILES.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written

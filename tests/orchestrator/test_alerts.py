"""Alerts: payload shapes, delivery with retries to local HTTP endpoints, and the guarantee that
a broken endpoint or hook never fails nor slows a run."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import ProjectDir

from lakehouse.audits import CheckResult
from orchestrator import alerts
from orchestrator.alerts import (
    AlertEvent,
    FailedCheck,
    generic_payload,
    pagerduty_payload,
    post_json,
    run_events,
    slack_payload,
)
from orchestrator.executor import Blocked
from orchestrator.loader import load_project
from orchestrator.materialize import materialize_selection
from orchestrator.runner import StepOutcome

# -- a local HTTP endpoint -------------------------------------------------------------------


class Endpoint:
    """An HTTP server on 127.0.0.1 that records JSON posts; answers with `statuses` in turn
    (then 200), and holds every answer while `hold` is set and not released."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.statuses: list[int] = []
        self.hold: threading.Event | None = None
        self.arrived = threading.Condition()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint.arrived:
                    endpoint.requests.append((self.path, body))
                    endpoint.arrived.notify_all()
                if endpoint.hold is not None:
                    endpoint.hold.wait(30)
                status = endpoint.statuses.pop(0) if endpoint.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def wait_for(self, count: int, timeout: float = 30) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= count, timeout), (
                self.requests
            )

    def by_path(self) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for path, body in self.requests:
            found.setdefault(path, []).append(body)
        return found

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    made = Endpoint()
    yield made
    made.close()
    assert alerts.flush(30)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/down"


def alerts_toml(endpoint: Endpoint, *, webhook: str | None = None, extra: str = "") -> str:
    return (
        "[alerts]\n"
        f'webhook = "{webhook or endpoint.url("/generic")}"\n'
        f'slack_webhook = "{endpoint.url("/slack")}"\n'
        'pagerduty_routing_key = "routing-key-123"\n'
        f'pagerduty_url = "{endpoint.url("/pagerduty")}"\n'
        "timeout_s = 5\n" + extra
    )


# -- payloads (pure) -------------------------------------------------------------------------

AUDIT_EVENT = AlertEvent(
    kind="audit_failure",
    asset="silver.orders",
    run_id="20240101-020000-abcdef",
    status="audit_failed",
    project="shop",
    partition="2024-01-01",
    error="audit failed: not_null(order_id) (2 rows)",
    failed_checks=(FailedCheck("not_null(order_id)", 2),),
    branch="sluice-20240101-020000-abcdef-orders",
    commands=(
        "sluice run 20240101-020000-abcdef",
        'sluice query "SELECT * FROM silver.orders" --ref sluice-20240101-020000-abcdef-orders',
    ),
    at=datetime(2024, 1, 1, 2, tzinfo=UTC),
)


def test_the_slack_payload_is_readable_text() -> None:
    text = slack_payload(AUDIT_EVENT)["text"]
    assert list(slack_payload(AUDIT_EVENT)) == ["text"]
    assert "silver.orders [2024-01-01] failed its audit in run 20240101-020000-abcdef" in text
    assert "`not_null(order_id)`: 2 failing row(s)" in text
    assert "--ref sluice-20240101-020000-abcdef-orders" in text


def test_the_pagerduty_payload_follows_events_v2_with_one_incident_per_asset() -> None:
    body = pagerduty_payload(AUDIT_EVENT, "routing-key-123")
    assert body["routing_key"] == "routing-key-123"
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == "sluice:shop:silver.orders"
    assert {"summary", "source", "severity", "custom_details"} <= set(body["payload"])
    assert body["payload"]["severity"] == "error"
    assert body["payload"]["custom_details"]["failed_checks"] == [
        {"name": "not_null(order_id)", "failing_rows": 2, "error": None}
    ]
    other_run = AlertEvent(
        kind="failure", asset="silver.orders", run_id="r2", status="failed", project="shop"
    )
    assert pagerduty_payload(other_run, "k")["dedup_key"] == body["dedup_key"]
    recovery = AlertEvent(
        kind="recovery", asset="silver.orders", run_id="r3", status="published", project="shop"
    )
    resolved = pagerduty_payload(recovery, "k")
    assert resolved == {
        "routing_key": "k",
        "event_action": "resolve",
        "dedup_key": body["dedup_key"],
    }


def test_the_generic_payload_names_everything_needed_to_act() -> None:
    body = generic_payload(AUDIT_EVENT)
    assert body["asset"] == "silver.orders"
    assert body["partition"] == "2024-01-01"
    assert body["run_id"] == "20240101-020000-abcdef"
    assert body["error"].startswith("audit failed")
    assert body["failed_checks"][0]["failing_rows"] == 2
    assert any("--ref" in command for command in body["inspect"])
    assert body["text"] == slack_payload(AUDIT_EVENT)["text"]  # Slack-compatible too
    json.dumps(body)


def _outcome(asset: str, status: str, **kwargs: Any) -> StepOutcome:
    now = datetime.now(UTC)
    return StepOutcome(
        asset=asset,
        status=status,  # type: ignore[arg-type]
        started_at=now,
        finished_at=now,
        attempts=1,
        branch=f"sluice-r-{asset.split('.')[1]}",
        **kwargs,
    )


def test_one_event_per_failed_step_none_for_blocked_and_recoveries_only_after_failures() -> None:
    failing = CheckResult(
        name="unique(id)",
        kind="unique",
        severity="error",
        passed=False,
        failing_rows=3,
        samples=[],
    )
    results: dict[str, StepOutcome | Blocked] = {
        "bronze.a": _outcome("bronze.a", "failed", error="boom"),
        "silver.b": Blocked("silver.b", "upstream bronze.a did not publish"),
        "bronze.c@2024-01-02": _outcome("bronze.c", "audit_failed", checks=(failing,)),
        "bronze.d": _outcome("bronze.d", "published"),
        "bronze.e": _outcome("bronze.e", "published"),
    }
    events = run_events("r", results, project="p", previous={"bronze.d": "failed"})
    assert [(e.kind, e.asset, e.partition) for e in events] == [
        ("failure", "bronze.a", None),
        ("audit_failure", "bronze.c", "2024-01-02"),
        ("recovery", "bronze.d", None),
    ]
    assert events[1].failed_checks == (FailedCheck("unique(id)", 3, None),)
    assert events[0].branch is None and events[1].branch == "sluice-r-c"
    assert [e.kind for e in run_events("r", results, project="p")] == [
        "failure",
        "audit_failure",
    ]


# -- delivery --------------------------------------------------------------------------------


def test_a_failing_endpoint_is_retried_a_few_times_then_given_up(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    pauses: list[float] = []
    endpoint.statuses = [500, 503]
    assert post_json(endpoint.url("/x"), {"a": 1}, timeout_s=5, attempts=3, sleep=pauses.append)
    assert len(endpoint.requests) == 3
    assert pauses == [0.5, 1.0]

    caplog.set_level(logging.WARNING, logger="sluice.alerts")
    url = closed_port_url()
    assert not post_json(url, {"a": 1}, timeout_s=5, attempts=2, sleep=pauses.append)
    assert "given up after 2 attempt(s)" in caplog.text
    assert "/down" not in caplog.text  # webhook paths are secrets: never logged


FAILING_PROJECT = {
    "assets/bronze/orders.py": """
        import pyarrow as pa

        from orchestrator import Retry, asset, checks


        @asset(layer="bronze", retry=Retry(attempts=2, backoff_s=0))
        def orders(ctx):
            raise ConnectionError("source always down")


        @asset(layer="silver")
        def clean(ctx, orders):
            return orders


        @asset(layer="bronze")
        def fine(ctx):
            return pa.table({"id": [1, 2]})


        @asset(layer="bronze", checks=[checks.not_null("id")])
        def holes(ctx):
            return pa.table({"id": [1, None, None]})
        """
}


def test_failing_all_attempts_sends_exactly_one_alert_blocks_downstream_and_exits_1(
    project: ProjectDir, endpoint: Endpoint
) -> None:
    project.write({**FAILING_PROJECT, "sluice.toml": alerts_toml(endpoint)})
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "--project", str(project.root)]
        + ["materialize", "orders+"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "blocked" in done.stdout and "silver.clean" in done.stdout
    # The process delivered its alerts before exiting: nothing arrives later.
    paths = endpoint.by_path()
    assert sorted((p, len(b)) for p, b in paths.items()) == [
        ("/generic", 1),
        ("/pagerduty", 1),
        ("/slack", 1),
    ]
    generic = paths["/generic"][0]
    run_id = generic["run_id"]
    assert generic["event"] == "failure"
    assert generic["asset"] == "bronze.orders"
    assert "source always down" in generic["error"]
    assert f"sluice run {run_id}" in generic["inspect"]
    slack = paths["/slack"][0]
    assert list(slack) == ["text"]
    assert "bronze.orders failed in run" in slack["text"]
    pagerduty = paths["/pagerduty"][0]
    assert pagerduty["routing_key"] == "routing-key-123"
    assert pagerduty["event_action"] == "trigger"
    assert pagerduty["dedup_key"] == f"sluice:{project.root.name}:bronze.orders"
    assert pagerduty["payload"]["custom_details"]["run_id"] == run_id
    assert pagerduty["payload"]["source"] == f"sluice:{project.root.name}"


def test_an_audit_failure_alert_names_the_checks_and_the_branch_command(
    project: ProjectDir, endpoint: Endpoint
) -> None:
    project.write({**FAILING_PROJECT, "sluice.toml": alerts_toml(endpoint)})
    summary = materialize_selection(load_project(project.root), ["holes"], command="test")
    assert not summary.ok
    endpoint.wait_for(3)
    assert alerts.flush(30)
    generic = endpoint.by_path()["/generic"]
    assert len(generic) == 1
    assert generic[0]["event"] == "audit_failure"
    assert generic[0]["failed_checks"] == [
        {"name": "not_null(id)", "failing_rows": 2, "error": None}
    ]
    branch = generic[0]["branch"]
    assert (
        branch
        and f'sluice query "SELECT * FROM bronze.holes" --ref {branch}' in (generic[0]["inspect"])
    )
    inspected = project.sluice("query", "SELECT count(*) AS n FROM bronze.holes", "--ref", branch)
    assert inspected.code == 0 and "3" in inspected.out  # the command works on the kept branch


def test_an_alert_endpoint_that_is_down_does_not_fail_the_run(
    project: ProjectDir, endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sluice.alerts")
    endpoint.statuses = [500] * 10  # the Slack and PagerDuty endpoints answer 500
    project.write(
        {**FAILING_PROJECT, "sluice.toml": alerts_toml(endpoint, webhook=closed_port_url())}
    )
    summary = materialize_selection(load_project(project.root), ["orders+", "fine"], command="t")
    assert isinstance(summary.results["bronze.fine"], StepOutcome)
    assert summary.results["bronze.fine"].status == "published"
    assert isinstance(summary.results["silver.clean"], Blocked)
    assert alerts.flush(60)
    assert len(endpoint.requests) == 6  # two destinations, three attempts each
    assert caplog.text.count("given up after 3 attempt(s)") == 3
    result = project.sluice("materialize", "orders+", "fine")
    assert result.code == 1 and "Traceback" not in result.out


def test_a_hanging_alert_endpoint_never_slows_the_run(
    project: ProjectDir, endpoint: Endpoint
) -> None:
    endpoint.hold = threading.Event()  # the endpoint accepts and never answers until released
    project.write({**FAILING_PROJECT, "sluice.toml": alerts_toml(endpoint)})
    summary = materialize_selection(load_project(project.root), ["orders"], command="test")
    assert not summary.ok
    # The run returned while every alert was still waiting for its answer.
    endpoint.wait_for(1)
    assert not alerts.flush(0.1)
    endpoint.hold.set()
    assert alerts.flush(30)


HOOKED = """
    import json
    import pathlib

    import pyarrow as pa

    from orchestrator import asset

    HERE = pathlib.Path(__file__).parent
    FLAG = HERE / "broken"


    def remember(event):
        (HERE / "hooked.json").write_text(json.dumps(event.to_dict()))


    def explode(event):
        raise RuntimeError("the hook itself is broken")


    @asset(layer="bronze", on_failure=remember)
    def flaky(ctx):
        if FLAG.exists():
            raise ConnectionError("down")
        return pa.table({"id": [1]})


    @asset(layer="bronze", on_failure=explode)
    def other(ctx):
        raise ConnectionError("down too")
    """


def test_on_failure_hooks_get_the_event_and_a_broken_hook_changes_nothing(
    project: ProjectDir, caplog: pytest.LogCaptureFixture
) -> None:
    project.write({"assets/bronze/hooked.py": HOOKED})
    here = project.root / "assets" / "bronze"
    (here / "broken").touch()
    summary = materialize_selection(load_project(project.root), ["*"], command="test")
    assert alerts.flush(30)
    statuses = {k: getattr(r, "status", None) for k, r in summary.results.items()}
    assert statuses == {"bronze.flaky": "failed", "bronze.other": "failed"}
    event: dict[str, Any] = json.loads((here / "hooked.json").read_text())
    assert (event["asset"], event["run_id"], event["event"]) == (
        "bronze.flaky",
        summary.run_id,
        "failure",
    )
    assert "on_failure hook of bronze.other raised" in caplog.text


def test_a_recovery_resolves_the_incident_when_asked(
    project: ProjectDir, endpoint: Endpoint
) -> None:
    project.write(
        {
            "assets/bronze/hooked.py": HOOKED,
            "sluice.toml": alerts_toml(endpoint, extra="on_recovery = true\n"),
        }
    )
    here = project.root / "assets" / "bronze"
    (here / "broken").touch()
    materialize_selection(load_project(project.root), ["flaky"], command="test")
    assert alerts.flush(30)
    (here / "broken").unlink()
    summary = materialize_selection(load_project(project.root), ["flaky"], command="test")
    assert summary.ok
    assert alerts.flush(30)
    pagerduty = endpoint.by_path()["/pagerduty"]
    assert [p["event_action"] for p in pagerduty] == ["trigger", "resolve"]
    assert pagerduty[0]["dedup_key"] == pagerduty[1]["dedup_key"]
    assert "recovered" in endpoint.by_path()["/slack"][1]["text"]


def test_alert_urls_must_be_http(project: ProjectDir) -> None:
    project.write(
        {
            "assets/bronze/hooked.py": HOOKED,
            "sluice.toml": '[alerts]\nwebhook = "file:///etc/passwd"\n',
        }
    )
    result = project.sluice("plan")
    assert result.code == 2
    assert "alerts.webhook" in result.out and "http" in result.out

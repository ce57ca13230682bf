"""Alerts: tell someone when an asset finally fails, fails its audit, or (optionally) recovers.

Destinations come from `[alerts]` in `sluice.toml`: a generic JSON `webhook`, a Slack incoming
`slack_webhook`, a PagerDuty Events API v2 `pagerduty_routing_key`; and each asset's own
`on_failure(event)` hook. One event per failed or audit-failed asset of a run (blocked assets
get none: their root cause does).

Guarantees:

* Alerting never fails, blocks or slows a run: `alert_run` only builds the events and hands
  them to a background sender; any error there is logged and swallowed.
* Each destination gets each event once, retried `attempts` times with a growing pause when it
  fails or does not answer within `timeout_s`; a destination that stays down is logged
  (without its URL's secret path) and given up.
* The process waits at most `FLUSH_AT_EXIT_S` at exit for alerts still being sent.
* PagerDuty events use one `dedup_key` per asset, so repeated failures group into one incident
  and a recovery resolves it.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import HTTPException
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from orchestrator.assets import AssetKey
from orchestrator.config import AlertsConfig
from orchestrator.executor import Blocked
from orchestrator.runner import StepOutcome

if TYPE_CHECKING:
    from orchestrator.loader import Project
    from orchestrator.state import StateStore

log = logging.getLogger("sluice.alerts")

AlertKind = Literal["failure", "audit_failure", "recovery"]
FAILED_STATUSES = frozenset({"failed", "audit_failed", "conflict"})
FLUSH_AT_EXIT_S = 15.0
BACKOFF_S = 0.5
SENDER_THREADS = 2


@dataclass(frozen=True)
class FailedCheck:
    name: str
    failing_rows: int
    error: str | None = None


@dataclass(frozen=True)
class AlertEvent:
    """What happened to one asset in one run; every payload is built from this alone."""

    kind: AlertKind
    asset: str
    run_id: str
    status: str
    project: str
    partition: str | None = None
    error: str | None = None
    failed_checks: tuple[FailedCheck, ...] = ()
    branch: str | None = None
    """The audit branch kept for inspection, if any."""
    commands: tuple[str, ...] = ()
    """Commands that show what went wrong: the run, and a query over the kept branch."""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def summary(self) -> str:
        """One line: what happened to which asset (and partition) in which run."""
        what = {
            "failure": "failed",
            "audit_failure": "failed its audit",
            "recovery": "recovered",
        }[self.kind]
        where = f" [{self.partition}]" if self.partition else ""
        checks = ", ".join(f"{c.name}: {c.failing_rows} failing row(s)" for c in self.failed_checks)
        detail = f" ({checks})" if checks else ""
        return f"sluice: {self.asset}{where} {what} in run {self.run_id}{detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "asset": self.asset,
            "partition": self.partition,
            "run_id": self.run_id,
            "status": self.status,
            "project": self.project,
            "error": self.error,
            "failed_checks": [
                {"name": c.name, "failing_rows": c.failing_rows, "error": c.error}
                for c in self.failed_checks
            ],
            "branch": self.branch,
            "inspect": list(self.commands),
            "at": self.at.isoformat(),
            "summary": self.summary,
        }


# -- events ----------------------------------------------------------------------------------


def _event(
    kind: AlertKind, result: StepOutcome, run_id: str, project: str, partition: str | None
) -> AlertEvent:
    failed = tuple(
        FailedCheck(c.name, c.failing_rows, c.error) for c in result.checks if c.blocking
    )
    kept = result.status in ("audit_failed", "conflict")
    commands = [f"sluice run {run_id}"]
    if kept:
        commands.append(f'sluice query "SELECT * FROM {result.asset}" --ref {result.branch}')
    return AlertEvent(
        kind=kind,
        asset=result.asset,
        run_id=run_id,
        status=result.status,
        project=project,
        partition=partition,
        error=None if kind == "recovery" else result.error,
        failed_checks=failed,
        branch=result.branch if kept else None,
        commands=tuple(commands) if kind != "recovery" else (),
    )


def run_events(
    run_id: str,
    results: Mapping[str, StepOutcome | Blocked],
    *,
    project: str,
    previous: Mapping[str, str] | None = None,
) -> list[AlertEvent]:
    """The alerts of one run: a failure or audit failure per failed step, and a recovery per
    published step whose previous status was a failure.

    `results` is keyed by step (`asset` or `asset@partition`); `previous` maps a step key to
    its last recorded status.
    """
    events = []
    for node, result in sorted(results.items()):
        if isinstance(result, Blocked):
            continue
        _, _, partition = node.partition("@")
        args = (result, run_id, project, partition or None)
        if result.status == "audit_failed":
            events.append(_event("audit_failure", *args))
        elif result.status in FAILED_STATUSES:
            events.append(_event("failure", *args))
        elif previous is not None and previous.get(node) in FAILED_STATUSES:
            events.append(_event("recovery", *args))
    return events


# -- payloads --------------------------------------------------------------------------------


def generic_payload(event: AlertEvent) -> dict[str, Any]:
    """The generic webhook body: every field of the event, plus Slack-compatible `text`."""
    return {**event.to_dict(), "text": slack_payload(event)["text"]}


def slack_payload(event: AlertEvent) -> dict[str, Any]:
    """A Slack incoming-webhook body: readable `text` (mrkdwn)."""
    icon = ":white_check_mark:" if event.kind == "recovery" else ":rotating_light:"
    lines = [f"{icon} *{event.summary}*"]
    if event.error and not event.failed_checks:
        lines.append(f"> {event.error.splitlines()[0][:500]}")
    for check in event.failed_checks:
        lines.append(f"• `{check.name}`: {check.failing_rows} failing row(s)")
    lines.extend(f"`{command}`" for command in event.commands)
    return {"text": "\n".join(lines)}


def dedup_key(event: AlertEvent) -> str:
    """One PagerDuty incident per project and asset, whatever the partition or run."""
    return f"sluice:{event.project}:{event.asset}"


def pagerduty_payload(event: AlertEvent, routing_key: str) -> dict[str, Any]:
    """A PagerDuty Events API v2 body: `trigger` on failure, `resolve` on recovery."""
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "resolve" if event.kind == "recovery" else "trigger",
        "dedup_key": dedup_key(event),
    }
    if event.kind != "recovery":
        body["payload"] = {
            "summary": event.summary[:1024],
            "source": f"sluice:{event.project}",
            "severity": "error",
            "component": event.asset,
            "group": AssetKey.parse(event.asset).layer,
            "class": event.kind,
            "custom_details": event.to_dict(),
        }
    return body


# -- delivery --------------------------------------------------------------------------------


def _shown(url: str) -> str:
    """A URL without its path (webhook paths are secrets)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..."


def post_json(
    url: str,
    payload: Mapping[str, Any],
    *,
    timeout_s: float,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """POST `payload` as JSON, retrying failures; True once a 2xx answer came back."""
    body = json.dumps(payload, default=str).encode()
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "sluice-alerts"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read()
            return True
        except (urllib.error.URLError, HTTPException, OSError, ValueError) as exc:
            log.warning(
                "alert to %s failed (attempt %d of %d): %s", _shown(url), attempt, attempts, exc
            )
        if attempt < attempts:
            sleep(BACKOFF_S * 2 ** (attempt - 1))
    log.error("alert to %s given up after %d attempt(s)", _shown(url), attempts)
    return False


class AlertSender:
    """A few daemon threads that deliver queued jobs; `flush` waits for them, bounded."""

    def __init__(self, threads: int = SENDER_THREADS) -> None:
        self._queue: queue.Queue[Callable[[], None]] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._threads = threads
        self._started = False
        self._start_lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self._start_lock:
            if not self._started:
                for number in range(self._threads):
                    threading.Thread(
                        target=self._work, name=f"sluice-alerts-{number}", daemon=True
                    ).start()
                atexit.register(self.flush, FLUSH_AT_EXIT_S)
                self._started = True
        with self._idle:
            self._pending += 1
        self._queue.put(job)

    def flush(self, timeout_s: float) -> bool:
        """Wait until every submitted job is done; False if some are still going."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                job()
            except Exception:
                log.exception("alert job failed")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()


sender = AlertSender()
"""The process's sender: runs never wait for it."""


def flush(timeout_s: float = FLUSH_AT_EXIT_S) -> bool:
    """Wait (at most `timeout_s`) for alerts still being sent; True when none is left."""
    return sender.flush(timeout_s)


def _deliveries(
    event: AlertEvent,
    config: AlertsConfig,
    hook: Callable[[Any], object] | None,
) -> list[Callable[[], None]]:
    def post(url: str, payload: dict[str, Any]) -> Callable[[], None]:
        def job() -> None:
            post_json(url, payload, timeout_s=config.timeout_s, attempts=config.attempts)

        return job

    jobs: list[Callable[[], None]] = []
    if event.kind == "recovery" and not config.on_recovery:
        return jobs
    if config.webhook:
        jobs.append(post(config.webhook, generic_payload(event)))
    if config.slack_webhook:
        jobs.append(post(config.slack_webhook, slack_payload(event)))
    if config.pagerduty_routing_key:
        jobs.append(
            post(config.pagerduty_url, pagerduty_payload(event, config.pagerduty_routing_key))
        )
    if hook is not None and event.kind != "recovery":

        def call_hook() -> None:
            try:
                hook(event)
            except Exception:
                log.exception("on_failure hook of %s raised", event.asset)

        jobs.append(call_hook)
    return jobs


def dispatch(
    events: list[AlertEvent],
    config: AlertsConfig,
    hooks: Mapping[str, Callable[[Any], object]] | None = None,
) -> int:
    """Queue every delivery of `events`; returns how many were queued. Never raises."""
    queued = 0
    for event in events:
        for job in _deliveries(event, config, (hooks or {}).get(event.asset)):
            sender.submit(job)
            queued += 1
    return queued


# -- the run's side --------------------------------------------------------------------------


def previous_statuses(project: Project, store: StateStore) -> dict[str, str] | None:
    """Before a run: each step's (`asset[@partition]`) last recorded status, when recoveries
    are alerted.

    None (no recovery alerts) when `on_recovery` is off or the history cannot be read.
    """
    if not project.config.alerts.on_recovery:
        return None
    try:
        latest = store.latest_steps()
    except Exception:
        log.exception("cannot read run history for recovery alerts")
        return None
    return {
        (asset if partition is None else f"{asset}@{partition}"): step.status
        for (asset, partition), step in latest.items()
    }


def alert_run(
    project: Project,
    run_id: str,
    results: Mapping[str, StepOutcome | Blocked],
    previous: Mapping[str, str] | None = None,
) -> None:
    """After a run: queue its alerts. Never raises and never waits for a destination."""
    try:
        events = run_events(run_id, results, project=project.root.name, previous=previous)
        hooks = {
            str(key): asset.on_failure
            for key, asset in project.graph.assets.items()
            if asset.on_failure is not None
        }
        dispatch(events, project.config.alerts, hooks)
    except Exception:
        log.exception("alerts for run %s could not be queued", run_id)

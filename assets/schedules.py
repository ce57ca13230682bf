"""When the example lakehouse refreshes: every night at 02:00 UTC (`sluice scheduler`)."""

from orchestrator import schedule

nightly = schedule("nightly", cron="0 2 * * *", select="*")

"""The Dagster UI on materialized partitions, driven in headless Chromium.

A range run over two days (one with a failing blocking check, one passing) is recorded
in the test's instance; then `dagster-webserver` serves it and Chromium opens what an
operator would: the asset graph, the partitions of raw_messages, the checks of
raw_messages with the partition of each result, the sensor's page and a resource's
configuration (an env var by name, not its value). A screenshot of
each is kept in the test's temp dir.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from email_assets import settings
from email_assets.defs.materialize import materialize_range
from email_assets.demo.daemon import WORKSPACE, wait_for
from email_assets.storage.database import engine_for
from email_assets.storage.tables import raw_messages
from email_assets_tests.conftest import add_account, message, utc

GOOD, BAD = dt.date(2026, 11, 18), dt.date(2026, 11, 19)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1600,1000",
]

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def webserver(project_env: Path):
    port = _free_port()
    home = project_env / "dagster_home"
    log = (project_env / "webserver.log").open("wb")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            str(WORKSPACE),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=home,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_for(up, 120, "dagster-webserver answering")
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        yield driver
    finally:
        driver.quit()


def _page(browser, url: str, texts: list[str], shot: Path, timeout: float = 60) -> str:
    """Open `url`, wait until every text is on the page, keep a screenshot; the page text."""
    browser.get(url)

    def shown(driver) -> str | bool:
        body = driver.find_element(By.TAG_NAME, "body").text
        return body if all(text in body for text in texts) else False

    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.5).until(shown)
    finally:
        browser.save_screenshot(str(shot))


def test_the_ui_shows_assets_partitions_per_partition_checks_and_the_sensor(
    mail_user, instance, project_env, webserver, browser, tmp_path
) -> None:
    mail_user.append([(message("good day", "All fine."), utc(GOOD)), (message("bad day", "Corrupted."), utc(BAD))])
    assert add_account(mail_user, "work") == 0
    assert materialize_range(instance, "work", GOOD, BAD).success
    with engine_for(settings.database_url()).begin() as connection:  # one day's bytes no longer match
        connection.execute(sa.update(raw_messages).where(raw_messages.c.day == BAD.isoformat()).values(size=1))
    assert not materialize_range(instance, "work", GOOD, BAD, raise_on_error=False).success

    graph = _page(
        browser,
        f"{webserver}/locations/email_assets/asset-groups/email",
        ["raw_messages", "parsed_emails", "cleaned_text", "email_embeddings"],
        tmp_path / "asset-graph.png",
    )
    assert "email" in graph
    partitions = _page(
        browser,
        f"{webserver}/assets/raw_messages?view=partitions",
        ["work", GOOD.isoformat(), BAD.isoformat()],
        tmp_path / "partitions.png",
    )
    assert "Materialized" in partitions or "materialized" in partitions
    checks = _page(
        browser,
        f"{webserver}/assets/raw_messages?view=checks",
        ["raw_bytes_intact", "all_messages_fetched"],
        tmp_path / "checks.png",
    )
    assert "Failed" in checks or "failed" in checks.lower()
    detail = _page(
        browser,
        f"{webserver}/assets/raw_messages?view=checks&checkDetail=raw_bytes_intact",
        ["Latest execution", "Partition", "work|2026-11-1"],
        tmp_path / "check-partitions.png",
    )
    assert "blocking" in detail
    browser.find_element(By.XPATH, "//*[text()='Execution history']").click()
    try:
        history = WebDriverWait(browser, 60, poll_frequency=0.5).until(
            lambda driver: (body := driver.find_element(By.TAG_NAME, "body").text).count("work|2026-11-1") >= 4 and body
        )
    finally:
        browser.save_screenshot(str(tmp_path / "check-history.png"))
    # Each evaluation with its own partition: two runs x two days, the bad day failed once.
    assert history.count(f"work|{GOOD.isoformat()}") == 2 and history.count(f"work|{BAD.isoformat()}") == 2
    _page(
        browser,
        f"{webserver}/locations/email_assets/sensors/mailbox_highwater_sensor",
        ["mailbox_highwater_sensor", "Polls every account"],
        tmp_path / "sensor.png",
    )
    # Configuration through Dagster: the resource shows the variable it reads, never its value.
    resource = _page(
        browser,
        f"{webserver}/locations/email_assets/resources/credentials",
        ["credentials", "fernet_keys", "EMAIL_ASSETS_FERNET_KEYS"],
        tmp_path / "resource.png",
    )
    assert os.environ["EMAIL_ASSETS_FERNET_KEYS"] not in resource
    for name in ("asset-graph", "partitions", "checks", "check-partitions", "check-history", "sensor", "resource"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000

"""A served vault with its console, OpenBao as key provider *and* identity provider, and
PostgreSQL; and a real Chromium driven by Selenium (Debian's chromium and chromium-driver)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import (
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import Engine, text

from access.runtime import open_runtime
from api.demo.oidc import DEMO_PEOPLE, Person, setup_oidc
from api.demo.openbao import ManagedOpenBao, free_port
from api.demo.serve import ServedVault, transit_env
from tests.conftest import POSTGRES_URL, REQUIRE_SERVICES
from vault.config import Settings
from vault.db import make_engine

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
REVEAL_SECONDS = 3
# The README's screenshots are refreshed with PII_VAULT_SCREENSHOTS=1; otherwise they are
# still taken (the pages render), into a temporary directory, and the tree stays clean.
SCREENSHOTS = (
    Path(__file__).resolve().parent.parent / "docs" / "screenshots"
    if os.environ.get("PII_VAULT_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "pii-vault-screenshots"
)
PEOPLE = {p.username: p for p in DEMO_PEOPLE}
# OpenBao's login page (its web UI)
AUTH_METHOD = "select[data-test-select='auth-method'], #select-auth-method"
USERNAME = "input[name='username'], #username"
PASSWORD = "input[name='password'], #password"
SUBMIT = "button[data-test-auth-submit], button[type='submit']"


@dataclass
class Stack:
    url: str
    bao: ManagedOpenBao
    env: dict[str, str]
    registration_key: str
    served: ServedVault

    def create_customer(self, **fields: str) -> tuple[str, dict[str, str]]:
        r = requests.post(
            f"{self.url}/v1/subjects",
            json={
                "purpose": "account_registration",
                "external_id": uuid.uuid4().hex,
                "fields": fields,
            },
            headers={"Authorization": f"Bearer {self.registration_key}"},
            timeout=20,
        )
        assert r.status_code == 201, r.text
        return r.json()["subject_id"], r.json()["tokens"]


def _require_browser() -> None:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if REQUIRE_SERVICES:
            pytest.fail("chromium and chromium-driver are required here (apt-get install)")
        pytest.skip("chromium / chromedriver not installed")


@contextmanager
def console_stack(
    postgres_admin: Engine, people: tuple[Person, ...] = DEMO_PEOPLE, **settings: str
) -> Iterator[Stack]:
    """A served vault (two workers) with its console on PostgreSQL and OpenBao as both key
    provider and identity provider; ``settings`` are further PII_VAULT_* values."""
    _require_browser()
    work = Path(tempfile.mkdtemp(prefix="pii-console-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    schema = f"piivault_console_{uuid.uuid4().hex[:8]}"
    with postgres_admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    bao = ManagedOpenBao(work / "bao").start()  # dev mode: its UI is the login page
    try:
        token = bao.bootstrap()
        oidc = setup_oidc(bao.client(), f"{url}/console/auth/callback", people)
        env = transit_env(
            work,
            bao.addr,
            token,
            database_url=f"{POSTGRES_URL}?options=-csearch_path%3D{schema}",
            PII_VAULT_CONSOLE_ISSUER=oidc.issuer,
            PII_VAULT_CONSOLE_CLIENT_ID=oidc.client_id,
            PII_VAULT_CONSOLE_CLIENT_SECRET=oidc.client_secret,
            PII_VAULT_CONSOLE_URL=url,
            PII_VAULT_CONSOLE_SECURE_COOKIES="false",  # loopback development only
            PII_VAULT_CONSOLE_REVEAL_SECONDS=str(REVEAL_SECONDS),
            **settings,
        )
        runtime = open_runtime(Settings.from_env(env), migrate=True)
        runtime.policy.seed_default()
        key = runtime.principals.create("svc:registration", ["registration-service"])[1]
        runtime.close()
        served = ServedVault(env, port, log=work / "serve.log").start()
        try:
            yield Stack(url, bao, env, key, served)
        finally:
            served.stop()
    finally:
        bao.stop()
        with postgres_admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(postgres_admin: Engine) -> Iterator[Stack]:
    with console_stack(postgres_admin) as built:
        yield built


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """A fresh headless Chromium: its own profile, so no cookie crosses between tests."""
    with chromium() as driver:
        yield driver


@pytest.fixture
def second_browser() -> Iterator[WebDriver]:
    """Another person at another desk (e.g. the approver of an agent's request)."""
    with chromium() as driver:
        yield driver


@contextmanager
def chromium() -> Iterator[WebDriver]:
    _require_browser()
    profile = tempfile.mkdtemp(prefix="pii-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: WebDriver, seconds: float = 30) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, seconds)


def sign_in(driver: WebDriver, stack: Stack, person: Person, *, start: str = "/console/") -> None:
    """Through OpenBao's own login page (userpass), back to the console. If OpenBao still
    holds a session of this browser it answers at once, as a real single sign-on would."""
    driver.get(stack.url + start)
    if driver.find_elements(By.ID, "sign-in"):
        driver.find_element(By.ID, "sign-in").click()

    def settled(d: WebDriver) -> str | None:
        if d.current_url.startswith(stack.url) and d.find_elements(By.CSS_SELECTOR, "form.signout"):
            return "in"
        if d.current_url.startswith(stack.bao.addr) and d.find_elements(
            By.CSS_SELECTOR, AUTH_METHOD
        ):
            return "form"
        return None

    try:
        where = wait(driver, 60).until(settled)
    except TimeoutException as exc:
        body = driver.find_element(By.TAG_NAME, "body").text[:500]
        raise AssertionError(f"sign-in stuck at {driver.current_url}: {body}") from exc
    if where == "form":
        openbao_login(driver, person)
        try:
            wait(driver, 60).until(lambda d: settled(d) == "in")
        except TimeoutException as exc:
            body = driver.find_element(By.TAG_NAME, "body").text[:500]
            raise AssertionError(f"sign-in stuck at {driver.current_url}: {body}") from exc


def openbao_login(driver: WebDriver, person: Person) -> None:
    """OpenBao's login form: choose userpass, type the credentials, sign in."""
    w = wait(driver, 60)
    method = w.until(
        ec.presence_of_element_located(
            (By.CSS_SELECTOR, "select[data-test-select='auth-method'], #select-auth-method")
        )
    )

    Select(method).select_by_value("userpass")
    w.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "input[name='username'], #username"))
    ).send_keys(person.username)
    driver.find_element(By.CSS_SELECTOR, "input[name='password'], #password").send_keys(
        person.password
    )
    driver.find_element(
        By.CSS_SELECTOR, "button[data-test-auth-submit], button[type='submit']"
    ).click()


def audit_count(stack: Stack) -> int:
    """Events in the served vault's audit log (read with the test's own connection)."""
    runtime = open_runtime(Settings.from_env(stack.env))
    try:
        return len(runtime.audit.events(limit=1000))
    finally:
        runtime.close()


def _replaced(element: Any) -> Any:
    """``ec.staleness_of``, also when ChromeDriver reports the old node as "does not belong
    to the document" (a WebDriverException, not a stale reference: seen in CI) — which
    says the same thing, the page was replaced."""

    def check(_: WebDriver) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    return check


def click_through(driver: WebDriver, by: str, what: str) -> None:
    """Click something that loads a new page, and wait until the old page is gone."""
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(by, what).click()
    wait(driver).until(_replaced(page))
    # ...and until the new one has loaded (else a lookup can meet a node of a document
    # being replaced: "Node with given id does not belong to the document", seen in CI).
    wait(driver).until(lambda d: d.execute_script("return document.readyState") == "complete")


def screenshot(driver: WebDriver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    time.sleep(0.2)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def session_cookie(driver: WebDriver) -> dict[str, Any]:
    return next(c for c in driver.get_cookies() if c["name"].endswith("pv_session"))


def with_session(stack: Stack, cookie_value: str, change: str, **params: object) -> Any:
    """Run SQL on the browser's own server-side session row (as time passing would)."""
    engine = make_engine(stack.env["PII_VAULT_DATABASE_URL"])
    try:
        with engine.begin() as conn:
            digest = hashlib.sha256(cookie_value.encode()).hexdigest()
            return conn.execute(text(change), {"h": digest, **params}).all()
    finally:
        engine.dispose()


def unlabelled(driver: WebDriver) -> list[str]:
    """Every visible form control must have a label (or an aria-label)."""
    return list(
        driver.execute_script(
            """
            return Array.from(document.querySelectorAll('input, select, textarea'))
              .filter(e => e.type !== 'hidden' && e.type !== 'submit')
              .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
              .map(e => e.id || e.name);
            """
        )
    )

"""Issue 18 (1, 2): a step-up that cannot be skipped and sessions that end when the person
leaves, in real Chromium against `pii-vault serve --workers 2` with OpenBao as the
identity provider, under short settings: step-up window 4 s, the provider asked again
every second, sessions living 20 s.

Reported: a plain ``GET /console/login`` after the step-up window was answered from the
provider's session without a password and the reveal then went through; a person
removed from the support group, or deleted at the provider, kept revealing until idle
for 15 minutes; sessions had no absolute lifetime; export and erase needed no recent
sign-in. Each scenario failed on the code before this change.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from sqlalchemy import Engine

from access.runtime import open_runtime
from api.demo.oidc import DEMO_PEOPLE, Person
from tests.console_support import (
    PEOPLE,
    Stack,
    console_stack,
    openbao_login,
    screenshot,
    sign_in,
    wait,
)
from vault.config import Settings

pytestmark = pytest.mark.slow

STEP_UP = 4
LIFETIME = 20
SEARCHES = 3
LEAVERS = (
    Person("leaver1", "leaver-one-pass", "leaver1@example.com", ("support-agents",)),
    Person("leaver2", "leaver-two-pass", "leaver2@example.com", ("support-agents",)),
    Person("expiring", "expiring-pass", "expiring@example.com", ("support-agents",)),
    Person("sweeper", "sweeper-pass", "sweeper@example.com", ("support-agents",)),
)


@pytest.fixture(scope="module")
def short(postgres_admin: Engine) -> Iterator[Stack]:
    with console_stack(
        postgres_admin,
        DEMO_PEOPLE + LEAVERS,
        PII_VAULT_CONSOLE_STEP_UP_SECONDS=str(STEP_UP),
        PII_VAULT_CONSOLE_REVALIDATE_SECONDS="1",
        PII_VAULT_CONSOLE_SESSION_LIFETIME=str(LIFETIME),
        PII_VAULT_SEARCH_BUDGET=str(SEARCHES),
    ) as built:
        yield built


def _customer(stack: Stack) -> tuple[str, str]:
    email = f"people-{time.time_ns()}@example.com"
    sid, _ = stack.create_customer(full_name="Jane Roe", email=email)
    return sid, email


def _try_reveal(browser: WebDriver, stack: Stack, sid: str) -> None:
    browser.get(stack.url + f"/console/subjects/{sid}")
    wait(browser).until(ec.presence_of_element_located((By.ID, "email-ticket")))
    browser.find_element(By.ID, "email-ticket").send_keys("CS-77")
    browser.find_element(By.ID, "email-reason").send_keys("customer asked to confirm the address")
    browser.find_element(By.ID, "email-reveal").click()


def _revealed(browser: WebDriver) -> str | None:
    found = browser.find_elements(By.ID, "revealed-value")
    return found[0].text if found else None


def test_a_plain_sign_in_after_the_window_does_not_refresh_the_step_up(
    browser: WebDriver,
    short: Stack,
) -> None:
    sid, email = _customer(short)
    sign_in(browser, short, PEOPLE["agent"])
    _try_reveal(browser, short, sid)
    wait(browser).until(ec.presence_of_element_located((By.ID, "revealed-value")))
    assert _revealed(browser) == email  # fresh: the password was just typed
    time.sleep(STEP_UP + 3)
    # Past the window (by the provider's auth_time), a reveal is sent to a step-up...
    _try_reveal(browser, short, sid)
    wait(browser).until(lambda d: d.current_url.startswith(short.bao.addr))
    assert email not in browser.page_source
    # ...and the attack: a plain sign-in (no step_up) while OpenBao's own session is open.
    browser.get(short.url + f"/console/login?next=/console/subjects/{sid}")
    wait(browser).until(
        lambda d: (
            d.find_elements(By.ID, "email-ticket")
            or (d.current_url.startswith(short.bao.addr) and "auth" in d.current_url)
        )
    )
    if browser.current_url.startswith(short.bao.addr):
        pass  # the provider asked for the password: nothing was skipped
    else:
        _try_reveal(browser, short, sid)
        # Not revealed: off to the provider for the credentials again.
        wait(browser).until(lambda d: d.current_url.startswith(short.bao.addr))
    assert email not in browser.page_source
    screenshot(browser, "step-up-asked-again")
    openbao_login(browser, PEOPLE["agent"])
    wait(browser).until(ec.presence_of_element_located((By.ID, "email-ticket")))
    _try_reveal(browser, short, sid)
    wait(browser).until(ec.presence_of_element_located((By.ID, "revealed-value")))
    assert _revealed(browser) == email


def test_export_and_erase_need_a_step_up_too(
    browser: WebDriver,
    short: Stack,
) -> None:
    sid, email = _customer(short)
    sign_in(browser, short, PEOPLE["privacy"])
    time.sleep(STEP_UP + 3)
    browser.get(short.url + f"/console/privacy/{sid}")
    wait(browser).until(ec.presence_of_element_located((By.ID, "export")))
    browser.find_element(By.ID, "export").click()
    wait(browser).until(lambda d: d.current_url.startswith(short.bao.addr))
    # (A step-up starts a new sign-in: the old session is gone.) Signed in again, and the
    # window passed again: the erasure too is sent to the provider first.
    sign_in(browser, short, PEOPLE["privacy"])
    time.sleep(STEP_UP + 3)
    browser.get(short.url + f"/console/privacy/{sid}")
    wait(browser).until(ec.presence_of_element_located((By.ID, "erase-confirm")))
    browser.find_element(By.ID, "erase-confirm").send_keys(sid)
    browser.find_element(By.ID, "erase-understood").click()
    browser.find_element(By.ID, "erase-reason").send_keys("asked")
    browser.find_element(By.ID, "erase").click()
    wait(browser).until(lambda d: d.current_url.startswith(short.bao.addr))
    # Nothing was erased, nothing exported.
    runtime = open_runtime(Settings.from_env(short.env))
    try:
        assert runtime.vault.status(sid) == "active"
    finally:
        runtime.close()
    assert email not in browser.page_source


def test_removed_from_the_group_at_the_provider_ends_the_session(
    browser: WebDriver,
    short: Stack,
) -> None:
    sid, email = _customer(short)
    leaver = LEAVERS[0]
    sign_in(browser, short, leaver)
    _try_reveal(browser, short, sid)
    wait(browser).until(ec.presence_of_element_located((By.ID, "revealed-value")))
    admin = short.bao.client()
    group = admin.read("identity/group/name/support-agents")["data"]
    entity = admin.read(f"identity/entity/name/{leaver.username}")["data"]["id"]
    admin.write(
        "identity/group/name/support-agents",
        member_entity_ids=[m for m in group["member_entity_ids"] if m != entity],
    )
    time.sleep(1.5)  # past the revalidation interval
    browser.get(short.url + f"/console/subjects/{sid}")
    wait(browser).until(ec.presence_of_element_located((By.ID, "session-ended")))
    assert email not in browser.page_source
    assert not browser.find_elements(By.CSS_SELECTOR, "form.signout")
    screenshot(browser, "session-ended")


def test_deleted_at_the_provider_is_signed_out_at_the_next_request(
    browser: WebDriver,
    short: Stack,
) -> None:
    sid, _ = _customer(short)
    leaver = LEAVERS[1]
    sign_in(browser, short, leaver)
    browser.get(short.url + "/console/reveals")
    assert browser.find_elements(By.CSS_SELECTOR, "form.signout")
    admin = short.bao.client()
    admin.delete(f"auth/userpass/users/{leaver.username}")
    admin.delete(f"identity/entity/name/{leaver.username}")
    time.sleep(1.5)
    browser.get(short.url + f"/console/subjects/{sid}")
    wait(browser).until(ec.presence_of_element_located((By.ID, "session-ended")))
    assert not browser.find_elements(By.CSS_SELECTOR, "form.signout")


def test_a_session_ends_at_its_absolute_lifetime(
    browser: WebDriver,
    short: Stack,
) -> None:
    sign_in(browser, short, LEAVERS[2])
    started = time.monotonic()
    while time.monotonic() - started < LIFETIME + 2:  # busy all along: never idle
        browser.get(short.url + "/console/reveals")
        if not browser.find_elements(By.CSS_SELECTOR, "form.signout"):
            break
        time.sleep(2)
    assert time.monotonic() - started >= LIFETIME - 1  # not before its time
    assert not browser.find_elements(By.CSS_SELECTOR, "form.signout")


def test_a_search_sweep_meets_the_budget(browser: WebDriver, short: Stack) -> None:
    """Issue 18 (3): 300 phone guesses found 20 customers in 3.4 s; now a few a minute."""
    from selenium.webdriver.support.ui import Select

    _, email = _customer(short)
    sign_in(browser, short, LEAVERS[3])
    if time.time() % 60 > 45:  # budgets are fixed UTC minutes: not across a boundary
        time.sleep(61 - time.time() % 60)
    for attempt in range(SEARCHES + 1):
        browser.get(short.url + "/console/search")
        Select(browser.find_element(By.ID, "kind")).select_by_value("email")
        browser.find_element(By.ID, "value").send_keys(email)
        browser.find_element(By.ID, "submit").click()
        wait(browser).until(
            lambda d: (
                d.find_elements(By.ID, "results") or d.find_elements(By.CSS_SELECTOR, ".problem")
            )
        )
        if attempt < SEARCHES:
            assert browser.find_elements(By.ID, "results")
    problem = browser.find_element(By.CSS_SELECTOR, ".problem")
    assert "searches a minute" in problem.text and problem.get_attribute("data-status") == "429"
    screenshot(browser, "search-budget")

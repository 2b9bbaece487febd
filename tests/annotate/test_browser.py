"""End to end in headless Chromium against the real server: keyboard annotation, undo, export,
hostile answers shown as text, and refusals without a session or a CSRF token."""

from __future__ import annotations

import json
import shutil

import pytest

from limakit.annotate import db
from limakit.cli import main
from tests.annotate.helpers import XSS, Server, make_db

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "browser tests need chromium and chromedriver (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="browser tests need selenium")

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

A_TEXTS = [XSS, "Answer **two** from A", "Answer three from A", "Answer four from A"]
B_TEXTS = [XSS, "Answer two from B", "Answer three from B", "Answer four from B"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("browser")
    with Server(make_db(d, A_TEXTS, B_TEXTS)) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.unhandled_prompt_behavior = "ignore"  # an alert stays open for no_alert() to see
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def sign_in(browser, server, name: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{server.url}/login?token={server.token(name)}")
    browser.find_element(By.ID, "sign-in").click()
    WebDriverWait(browser, 10).until(EC.presence_of_element_located((By.ID, "progress-text")))


def press(browser, key: str, then_progress: str) -> None:
    browser.find_element(By.TAG_NAME, "body").send_keys(key)
    WebDriverWait(browser, 10).until(
        EC.text_to_be_present_in_element((By.ID, "progress-text"), then_progress)
    )


def no_alert(browser) -> bool:
    try:
        _ = browser.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def test_annotate_with_keys_undo_and_export(browser, server, tmp_path):
    sign_in(browser, server, "kim")
    assert browser.find_element(By.ID, "progress-text").text == "0 / 4 done"
    press(browser, "1", "1 / 4 done")
    assert "Answer" in browser.find_element(By.ID, "answer-a").text  # pair p1 now shown
    press(browser, "2", "2 / 4 done")
    press(browser, "3", "3 / 4 done")
    press(browser, "u", "2 / 4 done")  # undo the third verdict: p2 is shown again
    assert "three" in browser.find_element(By.ID, "answer-a").text

    out = tmp_path / "people" / "verdicts.jsonl"
    assert main(["annotate", "export", "--db", str(server.db_path), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    kim = [r for r in rows if r["annotator"] == "kim"]
    assert [(r["id"], r["sample"]) for r in kim] == [("p0", 0), ("p1", 0)]
    conn = db.connect(server.db_path)
    seed = db.seed(conn)
    conn.close()
    for row, shown in zip(kim, ("A", "B")):  # key 1 = left better, key 2 = right better
        swapped = db.swapped_for(seed, "kim", "model-a vs model-b", row["id"], 0)
        verdict = row["b_then_a" if swapped else "a_then_b"]
        assert verdict["label"] == shown and row["a_then_b" if swapped else "b_then_a"] is None
        model_a_won = (shown == "A") != swapped
        assert row["result"] == ("win" if model_a_won else "lose")
    summary = json.loads((out.parent / "summary.json").read_text())
    assert summary["judge"]["backend"] == "human" and summary["annotators"]["kim"] == 2


def test_hostile_answer_is_text_runs_nothing_and_loads_nothing(browser, server):
    sign_in(browser, server, "xss-reader")
    answer = browser.find_element(By.ID, "answer-a")
    text = answer.text
    assert "<script>alert(1)</script>" in text
    assert "<img src=x onerror=alert(2)>" in text
    assert "[click me](javascript:alert(3))" in text  # the link is refused: shown as typed
    assert answer.find_elements(By.CSS_SELECTOR, "script, img, a") == []
    assert no_alert(browser)
    assert not [p for p in server.app.paths if p.endswith("/x")]
    # the check above can see an alert: one raised on purpose is found
    browser.execute_script("setTimeout(() => alert('probe'), 0)")
    WebDriverWait(browser, 5).until(EC.alert_is_present())
    assert not no_alert(browser)
    browser.switch_to.alert.accept()


def test_no_session_is_refused_without_answer_text(browser, server):
    browser.delete_all_cookies()
    browser.get(f"{server.url}/sets/1")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Sign in" in body and "Answer two" not in body and "alert" not in body


def test_post_without_csrf_token_is_refused_in_the_browser(browser, server):
    sign_in(browser, server, "forger")
    status = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const body = new URLSearchParams({pair_id: "1", choice: "A"});
        fetch("/sets/1/verdict", {method: "POST", body, redirect: "manual"})
          .then((r) => done(r.status));
        """
    )
    assert status == 403
    assert browser.find_element(By.ID, "progress-text").text == "0 / 4 done"
    browser.refresh()
    assert browser.find_element(By.ID, "progress-text").text == "0 / 4 done"


def test_a_multi_line_comment_of_exactly_maxlength_is_recorded(browser, server):
    """The page counts a line break as one character, the form sends it as two (CRLF): a comment
    the page accepts must be recorded with the verdict, not refused by the server."""
    sign_in(browser, server, "writer")
    box = browser.find_element(By.NAME, "comment")
    limit = int(box.get_attribute("maxlength"))
    lines = [f"line {i:02d} of my note, with some words" for i in range(limit // 40)]
    text = "\n".join(lines)
    text += "!" * (limit - len(text))  # exactly the limit, counted as the page counts
    assert len(text) == limit and text.count("\n") == len(lines) - 1
    box.send_keys(text)
    assert browser.execute_script("return arguments[0].value;", box) == text  # nothing cut
    browser.find_element(By.CSS_SELECTOR, 'button[data-key="1"]').click()
    WebDriverWait(browser, 10).until(
        lambda b: b.find_elements(By.ID, "progress-text") or b.find_elements(By.TAG_NAME, "pre")
    )
    assert browser.find_elements(By.ID, "progress-text"), browser.page_source[:300]
    assert browser.find_element(By.ID, "progress-text").text == "1 / 4 done"
    conn = db.connect(server.db_path)
    try:
        rows = conn.execute(
            "SELECT v.comment FROM verdicts v JOIN users u ON u.id = v.user_id "
            "WHERE u.name = 'writer' AND v.undone IS NULL"
        ).fetchall()
    finally:
        conn.close()
    assert [r["comment"] for r in rows] == [text]

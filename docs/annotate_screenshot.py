"""Make docs/annotate.png: the annotation page in headless Chromium, on two short answers.

    .venv/bin/python docs/annotate_screenshot.py

Needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver) and selenium.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.annotate.helpers import Server  # noqa: E402

PROMPT = "How do I keep cut basil fresh for a week?"
ANSWER_A = """Treat it like a bunch of flowers:

1. Trim the stems and stand them in a glass of water.
2. Keep the glass on the counter, **not** in the fridge: cold turns the leaves black.
3. Change the water every day or two.

Loosely covering the leaves with a bag keeps them from drying out."""
ANSWER_B = "Put it in the fridge in a sealed box with a damp paper towel."


def main(out: Path) -> None:
    from limakit.annotate.server import load_set
    from limakit.core.files import write_jsonl

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        rows = []
        for name, text in (("a", ANSWER_A), ("b", ANSWER_B)):
            rows = [{"id": f"q{i}", "source": "demo", "meta": {"model": f"model-{name}"},
                     "messages": [{"role": "user", "content": PROMPT},
                                  {"role": "assistant", "content": text}]}
                    for i in range(12)]  # fmt: skip
            write_jsonl(d / f"{name}.jsonl", rows)
        load_set(d / "db.sqlite", d / "a.jsonl", d / "b.jsonl")
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,820",
                    "--hide-scrollbars", "--force-device-scale-factor=1"):  # fmt: skip
            options.add_argument(arg)
        driver = webdriver.Chrome(
            service=webdriver.ChromeService(shutil.which("chromedriver")), options=options
        )
        try:
            with Server(d / "db.sqlite") as server:
                driver.get(f"{server.url}/login?token={server.token('sam')}")
                driver.find_element(By.ID, "sign-in").click()
                for k in range(1, 5):  # a few verdicts in, so the progress bar shows
                    driver.find_element(By.CSS_SELECTOR, "button[data-key='3']").click()
                    WebDriverWait(driver, 10).until(
                        EC.text_to_be_present_in_element((By.ID, "progress-text"), f"{k} / 12")
                    )
                driver.save_screenshot(str(out))
        finally:
            driver.quit()
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(__file__).with_name("annotate.png"))

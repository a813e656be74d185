"""Take the README's screenshots from a running app (`make demo`), in Debian's Chromium driven by playwright.

Usage:
    .venv/bin/python docs/screenshots/take.py --password PASSWORD [--url http://127.0.0.1:8000] [--username demo]

It logs in, opens the dashboard, the latest iteration's page and a pair page of the iteration waiting at its
review gate (pressing `--keys` there, `y` by default: the first claim confirmed, so the page shows a decision), and
writes the PNGs beside itself.
"""

import argparse
import os
import re
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--username", default="demo")
    parser.add_argument("--password", required=True)
    parser.add_argument("--keys", default="y", help="review keys to press on the pair page")
    args = parser.parse_args()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        page = browser.new_page(base_url=args.url, viewport={"width": 1280, "height": 900})
        page.goto("/login/")
        page.fill("#id_username", args.username)
        page.fill("#id_password", args.password)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/$"))

        page.wait_for_timeout(1500)  # the charts draw once Chart.js has loaded
        page.screenshot(path=HERE / "dashboard.png", full_page=True)

        page.goto("/iterations/")
        latest = page.locator("table a[href^='/iterations/']").first.get_attribute("href")
        page.goto(latest)
        page.wait_for_timeout(1500)
        page.screenshot(path=HERE / "iteration.png", full_page=True)

        page.goto("/review/pairs/")
        hrefs = page.eval_on_selector_all("a", "links => links.map(a => a.getAttribute('href'))")
        pair = next(h for h in hrefs if h and re.fullmatch(r"/review/\d+/pairs/\d+-\d+/", h))
        page.goto(pair)
        page.wait_for_selector(".claim")
        for key in args.keys:
            page.keyboard.press(key)
            page.wait_for_timeout(800)
        page.screenshot(path=HERE / "pair.png", full_page=True)
        browser.close()
    print("screenshots written under", HERE)


if __name__ == "__main__":
    main()

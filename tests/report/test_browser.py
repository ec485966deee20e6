"""report.html in real headless Chromium: the page opens from disk with networking off,
every embedded figure decodes to an image with a width, and at 1280 x 720 px the verdict
table and the headline figure are on the first screen. Skipped where Chromium is absent
(CI installs the Debian package `chromium`)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Appended to a copy of the page: after load, mark every image with whether it decoded.
PROBE = """<script>
window.addEventListener("load", () => {
  for (const image of document.images) {
    image.setAttribute("data-decoded", String(image.complete && image.naturalWidth > 0));
  }
  document.body.setAttribute("data-probe", "done");
});
</script>"""


# After load: where the verdict table and the headline figure end (CSS px from the top of
# the page), and the layout width.
FOLD_PROBE = """<script>
window.addEventListener("load", () => {
  const bottom = (node) => node ?
    String(Math.ceil(node.getBoundingClientRect().bottom + window.scrollY)) : "";
  const body = document.body;
  body.setAttribute("data-width", String(window.innerWidth));
  body.setAttribute("data-table-bottom", bottom(document.getElementById("table-verdicts")));
  body.setAttribute("data-figure-bottom", bottom(document.querySelector(".lead figure img")));
  body.setAttribute("data-probe", "done");
});
</script>"""
FOLD = 720  # px: the height of a 1280 x 720 screen
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (CI "
                                                             "installs it; apt-get install "
                                                             "chromium)")


def chromium_dom(page: str, probe: str, tmp_path, *, size: str = "1280,1000") -> str:
    """The DOM of ``page`` with ``probe`` appended, after load, in a window of ``size``."""
    probed = tmp_path / "report.html"
    probed.write_text(page.replace("</body>", probe + "\n</body>"), encoding="utf-8")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
               f"--window-size={size}", "--hide-scrollbars", "--virtual-time-budget=10000",
               "--dump-dom", probed.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert 'data-probe="done"' in result.stdout, result.stderr[-2000:]
    return result.stdout


@needs_chromium
def test_every_figure_of_report_html_loads_in_headless_chromium(report, tmp_path):
    page = (report.out_dir / "report.html").read_text(encoding="utf-8")
    dom = chromium_dom(page, PROBE, tmp_path)
    decoded = re.findall(r'<img [^>]*data-decoded="(true|false)"', dom)
    n_figures = len(list((report.out_dir / "figures").glob("*.png")))
    assert decoded == ["true"] * n_figures


@needs_chromium
def test_verdict_table_and_headline_figure_are_above_the_fold_at_1280_px(report, tmp_path):
    # The synthetic run's first screen: title, the smoke-run banner, then 11 verdict rows
    # beside Figure 1. Laid out 1280 px wide, both end within the first 720 px of the page:
    # a 1280 x 720 screen shows them without scrolling. (Headless Chromium's viewport is
    # shorter than its window, so the fold is measured from the top of the page.)
    page = (report.out_dir / "report.html").read_text(encoding="utf-8")
    dom = chromium_dom(page, FOLD_PROBE, tmp_path)
    found = dict(re.findall(r'data-(width|table-bottom|figure-bottom)="(\d+)"', dom))
    assert set(found) == {"width", "table-bottom", "figure-bottom"}, found
    assert int(found["width"]) == 1280
    assert 0 < int(found["table-bottom"]) <= FOLD, found
    assert 0 < int(found["figure-bottom"]) <= FOLD, found

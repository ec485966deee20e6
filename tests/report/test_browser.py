"""report.html in real headless Chromium: the page opens from disk with networking off and
every embedded figure decodes to an image with a width. Skipped where Chromium is absent
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


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (CI installs it; "
                                             "apt-get install chromium)")
def test_every_figure_of_report_html_loads_in_headless_chromium(report, tmp_path):
    page = (report.out_dir / "report.html").read_text(encoding="utf-8")
    probed = tmp_path / "report.html"
    probed.write_text(page.replace("</body>", PROBE + "\n</body>"), encoding="utf-8")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
               "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    dom = result.stdout
    assert 'data-probe="done"' in dom, result.stderr[-2000:]
    decoded = re.findall(r'<img [^>]*data-decoded="(true|false)"', dom)
    n_figures = len(list((report.out_dir / "figures").glob("*.png")))
    assert decoded == ["true"] * n_figures

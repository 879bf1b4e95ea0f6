"""What every browser test of the console does on each page: screenshots in both languages
saved as test artefacts, and axe-core's accessibility check with no serious violation."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[2]
AXE = ROOT / "node_modules/axe-core/axe.min.js"
SHOTS = Path(os.environ.get("IOCHUB_SCREENSHOTS", tempfile.gettempdir())) / "iochub-e2e"
PHONE = {"width": 360, "height": 740}
DESK = {"width": 1280, "height": 900}
# WCAG 2.1 A and AA, as the console promises; "serious" and "critical" fail the test.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
FAILING_IMPACTS = {"serious", "critical"}


async def choose_language(page: Any, base_url: str, language: str) -> None:
    """The header switch's cookie, set directly so a test can start in either language."""
    await page.context.add_cookies([{"name": "iochub_lang", "value": language, "url": base_url}])


async def log_in(
    page: Any, base_url: str, username: str, password: str, language: str | None = None
) -> None:
    """Sign in; with ``language``, go on in it whatever the account last chose (signing in
    restores the language kept for the account, which other tests may have changed)."""
    await page.goto(base_url + "/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    assert "/login" not in page.url, await page.inner_text("main")
    if language is not None:
        await choose_language(page, base_url, language)
        await page.reload()


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    assert AXE.exists(), "axe-core is not installed (make vendor runs npm ci)"
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
    )
    return [v for v in result["violations"] if v["impact"] in FAILING_IMPACTS]


def describe(violations: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(node["target"]) for node in v["nodes"][:3])
        for v in violations
    )


async def check_page(page: Any, name: str, *, languages: tuple[str, ...] = ("vi", "en")) -> None:
    """Screenshot the page in each language (reloading it) and run axe-core on each."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    url = page.url
    base = url.split("/", 3)
    base_url = "/".join(base[:3])
    for language in languages:
        await choose_language(page, base_url, language)
        await page.goto(url)
        await page.wait_for_load_state()
        width = page.viewport_size["width"] if page.viewport_size else 0
        await page.screenshot(path=str(SHOTS / f"{name}-{language}-{width}px.png"), full_page=True)
        violations = await axe_violations(page)
        assert not violations, f"{name} ({language}): {describe(violations)}"
    await choose_language(page, base_url, languages[0])
    await page.goto(url)


async def fits_the_width(page: Any) -> None:
    """Nothing makes the page scroll sideways (ward staff use phones 360 px wide)."""
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"{page.url} scrolls {overflow} px sideways at this width"

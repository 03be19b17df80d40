"""The review page in real headless Chromium (Debian's ``chromium``, driven by Playwright).

A reader logs in, opens the worklist and the sample study, sees the OCR boxes and a linked thumbnail,
corrects a link, approves the machine draft, and the FHIR DiagnosticReport turns ``final`` with the reader
as ``resultsInterpreter``. Then: the report's HTML rendition shows its images with no token; the reader
withdraws the approval, saves an edit, adds a link, sees the SR report's content tree; an administrator
manages accounts. ``UI_SCREENSHOTS=DIR`` also saves the screenshots used in docs/ui.md.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.fhir import ids

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (scripts/system-deps.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _fhir(served: Any, path: str) -> Any:
    r = httpx.get(f"{served.base}/fhir/{path}", headers={"Authorization": f"Bearer {served.token}"})
    assert r.status_code == 200, r.text
    return r.json()


def _shot(page: Any, tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    page.screenshot(path=str(target), full_page=True)
    out = os.environ.get("UI_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(target, Path(out) / name)


def _login(page: Any, served: Any, user: str, password: str) -> None:
    page.goto(f"{served.base}/ui/worklist")
    assert "/ui/login" in page.url
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("form.login button[type=submit]")


def test_reader_reviews_the_sample_study(
    ui_served: Any, browser: Any, reader: tuple[str, str, str], tmp_path: Path
) -> None:
    READER = reader
    served = ui_served
    uid = served.manifest["study_instance_uid"]
    context = browser.new_context(viewport={"width": 1500, "height": 1000}, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # Wrong password: refused, no session.
    _login(page, served, READER[0], "not the password")
    assert page.locator(".error").is_visible()
    # Right password: the worklist.
    _login(page, served, READER[0], READER[1])
    page.wait_for_url("**/ui/worklist")
    row = page.locator(f"tr[data-study='{uid}']")
    assert row.locator(".badge.done").is_visible()
    cells = row.locator("td")
    assert "CT" in cells.nth(1).inner_text() and "DX" in cells.nth(1).inner_text()
    assert cells.nth(4).inner_text() == served.manifest["accession_number"]
    assert int(cells.nth(5).inner_text()) >= 1  # reports
    assert int(cells.nth(6).inner_text()) >= 2  # links
    assert cells.nth(7).inner_text() == "1"  # one draft waiting
    page.select_option("select[name=state]", "failed")
    page.click(".filters button")
    assert page.locator(f"tr[data-study='{uid}']").count() == 0
    page.goto(f"{served.base}/ui/worklist")
    _shot(page, tmp_path, "ui-worklist.png")

    # The study view: the page with its OCR boxes, the sentences with their linked thumbnails.
    page.click(f"tr[data-study='{uid}'] a.open")
    page.wait_for_url(f"**/ui/study/{uid}")
    assert page.locator(".page .box").count() > 10
    page.wait_for_function("() => [...document.querySelectorAll('.page img')].every(i => i.naturalWidth > 0)")
    assert page.locator(".page .box").first.is_visible()
    page.uncheck("#toggle-boxes")
    assert not page.locator(".page .box").first.is_visible()
    page.check("#toggle-boxes")
    cited = served.manifest["links"]["Se 2 Im 5"]
    link = page.locator(f".sentence .link[data-sop='{cited}']").first
    thumb = link.locator("button.thumb img")
    thumb.scroll_into_view_if_needed()
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
    assert "Image 5" in link.locator(".pos").inner_text()
    assert "explicit" in link.locator(".method").inner_text()
    _shot(page, tmp_path, "ui-study.png")

    # Click opens the image large; arrows scroll through the series; the linked slice is marked.
    link.locator("button.thumb").click()
    viewer = page.locator("dialog#viewer")
    assert viewer.is_visible()
    page.wait_for_function("() => document.getElementById('vimg').naturalWidth > 0")
    assert "Im 5" in page.locator("#vpos").inner_text()
    assert page.locator("#vstrip img.linked").count() == 1
    page.keyboard.press("ArrowDown")
    assert "Im 6" in page.locator("#vpos").inner_text()
    page.click(".presets button[data-window='-600,1500']")
    assert "window=-600,1500" in (page.locator("#vimg").get_attribute("src") or "")
    page.wait_for_function("() => document.getElementById('vimg').naturalWidth > 0")
    _shot(page, tmp_path, "ui-viewer.png")
    page.click("#vclose")

    # Correct the link: point the sentence at image 6 instead of image 5.
    lung = {
        f["instance_number"]: f["sop_instance_uid"]
        for f in served.manifest["files"]
        if f["series_number"] == 2
    }
    link.locator("select[name=new_sop]").select_option(lung[6])
    link.locator("button[value=correct]").click()
    page.wait_for_url("**saved=1")
    fixed = page.locator(f".sentence .link[data-sop='{lung[6]}'][data-method='reader']")
    assert fixed.count() >= 1 and "Image 6" in fixed.first.locator(".pos").inner_text()

    # Approve the machine draft (edited): final, with the reader as resultsInterpreter.
    draft_id = ids.draft_report_id(uid)
    assert _fhir(served, f"DiagnosticReport/{draft_id}")["status"] == "preliminary"
    assert page.locator(".prelim").is_visible()
    drafted = page.locator(".draftcol .link")  # each drafted sentence linked to the image it came from
    assert drafted.count() >= 1 and drafted.first.get_attribute("data-method") == "drafted"
    assert "tiny" in page.locator(".model").inner_text().lower() or page.locator(".model").inner_text()
    page.fill("form.draft textarea", "Heart size normal.\nLungs clear.")
    page.click("form.draft button[value=approve]")
    page.wait_for_url("**saved=1")
    assert READER[2] in page.locator(".decision.approved").inner_text()
    assert not errors, errors

    report = _fhir(served, f"DiagnosticReport/{draft_id}")
    assert report["status"] == "final"
    assert report["resultsInterpreter"][0]["display"] == READER[2]
    practitioner = _fhir(served, report["resultsInterpreter"][0]["reference"])
    assert practitioner["identifier"][0]["value"] == READER[0]
    values = [_fhir(served, r["reference"])["valueString"] for r in report["result"]]
    assert values == ["Heart size normal.", "Lungs clear."]
    verifier = [_fhir(served, f"Provenance/{ids.provenance_id(f'review/DiagnosticReport/{draft_id}')}")]
    assert verifier[0]["agent"][0]["type"]["coding"][0]["code"] == "verifier"
    assert {"reference": f"DiagnosticReport/{draft_id}"} in verifier[0]["target"]
    assert verifier[0]["agent"][0]["who"]["reference"] == f"Practitioner/{practitioner['id']}"

    # The corrected link is republished and exported as ground truth; everything is audited.
    truth = page.request.get(f"{served.base}/ui/study/{uid}/ground-truth.json").json()
    assert [(x["was"], x["sop_instance_uid"], x["by"]) for x in truth["links"]] == [
        (cited, lung[6], READER[0])
    ]
    main = _fhir(served, f"DiagnosticReport/{ids.report_id(uid)}")
    cited_sentences = []
    for r in main["result"]:
        obs = _fhir(served, r["reference"])
        if "Se2Im5" in obs["valueString"].replace(" ", ""):
            cited_sentences.append({d["reference"] for d in obs.get("derivedFrom", [])})
    # The report cites "Se 2 Im 5" in Chinese and in English; only the corrected sentence changed.
    assert {f"Media/{ids.media_id(lung[6])}"} in cited_sentences, cited_sentences
    assert {f"Media/{ids.media_id(cited)}"} in cited_sentences, cited_sentences

    from sqlalchemy import select

    from gateway.index.db import open_index
    from gateway.index.models import UiAuditEvent

    sessions = open_index(f"sqlite:///{served.data_dir / 'index.sqlite3'}")
    with sessions() as session:
        actions = [
            (a.username, a.action) for a in session.scalars(select(UiAuditEvent).order_by(UiAuditEvent.id))
        ]
    for expected in [
        ("reader1", "login"),
        ("reader1", "link-correct"),
        ("reader1", "draft-edit"),
        ("reader1", "draft-approve"),
    ]:
        assert expected in actions, actions
    assert ("system", "login-failed") in actions
    context.close()


def test_forms_need_login_and_csrf(ui_served: Any, browser: Any, reader: tuple[str, str, str]) -> None:
    READER = reader
    served = ui_served
    uid = served.manifest["study_instance_uid"]
    anonymous = httpx.post(f"{served.base}/ui/study/{uid}/draft", data={"action": "reject"})
    assert anonymous.status_code == 401
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    _login(page, served, READER[0], READER[1])
    page.wait_for_url("**/ui/worklist")
    assert "工作列表" in page.locator("h1").inner_text()  # Chinese UI from Accept-Language
    forged = page.request.post(
        f"{served.base}/ui/study/{uid}/draft", form={"action": "reject", "csrf": "forged"}
    )
    assert forged.status == 403
    retry = page.request.post(f"{served.base}/ui/study/{uid}/retry", form={"job": "1", "csrf": "x"})
    assert retry.status == 403  # readers may not retry jobs
    page.click("#lang")
    assert page.locator("h1").inner_text().startswith("Worklist")
    context.close()


def test_report_html_rendition_images_open_in_a_browser_without_a_token(ui_served: Any, browser: Any) -> None:
    """The IMR HTML rendition as an EMR shows it: its ``<img>`` thumbnails and ``<a>`` links are signed
    WADO-RS URLs built when the report is read, so they load with no Authorization header."""
    import base64
    import time
    from urllib.parse import urlsplit

    from gateway.auth.links import LinkSigner

    served = ui_served
    uid = served.manifest["study_instance_uid"]
    report = _fhir(served, f"DiagnosticReport/{ids.report_id(uid)}")
    form = next(f for f in report["presentedForm"] if f["contentType"] == "text/html")
    html = base64.b64decode(form["data"]).decode("utf-8")
    assert f'src="{served.base}/dicomweb/studies/{uid}/' in html
    context = browser.new_context()
    page = context.new_page()
    page.set_content(html)
    images = page.locator("img.imr-thumbnail")
    assert images.count() >= 2
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.imr-thumbnail')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    src = images.first.get_attribute("src") or ""
    href = page.locator("a[data-imr-ref]").first.get_attribute("href") or ""
    assert "sig=" in src and "sig=" in href and "/rendered?" in href
    opened = page.request.get(href)  # the link itself, as a click would open it
    assert opened.status == 200 and opened.headers["content-type"].startswith("image/")
    context.close()

    # Unsigned, expired, or signed for another path: 401.
    path, _, query = src.partition("?")
    assert httpx.get(path).status_code == 401
    signer = LinkSigner(served.token, 60)
    local = urlsplit(path).path
    assert httpx.get(served.base + signer.sign(local, "emr", now=time.time() - 3600)).status_code == 401
    other = local.replace("/thumbnail", "/rendered")
    assert httpx.get(f"{served.base}{other}?{query}").status_code == 401
    assert httpx.get(src).status_code == 200


def test_reader_withdraws_saves_and_adds_links_admin_manages_accounts(
    ui_served: Any, browser: Any, reader: tuple[str, str, str], tmp_path: Path
) -> None:
    """After the approval above: undo it, save an edit without approving, add a link to a sentence that
    had none; then an administrator manages accounts. Each step is seen in FHIR and in the audit trail."""
    import subprocess
    import sys

    served = ui_served
    uid = served.manifest["study_instance_uid"]
    draft_id = ids.draft_report_id(uid)
    assert _fhir(served, f"DiagnosticReport/{draft_id}")["status"] == "final"
    context = browser.new_context(viewport={"width": 1500, "height": 1000}, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _login(page, served, reader[0], reader[1])
    page.wait_for_url("**/ui/worklist")
    page.goto(f"{served.base}/ui/study/{uid}")

    # Undo the approval: preliminary again, with a Provenance that names who withdrew it.
    page.click("form.withdraw button[value=withdraw]")
    page.wait_for_url("**saved=1")
    assert reader[2] in page.locator(".decision.withdrawn").inner_text()
    report = _fhir(served, f"DiagnosticReport/{draft_id}")
    assert report["status"] == "preliminary" and "resultsInterpreter" not in report
    prov = _fhir(served, f"Provenance/{ids.provenance_id(f'review/DiagnosticReport/{draft_id}')}")
    assert prov["activity"]["text"] == "draft approval withdrawn"
    assert prov["agent"][0]["type"]["coding"][0]["code"] == "performer"
    assert int(prov["meta"]["versionId"]) >= 2  # the approval's Provenance is kept in its history

    # Save an edit without approving: still preliminary, with the reader's text.
    assert page.locator("form.draft textarea").input_value().startswith("Heart size normal.")
    page.fill("form.draft textarea", "Heart size normal.\nNo effusion.")
    page.click("form.draft button[value=save]")
    page.wait_for_url("**saved=1")
    assert reader[2] in page.locator(".decision.saved").inner_text()
    assert page.locator("form.draft textarea").input_value() == "Heart size normal.\nNo effusion.\n"
    report = _fhir(served, f"DiagnosticReport/{draft_id}")
    assert report["status"] == "preliminary"
    values = [_fhir(served, r["reference"])["valueString"] for r in report["result"]]
    assert values == ["Heart size normal.", "No effusion."]

    # Add a link to a sentence that has none (a finding published as an Observation, not a heading).
    main = _fhir(served, f"DiagnosticReport/{ids.report_id(uid)}")
    published = {_fhir(served, r["reference"])["valueString"].strip() for r in main["result"]}
    forms = page.locator(".sentence form.addlink")
    form = next(
        forms.nth(i)
        for i in range(forms.count())
        if forms.nth(i).locator("input[name=text]").get_attribute("value").strip() in published
    )
    text = form.locator("input[name=text]").get_attribute("value")
    lung = {
        f["instance_number"]: f["sop_instance_uid"]
        for f in served.manifest["files"]
        if f["series_number"] == 2
    }
    form.locator("select[name=new_sop]").select_option(lung[3])
    form.locator("button[value=add]").click()
    page.wait_for_url("**saved=1")
    added = page.locator(f".sentence .link[data-sop='{lung[3]}'][data-method='reader']")
    assert added.count() >= 1
    main = _fhir(served, f"DiagnosticReport/{ids.report_id(uid)}")
    derived = [
        {d["reference"] for d in obs.get("derivedFrom", [])}
        for obs in (_fhir(served, r["reference"]) for r in main["result"])
        if obs["valueString"].strip() == text.strip()
    ]
    assert derived and f"Media/{ids.media_id(lung[3])}" in derived[0], (text, derived)
    truth = page.request.get(f"{served.base}/ui/study/{uid}/ground-truth.json").json()
    assert any(x["was"] is None and x["sop_instance_uid"] == lung[3] for x in truth["links"])
    _shot(page, tmp_path, "ui-study-reviewed.png")

    # The study's SR report has no page: its content tree is shown, with the image it references.
    sr_sop = next(f["sop_instance_uid"] for f in served.manifest["files"] if f["file"] == "SR_S91_report.dcm")
    page.click(f"nav.reports a[data-sop='{sr_sop}']")
    page.wait_for_url(f"**report={sr_sop}")
    assert page.locator(".srtree .sr-item").count() > 3
    cited = served.manifest["links"]["Se 2 Im 5"]
    ref = page.locator(f".srtree .sr-ref[data-sop='{cited}'] img")
    ref.scroll_into_view_if_needed()
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=ref.element_handle())
    _shot(page, tmp_path, "ui-study-sr.png")
    context.close()

    # An administrator manages accounts in the page.
    subprocess.run(
        [
            *(sys.executable, "-m", "gateway", "user", "add", "boss", "--role", "administrator"),
            *("--password-stdin", "--data-dir", str(served.data_dir)),
        ],
        input="boss password 1\n",
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
    )
    context = browser.new_context(viewport={"width": 1500, "height": 900}, locale="en-US")
    page = context.new_page()
    _login(page, served, "boss", "boss password 1")
    page.wait_for_url("**/ui/worklist")
    page.click("#nav-users")
    page.wait_for_url("**/ui/admin/users")
    page.fill("form.adduser input[name=username]", "reader2")
    page.fill("form.adduser input[name=display_name]", "Dr Reader Two")
    page.fill("form.adduser input[name=password]", "second reader pw")
    page.click("form.adduser button[value=add]")
    page.wait_for_url("**saved=1")
    row = page.locator("tr[data-user='reader2']")
    row.locator("form.role select").select_option("administrator")
    row.locator("form.role button").click()
    page.wait_for_url("**saved=1")
    assert page.locator("tr[data-user='reader2'] td.role").inner_text() == "administrator"
    page.locator("tr[data-user='reader2'] form.toggle button[value=disable]").click()
    page.wait_for_url("**saved=1")
    assert page.locator("tr[data-user='reader2'] td.status").inner_text() == "disabled"
    page.locator(f"tr[data-user='{reader[0]}'] form.reset input[name=password]").fill("reset by boss")
    page.locator(f"tr[data-user='{reader[0]}'] form.reset button").click()
    page.wait_for_url("**saved=1")
    _shot(page, tmp_path, "ui-accounts.png")
    assert not errors, errors
    context.close()
    other = browser.new_context()
    page = other.new_page()
    _login(page, served, "reader2", "second reader pw")  # disabled: refused
    assert page.locator(".error").is_visible()
    _login(page, served, reader[0], "reset by boss")
    page.wait_for_url("**/ui/worklist")
    other.close()

    from sqlalchemy import select

    from gateway.index.db import open_index
    from gateway.index.models import UiAuditEvent

    sessions = open_index(f"sqlite:///{served.data_dir / 'index.sqlite3'}")
    with sessions() as session:
        actions = [
            (a.username, a.action) for a in session.scalars(select(UiAuditEvent).order_by(UiAuditEvent.id))
        ]
    for expected in [
        (reader[0], "draft-withdraw"),
        (reader[0], "draft-save"),
        (reader[0], "link-add"),
        ("boss", "user-add"),
        ("boss", "user-role"),
        ("boss", "user-disable"),
        ("boss", "user-reset"),
    ]:
        assert expected in actions, actions

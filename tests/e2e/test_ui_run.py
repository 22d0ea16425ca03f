"""A run started by hand from the Prefect UI, in headless Chromium (Debian package) via Playwright.

The browser finds the nightly-suite deployment, opens its run form, picks the ``ui-picked``
Voiceflow credentials block in the form's block picker, starts the run and waits on the run's page
until it shows Completed; then it finds the summary artifact. The form's screenshot is saved as
``build/e2e/run-form.png``. Afterwards the API confirms that the flow run stored a block
reference, not the key, and that the picked block's key made the requests.

Waits are Playwright's own (``expect(...).to_be_visible(timeout=...)``), which wait for the page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client

from tests.e2e.conftest import KEYS, OUTPUT, UI_BLOCK, Stack, chromium, secrets_in

playwright = pytest.importorskip("playwright.sync_api", reason="make e2e installs playwright")
RUN_TIMEOUT_MS = 240_000


@pytest.fixture
def page(stack: Stack) -> Iterator[playwright.Page]:
    with chromium(viewport={"width": 1400, "height": 1800}) as context:
        page = context.new_page()
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            # Where the browser ended up, for a failure's diagnosis.
            page.screenshot(path=str(OUTPUT / "ui-last-page.png"), full_page=True)


def test_a_run_started_from_the_ui_form_completes_with_the_picked_block(
    stack: Stack, page: playwright.Page
) -> None:
    expect = playwright.expect
    before = stack.emulator.count(key=KEYS["E2E_UI_KEY"])

    # Find the deployment in the list and open its run form.
    page.goto(f"{stack.ui_url}/deployments")
    page.get_by_role("link", name="nightly-suite").first.click()
    page.wait_for_url("**/deployments/deployment/*")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    page.wait_for_url("**/deployments/deployment/*/run**")

    # credentials: the Voiceflow block type, then the block by name in the picker.
    field = page.locator(".schema-form-property").filter(has_text="credentials (Optional)").first
    with page.expect_response("**/block_types/slug/voiceflow-credentials/block_documents"):
        field.get_by_role("button", name="VoiceflowCredentials").click()
    picker = field.locator(".block-document-input .p-select-button__control")
    picker.click()
    if not page.get_by_role("listbox").is_visible():
        picker.press("ArrowDown")  # the picker opens from the keyboard too
    page.get_by_role("option", name=UI_BLOCK, exact=True).click()
    expect(field.locator(".block-document-input")).to_contain_text(UI_BLOCK)
    # The nightly user's choices are fields of the same form (issue 17): the verdict rule, the
    # baseline, and which conversations to run.
    for name in ("fail_on", "baseline", "tags", "ids", "only_failed"):
        label = page.locator(".schema-form-property").filter(has_text=re.compile(rf"^{name}\b"))
        expect(label.first).to_be_visible()
    page.screenshot(path=str(OUTPUT / "run-form.png"), full_page=True)

    with page.expect_response("**/create_flow_run") as created:
        page.get_by_role("button", name="Submit").click()
    assert created.value.ok, created.value.text()
    flow_run_id = UUID(created.value.json()["id"])
    # The form returns to the deployment with a "View run" toast; open the run's page.
    page.goto(f"{stack.ui_url}/runs/flow-run/{flow_run_id}")
    expect(page.locator(".state-badge").first).to_contain_text("Completed", timeout=RUN_TIMEOUT_MS)

    page.get_by_text("Artifacts", exact=True).first.click()
    expect(page.get_by_text("nightly-regression-summary").first).to_be_visible()
    page.screenshot(path=str(OUTPUT / "run-artifacts.png"), full_page=True)

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        picked = client.read_block_document_by_name(UI_BLOCK, "voiceflow-credentials")
    assert flow_run.state is not None
    assert flow_run.state.is_completed()
    # The run holds a reference to the picked block, never its key.
    assert flow_run.parameters["credentials"] == {"$ref": {"block_document_id": str(picked.id)}}
    assert secrets_in(flow_run.parameters) == []
    assert stack.emulator.count(key=KEYS["E2E_UI_KEY"]) > before

"""End to end in a real browser: headless Chromium drives the playground page against a real
`advocata-chat serve` on 127.0.0.1.

Uses Debian's `chromium` (never a downloaded browser); skips when it is not installed.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from advocata_chat.auth import mint_token
from advocata_chat.config import PROJECT_ROOT
from tests.server import Server

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is not installed (apt-get install -y chromium; .ci/run does it)",
)

CONTRACT = (
    "1. Подрядчик ООО «Ремстрой» обязуется выполнить ремонт квартиры по адресу "
    "ул. Садовая, д. 5, кв. 12.\n"
    "2. Цена работ составляет 164 800 рублей и включает стоимость материалов.\n"
    "3. Срок выполнения работ — до 1 марта 2026 года.\n"
    "4. Гарантийный срок на выполненные работы составляет 24 месяца.\n"
)


@pytest.fixture(scope="module")
def prompts_dir(tmp_path_factory) -> Path:
    """A copy of prompts/ that the test may edit while the server runs."""
    target = tmp_path_factory.mktemp("prompts")
    for path in (PROJECT_ROOT / "prompts").glob("*.yaml"):
        shutil.copy(path, target / path.name)
    return target


@pytest.fixture(scope="module")
def server(database_url, prompts_dir):
    srv = Server(database_url, PROMPTS_DIR=str(prompts_dir), ADVOCATA_ENV="development")
    srv.wait_ready()
    yield srv
    srv.stop()


def test_upload_ask_stream_and_see_the_citation(server, settings, prompts_dir, page, tmp_path):
    token = mint_token(settings, user_id=uuid.uuid4())
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Record the socket frames the page receives, to check the answer really streamed.
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(str(f))))

    page.goto(f"{server.url}/playground")
    page.fill("#token", token)
    page.click("#use-token")
    page.wait_for_selector("#prompts tr[data-name='answer']")

    contract = tmp_path / "contract.txt"
    contract.write_text(CONTRACT, encoding="utf-8")
    page.set_input_files("#file", str(contract))
    page.click("#upload")
    page.wait_for_selector("#docs li[data-status='ready']")

    page.click("#new-conv")
    page.wait_for_selector("#socket.ok")
    page.fill("#question", "Какова цена работ?")
    page.click("#send")

    answer = page.wait_for_selector(".turn.done .answer")
    assert "164 800" in answer.inner_text()
    assert sum('"type":"token"' in f for f in frames) > 3, "the answer did not stream"
    # The citation: a [n] link in the answer, and its passage highlighted in the chunk beside.
    assert page.locator(".turn.done .answer a.cite").count() >= 1
    final = json.loads(next(f for f in frames if f.startswith('{"type":"message"')))
    quote = final["message"]["citations"][0]["quote"]
    marked = page.locator(".turn.done .source.cited mark").first.inner_text()
    assert marked == quote and "164 800" in marked
    assert "score" in page.locator(".turn.done .source").first.inner_text()
    meta = page.locator(".turn.done .meta").inner_text()
    assert "tokens" in meta and "answer " in meta

    page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
    assert (tmp_path / "playground.png").stat().st_size > 10_000

    # A broken edit is reported on the page (the page polls the prompts endpoint).
    answer_yaml = prompts_dir / "answer.yaml"
    good = answer_yaml.read_text(encoding="utf-8")
    try:
        answer_yaml.write_text(good.replace("{question}", "{qustion}"), encoding="utf-8")
        page.wait_for_selector("#banner:not([hidden])", timeout=15_000)
        assert "answer.yaml" in page.inner_text("#banner")
        assert page.locator("#prompts tr.broken[data-name='answer']").count() == 1
        page.screenshot(path=str(tmp_path / "playground-broken-prompt.png"))
    finally:
        answer_yaml.write_text(good, encoding="utf-8")
    assert not errors, errors

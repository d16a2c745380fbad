"""End to end in a real browser: headless Chromium drives the playground page against a real
`advocata-chat serve` on 127.0.0.1.

Uses Debian's `chromium` (never a downloaded browser); skips when it is not installed.
Every test runs the page under the CSP the server sends and fails on a violation of it or an
uncaught script error.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest

from advocata_chat.auth import mint_token
from advocata_chat.config import PROJECT_ROOT
from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.server import Server

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


# Report CSP violations to the test (a binding outlives page reloads, unlike a variable), and
# keep the history of the socket pill, whose "connecting" lasts only a moment.
WATCH = """
document.addEventListener("securitypolicyviolation", (e) =>
  window.cspViolation(`${e.violatedDirective} ${e.blockedURI}`));
document.addEventListener("DOMContentLoaded", () => {
  const pill = document.getElementById("socket");
  if (!pill) return;
  window.pillHistory = [pill.textContent];
  new MutationObserver(() => {
    if (window.pillHistory.at(-1) !== pill.textContent) window.pillHistory.push(pill.textContent);
  })
    .observe(pill, { childList: true, characterData: true, subtree: true });
});
"""


@dataclass
class Tab:
    page: object
    problems: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.problems, self.problems


@pytest.fixture
def tab(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        # A fresh profile per test: nothing (a stored token, a cache) leaks between runs.
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            tab = Tab(context.new_page())
            context.expose_binding("cspViolation", lambda _, v: tab.problems.append(f"CSP: {v}"))
            context.add_init_script(WATCH)
            tab.page.on("pageerror", lambda exc: tab.problems.append(f"error: {exc}"))
            tab.page.on(
                "console",
                lambda m: "Content Security Policy" in m.text and tab.problems.append(m.text),
            )
            tab.page.set_default_timeout(60_000)
            yield tab
        finally:
            context.close()


@pytest.fixture
def page(tab):
    return tab.page


def expect(locator):
    return pytest.importorskip("playwright.sync_api").expect(locator)


def use_token(page, token: str) -> None:
    page.fill("#token", token)
    page.click("#use-token")


def log_in(page, token: str) -> None:
    use_token(page, token)
    page.wait_for_selector("#prompts tr[data-name='answer']")
    page.wait_for_selector("#convs li")  # the list is drawn, if only "No conversations yet"


def upload(page, tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    page.set_input_files("#file", str(path))
    page.click("#upload")
    page.wait_for_selector("#docs li[data-status='ready']")


def ask(page, question: str):
    page.fill("#question", question)
    page.click("#send")
    return page.wait_for_selector(".turn.done .answer")


def record_frames(page) -> list[str]:
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(str(f))))
    return frames


def wait_for_frames(page, frames: list[str], kind: str) -> list[dict]:
    """The recorded frames of one type, once at least one has arrived."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [json.loads(f) for f in frames if f.startswith(f'{{"type":"{kind}"')]
        if found:
            return found
        page.wait_for_timeout(50)  # lets Playwright deliver the frame events
    raise AssertionError(f"no {kind} frame arrived")


def test_upload_ask_stream_and_see_the_citation(server, settings, prompts_dir, tab, page, tmp_path):
    token = mint_token(settings, user_id=uuid.uuid4())
    # Record the socket frames the page receives, to check the answer really streamed.
    frames = record_frames(page)

    response = page.goto(f"{server.url}/playground")
    # The page runs under its strict policy (and the fixture fails the test on a violation).
    assert "script-src 'self'" in response.headers["content-security-policy"]
    log_in(page, token)
    upload(page, tmp_path, "contract.txt", CONTRACT)

    page.click("#new-conv")
    page.wait_for_selector("#socket[data-state='connected']")
    answer = ask(page, "Какова цена работ?")
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
    tab.assert_clean()


def test_the_header_takes_the_title_the_server_gives_and_the_pills_say_what_they_mean(
    server, settings, tab, page
):
    frames = record_frames(page)
    page.goto(f"{server.url}/playground")
    # The socket pill is about the socket, and says so: not "offline", which reads like the model.
    expect(page.locator("#socket")).to_have_text("disconnected")
    log_in(page, mint_token(settings, user_id=uuid.uuid4()))
    # The model has its own pill: this server runs the built-in offline model.
    expect(page.locator("#model")).to_have_text("model: offline-extractive")

    page.click("#new-conv")
    expect(page.locator("#socket")).to_have_text("connected")
    assert page.evaluate("window.pillHistory") == ["disconnected", "connecting", "connected"]
    expect(page.locator("#conv-title")).to_have_text("Untitled")
    ask(page, "Здравствуйте, можно ли вернуть задаток при отказе от покупки квартиры?")

    # The `title` frame arrives after the answer; the header and the sidebar both take it.
    titles = [f["title"] for f in wait_for_frames(page, frames, "title")]
    assert len(titles) == 1 and titles[0].startswith("Можно ли вернуть задаток"), titles
    expect(page.locator("#conv-title")).to_have_text(titles[0])
    expect(page.locator("#convs li.active .title")).to_have_text(titles[0])
    tab.assert_clean()


def tall_contract() -> str:
    """Eight long clauses that all answer the question: every retrieved chunk is long."""
    clause = (
        "Цена работ включает стоимость материалов, их доставки и вывоза строительного мусора; "
        "порядок оплаты цены работ определяется графиком платежей, подписанным сторонами. "
    )
    return "\n\n".join(
        f"{i}. Цена работ по этапу {i} составляет {100 + i} 000 рублей. " + clause * 6
        for i in range(1, 9)
    )


def test_a_tall_column_of_sources_leaves_the_streamed_answer_in_view(
    server, settings, tab, page, tmp_path
):
    page.goto(f"{server.url}/playground")
    log_in(page, mint_token(settings, user_id=uuid.uuid4()))
    upload(page, tmp_path, "stages.txt", tall_contract())
    page.click("#new-conv")
    page.wait_for_selector("#socket[data-state='connected']")
    ask(page, "Какова цена работ по этапу 3?")

    geometry = """() => {
      const box = document.querySelector("#turns").getBoundingClientRect();
      const answer = document.querySelector(".turn.done .answer").getBoundingClientRect();
      const sources = document.querySelector(".turn.done .sources");
      return {above: box.top - answer.top, below: answer.bottom - box.bottom,
              view: box.height, sources: sources.scrollHeight, shown: sources.clientHeight};
    }"""
    seen = page.evaluate(geometry)
    assert page.locator(".turn.done .source").count() >= 3
    # The case in point: the sources are taller than the whole chat area...
    assert seen["sources"] > seen["view"], seen
    # ...yet the answer is in view, the sources scrolling in a column of their own.
    assert seen["above"] <= 0 and seen["below"] <= 0, seen
    assert seen["shown"] < seen["sources"], seen
    page.locator(".turn.done .sources").evaluate("(el) => { el.scrollTop = el.scrollHeight; }")
    seen = page.evaluate(geometry)
    assert seen["above"] <= 0 and seen["below"] <= 0, seen
    assert "103 000" in page.inner_text(".turn.done .answer")
    tab.assert_clean()


def test_a_new_or_refused_token_clears_the_previous_users_screen(server, settings, tab, page):
    page.goto(f"{server.url}/playground")
    log_in(page, mint_token(settings, user_id=uuid.uuid4()))
    page.click("#new-conv")
    page.wait_for_selector("#socket[data-state='connected']")
    ask(page, "Что такое договор подряда?")
    assert page.locator("#convs li[data-id]").count() == 1

    # Another user's token: the first user's conversation leaves the screen and the socket.
    log_in(page, mint_token(settings, user_id=uuid.uuid4()))
    expect(page.locator("#convs")).to_have_text("No conversations yet")
    expect(page.locator(".turn")).to_have_count(0)
    expect(page.locator("#conv-title")).to_have_text("No conversation open")
    expect(page.locator("#socket")).to_have_text("disconnected")

    # A refused token (signed with another secret): nothing of the last user stays, and the
    # page says why.
    page.click("#new-conv")
    page.wait_for_selector("#socket[data-state='connected']")
    forged = jwt.encode(
        {"sub": str(uuid.uuid4()), "exp": int(time.time()) + 600}, "x" * 40, algorithm="HS256"
    )
    use_token(page, forged)
    expect(page.locator("#banner")).to_contain_text("Token refused")
    expect(page.locator("#socket")).to_have_text("disconnected: token refused")
    expect(page.locator("#conv-title")).to_have_text("No conversation open")
    for gone in (".turn", "#convs li", "#docs li", "#prompts tr"):
        expect(page.locator(gone)).to_have_count(0)
    expect(page.locator("#whoami")).to_have_text("")
    expect(page.locator("#model")).to_have_text("")
    # The refused token is not kept for the next visit either.
    assert page.evaluate("localStorage.getItem('advocata.token')") is None
    page.reload()
    expect(page.locator("#token")).to_have_value("")
    expect(page.locator("#socket")).to_have_text("disconnected")
    tab.assert_clean()

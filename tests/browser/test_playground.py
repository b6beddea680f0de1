"""The web playground at ``GET /``, driven in real headless Chromium against a real server and the bundled model.

Debian's ``chromium`` is driven through pip's ``playwright`` (``executable_path``: ``playwright install`` is not
needed). Without either the browser tests skip, except under ``CI``, where they must run and so fail instead.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import pytest

from chunkwise.engine import LlamaCppEngine
from chunkwise.server import ServerSettings, create_app
from tests.server.conftest import KEEPALIVE_INTERVAL, RunningServer, serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request

pytestmark = [pytest.mark.engine, pytest.mark.timeout(240)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
KEY = "sk-playground-7d2e"
CANCELLED = "chunkwise_cancelled_requests_total"
#: How long the page may take to show something (first token, the end of an answer) on a slow CI machine.
WAIT_MS = 60_000


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (scripts/setup --test installs Chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server(engine: LlamaCppEngine) -> Iterator[RunningServer]:
    with serve(create_app(engine, ServerSettings(keepalive_interval=KEEPALIVE_INTERVAL))) as running:
        yield running


@pytest.fixture(scope="module")
def locked_server(engine: LlamaCppEngine) -> Iterator[RunningServer]:
    with serve(create_app(engine, ServerSettings(api_key=KEY, keepalive_interval=KEEPALIVE_INTERVAL))) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 760})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
        assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


def cancelled_total(server: RunningServer) -> float:
    """``chunkwise_cancelled_requests_total`` summed over its labels (endpoint, stage)."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    pattern = re.compile(rf"^{CANCELLED}(?:{{[^}}]*}})? (\S+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def open_playground(page: Page, url: str) -> None:
    page.goto(url + "/")
    page.wait_for_function("document.getElementById('model').value !== ''", timeout=WAIT_MS)


def ask(page: Page, prompt: str, *, max_tokens: int, temperature: str = "0") -> None:
    page.fill("#temperature", temperature)
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#prompt", prompt)
    page.click("#send")


def wait_until_finished(page: Page) -> None:
    page.wait_for_function(
        "!document.querySelector('.msg.streaming') && document.getElementById('send').disabled === false",
        timeout=WAIT_MS,
    )


def test_the_page_is_one_self_contained_html_file(server: RunningServer) -> None:
    response = httpx.get(server.url + "/", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    html = response.text
    assert "<script>" in html and "<style>" in html
    # Nothing is fetched from elsewhere: no external scripts, styles, fonts or images.
    assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)=", html)
    assert "@import" not in html and "url(" not in html


def test_an_answer_streams_in_and_its_stats_are_shown(
    page: Page, server: RunningServer, engine: LlamaCppEngine
) -> None:
    open_playground(page, server.url)
    assert page.input_value("#model") == engine.model_id
    page.fill("#system", "You are a helpful assistant. Answer in Markdown.")
    ask(page, "Write a Python function that reverses a string, in a Markdown code block.", max_tokens=120)

    # Sample the answer's text as fast as the page answers, until the stream ends.
    samples: list[str] = []
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        text, streaming = page.evaluate(
            "() => [document.getElementById('answer').innerText, !!document.querySelector('.msg.streaming')]"
        )
        if not streaming:
            break
        if text and (not samples or text != samples[-1]):
            samples.append(text)
    else:
        pytest.fail("the answer did not finish streaming")
    steps = sum(1 for before, after in zip(samples, samples[1:], strict=False) if len(after) > len(before))
    assert steps >= 3, f"the answer should grow in at least 3 steps while streaming, saw {samples!r}"

    wait_until_finished(page)
    final = page.inner_text("#answer")
    assert len(final) >= len(samples[-1]) > len(samples[0]) > 0
    stats = page.locator("#stats")
    usage = stats.get_by_test_id("usage").inner_text()
    match = re.fullmatch(r"(\d+) prompt \+ (\d+) completion = (\d+)", usage)
    assert match, usage
    prompt_tokens, completion_tokens, total_tokens = map(int, match.groups())
    assert prompt_tokens > 0 and 0 < completion_tokens <= 120 and total_tokens == prompt_tokens + completion_tokens
    assert re.fullmatch(r"\d+ ms", stats.get_by_test_id("ttft").inner_text())
    assert float(stats.get_by_test_id("tps").inner_text()) > 0
    assert stats.get_by_test_id("stat-model").inner_text() == page.input_value("#model")
    assert page.locator("#error").is_hidden()

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground.png"))


def test_a_second_turn_keeps_the_history(page: Page, server: RunningServer) -> None:
    open_playground(page, server.url)
    ask(page, "My name is Ada. Say hello to me.", max_tokens=24)
    wait_until_finished(page)
    bodies: list[Any] = []

    def record(request: Request) -> None:
        if request.method == "POST":
            bodies.append(request.post_data_json)

    page.on("request", record)
    ask(page, "What is my name?", max_tokens=24)
    wait_until_finished(page)
    assert page.locator(".msg.assistant").count() == 2
    messages = bodies[-1]["messages"]
    assert [message["role"] for message in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == "My name is Ada. Say hello to me."


@pytest.mark.parametrize(("api", "path"), [("responses", "/v1/responses"), ("messages", "/v1/messages")])
def test_the_api_selector_streams_through_each_dialect(page: Page, server: RunningServer, api: str, path: str) -> None:
    open_playground(page, server.url)
    page.select_option("#api", api)
    page.fill("#system", "Answer briefly.")
    paths: list[str] = []
    page.on("request", lambda request: paths.append(request.url) if request.method == "POST" else None)
    ask(page, "Say hello.", max_tokens=16)
    wait_until_finished(page)
    assert paths == [server.url + path]
    assert page.inner_text("#answer")
    usage = page.locator("#stats").get_by_test_id("usage").inner_text()
    match = re.fullmatch(r"(\d+) prompt \+ (\d+) completion = (\d+)", usage)
    assert match and int(match[1]) > 0 and 0 < int(match[2]) <= 16, usage
    assert page.locator("#error").is_hidden()


def test_stop_aborts_the_request_and_the_server_cancels_it(page: Page, server: RunningServer) -> None:
    open_playground(page, server.url)
    before = cancelled_total(server)
    ask(page, "Count from 1 to 500, one number per line.", max_tokens=400)
    page.wait_for_function("document.getElementById('answer').innerText.length >= 12", timeout=WAIT_MS)
    assert page.locator(".msg.streaming").count() == 1, "the answer ended before Stop could be pressed"
    page.click("#stop")
    page.get_by_test_id("stopped").wait_for(timeout=WAIT_MS)
    assert page.is_enabled("#send") and page.is_disabled("#stop")
    assert page.locator("#error").is_hidden()

    deadline = time.monotonic() + 20
    while cancelled_total(server) <= before:
        assert time.monotonic() < deadline, "the server did not count the stopped request as cancelled"
        time.sleep(0.1)


def test_a_server_with_an_api_key_asks_for_it_then_streams(page: Page, locked_server: RunningServer) -> None:
    page.goto(locked_server.url + "/")
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=WAIT_MS)
    assert "API key" in error.inner_text()

    page.fill("#prompt", "Hello")
    page.click("#send")
    page.wait_for_timeout(300)
    assert "API key" in error.inner_text()
    assert page.locator("#answer").count() == 0  # nothing was sent without a model

    page.fill("#api-key", KEY)
    page.press("#api-key", "Tab")  # `change` reloads the models with the key
    page.wait_for_function("document.getElementById('model').value !== ''", timeout=WAIT_MS)
    assert error.is_hidden()
    ask(page, "Say hello in five words.", max_tokens=20)
    wait_until_finished(page)
    assert page.inner_text("#answer").strip()
    assert page.get_by_test_id("usage").is_visible()
    assert error.is_hidden()


def test_a_wrong_key_mid_session_shows_the_key_message(page: Page, locked_server: RunningServer) -> None:
    page.goto(locked_server.url + "/")
    page.fill("#api-key", KEY)
    page.press("#api-key", "Tab")
    page.wait_for_function("document.getElementById('model').value !== ''", timeout=WAIT_MS)
    page.fill("#api-key", "wrong")  # no `change` yet: the model list stays, the next request uses the wrong key
    ask(page, "Hello", max_tokens=8)
    wait_until_finished(page)
    assert "API key" in page.inner_text("#error")


def test_the_sse_parser_and_markdown_renderer(page: Page, server: RunningServer) -> None:
    """The page's own SSE parser over awkward splits and line ends, and its Markdown renderer's escaping."""
    open_playground(page, server.url)
    events = page.evaluate(
        """async () => {
            const parts = [": keep-alive\\r\\n\\r", "\\ndata: {\\"a\\":", "1}\\r", "\\rdata: x\\ndata:y\\n", "\\n",
                           "data: \\u00e9", "\\n\\ndata: [DONE]\\n\\n"];
            const bytes = new TextEncoder().encode(parts.join(""));
            const cut = [5, 17, 18, 30, 31, 44, 45, 46];  // split inside CRLF pairs and inside the UTF-8 of é
            const stream = new ReadableStream({
                start(controller) {
                    let start = 0;
                    for (const end of [...cut, bytes.length]) {
                        controller.enqueue(bytes.slice(start, end));
                        start = end;
                    }
                    controller.close();
                },
            });
            const out = [];
            for await (const data of window.chunkwise.readEvents(stream)) out.push(data);
            return out;
        }"""
    )
    assert events == ['{"a":1}', "x\ny", "\u00e9", "[DONE]"]
    html = page.evaluate(
        """() => window.chunkwise.renderMarkdown(
            "# Title\\n\\nSome **bold**, *it* and `<code>`.\\n\\n- one\\n- two\\n\\n1. first\\n\\n"
            + "```py\\nx < 1\\n```\\n"
            + "<script>alert(1)</script>")"""
    )
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html and "<em>it</em>" in html and "<code>&lt;code&gt;</code>" in html
    assert "<ul><li>one</li><li>two</li></ul>" in html and "<ol><li>first</li></ol>" in html
    assert '<pre><code class="language-py">x &lt; 1</code></pre>' in html
    assert "<script>" not in html and "&lt;script&gt;" in html

"""Property tests: splitting maps back to the source exactly; the history window keeps to
its token budget."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from advocata_chat.history import fit_window, message_cost
from advocata_chat.splitter import split

# Legal-looking text: words, numbered clauses, articles, blank lines, long unbroken tokens.
pieces = st.sampled_from(
    [
        "Договор",
        "подряда",
        "1.",
        "2.3.",
        "Статья 5.",
        "\n",
        "\n\n",
        "ПРЕДМЕТ ДОГОВОРА\n",
        "164 800 руб.",
        "— ",
        "Заказчик",
        "обязуется",
        "оплатить.",
        "x" * 120,
        "  ",
        "«Подрядчик»",
    ]
)
texts = st.lists(pieces, min_size=0, max_size=300).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(text=texts, size=st.integers(20, 1500), ratio=st.floats(0, 0.9))
def test_chunks_are_exact_spans_that_cover_the_text(text, size, ratio):
    overlap = int(size * ratio)
    spans = split(text, chunk_size=size, overlap=overlap)
    covered = [False] * len(text)
    for prev, span in zip([None, *spans], spans, strict=False):
        chunk = text[span.start : span.end]
        assert chunk and chunk == chunk.strip()
        assert len(chunk) <= size
        if prev is not None:
            assert span.start > prev.start and span.end > prev.end
        for i in range(span.start, span.end):
            covered[i] = True
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())


messages = st.lists(
    st.tuples(st.sampled_from(["user", "assistant"]), st.text(min_size=0, max_size=400)),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(newest_first=messages, budget=st.integers(0, 3000))
def test_history_window_never_exceeds_its_budget(newest_first, budget):
    window = fit_window(newest_first, budget)
    assert sum(message_cost(c) for _, c in window) <= budget
    # It is the newest messages, oldest first, without gaps.
    assert window == list(reversed(newest_first[: len(window)]))
    if len(window) < len(newest_first):
        nxt = newest_first[len(window)][1]
        assert sum(message_cost(c) for _, c in window) + message_cost(nxt) > budget

"""A deterministic corpus of 2,000+ strings that stress a BERT tokenizer.

Real English sentences (benchmarks/sentences.txt), plus generated strings mixing
accents, CJK, Arabic, Cyrillic, Greek, Hebrew, Thai, Devanagari, emoji (with
skin tones and ZWJ sequences), flags, ©®™ and other symbols, URLs, e-mails,
numbers, control and zero-width characters, combining marks, full-width forms,
literal special tokens, and texts far beyond 512 tokens.
"""

from __future__ import annotations

import random
from pathlib import Path

SENTENCES = Path(__file__).resolve().parents[1] / "benchmarks" / "sentences.txt"

PIECES = [
    # Latin with accents and ligatures
    "café", "naïve", "Ångström", "São Paulo", "Zürich", "façade", "Œuvre", "straße", "Dvořák", "Łódź", "résumé",
    "ÉCOLE", "mañana", "Ñandú", "coöperate", "ﬁnance",
    # CJK, Korean, Japanese kana
    "中文", "日本語のテキスト", "汉字和標點。", "한국어 문장", "カタカナ", "漢字かなまじり文", "你好，世界！",
    # other scripts
    "مرحبا بالعالم", "السلام عليكم", "Привет, мир", "ЁЛКА", "Γειά σου κόσμε", "שלום עולם", "ภาษาไทยไม่มีช่องว่าง",
    "नमस्ते दुनिया", "Բարև", "ქართული",
    # emoji, skin tones, ZWJ sequences, flags, keycaps
    "😀", "👍🏽", "❤️", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵🇺🇸", "1️⃣", "🤖🎉", "☕", "✨✨",
    # symbols
    "©2024", "Brand®", "Name™", "€100", "£5", "¥500", "±3°C", "→", "∑∫√", "½", "№7", "§ 12", "…", "—", "«quoted»",
    "“curly”", "‘single’", "•", "¶",
    # URLs, e-mails, handles, code-ish
    "https://example.com/a/b?c=d&e=f#g", "www.test.org", "mailto:someone@example.com", "user.name+tag@mail.co.uk",
    "@handle", "#hashtag", "C:\\Program Files\\x", "snake_case_name", "camelCaseName", "a->b", "x == y != z",
    # numbers
    "3.14159", "1,000,000", "12:30pm", "2024-01-31", "+1 (555) 010-9999", "10^6", "0x1F",
    # control, zero-width, odd spaces, combining marks, full-width
    "a\tb", "line\nbreak", "cr\r\nlf", "bell\x07char", "nul\x00byte", "zero\u200bwidth", "joiner\u200dhere",
    "bom\ufeffstart", "nbsp\u00a0space", "ideographic\u3000space", "e\u0301", "n\u0303", "ＦＵＬＬＷＩＤＴＨ", "ｶﾀｶﾅ",
    "\u2028sep", "soft\u00adhyphen", "rtl\u200fmark", "replacement\ufffdchar",
    # literal special tokens and brackets
    "[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "[unused1]", "[cls]", "[ MASK ]",
    # plain words
    "the", "movie", "was", "GREAT", "terrible", "I", "love", "it", "!!!", "???", "...", "don't", "won't", "it's",
]


def corpus() -> list[str]:
    rng = random.Random(20261125)
    texts = SENTENCES.read_text(encoding="utf-8").splitlines()
    texts += PIECES
    while len(texts) < 2200:
        k = rng.choice([1, 2, 3, 5, 8, 13, 21])
        texts.append(" ".join(rng.choice(PIECES) for _ in range(k)))
    # Glued together, without spaces.
    texts += ["".join(rng.choice(PIECES) for _ in range(6)) for _ in range(100)]
    # Far beyond 512 tokens.
    texts += [" ".join(rng.choice(PIECES) for _ in range(n)) for n in (400, 900, 2000)]
    texts += [" ".join(texts[:300])]
    return texts

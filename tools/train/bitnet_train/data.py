"""
Training text: the Collaborative International Dictionary of English (GCIDE 0.48, Debian
package dict-gcide): Webster's Revised Unabridged Dictionary of 1913 (public domain) with
WordNet 1.5 glosses and later additions, distributed under the GNU GPL v2 or later.

Each dictionary entry becomes one document, "Headword (pos.): definition. definition. ...",
with pronunciations, etymologies, source tags and the dictionary's character codes removed.
WordNet 3.0 (Debian package dict-wn; Princeton's WordNet licence, permissive) adds its glosses
and example sentences in the same form. About 2% of headwords (chosen by a hash, so the split
never changes) are held out, in both sources alike.
"""

from __future__ import annotations

import gzip
import json
import sys
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

GCIDE = Path("/usr/share/dictd/gcide.dict.dz")
GCIDE_INDEX = Path("/usr/share/dictd/gcide.index")
WORDNET = Path("/usr/share/dictd/wn.dict.dz")
WORDNET_INDEX = Path("/usr/share/dictd/wn.index")
SOURCES = ("gcide", "wordnet")
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

_SOURCE_TAG = re.compile(r"\[(?:1913 Webster|PJC|WordNet[^\]]*|Webster[^\]]*|Century[^\]]*|[A-Z]{2,4})\]")
_PRONUNCIATION = re.compile(r"\\[^\\]*\\")
_CHAR_CODE = re.compile(r"\[([^\]\s]{1,5})\]")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_PARENS_CODED = re.compile(r"\([^()]*[\"^*=][^()]*\)")
_SPACE = re.compile(r"\s+")
_HEADER = re.compile(r"^[^,]*?,\s*((?:[a-z]+\.\s*)+)")
_NUMBER = re.compile(r"(?:^|\s)(?:\d+|[a-z])\.\s+(?=[A-Z(])")
_CITATION = re.compile(r"\s,\s+[A-Z][\w.' &]{0,40}?\.(?=\s|$)")
_ALLOWED = re.compile(r"^[A-Za-z0-9 .,;:!?'\"()\-]+$")


@dataclass
class Corpus:
    train: list[str]
    heldout: list[str]


def _b64(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _B64.index(c)
    return n


def _char_code(m: re.Match) -> str:
    body = m.group(1)
    if body.lower() in ("ae", "oe"):
        return body
    letters = re.sub(r"[^A-Za-z]", "", body)
    return letters[:1]


def clean_entry(headword: str, raw: str) -> str | None:
    """One dictionary entry as a single line of plain English, or None when it is not usable."""
    paragraphs = [p for p in re.split(r"\n\s*\n", raw) if p.strip()]
    if not paragraphs:
        return None
    pos = ""
    senses: list[str] = []
    for i, p in enumerate(paragraphs):
        p = _SOURCE_TAG.sub(" ", p)
        p = _PRONUNCIATION.sub(" ", p)
        p = _PARENS_CODED.sub(" ", p)
        p = _CHAR_CODE.sub(_char_code, p)
        p = _BRACKETS.sub(" ", p)
        p = p.replace("{", "").replace("}", "").replace("Syn.", " ").replace("--", ", ")
        p = _SPACE.sub(" ", p).strip()
        if i == 0:
            m = _HEADER.match(p)
            if m is None:
                return None
            pos = m.group(1).strip()
            p = p[m.end():].strip()
        if p.startswith("Note:"):
            p = p[5:].strip()
        p = _CITATION.sub(".", p)
        p = _NUMBER.sub(" ", " " + p).strip()
        if len(p) < 8 or not _ALLOWED.match(p):
            continue
        senses.append(p)
    if not senses:
        return None
    text = f"{headword} ({pos}): {' '.join(senses)}" if pos else f"{headword}: {' '.join(senses)}"
    text = re.sub(r"\s+([,.;:])", r"\1", _SPACE.sub(" ", text))
    text = re.sub(r"([,;:])(?:[,;:]\s*)+", r"\1 ", text)
    return re.sub(r"\.\.(?!\.)", ".", text).replace(";,", ";").replace(":,", ":")


def heldout(headword: str) -> bool:
    return zlib.crc32(headword.lower().encode()) % 100 < 2


_WN_POS = {"n": "n.", "v": "v.", "adj": "a.", "adv": "adv."}
_WN_SENSE = re.compile(r"(?:^|\s)(?:(n|v|adj|adv)\s+)?\d+:\s")
_WN_REFS = re.compile(r"\[(?:syn|ant|also|see)[^\]]*\]")


def clean_wordnet_entry(raw: str) -> tuple[str, str] | None:
    """A WordNet entry as (headword, "headword (pos.): Sense. Sense; \"example\"."), or None."""
    first, _, body = raw.partition("\n")
    headword = first.strip()
    body = _SPACE.sub(" ", _WN_REFS.sub(" ", body)).strip()
    if not headword or not body:
        return None
    parts = _WN_SENSE.split(" " + body)
    pos = ""
    senses: list[str] = []
    # split() yields [before, pos1, text1, pos2, text2, ...]
    for i in range(1, len(parts) - 1, 2):
        if parts[i] and not pos:
            pos = _WN_POS.get(parts[i], "")
        text = parts[i + 1].strip().rstrip(";").strip()
        if len(text) < 3 or not _ALLOWED.match(text):
            continue
        senses.append(text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?", '"')) else "."))
    if not senses:
        return None
    return headword, f"{headword} ({pos}): {' '.join(senses)}" if pos else f"{headword}: {' '.join(senses)}"


def _dictd_entries(dict_path: Path, index_path: Path, package: str):
    if not dict_path.exists():
        raise SystemExit(f"{dict_path} is missing: apt-get install {package}")
    data = gzip.decompress(dict_path.read_bytes()).decode("utf-8", errors="replace")
    seen: set[tuple[int, int]] = set()
    for line in index_path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        start, length = _b64(parts[1]), _b64(parts[2])
        if (start, length) in seen:
            continue
        seen.add((start, length))
        yield parts[0], data[start:start + length]


def load_corpus(limit_bytes: int | None = None, sources: tuple[str, ...] = ("gcide",)) -> Corpus:
    """The cleaned entries of the sources in order, split into training and held-out documents
    (file order); with limit_bytes, only the first that many bytes of documents."""
    train: list[str] = []
    held: list[str] = []
    size = 0
    for source in sources:
        if source == "gcide":
            entries = _dictd_entries(GCIDE, GCIDE_INDEX, "dict-gcide")
        elif source == "wordnet":
            entries = _dictd_entries(WORDNET, WORDNET_INDEX, "dict-wn")
        else:
            raise SystemExit(f"unknown corpus source {source!r}; known: {', '.join(SOURCES)}")
        for name, raw in entries:
            if source == "gcide":
                # The index also lists phrases defined inside an entry; name it by its own headword.
                headword = raw.split("\\", 1)[0].strip() if "\\" in raw.split("\n", 1)[0] else name
                doc = clean_entry(headword, raw)
            else:
                cleaned = clean_wordnet_entry(raw)
                headword, doc = cleaned if cleaned is not None else (name, None)
            if doc is None:
                continue
            (held if heldout(headword) else train).append(doc)
            size += len(doc) + 1
            if limit_bytes is not None and size >= limit_bytes:
                return Corpus(train, held)
    return Corpus(train, held)


def save_corpus(corpus: Corpus, path: Path) -> None:
    """The cleaned corpus as gzipped JSON, for machines without the dictionaries (the GPU machine)."""
    path.write_bytes(gzip.compress(json.dumps({"train": corpus.train, "heldout": corpus.heldout}).encode(), 9, mtime=0))


def read_corpus(path: Path) -> Corpus:
    """A corpus written by save_corpus (all sources, whole: presets that take a prefix read the dictionaries)."""
    raw = json.loads(gzip.decompress(path.read_bytes()))
    return Corpus(list(raw["train"]), list(raw["heldout"]))


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--write":
    save_corpus(load_corpus(sources=SOURCES), Path(sys.argv[2]))
    print(f"wrote {sys.argv[2]}")
elif __name__ == "__main__":
    c = load_corpus(sources=tuple(sys.argv[1:]) or SOURCES)
    print(len(c.train), "train documents,", sum(map(len, c.train)), "characters")
    print(len(c.heldout), "held-out documents,", sum(map(len, c.heldout)), "characters")
    for d in c.train[1000:1010]:
        print("-", d[:300])

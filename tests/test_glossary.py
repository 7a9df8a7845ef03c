"""data/glossary.csv: an English-Chinese glossary that covers the notebooks' headings and holds no dead entries."""

import csv
import pathlib
import re

ROOT = pathlib.Path(__file__).parents[1]
GLOSSARY = ROOT / "data" / "glossary.csv"
SKELETON = {"Pitfalls", "Exercises", "Summary", "Further reading"}
# Everyday words of the headings that are not terms (a new technical word in a heading must go in the glossary).
EVERYDAY = set("""a against an and as at beyond big budget by cached can chosen does down each final first forgets
formula from go hand help hinton honest how in is its knows left matters measured milliseconds of omitted on one
optional or own plan real really reveal same saves side small sure teaching that the themselves to vs what when where
which whole why with number dead answers article faq before during""".split())


def rows() -> list[dict]:
    with GLOSSARY.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def headings() -> list[str]:
    found = []
    for path in sorted((ROOT / "notebooks").glob("*.py")):
        found += [m.group(1) for m in re.finditer(r"^# #+ (.+)$", path.read_text(), re.MULTILINE)]
    return [h for h in found if h not in SKELETON]


def words(text: str) -> list[str]:
    return [w.replace("'s", "") for w in re.findall(r"[a-z][a-z'\-]*", text.lower())]


def test_every_entry_is_complete_and_unique():
    entries = rows()
    assert len(entries) >= 60
    english = [r["english"].lower() for r in entries]
    assert len(english) == len(set(english)), "an English term is listed twice"
    for r in entries:
        assert r["english"].strip() and r["chinese"].strip(), f"incomplete entry: {r}"
        assert re.search(r"[\u4e00-\u9fff]", r["chinese"]) or r["english"] == r["chinese"], r


def test_every_heading_word_is_a_term_or_an_everyday_word():
    term_words = {w for r in rows() for w in words(r["english"])}

    def covered(word: str) -> bool:   # compress / compressed / compression share a stem
        singular = word[:-1] if word.endswith("s") else word
        return (word in EVERYDAY or word in term_words or singular in term_words
                or any(word[:6] == t[:6] and len(t) >= 6 for t in term_words))
    missing = sorted({w for h in headings() for w in words(h) if not covered(w)})
    assert not missing, f"add these heading words to data/glossary.csv (or EVERYDAY if not a term): {missing}"


def test_no_dead_entries():
    text = " ".join(p.read_text().lower() for p in [*(ROOT / "notebooks").glob("*.py"), ROOT / "README.md"])
    dead = [r["english"] for r in rows() if r["english"].lower() not in text]
    assert not dead, f"glossary terms used nowhere in the notebooks or README: {dead}"


def test_both_readmes_show_the_glossary():
    for name in ("README.md", "README.zh-CN.md"):
        text = (ROOT / name).read_text(encoding="utf-8")
        block = text.split("<!-- results:glossary -->", 1)[1].split("<!-- end results -->", 1)[0]
        for r in rows():
            assert f"| {r['english']} | {r['chinese']} |" in block, f"{name}: re-render the glossary (scripts/render_results.py)"
        table = [line for line in block.strip().splitlines() if line.startswith("|")]
        cells = [len(re.split(r"(?<!\\)\|", line)) - 2 for line in table]     # an unescaped | splits a cell
        assert set(cells) == {3}, f"{name}: a glossary row has {max(cells)} cells, not 3 (escape | as \\|)"

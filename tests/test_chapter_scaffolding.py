"""Every chapter has the same scaffolding (issue 17), in the same format, so that it can be checked.

* right after the introduction, a ``{admonition} Before you start`` cell with
  ``**Learning goals.**``, ``**Prerequisites.**`` and ``**Time.**``;
* a code cell ``book.chapter_timings("NN")`` with the chapter's own number, right after
  the setup cell (the one calling ``book.setup``);
* under ``## Exercises``, each numbered item followed by a ``<details><summary>Hint``
  (or ``Solution``) block, closed with ``</details>``, before the next item;
* every ``{cite}`` key is in ``book/references.bib``, every ``{term}`` in ``book/glossary.md``.

Each checker is also run on a small broken chapter (``BAD``), so that a check that
passes on the chapters is known to be able to fail.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


# ----------------------------------------------------------------------------- reading a chapter


def cells(text: str) -> list[tuple[str, str, str]]:
    """A py:percent notebook as ``(kind, header, body)`` cells; markdown bodies without ``# ``."""
    found, kind, header, lines = [], None, "", []
    for line in text.splitlines():
        if line.startswith("# %%"):
            if kind is not None:
                found.append((kind, header, "\n".join(lines).strip("\n")))
            kind = "markdown" if "[markdown]" in line else "code"
            header, lines = line, []
        elif kind is not None:
            if kind == "markdown":
                line = line[2:] if line.startswith("# ") else line[1:] if line.startswith("#") else line
            lines.append(line)
    if kind is not None:
        found.append((kind, header, "\n".join(lines).strip("\n")))
    return found


def check_before_you_start(text: str) -> list[str]:
    """The admonition cell exists, has its three parts, and comes before the first code cell."""
    problems = []
    all_cells = cells(text)
    where = [i for i, (kind, _, body) in enumerate(all_cells)
             if kind == "markdown" and "{admonition} Before you start" in body]
    if len(where) != 1:
        return [f"expected one markdown cell with '{{admonition}} Before you start', found {len(where)}"]
    body = all_cells[where[0]][2]
    if not body.lstrip().startswith("```{admonition} Before you start"):
        problems.append("the admonition must open its cell: ```{admonition} Before you start")
    if ":class: tip" not in body:
        problems.append("the admonition needs ':class: tip'")
    for part in ("**Learning goals.**", "**Prerequisites.**", "**Time.**"):
        if part not in body:
            problems.append(f"the admonition has no {part}")
    goals = body.split("**Learning goals.**", 1)[-1].split("**Prerequisites.**", 1)[0]
    bullets = [line for line in goals.splitlines() if line.startswith("- ")]
    if not 3 <= len(bullets) <= 5:
        problems.append(f"3 to 5 learning goals expected, found {len(bullets)}")
    first_code = next((i for i, (kind, _, _) in enumerate(all_cells) if kind == "code"), len(all_cells))
    if where[0] > first_code:
        problems.append("the admonition must come before the first code cell (the install cell)")
    return problems


def check_timings_cell(text: str, number: str) -> list[str]:
    """``book.chapter_timings("NN")`` with this chapter's number, in the cell after ``book.setup``."""
    all_cells = cells(text)
    calls = [(i, m.group(1)) for i, (kind, _, body) in enumerate(all_cells) if kind == "code"
             for m in re.finditer(r"book\.chapter_timings\(\s*[\"'](\w+)[\"']\s*\)", body)]
    if not calls:
        return [f'no code cell calls book.chapter_timings("{number}")']
    problems = [f'book.chapter_timings("{got}") in chapter {number}' for _, got in calls if got != number]
    setup = next((i for i, (kind, _, body) in enumerate(all_cells) if kind == "code" and "book.setup(" in body),
                 None)
    index = calls[0][0]
    if setup is None:
        problems.append("no setup cell (book.setup) to put the timings after")
    elif index != setup + 1:
        problems.append("book.chapter_timings must be the code cell right after the setup cell")
    kind, header, body = all_cells[index]
    if "hide-input" not in header:
        problems.append('the timings cell needs tags=["hide-input"]')
    if any(line.strip().startswith("if ") for line in body.splitlines()):
        problems.append("the timings cell must call book.chapter_timings directly, not behind a condition")
    return problems


def exercise_items(text: str) -> list[list[str]] | None:
    """The numbered items under ``## Exercises``, each as its lines; None without the section."""
    lines, inside = [], False
    for kind, _, body in cells(text):
        if kind != "markdown":
            if inside:
                break  # the section is the markdown up to the next code cell or heading
            continue
        for line in body.splitlines():
            if line.startswith("## "):
                if inside:
                    inside = False
                    break
                inside = line.strip() == "## Exercises"
                continue
            if inside:
                lines.append(line)
    if not lines and not any(line.strip() == "## Exercises" for _, _, b in cells(text) for line in b.splitlines()):
        return None
    items: list[list[str]] = []
    for line in lines:
        if re.match(r"\d+\.\s", line):
            items.append([line])
        elif items:
            items[-1].append(line)
    return items


def check_exercises(text: str) -> list[str]:
    """Every numbered exercise is followed by a closed <details><summary>Hint|Solution block."""
    items = exercise_items(text)
    if items is None:
        return ["no '## Exercises' section"]
    if not items:
        return ["no numbered items under '## Exercises'"]
    problems = []
    for item in items:
        number = item[0].split(".")[0]
        body = "\n".join(item[1:])
        opened = re.findall(r"<details>\s*<summary>\s*(\w+)\s*</summary>", body)
        if not opened:
            problems.append(f"exercise {number} has no <details><summary>Hint</summary> (or Solution) after it")
            continue
        if any(kind not in ("Hint", "Solution") for kind in opened):
            problems.append(f"exercise {number}: the summary must say Hint or Solution, got {opened}")
        if body.count("</details>") != body.count("<details>"):
            problems.append(f"exercise {number}: <details> is not closed with </details>")
        for line in item[1:]:
            if "<details>" in line and not line.startswith("   "):
                problems.append(f"exercise {number}: indent <details> to stay in the list item")
    return problems


def bib_keys() -> set[str]:
    return set(re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", (ROOT / "book" / "references.bib").read_text("utf8")))


def glossary_terms() -> set[str]:
    text = (ROOT / "book" / "glossary.md").read_text("utf8")
    block = text.split("```{glossary}", 1)[1].split("\n```", 1)[0]
    return {line.strip().lower() for line in block.splitlines()
            if line.strip() and not line.startswith((" ", "\t", ":"))}


def check_references(text: str, keys: set[str], terms: set[str]) -> list[str]:
    problems = []
    for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text):
        for key in (k.strip() for k in group.split(",")):
            if key not in keys:
                problems.append(f"{{cite}} key {key!r} is not in book/references.bib")
    for role in re.findall(r"\{term\}`([^`]+)`", text):
        target = re.search(r"<([^>]+)>\s*$", role)
        term = (target.group(1) if target else role).strip().lower()
        if term not in terms:
            problems.append(f"{{term}} {term!r} is not in book/glossary.md")
    return problems


# ----------------------------------------------------------------------------- the chapters


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_before_you_start(chapter):
    assert check_before_you_start(chapter.read_text("utf8")) == []


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_shows_its_timings(chapter):
    assert check_timings_cell(chapter.read_text("utf8"), chapter.name[:2]) == []


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_exercise_has_a_hint_or_solution(chapter):
    assert check_exercises(chapter.read_text("utf8")) == []


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_citations_and_terms_exist(chapter):
    assert check_references(chapter.read_text("utf8"), bib_keys(), glossary_terms()) == []


def test_there_are_chapters_and_references():
    assert len(CHAPTERS) >= 10
    assert "braun2024cake" in bib_keys() and "teacher" in glossary_terms()


# ----------------------------------------------------------------------------- the checks can fail

GOOD = '''# %% [markdown]
# # A chapter
#
# Its introduction, citing {cite}`braun2024cake` and a {term}`teacher`.

# %% [markdown]
# ```{admonition} Before you start
# :class: tip
#
# **Learning goals.** After this chapter you can
# - do one thing;
# - do another;
# - do a third.
#
# **Prerequisites.** {doc}`02_toy_2d`.
#
# **Time.** The table after the setup cell gives this chapter's run time at each size.
# ```

# %% tags=["hide-input"]
import cake_mini

# %% tags=["hide-input"]
SIZE, SEED, DEVICE, RUN = book.setup(seed=0)

# %% tags=["hide-input"]
book.chapter_timings("04")

# %% [markdown]
# ## Exercises
#
# 1. First exercise.
#
#    <details><summary>Hint</summary>
#
#    A hint.
#
#    </details>
# 2. Second exercise,
#    on two lines.
#
#    <details><summary>Solution</summary>
#
#    The answer.
#
#    </details>
'''


def test_the_checks_pass_a_good_chapter():
    keys, terms = {"braun2024cake"}, {"teacher"}
    assert check_before_you_start(GOOD) == []
    assert check_timings_cell(GOOD, "04") == []
    assert check_exercises(GOOD) == []
    assert check_references(GOOD, keys, terms) == []


@pytest.mark.parametrize("old, new, check, expected", [
    ("# **Time.** The table", "# The table", "before", "no **Time.**"),
    ("# **Learning goals.**", "# Goals.", "before", "no **Learning goals.**"),
    ("# **Prerequisites.** ", "# ", "before", "no **Prerequisites.**"),
    ("# - do a third.\n", "", "before", "3 to 5 learning goals"),
    ("# ```{admonition} Before you start", "# ```{note}", "before", "found 0"),
    ('book.chapter_timings("04")', 'book.chapter_timings("05")', "timings", 'chapter_timings("05") in chapter 04'),
    ('book.chapter_timings("04")', "print(1)", "timings", "no code cell calls"),
    ('# %% tags=["hide-input"]\nbook.chapter_timings', "# %%\nbook.chapter_timings", "timings", "hide-input"),
    ('book.chapter_timings("04")', 'if hasattr(book, "chapter_timings"):\n    book.chapter_timings("04")',
     "timings", "not behind a condition"),
    ("#    <details><summary>Hint</summary>", "#    A note.", "exercises", "exercise 1 has no"),
    ("#    <details><summary>Solution</summary>", "#    <details><summary>Answer</summary>", "exercises",
     "must say Hint or Solution"),
    ("#    The answer.\n#\n#    </details>", "#    The answer.", "exercises", "not closed"),
    ("# ## Exercises", "# ## Things to try", "exercises", "no '## Exercises' section"),
    ("{cite}`braun2024cake`", "{cite}`braun2025cake`", "references", "'braun2025cake' is not in"),
    ("{term}`teacher`", "{term}`a teacher <teachers>`", "references", "'teachers' is not in"),
])
def test_each_check_fails_on_a_broken_chapter(old, new, check, expected):
    assert old in GOOD, old
    bad = GOOD.replace(old, new)
    found = {"before": lambda: check_before_you_start(bad), "timings": lambda: check_timings_cell(bad, "04"),
             "exercises": lambda: check_exercises(bad),
             "references": lambda: check_references(bad, {"braun2024cake"}, {"teacher"})}[check]()
    assert any(expected in problem for problem in found), found


def test_a_third_exercise_without_a_hint_is_found():
    bad = GOOD + "# 3. A third exercise, and no hint.\n"
    assert check_exercises(bad) == ["exercise 3 has no <details><summary>Hint</summary> (or Solution) after it"]


def test_timings_cell_must_follow_the_setup_cell():
    moved = GOOD.replace('# %% tags=["hide-input"]\nbook.chapter_timings("04")\n\n', "")
    moved += '\n# %% tags=["hide-input"]\nbook.chapter_timings("04")\n'
    assert "right after the setup cell" in " ".join(check_timings_cell(moved, "04"))

"""The docs are checked like generated code: the benchmark table is what the results give, the site
builds strictly (offline), and the README's links lead somewhere."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    """A module of benchmarks/ (a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # table.py imports results_format by name
    spec.loader.exec_module(module)
    return module


results_format = _load("results_format")
table = _load("table")

# [text](target) in markdown, not images' or code's; the target up to a space, ')' or '#'
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s#]*)(#[^)\s]*)?\)")


def _relative_links(path: Path) -> list[str]:
    """The relative link targets of a markdown file (files, with their #anchor when they have one)."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code blocks hold no links
    text = re.sub(r"`[^`\n]*`", "", text)
    return [m.group(1) + (m.group(2) or "") for m in LINK.finditer(text)
            if m.group(1) and not re.match(r"[a-z][a-z0-9+.-]*:", m.group(1))]


def _anchors(path: Path) -> set[str]:
    """The heading anchors of a markdown page, as mkdocs (and GitHub, for these headings) spell them."""
    from markdown.extensions.toc import slugify

    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slugify(re.sub(r"[`*]", "", h), "-") for h in re.findall(r"^#+\s+(.+?)\s*$", text, flags=re.M)}


def test_benchmarks_page_is_what_the_results_give():
    """What CI checks: docs/benchmarks.md equals `python benchmarks/table.py`'s output."""
    problem = table.check()
    assert problem is None, problem


def test_check_fails_on_a_stale_page_and_names_the_fix(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text(table.render())
    assert table.check(page) is None
    page.write_text(table.render().replace("[ingest]", "[ingest (edited by hand)]", 1))
    assert "is stale: run `python benchmarks/table.py`" in table.check(page)


def test_every_results_file_is_in_the_one_format_and_has_a_row():
    page = table.render()
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        doc = results_format.read_result(path)
        assert list(doc) == list(results_format.KEYS), path.name
        assert f"](../benchmarks/results/{path.name})" in page


def test_a_file_without_the_keys_is_refused_naming_it(tmp_path):
    good = json.loads((ROOT / "benchmarks" / "results" / "ingest.json").read_text())
    (tmp_path / "fine.json").write_text(json.dumps(good))
    bad = {k: v for k, v in good.items() if k != "peer"}
    (tmp_path / "old_format.json").write_text(json.dumps(bad))
    with pytest.raises(results_format.ResultFormatError, match=r"old_format\.json: missing keys \['peer'\]"):
        table.render(tmp_path)


def test_write_result_fills_commit_and_machine_and_round_trips(tmp_path):
    out = tmp_path / "thing.json"
    doc = results_format.write_result(out, claim="x is fast", figures={"seconds": 1.5}, headline="1.5 s",
                                      peer="y: 3.0 s", ratio=0.5, command="python benchmarks/thing.py")
    assert results_format.read_result(out) == doc
    assert doc["commit"] and doc["machine"] and doc["figures"] == {"headline": "1.5 s", "seconds": 1.5}


def test_site_builds_strictly_offline_with_nothing_from_a_cdn(tmp_path):
    """`mkdocs build --strict`: a broken link, a missing anchor or a page outside the nav fails."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    site = tmp_path / "site"
    build(load_config(str(ROOT / "mkdocs.yml"), site_dir=str(site), strict=True))
    pages = list(site.rglob("*.html"))
    assert (site / "benchmarks" / "index.html").exists() and (site / "results" / "ingest.json").exists()
    loaded = re.compile(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I)
    remote = [p.relative_to(site) for p in pages if loaded.search(p.read_text())]
    assert not remote, f"pages that load something from another host: {remote}"


def test_a_broken_link_fails_the_strict_build(tmp_path):
    """The strict build is what catches broken links: prove it on a copy with one."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import Abort

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\n[gone](nowhere.md)\n")
    (tmp_path / "mkdocs.yml").write_text("site_name: x\nnav:\n  - index.md\n")
    with pytest.raises(Abort):
        build(load_config(str(tmp_path / "mkdocs.yml"), site_dir=str(tmp_path / "site"), strict=True))


@pytest.mark.parametrize("doc", ["README.md", *sorted(str(p.relative_to(ROOT))
                                                       for p in (ROOT / "docs").rglob("*.md"))])
def test_relative_links_point_at_files_in_the_repository(doc):
    path = ROOT / doc
    links = [t.partition("#") for t in _relative_links(path)]
    missing = [t for t, _, _ in links if not (path.parent / t).exists()]
    assert not missing, f"{doc} links to files that are not in the repository: {missing}"
    no_anchor = [f"{t}#{a}" for t, _, a in links
                 if a and t.endswith(".md") and a not in _anchors(path.parent / t)]
    assert not no_anchor, f"{doc} links to headings that do not exist: {no_anchor}"


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move detail into docs/"


def test_the_link_finder_finds_links():
    assert _relative_links(ROOT / "README.md"), "no relative links found in README.md: the pattern broke"


TOP_FOLDERS = ("rgcd/", "transforms/", "training/", "embeddings/", "dbt/", "feature_repo/", "tests/",
               "benchmarks/", "docs/")


@pytest.mark.parametrize("doc", ["README.md", *sorted(str(p.relative_to(ROOT))
                                                       for p in (ROOT / "docs").rglob("*.md"))])
def test_files_named_in_code_spans_exist(doc):
    """`training/stage2.py` in a page names a file of the repository: it must be there (a pattern
    such as `dbt/models/**/<model>.yml` is not a file name and is left alone)."""
    named = {m.split(":")[0].rstrip(",.") for m in re.findall(r"`([^`\s]+)`", (ROOT / doc).read_text())}
    missing = sorted(t for t in named if t.startswith(TOP_FOLDERS) and not re.search(r"[<*{]", t)
                     and not (ROOT / t).exists())
    assert not missing, f"{doc} names files that are not in the repository: {missing}"


def test_nothing_cites_the_design_notes_that_are_not_in_the_repository():
    """DESIGN.md and shared/STACK.md were working notes outside the repository; cite docs/ instead."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    suffixes = {".py", ".md", ".sql", ".yml", ".yaml", ".toml"}
    files = [ROOT / f for f in tracked.decode().split("\0")
             if Path(f).suffix in suffixes and f != "tests/test_docs.py" and (ROOT / f).exists()]
    citing = [str(p.relative_to(ROOT)) for p in files if re.search(r"DESIGN\.md|STACK\.md", p.read_text())]
    assert not citing, f"these cite DESIGN.md or STACK.md, which are not in the repository: {citing}"

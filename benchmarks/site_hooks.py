"""mkdocs hook (mkdocs.yml `hooks:`): publish benchmarks/results/*.json with the docs site.

docs/benchmarks.md links each row to its results file as `../benchmarks/results/<name>.json`, a
path that works where the repository is read as files; this hook adds those files to the site under
that very source path (served as `results/<name>.json`), so `mkdocs build --strict` checks the links
instead of reporting them as outside the docs.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files, InclusionLevel

RESULTS = Path(__file__).resolve().parent / "results"


def on_files(files: Files, config) -> Files:
    """Add every results file to the site's files."""
    for path in sorted(RESULTS.glob("*.json")):
        files.append(File(f"../benchmarks/results/{path.name}", config["docs_dir"], config["site_dir"],
                          config["use_directory_urls"], dest_uri=f"results/{path.name}",
                          inclusion=InclusionLevel.INCLUDED))
    return files

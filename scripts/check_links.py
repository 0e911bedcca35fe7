"""Every internal link of the built documentation site resolves: each relative ``href``/``src`` of every page names
a file of the site, and each ``#fragment`` an id on the page it points to.

Sphinx (``-W``, nitpicky) already fails on references it cannot resolve; this catches what it passes through as a
plain URL (a markdown link to a page or an anchor, a theme link). External links (``https:`` ...) are not checked:
the build needs no network. Usage: ``python scripts/check_links.py docs/_build/html``; exit 1 listing the broken
links.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class PageLinks(HTMLParser):
    """The ids and the link targets of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            elif (name == "href" and tag in ("a", "link")) or (name == "src" and tag in ("img", "script")):
                self.links.append(value)


def parse(page: Path) -> PageLinks:
    parser = PageLinks()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def broken_links(site: Path) -> list[str]:
    """``page: link (reason)`` for every internal link of ``site`` that does not resolve."""
    pages = {page.resolve(): parse(page) for page in sorted(site.rglob("*.html"))}
    problems = []
    for page, parsed in pages.items():
        for link in parsed.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("data:"):
                continue  # external: not checked here
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            where = f"{page.relative_to(site.resolve())}: {link}"
            if not target.exists():
                problems.append(f"{where} (no file {target})")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse(target).ids
                if unquote(parts.fragment) not in ids:
                    problems.append(f"{where} (no id {parts.fragment!r} in {target.name})")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python scripts/check_links.py SITE_DIRECTORY (the built HTML, e.g. docs/_build/html)")
        return 2
    site = Path(argv[0])
    problems = broken_links(site)
    for problem in problems:
        print(f"broken link: {problem}")
    count = sum(1 for _ in site.rglob("*.html"))
    print(f"check_links: {count} pages, {len(problems)} broken internal link(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

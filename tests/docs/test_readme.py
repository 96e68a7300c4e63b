"""The README: its curl session, pasted into bash against the live service, does what it says; its
map names rooms that exist; and no link in the documents leads nowhere."""

import re
from pathlib import Path

from tests.support import ROOT
from tests.support.docs import DOCS, README, Checkout, code_blocks, fenced, section
from tests.support.environment import SECRET

CURL = "Try it with curl"
MAP = "How a request travels"
DOCUMENTS = [README, *sorted(DOCS.glob("*.md")), ROOT / "clients" / "js" / "README.md",
             ROOT / "clients" / "python" / "README.md", ROOT / "bench" / "README.md"]


def curl_session() -> str:
    """The README's curl session: the later sessions of docs/ start from its variables."""
    return code_blocks(README, CURL)[0]


def test_readme_curl_session_gives_200_then_304_then_200(live_server, tmp_path):
    checkout = Checkout(tmp_path / "counts")
    done = checkout.run(curl_session(), {**live_server.env, "URL": live_server.url,
                                         "COUNTS_JWT_SECRET": SECRET}, timeout=60)
    assert done.returncode == 0, done.stderr
    statuses = re.findall(r"^HTTP/1.1 (\d{3})", done.stdout, re.M)
    assert statuses == ["200", "304", "200"]
    totals = re.findall(r'"total": (\d+)', done.stdout)
    assert totals == ["1", "0"]
    assert (checkout.path / "bob.etag").read_text().strip().startswith('"')


def test_every_room_the_readme_map_names_exists():
    text = "\n".join(section(README, MAP))
    rooms = set(re.findall(r"^  ([a-z_]+/)", text, re.M))
    assert rooms == {f"{path.name}/" for path in (ROOT / "counts").iterdir()
                     if path.is_dir() and (path / "__init__.py").exists()}
    named = set(re.findall(r"`((?:[a-z_]+/)+[a-z_{},]+)(?:\.\w+)?`", text))
    assert len(named) > 15
    for name in named:
        head, _, tail = name.partition("{")
        for stem in ([head + part for part in tail.rstrip("}").split(",")] if tail else [head]):
            path = ROOT / "counts" / stem
            assert path.with_suffix(".py").exists() or path.is_dir(), name


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a document's headings."""
    found = set()
    for line, info, _ in fenced(section(path)):
        if info is None and (heading := re.fullmatch(r"#{1,6}\s+(.*?)\s*", line)):
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            found.add(slug)
    return found


def test_every_link_between_the_documents_leads_somewhere():
    checked = 0
    for document in DOCUMENTS:
        prose = "\n".join(line for line in section(document) if not line.startswith("    "))
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"[a-z]+:", target):
                continue  # another site: not reachable from here, and not ours to keep
            file, _, anchor = target.partition("#")
            resolved = (document.parent / file).resolve() if file else document
            assert resolved.exists(), f"{document.relative_to(ROOT)}: {target}"
            if anchor and resolved.suffix == ".md":
                assert anchor in anchors(resolved), f"{document.relative_to(ROOT)}: {target}"
            checked += 1
    assert checked > 30


def test_every_path_the_documents_name_exists():
    # Made by runs, ignored by git: `make bench`'s output, `npm ci`'s packages.
    made_by_runs = {"bench/out", "clients/js/node_modules"}
    named, missing = 0, []
    for document in [*DOCUMENTS, DOCS / "DESIGN.md"]:
        text = document.read_text()
        for cited in re.findall(r"`((?:counts|tests|dev|bench|clients|examples|docs)/[\w/.{},-]*)", text):
            head, _, tail = cited.split("::")[0].rstrip("/.,").partition("{")
            for candidate in ([head + part for part in tail.rstrip("}").split(",")] if tail else [head]):
                where = ROOT / candidate
                named += 1
                if not (where.exists() or where.with_suffix(".py").exists() or candidate in made_by_runs):
                    missing.append(f"{document.relative_to(ROOT)}: {candidate}")
    assert not missing
    assert named > 50

"""Every fenced example in README.md and docs/ is run, or checked as far as it can be.

What each kind of block goes through:

- ``toml``: loaded with Ownlight's own config loader, which refuses an unknown or
  misspelt setting and a value of the wrong type.
- ``python``: executed, as written, against a real running gateway whose ``local`` and
  ``local-embed`` aliases are a recording fake upstream; ``KEY`` is a key of that gateway
  and ``http://127.0.0.1:8088`` its address. The SDKs raise on any error status.
- ``sh``: each line is one command. ``curl`` runs for real against that gateway (the
  HTTP status must be 2xx); ``ownlight`` commands that need neither a model nor the
  user's files run for real in a scratch data dir, and the rest are parsed by the CLI's
  own parser (an unknown command or option, or a missing argument, fails), in a scratch
  home where the files the example names exist; ``make`` targets must be in the Makefile.
- ``json``: an eval suite, loaded with the suite loader.

A block that cannot be run says so in the Markdown, on the line right before its fence:
``<!-- not-run: why -->``, or ``<!-- synopsis -->`` for a usage summary (options in
brackets, alternatives joined with ``|``), whose commands and options are checked against
the CLI. An unmarked block this module cannot run fails ``test_every_example_is_run``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from agents import set_tracing_disabled
from click.testing import CliRunner

from ownlight.cli import main
from ownlight.config import load_config
from ownlight.evals.suite import load_suite
from ownlight.knowledge.base import KnowledgeBase, index_path
from ownlight.knowledge.sqlite_store import SQLiteKnowledgeStore
from ownlight.knowledge.types import Document
from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import RunningGateway

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARK = re.compile(r"<!-- (?:not-run: (?P<reason>\S.*?)|(?P<synopsis>synopsis)) -->")
DOCUMENTED_ADDRESS = "127.0.0.1:8088"
# ``ownlight`` commands run for real: they need no model, no server and no files of the user.
RUNNABLE = {("privacy", "redact"), ("privacy", "scan"), ("audit", "verify"),
            ("audit", "list"), ("audit", "egress"), ("audit", "checkpoint"),
            ("audit", "export"), ("keys", "create"), ("keys", "list"), ("config", "show"),
            ("models", "list"), ("models", "licenses"), ("eval", "list"), ("ingest",),
            ("search",)}
MAIL = ("From alice@example.com Mon Jan  6 09:00:00 2025\nFrom: alice@example.com\n"
        "Subject: Lunch\n\nLunch on Friday is at noon.\n")
#: the files the examples name, with content the commands that run can read
FILES = {
    "notes/offsite.md": "The Q4 offsite is in Lisbon, 14-16 October.\n",
    "mail/inbox.mbox": MAIL,
    "Mail/archive.mbox": MAIL,
    "handbook/leave.md": "# Leave\n\nParental leave is 16 weeks, on full pay.\n",
    "finance.jsonl": '{"id": "q3", "title": "Q3", "text": "Q3 revenue grew.", '
                     '"allow": ["group:finance"]}\n',
}
# Named by commands that are parsed only: they exist, empty.
EMPTY = ("model.gguf", "qwen2.5-1.5b-q4_k_m.gguf", "texts.jsonl", "FILE.jsonl",
         "prompts.jsonl", "PATH.gguf")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    text: str
    mark: str | None  # None, "not-run" or "synopsis"

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(markdown: str, page: str) -> Iterator[Block]:
    for fence in FENCE.finditer(markdown):
        before = markdown[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        mark = MARK.fullmatch(before)
        kind = None if mark is None else "synopsis" if mark["synopsis"] else "not-run"
        yield Block(page, markdown[: fence.start()].count("\n") + 1, fence[1], fence[2], kind)


ALL = [b for page in PAGES for b in blocks(page.read_text(), str(page.relative_to(ROOT)))]


def of(lang: str, mark: str | None = None) -> list[object]:
    return [pytest.param(b, id=str(b)) for b in ALL if b.lang == lang and b.mark == mark]


# -- what a line of shell is -----------------------------------------------------------------


def commands(text: str) -> Iterator[tuple[str, list[str]]]:
    """Each line and its words (``~`` expanded, comments dropped); ``echo X | ownlight ...``
    stays one command."""
    for line in text.replace("\\\n", " ").splitlines():  # a backslash continues a line
        words = [os.path.expanduser(w) for w in shlex.split(line, comments=True)]
        if words:
            yield line, words


def shown_output(text: str, line: str) -> list[str]:
    """The comment lines right under ``line``: what the example says it prints. A line with
    ``...`` stands for the model's own words and is not compared."""
    lines = text.splitlines()
    shown = []
    for after in lines[lines.index(line) + 1:]:
        if not after.startswith("#"):
            break
        shown.append(after.removeprefix("#").strip())
    return [s for s in shown if s and "..." not in s]


def cli_path(words: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """The ``ownlight`` subcommand ``words`` names, its name path and the words left over."""
    command: click.Command = main
    path: list[str] = []
    rest = words[1:]
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        path.append(rest[0])
        command = command.commands[rest[0]]
        rest = rest[1:]
    if isinstance(command, click.Group):
        raise AssertionError(f"no such command: {' '.join(words)}")
    return command, path, rest


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([\w.-]+):", (ROOT / "Makefile").read_text(), re.M))


def kind_of(words: list[str]) -> str | None:
    if words[0] == "echo" and "|" in words:
        words = words[words.index("|") + 1:]
    return {"make": "make", "ownlight": "ownlight", "curl": "curl"}.get(words[0])


def how(block: Block) -> str | None:
    """How ``block`` is run, or None when this module cannot run it."""
    if block.mark == "not-run":
        return "not run (marked)"
    if block.mark == "synopsis":
        return "synopsis" if block.lang == "sh" else None
    if block.lang == "sh":
        kinds = {kind_of(words) for _, words in commands(block.text)}
        return None if None in kinds else "sh"
    return {"toml": "config", "python": "python", "json": "eval suite"}.get(block.lang)


def test_every_example_is_run() -> None:
    assert len(ALL) > 20, "the fence pattern finds the examples"
    cannot = [f"{b} ({b.lang or 'no language'})" for b in ALL if how(b) is None]
    assert not cannot, ("examples no test runs; make them runnable or mark them "
                        f"<!-- not-run: why -->: {cannot}")


def test_the_markers_and_the_checker_see_what_they_should() -> None:
    page = ("<!-- not-run: needs a cloud key -->\n```python\nx\n```\n\n"
            "<!-- synopsis -->\n```sh\nownlight keys list [--json]\n```\n"
            "```sh\nrm -rf /\n```\n```ruby\nputs 1\n```\n```toml\na = 1\n```\n")
    found = list(blocks(page, "p.md"))
    assert [(b.line, b.lang, b.mark) for b in found] == [
        (2, "python", "not-run"), (7, "sh", "synopsis"), (10, "sh", None),
        (13, "ruby", None), (16, "toml", None)]
    assert [how(b) for b in found] == ["not run (marked)", "synopsis", None, None, "config"]


# -- TOML: Ownlight's own loader ---------------------------------------------------------


def load_toml(text: str, tmp_path: Path) -> None:
    path = tmp_path / "ownlight.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + text)
    load_config(path, env={"CLOUD_API_KEY": "sk-example"})


@pytest.mark.parametrize("block", of("toml"))
def test_toml_examples_load(block: Block, tmp_path: Path) -> None:
    load_toml(block.text, tmp_path)


def test_a_misspelt_toml_example_fails(tmp_path: Path) -> None:
    routing = next(b for b in ALL if b.lang == "toml" and "red_line =" in b.text)
    load_toml(routing.text, tmp_path)
    with pytest.raises(Exception, match="red_lines"):
        load_toml(routing.text.replace("red_line =", "red_lines ="), tmp_path)


# -- Python: the SDK examples against a running gateway -----------------------------------


@pytest.fixture
def docs_gateway(gateway_factory, fake_upstream: FakeUpstream,
                 tmp_path: Path) -> RunningGateway:
    """``local`` and ``local-embed`` are the fake upstream; a ``handbook`` collection that the
    group ``staff`` may read is in the index, as the knowledge page's ingest would leave it."""
    kb = KnowledgeBase(SQLiteKnowledgeStore(index_path(tmp_path / "gw-data-0")), None)
    try:
        kb.ingest_documents("handbook.md", [Document(
            key="leave", title="Leave", text="Every employee gets 25 days of paid leave.",
            allow=("group:staff",))], "handbook")
    finally:
        kb.close()
    return gateway_factory(  # type: ignore[operator, no-any-return]
        "[knowledge]\nvectors = false\n"
        + upstream_toml("local", fake_upstream.url, "fake-echo", retries=0)
        + upstream_toml("local-embed", fake_upstream.url, "fake-embed", retries=0))


@pytest.mark.parametrize("block", of("python"))
def test_python_examples_run(block: Block, docs_gateway: RunningGateway,
                             fake_upstream: FakeUpstream) -> None:
    set_tracing_disabled(True)  # the Agents SDK's traces would otherwise go to OpenAI
    assert DOCUMENTED_ADDRESS in block.text, "the example talks to the documented address"
    source = block.text.replace(f"http://{DOCUMENTED_ADDRESS}", docs_gateway.url)
    key = docs_gateway.create_key("alice", groups=("staff",))
    exec(compile(source, str(block), "exec"), {"KEY": key, "__name__": "example"})
    assert fake_upstream.received, "the example reached the model"


# -- shell: curl for real, ownlight run or parsed, make targets ---------------------------


@pytest.fixture
def scratch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home and working directory holding the files the examples name."""
    home = tmp_path / "home"
    for name, text in [*FILES.items(), *((name, "") for name in EMPTY)]:
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(text)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    return home


def run_ownlight(words: list[str], stdin: str | None, model: bool = False) -> str:
    """Run the command and return what it printed, or parse it (and return ""); with
    ``model``, ``ownlight chat`` runs too."""
    command, path, rest = cli_path(words)
    if model and path == ["chat"]:  # a process of its own, as the user runs it
        done = subprocess.run([sys.executable, "-m", "ownlight.cli", *path, *rest],
                              input=stdin or "", capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(words)}: {done.stderr}"
        return done.stdout
    if tuple(path) in RUNNABLE:
        ran = CliRunner().invoke(main, [*path, *rest], input=stdin, catch_exceptions=False)
        assert ran.exit_code == 0, f"{' '.join(words)}: {ran.output}"
        return ran.output
    with command.make_context(" ".join(["ownlight", *path]), rest):
        pass  # parsed: options, arguments and their types
    return ""


def run_curl(line: str, gateway: RunningGateway, key: str) -> None:
    """The line as written, by the shell (``$KEY`` is a key), with the status appended."""
    line = line.replace(DOCUMENTED_ADDRESS, gateway.url.removeprefix("http://"))
    done = subprocess.run(f"{line} -w '\\n%{{http_code}}'", shell=True, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "KEY": key})
    *body, status = done.stdout.rsplit("\n", 1)
    assert done.returncode == 0 and status.startswith("2"), (line, done.stdout, done.stderr)


@pytest.mark.parametrize("block", of("sh"))
def test_shell_examples_run(block: Block, request: pytest.FixtureRequest,
                            scratch_home: Path, model: bool = False) -> None:
    for line, words in commands(block.text):
        kind = kind_of(words)
        if kind == "make":
            assert words[1] in makefile_targets(), words
        elif kind == "curl":
            gateway = request.getfixturevalue("docs_gateway")
            run_curl(line, gateway, gateway.create_key())
        else:
            command, stdin = words, None
            if words[0] == "echo":
                command, stdin = words[words.index("|") + 1:], words[1] + "\n"
            printed = run_ownlight(command, stdin=stdin, model=model)
            if printed:
                missing = [s for s in shown_output(block.text, line) if s not in printed]
                assert not missing, f"{line} did not print {missing}: {printed}"


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in of("sh") if "ownlight chat" in b.values[0].text])
def test_chat_examples_run_on_the_embedded_model(block: Block, request: pytest.FixtureRequest,
                                                 scratch_home: Path) -> None:
    """The blocks with ``ownlight chat``, every line run, the chats on the bundled model."""
    test_shell_examples_run(block, request, scratch_home, model=True)


@pytest.mark.parametrize("block", of("sh", "synopsis"))
def test_synopses_name_real_commands_and_options(block: Block) -> None:
    for line in block.text.splitlines():
        line = line.split("  #", 1)[0]
        for usage in filter(None, (u.strip() for u in line.split(" | "))):
            words = re.sub(r"[\[\]]", " ", usage).replace("...", " ").split()
            command, path, rest = cli_path(words)
            known = {o for p in command.params for o in getattr(p, "opts", [])}
            unknown = [w for w in rest if w.startswith("-") and w not in known]
            assert not unknown, f"{' '.join(['ownlight', *path])} has no {unknown}"


def test_the_shell_checks_fail_on_a_wrong_command(scratch_home: Path) -> None:
    with pytest.raises(AssertionError, match="no such command"):
        run_ownlight(["ownlight", "audit"], stdin=None)
    with pytest.raises(click.UsageError):
        run_ownlight(["ownlight", "chat", "--knowlege", "notes", "hi"], stdin=None)
    with pytest.raises(AssertionError, match="No such option"):
        run_ownlight(["ownlight", "ingest", "notes", "--colection", "x"], stdin=None)
    with pytest.raises(AssertionError):
        test_synopses_name_real_commands_and_options(
            Block("p.md", 1, "sh", "ownlight keys list [--jsn]\n", "synopsis"))


# -- JSON: eval suites ------------------------------------------------------------------------


@pytest.mark.parametrize("block", of("json"))
def test_eval_suite_examples_load(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "suite.jsonl"
    path.write_text(block.text)
    lines = [line for line in block.text.splitlines() if line.strip()]
    assert len(load_suite(str(path)).items) == len(lines)

"""The documentation's code runs: every ```python block of docs/**/*.md and README.md, and the example scripts.

Each block is a complete program. It runs in a fresh Python process with
``QUEUER_DB_*`` pointing at a fresh schema of the test PostgreSQL (the
``queuer_db`` fixture), and must exit 0. A block that cannot run on its own
says why on the line just before its fence::

    <!-- not-run: needs a Django project; tests/test_topologies.py runs this with one -->

and must still be valid Python. A block whose body is a snippet include
(``--8<-- "example/worker.py"``) shows a file of the repository, which runs
in its own test; here the file must exist.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

MIN_RUN = 35  # the docs hold at least this many complete samples
MAX_NOT_RUN = 3  # and only this many that cannot run on their own
SAMPLE_TIMEOUT = 60  # seconds, for a process of the tests to end
SAMPLE_SECONDS = 15  # a sample takes well under a second or two; one that waits out a timeout is wrong

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
NOT_RUN = re.compile(r"^\s*<!--\s*not-run:(?P<reason>.*?)-->\s*$")
INCLUDE = re.compile(r'^\s*--8<--\s+"(?P<path>[^"]+)"\s*$')
TEST_COMMAND = "pip install -e '.[test]' && python -m pytest"


@dataclass(frozen=True)
class Block:
    source: Path
    line: int  # of the opening fence, 1-based
    end: int  # of the closing fence
    language: str
    code: str
    not_run: str | None  # the reason, when the line before the fence says not-run

    @property
    def name(self) -> str:
        return f"{self.source.relative_to(ROOT)}:{self.line}"

    @property
    def included(self) -> Path | None:
        """The repository file a snippet-include block shows, if it is one."""
        lines = [line for line in self.code.splitlines() if line.strip()]
        if len(lines) == 1 and (match := INCLUDE.match(lines[0])):
            return ROOT / match["path"]
        return None


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, fences inside longer fences left alone."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    opening: re.Match[str] | None = None
    start = 0
    body: list[str] = []
    for number, line in enumerate(lines, start=1):
        match = FENCE.match(line)
        if opening is None:
            if match:
                opening, start, body = match, number, []
            continue
        fence = opening["fence"]
        if match and match["fence"][0] == fence[0] and len(match["fence"]) >= len(fence) and not match["info"].strip():
            info = opening["info"].strip().lstrip("{").lstrip(".")
            language = info.split()[0].lower() if info else ""
            before = NOT_RUN.match(lines[start - 2]) if start >= 2 else None
            indent = len(opening["indent"])
            code = "\n".join(text[indent:] if text[:indent].strip() == "" else text for text in body) + "\n"
            blocks.append(Block(path, start, number, language, code, before["reason"].strip() if before else None))
            opening = None
        else:
            body.append(line)
    assert opening is None, f"{path.relative_to(ROOT)}:{start}: a code fence is never closed"
    return blocks


def python_blocks() -> list[Block]:
    return [block for path in SOURCES for block in code_blocks(path) if block.language in ("python", "py")]


RUNNABLE = [block for block in python_blocks() if block.not_run is None and block.included is None]


def sample_env() -> dict[str, str]:
    """This process's environment (QUEUER_DB_* set by queuer_db), without other QUEUER_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUER_") or k.startswith("QUEUER_DB_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# -- the convention --------------------------------------------------------------------


def test_the_docs_hold_enough_complete_samples_and_few_fragments():
    blocks = python_blocks()
    not_run = [block for block in blocks if block.not_run is not None]
    assert len(RUNNABLE) >= MIN_RUN, f"only {len(RUNNABLE)} python blocks run; at least {MIN_RUN} should"
    assert len(not_run) <= MAX_NOT_RUN, "too many blocks marked not-run: " + ", ".join(b.name for b in not_run)
    for block in not_run:
        assert block.not_run, f"{block.name}: say why a block is not run (<!-- not-run: why -->)"
        compile(block.code, block.name, "exec")  # a fragment is still Python


def test_every_not_run_marker_stands_before_a_python_block():
    for path in SOURCES:
        blocks = code_blocks(path)
        starts = {block.line for block in blocks if block.language in ("python", "py")}
        fenced = {number for block in blocks for number in range(block.line, block.end + 1)}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if NOT_RUN.match(line) and number not in fenced:
                assert number + 1 in starts, f"{path.relative_to(ROOT)}:{number}: not-run marker without a python block"


def test_included_files_exist():
    for path in SOURCES:
        for block in code_blocks(path):
            for line in block.code.splitlines():
                if match := INCLUDE.match(line):
                    assert (ROOT / match["path"]).is_file(), f"{block.name}: {match['path']} does not exist"


def test_the_readme_is_short_and_its_first_screen_holds_the_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    first = code_blocks(ROOT / "README.md")[0]
    assert first.line <= 15 and first.language == "bash"
    commands = [line for line in first.code.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(commands) == 2, commands
    assert "queuer demo" in commands[0]
    assert commands[1].split("#")[0].strip() == TEST_COMMAND
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert TEST_COMMAND in ci_lines, "the README's test command is the one .ci/run runs"


# -- the samples -----------------------------------------------------------------------


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda block: block.name)
def test_a_python_sample_runs(block: Block, queuer_db, tmp_path: Path):
    script = tmp_path / "sample.py"
    script.write_text(block.code, encoding="utf-8")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=sample_env(),
        capture_output=True, text=True, timeout=SAMPLE_TIMEOUT,
    )
    took = time.monotonic() - started
    assert result.returncode == 0, f"{block.name} failed:\n{result.stdout}\n{result.stderr}"
    assert took < SAMPLE_SECONDS, f"{block.name} took {took:.1f} s:\n{result.stdout}\n{result.stderr}"


def test_the_example_scripts_run_against_the_example_worker(queuer_db, tmp_path: Path):
    env = {**sample_env(), "WORKER_NAME": "docs-example-worker", "WORKER_CONCURRENCY": "4"}
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen([sys.executable, str(ROOT / "example" / "worker.py")], env=env, cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        outputs = {}
        for script in ("producer.py", "wait_for_result.py"):
            result = subprocess.run([sys.executable, str(ROOT / "example" / script)], env=env, cwd=ROOT,
                                    capture_output=True, text=True, timeout=SAMPLE_TIMEOUT)
            assert result.returncode == 0, f"{script}:\n{result.stdout}\n{result.stderr}"
            outputs[script] = result.stdout
        assert "added 100 more" in outputs["producer.py"]
        assert "result: {'path': '/images/b.png', 'width': 128}" in outputs["wait_for_result.py"]
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(SAMPLE_TIMEOUT)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            log.close()
    assert code == 0, (tmp_path / "worker.log").read_text()

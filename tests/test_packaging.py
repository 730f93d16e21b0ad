"""The install puts one name into site-packages, and a user's own modules never collide with it.

Each test makes a fresh virtual environment, installs queuer into it (from a
wheel built from this checkout, or editable), and runs a small app whose own
``database.py``, ``helper.py`` and ``model/`` sit next to its code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

APP_SCRIPT = textwrap.dedent(
    """
    import database, helper, model          # the app's own modules
    import queuer
    from queuer import BatchJob, OnError, Options, new_queuer

    assert database.OWNER == "app", database.__file__
    assert helper.OWNER == "app", helper.__file__
    assert model.OWNER == "app", model.__file__
    assert queuer.__file__.startswith(EXPECTED_ROOT), queuer.__file__
    assert BatchJob.__module__ == "queuer.model.batch_job"
    print("ok", queuer.__file__)
    """
)


def _tracked_copy(target: Path) -> Path:
    """A copy of the checkout's files (tracked and new), so building writes nothing into the repo."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.split(b"\0")
    for raw in filter(None, names):
        source = REPO / raw.decode()
        if source.is_file():
            dest = target / raw.decode()
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(source.read_bytes())
    return target


def _fresh_venv(path: Path) -> Path:
    venv.create(path, with_pip=False, system_site_packages=False)
    python = path / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    # queuer's dependencies come from this interpreter's site-packages, listed after
    # the venv's own, so the venv's queuer is the one imported. A path in a .pth
    # file is added without running that folder's own .pth files (no editable finder).
    (Path(site) / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _pip(python_for_site: Path, *args: str) -> None:
    target = subprocess.run(
        [str(python_for_site), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", target, *args],
        check=True, capture_output=True, text=True,
    )


def _app(path: Path) -> Path:
    (path / "model").mkdir(parents=True)
    (path / "model" / "__init__.py").write_text('OWNER = "app"\n')
    (path / "database.py").write_text('OWNER = "app"\n')
    (path / "helper.py").write_text('OWNER = "app"\n')
    return path


def _run_app(python: Path, app: Path, expected_root: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    result = subprocess.run(
        [str(python), "-c", f"EXPECTED_ROOT = {expected_root!r}\n" + APP_SCRIPT],
        cwd=app, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from (a copy of) this checkout."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    source = _tracked_copy(tmp_path / "src")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, text=True,
    )
    return next((tmp_path / "dist").glob("queuer-*.whl"))


def _site_of(python: Path) -> Path:
    return Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip())


def test_a_wheel_installs_one_top_level_name_and_leaves_app_modules_alone(tmp_path: Path, wheel: Path) -> None:
    python = _fresh_venv(tmp_path / "venv")
    site = _site_of(python)
    before = set(os.listdir(site))
    _pip(python, str(wheel))
    added = set(os.listdir(site)) - before
    top_level = {name for name in added if not name.endswith((".dist-info", ".pth")) and name != "bin"}
    assert top_level == {"queuer"}, sorted(added)

    out = _run_app(python, _app(tmp_path / "app"), str(site))
    assert out.startswith("ok")


def test_a_users_project_passes_with_only_the_pytest_plugin_from_the_wheel(
    tmp_path: Path, wheel: Path, pg_server_config
) -> None:
    """example/testing: tasks and a test file using only the plugin's fixture and helpers."""
    import shutil

    from queuer.testing.server import DSN_VARIABLE

    python = _fresh_venv(tmp_path / "venv")
    _pip(python, str(wheel))
    project = shutil.copytree(REPO / "example" / "testing", tmp_path / "project")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QUEUER_"))}
    # The session's server, so the project does not start a second one (it would find one by itself).
    config = pg_server_config
    env[DSN_VARIABLE] = (f"host={config.host} port={config.port} dbname={config.database} "
                         f"user={config.username}" + (f" password={config.password}" if config.password else ""))
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout
    where = subprocess.run(
        [str(python), "-c", "import queuer.testing.plugin as p; print(p.__file__)"],
        cwd=project, env=env, check=True, capture_output=True, text=True,
    ).stdout
    assert where.startswith(str(_site_of(python))), where


def test_an_editable_install_leaves_app_modules_alone(tmp_path: Path) -> None:
    source = _tracked_copy(tmp_path / "src")
    python = _fresh_venv(tmp_path / "venv")
    _pip(python, "-e", str(source))
    out = _run_app(python, _app(tmp_path / "app"), str(source / "queuer"))
    assert out.startswith("ok")

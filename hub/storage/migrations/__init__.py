"""Alembic migrations of the recorder database: the core's branch and every plugin's own branch.

`upgrade()` is what the recorder runs at start, `upgrade_branch()` what `Recorder.migrate` runs
for a plugin. A package so that env.py ships in the wheel; developers use alembic.ini here.

How plugin tables live next to the core's (one database, one `alembic_version` table):

- A plugin keeps its revisions in its own folder (`plugins/<name>/migrations/versions/`). Its
  first revision has `down_revision = None` and `branch_labels = ("<branch>",)`. Revision ids are
  `<branch>_<suffix>` (letters and digits, 32 characters at most: the width of
  `alembic_version.version_num`), so ids of different plugins never collide and every row of
  `alembic_version` says which branch it belongs to.
- No `depends_on`: Alembic would fold the core's row into the plugin's (it keeps heads only), and
  the core's own upgrade, which cannot see plugin revisions, would then find no row of its own.
  None is needed either: the core is migrated at start, before any plugin, so a plugin table may
  refer to core tables (a foreign key to `sessions`) from its first revision.
- Alembic's multiple bases keep one row per branch in `alembic_version`. Each upgrade sees only
  the revisions of the code running it (the core's, plus one plugin's) and targets its own head
  (`head` for the core, `<branch>@head` for a plugin). Rows of branches it does not know (another
  plugin, not loaded now or uninstalled) are left alone instead of failing the upgrade; a row of
  its own branch that it does not know (the database is newer than the code) is an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import ResolutionError, RevisionError
from alembic.util import CommandError
from sqlalchemy import Engine

from hub.storage.schema import WRITER

HERE = Path(__file__).parent
CORE_VERSIONS = HERE / "versions"
VERSION_NUM_WIDTH = 32  # alembic_version.version_num is VARCHAR(32)
_SUFFIX = re.compile(r"[0-9A-Za-z]+")
_BRANCH = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


class MigrationError(RuntimeError):
    """A migration branch is set up wrongly, or the database is newer than this code."""


def upgrade(
    engine: Engine, revision: str = "head", *, version_locations: Sequence[Path] = (CORE_VERSIONS,)
) -> None:
    """Migrate the core's tables to `revision` in one transaction (blocking; a no-op at head).

    Plugin branches in the same database are left as they are.
    """
    script = _script(version_locations)
    _run(engine, script, revision, owns=lambda rev: "_" not in rev)


def upgrade_branch(engine: Engine, versions_dir: Path, branch: str) -> None:
    """Migrate one plugin's branch to `<branch>@head` in one transaction (blocking).

    `versions_dir` holds the plugin's revision files. Idempotent: a no-op when already at head.
    """
    versions_dir = Path(versions_dir).resolve()
    if not _BRANCH.fullmatch(branch):
        raise MigrationError(f"branch name {branch!r}: use lower-case letters, digits and '_'")
    if not versions_dir.is_dir():
        raise MigrationError(f"branch {branch}: no migrations folder {versions_dir}")
    script = _script((versions_dir,))
    _check_branch(script, versions_dir, branch)
    _run(engine, script, f"{branch}@head", owns=lambda rev: _branch_of(rev, branch))


def _branch_of(revision: str, branch: str) -> bool:
    prefix = f"{branch}_"
    return revision.startswith(prefix) and bool(_SUFFIX.fullmatch(revision[len(prefix) :]))


def _script(version_locations: Sequence[Path]) -> ScriptDirectory:
    # Built in code: no alembic.ini needed at run time, and no path-separator parsing of options.
    return ScriptDirectory(str(HERE), version_locations=[str(p) for p in version_locations])


def _check_branch(script: ScriptDirectory, versions_dir: Path, branch: str) -> None:
    try:
        own: list[Script] = list(script.walk_revisions())
    except (KeyError, RevisionError, CommandError) as err:
        raise MigrationError(
            f"branch {branch}: a revision in {versions_dir} refers to {err} outside the branch "
            "(down_revision or depends_on); a plugin branch stands alone"
        ) from err
    if not own:
        raise MigrationError(f"branch {branch}: no revision files in {versions_dir}")
    for s in own:
        if not _branch_of(s.revision, branch) or len(s.revision) > VERSION_NUM_WIDTH:
            raise MigrationError(
                f"branch {branch}: revision id {s.revision!r} in {Path(s.path).name} must be "
                f"'{branch}_' and letters/digits, at most {VERSION_NUM_WIDTH} characters"
            )
        if s.dependencies:
            raise MigrationError(
                f"branch {branch}: {s.revision} has depends_on {s.dependencies!r}; plugin "
                "branches may not use it (the core is always migrated first)"
            )
    bases = [s for s in own if not s.down_revision]
    if len(bases) != 1 or branch not in (bases[0].branch_labels or ()):
        raise MigrationError(
            f"branch {branch}: the first revision needs down_revision = None and "
            f"branch_labels = ({branch!r},) (found bases {[s.revision for s in bases]})"
        )


def _run(engine: Engine, script: ScriptDirectory, target: str, owns: Callable[[str], bool]) -> None:
    def steps(heads: Sequence[str], _context: MigrationContext) -> list[RevisionStep]:
        known = []
        for head in heads:
            if _knows(script, head):
                known.append(head)
            elif owns(head):
                raise MigrationError(
                    f"the database is at revision {head!r}, which this code does not know: it "
                    "was migrated by a newer version (downgrade the database or upgrade evhub)"
                )
            # else: another branch's row (a plugin not loaded now); not ours to judge.
        return script._upgrade_revs(target, tuple(known))

    config = Config()
    config.set_main_option("script_location", str(HERE).replace("%", "%%"))
    with engine.connect() as conn:
        conn.execution_options(**{WRITER: True})
        with conn.begin():
            config.attributes["connection"] = conn
            # What alembic.command.upgrade does, with `steps` in place of its own function.
            with EnvironmentContext(config, script, fn=steps, destination_rev=target):
                script.run_env()


def _knows(script: ScriptDirectory, revision: str) -> bool:
    try:
        found = script.revision_map.get_revision(revision)
    except ResolutionError:
        return False
    # get_revision also resolves unique prefixes; only the exact id counts here.
    return found is not None and found.revision == revision

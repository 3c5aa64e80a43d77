"""What every native build of arenacheck shares: a private build directory, a key over the
inputs, and a library put into place atomically.

Libraries loaded into this process must come from a directory nobody else can write
(anyone able to replace a file there could run code here), and a name that carries a digest
of everything the bytes depend on, so that a changed source, compiler or variant builds
anew instead of loading a stale file.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

BUILD_DIR_ENV = "ARENACHECK_BUILD_DIR"


class CompileError(RuntimeError):
    """A native library could not be built; the message carries the compiler's output."""


def _private_to_this_user(directory: Path) -> str | None:
    """Why ``directory`` is not private to this user, or None. Windows keeps this in ACLs,
    which a per-user profile folder already restricts."""
    if sys.platform == "win32":
        return None
    info = directory.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        return f"owner uid {info.st_uid}, mode {info.st_mode & 0o777:o}"
    return None


def default_build_dir() -> Path:
    """A per-user directory: under ``%LOCALAPPDATA%`` on Windows, else in the temp dir."""
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA", "").strip()
        return (Path(local) if local else Path.home()) / "arenacheck" / "native"
    return Path(tempfile.gettempdir()) / f"arenacheck-native-{os.getuid()}"


def build_dir() -> Path:
    """Where built libraries go: ``$ARENACHECK_BUILD_DIR``, else :func:`default_build_dir`;
    made if missing, refused if others can write it."""
    chosen = os.environ.get(BUILD_DIR_ENV, "").strip()
    directory = Path(chosen) if chosen else default_build_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    problem = _private_to_this_user(directory)
    if problem is not None:
        raise CompileError(
            f"the build directory {directory} is not private to this user ({problem}); set "
            f"{BUILD_DIR_ENV} to a directory only you can write"
        )
    return directory


def build_key(parts: Iterable[bytes]) -> str:
    """A digest of ``parts``, each length-prefixed so that no two different sequences hash
    the same concatenation."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()[:24]


def tool_identity(argv: Sequence[str], flag: str = "--version") -> bytes:
    """What a compiler says of its version, so that one upgraded in place rebuilds."""
    try:
        done = subprocess.run(
            [*argv, flag], capture_output=True, timeout=60, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return b""
    return done.stdout


def build_into(target: Path, command: Sequence[str], output_flag_at: int) -> Path:
    """Run ``command`` with ``-o <temporary file>`` inserted at ``output_flag_at``, then move
    the result to ``target``, unless ``target`` already exists.

    Parallel builders (pytest-xdist workers) never see a half-written library: each builds
    in a temporary directory of its own beside ``target`` (so that a compiler's by-products,
    an import library say, stay out of the build directory) and renames the library into
    place, which is atomic within one directory; two racing builders produce the same
    bytes, and a library already loaded keeps its inode.
    """
    if target.is_file():
        return target
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    out = scratch / target.name
    argv = [*command[:output_flag_at], "-o", str(out), *command[output_flag_at:]]
    try:
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise CompileError(f"{shlex.join(argv)} could not run: {e}") from e
        if done.returncode != 0:
            raise CompileError(
                f"{shlex.join(argv)} failed with status {done.returncode}:\n"
                f"{done.stderr}{done.stdout}"
            )
        if not out.is_file():
            raise CompileError(f"{shlex.join(argv)} succeeded but wrote no {out.name}")
        os.replace(out, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target

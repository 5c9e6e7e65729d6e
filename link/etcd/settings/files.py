"""Configuration files: where ``middleware.conf`` files are searched, and how one is read."""

from __future__ import annotations

import configparser
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from link.etcd.errors import EtcdSettingsError

from .coercion import MASK
from .model import coerce, is_field, valid_names

#: Path of the configuration file relative to each configuration directory.
CONF_PATH = "link/etcd/middleware.conf"
#: Section of the configuration file holding the settings.
CONF_SECTION = "ETCD"
#: Environment variable naming the last (strongest) configuration directory.
B3J0F_CONF_DIR = "B3J0F_CONF_DIR"

# configparser treats its default section as inherited by every section; give it
# a name nobody writes so that [DEFAULT] is just another ignored section.
_NO_DEFAULT_SECTION = "\x00link.etcd: no default section"


def _b3j0f_conf_data_dir() -> str | None:
    """The ``data`` directory of an installed b3j0f.conf, found on sys.path without importing it."""
    for entry in sys.path:
        package = Path(entry or os.curdir, "b3j0f", "conf")
        if (package / "driver" / "file" / "base.py").is_file():
            return str(package / "data")
    return None


def conf_search_path(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The ``link/etcd/middleware.conf`` files to read, weakest first.

    The directories are those of b3j0f.conf 0.3.x's file drivers
    (``CONF_DIRS`` in ``b3j0f/conf/driver/file/base.py``), in the same order:

    1. ``<b3j0f.conf package>/data`` (b3j0f.conf's own installation data
       directory; only when b3j0f.conf is installed on ``sys.path``)
    2. ``/etc``
    3. ``/usr/local/etc``
    4. ``<sys.prefix>/.config``
    5. ``<sys.prefix>/config``
    6. ``<sys.prefix>/etc``
    7. ``$XDG_CONFIG_HOME``
    8. ``$XDG_CONFIG_DIRS`` (as ONE directory, not split on ``:``, like b3j0f)
    9. ``%APPDATA%``
    10. ``%PROGRAMDATA%``
    11. ``%LOCALAPPDATA%``
    12. ``<home>/.config``
    13. ``<home>/config``
    14. ``<home>/etc``
        (home is ``$HOME``, else ``%USERPROFILE%``, else ``os.path.expanduser("~")``)
    15. ``.`` (the current working directory)
    16. ``$B3J0F_CONF_DIR`` (the last, strongest)

    Unlike b3j0f, the list is computed at each call (not once at import),
    unset or empty variables are skipped, and ``./link/etcd/middleware.conf``
    is not appended a second time after ``$B3J0F_CONF_DIR`` (b3j0f's
    ``FileConfDriver.rscpaths`` re-adds the conf path resolved against the
    current directory).  A file reached through several directories is
    listed once, at its last (strongest) place.

    :param environ: the environment to read (``HOME``, ``XDG_*``, Windows
        variables, ``B3J0F_CONF_DIR``); None means ``os.environ``.
    :return: absolute paths of the existing files, weakest first.
    """
    env = os.environ if environ is None else environ
    home = env.get("HOME", env.get("USERPROFILE", os.path.expanduser("~")))
    dirs: list[str | None] = [
        _b3j0f_conf_data_dir(),
        os.path.join(os.sep, "etc"),
        os.path.join(os.sep, "usr", "local", "etc"),
        os.path.join(sys.prefix, ".config"),
        os.path.join(sys.prefix, "config"),
        os.path.join(sys.prefix, "etc"),
        env.get("XDG_CONFIG_HOME"),
        env.get("XDG_CONFIG_DIRS"),
        env.get("APPDATA"),
        env.get("PROGRAMDATA"),
        env.get("LOCALAPPDATA"),
        os.path.join(home, ".config"),
        os.path.join(home, "config"),
        os.path.join(home, "etc"),
        os.curdir,
        env.get(B3J0F_CONF_DIR),
    ]
    found: dict[str, Path] = {}
    for directory in dirs:
        if not directory:
            continue
        path = Path(os.path.abspath(os.path.join(directory, CONF_PATH)))
        if path.is_file():
            real = os.path.realpath(path)
            found.pop(real, None)  # keep the last (strongest) place only
            found[real] = path
    return list(found.values())


def _parse_error(exc: configparser.Error) -> str:
    """configparser's error without the text of any line (a line may hold a password)."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno}: a key before any [section] header"
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"line {exc.lineno}: key {exc.option!r} given twice in [{exc.section}]"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"line {exc.lineno}: section [{exc.section}] given twice"
    if isinstance(exc, configparser.ParsingError):
        lines = ", ".join(str(lineno) for lineno, _ in exc.errors)
        return f"line(s) {lines}: expected 'key = value', a [section] or a comment"
    return type(exc).__name__


_SECRET_LINE = re.compile(r"(?i)^(\s*\S*password\S*\s*[=:]).*$", re.MULTILINE)


def _shown_lines(key: str, raw: str) -> str:
    """A value for messages: an indented line continues a value, and may be a password line."""
    if key == "password":
        return repr(MASK)
    return repr(_SECRET_LINE.sub(lambda match: f"{match.group(1)} {MASK}", raw))


def read_conf_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the ``[ETCD]`` section of one configuration file.

    The file is INI (configparser, no interpolation, comments on their own
    lines).  Other sections, including ``[DEFAULT]``, are ignored.  Booleans
    take configparser's words (1/yes/true/on, 0/no/false/off); an empty value
    means None for optional fields; ``endpoints`` is comma- or
    whitespace-separated (one per line on indented continuation lines if you
    like).
    Messages never quote a line of the file: a line may hold a password.

    :param path: the file.
    :return: field name -> coerced value, only for the keys present; empty
        when the file has no ``[ETCD]`` section.
    :raises EtcdSettingsError: the file cannot be read or parsed, a key is
        unknown, or a value is bad (the file, line or key, and the value but
        never a password are named).
    """
    file = Path(path)
    parser = configparser.ConfigParser(interpolation=None, default_section=_NO_DEFAULT_SECTION)
    try:
        with file.open(encoding="utf-8") as handle:
            parser.read_file(handle, source=str(file))
    except OSError as exc:
        raise EtcdSettingsError(
            f"{file}: cannot read configuration file ({exc.strerror or exc})"
        ) from None
    except UnicodeDecodeError as exc:
        raise EtcdSettingsError(
            f"{file}: configuration file is not UTF-8 (byte {exc.start})"
        ) from None
    except configparser.Error as exc:
        raise EtcdSettingsError(
            f"{file}: not a valid configuration file ({_parse_error(exc)})"
        ) from None
    if not parser.has_section(CONF_SECTION):
        return {}
    values: dict[str, Any] = {}
    for key, raw in parser.items(CONF_SECTION, raw=True):
        where = f"{file}: [{CONF_SECTION}] {key}"
        if not is_field(key):
            raise EtcdSettingsError(f"{where}: unknown key; valid keys: {valid_names()}")
        values[key] = coerce(key, raw, where, shown=_shown_lines(key, raw))
    return values

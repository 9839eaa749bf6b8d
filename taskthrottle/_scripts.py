"""The Lua scripts, read once from package data and run through redis-py's ``Script``.

``Script`` calls EVALSHA and, on NOSCRIPT (a ``SCRIPT FLUSH`` or a restarted Redis), loads the
script and calls again, so callers never see the cache miss.
"""

from __future__ import annotations

import threading
from importlib import resources
from typing import Any
from weakref import WeakKeyDictionary

from redis.commands.core import Script

_lock = threading.Lock()
_texts: dict[str, str] = {}
_bound: WeakKeyDictionary[Any, dict[str, Script]] = WeakKeyDictionary()


def text(name: str) -> str:
    """Return the source of ``lua/<name>.lua``."""
    if name not in _texts:
        lua = resources.files(__package__).joinpath("lua")
        _texts[name] = lua.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return _texts[name]


def script(client: Any, name: str) -> Script:
    """Return ``lua/<name>.lua`` registered on ``client`` (one ``Script`` per client and name)."""
    scripts = _bound.get(client)
    if scripts is None or name not in scripts:
        with _lock:
            scripts = _bound.setdefault(client, {})
            if name not in scripts:
                scripts[name] = client.register_script(text(name))
    return scripts[name]

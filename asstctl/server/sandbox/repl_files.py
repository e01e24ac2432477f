"""The REPL's look at the files of /mnt/data (standard library only; never imported by the server).

``command.repl_source`` puts this text before ``repl.py``'s: the supervisor takes what a call changed
in the data directory with it. The walk is iterative (a directory nested thousands deep cannot break
the supervisor), at most MAX_WALK files and MAX_DEPTH directories deep; what it could not look at is
named in the call's notes, like the files it could not return.
"""

import base64
import os

MAX_WALK = 10_000  # entries of /mnt/data looked at per call
MAX_DEPTH = 100  # directories below /mnt/data entered


def snapshot(data):
    """({path: (mtime, size, mode)} of the first MAX_WALK files below ``data``, whether there were more,
    {directory: why its files were not looked at} (the first one too deep, each one unreadable))."""
    seen, count, unseen, deep = {}, 0, {}, False
    stack = [(data, 0)]
    while stack:
        root, depth = stack.pop()
        if depth > MAX_DEPTH:
            if not deep:  # the first one: the note names the rule
                deep, unseen[root] = True, (f"directories more than {MAX_DEPTH} levels deep in /mnt/data are not looked at: "
                                "files in them are not returned")
            continue
        try:
            with os.scandir(root) as listing:
                entries = list(listing)
        except OSError as error:
            if root != data and len(unseen) < 100:
                unseen[root] = f"an unreadable directory ({error.strerror}): files in it are not returned"
            continue
        below = []
        for entry in entries:
            try:
                directory = entry.is_dir()
            except OSError:
                directory = False
            if directory:
                if not entry.is_symlink():  # as os.walk: a link to a directory is neither walked nor a file
                    below.append(entry.path)
                continue
            count += 1
            if count > MAX_WALK:
                return seen, True, unseen
            try:
                info = os.lstat(entry.path)
            except OSError:
                continue
            seen[entry.path] = (info.st_mtime_ns, info.st_size, info.st_mode)
        stack += [(path, depth + 1) for path in reversed(below)]
    return seen, False, unseen


def shown(data, path):
    """The path as the code sees it in the sandbox (the unsafe mode's stand-in directory is /mnt/data too)."""
    return "/mnt/data/" + os.path.relpath(path, data)


def named(data, path):
    """(the path as shown, with ``?`` for control characters and bytes that are not UTF-8; why it cannot be
    returned, or None): the server takes only printable UTF-8 paths of at most 4096 characters."""
    text = shown(data, path)
    clean = "".join("?" if ord(c) < 32 or c == "\x7f" or 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    if len(clean) > 4000:
        return clean[:200] + "...", "its path is over 4000 characters"
    return clean, None if clean == text else "its name has a control character or is not valid UTF-8 (rename it)"


def changed_files(data, before, settings):
    """(files new or changed since ``before`` (a snapshot): [{"path", "data"}], those not returned: [{"path",
    "reason"}]); a directory not looked at is named in the call that made it so, not in every later one."""
    (now, cut, unseen), hidden = snapshot(data), {}
    unseen = {path: why for path, why in unseen.items() if before[2].get(path) != why}
    files, skipped, room = [], [], settings["max_file_bytes"]
    for path, mark in sorted(now.items()):
        if before[0].get(path) == mark:
            continue
        parts = os.path.relpath(path, data).split(os.sep)[:-1]
        dots = [at for at, part in enumerate(parts) if part.startswith(".")]  # caches, e.g. .cache/
        if dots:
            place = os.path.join(data, *parts[:dots[0] + 1])
            hidden[place] = hidden.get(place, 0) + 1
            continue
        name, problem = named(data, path)
        if problem:
            skipped.append({"path": name, "reason": problem})
            continue
        if len(files) >= settings["max_files"]:
            skipped.append({"path": name, "reason": f"more than {settings['max_files']} files changed in one call"})
            continue
        if not (mark[2] & 0o170000 == 0o100000):
            skipped.append({"path": name, "reason": "not a regular file"})
            continue
        if mark[1] > room:
            skipped.append({"path": name, "reason": f"over the limit of {settings['max_file_bytes'] >> 20} MB "
                                                    "of files returned per call"})
            continue
        try:
            handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(handle, "rb") as stream:
                content = stream.read(room + 1)
        except OSError as error:
            skipped.append({"path": name, "reason": f"unreadable ({error.strerror})"})
            continue
        if len(content) > room:
            skipped.append({"path": name, "reason": "grew while it was read"})
            continue
        room -= len(content)
        files.append({"path": name, "data": base64.b64encode(content).decode()})
    notes = [{"path": named(data, place)[0], "reason": f"{count} changed file(s) in a hidden directory (a name "
              "starting with '.') are not returned"} for place, count in hidden.items()]
    notes[:0] = [{"path": named(data, path)[0], "reason": why} for path, why in sorted(unseen.items())]
    if cut:  # first: the server keeps the first 200
        notes.insert(0, {"path": "/mnt/data/...", "reason": f"only the first {MAX_WALK} files of /mnt/data are "
                                                             "looked at: those past them are not returned"})
    return files, notes + skipped

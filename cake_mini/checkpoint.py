"""Files that survive a crash: atomic writes, checksums, and a manifest per run.

A long synthesis or distillation writes its finished work into a directory. Every file
is written to a temporary name, flushed to disk, then renamed, so a kill at any moment
leaves either the old file or the new one, never half of one. A ``manifest.json`` records
what the run is (config, teacher fingerprint, package version) and the SHA-256 of each
finished shard; a restarted run with the same arguments checks it and continues, and one
with other arguments is refused instead of being mixed in.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

MANIFEST = "manifest.json"
_TMP = ".tmp-"  # .NAME.tmp-HOST-PID: a file being written by process PID on machine HOST
_HOST = socket.gethostname().replace("/", "_")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file, fsync, rename.

    On any failure (disk full, interrupt) the temporary file is removed and ``path`` keeps
    its old content. A disk-full error says so and what to do.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}{_TMP}{_HOST}-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise OSError(
                e.errno,
                f"disk full while writing {path}; nothing half-written was left behind. "
                "Free some space (or choose another directory) and run the same command "
                "again: finished work in that directory is kept and reused.",
            ) from e
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable; a no-op where directories cannot be opened (Windows)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_save(obj: Any, path: str | os.PathLike) -> str:
    """``torch.save`` ``obj`` to ``path`` atomically; returns the file's SHA-256."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def safe_load(path: str | os.PathLike) -> Any:
    """Load a file this package wrote, without unpickling arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)


def fingerprint(teacher: Any) -> str:
    """A stable identity of a model, the same in every process.

    An ``nn.Module``: SHA-256 of its ``state_dict`` (names, dtypes, shapes and values).
    A bound method of a module (``model.forward``): that module's fingerprint and the
    method's name. Any other callable: its qualified name plus the fingerprints of the
    modules and tensors it reads, from its closure or its globals (``lambda q: cnn(q)``
    changes with ``cnn``'s weights); a plain function's code is not hashed, so give it a new
    name (or use a new directory) when you change what it computes. An object with a ``cake_fingerprint()``
    method (e.g. :class:`cake_mini.blackbox.BlackBoxTeacher`) gives its own.
    """
    if callable(getattr(teacher, "cake_fingerprint", None)):
        return teacher.cake_fingerprint()
    h = hashlib.sha256()
    if isinstance(teacher, nn.Module):
        for name, tensor in teacher.state_dict().items():
            _hash_tensor(h, name, tensor)
        return h.hexdigest()
    owner = getattr(teacher, "__self__", None)
    if isinstance(owner, nn.Module):
        return hashlib.sha256(f"{fingerprint(owner)}.{teacher.__name__}".encode()).hexdigest()
    kind = type(teacher)
    name = f"{getattr(teacher, '__module__', kind.__module__)}.{getattr(teacher, '__qualname__', kind.__qualname__)}"
    h.update(name.encode())
    for label, value in _referenced(teacher):
        if isinstance(value, torch.Tensor):
            _hash_tensor(h, label, value)
        elif isinstance(value, nn.Module) or isinstance(getattr(value, "__self__", None), nn.Module):
            h.update(f"{label}|{fingerprint(value)}".encode())
    return h.hexdigest()


def _referenced(function: Any) -> list[tuple[str, Any]]:
    """``(name, value)`` of what a function reads from its closure and its globals."""
    found = []
    for i, cell in enumerate(getattr(function, "__closure__", None) or ()):
        with contextlib.suppress(ValueError):  # an empty cell
            found.append((f"cell{i}", cell.cell_contents))
    code, namespace = getattr(function, "__code__", None), getattr(function, "__globals__", {})
    stack = [code] if code is not None else []
    while stack:  # names used by the function and the functions nested in it (comprehensions, lambdas)
        code = stack.pop()
        found += [(f"global:{n}", namespace[n]) for n in code.co_names if n in namespace]
        stack += [c for c in code.co_consts if hasattr(c, "co_names")]
    return found


def tensor_fingerprint(*tensors: torch.Tensor) -> str:
    """SHA-256 of tensors' dtypes, shapes and values (e.g. a training set)."""
    h = hashlib.sha256()
    for i, t in enumerate(tensors):
        _hash_tensor(h, str(i), t)
    return h.hexdigest()


def _hash_tensor(h, name: str, tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous()
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


class RunDirectory:
    """A directory of shards plus a manifest that names the run they belong to.

    ``identity`` is a JSON-able dict (config, teacher fingerprint, ...). Opening a directory
    whose manifest has another identity raises ``ValueError`` naming the fields that differ.

    The manifest is the only record of what is finished: a file counts once the manifest
    lists its SHA-256. Saving a name again (a per-epoch checkpoint) writes the new version
    next to the old one (``NAME`` and ``NAME.alt.pt`` take turns), updates the manifest, then
    deletes the old one, so a kill at any moment leaves a listed, intact version.

    Several processes may write one directory (the ranks of a ``torchrun`` job): each passes
    its own ``writer`` name and keeps its own ``manifest.WRITER.json``, and every process
    reads all manifests, so a shard finished by any of them counts for all (:meth:`refresh`
    re-reads them). Processes must write different shard names.
    """

    def __init__(self, path: str | os.PathLike, identity: dict[str, Any], kind: str,
                 writer: str | None = None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.identity = json.loads(json.dumps(identity))  # normalise tuples etc.
        self.kind = kind
        self.manifest = self.path / (MANIFEST if writer is None else f"manifest.{writer}.json")
        self.shards: dict[str, str] = {}  # name -> SHA-256 of its file, from every manifest
        self.files: dict[str, str] = {}  # name -> file, where they differ
        self.own: set[str] = set()  # names this process's manifest lists
        self.refresh()
        if not self.manifest.exists():
            self._write_manifest()
        self._remove_stale_temporaries()

    def refresh(self) -> None:
        """Read every manifest in the directory again (what other writers finished since)."""
        from . import __version__

        for manifest in sorted(self.path.glob("manifest*.json")):
            try:
                saved = json.loads(manifest.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{manifest} is not valid JSON ({e}); delete the directory to start over"
                ) from e
            if saved.get("kind") != self.kind or saved.get("identity") != self.identity:
                raise ValueError(
                    f"{self.path} holds another {saved.get('kind', 'unknown')} run "
                    f"(differs in: {', '.join(_diff(saved.get('identity', {}), self.identity)) or 'kind'}). "
                    "Use a new directory for a new config or teacher, or delete this one; "
                    "runs are never mixed."
                )
            if saved.get("version") != __version__:
                warnings.warn(f"{self.path} was written by cake_mini {saved.get('version')}, this is "
                              f"{__version__}; its config and teacher match, so its finished work is "
                              "reused. Use a new directory to recompute everything.", stacklevel=4)
            self.shards.update(saved.get("shards", {}))
            self.files.update(saved.get("files", {}))
            if manifest == self.manifest:
                self.own = set(saved.get("shards", {}))

    def _remove_stale_temporaries(self) -> None:
        """Delete half-written files of killed processes (``.NAME.tmp-HOST-PID``, this HOST, PID gone).

        Files of other machines are left alone: their processes cannot be checked from here
        (ranks of a multi-node job share the directory).
        """
        for tmp in self.path.glob(f".*{_TMP}*"):
            host, _, pid = tmp.name.rsplit(_TMP, 1)[-1].rpartition("-")
            if host == _HOST and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def _write_manifest(self) -> None:
        from . import __version__

        manifest = {"kind": self.kind, "version": __version__, "identity": self.identity,
                    "shards": {n: self.shards[n] for n in sorted(self.own)},
                    "files": {n: f for n, f in self.files.items() if n in self.own}}
        atomic_write_bytes(self.manifest, json.dumps(manifest, indent=1).encode())

    def load(self, name: str) -> Any | None:
        """The shard ``name`` if it was finished and is intact, else ``None``.

        A shard the manifest lists but whose file is missing or fails its SHA-256 check
        (truncated, corrupt) gives a warning and ``None``, so the caller recomputes it.
        """
        if name not in self.shards:
            return None
        file = self.path / self.files.get(name, name)
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            problem = "is missing"
        else:
            if hashlib.sha256(data).hexdigest() == self.shards[name]:
                return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            problem = f"is truncated or corrupt ({len(data)} bytes, checksum mismatch)"
        warnings.warn(f"checkpoint shard {file} {problem}; recomputing it", stacklevel=3)
        return None

    def save(self, name: str, obj: Any) -> None:
        """Write ``obj`` as ``name`` atomically, then record it in the manifest."""
        old = self.files.get(name, name) if name in self.shards else None
        file = _alternate(name) if old == name else name
        self.shards[name] = atomic_save(obj, self.path / file)
        self.own.add(name)
        if file == name:
            self.files.pop(name, None)
        else:
            self.files[name] = file
        self._write_manifest()
        if old is not None and old != file:
            with contextlib.suppress(OSError):
                (self.path / old).unlink()


def _alternate(name: str) -> str:
    """``state.pt`` -> ``state.alt.pt``: where a new version of ``name`` goes."""
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.alt.{suffix}" if dot else f"{name}.alt"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else, or no kill() here
        return True
    return True


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """``field: old there, new now`` for each differing (nested) field."""
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _diff(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}{k}: {_short(a.get(k))} there, {_short(b.get(k))} now")
    return out


def _short(value: Any) -> str:
    """repr, with long fingerprints cut to 12 characters."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return repr(value[:12] + "...")
    return repr(value)

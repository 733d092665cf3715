"""The hop ops, one module each: every module of this package that defines ``SPEC`` (an
:class:`~pipelines.questions.ops.spec.OpSpec`) is an op, registered in :data:`OPS`.

Adding an op is adding its module (and its tests): the executor, the chain and reach rules, the
question text, the VLM writer's prompt, the review overlay and the docs table
(``python -m pipelines.questions.ops --docs``) all read :data:`OPS`. The generator's grammar
(:mod:`pipelines.questions.generator`) composes ops into plans and names the ops it uses.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from string import Template

from pipelines.questions.ops.spec import OpSpec, Registry

_NOT_OPS = frozenset({"spec", "docs", "__main__"})


def discover(package: str, path: Iterable[str]) -> Registry:
    """A registry of the ``SPEC`` of every module of ``package`` (found on ``path``)."""
    registry = Registry()
    for info in sorted(pkgutil.iter_modules(list(path)), key=lambda m: m.name):
        if info.name in _NOT_OPS:
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, OpSpec):
            registry.register(spec)
    return registry


#: every hop op, in listing order
OPS: Registry = discover(__name__, __path__)


def writer_ops_text(max_count: int, registry: Registry | None = None) -> str:
    """The op list the VLM writer is offered: each op's ``writer_text``, in order."""
    ops = OPS if registry is None else registry
    return "\n".join(Template(s.writer_text).safe_substitute(max_count=max_count) for s in ops)


__all__ = ["OPS", "OpSpec", "Registry", "discover", "writer_ops_text"]

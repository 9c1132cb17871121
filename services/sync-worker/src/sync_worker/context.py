"""FastStream's `Context`, resolved on the event loop.

fast_depends runs a custom field's synchronous `use` in a worker thread: a thread hop on
every delivery, for a dictionary lookup, which cost 0.5-1 ms of CPU a message here. The
async override keeps it on the loop. It builds on FastStream's internal `Context` class;
the subscribers' tests cover it, so an upgrade that breaks it shows there.
"""

from typing import Any

from faststream._internal.context import Context as _ContextField


class LoopContext(_ContextField):
    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        resolved: dict[str, Any] = super().use(**kwargs)
        return resolved
